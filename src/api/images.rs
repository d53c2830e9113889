//! `/v1/images`: list, inspect, remove, tag.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Qs, de_bool_opt};
use crate::auth::{Authorized, Operator, Viewer};
use crate::docker::{ImageDeleteItem, ImageFilters, ImageSummary};
use crate::domain::{ImageRef, names::validate_label_filter, validate_reference_or_id};
use crate::error::{ApiError, ApiResult, Problem};
use crate::startup::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImageListQuery {
    /// Include intermediate images (`docker images -a`).
    #[serde(default, deserialize_with = "de_bool_opt")]
    #[param(value_type = Option<bool>)]
    pub all: Option<bool>,
    /// Only dangling (`true`) or only tagged (`false`) images.
    #[serde(default, deserialize_with = "de_bool_opt")]
    #[param(value_type = Option<bool>)]
    pub dangling: Option<bool>,
    /// Reference patterns, e.g. `busybox` or `127.0.0.1:5000/team/*:1.*` (repeatable).
    #[serde(default)]
    pub reference: Vec<String>,
    /// Label filters, `key` or `key=value` (repeatable, all must match).
    #[serde(default)]
    pub label: Vec<String>,
}

/// List images.
#[utoipa::path(
    tag = "images",
    params(ImageListQuery),
    responses(
        (status = 200, description = "The images, as the engine lists them", body = Vec<ImageSummary>),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Engine unreachable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/images")]
pub async fn list_images(
    _: Authorized<Viewer>,
    state: web::Data<AppState>,
    Qs(q): Qs<ImageListQuery>,
) -> ApiResult<web::Json<Vec<ImageSummary>>> {
    for l in &q.label {
        validate_label_filter(l)?;
    }
    for r in &q.reference {
        if r.is_empty() || r.len() > 512 || r.chars().any(char::is_control) {
            return Err(ApiError::invalid("`reference` must be a non-empty reference pattern without control characters"));
        }
    }
    let filters = ImageFilters { all: q.all.unwrap_or(false), dangling: q.dangling, reference: q.reference, label: q.label };
    Ok(web::Json(state.engine.list_images(&filters).await?))
}

/// Inspect an image by reference or id. The reference is the rest of the path and may
/// contain `/` and `:` (`/v1/images/127.0.0.1:5000/team/app:1.2`). The body is the
/// engine's own inspect document.
#[utoipa::path(
    tag = "images",
    params(("reference" = String, Path, description = "Image reference or id; may contain `/` and `:`")),
    responses(
        (status = 200, description = "The engine's inspect document", body = Object),
        (status = 400, description = "Not a valid reference", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such image (`image_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Engine unreachable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/images/{reference:.+}")]
pub async fn inspect_image(
    _: Authorized<Viewer>,
    state: web::Data<AppState>,
    reference: web::Path<String>,
) -> ApiResult<web::Json<serde_json::Value>> {
    validate_reference_or_id(&reference)?;
    Ok(web::Json(state.engine.inspect_image(&reference).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImageRemoveQuery {
    /// Remove even when tagged in several repositories or used by a stopped container.
    #[serde(default, deserialize_with = "de_bool_opt")]
    #[param(value_type = Option<bool>)]
    pub force: Option<bool>,
    /// Keep untagged parent images.
    #[serde(default, deserialize_with = "de_bool_opt")]
    #[param(value_type = Option<bool>)]
    pub noprune: Option<bool>,
}

/// Remove an image (`docker rmi`). Answers what was untagged and deleted.
#[utoipa::path(
    tag = "images",
    params(("reference" = String, Path, description = "Image reference or id; may contain `/` and `:`"), ImageRemoveQuery),
    responses(
        (status = 200, description = "What was untagged and deleted", body = Vec<ImageDeleteItem>),
        (status = 400, description = "Not a valid reference", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role below operator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such image", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "In use by a container (`conflict`); retry with `force`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Engine unreachable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/images/{reference:.+}")]
pub async fn remove_image(
    _: Authorized<Operator>,
    state: web::Data<AppState>,
    reference: web::Path<String>,
    Qs(q): Qs<ImageRemoveQuery>,
) -> ApiResult<web::Json<Vec<ImageDeleteItem>>> {
    validate_reference_or_id(&reference)?;
    let items = state
        .engine
        .remove_image(&reference, q.force.unwrap_or(false), q.noprune.unwrap_or(false))
        .await?;
    Ok(web::Json(items))
}

/// Tag an image: the body names the source (reference or id) and the new reference.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagImageRequest {
    /// Existing image: reference or id.
    #[schema(example = "berth-test/busybox:latest")]
    pub source: String,
    /// New reference, `[host[:port]/]path[:tag]` (tag defaults to `latest`).
    #[schema(example = "127.0.0.1:5000/team/busybox:1.0")]
    pub target: String,
}

/// The tag just made.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TagImageView {
    pub source: String,
    /// The full new reference, with its tag.
    pub target: String,
}

/// Tag an image (`docker tag SOURCE TARGET`).
#[utoipa::path(
    tag = "images",
    request_body = TagImageRequest,
    responses(
        (status = 201, description = "Tagged", body = TagImageView),
        (status = 400, description = "Bad body or reference", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role below operator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such source image", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Engine unreachable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/images/tag")]
pub async fn tag_image(
    _: Authorized<Operator>,
    state: web::Data<AppState>,
    body: web::Json<TagImageRequest>,
) -> ApiResult<HttpResponse> {
    validate_reference_or_id(&body.source)?;
    let target = ImageRef::parse(&body.target)?;
    if target.digest.is_some() {
        return Err(ApiError::new(crate::error::ErrorCode::InvalidReference, "A tag target cannot carry a digest."));
    }
    state.engine.tag_image(&body.source, &target.repository(), target.tag_or_latest()).await?;
    let full = format!("{}:{}", target.repository(), target.tag_or_latest());
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v1/images/{full}")))
        .json(TagImageView { source: body.source.clone(), target: full }))
}
