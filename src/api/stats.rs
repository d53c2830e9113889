//! Container figures: `/v1/containers/{id}/stats` (a snapshot, or SSE with
//! `stream=true`), `/v1/stats` (every running container the caller sees) and
//! `/v1/containers/{id}/top`.

use actix_web::{Either, Responder, get, web};
use futures_util::{Stream, StreamExt, stream};
use serde::Deserialize;
use utoipa::IntoParams;

use super::containers::{container_id, end_event};
use super::extract::{Authorized, Qs, Viewer};
use super::problem::{ApiError, ApiResult, Problem};
use super::responses::EngineErrors;
use super::scope::{self, Need};
use super::sse::{self, numbered, sse_json};
use super::streams::sse_framing;
use crate::docker::{ContainerFilters, ContainerStats, ContainerTop, EngineError};
use crate::domain::de_bool_opt;
use crate::error::ErrorCode;
use crate::state::AppState;

/// How many containers `GET /v1/stats` reads at once. Each read holds an engine
/// connection for one to two seconds (the engine waits for two samples of its one-second
/// collector, which samples every container in one pass), so the wall time is about
/// one read per 64 containers: with 16 at once, 50 containers took 8.4 s on Docker 20.10.
pub const BULK_STATS_CONCURRENCY: usize = 64;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Stream the figures as server-sent events (about one a second) until the
    /// container stops or the client leaves.
    #[serde(default, deserialize_with = "de_bool_opt")]
    #[param(value_type = Option<bool>)]
    pub stream: Option<bool>,
    /// The bearer token, for clients that cannot set headers (EventSource).
    pub access_token: Option<String>,
    /// A single-use stream ticket (`POST /v1/tickets`), in place of the token.
    pub ticket: Option<String>,
}

/// Whether an inspect document says the container runs, and its name.
fn running_and_name(doc: &serde_json::Value) -> (bool, String) {
    let running = doc.pointer("/State/Running").and_then(serde_json::Value::as_bool).unwrap_or(false);
    let name = doc.get("Name").and_then(|n| n.as_str()).unwrap_or_default().trim_start_matches('/').to_string();
    (running, name)
}

/// A container's CPU, memory, network, block I/O and process figures (`docker stats`).
///
/// One snapshot: `cpu_percent` over the engine's last second (the engine samples twice,
/// so the answer takes about a second), `memory_bytes` without the page cache, network
/// and block I/O summed over interfaces and devices, `pids`. A stopped container answers
/// `running: false`, `read: null` and zeros. With `stream=true`, server-sent events:
/// `stats` (ContainerStats, about one a second) until the container stops or the client
/// leaves, `error` (JobError) if the engine fails midway, and last `end` (LogEndEvent:
/// the container's state); `id:` counts from 1. Takes `?access_token=` in place of the
/// header.
#[utoipa::path(
    tag = "containers",
    operation_id = "container_stats",
    params(("id" = String, Path, description = "Container id, id prefix or name"), StatsQuery),
    responses(
        (status = 200, description = sse_framing!("The figures as JSON; with `stream=true`, events: `stats` (ContainerStats, about one a second) until the container stops, `error` (JobError) if the engine fails midway, and last `end` (LogEndEvent), after which the server closes the stream; `id:` counts from 1."),
            content(
                (ContainerStats = "application/json"),
                (crate::api::streams::StatsStreamEvent = "text/event-stream"),
            )),
        (status = 400, description = "Not a valid id or name, or a bad query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such container (`container_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "With `stream=true`: the caller holds BERTH_MAX_STREAMS_PER_SUBJECT streams open already (`too_many_streams`, with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/containers/{id}/stats")]
pub async fn container_stats(
    who: Authorized<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    Qs(q): Qs<StatsQuery>,
) -> ApiResult<Either<web::Json<ContainerStats>, impl Responder>> {
    let given = container_id(id)?;
    if q.stream.unwrap_or(false) {
        // A stream holds an engine connection: the caller's share is counted first.
        let slot = sse::slot(&state, &who)?;
        let scoped = scope::container(&state, &who, &given, Need::Read).await?;
        let (running, name) = running_and_name(&scoped.doc);
        let id = scoped.id;
        let figures: stream::BoxStream<'static, Result<ContainerStats, EngineError>> = if running {
            state.engine.container_stats_stream(&id).await?
        } else {
            stream::iter([Ok(ContainerStats::stopped(&id, &name))]).boxed()
        };
        let end = stream::once(end_event(state.clone(), id));
        let events = numbered(stats_events(figures).chain(end));
        return Ok(Either::Right(sse::stream(events, who.stream_deadline(), slot)));
    }
    let scoped = scope::container(&state, &who, &given, Need::Read).await?;
    let (running, name) = running_and_name(&scoped.doc);
    let stats = if running { state.engine.container_stats(&scoped.id).await? } else { ContainerStats::stopped(&scoped.id, &name) };
    Ok(Either::Left(web::Json(stats)))
}

/// The figures as `stats` events while the container runs: the first figures of a
/// stopped container are the last event (`running: false`); when the engine fails, an
/// `error` event and nothing more.
fn stats_events<E>(figures: impl Stream<Item = Result<ContainerStats, E>> + Send + 'static) -> impl Stream<Item = sse::Data> + Send
where
    E: Send,
    ApiError: From<E>,
{
    stream::unfold(Some(Box::pin(figures)), |figures| async move {
        let mut figures = figures?;
        Some(match figures.next().await? {
            Ok(s) if s.running => (sse_json("stats", &s), Some(figures)),
            Ok(s) => (sse_json("stats", &s), None),
            Err(e) => {
                let err = ApiError::from(e);
                (sse_json("error", &serde_json::json!({"code": err.code, "message": err.detail})), None)
            }
        })
    })
}

/// Figures of every running container the caller sees.
///
/// One snapshot per running container of the caller's team (an admin: all), as
/// `GET /v1/containers/{id}/stats` gives it, read 64 at a time
/// (`BULK_STATS_CONCURRENCY`): one to two seconds per 64 containers. A container that stops
/// or goes away meanwhile is left out. Sorted by name.
#[utoipa::path(
    tag = "containers",
    operation_id = "list_container_stats",
    responses(
        (status = 200, description = "The figures, one per running container", body = Vec<ContainerStats>),
        EngineErrors,
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/stats")]
pub async fn list_container_stats(
    who: Authorized<Viewer>,
    state: web::Data<AppState>,
) -> ApiResult<web::Json<Vec<ContainerStats>>> {
    let list = state.engine.list_containers(&ContainerFilters::default()).await?;
    let reads = scope::visible(&state, &who, list).into_iter().map(|c| {
        let engine = state.engine.clone();
        async move { engine.container_stats(&c.id).await }
    });
    let results: Vec<_> = stream::iter(reads).buffer_unordered(BULK_STATS_CONCURRENCY).collect().await;
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(s) if s.running => out.push(s),
            // Stopped, removed or being removed since the list: not an error.
            Ok(_) | Err(EngineError::NotFound { .. }) | Err(EngineError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(web::Json(out))
}

/// The processes of a running container (`docker top`).
///
/// `ps -ef` on the host for the container's processes: `titles` (`UID`, `PID`, `PPID`,
/// `C`, `STIME`, `TTY`, `TIME`, `CMD`) and one row per process. A container that is not
/// running is 409 `conflict`.
#[utoipa::path(
    tag = "containers",
    operation_id = "container_top",
    params(("id" = String, Path, description = "Container id, id prefix or name")),
    responses(
        (status = 200, description = "The processes", body = ContainerTop),
        (status = 400, description = "Not a valid id or name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such container (`container_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The container is not running (`conflict`)", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/containers/{id}/top")]
pub async fn container_top(
    who: Authorized<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<web::Json<ContainerTop>> {
    let given = container_id(id)?;
    let scoped = scope::container(&state, &who, &given, Need::Read).await?;
    let not_running = || {
        ApiError::new(
            ErrorCode::Conflict,
            format!("Container {given} is not running: `top` lists the processes of a running container. Start it first."),
        )
    };
    if !running_and_name(&scoped.doc).0 {
        return Err(not_running());
    }
    match state.engine.container_top(&scoped.id).await {
        Ok(top) => Ok(web::Json(top)),
        Err(EngineError::Conflict(_)) => Err(not_running()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{StreamExt, stream};

    use crate::docker::ContainerStats;
    use crate::domain::Rejection;

    fn running(n: u64) -> Result<ContainerStats, Rejection> {
        let mut s = ContainerStats::stopped("id", "c");
        s.running = true;
        s.pids = n;
        Ok(s)
    }

    #[tokio::test]
    async fn the_stream_stops_at_the_first_stopped_figures() {
        let figures = stream::iter([running(1), running(2), Ok(ContainerStats::stopped("id", "c")), running(3)]);
        let events: Vec<String> = super::stats_events(figures).map(|e| format!("{e:?}")).collect().await;
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(events[2].contains(r#"\"running\":false"#), "{events:?}");
    }

    #[tokio::test]
    async fn an_engine_failure_is_an_error_event_and_the_last() {
        let figures = stream::iter([running(1), Err(Rejection::invalid("gone")), running(3)]);
        let events: Vec<String> = super::stats_events(figures).map(|e| format!("{e:?}")).collect().await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events[1].contains(r#"event: Some("error")"#), "{events:?}");
    }
}
