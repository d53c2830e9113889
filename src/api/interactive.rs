//! Interactive containers over WebSocket: attach (`docker attach`), exec (`docker exec -it`).
//! The session itself is [`crate::sessions`]; these handlers check everything that can
//! fail while a problem can still be answered, then upgrade.

use actix_web::{HttpRequest, HttpResponse, get, http::header, post, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::containers::container_id;
use super::extract::Qs;
use super::scope::{self, Need};
use super::responses::{EngineErrors, WebSocketErrors};
use crate::domain::de_bool_opt;
use super::extract::{Authorized, Operator};
use crate::domain::exec::ExecRequest;
use crate::api::problem::{ApiError, ApiResult, Problem};
use crate::error::ErrorCode;
use crate::sessions::{
    ExecClaim, SessionAudit, SessionParams, SessionPermit, SessionPhase, SessionTarget, audit_session, check_handshake,
    check_origin, initial_size,
};
use crate::state::AppState;

/// The framing, for the OpenAPI descriptions (OpenAPI cannot describe a WebSocket).
macro_rules! framing {
    () => {
        "\n\nThe answer is `101 Switching Protocols` (a WebSocket) with `x-berth-tty: true|false`; \
every failure before it is a problem document.\n\n\
**Client → server.** Binary frames: bytes for the process's stdin, as they are (with a TTY, Ctrl-C is the byte \
0x03 and reaches the process as a keypress does). Text frames: one JSON control message: \
`{\"type\":\"resize\",\"cols\":C,\"rows\":R}` (TTY only; 1–10000) or `{\"type\":\"close_stdin\"}` (EOF on stdin, \
output goes on). Messages up to 64 KiB.\n\n\
**Server → client.** Binary frames: output. With a TTY, the raw bytes. Without, the first byte names the stream \
(`1` stdout, `2` stderr, as in Docker's stdcopy header) and the rest is the payload. Text frames: one JSON control \
message: `{\"type\":\"exit\",\"exit_code\":N}` when the process ended, `{\"type\":\"detached\"}` when the engine \
detached while the process goes on (Ctrl-P Ctrl-Q), `{\"type\":\"error\",\"code\":C,\"message\":M}` (`code` from the \
problem catalogue).\n\n\
**Closing.** After `exit` or `detached` the server closes with 1000; after an engine error with 1011; after \
`BERTH_WS_IDLE_TIMEOUT` without a frame either way with 1001; on a protocol error or an oversized message with \
1002/1009. When the client closes, the server detaches: the container or exec goes on."
    };
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttachQuery {
    /// Replay the container's earlier output before the live output (`docker logs` + `docker attach`).
    #[serde(default, deserialize_with = "de_bool_opt")]
    #[param(value_type = Option<bool>)]
    pub logs: Option<bool>,
    /// Initial TTY width (with `rows`; TTY only).
    #[param(minimum = 1, maximum = 10000)]
    pub cols: Option<u16>,
    /// Initial TTY height (with `cols`; TTY only).
    #[param(minimum = 1, maximum = 10000)]
    pub rows: Option<u16>,
    /// The bearer token, for clients that cannot set headers (browsers' WebSocket).
    pub access_token: Option<String>,
    /// A single-use stream ticket (`POST /v1/tickets`), in place of the token.
    pub ticket: Option<String>,
}

/// Attach to a running container over a WebSocket (`docker attach`).
#[utoipa::path(
    tag = "containers",
    params(("id" = String, Path, description = "Container id, id prefix or name"), AttachQuery),
    description = concat!(
        "Attach to a running container's stdin, stdout and stderr over a WebSocket (`docker attach`). stdin is \
         attached when the container has it open (`open_stdin`). Closing the WebSocket detaches; the container goes on. \
         409 when it is not running. `?logs=true` replays the earlier output first.",
        framing!()
    ),
    responses(
        (status = 101, description = "Switched to a WebSocket (framing above). No HTTP body follows: the schema is that of the JSON text messages, ClientControl from the client and ServerControl from the server", content_type = "application/json", body = crate::api::streams::WebSocketMessage, headers(("x-berth-tty" = bool, description = "`true`: binary frames are raw TTY bytes; `false`: their first byte is the stream (1 stdout, 2 stderr)"))),
        WebSocketErrors,
        (status = 404, description = "No such container (`container_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The container is not running (`conflict`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operator"]))
)]
#[get("/containers/{id}/attach")]
pub async fn attach_container(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    Qs(q): Qs<AttachQuery>,
    req: HttpRequest,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    let id = container_id(id)?;
    let (size, permit) = opening(&state, &req, &who, q.cols, q.rows)?;
    let full = scope::container(&state, &who, &id, Need::Act).await?.id;
    let c = state.engine.container_stdio_info(&full).await?;
    crate::audit::set_target(&req, format!("container={}", c.id));
    usable(&state, &c, &who, || format!("Container {id} is not running: start it before attaching.")).await?;
    let stdio = state.engine.attach_stdio(&c.id, c.tty, c.open_stdin, q.logs.unwrap_or(false)).await?;
    if let (true, Some((cols, rows))) = (c.tty, size) {
        state.engine.resize_container_tty(&c.id, cols, rows).await?;
    }
    let target = SessionTarget::Attach { container_id: c.id };
    let audit = SessionAudit { subject: who.subject.clone(), target, tty: c.tty, exec: None };
    let params = session_params(&state, audit, c.open_stdin, permit, None);
    Ok(state.sessions.upgrade(&req, body, params, stdio)?)
}

/// A new exec instance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecCreatedView {
    /// Start it with `GET /v1/exec/{id}/ws`.
    pub id: String,
    /// The container's full id.
    pub container_id: String,
    pub tty: bool,
}

/// Create an exec instance in a running container (`docker exec`).
///
/// Start it by opening the WebSocket `GET /v1/exec/{id}/ws` (the answer's `Location`). stdin, stdout and
/// stderr are attached. An exec instance is started once, by the subject that created it
/// (or an admin), within an hour. `privileged` needs admin (403 `policy_violation`), and
/// so does a container with power over the host (the run list, judged from its inspect
/// document) or one that mounts Berth's own data volume. Berth's own container answers
/// 403 `forbidden` to everyone.
#[utoipa::path(
    tag = "containers",
    params(("id" = String, Path, description = "Container id, id prefix or name")),
    request_body = ExecRequest,
    responses(
        (status = 201, description = "Created; `Location: /v1/exec/{id}/ws`", body = ExecCreatedView),
        (status = 400, description = "Bad body", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role below operator, `policy_violation` (`privileged`, or a container with host power, without admin), or `forbidden` (Berth's own container)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such container (`container_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The container is not running (`conflict`)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["operator"]))
)]
#[post("/containers/{id}/exec")]
pub async fn create_exec(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<ExecRequest>,
) -> ApiResult<HttpResponse> {
    let id = container_id(id)?;
    let spec = body.validate(who.is_admin())?;
    state.sessions.check_exec_quota(&who.subject)?;
    let full = scope::container(&state, &who, &id, Need::Act).await?.id;
    let c = state.engine.container_stdio_info(&full).await?;
    usable(&state, &c, &who, || format!("Container {id} is not running: start it before exec.")).await?;
    let exec_id = state.engine.create_exec(&c.id, &spec).await?;
    let host = super::hosts::current_host().unwrap_or_else(|| state.fleet.default_host().entry.name.clone());
    state.sessions.register_exec(&exec_id, &who.subject, &host, &c.id, &spec);
    let target = SessionTarget::Exec { container_id: c.id.clone(), exec_id: exec_id.clone() };
    let audit = SessionAudit { subject: who.subject.clone(), target, tty: spec.tty, exec: Some(spec.clone()) };
    audit_session(&audit, &SessionPhase::ExecCreated);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/exec/{exec_id}/ws")))
        .json(ExecCreatedView { id: exec_id, container_id: c.id, tty: spec.tty }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecWsQuery {
    /// Initial TTY width (with `rows`; TTY only).
    #[param(minimum = 1, maximum = 10000)]
    pub cols: Option<u16>,
    /// Initial TTY height (with `cols`; TTY only).
    #[param(minimum = 1, maximum = 10000)]
    pub rows: Option<u16>,
    /// The bearer token, for clients that cannot set headers (browsers' WebSocket).
    pub access_token: Option<String>,
    /// A single-use stream ticket (`POST /v1/tickets`), in place of the token.
    pub ticket: Option<String>,
}

fn exec_id(path: web::Path<String>) -> ApiResult<String> {
    let id = path.into_inner();
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::invalid("An exec id is the `id` that POST /v1/containers/{id}/exec answered"));
    }
    Ok(id)
}

/// Start an exec instance on a WebSocket (`docker exec -i[t]`).
#[utoipa::path(
    tag = "containers",
    params(("id" = String, Path, description = "Exec id, from POST /v1/containers/{id}/exec"), ExecWsQuery),
    description = concat!(
        "Start an exec instance and connect it to a WebSocket (`docker exec -i[t]`). The last message is \
         `{\"type\":\"exit\",\"exit_code\":N}`, then the server closes with 1000.",
        framing!()
    ),
    responses(
        (status = 101, description = "Switched to a WebSocket (framing above). No HTTP body follows: the schema is that of the JSON text messages, ClientControl from the client and ServerControl from the server", content_type = "application/json", body = crate::api::streams::WebSocketMessage, headers(("x-berth-tty" = bool, description = "`true`: binary frames are raw TTY bytes; `false`: their first byte is the stream (1 stdout, 2 stderr)"))),
        WebSocketErrors,
        (status = 404, description = "No such exec instance of the caller's (`not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already started, or its container stopped (`conflict`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operator"]))
)]
#[get("/exec/{id}/ws")]
pub async fn exec_session(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    Qs(q): Qs<ExecWsQuery>,
    req: HttpRequest,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    let id = exec_id(id)?;
    let (size, permit) = opening(&state, &req, &who, q.cols, q.rows)?;
    let mut claim = state.sessions.claim_exec(&id, &who)?;
    // On the host that holds the instance, whatever `?host=` says.
    let host = state.fleet.get(&claim.record.host).ok_or_else(|| super::hosts::host_not_found(&claim.record.host))?;
    let state = AppState { engine: host.engine.clone(), ..(**state).clone() };
    let info = state.engine.inspect_exec(&id).await?;
    crate::audit::set_target(&req, format!("exec={id} container={}", info.container_id));
    if info.started {
        return Err(conflict(format!("Exec instance {id} was already started; create a new one.")));
    }
    scope::container(&state, &who, &info.container_id, Need::Act).await?;
    let c = state.engine.container_stdio_info(&info.container_id).await?;
    usable(&state, &c, &who, || format!("The container of exec instance {id} is not running.")).await?;
    let stdio = state.engine.start_exec_stdio(&id, info.tty).await?;
    claim.started();
    if let (true, Some((cols, rows))) = (info.tty, size) {
        state.engine.resize_exec(&id, cols, rows).await?;
    }
    let target = SessionTarget::Exec { container_id: info.container_id, exec_id: id };
    let audit =
        SessionAudit { subject: who.subject.clone(), target, tty: info.tty, exec: Some(claim.record.spec.clone()) };
    let params = session_params(&state, audit, info.open_stdin, permit, Some(claim));
    Ok(state.sessions.upgrade(&req, body, params, stdio)?)
}

/// What both WebSocket routes check before anything else: a WebSocket handshake from an
/// origin the service allows, a valid initial size, and a free session slot of the
/// server's and of the caller's (held by the session).
fn opening(
    state: &AppState,
    req: &HttpRequest,
    who: &crate::auth::Principal,
    cols: Option<u16>,
    rows: Option<u16>,
) -> ApiResult<(Option<(u16, u16)>, SessionPermit)> {
    check_handshake(req)?;
    check_origin(req, &state.settings.cors_origins)?;
    let size = initial_size(cols, rows)?;
    Ok((size, state.sessions.permit(&who.subject)?))
}

/// A session's parameters, with the engine and idle timeout every session has.
fn session_params(
    state: &AppState,
    audit: SessionAudit,
    stdin: bool,
    permit: SessionPermit,
    exec_claim: Option<ExecClaim>,
) -> SessionParams {
    let idle_timeout = state.sessions.idle_timeout();
    SessionParams { engine: state.engine.clone(), audit, stdin, idle_timeout, permit, exec_claim }
}

/// A container a session may use: not Berth's own (403 `forbidden`), the caller may
/// reach its host power and its volumes, and it runs (else 409 `conflict`, saying
/// `not_running`).
async fn usable(
    state: &AppState,
    c: &crate::docker::ContainerStdioInfo,
    who: &crate::auth::Principal,
    not_running: impl FnOnce() -> String,
) -> ApiResult<()> {
    super::containers::refuse_own_container(state, &c.id).await?;
    check_host_power(c, who)?;
    check_protected_volumes(state, c, who)?;
    if !c.running {
        return Err(conflict(not_running()));
    }
    Ok(())
}

/// A shell beside Berth's own data (its job store, contexts, audit log) reads and
/// rewrites them: a non-admin may not attach to or exec in a container that mounts them.
fn check_protected_volumes(
    state: &AppState,
    c: &crate::docker::ContainerStdioInfo,
    who: &crate::auth::Principal,
) -> ApiResult<()> {
    let protected = &state.settings.policy.protected_volumes;
    match c.volumes.iter().find(|v| protected.contains(v)) {
        Some(v) if !who.is_admin() => Err(ApiError::new(
            ErrorCode::PolicyViolation,
            format!(
                "Container {} mounts volume `{v}`, which holds Berth's own data; attaching to it or exec in it is reserved to the admin role.",
                c.id
            ),
        )),
        _ => Ok(()),
    }
}

fn conflict(detail: String) -> ApiError {
    ApiError::new(ErrorCode::Conflict, detail)
}

/// A shell in a container that has power over the host is a shell on the host: attach
/// and exec into one need admin, as creating it did (403 `policy_violation`).
fn check_host_power(c: &crate::docker::ContainerStdioInfo, who: &crate::auth::Principal) -> ApiResult<()> {
    if c.host_power.is_empty() || who.is_admin() {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::PolicyViolation,
        format!(
            "Container {} runs with {} (power over the host); attaching to it or exec in it is reserved to the admin role.",
            c.id,
            c.host_power.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")
        ),
    ))
}
