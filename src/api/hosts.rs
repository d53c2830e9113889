//! The engines Berth drives: `GET /v1/hosts` and `GET /v1/hosts/{name}`, each probed
//! when asked (ping and info, within a few seconds), and the guard that keeps `?host=`
//! from naming an engine this version does not route to.

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

fn host_not_found(name: &str) -> ApiError {
    ApiError::new(ErrorCode::HostNotFound, format!("No host named {} (see GET /v1/hosts).", name.escape_debug()))
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

/// What `?host=NAME` may be today: unknown (or not the caller's team's) is 404
/// `host_not_found`; the default host is served; another configured host is `400`,
/// for the engine routes act on the default host only in this version.
pub fn check_host(fleet: &Fleet, who: Option<&Principal>, host: &str) -> Result<(), ApiError> {
    let known = fleet.get(host).filter(|h| who.is_none_or(|w| h.open_to(w)));
    match known {
        None => Err(host_not_found(host)),
        Some(h) if h.entry.name == fleet.default_host().entry.name => Ok(()),
        Some(h) => Err(ApiError::invalid(format!(
            "`host`: this version serves the engine routes on the default host `{}` only; `{}` is listed by GET /v1/hosts \
             but not routed to yet",
            fleet.default_host().entry.name,
            h.entry.name
        ))),
    }
}

/// The `/v1` middleware for `?host=`, after authentication: see [`check_host`].
pub async fn host_guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    let host = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.0.into_iter().find(|(k, _)| k == "host").map(|(_, v)| v));
    if let (Some(host), Some(state)) = (host, req.app_data::<web::Data<AppState>>().cloned()) {
        let who = req.extensions().get::<Principal>().cloned();
        if let Err(e) = check_host(&state.fleet, who.as_ref(), &host) {
            // Answered as a response, not an `Err`, so the outer middleware adds the request id.
            return Ok(req.into_response(actix_web::ResponseError::error_response(&e)).map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}
