//! The OpenAPI document and the `/v1` route table it describes.

use actix_web::middleware::from_fn;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::scope::Scope;

use super::{audit, containers, extract, images, interactive, jobs, system, tickets};

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
                         this scheme's scope. Event streams and WebSockets also take `?access_token=`, or a single-use `?ticket=` from `POST /v1/tickets`.",
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
    components(schemas(crate::api::problem::Problem, crate::error::ErrorCode, crate::docker::LogLine, crate::docker::LogStream, containers::LogEndEvent,
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
        .wrap(from_fn(extract::authenticate))
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
        .service(tickets::create_ticket)
}
