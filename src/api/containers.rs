//! `/v1/containers`: list, inspect, start/stop/restart/kill, remove, logs (SSE).

use super::streams::sse_framing;
use actix_web::{HttpResponse, Responder, delete, get, post, web};
use futures_util::{Stream, StreamExt, stream};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::scope::{self, Need};
use super::sse::sse_json;
use super::extract::Qs;
use super::responses::{ContainerActionErrors, EngineErrors, JobSubmitted};
use super::sse::{self, numbered};
// The job event streams (api/jobs.rs) take these from here.
use crate::domain::de_bool_opt;
use crate::api::extract::{Authorized, Operator, Viewer};
use crate::auth::Principal;
use crate::docker::{ContainerFilters, ContainerSummary, LogLine, LogOptions};
use crate::domain::names::{validate_container_ref, validate_signal};
use crate::api::problem::{ApiError, ApiResult, Problem};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContainerListQuery {
    /// Include stopped containers (`docker ps -a`).
    #[serde(default, deserialize_with = "de_bool_opt")]
    #[param(value_type = Option<bool>)]
    pub all: Option<bool>,
    /// Label filters, `key` or `key=value` (repeatable, all must match).
    #[serde(default)]
    pub label: Vec<String>,
    /// Only containers in these states (repeatable).
    #[serde(default)]
    #[param(schema_with = statuses)]
    pub status: Vec<String>,
    /// Name substring (repeatable).
    #[serde(default)]
    pub name: Vec<String>,
    /// Only containers of this team (labelled `berth.team=<team>`). Whatever the filter,
    /// a non-admin sees only their own team's containers (and, per `BERTH_UNMANAGED`,
    /// those made outside Berth).
    pub team: Option<String>,
}

const STATUSES: [&str; 7] = ["created", "restarting", "running", "removing", "paused", "exited", "dead"];

fn statuses() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .description(Some("Only containers in these states (repeatable)."))
        .items(super::openapi::one_of("A container state.", &STATUSES))
        .build()
}

impl ContainerListQuery {
    /// The engine's filters, once each is checked.
    fn filters(self) -> ApiResult<ContainerFilters> {
        if let Some(bad) = self.status.iter().find(|s| !STATUSES.contains(&s.as_str())) {
            return Err(ApiError::invalid(format!("`status` must be one of {}, not `{}`", STATUSES.join(", "), bad.escape_debug())));
        }
        if self.name.iter().any(|n| n.is_empty() || n.len() > 256 || n.chars().any(char::is_control)) {
            return Err(ApiError::invalid("`name` must be a non-empty name pattern without control characters"));
        }
        let label = scope::label_filters(&self.label, self.team.as_deref())?;
        Ok(ContainerFilters { all: self.all.unwrap_or(false), label, status: self.status, name: self.name })
    }
}

/// List containers (`docker ps`).
///
/// Running ones only unless `all=true`; filtered by `status`, `name` and `label`. Those
/// of the caller's team; an admin sees all, and picks one team with `team=`.
#[utoipa::path(
    tag = "containers",
    params(ContainerListQuery),
    responses(
        (status = 200, description = "The containers", body = Vec<ContainerSummary>),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/containers")]
pub async fn list_containers(
    who: Authorized<Viewer>,
    state: web::Data<AppState>,
    Qs(q): Qs<ContainerListQuery>,
) -> ApiResult<web::Json<Vec<ContainerSummary>>> {
    let list = state.engine.list_containers(&q.filters()?).await?;
    Ok(web::Json(scope::visible(&state, &who, list)))
}

pub(crate) fn container_id(path: web::Path<String>) -> ApiResult<String> {
    let id = path.into_inner();
    validate_container_ref(&id)?;
    Ok(id)
}

/// The container a path names (name, id, or an id prefix of 12+), as the caller's team
/// may reach it for `need` ([`scope::container`]).
async fn resolved(state: &AppState, who: &Principal, path: web::Path<String>, need: Need) -> ApiResult<scope::Scoped> {
    let given = container_id(path)?;
    scope::container(state, who, &given, need).await
}

/// An action on the container a path names: resolve it (in the caller's scope), act,
/// answer 204. Never on Berth's own container.
async fn act_on(
    state: &AppState,
    who: &Principal,
    path: web::Path<String>,
    action: impl AsyncFnOnce(&AppState, &str) -> ApiResult<()>,
) -> ApiResult<HttpResponse> {
    let id = resolved(state, who, path, Need::Act).await?.id;
    refuse_own_container(state, &id).await?;
    action(state, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// 403 `forbidden` when `id` (a full id) is Berth's own container: nobody, admin
/// included, stops, restarts, kills, removes, execs into or attaches to it through Berth,
/// which would cut the branch it sits on (or hand out its secrets and its socket).
pub(crate) async fn refuse_own_container(state: &AppState, id: &str) -> ApiResult<()> {
    let Some(own) = state.settings.self_container.as_deref() else { return Ok(()) };
    // Start-up resolved it to a full id, unless the engine did not answer then.
    let is_full_id = own.len() == 64 && own.bytes().all(|b| b.is_ascii_hexdigit());
    let own_id = if is_full_id { Some(own.to_string()) } else { state.engine.resolve_container(own).await.ok() };
    if own_id.as_deref() != Some(id) {
        return Ok(());
    }
    Err(ApiError::new(
        crate::error::ErrorCode::Forbidden,
        format!(
            "Container {id} is Berth's own container (BERTH_SELF_CONTAINER, or found at start): nobody stops, restarts, \
             kills, removes, execs into or attaches to it through Berth. Manage it on the host."
        ),
    ))
}

/// Inspect a container (`docker inspect`).
///
/// By id, id prefix or name. The body is the engine's own inspect document, except that
/// to anyone but admin each environment entry shows its key and not its value
/// (`KEY=<redacted>`).
#[utoipa::path(
    tag = "containers",
    params(("id" = String, Path, description = "Container id, id prefix or name")),
    responses(
        (status = 200, description = "The engine's inspect document", body = Object),
        (status = 400, description = "Not a valid id or name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such container (`container_not_found`)", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/containers/{id}")]
pub async fn inspect_container(
    who: Authorized<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<web::Json<serde_json::Value>> {
    let mut doc = resolved(&state, &who, id, Need::Read).await?.doc;
    if !who.is_admin() {
        redact_env_values(&mut doc);
    }
    Ok(web::Json(doc))
}

/// Hide the values of an inspect document's environment (`Config.Env`, and an image's
/// `ContainerConfig.Env`): secrets live there. Each entry keeps its key
/// (`KEY=<redacted>`; an entry without `=` is a key already).
pub(crate) fn redact_env_values(doc: &mut serde_json::Value) {
    for pointer in ["/Config/Env", "/ContainerConfig/Env"] {
        let Some(env) = doc.pointer_mut(pointer).and_then(serde_json::Value::as_array_mut) else { continue };
        for entry in env.iter_mut() {
            let key = match entry.as_str() {
                Some(kv) => match kv.split_once('=') {
                    Some((key, _)) => format!("{key}={}", crate::domain::job_spec::REDACTED),
                    None => kv.to_string(),
                },
                // Not a string: nothing the engine sends; show nothing of it.
                None => crate::domain::job_spec::REDACTED.to_string(),
            };
            *entry = serde_json::Value::String(key);
        }
    }
}

/// Start a container (`docker start`).
///
/// A running container stays running (204 all the same).
#[utoipa::path(
    tag = "containers",
    params(("id" = String, Path, description = "Container id, id prefix or name")),
    responses(
        (status = 204, description = "Started"),
        (status = 409, description = "The container is being removed", body = Problem, content_type = "application/problem+json"),
        ContainerActionErrors,
    ),
    security(("bearer" = ["operator"]))
)]
#[post("/containers/{id}/start")]
pub async fn start_container(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    act_on(&state, &who, id, async |s, id| Ok(s.engine.start_container(id).await?)).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StopQuery {
    /// Seconds to wait after SIGTERM before SIGKILL (engine default: 10), at most 300.
    #[param(minimum = 0, maximum = 300)]
    pub timeout: Option<u32>,
}

/// The longest stop or restart `timeout`: the request waits that long for the engine.
const MAX_STOP_TIMEOUT: u32 = 300;

fn stop_timeout(q: &StopQuery) -> ApiResult<Option<i32>> {
    match q.timeout {
        Some(t) if t > MAX_STOP_TIMEOUT => {
            Err(ApiError::invalid(format!("`timeout` must be between 0 and {MAX_STOP_TIMEOUT} seconds")))
        }
        t => Ok(t.map(|t| t as i32)),
    }
}

/// Stop a container (`docker stop`).
///
/// Sends SIGTERM, then SIGKILL after `timeout` seconds; the request waits for the
/// container to stop. A stopped container stays stopped.
#[utoipa::path(
    tag = "containers",
    params(("id" = String, Path, description = "Container id, id prefix or name"), StopQuery),
    responses(
        (status = 204, description = "Stopped (or already stopped)"),
        (status = 409, description = "The container is being removed", body = Problem, content_type = "application/problem+json"),
        ContainerActionErrors,
    ),
    security(("bearer" = ["operator"]))
)]
#[post("/containers/{id}/stop")]
pub async fn stop_container(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    Qs(q): Qs<StopQuery>,
) -> ApiResult<HttpResponse> {
    let timeout = stop_timeout(&q)?;
    act_on(&state, &who, id, async |s, id| Ok(s.engine.stop_container(id, timeout).await?)).await
}

/// Restart a container (`docker restart`).
///
/// Stops it as `stop` does (SIGTERM, SIGKILL after `timeout` seconds), then starts it.
#[utoipa::path(
    tag = "containers",
    params(("id" = String, Path, description = "Container id, id prefix or name"), StopQuery),
    responses(
        (status = 204, description = "Restarted"),
        (status = 409, description = "The container is being removed", body = Problem, content_type = "application/problem+json"),
        ContainerActionErrors,
    ),
    security(("bearer" = ["operator"]))
)]
#[post("/containers/{id}/restart")]
pub async fn restart_container(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    Qs(q): Qs<StopQuery>,
) -> ApiResult<HttpResponse> {
    let timeout = stop_timeout(&q)?;
    act_on(&state, &who, id, async |s, id| Ok(s.engine.restart_container(id, timeout).await?)).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KillQuery {
    /// Signal name or number (default `SIGKILL`).
    pub signal: Option<String>,
}

/// Send a signal to a container (`docker kill`).
///
/// `signal` (default `SIGKILL`) goes to the container's main process; 409 `conflict` when
/// the container is not running.
#[utoipa::path(
    tag = "containers",
    params(("id" = String, Path, description = "Container id, id prefix or name"), KillQuery),
    responses(
        (status = 204, description = "Signal sent"),
        (status = 409, description = "Not running", body = Problem, content_type = "application/problem+json"),
        ContainerActionErrors,
    ),
    security(("bearer" = ["operator"]))
)]
#[post("/containers/{id}/kill")]
pub async fn kill_container(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    Qs(q): Qs<KillQuery>,
) -> ApiResult<HttpResponse> {
    let signal = q.signal.unwrap_or_else(|| "SIGKILL".into());
    validate_signal(&signal)?;
    act_on(&state, &who, id, async |s, id| Ok(s.engine.kill_container(id, &signal).await?)).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Kill a running container first (`docker rm -f`).
    #[serde(default, deserialize_with = "de_bool_opt")]
    #[param(value_type = Option<bool>)]
    pub force: Option<bool>,
    /// Also remove its anonymous volumes (`docker rm -v`).
    #[serde(default, deserialize_with = "de_bool_opt")]
    #[param(value_type = Option<bool>)]
    pub volumes: Option<bool>,
}

/// Remove a container (`docker rm`).
///
/// A running container needs `force=true` (else 409 `conflict`); `volumes=true` also
/// removes its anonymous volumes.
#[utoipa::path(
    tag = "containers",
    params(("id" = String, Path, description = "Container id, id prefix or name"), RemoveQuery),
    responses(
        (status = 204, description = "Removed"),
        (status = 409, description = "Running, and `force` not set", body = Problem, content_type = "application/problem+json"),
        ContainerActionErrors,
    ),
    security(("bearer" = ["operator"]))
)]
#[delete("/containers/{id}")]
pub async fn remove_container(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    Qs(q): Qs<RemoveQuery>,
) -> ApiResult<HttpResponse> {
    let (force, volumes) = (q.force.unwrap_or(false), q.volumes.unwrap_or(false));
    act_on(&state, &who, id, async |s, id| Ok(s.engine.remove_container(id, force, volumes).await?)).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Keep the stream open and send new output as it comes (`docker logs -f`).
    #[serde(default, deserialize_with = "de_bool_opt")]
    #[param(value_type = Option<bool>)]
    pub follow: Option<bool>,
    /// Number of lines from the end, or `all` (default).
    pub tail: Option<String>,
    /// Only output since: Unix seconds, an RFC 3339 time, or a duration ago (`10m`, `1h30m`).
    pub since: Option<String>,
    /// Prefix each line with its RFC 3339 timestamp.
    #[serde(default, deserialize_with = "de_bool_opt")]
    #[param(value_type = Option<bool>)]
    pub timestamps: Option<bool>,
    /// The bearer token, for clients that cannot set headers (EventSource).
    pub access_token: Option<String>,
    /// A single-use stream ticket (`POST /v1/tickets`), in place of the token.
    pub ticket: Option<String>,
}

impl LogsQuery {
    /// The engine's log options, once each is checked.
    fn options(&self) -> ApiResult<LogOptions> {
        let tail = match self.tail.as_deref() {
            None | Some("all") => None,
            Some(n) => Some(n.parse::<u64>().map_err(|_| ApiError::invalid("`tail` must be a number of lines or `all`"))?),
        };
        let since = self.since.as_deref().map(parse_since).transpose()?;
        Ok(LogOptions { follow: self.follow.unwrap_or(false), tail, since, timestamps: self.timestamps.unwrap_or(false) })
    }
}

/// The last event of a log stream.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogEndEvent {
    /// The container's state when the log ended (`running`, `exited`, …).
    pub state: String,
}

fn parse_since(s: &str) -> ApiResult<i64> {
    if let Ok(n) = s.parse::<f64>() {
        if n.is_finite() && n >= 0.0 {
            return Ok(n as i64);
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    if let Ok(d) = humantime::parse_duration(s) {
        let ago = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        return Ok(chrono::Utc::now().timestamp().saturating_sub(ago).max(0));
    }
    Err(ApiError::invalid(format!(
        "`since` must be Unix seconds, an RFC 3339 time or a duration such as `10m`, not `{}`",
        s.escape_debug()
    )))
}

/// Stream a container's output (`docker logs -f`).
///
/// Server-sent events, framed as the 200 answer says.
/// Events: `log` (`{stream: "stdout"|"stderr", text}`, `id:` counting from 1), `error`
/// (`{code, message}`) if the engine fails midway, and last `end` (`{state}`: the
/// container's state then), after which the server closes the stream. A comment line is
/// sent every 10 s while idle. Takes `?access_token=` in place of the header.
#[utoipa::path(
    tag = "containers",
    params(("id" = String, Path, description = "Container id, id prefix or name"), LogsQuery),
    responses(
        (status = 200, description = sse_framing!("Events: `log` (LogLine), `error` (JobError) if the engine fails midway, and last `end` (LogEndEvent), after which the server closes the stream; `id:` counts from 1."), content_type = "text/event-stream", body = crate::api::streams::LogStreamEvent),
        (status = 400, description = "Bad id or query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such container", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller holds BERTH_MAX_STREAMS_PER_SUBJECT streams open already (`too_many_streams`, with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/containers/{id}/logs")]
pub async fn container_logs(
    who: Authorized<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    Qs(q): Qs<LogsQuery>,
) -> ApiResult<impl Responder> {
    let given = container_id(id)?;
    let opts = q.options()?;
    // Each follow holds an engine connection: the caller's share is counted first.
    let slot = sse::slot(&state, &who)?;
    // Fail before the stream starts when the container does not exist (for the caller).
    let id = scope::container(&state, &who, &given, Need::Read).await?.id;
    let lines = state.engine.logs(&id, &opts).await?;
    let end = stream::once(end_event(state.clone(), id));
    Ok(sse::stream(numbered(log_events(lines).chain(end)), who.stream_deadline(), slot))
}

/// The engine's log lines as `log` events; when the engine fails midway, an `error`
/// event and nothing more.
fn log_events<E>(lines: impl Stream<Item = Result<LogLine, E>> + Send + 'static) -> impl Stream<Item = sse::Data> + Send
where
    E: Send,
    ApiError: From<E>,
{
    stream::unfold(Some(Box::pin(lines)), |lines| async move {
        let mut lines = lines?;
        Some(match lines.next().await? {
            Ok(line) => (sse_json("log", &line), Some(lines)),
            Err(e) => {
                let err = ApiError::from(e);
                (sse_json("error", &serde_json::json!({"code": err.code, "message": err.detail})), None)
            }
        })
    })
}

/// The `end` event: the container's state once its log ended.
pub(crate) async fn end_event(state: web::Data<AppState>, id: String) -> sse::Data {
    let state = match state.engine.inspect_container(&id).await {
        Ok(v) => v.pointer("/State/Status").and_then(|s| s.as_str()).unwrap_or("unknown").to_string(),
        Err(_) => "removed".to_string(),
    };
    sse_json("end", &LogEndEvent { state })
}

// ---- jobs ---------------------------------------------------------------------------------

/// Run a container (`docker run`).
///
/// Queues a `run` job: pull per `pull`, create, start. With `detach=true`
/// (default) the job ends once the container started, result `{container_id}`; with
/// `detach=false` its output comes as `log` events and the result is
/// `{container_id, exit_code}` (the job succeeds whatever the exit code). Options that
/// give power over the host (`privileged`, host `binds`/volumes, `network: host`, a host
/// port below 1024, …) need admin: else 403 `policy_violation` naming the option, before
/// anything is queued; so does a named volume outside `BERTH_ALLOWED_VOLUMES` and the
/// caller's team. A non-admin's `memory_bytes`, `nano_cpus` and `pids_limit` are bounded
/// (400 `invalid_request` naming the field and the bound).
#[utoipa::path(
    tag = "containers",
    request_body = crate::domain::run::RunContainerRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Return the job already made with this key")),
    responses(
        JobSubmitted,
    ),
    security(("bearer" = ["operator"]))
)]
#[post("/containers")]
pub async fn run_container(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: web::Json<crate::domain::run::RunContainerRequest>,
) -> ApiResult<HttpResponse> {
    let role = who.role.unwrap_or(crate::auth::Role::Viewer);
    let mut body = body.into_inner();
    let (host, engine) = crate::api::hosts::job_host(&state, &who, body.host.take())?;
    let spec = crate::jobs::JobSpec::run(body, role, Some(&state.settings.policy))?;
    state.jobs.check_run_volumes(&*engine, &spec, role, &who.team).await.map_err(|e| ApiError::from(e).on_host(&host))?;
    crate::api::submit::submit_job(&state, &req, &who, host, spec, None).await
}

#[cfg(test)]
mod tests {
    use futures_util::{StreamExt, stream};

    use crate::docker::{LogLine, LogStream};
    use crate::domain::Rejection;

    #[tokio::test]
    async fn a_log_that_fails_midway_ends_with_its_error_then_end() {
        let line = |text: &str| Ok(LogLine { stream: LogStream::Stdout, text: text.into() });
        let lines = stream::iter([line("a"), Err(Rejection::invalid("gone")), line("never read")]);
        let end = stream::once(async { super::sse_json("end", &super::LogEndEvent { state: "exited".into() }) });
        let events: Vec<String> =
            super::numbered(super::log_events(lines).chain(end)).map(|e| format!("{e:?}")).collect().await;
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(events[0].contains(r#"id: Some("1"), event: Some("log")"#), "{events:?}");
        assert!(events[1].contains(r#"id: Some("2"), event: Some("error")"#), "{events:?}");
        assert!(events[1].contains("invalid_request") && events[1].contains("gone"), "{events:?}");
        assert!(events[2].contains(r#"id: Some("3"), event: Some("end")"#), "{events:?}");
    }
}
