//! The prune jobs (admin): images, containers, volumes, networks and the build cache.
//! Each takes `dry_run: true`, which computes what the prune would remove, and the
//! space, and removes nothing (see `docker::prune`).

use actix_web::{HttpRequest, HttpResponse, post, web};

use super::extract::{Admin, Authorized};
use super::problem::ApiResult;
use super::responses::JobSubmitted;
use crate::domain::requests::{PruneBuildCacheRequest, PruneImagesRequest, PruneRequest};
use crate::domain::Rejection;
use crate::jobs::JobSpec;
use crate::state::AppState;

/// Queue a prune on the body's `host` (else `?host=`, else the default host).
async fn submit(state: &AppState, req: &HttpRequest, who: &Authorized<Admin>, host: Option<String>, spec: JobSpec) -> ApiResult<HttpResponse> {
    let (host, _) = crate::api::hosts::job_host(state, who, host)?;
    crate::api::submit::submit_job(state, req, who, host, spec, None).await
}

/// Remove unused images (`docker image prune`).
///
/// Admin only. Queues a `prune_images` job: dangling images only, or with `all` every
/// image no container uses, narrowed by `filters`. Result `{deleted, untagged,
/// space_reclaimed, dry_run}`; with `dry_run: true` the images it would remove, and
/// nothing is removed.
#[utoipa::path(
    tag = "images",
    request_body = PruneImagesRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Return the job already made with this key")),
    responses(JobSubmitted),
    security(("bearer" = ["admin"]))
)]
#[post("/images/prune")]
pub async fn prune_images(
    who: Authorized<Admin>,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<PruneImagesRequest>,
) -> ApiResult<HttpResponse> {
    body.filters.validate()?;
    let mut body = body.into_inner();
    submit(&state, &req, &who, body.host.take(), JobSpec::PruneImages(body)).await
}

/// Remove stopped containers (`docker container prune`).
///
/// Admin only. Queues a `prune_containers` job over the containers that are not running
/// and match `filters`. Result `{deleted, space_reclaimed, dry_run}`; with `dry_run:
/// true` the containers it would remove, and nothing is removed.
#[utoipa::path(
    tag = "containers",
    request_body = PruneRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Return the job already made with this key")),
    responses(JobSubmitted),
    security(("bearer" = ["admin"]))
)]
#[post("/containers/prune")]
pub async fn prune_containers(
    who: Authorized<Admin>,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<PruneRequest>,
) -> ApiResult<HttpResponse> {
    body.filters.validate()?;
    let mut body = body.into_inner();
    submit(&state, &req, &who, body.host.take(), JobSpec::PruneContainers(body)).await
}

/// Remove unused volumes (`docker volume prune`).
///
/// Admin only. Queues a `prune_volumes` job over the `local` volumes no container
/// (running or not) mounts, named ones included (as engine 20.10 prunes), narrowed by
/// `filters.label` and `filters.team` (the engine takes no `until` for volumes: 400).
/// Result `{deleted (names), space_reclaimed, dry_run}`; with `dry_run: true` the volumes
/// it would remove, and nothing is removed.
#[utoipa::path(
    tag = "volumes",
    request_body = PruneRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Return the job already made with this key")),
    responses(JobSubmitted),
    security(("bearer" = ["admin"]))
)]
#[post("/volumes/prune")]
pub async fn prune_volumes(
    who: Authorized<Admin>,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<PruneRequest>,
) -> ApiResult<HttpResponse> {
    body.filters.validate()?;
    if body.filters.until.is_some() {
        return Err(Rejection::invalid("`filters.until` is not a volume filter: the engine prunes volumes by label only").into());
    }
    let mut body = body.into_inner();
    submit(&state, &req, &who, body.host.take(), JobSpec::PruneVolumes(body)).await
}

/// Remove unused networks (`docker network prune`).
///
/// Admin only. Queues a `prune_networks` job over the user-defined networks no running
/// container is attached to (never `bridge`, `host` or `none`), narrowed by `filters`.
/// Result `{deleted (names), space_reclaimed: 0, dry_run}`; with `dry_run: true` the
/// networks it would remove, and nothing is removed.
#[utoipa::path(
    tag = "networks",
    request_body = PruneRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Return the job already made with this key")),
    responses(JobSubmitted),
    security(("bearer" = ["admin"]))
)]
#[post("/networks/prune")]
pub async fn prune_networks(
    who: Authorized<Admin>,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<PruneRequest>,
) -> ApiResult<HttpResponse> {
    body.filters.validate()?;
    let mut body = body.into_inner();
    submit(&state, &req, &who, body.host.take(), JobSpec::PruneNetworks(body)).await
}

/// Remove unused build cache (`docker builder prune`).
///
/// Admin only. Queues a `prune_build_cache` job over the cache records not in use (with
/// `all: false`, only those no other record shares), last used before `filters.until`.
/// Result `{deleted (record ids), space_reclaimed, dry_run}`; with `dry_run: true` the
/// records it would remove, and nothing is removed. The classic builder keeps its cache
/// as intermediate images, which an image prune removes; this cache is BuildKit's.
#[utoipa::path(
    tag = "images",
    request_body = PruneBuildCacheRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Return the job already made with this key")),
    responses(JobSubmitted),
    security(("bearer" = ["admin"]))
)]
#[post("/build-cache/prune")]
pub async fn prune_build_cache(
    who: Authorized<Admin>,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<PruneBuildCacheRequest>,
) -> ApiResult<HttpResponse> {
    body.filters.validate()?;
    let mut body = body.into_inner();
    submit(&state, &req, &who, body.host.take(), JobSpec::PruneBuildCache(body)).await
}
