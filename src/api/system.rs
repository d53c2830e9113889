//! Health, readiness and engine information.

use actix_web::{HttpResponse, get, web, route};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{Authorized, Viewer};
use super::responses::{EdgeErrors, EngineErrors};
use crate::docker::EngineInfo;
use crate::api::problem::{ApiError, ApiResult, Problem};
use crate::error::ErrorCode;
use crate::state::AppState;

/// Berth itself.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceInfo {
    pub name: String,
    pub version: String,
    /// The engine Berth drives (`DOCKER_HOST`).
    pub docker_host: String,
}

/// Engine and service information.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SystemView {
    pub service: ServiceInfo,
    pub engine: EngineInfo,
}

/// Liveness and readiness answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// `ok`, or `unavailable` (readiness only).
    pub status: String,
    /// Per dependency: `ok` or why not (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<std::collections::BTreeMap<String, String>>,
}

/// Engine and service information (`docker info`, `docker version`).
///
/// The engine's version, its API version and the one Berth negotiated, OS and
/// architecture, container and image counts; and Berth's own name, version and the
/// engine it drives.
#[utoipa::path(
    tag = "system",
    responses(
        (status = 200, description = "Engine and service information", body = SystemView),
        EngineErrors,
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/system")]
pub async fn system_info(_: Authorized<Viewer>, state: web::Data<AppState>) -> ApiResult<web::Json<SystemView>> {
    let engine = state.engine.info().await?;
    Ok(web::Json(SystemView {
        service: ServiceInfo {
            name: "berth".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            docker_host: state.engine.host().to_string(),
        },
        engine,
    }))
}

/// Liveness probe.
///
/// 200 as long as the process answers, whatever the engine's state. Unauthenticated;
/// also answers `HEAD`.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "system",
    responses((status = 200, description = "Alive", body = HealthView), EdgeErrors),
    security()
)]
#[route("/healthz", method = "GET", method = "HEAD")]
pub async fn healthz() -> web::Json<HealthView> {
    web::Json(HealthView { status: "ok".into(), checks: None })
}

/// Readiness probe.
///
/// 200 when the engine answers a ping and the job store is writable; else 503, with
/// `checks` saying which dependency is down. Unauthenticated; also answers `HEAD`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "system",
    responses(
        (status = 200, description = "Ready", body = HealthView),
        (status = 503, description = "A dependency is down; `checks` says which", body = HealthView),
        EdgeErrors,
    ),
    security()
)]
#[route("/readyz", method = "GET", method = "HEAD")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut checks = std::collections::BTreeMap::new();
    let docker = match state.engine.ping().await {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    let store = match state.jobs.check_store().await {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    let ready = docker == "ok" && store == "ok";
    checks.insert("docker".to_string(), docker);
    checks.insert("store".to_string(), store);
    let body = HealthView { status: if ready { "ok" } else { "unavailable" }.into(), checks: Some(checks) };
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

/// Prometheus metrics.
///
/// OpenMetrics text: requests by route and status, request latency, jobs finished by
/// kind and state, jobs queued and running. Unauthenticated when `BERTH_METRICS_PUBLIC`
/// is set, else the admin role.
#[utoipa::path(
    tag = "system",
    responses(
        (status = 200, description = "Metrics", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "No or bad token (unless BERTH_METRICS_PUBLIC)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not admin (unless BERTH_METRICS_PUBLIC)", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = ["admin"]))
)]
#[get("/metrics")]
pub async fn metrics(req: actix_web::HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    if !state.settings.metrics_public {
        let who = crate::api::extract::principal(&req)?;
        if !who.is_admin() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "/metrics needs the admin role (or BERTH_METRICS_PUBLIC=true).",
            ));
        }
    }
    let metrics = state.jobs.metrics();
    if let Ok(n) = state.jobs.queued().await {
        metrics.jobs_queued.set(n as i64);
    }
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(metrics.encode()))
}
