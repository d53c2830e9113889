//! Networks: list, create, inspect, remove, connect and disconnect a container (prune
//! is in `api::prune`). Team-scoped as containers are. The engine's predefined networks
//! (`bridge`, `host`, `none`) are everyone's to read and nobody's to remove; joining
//! `host` or `none` is for admins (a run's `network: host` is host power).

use actix_web::{HttpResponse, delete, get, post, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{Authorized, Operator, Qs, Viewer};
use super::problem::{ApiError, ApiResult, Problem};
use super::responses::EngineErrors;
use super::scope::{Need, container};
use crate::auth::Principal;
use crate::domain::objects::{
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest, NetworkFilters, NetworkInfo, NetworkView,
    is_predefined_network, validate_object_ref,
};
use crate::domain::scope::{Access, access, stamp};
use crate::error::ErrorCode;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NetworkListQuery {
    /// Name substring (repeatable, any matches).
    #[serde(default)]
    pub name: Vec<String>,
    /// Label filters, `key` or `key=value` (repeatable, all must match).
    #[serde(default)]
    pub label: Vec<String>,
    /// Only networks of this team (labelled `berth.team=<team>`). Whatever the filter, a
    /// non-admin sees only their own team's networks, the predefined ones and, per
    /// `BERTH_UNMANAGED`, those made outside Berth.
    pub team: Option<String>,
}

/// What `who` may do with a network: the team rule, except that the predefined
/// networks are everyone's to read (and only the default bridge everyone's to join).
pub(crate) fn network_access(state: &AppState, who: &Principal, n: &NetworkInfo) -> Access {
    if who.is_admin() {
        return Access::Act;
    }
    if is_predefined_network(&n.name) {
        return if n.name == "bridge" { Access::Act } else { Access::Read };
    }
    access(who, Some(&n.labels), state.settings.unmanaged)
}

fn view(state: &AppState, who: &Principal, n: NetworkInfo) -> NetworkView {
    let unmanaged = state.settings.unmanaged;
    let in_use = !n.attached.is_empty();
    let containers: Vec<String> =
        n.attached.iter().filter(|c| access(who, Some(&c.labels), unmanaged) != Access::None).map(|c| c.id.clone()).collect();
    NetworkView {
        predefined: is_predefined_network(&n.name),
        container_count: containers.len(),
        containers,
        in_use,
        id: n.id,
        name: n.name,
        driver: n.driver,
        scope: n.scope,
        internal: n.internal,
        created_at: n.created_at,
        labels: n.labels,
    }
}

fn not_found(given: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("No such network: {given} (give a name, or an id or id prefix of at least {} characters)", crate::docker::MIN_ID_PREFIX),
    )
}

/// The network `given` names, if `who` may `need` it: 404 when absent or hidden, 403
/// when only readable.
pub(crate) async fn scoped(state: &AppState, who: &Principal, given: &str, need: Access) -> ApiResult<NetworkInfo> {
    validate_object_ref("network", given)?;
    let n = state.engine.inspect_network(given).await?.ok_or_else(|| not_found(given))?;
    let (access, name) = (network_access(state, who, &n), n.name.clone());
    super::scope::require(n, access, need, || not_found(given), || {
        format!("Network {name} is the engine's own or was made outside Berth: only the admin role changes or joins it.")
    })
}

/// List networks (`docker network ls`).
///
/// Viewer. The networks the caller may see: their team's, the engine's predefined ones,
/// and per `BERTH_UNMANAGED` those made outside Berth; admin sees all. `containers` lists
/// the running containers attached that the caller may see; `in_use` counts all.
#[utoipa::path(
    tag = "networks",
    params(NetworkListQuery),
    responses(
        (status = 200, description = "The networks", body = Vec<NetworkView>),
        (status = 400, description = "A bad filter", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/networks")]
pub async fn list_networks(
    who: Authorized<Viewer>,
    state: web::Data<AppState>,
    Qs(q): Qs<NetworkListQuery>,
) -> ApiResult<web::Json<Vec<NetworkView>>> {
    let label = super::scope::label_filters(&q.label, q.team.as_deref())?;
    let list = state.engine.list_networks(&NetworkFilters { name: q.name.clone(), label }).await?;
    Ok(web::Json(
        list.into_iter().filter(|n| network_access(&state, &who, n) != Access::None).map(|n| view(&state, &who, n)).collect(),
    ))
}

/// Create a network (`docker network create`).
///
/// Operator. A `bridge` network (`internal: true`: no route out) labelled with the
/// caller's team and subject. A name already taken is 409 `conflict` (the engine would
/// make a second network of the same name), as are the predefined names.
#[utoipa::path(
    tag = "networks",
    request_body = NetworkCreateRequest,
    responses(
        (status = 201, description = "Created", body = NetworkView, headers(("Location" = String, description = "/v1/networks/{id}"))),
        (status = 400, description = "A bad name, driver or label (`invalid_request`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role below operator", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A network by this name exists, or the name is predefined (`conflict`)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["operator"]))
)]
#[post("/networks")]
pub async fn create_network(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: web::Json<NetworkCreateRequest>,
) -> ApiResult<HttpResponse> {
    let mut spec = body.validate()?;
    crate::audit::set_target(&req, format!("network={}", spec.name));
    let taken = state.engine.list_networks(&NetworkFilters { name: vec![spec.name.clone()], label: Vec::new() }).await?;
    if taken.iter().any(|n| n.name == spec.name) {
        return Err(ApiError::new(ErrorCode::Conflict, format!("A network named {} exists already.", spec.name)));
    }
    stamp(&mut spec.labels, &who.team, &who.subject, None);
    let id = state.engine.create_network(&spec).await?;
    let n = state.engine.inspect_network(&id).await?.ok_or_else(|| not_found(&id))?;
    Ok(HttpResponse::Created().insert_header(("Location", format!("/v1/networks/{id}"))).json(view(&state, &who, n)))
}

/// Inspect a network (`docker network inspect`).
///
/// Viewer. By name, id, or an id prefix of at least 12 characters; another team's
/// network is 404 as if absent.
#[utoipa::path(
    tag = "networks",
    params(("id" = String, Path, description = "Network name, id or id prefix")),
    responses(
        (status = 200, description = "The network", body = NetworkView),
        (status = 400, description = "Not a valid network name or id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such network (`not_found`)", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/networks/{id}")]
pub async fn inspect_network(
    who: Authorized<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<web::Json<NetworkView>> {
    let n = scoped(&state, &who, &id, Access::Read).await?;
    Ok(web::Json(view(&state, &who, n)))
}

/// Remove a network (`docker network rm`).
///
/// Operator, on their team's networks. The predefined networks are 403 `forbidden` to
/// everyone; a network a running container is attached to is 409 `conflict`.
#[utoipa::path(
    tag = "networks",
    params(("id" = String, Path, description = "Network name, id or id prefix")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Not a valid network name or id", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role below operator, a predefined network, or one made outside Berth (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such network (`not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Containers are attached (`conflict`)", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["operator"]))
)]
#[delete("/networks/{id}")]
pub async fn remove_network(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let n = scoped(&state, &who, &id, Access::Read).await?;
    if is_predefined_network(&n.name) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("{} is one of the engine's predefined networks: nobody removes it.", n.name),
        ));
    }
    let n = scoped(&state, &who, &n.id, Access::Act).await?;
    if !n.attached.is_empty() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("Network {} has {} container(s) attached: disconnect or stop them first.", n.name, n.attached.len()),
        ));
    }
    state.engine.remove_network(&n.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Connect a container to a network (`docker network connect`).
///
/// Operator: both the network and the container must be the caller's team's (else 404);
/// the default `bridge` is everyone's to join, `host` and `none` are the admin's.
#[utoipa::path(
    tag = "networks",
    params(("id" = String, Path, description = "Network name, id or id prefix")),
    request_body = NetworkConnectRequest,
    responses(
        (status = 204, description = "Connected"),
        (status = 400, description = "A bad network or container name", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role below operator, or a network only the admin joins (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such network (`not_found`) or container (`container_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already connected (`conflict`)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["operator"]))
)]
#[post("/networks/{id}/connect")]
pub async fn connect_network(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<NetworkConnectRequest>,
) -> ApiResult<HttpResponse> {
    crate::domain::names::validate_container_ref(&body.container)?;
    let n = scoped(&state, &who, &id, Access::Act).await?;
    let c = container(&state, &who, &body.container, Need::Act).await?;
    state.engine.connect_network(&n.id, &c.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Disconnect a container from a network (`docker network disconnect`).
///
/// Operator, with the same rule as connect.
#[utoipa::path(
    tag = "networks",
    params(("id" = String, Path, description = "Network name, id or id prefix")),
    request_body = NetworkDisconnectRequest,
    responses(
        (status = 204, description = "Disconnected"),
        (status = 400, description = "A bad network or container name", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role below operator, or a network only the admin changes (`forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such network (`not_found`) or container (`container_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not connected (`conflict`)", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["operator"]))
)]
#[post("/networks/{id}/disconnect")]
pub async fn disconnect_network(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Json<NetworkDisconnectRequest>,
) -> ApiResult<HttpResponse> {
    crate::domain::names::validate_container_ref(&body.container)?;
    let n = scoped(&state, &who, &id, Access::Act).await?;
    let c = container(&state, &who, &body.container, Need::Act).await?;
    state.engine.disconnect_network(&n.id, &c.id, body.force.unwrap_or(false)).await?;
    Ok(HttpResponse::NoContent().finish())
}
