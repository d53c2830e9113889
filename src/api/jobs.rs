//! `/v1/jobs` and `/v1/events`: the job records, their event streams, cancel and delete.

use actix_web::{Either, HttpRequest, HttpResponse, Responder, delete, get, post, web};
use actix_web_lab::sse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::Qs;
use super::sse::sse_json;
use super::streams::{FeedEvent, JobStreamEvent, sse_framing};
use crate::api::extract::{Authorized, Operator, Viewer};
use crate::api::problem::{ApiError, ApiResult, Problem};
use crate::jobs::events::StateFeedItem;
use crate::jobs::{Job, JobEvent, JobFilter, JobKind, JobState, StateEvent};
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
    /// Only jobs in this state.
    #[param(value_type = Option<JobState>)]
    pub state: Option<String>,
    /// Only jobs of this kind.
    #[param(value_type = Option<JobKind>)]
    pub kind: Option<String>,
    /// Only this owner's (subject's) jobs: admins any; team members any of their team;
    /// tokens without a team claim only themselves.
    pub owner: Option<String>,
    /// Only this team's jobs (admins; others may only name their own team).
    pub team: Option<String>,
    /// Only jobs of this host (a name of `GET /v1/hosts`; 404 `host_not_found` for one
    /// the caller's team is not given).
    pub host: Option<String>,
    /// Page size, 1-1000 (default 100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// List jobs.
///
/// The jobs the caller may see, newest first: their team's (without a team claim, their
/// own); an admin's, everyone's. Filtered by `state`, `kind`, `owner`, `team` and `host`;
/// paged by `cursor`.
#[utoipa::path(
    tag = "jobs",
    params(JobListQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage, headers(("ETag" = String, description = "Strong tag of this page; send it back as `If-None-Match`"))),
        (status = 304, description = "Not modified: `If-None-Match` names the page's current `ETag`"),
        (status = 400, description = "Bad filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another owner's or team's jobs, without admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such host, or one not given to the caller's team (`host_not_found`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/jobs")]
pub async fn list_jobs(
    who: Authorized<Viewer>,
    req: HttpRequest,
    state: web::Data<AppState>,
    Qs(q): Qs<JobListQuery>,
) -> ApiResult<HttpResponse> {
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
            let kinds: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
            ApiError::invalid(format!("`kind` must be one of {}", kinds.join(", ")))
        })?),
    };
    if q.team.as_deref().is_some_and(|t| !crate::domain::identity::is_team_name(t)) {
        return Err(ApiError::invalid("`team` must be a team name: [a-z0-9][a-z0-9_.-]{0,62}"));
    }
    let filter = JobFilter {
        owner: q.owner,
        team: q.team,
        state: job_state,
        kind,
        host: match q.host {
            Some(h) if state.fleet.get(&h).is_some_and(|host| host.open_to(&who)) => Some(h),
            Some(h) => return Err(super::hosts::host_not_found(&h)),
            None => None,
        },
        host_is_default: false,
        before: paging.cursor.clone(),
        limit: paging.fetch(),
        max_bytes: 0,
    };
    let (mut items, cut) = state.jobs.list(&who, filter).await?;
    let next_cursor = paging.finish(&mut items, |j| &j.id).or_else(|| cut.then(|| items.last().map(|j| j.id.clone())).flatten());
    super::etag::json(&req, &JobPage { items, next_cursor })
}

/// Get a job.
///
/// Its state, progress, result or error, and its request with secrets removed. Its
/// events are at `/v1/jobs/{id}/events`.
#[utoipa::path(
    tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = Job, headers(("ETag" = String, description = "Strong tag of this job's current record; send it back as `If-None-Match`"))),
        (status = 304, description = "Not modified: `If-None-Match` names the job's current `ETag`"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job, or not one the caller may see: another team's, or without a team claim another owner's (`job_not_found`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/jobs/{id}")]
pub async fn get_job(
    who: Authorized<Viewer>,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    super::etag::json(&req, &state.jobs.get(&id, &who).await?)
}

/// Cancel a job.
///
/// A queued job ends at once, a running one stops its engine call (a run's container is
/// stopped, and removed if `auto_remove`) and ends `canceled` within seconds. Operators
/// cancel their team's jobs (without a team claim, their own); admins any.
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

/// Delete a finished job.
///
/// Forgets the job and its events (and a build's spooled context). A queued or running
/// job is 409 `conflict`: cancel it first.
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
    /// A single-use stream ticket (`POST /v1/tickets`), in place of the token.
    pub ticket: Option<String>,
}

impl JobEventsQuery {
    /// Where to resume: after `Last-Event-ID` (the header wins) or `?since=`.
    fn resume_after(&self, req: &HttpRequest) -> ApiResult<u64> {
        let after = match req.headers().get("last-event-id") {
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::invalid("`Last-Event-ID` must be an event id (a whole number)"))?,
            None => self.since.unwrap_or(0),
        };
        if after > i64::MAX as u64 {
            return Err(ApiError::invalid("`Last-Event-ID` / `since` is larger than any event id"));
        }
        Ok(after)
    }
}

/// A job event as SSE; `state` and `end` events name the job's `host`.
fn event_to_sse(ev: &JobEvent, host: &str) -> sse::Event {
    let named = matches!(ev.event, crate::jobs::EventName::State | crate::jobs::EventName::End) && ev.data.is_object();
    if named {
        let mut data = ev.data.clone();
        data["host"] = serde_json::Value::String(host.to_string());
        return sse_json(ev.event.as_str(), &data).id(ev.seq.to_string()).into();
    }
    sse_json(ev.event.as_str(), &ev.data).id(ev.seq.to_string()).into()
}

/// Stream a job's events.
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
        (status = 200, description = sse_framing!("Events: `state`, `progress`, `layer`, `log`, `result`, `error`, and last `end`, after which the server closes the stream; `id:` is the event's per-job sequence number, from 1 (resume with `Last-Event-ID`)."), content_type = "text/event-stream", body = JobStreamEvent),
        (status = 204, description = "The job has ended and the client has read every event (`Last-Event-ID` at or past `end`): nothing more will come"),
        (status = 400, description = "Bad Last-Event-ID or since", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller holds BERTH_MAX_STREAMS_PER_SUBJECT streams open already (`too_many_streams`, with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
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
    let slot = super::sse::slot(&state, &who)?;
    let job = state.jobs.get(&id, &who).await?;
    let after = q.resume_after(&req)?;
    // A client that has read a finished job to its `end` (an EventSource reconnecting):
    // 204 tells it to stop; an empty stream would have it come back every few seconds.
    if job.state.is_terminal() && state.jobs.last_event(&job).await?.is_some_and(|ev| ev.is_end() && ev.seq <= after) {
        return Ok(Either::Left(HttpResponse::NoContent().finish()));
    }
    use futures_util::StreamExt;
    let host = job.host.clone();
    let events = state.jobs.follow(&job, after).map(move |ev| event_to_sse(&ev, &host));
    Ok(Either::Right(super::sse::stream(events, who.stream_deadline(), slot)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The bearer token, for clients that cannot set headers (EventSource).
    pub access_token: Option<String>,
    /// A single-use stream ticket (`POST /v1/tickets`), in place of the token.
    pub ticket: Option<String>,
}

/// Stream the state changes of all jobs.
///
/// The `state` events of every job the caller may see (their team's; without a team
/// claim their own; admins all): `data: {state, job_id, kind, owner}`, `id:` = the job's
/// event sequence number. A live feed, with no replay: a reader too slow to keep up gets
/// a `lagged` event (`{missed: N}`) and should re-list `GET /v1/jobs`.
#[utoipa::path(
    tag = "jobs",
    params(EventsQuery),
    responses(
        (status = 200, description = sse_framing!("Events: `state` (with `job_id`, `kind`, `owner`; `id:` is that job's event sequence number) and `lagged` (no `id:`)."), content_type = "text/event-stream", body = FeedEvent),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller holds BERTH_MAX_STREAMS_PER_SUBJECT streams open already (`too_many_streams`, with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/events")]
pub async fn stream_events(
    who: Authorized<Viewer>,
    state: web::Data<AppState>,
    Qs(_q): Qs<EventsQuery>,
) -> ApiResult<impl Responder> {
    use futures_util::StreamExt;
    let slot = super::sse::slot(&state, &who)?;
    let deadline = who.stream_deadline();
    let feed = state.jobs.state_feed(who.principal.clone()).map(|item| match item {
        StateFeedItem::Changed { job_id, kind, owner, host, state, seq } => {
            let payload = StateEvent { state, job_id: Some(job_id), kind: Some(kind), owner: Some(owner), host: Some(host) };
            sse_json("state", &payload).id(seq.to_string()).into()
        }
        // A slow reader lost some: say so (ids are per job, so a resume by Last-Event-ID
        // cannot fill the gap; GET /v1/jobs can).
        StateFeedItem::Lagged(missed) => sse_json("lagged", &serde_json::json!({"missed": missed})).into(),
    });
    Ok(super::sse::stream(feed, deadline, slot))
}
