//! The engines Berth drives: `GET /v1/hosts` and `GET /v1/hosts/{name}`, each probed
//! when asked (ping and info, within a few seconds), and the `?host=` router: a request
//! that names a host is served with that host's engine.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, get, web};

use super::extract::{Authorized, Viewer};
use super::problem::{ApiError, ApiResult, Problem};
use crate::auth::Principal;
use crate::docker::fleet::{Fleet, HostView};
use crate::error::ErrorCode;
use crate::state::AppState;

/// 404 `host_not_found`, naming the host.
pub(crate) fn host_not_found(name: &str) -> ApiError {
    ApiError::new(ErrorCode::HostNotFound, format!("No host named {} (see GET /v1/hosts).", name.escape_debug())).on_host(name)
}

/// List the engines (`docker context ls`).
///
/// Viewer. Every engine the caller's team is given (engines without a `teams` list are
/// everyone's; admin sees all), probed now, concurrently: `healthy`, `last_ping`, the
/// `error` when it does not answer, and its versions (the engine's and the negotiated
/// API version), OS, architecture and counts. The first is the `default` host.
#[utoipa::path(
    tag = "system",
    operation_id = "list_hosts",
    responses(
        (status = 200, description = "The engines, default first", body = Vec<HostView>),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/hosts")]
pub async fn list_hosts(who: Authorized<Viewer>, state: web::Data<AppState>) -> web::Json<Vec<HostView>> {
    let fleet = &state.fleet;
    let probes = fleet.hosts().iter().enumerate().filter(|(_, h)| h.open_to(&who)).map(|(i, h)| h.probe(i == 0, who.is_admin()));
    web::Json(futures_util::future::join_all(probes).await)
}

/// One engine, probed now.
///
/// Viewer. An engine not given to the caller's team is 404 `host_not_found`, as is a
/// name no engine has.
#[utoipa::path(
    tag = "system",
    operation_id = "get_host",
    params(("name" = String, Path, description = "The engine's name")),
    responses(
        (status = 200, description = "The engine", body = HostView),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such host (`host_not_found`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/hosts/{name}")]
pub async fn get_host(who: Authorized<Viewer>, state: web::Data<AppState>, name: web::Path<String>) -> ApiResult<web::Json<HostView>> {
    let fleet = &state.fleet;
    let is_default = fleet.default_host().entry.name == *name;
    match fleet.get(&name).filter(|h| h.open_to(&who)) {
        Some(h) => Ok(web::Json(h.probe(is_default, who.is_admin()).await)),
        None => Err(host_not_found(&name)),
    }
}

tokio::task_local! {
    /// The host a request named with `?host=`, while it is served.
    static HOST: String;
}

/// The host the request being served named with `?host=`, if any.
pub fn current_host() -> Option<String> {
    HOST.try_with(|h| h.clone()).ok()
}

/// Whether a request queues a job (build, pull, push, run, a prune): its host is the
/// body's `host` or `?host=`, resolved by [`job_host`].
fn job_route(method: &actix_web::http::Method, path: &str) -> bool {
    method == actix_web::http::Method::POST
        && (["/v1/images/build", "/v1/images/pull", "/v1/images/push", "/v1/containers"].contains(&path) || path.ends_with("/prune"))
}

/// Whether a request starts an exec instance: it runs on the host that holds the
/// instance (recorded when it was made), whatever `?host=` says.
pub(crate) fn exec_route(path: &str) -> bool {
    path.starts_with("/v1/exec/")
}

/// The host a job runs on, and its engine: the body's `host`, else `?host=`, else the
/// default host. It must be one the caller may use (else 404 `host_not_found`); a body
/// and a query that name two hosts are 400.
pub(crate) fn job_host(state: &AppState, who: &Principal, body: Option<String>) -> ApiResult<(String, std::sync::Arc<crate::docker::Engine>)> {
    let query = current_host();
    let name = match (body, query) {
        (Some(b), Some(q)) if b != q => {
            return Err(ApiError::invalid(format!(
                "`host` is {} in the body and {} in the query; name one host",
                b.escape_debug(),
                q.escape_debug()
            )));
        }
        (Some(b), _) => b,
        (None, Some(q)) => q,
        (None, None) => state.fleet.default_host().entry.name.clone(),
    };
    match state.fleet.get(&name).filter(|h| h.open_to(who)) {
        Some(h) => Ok((name, h.engine.clone())),
        None => Err(host_not_found(&name)),
    }
}

/// Whether a `/v1` route acts on an engine (not jobs, the audit log, tickets or hosts).
pub(crate) fn engine_route(path: &str) -> bool {
    !["/v1/jobs", "/v1/events", "/v1/audit", "/v1/tickets", "/v1/hosts"].iter().any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// Which host `?host=NAME` routes to: an unknown name (or an engine not given to the
/// caller's team) is 404 `host_not_found`.
fn route<'a>(fleet: &'a Fleet, who: Option<&Principal>, host: &str) -> Result<&'a crate::docker::fleet::Host, ApiError> {
    fleet.get(host).filter(|h| who.is_none_or(|w| h.open_to(w))).ok_or_else(|| host_not_found(host))
}

/// The `/v1` middleware for `?host=`, after authentication: the request is served with
/// the named host's engine (see [`route`]), and its problems name the host.
pub async fn host_guard(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    let host = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.0.into_iter().find(|(k, _)| k == "host").map(|(_, v)| v));
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let who = req.extensions().get::<Principal>().cloned();
    // No `host`: the default host, which a team may not have been given either (a job
    // may still name its host in its body: `job_host` decides).
    let on_default = engine_route(req.path()) && !job_route(req.method(), req.path()) && !exec_route(req.path());
    let host = match host {
        Some(h) => h,
        None if on_default && !who.as_ref().is_none_or(|w| state.fleet.default_host().open_to(w)) => {
            state.fleet.default_host().entry.name.clone()
        }
        None => {
            if on_default {
                crate::audit::set_host(req.request(), &state.fleet.default_host().entry.name);
            }
            return Ok(next.call(req).await?.map_into_left_body());
        }
    };
    let routed = route(&state.fleet, who.as_ref(), &host)
        .map(|h| (h.engine.clone(), state.event_hubs.get(&h.entry.name).cloned()));
    match routed {
        Err(e) => {
            let res = HOST.sync_scope(host, || actix_web::ResponseError::error_response(&e));
            // Answered as a response, not an `Err`, so the outer middleware adds the request id.
            Ok(req.into_response(res).map_into_right_body())
        }
        Ok((engine, hub)) => {
            crate::audit::set_host(req.request(), &host);
            if !std::sync::Arc::ptr_eq(&engine, &state.engine) {
                let engine_events = hub.unwrap_or_else(|| state.engine_events.clone());
                let mut data = actix_web::dev::Extensions::new();
                data.insert(web::Data::new(AppState { engine, engine_events, ..(**state).clone() }));
                req.add_data_container(std::rc::Rc::new(data));
            }
            Ok(HOST.scope(host, next.call(req)).await?.map_into_left_body())
        }
    }
}
