//! Volumes: list, create, inspect, remove (prune is in `api::prune`). Team-scoped as
//! containers are: another team's volume is absent (404), one made outside Berth
//! follows `BERTH_UNMANAGED`, and the volumes holding Berth's own data are nobody's to
//! remove.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{Authorized, Operator, Qs, Viewer};
use super::problem::{ApiError, ApiResult, Problem};
use super::responses::EngineErrors;
use crate::auth::Principal;
use crate::domain::de_bool_opt;
use crate::domain::objects::{VolumeCreateRequest, VolumeFilters, VolumeView, validate_object_ref};
use crate::domain::scope::{Access, access, stamp};
use crate::error::ErrorCode;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VolumeListQuery {
    /// Name substring (repeatable, any matches).
    #[serde(default)]
    pub name: Vec<String>,
    /// Label filters, `key` or `key=value` (repeatable, all must match).
    #[serde(default)]
    pub label: Vec<String>,
    /// `true`: only volumes no container mounts; `false`: only those in use.
    #[serde(default, deserialize_with = "de_bool_opt")]
    #[param(value_type = Option<bool>)]
    pub dangling: Option<bool>,
    /// Only volumes of this team (labelled `berth.team=<team>`). Whatever the filter, a
    /// non-admin sees only their own team's volumes (and, per `BERTH_UNMANAGED`, those
    /// made outside Berth).
    pub team: Option<String>,
}

/// What `who` may do with a volume carrying `labels`.
fn volume_access(state: &AppState, who: &Principal, v: &VolumeView) -> Access {
    access(who, Some(&v.labels), state.settings.unmanaged)
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("No such volume: {name}"))
}

/// The volume `name`, if `who` may `need` it: 404 when absent or hidden, 403 when only
/// readable.
async fn scoped(state: &AppState, who: &Principal, name: &str, need: Access) -> ApiResult<VolumeView> {
    validate_object_ref("volume", name)?;
    let v = state.engine.inspect_volume(name).await?.ok_or_else(|| not_found(name))?;
    let access = volume_access(state, who, &v);
    super::scope::require(v, access, need, || not_found(name), || {
        format!("Volume {name} was not made through Berth (no `berth.team` label): only the admin role changes it.")
    })
}

/// List volumes (`docker volume ls`).
///
/// Viewer. The volumes the caller may see: their team's, and per `BERTH_UNMANAGED` those
/// made outside Berth; admin sees all. `in_use` says whether a container mounts it.
#[utoipa::path(
    tag = "volumes",
    params(VolumeListQuery),
    responses(
        (status = 200, description = "The volumes", body = Vec<VolumeView>),
        (status = 400, description = "A bad filter", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/volumes")]
pub async fn list_volumes(
    who: Authorized<Viewer>,
    state: web::Data<AppState>,
    Qs(q): Qs<VolumeListQuery>,
) -> ApiResult<web::Json<Vec<VolumeView>>> {
    let label = super::scope::label_filters(&q.label, q.team.as_deref())?;
    let filters = VolumeFilters { name: q.name.clone(), label, dangling: q.dangling };
    let list = state.engine.list_volumes(&filters).await?;
    Ok(web::Json(list.into_iter().filter(|v| volume_access(&state, &who, v) != Access::None).collect()))
}

/// Create a volume (`docker volume create`).
///
/// Operator. A `local` volume labelled with the caller's team and subject (`berth.team`,
/// `berth.owner`). A name already taken is 409 `conflict` (the engine would hand back the
/// existing volume, whoever's it is). Driver options that mount something of the host
/// (`type=none,o=bind,device=/path`, a block device, an NFS or CIFS share) are host power:
/// admin only (403 `policy_violation`); `type=tmpfs` is not. The names of Berth's own
/// data volumes are refused to everyone (403 `forbidden`).
#[utoipa::path(
    tag = "volumes",
    request_body = VolumeCreateRequest,
    responses(
        (status = 201, description = "Created", body = VolumeView, headers(("Location" = String, description = "/v1/volumes/{name}"))),
        (status = 400, description = "A bad name, driver, label or option (`invalid_request`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role below operator, driver options that mount the host (`policy_violation`), or Berth's own volume (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A volume by this name exists (`conflict`)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["operator"]))
)]
#[post("/volumes")]
pub async fn create_volume(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: web::Json<VolumeCreateRequest>,
) -> ApiResult<HttpResponse> {
    let mut spec = body.validate()?;
    crate::audit::set_target(&req, format!("volume={}", spec.name));
    state.settings.policy.check_volume_create(&spec.facts(), who.is_admin())?;
    if state.engine.inspect_volume(&spec.name).await?.is_some() {
        return Err(ApiError::new(ErrorCode::Conflict, format!("A volume named {} exists already.", spec.name)));
    }
    stamp(&mut spec.labels, &who.team, &who.subject, None);
    let v = state.engine.create_volume(&spec).await?;
    Ok(HttpResponse::Created().insert_header(("Location", format!("/v1/volumes/{}", v.name))).json(v))
}

/// Inspect a volume (`docker volume inspect`).
///
/// Viewer. Another team's volume is 404 as if absent.
#[utoipa::path(
    tag = "volumes",
    params(("name" = String, Path, description = "Volume name")),
    responses(
        (status = 200, description = "The volume", body = VolumeView),
        (status = 400, description = "Not a valid volume name", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such volume (`not_found`)", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/volumes/{name}")]
pub async fn inspect_volume(
    who: Authorized<Viewer>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult<web::Json<VolumeView>> {
    Ok(web::Json(scoped(&state, &who, &name, Access::Read).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VolumeRemoveQuery {
    /// Remove it even if the engine reports it in use by a stopped container's record.
    #[serde(default, deserialize_with = "de_bool_opt")]
    #[param(value_type = Option<bool>)]
    pub force: Option<bool>,
}

/// Remove a volume (`docker volume rm`).
///
/// Operator, on their team's volumes. A volume a container (running or not) mounts is
/// 409 `conflict`; Berth's own data volumes are 403 `forbidden` to everyone.
#[utoipa::path(
    tag = "volumes",
    params(("name" = String, Path, description = "Volume name"), VolumeRemoveQuery),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Not a valid volume name", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role below operator, a volume made outside Berth (`BERTH_UNMANAGED=read`), or Berth's own volume (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such volume (`not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "In use by a container (`conflict`)", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["operator"]))
)]
#[delete("/volumes/{name}")]
pub async fn remove_volume(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    name: web::Path<String>,
    Qs(q): Qs<VolumeRemoveQuery>,
) -> ApiResult<HttpResponse> {
    if state.settings.policy.is_protected_volume(&name) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("Volume {name} holds Berth's own data: nobody removes it through Berth."),
        ));
    }
    let v = scoped(&state, &who, &name, Access::Act).await?;
    state.engine.remove_volume(&v.name, q.force.unwrap_or(false)).await.map_err(in_use)?;
    Ok(HttpResponse::NoContent().finish())
}

/// The engine answers 409 for a volume in use: say so in Berth's words too.
fn in_use(e: crate::docker::EngineError) -> ApiError {
    match e {
        crate::docker::EngineError::Conflict(msg) => {
            ApiError::new(ErrorCode::Conflict, format!("The volume is in use by a container; remove the container first ({msg})."))
        }
        e => e.into(),
    }
}
