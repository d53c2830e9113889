//! HTTP handlers, one file per resource, and the OpenAPI document they make up.

pub mod audit;
pub mod containers;
pub mod images;
pub mod interactive;
pub mod jobs;
pub mod responses;
pub mod system;

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, middleware::from_fn};
use serde::de::DeserializeOwned;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::scope::Scope;

use crate::error::ApiError;

/// Query-string extractor that accepts repeated keys (`?label=a&label=b`) into `Vec`
/// fields, and answers a malformed query with `400 invalid_request`.
pub struct Qs<T>(pub T);

impl<T: DeserializeOwned> FromRequest for Qs<T> {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(
            serde_html_form::from_str::<T>(req.query_string())
                .map(Qs)
                .map_err(|e| ApiError::invalid(format!("Invalid query string: {e}")).into()),
        )
    }
}

/// `true`/`false`/`1`/`0` in a query string.
pub(crate) fn de_bool_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let s: Option<String> = serde::Deserialize::deserialize(d)?;
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some("true") | Some("1") => Ok(Some(true)),
        Some("false") | Some("0") => Ok(Some(false)),
        Some(other) => Err(serde::de::Error::custom(format!("expected true or false, got `{other}`"))),
    }
}

/// The shared paging of Berth's own records (jobs, audit): `?limit=` (1-1000, default
/// 100) and `?cursor=` (the last id of the previous page; ids sort by time).
pub(crate) struct Paging {
    pub limit: usize,
    pub cursor: Option<String>,
}

impl Paging {
    pub fn new(limit: Option<u32>, cursor: Option<String>) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::invalid("`limit` must be between 1 and 1000"));
        }
        if let Some(c) = &cursor {
            if c.is_empty() || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(ApiError::invalid("`cursor` is not a cursor this server gave out"));
            }
        }
        Ok(Self { limit: limit as usize, cursor })
    }

    /// How many rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> usize {
        self.limit + 1
    }

    /// Cut the fetched rows to the page; the next cursor, when more follow.
    pub fn finish<T>(&self, items: &mut Vec<T>, id: impl Fn(&T) -> &str) -> Option<String> {
        if items.len() <= self.limit {
            return None;
        }
        items.truncate(self.limit);
        items.last().map(|t| id(t).to_string())
    }
}

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                utoipa::openapi::security::HttpBuilder::from(Http::new(HttpAuthScheme::Bearer))
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256 (BERTH_JWT_SECRET) or RS256/ES256 (BERTH_JWT_PUBLIC_KEY_FILE) JWT with a `roles` \
                         claim (viewer, operator, admin). Each operation lists the least role it needs as \
                         this scheme's scope. Event streams and WebSockets also take `?access_token=`.",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Berth",
        description = "An authenticated HTTP/JSON control plane for the Docker Engine. Every `/v1` route needs \
                       `Authorization: Bearer <JWT>`; errors are RFC 9457 `application/problem+json` with a stable `code`.",
        license(name = "Apache-2.0")
    ),
    modifiers(&SecurityAddon),
    components(schemas(crate::error::Problem, crate::error::ErrorCode, crate::docker::LogLine, crate::docker::LogStream, containers::LogEndEvent,
        crate::jobs::StateEvent, crate::jobs::LayerEvent, crate::jobs::Progress, crate::jobs::JobError,
        crate::domain::exec::ClientControl, crate::domain::exec::ServerControl)),
    tags(
        (name = "images", description = "Images on the engine"),
        (name = "containers", description = "Containers on the engine, and interactive sessions with them (attach, exec) over WebSocket"),
        (name = "jobs", description = "Builds, pulls, pushes, runs and prunes: queued jobs with SSE progress"),
        (name = "system", description = "Health, readiness and engine information"),
    )
)]
pub struct ApiDoc;

/// The `/v1` scope: every route behind the JWT middleware.
pub fn v1_scope() -> Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    utoipa_actix_web::scope("/v1")
        .wrap(from_fn(crate::auth::authenticate))
        .service(system::system_info)
        .service(images::list_images)
        .service(images::tag_image)
        .service(images::build_image)
        .service(images::pull_image)
        .service(images::push_image)
        .service(images::prune_images)
        .service(images::inspect_image)
        .service(images::remove_image)
        .service(containers::list_containers)
        .service(containers::run_container)
        .service(containers::prune_containers)
        .service(containers::inspect_container)
        .service(containers::start_container)
        .service(containers::stop_container)
        .service(containers::restart_container)
        .service(containers::kill_container)
        .service(containers::remove_container)
        .service(containers::container_logs)
        .service(interactive::attach_container)
        .service(interactive::create_exec)
        .service(interactive::exec_session)
        .service(jobs::list_jobs)
        .service(jobs::get_job)
        .service(jobs::cancel_job)
        .service(jobs::delete_job)
        .service(jobs::stream_job_events)
        .service(jobs::stream_events)
        .service(audit::list_audit)
}
