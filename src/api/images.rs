//! `/v1/images`: list, inspect, remove, tag.

use actix_web::{HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::Qs;
use super::responses::{EngineErrors, JobSubmitted};
use super::submit::{idempotency_key, job_response};
use super::upload::SpooledContext;
use crate::domain::de_bool_opt;
use crate::api::extract::{Authorized, Operator, Viewer};
use crate::docker::{ImageDeleteItem, ImageFilters, ImageLayer, ImageSummary};
use crate::domain::{ImageRef, names::validate_label_filter, validate_reference_or_id};
use crate::api::problem::{ApiError, ApiResult, Problem};
use crate::state::AppState;

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

impl ImageListQuery {
    /// The engine's filters, once each is checked.
    fn filters(self) -> ApiResult<ImageFilters> {
        for l in &self.label {
            validate_label_filter(l)?;
        }
        for r in &self.reference {
            if r.is_empty() || r.len() > 512 || r.chars().any(char::is_control) || !is_glob(r) {
                return Err(ApiError::invalid(
                    "`reference` must be a non-empty reference pattern (`*` and `?` wildcards, `[...]` classes), without control characters",
                ));
            }
        }
        Ok(ImageFilters { all: self.all.unwrap_or(false), dangling: self.dangling, reference: self.reference, label: self.label })
    }
}

/// List images.
///
/// The images on the engine, as `docker images` lists them: intermediate ones with
/// `all=true`, filtered by `dangling`, `reference` patterns and `label`s. Images are
/// shared for reading: every team sees every image.
#[utoipa::path(
    tag = "images",
    params(ImageListQuery),
    responses(
        (status = 200, description = "The images, as the engine lists them", body = Vec<ImageSummary>),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/images")]
pub async fn list_images(
    _: Authorized<Viewer>,
    state: web::Data<AppState>,
    Qs(q): Qs<ImageListQuery>,
) -> ApiResult<web::Json<Vec<ImageSummary>>> {
    Ok(web::Json(state.engine.list_images(&q.filters()?).await?))
}

/// A pattern Go's `path.Match` (the engine's reference filter) accepts: it answers a bad
/// one with a 500. Backslash escapes are refused outright.
fn is_glob(p: &str) -> bool {
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => return false,
            ']' => return false,
            '[' => {
                if chars.peek() == Some(&'^') {
                    chars.next();
                }
                let mut ranges = 0;
                loop {
                    match chars.next() {
                        None => return false,
                        Some(']') if ranges > 0 => break,
                        Some(']' | '-' | '\\') => return false,
                        Some(_) => {
                            if chars.peek() == Some(&'-') {
                                chars.next();
                                match chars.next() {
                                    None | Some(']' | '-' | '\\') => return false,
                                    Some(_) => {}
                                }
                            }
                            ranges += 1;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn globs_the_engine_takes() {
        for ok in ["busybox", "berth-test/*", "a?c", "[ab]c", "[^a-z]x", "[a-c][0-9]", "127.0.0.1:5000/team/*:1.*"] {
            assert!(super::is_glob(ok), "{ok}");
        }
        for bad in ["[", "[]", "[a-]", "[a]]x[", "]", "a\\b", "[-a]", "[a", "[^]"] {
            assert!(!super::is_glob(bad), "{bad}");
        }
    }
}

/// Inspect an image by reference or id.
///
/// The reference is the rest of the path and may contain `/` and `:`
/// (`/v1/images/127.0.0.1:5000/team/app:1.2`). The body is the engine's own inspect
/// document, except that to anyone but admin each environment entry shows its key and
/// not its value (`KEY=<redacted>`).
#[utoipa::path(
    tag = "images",
    params(("reference" = String, Path, description = "Image reference or id; may contain `/` and `:`")),
    responses(
        (status = 200, description = "The engine's inspect document", body = Object),
        (status = 400, description = "Not a valid reference", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such image (`image_not_found`)", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/images/{reference:.+}")]
pub async fn inspect_image(
    who: Authorized<Viewer>,
    state: web::Data<AppState>,
    reference: web::Path<String>,
) -> ApiResult<web::Json<serde_json::Value>> {
    validate_reference_or_id(&reference)?;
    let mut doc = state.engine.inspect_image(&reference).await?;
    if !who.is_admin() {
        super::containers::redact_env_values(&mut doc);
    }
    Ok(web::Json(doc))
}

/// The history of an image: its layers (`docker history`).
///
/// Viewer. One entry per layer, newest first: `id` (`<missing>` for layers built
/// elsewhere), `created`, `created_by` (the instruction), `size`, `tags`, and
/// `empty_layer` (`true` for a step that added no files: size 0 and a metadata-only
/// instruction such as `ENV`, `LABEL` or `CMD`). The reference is the rest of the path
/// and may contain `/` and `:` (`/v1/image-history/127.0.0.1:5000/team/app:1.2`), or be an
/// id or an id prefix of at least 12 hex digits: the image is found exactly as
/// `GET /v1/images/{reference}` finds it, with the same 404. Images are shared for
/// reading: every team sees every image's history.
#[utoipa::path(
    tag = "images",
    operation_id = "image_history",
    params(("reference" = String, Path, description = "Image reference or id; may contain `/` and `:`")),
    responses(
        (status = 200, description = "The image's layers, newest first", body = Vec<ImageLayer>),
        (status = 400, description = "Not a valid reference", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such image (`image_not_found`)", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/image-history/{reference:.+}")]
pub async fn image_history(
    _: Authorized<Viewer>,
    state: web::Data<AppState>,
    reference: web::Path<String>,
) -> ApiResult<web::Json<Vec<ImageLayer>>> {
    validate_reference_or_id(&reference)?;
    Ok(web::Json(state.engine.image_history(&reference).await?))
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

/// Remove an image (`docker rmi`).
///
/// Answers what was untagged and deleted. An image a container uses needs `force=true`
/// (else 409 `conflict`); `noprune=true` keeps its untagged parents. With
/// `BERTH_TEAM_IMAGES` a non-admin removes only the team's images.
#[utoipa::path(
    tag = "images",
    params(("reference" = String, Path, description = "Image reference or id; may contain `/` and `:`"), ImageRemoveQuery),
    responses(
        (status = 200, description = "What was untagged and deleted", body = Vec<ImageDeleteItem>),
        (status = 400, description = "Not a valid reference", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role below operator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such image", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "In use by a container (`conflict`); retry with `force`", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["operator"]))
)]
#[delete("/images/{reference:.+}")]
pub async fn remove_image(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    reference: web::Path<String>,
    Qs(q): Qs<ImageRemoveQuery>,
) -> ApiResult<web::Json<Vec<ImageDeleteItem>>> {
    validate_reference_or_id(&reference)?;
    check_team_removal(&state, &who, &reference).await?;
    let items = state
        .engine
        .remove_image(&reference, q.force.unwrap_or(false), q.noprune.unwrap_or(false))
        .await?;
    Ok(web::Json(items))
}

/// `BERTH_TEAM_IMAGES` for a non-admin's removal: by name, the name must be the team's;
/// by id (prefix) or digest, every tag of the image. An image the engine does not have is
/// left to the engine's own 404.
async fn check_team_removal(state: &AppState, who: &crate::auth::Principal, reference: &str) -> ApiResult<()> {
    let policy = &state.settings.policy;
    if policy.team_images.is_empty() || who.is_admin() {
        return Ok(());
    }
    let Some((_, _, tags)) = state.engine.image_identity(reference).await? else { return Ok(()) };
    let full = |r: &ImageRef| format!("{}:{}", r.repository(), r.tag_or_latest());
    let named = ImageRef::parse(reference).ok().filter(|r| {
        r.digest.is_none() && tags.iter().filter_map(|t| ImageRef::parse(t).ok()).any(|t| full(&t) == full(r))
    });
    if let Some(image) = named {
        return Ok(policy.check_team_image(&image, &who.team, "remove")?);
    }
    let labelled = match tags.is_empty() {
        true => {
            let doc = state.engine.inspect_image(reference).await?;
            doc.pointer("/Config/Labels/berth.team").and_then(|t| t.as_str()) == Some(who.team.as_str())
        }
        false => false,
    };
    Ok(policy.check_team_image_tags(reference, &tags, labelled, &who.team, "remove")?)
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
///
/// Gives the image `source` (a reference or id) the new reference `target`. The target
/// is held to `BERTH_ALLOWED_IMAGES`, and for a non-admin to `BERTH_TEAM_IMAGES` (403
/// `policy_violation`).
#[utoipa::path(
    tag = "images",
    request_body = TagImageRequest,
    responses(
        (status = 201, description = "Tagged", body = TagImageView),
        (status = 400, description = "Bad body or reference", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role below operator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such source image", body = Problem, content_type = "application/problem+json"),
        EngineErrors,
    ),
    security(("bearer" = ["operator"]))
)]
#[post("/images/tag")]
pub async fn tag_image(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: web::Json<TagImageRequest>,
) -> ApiResult<HttpResponse> {
    validate_reference_or_id(&body.source)?;
    let target = ImageRef::parse(&body.target)?;
    if target.digest.is_some() {
        return Err(ApiError::new(crate::error::ErrorCode::InvalidReference, "A tag target cannot carry a digest."));
    }
    // Only once both are valid references (bounded in length): a refused body is never
    // copied into the audit log.
    crate::audit::set_target(&req, format!("source={} target={}", body.source, body.target));
    // Tagging is a way to give any image an allowed name: the allow-list covers it.
    state.settings.policy.check_image(&target, "tag")?;
    if !who.is_admin() {
        state.settings.policy.check_team_image(&target, &who.team, "tag")?;
    }
    // The source by the same naming rule as inspect: a short id prefix tags nothing.
    let source = state.engine.resolve_image(&body.source).await?;
    state.engine.tag_image(&source, &target.repository(), target.tag_or_latest()).await?;
    let full = format!("{}:{}", target.repository(), target.tag_or_latest());
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v1/images/{full}")))
        .json(TagImageView { source: body.source.clone(), target: full }))
}

// ---- jobs ---------------------------------------------------------------------------------

/// A build context: the bytes of a tar (optionally gzip-compressed).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct BuildContext(#[allow(dead_code)] Vec<u8>);

/// Build an image (`docker build`).
///
/// From a tar (or gzip tar) context in the body, or from `remote=` (a git or tar URL).
///
/// The context is streamed to disk as it arrives (never held in memory), its Dockerfile
/// is read, the job is queued, and the answer is `202` with the job; its events carry the
/// build output as `log` events (`stream: "build"`) and one `step` event per Dockerfile
/// step (`{index, total, instruction, cached}`: `cached` says whether the builder reused
/// its cache), progress says step n of N, and its result is `{image_id, tags, steps,
/// cache_hits}`.
///
/// Images the build pulls (`FROM`) from a private registry are pulled with the
/// request's `X-Registry-Config` (the engine's format: base64 of a JSON object from
/// registry host to `{username, password}`, `{auth}` or `{identitytoken}`; never stored)
/// and the server's configured credentials (`BERTH_REGISTRY_AUTH_FILE`) for the other
/// registries. A registry's refusal fails the job with `registry_auth_failed`.
///
/// Every `tag` and every image the Dockerfile pulls (`FROM`, `COPY --from`) is held to
/// `BERTH_ALLOWED_IMAGES`; a `remote=` host must be listed in `BERTH_BUILD_REMOTE_ALLOW`;
/// a non-admin's `ADD <url>` may not name a loopback, link-local (metadata), private or
/// unspecified address, or a name that resolves to one (403 `policy_violation`). A body
/// that sends nothing for `BERTH_UPLOAD_IDLE_TIMEOUT` is cut off (408 `request_timeout`).
#[utoipa::path(
    tag = "images",
    params(crate::domain::requests::BuildQuery,
           ("Idempotency-Key" = Option<String>, Header, description = "Return the job already made with this key"),
           ("X-Registry-Config" = Option<String>, Header, description = "Credentials for the registries the build pulls from: base64 of `{\"host\": {\"username\", \"password\"}}` (the engine's format)")),
    request_body(
        description = "Build context: a tar, or a gzip-compressed tar (`application/octet-stream` is read as either)",
        content((BuildContext = "application/x-tar"), (BuildContext = "application/gzip"), (BuildContext = "application/octet-stream"))
    ),
    responses(
        JobSubmitted,
        (status = 408, description = "The context stalled for BERTH_UPLOAD_IDLE_TIMEOUT (`request_timeout`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Context over BERTH_BUILD_CONTEXT_MAX", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["operator"]))
)]
#[post("/images/build")]
pub async fn build_image(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    Qs(q): Qs<crate::domain::requests::BuildQuery>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let mut params = q.validate()?;
    let (host, _) = crate::api::hosts::job_host(&state, &who, None)?;
    let key = idempotency_key(&req)?;
    // Checked before a byte of the context is read (and again when it is submitted).
    crate::api::submit::registry_config(&req)?;
    if let Some(job) = idempotent_job(&state, &who, key.as_deref()).await? {
        return Ok(job_response(crate::jobs::Submitted::Existing(job)));
    }
    let context = SpooledContext::for_build(&state, &req, payload, &mut params, &who).await?;
    let path = context.as_ref().map(|c| std::path::PathBuf::from(c.path()));
    // From here the job engine owns the file (it deletes it unless a new job takes it).
    if let Some(c) = context {
        c.keep();
    }
    let spec = crate::jobs::JobSpec::Build(params);
    crate::api::submit::submit_with_spool(&state, &req, &who, host, spec, None, path).await
}

/// The job the caller made before with this `Idempotency-Key`, if any.
async fn idempotent_job(state: &AppState, who: &crate::auth::Principal, key: Option<&str>) -> ApiResult<Option<crate::jobs::Job>> {
    match key {
        Some(k) => Ok(state.jobs.find_idempotent(who, k).await?),
        None => Ok(None),
    }
}

/// Pull an image (`docker pull`).
///
/// Queues a `pull` job: its events are per-layer `layer` events and an aggregated
/// `progress`, and its result is `{image_id, digest}`. `credentials` (or those configured
/// for the registry) authenticate to a private registry; they are never stored in the
/// job.
#[utoipa::path(
    tag = "images",
    request_body = crate::domain::requests::PullRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Return the job already made with this key")),
    responses(
        JobSubmitted,
    ),
    security(("bearer" = ["operator"]))
)]
#[post("/images/pull")]
pub async fn pull_image(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: web::Json<crate::domain::requests::PullRequest>,
) -> ApiResult<HttpResponse> {
    let mut body = body.into_inner();
    let (host, _) = crate::api::hosts::job_host(&state, &who, body.host.take())?;
    let image = ImageRef::parse(&body.image)?;
    state.settings.policy.check_image(&image, "pull")?;
    if let Some(p) = &body.platform {
        if p.is_empty() || p.len() > 64 || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b)) {
            return Err(ApiError::invalid("`platform` must look like os[/arch[/variant]]"));
        }
    }
    let secret = body.credentials.clone().map(|c| c.into_auth(image.registry_host())).transpose()?;
    crate::api::submit::submit_job(&state, &req, &who, host, crate::jobs::JobSpec::pull(body)?, secret).await
}

/// Push an image to its registry (`docker push`).
///
/// Queues a `push` job: its events are `layer` and `progress` events, and its result is
/// `{digest}`. With `BERTH_TEAM_IMAGES` a non-admin pushes only the team's images.
#[utoipa::path(
    tag = "images",
    request_body = crate::domain::requests::PushRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Return the job already made with this key")),
    responses(
        JobSubmitted,
    ),
    security(("bearer" = ["operator"]))
)]
#[post("/images/push")]
pub async fn push_image(
    who: Authorized<Operator>,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: web::Json<crate::domain::requests::PushRequest>,
) -> ApiResult<HttpResponse> {
    let mut body = body.into_inner();
    let (host, _) = crate::api::hosts::job_host(&state, &who, body.host.take())?;
    let image = ImageRef::parse(&body.image)?;
    if image.digest.is_some() {
        return Err(ApiError::new(crate::error::ErrorCode::InvalidReference, "Push a tag, not a digest."));
    }
    state.settings.policy.check_image(&image, "push")?;
    if !who.is_admin() {
        state.settings.policy.check_team_image(&image, &who.team, "push")?;
    }
    let secret = body.credentials.clone().map(|c| c.into_auth(image.registry_host())).transpose()?;
    crate::api::submit::submit_job(&state, &req, &who, host, crate::jobs::JobSpec::push(body)?, secret).await
}

