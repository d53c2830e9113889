//! Job records and events, as stored and as the API shows them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::identity::Role;
use crate::error::ErrorCode;

crate::wire_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
    pub enum JobKind {
        Build => "build",
        Pull => "pull",
        Push => "push",
        Run => "run",
        PruneImages => "prune_images",
        PruneContainers => "prune_containers",
        PruneVolumes => "prune_volumes",
        PruneNetworks => "prune_networks",
        PruneBuildCache => "prune_build_cache",
    }
}

crate::wire_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
    pub enum JobState {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Canceled => "canceled",
        Interrupted => "interrupted",
    }
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

crate::wire_enum! {
    /// The SSE event names of a job.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub enum EventName {
        State => "state",
        Progress => "progress",
        Layer => "layer",
        Log => "log",
        Step => "step",
        Result => "result",
        Error => "error",
        End => "end",
    }
}

fn default_team() -> String {
    super::identity::DEFAULT_TEAM.to_string()
}

/// Aggregated progress, folded from the engine's per-layer messages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// What the job is doing: `queued`, `pulling`, `pushing`, `building`, `creating`,
    /// `running`, `pruning`, `done`.
    pub phase: String,
    /// Bytes done over the layers whose size is known.
    pub current: Option<i64>,
    /// Bytes in all, over the layers whose size is known.
    pub total: Option<i64>,
    /// 0-100, when a total is known.
    pub percent: Option<u8>,
    pub layers_done: u32,
    pub layers_total: u32,
    /// The engine's latest status line.
    pub message: Option<String>,
    /// Builds: the step the builder is at (from 1), once it started one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// Builds: how many steps the build has (the `N` of the builder's `Step n/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps_total: Option<u32>,
}

/// Why a job failed or was interrupted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobError {
    pub code: ErrorCode,
    pub message: String,
}

/// A job: a build, pull, push, run or prune, queued and run by Berth.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Sortable by creation (a ULID).
    pub id: String,
    pub kind: JobKind,
    pub state: JobState,
    /// The token subject that made it.
    pub owner: String,
    /// The team it belongs to (its submitter's; `default` for tokens without a team).
    #[serde(default = "default_team")]
    pub team: String,
    /// The engine it runs on (a name of `GET /v1/hosts`).
    #[serde(default)]
    #[schema(example = "local")]
    pub host: String,
    /// When it was submitted (RFC 3339 UTC).
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    /// When a worker started it; `null` while queued.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<String>,
    /// When it ended; `null` until then.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<String>,
    /// The parameters, secrets removed.
    #[schema(value_type = Object)]
    pub request: Value,
    pub progress: Progress,
    /// By kind: build `{image_id, tags}`, pull `{image_id, digest}`, push `{digest}`,
    /// run `{container_id, exit_code?}`, prune `{deleted, space_reclaimed, dry_run}`.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub error: Option<JobError>,
    /// The `Idempotency-Key` it was made with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The role the submitter held (never shown). Rows from before it was recorded have
    /// none and run with the least role that may submit jobs.
    #[serde(skip)]
    #[schema(ignore)]
    pub authority: Option<Role>,
    /// The seal made at submit over what the job may do (never shown).
    #[serde(skip)]
    #[schema(ignore)]
    pub seal: Option<String>,
    /// The job's spooled build context, if any (never shown).
    #[serde(skip)]
    #[schema(ignore)]
    pub spool: Option<String>,
    /// The Berth replica that claimed it (several replicas on PostgreSQL only); absent
    /// on the embedded store and while queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

/// One stored event of a job: what SSE replays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job_id: String,
    /// Per-job sequence number, from 1: the SSE `id:`.
    pub seq: u64,
    /// SSE event name.
    pub event: EventName,
    pub data: Value,
}

impl JobEvent {
    pub fn is_end(&self) -> bool {
        self.event == EventName::End
    }
}

/// Where a `log` event's line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    Stdout,
    Stderr,
    Build,
}

/// The payload of a job event, typed: what the job engine emits. Each becomes a stored
/// [`JobEvent`] with its [`EventName`] and the JSON the API has always sent.
#[derive(Debug, Clone, PartialEq)]
pub enum EventData {
    State(JobState),
    Progress(Progress),
    Layer(LayerEvent),
    Log { stream: LogSource, text: String, truncated: bool, container_id: Option<String> },
    Step(StepEvent),
    Result(Value),
    Error(JobError),
    End(JobState),
}

impl EventData {
    pub fn log(stream: LogSource, text: impl Into<String>) -> Self {
        EventData::Log { stream, text: text.into(), truncated: false, container_id: None }
    }

    pub fn name(&self) -> EventName {
        match self {
            EventData::State(_) => EventName::State,
            EventData::Progress(_) => EventName::Progress,
            EventData::Layer(_) => EventName::Layer,
            EventData::Log { .. } => EventName::Log,
            EventData::Step(_) => EventName::Step,
            EventData::Result(_) => EventName::Result,
            EventData::Error(_) => EventName::Error,
            EventData::End(_) => EventName::End,
        }
    }

    /// The `data:` JSON, exactly as the wire has it.
    pub fn to_json(&self) -> Value {
        use serde_json::json;
        match self {
            EventData::State(s) | EventData::End(s) => json!({ "state": s }),
            EventData::Progress(p) => serde_json::to_value(p).unwrap_or_default(),
            EventData::Layer(l) => serde_json::to_value(l).unwrap_or_default(),
            EventData::Log { stream, text, truncated, container_id } => {
                let mut v = json!({ "stream": stream, "text": text });
                if *truncated {
                    v["truncated"] = json!(true);
                }
                if let Some(id) = container_id {
                    v["container_id"] = json!(id);
                }
                v
            }
            EventData::Step(s) => serde_json::to_value(s).unwrap_or_default(),
            EventData::Result(r) => r.clone(),
            EventData::Error(e) => json!({ "code": e.code, "message": e.message }),
        }
    }
}

/// What a new job is made of.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    pub owner: String,
    pub request: Value,
    /// The role the submitter held: the job runs with exactly this authority.
    pub authority: Role,
    /// HMAC over id, owner, team, kind, authority, spool and request (see `jobs::seal`).
    pub seal: String,
    pub team: String,
    /// The engine it runs on.
    pub host: String,
    pub idempotency_key: Option<String>,
    /// A spooled build context to delete when the job is forgotten.
    pub spool: Option<String>,
}

/// List filters.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub owner: Option<String>,
    /// Only this team's jobs (a row without a team is team `default`'s).
    pub team: Option<String>,
    pub state: Option<JobState>,
    pub kind: Option<JobKind>,
    /// Only jobs of this host; `host_is_default`: rows from before jobs had a host are
    /// the default host's, and match it too.
    pub host: Option<String>,
    pub host_is_default: bool,
    /// Exclusive: jobs older than this id.
    pub before: Option<String>,
    pub limit: usize,
    /// Stop once the rows read hold this many bytes of JSON (0: no bound); the page then
    /// ends early and says more follow.
    pub max_bytes: usize,
}

// ---- SSE payload schemas (documented in OpenAPI) -----------------------------------------

/// `state` and `end` events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateEvent {
    pub state: JobState,
    /// On `/v1/events` only: which job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<JobKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The job's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// `layer` events (pull, push).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LayerEvent {
    pub id: String,
    pub status: String,
    pub current: Option<i64>,
    pub total: Option<i64>,
}

/// `step` events (builds): one per step of the Dockerfile, sent once the builder shows
/// whether it reused its cache for the step, which is the line after the step's
/// `Step n/N : ...` header (so just after the step starts, before its own output); a
/// `FROM` step at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepEvent {
    /// The step's number, from 1.
    pub index: u32,
    /// How many steps the build has.
    pub total: u32,
    /// The instruction as the builder prints it, e.g. `RUN make`.
    pub instruction: String,
    /// `true`: the builder reused a cached layer (`---> Using cache`); `false`: it ran the
    /// step; `null` for a `FROM` step (the base image is not a cache result).
    pub cached: Option<bool>,
}

/// `progress` events: [`Progress`] aggregated over layers.
pub type ProgressEvent = Progress;
