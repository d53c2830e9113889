//! `/v1/jobs` and `/v1/events`: the job records, their event streams, cancel and delete.

use std::sync::Arc;

use actix_web::{Either, HttpRequest, HttpResponse, Responder, delete, get, post, web};
use actix_web_lab::sse;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

use super::extract::Qs;
use super::containers::{SSE_KEEP_ALIVE, sse_json};
use crate::api::extract::{Authorized, Operator, Viewer};
use crate::auth::Principal;
use crate::api::problem::{ApiError, ApiResult, Problem};
use crate::error::ErrorCode;
use crate::jobs::{Job, JobEvent, JobFilter, JobKind, JobState, Jobs, StateEvent};
use crate::state::AppState;

/// A page of jobs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    pub items: Vec<Job>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    /// `queued`, `running`, `succeeded`, `failed`, `canceled` or `interrupted`.
    pub state: Option<String>,
    /// `build`, `pull`, `push`, `run`, `prune_images` or `prune_containers`.
    pub kind: Option<String>,
    /// Only this owner's jobs (admins; others may only name themselves).
    pub owner: Option<String>,
    /// Page size, 1-1000 (default 100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// List the jobs the caller may see, newest first.
#[utoipa::path(
    tag = "jobs",
    params(JobListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 400, description = "Bad filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another owner's jobs, without admin", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/jobs")]
pub async fn list_jobs(
    who: Authorized<Viewer>,
    state: web::Data<AppState>,
    Qs(q): Qs<JobListQuery>,
) -> ApiResult<web::Json<JobPage>> {
    let paging = super::extract::Paging::new(q.limit, q.cursor)?;
    let job_state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(JobState::parse(s).ok_or_else(|| {
            ApiError::invalid("`state` must be queued, running, succeeded, failed, canceled or interrupted")
        })?),
    };
    let kind = match q.kind.as_deref() {
        None => None,
        Some(s) => Some(JobKind::parse(s).ok_or_else(|| {
            ApiError::invalid("`kind` must be build, pull, push, run, prune_images or prune_containers")
        })?),
    };
    let owner = match (q.owner, who.is_admin()) {
        (Some(o), true) => Some(o),
        (None, true) => None,
        (Some(o), false) if o != who.subject => {
            return Err(ApiError::new(ErrorCode::Forbidden, "Only admins may list other owners' jobs."));
        }
        _ => Some(who.subject.clone()),
    };
    let filter = JobFilter { owner, state: job_state, kind, before: paging.cursor.clone(), limit: paging.fetch() };
    let mut items = state.jobs.store().list(filter).await?;
    let next_cursor = paging.finish(&mut items, |j| &j.id);
    Ok(web::Json(JobPage { items, next_cursor }))
}

/// One job.
#[utoipa::path(
    tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job, or not the caller's (`job_not_found`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/jobs/{id}")]
pub async fn get_job(who: Authorized<Viewer>, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<web::Json<Job>> {
    Ok(web::Json(state.jobs.visible(&id, &who).await?))
}

/// Cancel a job: a queued one ends at once, a running one stops its engine call (a run's
/// container is stopped, and removed if `auto_remove`) and ends `canceled` within seconds.
/// Owners cancel their own jobs; admins any.
#[utoipa::path(
    tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job after the cancel", body = Job),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role below operator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already ended", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operator"]))
)]
#[post("/jobs/{id}/cancel")]
pub async fn cancel_job(who: Authorized<Operator>, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<web::Json<Job>> {
    Ok(web::Json(state.jobs.cancel(&id, &who).await?))
}

/// Forget a finished job and its events.
#[utoipa::path(
    tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 204, description = "Forgotten"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role below operator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Still queued or running", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operator"]))
)]
#[delete("/jobs/{id}")]
pub async fn delete_job(who: Authorized<Operator>, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    state.jobs.delete(&id, &who).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobEventsQuery {
    /// Replay events after this sequence number (as `Last-Event-ID`; the header wins).
    pub since: Option<u64>,
    /// The bearer token, for clients that cannot set headers (EventSource).
    pub access_token: Option<String>,
}

fn event_to_sse(ev: &JobEvent) -> sse::Event {
    sse_json(&ev.event, &ev.data).id(ev.seq.to_string()).into()
}

/// Stream a job's events as server-sent events.
///
/// Replays the stored events after `Last-Event-ID` (or `?since=`), then follows live,
/// and closes after `end`. Events: `state` (`{state}`), `progress` (Progress), `layer`
/// (LayerEvent), `log` (`{stream, text}`), `result`, `error` (`{code, message}`), `end`
/// (`{state}`). Each has `id:` = its per-job sequence number, from 1. A comment line is
/// sent every 10 s while idle. A finished job replays its whole record, then `end`.
#[utoipa::path(
    tag = "jobs",
    params(("id" = String, Path, description = "Job id"), JobEventsQuery,
           ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event")),
    responses(
        (status = 200, description = "SSE stream of `state`, `progress`, `layer`, `log`, `result`, `error`, then `end`", content_type = "text/event-stream", body = String),
        (status = 204, description = "The job has ended and the client has read every event (`Last-Event-ID` at or past `end`): nothing more will come"),
        (status = 400, description = "Bad Last-Event-ID or since", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/jobs/{id}/events")]
pub async fn stream_job_events(
    who: Authorized<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    Qs(q): Qs<JobEventsQuery>,
    req: HttpRequest,
) -> ApiResult<impl Responder> {
    let job = state.jobs.visible(&id, &who).await?;
    let after = match req.headers().get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::invalid("`Last-Event-ID` must be an event id (a whole number)"))?,
        None => q.since.unwrap_or(0),
    };
    if after > i64::MAX as u64 {
        return Err(ApiError::invalid("`Last-Event-ID` / `since` is larger than any event id"));
    }
    // A client resuming a finished job it has read to the end: 204 tells EventSource to
    // stop reconnecting (an empty stream would have it come back every few seconds).
    // Only once `end` is stored at or before `after`: the state turns terminal a moment
    // before the last events are written.
    if job.state.is_terminal() {
        let last = state.jobs.store().last_event(&job.id).await?;
        if last.is_some_and(|ev| ev.event == "end" && ev.seq <= after) {
            return Ok(Either::Left(HttpResponse::NoContent().finish()));
        }
    }
    let jobs = state.jobs.clone();
    let deadline = who.stream_deadline();
    let (tx, rx) = tokio::sync::mpsc::channel::<sse::Event>(64);
    tokio::spawn(async move {
        // The stream ends when the token does; the client resumes with a fresh one.
        let _ = tokio::time::timeout_at(deadline, follow_job(&jobs, &job.id, after, &tx)).await;
        jobs.hub().release(&job.id);
    });
    Ok(Either::Right(sse::Sse::from_infallible_receiver(rx).with_keep_alive(SSE_KEEP_ALIVE)))
}

/// Replay from the store, then follow live; back to the store whenever the live feed
/// skips (a lagging subscriber) — the worker never waits for us.
async fn follow_job(jobs: &Arc<Jobs>, id: &str, mut last: u64, tx: &tokio::sync::mpsc::Sender<sse::Event>) {
    const PAGE: usize = 500;
    let mut live = jobs.hub().subscribe(id);
    loop {
        let page = match jobs.store().events_after(id, last, PAGE).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(job_id = id, error = %e, "replaying job events failed");
                return;
            }
        };
        for ev in &page {
            if tx.send(event_to_sse(ev)).await.is_err() {
                return;
            }
            last = ev.seq;
            if ev.event == "end" {
                return;
            }
        }
        if page.len() == PAGE {
            continue;
        }
        // Resumed at or past the `end` of a finished job (an EventSource reconnecting after
        // `end`): nothing will follow, so close instead of idling forever.
        if page.is_empty() && last > 0 {
            let at_last = jobs.store().events_after(id, last - 1, 1).await.unwrap_or_default();
            let ended = match at_last.first() {
                Some(ev) => ev.event == "end",
                None => matches!(jobs.store().get(id).await, Ok(Some(j)) if j.state.is_terminal()),
            };
            if ended {
                return;
            }
        }
        let mut check = tokio::time::interval(RECHECK);
        check.tick().await;
        // Ticks in a row that found the job ended with nothing stored after `last`.
        let mut ended_quiet = 0;
        loop {
            let r = tokio::select! {
                r = live.recv() => r,
                _ = tx.closed() => return,
                _ = check.tick() => {
                    // The live feed is only a wake-up: now and then look at the record,
                    // so a job deleted, or finished without a stored `end` (a full
                    // disk), still ends the stream. Twice in a row, a whole tick apart:
                    // the state turns final a moment before the last events are written.
                    match jobs.store().get(id).await {
                        Ok(Some(job)) if job.state.is_terminal() => {
                            match jobs.store().events_after(id, last, 1).await {
                                Ok(more) if !more.is_empty() => break,
                                _ if ended_quiet == 0 => {
                                    ended_quiet += 1;
                                    continue;
                                }
                                _ => {
                                    let end = sse_json("end", &serde_json::json!({"state": job.state}))
                                        .id((last + 1).to_string());
                                    let _ = tx.send(end.into()).await;
                                    return;
                                }
                            }
                        }
                        Ok(Some(_)) => {
                            ended_quiet = 0;
                            continue;
                        }
                        _ => return,
                    }
                }
            };
            match r {
                Ok(ev) if ev.seq <= last => {}
                Ok(ev) if ev.seq == last + 1 => {
                    if tx.send(event_to_sse(&ev)).await.is_err() {
                        return;
                    }
                    last = ev.seq;
                    if ev.event == "end" {
                        return;
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => {
                    // The job ended (its channel closes after `end`), or was deleted.
                    match jobs.store().get(id).await {
                        Ok(Some(_)) => {
                            live = jobs.hub().subscribe(id);
                            break;
                        }
                        _ => return,
                    }
                }
            }
        }
    }
}

/// How often a follower looks at the stored record while the live feed is quiet.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The bearer token, for clients that cannot set headers (EventSource).
    pub access_token: Option<String>,
}

/// Stream the `state` events of every job the caller may see (own jobs; admins all):
/// `data: {state, job_id, kind, owner}`, `id:` = the job's event sequence number. A live
/// feed, with no replay: a reader too slow to keep up gets a `lagged` event
/// (`{missed: N}`) and should re-list `GET /v1/jobs`.
#[utoipa::path(
    tag = "jobs",
    params(EventsQuery),
    responses(
        (status = 200, description = "SSE stream of `state` events (StateEvent)", content_type = "text/event-stream", body = String),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/events")]
pub async fn stream_events(who: Authorized<Viewer>, state: web::Data<AppState>, Qs(_q): Qs<EventsQuery>) -> impl Responder {
    let mut rx = state.jobs.hub().subscribe_states();
    let principal: Principal = who.principal.clone();
    let deadline = principal.stream_deadline();
    let (tx, out) = tokio::sync::mpsc::channel::<sse::Event>(64);
    tokio::spawn(async move {
        let _ = tokio::time::timeout_at(deadline, async move { loop {
            let change = tokio::select! {
                r = rx.recv() => r,
                _ = tx.closed() => return,
            };
            match change {
                Ok(c) if principal.is_admin() || c.owner == principal.subject => {
                    let job_state = c.event.data.get("state").and_then(|s| serde_json::from_value(s.clone()).ok());
                    let Some(job_state) = job_state else { continue };
                    let payload = StateEvent { state: job_state, job_id: Some(c.job_id), kind: Some(c.kind), owner: Some(c.owner) };
                    if tx.send(sse_json("state", &payload).id(c.event.seq.to_string()).into()).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    // A slow reader lost some: say so (ids are per job, so a resume by
                    // Last-Event-ID cannot fill the gap; GET /v1/jobs can).
                    let lagged = sse_json("lagged", &serde_json::json!({"missed": missed}));
                    if tx.send(lagged.into()).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        } })
        .await;
    });
    sse::Sse::from_infallible_receiver(out).with_keep_alive(SSE_KEEP_ALIVE)
}
