//! What the event streams and WebSocket sessions carry, for the OpenAPI document: one
//! schema per stream, the union of its `data:` payloads (or of its JSON messages). The
//! `event:` line of each SSE event names which member it is; the payload types are the
//! ones the handlers send.

#![allow(dead_code)]

use serde::Serialize;
use utoipa::ToSchema;

use crate::api::containers::LogEndEvent;
use crate::docker::{ContainerStats, LogLine, LogStream};
use crate::domain::exec::{ClientControl, ServerControl};
use crate::jobs::{JobError, LayerEvent, Progress, StateEvent, StepEvent};

/// How every event stream is framed (`text/event-stream`, the WHATWG EventSource
/// format), for the response descriptions.
macro_rules! sse_framing {
    ($events:literal) => {
        concat!(
            "Server-sent events (`text/event-stream`): each event is an `event:` line naming it, an `id:` line where \
             the stream numbers its events, and one `data:` line holding one JSON object, then a blank line. The stream opens with `retry:` (the reconnect \
             delay an EventSource uses) and sends a comment line (`:`) every 10 s while idle. ",
            $events,
            " The schema is the union of the `data:` payloads; the `event:` name says which member an event is."
        )
    };
}
pub(crate) use sse_framing;

/// One `data:` payload of a job's event stream (`GET /v1/jobs/{id}/events`), by `event:`
/// name: `state` and `end` StateEvent, `progress` Progress, `layer` LayerEvent, `log`
/// JobLogEvent, `step` StepEvent (builds), `result` the job's result (as `Job.result`),
/// `error` JobError.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum JobStreamEvent {
    State(StateEvent),
    Progress(Progress),
    Layer(LayerEvent),
    Log(JobLogEvent),
    Step(StepEvent),
    Error(JobError),
    /// `result`: by kind, as `Job.result`.
    #[schema(value_type = Object)]
    Result(serde_json::Value),
}

/// `log` events of a job: a line of build or run output.
#[derive(Serialize, ToSchema)]
pub struct JobLogEvent {
    pub stream: LogStream,
    pub text: String,
    /// Present (`true`) on the last line kept when the job's log hit its bound
    /// (`BERTH_JOB_LOG_BYTES_MAX`, `BERTH_JOB_LOG_EVENTS_MAX`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    /// The container the line came from (runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}

/// One `data:` payload of a container's log stream (`GET /v1/containers/{id}/logs`), by
/// `event:` name: `log` LogLine, `error` JobError (the engine failed midway), `end`
/// LogEndEvent.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LogStreamEvent {
    Log(LogLine),
    Error(JobError),
    End(LogEndEvent),
}

/// One `data:` payload of a container's stats stream (`GET /v1/containers/{id}/stats?stream=true`),
/// by `event:` name: `stats` ContainerStats, `error` JobError (the engine failed midway),
/// `end` LogEndEvent.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum StatsStreamEvent {
    Stats(ContainerStats),
    Error(JobError),
    End(LogEndEvent),
}

/// One `data:` payload of the live job feed (`GET /v1/events`), by `event:` name:
/// `state` StateEvent (with `job_id`, `kind`, `owner`), `lagged` LaggedEvent.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum FeedEvent {
    State(StateEvent),
    Lagged(LaggedEvent),
}

/// `lagged` events: the reader fell behind and this many events were dropped for it;
/// re-list `GET /v1/jobs` to catch up.
#[derive(Serialize, ToSchema)]
pub struct LaggedEvent {
    pub missed: u64,
}

/// One JSON text message of a WebSocket session (attach, exec): ClientControl from the
/// client, ServerControl from the server. Binary frames carry the stdin and output
/// bytes (the operation's description gives the framing); no HTTP body follows the 101.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum WebSocketMessage {
    Client(ClientControl),
    Server(ServerControl),
}

/// One `data:` payload of the engine's event stream (`GET /v1/engine/events`), by
/// `event:` name: `engine` EngineEventView, `lagged` LaggedEvent (last), `error`
/// JobError (last), `end` EngineEndEvent (last, at `until`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum EngineStreamEvent {
    Engine(crate::engine_events::EngineEventView),
    Lagged(LaggedEvent),
    Error(JobError),
    End(EngineEndEvent),
}

/// `end` of the engine's event stream: `until` has come (`{}`); the server closes the
/// stream next.
#[derive(Serialize, ToSchema)]
pub struct EngineEndEvent {}
