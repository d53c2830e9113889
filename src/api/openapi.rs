//! The OpenAPI document and the `/v1` route table it describes.

use actix_web::middleware::from_fn;
use utoipa::openapi::example::{Example, ExampleBuilder};
use utoipa::openapi::path::{Operation, OperationBuilder, PathItem};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, ObjectBuilder, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, Modify, OpenApi};
use utoipa_actix_web::scope::Scope;

use super::problem::Problem;
use super::{audit, containers, engine_events, extract, hosts, images, interactive, jobs, networks, problems, prune, stats, system, tickets, volumes};
use crate::error::ErrorCode;

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
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    servers((url = "/", description = "The Berth that serves this document (paths are relative to its origin)")),
    modifiers(&SecurityAddon),
    components(schemas(crate::api::problem::Problem, crate::error::ErrorCode, crate::docker::LogLine, crate::docker::LogStream, containers::LogEndEvent,
        crate::jobs::StateEvent, crate::engine_events::EngineEventView, crate::jobs::LayerEvent, crate::jobs::StepEvent, crate::jobs::Progress, crate::jobs::JobError,
        crate::domain::exec::ClientControl, crate::domain::exec::ServerControl)),
    tags(
        (name = "images", description = "Images on the engine"),
        (name = "containers", description = "Containers on the engine, and interactive sessions with them (attach, exec) over WebSocket"),
        (name = "volumes", description = "Named volumes on the engine, by team"),
        (name = "networks", description = "Networks on the engine, by team"),
        (name = "jobs", description = "Builds, pulls, pushes, runs and prunes: queued jobs with SSE progress"),
        (name = "system", description = "Health, readiness, metrics, engine information and this document"),
        (name = "problems", description = "The pages the problem `type` URIs name: one per error `code`"),
    )
)]
pub struct ApiDoc;

/// The `/v1` routes on `$scope`: a utoipa scope (which documents each route as it is
/// added) or a plain actix one (which only serves them). One list for both, so what is
/// served is what is documented.
macro_rules! v1_routes {
    ($scope:expr) => {
        $scope
            // Inner first: the host guard runs once the caller is authenticated.
            .wrap(from_fn(hosts::host_guard))
            .wrap(from_fn(extract::authenticate))
            .service(system::system_info)
            .service(hosts::list_hosts)
            .service(hosts::get_host)
            .service(engine_events::stream_engine_events)
            .service(images::list_images)
            .service(images::tag_image)
            .service(images::build_image)
            .service(images::pull_image)
            .service(images::push_image)
            .service(prune::prune_images)
            .service(prune::prune_build_cache)
            .service(images::inspect_image)
            .service(images::image_history)
            .service(images::remove_image)
            .service(containers::list_containers)
            .service(containers::run_container)
            .service(prune::prune_containers)
            .service(volumes::list_volumes)
            .service(volumes::create_volume)
            .service(prune::prune_volumes)
            .service(volumes::inspect_volume)
            .service(volumes::remove_volume)
            .service(networks::list_networks)
            .service(networks::create_network)
            .service(prune::prune_networks)
            .service(networks::inspect_network)
            .service(networks::remove_network)
            .service(networks::connect_network)
            .service(networks::disconnect_network)
            .service(containers::inspect_container)
            .service(containers::start_container)
            .service(containers::stop_container)
            .service(containers::restart_container)
            .service(containers::kill_container)
            .service(containers::remove_container)
            .service(containers::container_logs)
            .service(stats::container_stats)
            .service(stats::container_top)
            .service(stats::list_container_stats)
            .service(system::disk_usage)
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
    };
}

/// The `/v1` scope: every route behind the JWT middleware, documented (it builds the
/// routes' part of the OpenAPI document: done once, at start).
pub fn v1_scope() -> Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    v1_routes!(utoipa_actix_web::scope("/v1"))
}

/// The same routes, served only: what each HTTP worker builds, without building the
/// OpenAPI document again (several MiB of allocations, and milliseconds, per worker).
pub fn v1_served() -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    v1_routes!(actix_web::web::scope("/v1"))
}

const PROBLEM_JSON: &str = "application/problem+json";

/// The schema of a string parameter that takes one of `values` (for `#[param(schema_with)]`
/// where the values are a list of strings rather than a Rust enum; utoipa then drops the
/// field's doc comment, so the schema carries `description`).
pub fn one_of(description: &str, values: &[&str]) -> utoipa::openapi::Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(description))
        .enum_values(Some(values.iter().copied()))
        .build()
}

/// What the route annotations cannot say, added to the generated document: the route
/// of the document itself (served beside Swagger UI), and on every problem answer one
/// example per `code` its description names (else the status's first code in the
/// catalogue), each with that code's own status, title and `type`.
pub fn finish(mut spec: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    spec.paths.paths.insert("/openapi.json".into(), document_route());
    for (path, item) in spec.paths.paths.iter_mut() {
        if path.starts_with("/v1/") && hosts::engine_route(path) && !hosts::exec_route(path) {
            operations_mut(item).for_each(take_host);
        }
    }
    for item in spec.paths.paths.values_mut() {
        for op in operations_mut(item) {
            for (status, response) in op.responses.responses.iter_mut() {
                let (Ok(status), RefOr::T(response)) = (status.parse::<u16>(), response) else { continue };
                let examples = problem_examples(status, &response.description);
                if let Some(RefOr::T(content)) = response.content.get_mut(PROBLEM_JSON)
                    && content.example.is_none()
                    && content.examples.is_empty()
                {
                    content.examples = examples;
                }
            }
        }
    }
    spec
}

/// An engine route's `?host=` (routed by `hosts::host_guard`), and its 404.
fn take_host(op: &mut Operation) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    let params = op.parameters.get_or_insert_with(Vec::new);
    if !params.iter().any(|p| matches!(p, RefOr::T(p) if p.name == "host")) {
        let schema = ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String).build();
        params.push(
            ParameterBuilder::new()
                .name("host")
                .parameter_in(ParameterIn::Query)
                .description(Some("The engine to act on (a name of `GET /v1/hosts`); the default host when absent"))
                .schema(Some(schema))
                .build()
                .into(),
        );
    }
    let missing = "No such host, or one not given to the caller's team (`host_not_found`)";
    match op.responses.responses.get_mut("404") {
        Some(RefOr::T(r)) if !r.description.contains("host_not_found") => {
            r.description = format!("{}; or no such host, or one not given to the caller's team (`host_not_found`)", r.description);
        }
        Some(_) => {}
        None => {
            let r = ResponseBuilder::new().description(missing).content(PROBLEM_JSON, Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Problem"))))).build();
            op.responses.responses.insert("404".into(), r.into());
        }
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head]
        .into_iter()
        .flatten()
}

/// The example problems of an answer with `status`: one per code named in backticks in
/// its description that has this status, else the first code of the catalogue with it.
fn problem_examples(status: u16, description: &str) -> std::collections::BTreeMap<String, RefOr<Example>> {
    let with_status = || ErrorCode::ALL.iter().copied().filter(|c| c.status() == status);
    let named: Vec<ErrorCode> =
        with_status().filter(|c| description.split('`').skip(1).step_by(2).any(|s| s == c.as_str())).collect();
    let codes = if named.is_empty() { with_status().take(1).collect() } else { named };
    codes
        .into_iter()
        .map(|code| {
            let problem = Problem {
                type_: problems::type_uri(code),
                title: code.title().into(),
                status: code.status(),
                detail: code.meaning().replace('`', ""),
                code,
                request_id: "0f6a2b1e-4c1d-4a8e-9d55-0c2b9a7f4e11".into(),
                host: None,
            };
            let example = ExampleBuilder::new().summary(code.title()).value(serde_json::to_value(problem).ok()).build();
            (code.as_str().to_string(), RefOr::T(example))
        })
        .collect()
}

/// `GET /openapi.json`, served by the Swagger UI service rather than a handler.
fn document_route() -> PathItem {
    let document = ResponseBuilder::new()
        .description("The OpenAPI document (this one)")
        .content("application/json", Content::new(Some(ObjectBuilder::new().build())))
        .build();
    let mut responses = super::responses::EdgeErrors::responses();
    responses.insert("200".into(), document.into());
    let mut op = OperationBuilder::new()
        .operation_id(Some("get_openapi_document"))
        .tag("system")
        .summary(Some("The OpenAPI document"))
        .description(Some(
            "This document: every route, its parameters, bodies, answers and the role it needs. Swagger UI shows \
             it at `/swagger-ui/`. Unauthenticated.",
        ))
        .build();
    op.responses.responses = responses;
    op.security = Some(Vec::new());
    PathItem::new(utoipa::openapi::HttpMethod::Get, op)
}
