//! Wiring: settings -> state -> HTTP server.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers, from_fn};
use actix_web::{App, HttpResponse, HttpServer, ResponseError, web};
use anyhow::Context;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::api;
use crate::auth::JwtVerifier;
use crate::config::Settings;
use crate::docker::Engine;
use crate::error::{ApiError, ErrorCode, handlers};

/// What every handler can reach.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub engine: Arc<Engine>,
}

/// The OpenAPI document, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, spec) = App::new()
        .into_utoipa_app()
        .openapi(api::ApiDoc::openapi())
        .service(api::system::healthz)
        .service(api::system::readyz)
        .service(api::v1_scope())
        .split_for_parts();
    spec
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Bind (port 0 picks a free one) and wire everything; the server runs once awaited.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(&settings.listen)
            .with_context(|| format!("binding BERTH_LISTEN {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating BERTH_DATA_DIR {}", settings.data_dir.display()))?;
        let verifier = web::Data::new(JwtVerifier::new(&settings.jwt)?);
        let engine = Arc::new(Engine::new(settings.docker_host.clone()));
        if let Err(e) = engine.ping().await {
            tracing::warn!(error = %e, "the Docker engine does not answer yet; serving 503 docker_unavailable until it does");
        }
        let settings = Arc::new(settings);
        let state = web::Data::new(AppState { settings: settings.clone(), engine });
        let spec = openapi();
        let json_limit = settings.json_limit;

        let server = HttpServer::new(move || {
            let (app, _) = App::new()
                .into_utoipa_app()
                .openapi(api::ApiDoc::openapi())
                .service(api::system::healthz)
                .service(api::system::readyz)
                .service(api::v1_scope())
                .split_for_parts();
            app.app_data(state.clone())
                .app_data(verifier.clone())
                .app_data(web::JsonConfig::default().limit(json_limit).error_handler(handlers::json_error))
                .app_data(web::QueryConfig::default().error_handler(handlers::query_error))
                .app_data(web::PathConfig::default().error_handler(handlers::path_error))
                .service(SwaggerUi::new("/swagger-ui/{_:.*}").url("/openapi.json", spec.clone()))
                .route(
                    "/swagger-ui",
                    web::get().to(|| async {
                        HttpResponse::MovedPermanently().insert_header((header::LOCATION, "/swagger-ui/")).finish()
                    }),
                )
                .default_service(web::to(handlers::not_found))
                .wrap(ErrorHandlers::new().default_handler(problem_safety_net))
                .wrap(from_fn(crate::telemetry::request_span))
        })
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await.context("running the HTTP server")
    }
}

/// Any error response without a JSON body (a framework default, say) becomes one,
/// so no route ever answers with a plain-text error body.
fn problem_safety_net<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    // A JSON body (a problem, or a deliberate document such as /readyz's) stays as it is.
    let is_json = res.response().headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().starts_with(b"application/problem+json") || v.as_bytes().starts_with(b"application/json")
    });
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let code = match status.as_u16() {
        400 => ErrorCode::InvalidRequest,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        429 => ErrorCode::QueueFull,
        s if s < 500 => ErrorCode::InvalidRequest,
        503 => ErrorCode::DockerUnavailable,
        _ => ErrorCode::Internal,
    };
    let detail = res
        .response()
        .error()
        .map(|e| e.to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let api = if code == ErrorCode::Internal {
        ApiError::internal(anyhow::anyhow!(detail))
    } else {
        ApiError::new(code, detail)
    };
    let (req, _) = res.into_parts();
    let res = ServiceResponse::new(req, api.error_response()).map_into_right_body();
    Ok(ErrorHandlerResponse::Response(res))
}
