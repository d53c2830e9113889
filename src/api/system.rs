//! Health, readiness and engine information.

use actix_web::{HttpResponse, get, web, route};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{Authorized, Viewer};
use super::responses::{EdgeErrors, EngineErrors};
use crate::docker::{DiskUsage, EngineInfo};
use crate::api::problem::{ApiError, ApiResult, Problem};
use crate::error::ErrorCode;
use crate::metrics::Format;
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

/// The engine's disk use (`docker system df`).
///
/// Images, containers, volumes and the build cache: per kind `count`, `active`, `size`
/// and `reclaimable` bytes (as `docker system df` counts them: images no container uses,
/// stopped containers' writable layers, volumes no container references, build cache
/// not in use) and the `items`. To a non-admin, the container and volume items are those
/// of their team (the team rule on the `berth.team` label, as for the container list),
/// and those kinds' totals are computed from those items; images are shared, so their
/// totals and items are the engine's; the build cache shows its totals only (`items`
/// empty: its records describe other teams' build steps).
#[utoipa::path(
    tag = "system",
    operation_id = "disk_usage",
    responses(
        (status = 200, description = "Disk use by kind", body = DiskUsage),
        EngineErrors,
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/system/df")]
pub async fn disk_usage(who: Authorized<Viewer>, state: web::Data<AppState>) -> ApiResult<web::Json<DiskUsage>> {
    let mut usage = state.engine.disk_usage().await?;
    if !who.is_admin() {
        use crate::domain::scope::{Access, access};
        let unmanaged = state.settings.unmanaged;
        let sees = |labels: &std::collections::HashMap<String, String>| access(&who, Some(labels), unmanaged) != Access::None;
        let containers = std::mem::take(&mut usage.containers.items).into_iter().filter(|c| sees(&c.labels)).collect();
        usage.containers = crate::docker::containers_usage(containers);
        let volumes = std::mem::take(&mut usage.volumes.items).into_iter().filter(|v| sees(&v.labels)).collect();
        usage.volumes = crate::docker::volumes_usage(volumes);
        usage.build_cache.items.clear();
    }
    Ok(web::Json(usage))
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
/// 200 when the default host's engine answers a ping and the job store is writable;
/// else 503, with `checks` saying which dependency is down. With several engines
/// (`BERTH_ENGINES_FILE`), `checks` also has `host:NAME` (`ok` or `unavailable`) for each
/// other host, which does not decide readiness. Unauthenticated; also answers `HEAD`.
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
    // The other hosts are reported, not required: one host down leaves Berth ready.
    let others = state.fleet.hosts().iter().skip(1).map(|h| async move {
        let up = matches!(tokio::time::timeout(std::time::Duration::from_secs(3), h.engine.ping()).await, Ok(Ok(())));
        (format!("host:{}", h.entry.name), if up { "ok" } else { "unavailable" }.to_string())
    });
    checks.extend(futures_util::future::join_all(others).await);
    checks.insert("docker".to_string(), docker);
    checks.insert("store".to_string(), store);
    // Which store, and this replica's name when several share it.
    let (backend, replica) = state.jobs.store_backend();
    checks.insert("store_backend".to_string(), backend.to_string());
    if let Some(r) = replica {
        checks.insert("replica".to_string(), r.to_string());
    }
    let body = HealthView { status: if ready { "ok" } else { "unavailable" }.into(), checks: Some(checks) };
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

/// Prometheus metrics
///
/// Prometheus metrics: HTTP requests and latency by route pattern, jobs by kind and
/// state, the queue depth, job durations, open event streams and WebSocket sessions,
/// engine call latency and errors, and the process (RSS, fds, CPU). OpenMetrics text,
/// or the Prometheus text format (`text/plain; version=0.0.4`) when `Accept` prefers it.
/// Open to the scrape token of `BERTH_METRICS_TOKEN_FILE` (which opens nothing else), to
/// admins, and to everyone with `BERTH_METRICS_PUBLIC`.
#[utoipa::path(
    tag = "system",
    responses(
        (status = 200, description = "Metrics", content((String = "application/openmetrics-text"), (String = "text/plain"))),
        (status = 401, description = "No or bad token (unless BERTH_METRICS_PUBLIC)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Neither admin nor the scrape token (unless BERTH_METRICS_PUBLIC)", body = Problem, content_type = "application/problem+json"),
    ),
    security((), ("bearer" = ["admin"]))
)]
#[get("/metrics")]
pub async fn metrics(req: actix_web::HttpRequest, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    authorize_scrape(&req, &state.settings).await?;
    if let Err(e) = state.jobs.refresh_metrics().await {
        tracing::warn!(error = %e, "reading job counts for /metrics failed; serving the rest");
    }
    let metrics = state.jobs.metrics();
    metrics.sse_streams.set(state.sessions.streams_open() as i64);
    metrics.ws_sessions.set(state.sessions.open() as i64);
    let format = scrape_format(&req);
    Ok(HttpResponse::Ok().content_type(format.content_type()).body(metrics.encode(format)))
}

/// Who may scrape: everyone with `BERTH_METRICS_PUBLIC`, the bearer of the scrape token,
/// admins.
async fn authorize_scrape(req: &actix_web::HttpRequest, settings: &crate::config::Settings) -> Result<(), ApiError> {
    if settings.metrics_public {
        return Ok(());
    }
    if let (Some(expected), Some(given)) = (&settings.metrics_token, super::extract::header_token(req)?) {
        use sha2::{Digest, Sha256};
        // Compared as digests: the time taken tells nothing about the token.
        if Sha256::digest(secrecy::ExposeSecret::expose_secret(expected).as_bytes()) == Sha256::digest(given.as_bytes()) {
            return Ok(());
        }
    }
    let who = crate::api::extract::principal(req).await?;
    if !who.is_admin() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "/metrics needs the admin role or the scrape token of BERTH_METRICS_TOKEN_FILE (or BERTH_METRICS_PUBLIC=true).",
        ));
    }
    Ok(())
}

/// OpenMetrics, unless `Accept` ranks `text/plain` above it (Prometheus itself asks for
/// OpenMetrics first; `*/*` and no `Accept` get OpenMetrics).
fn scrape_format(req: &actix_web::HttpRequest) -> Format {
    use actix_web::http::header::{Accept, Header, Quality};
    let Ok(accept) = Accept::parse(req) else { return Format::OpenMetrics };
    if accept.0.is_empty() {
        return Format::OpenMetrics;
    }
    let q = |kind: &str, sub: &str| {
        let ranks = accept.0.iter().filter(|item| {
            let m = &item.item;
            (m.type_() == kind || m.type_() == "*") && (m.subtype() == sub || m.subtype() == "*")
        });
        // The most specific range that matches decides (RFC 9110 §12.5.1).
        ranks.max_by_key(|item| (item.item.type_() != "*") as u8 + (item.item.subtype() != "*") as u8).map_or(Quality::ZERO, |item| item.quality)
    };
    if q("text", "plain") > q("application", "openmetrics-text") { Format::Prometheus } else { Format::OpenMetrics }
}
