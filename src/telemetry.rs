//! Logging and the per-request root span.
//!
//! Every request gets a request id (a sane incoming `x-request-id` is kept, otherwise a
//! fresh UUID), a root span carrying it, and the id echoed in the response header and
//! in every problem body. The logged target is the path only: the query string may hold
//! `access_token` and must never reach a log line.

use std::io::IsTerminal;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// Install the global subscriber. `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let format = match format {
        LogFormat::Auto if std::io::stderr().is_terminal() => LogFormat::Pretty,
        LogFormat::Auto => LogFormat::Json,
        f => f,
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Pretty => registry.with(fmt::layer().with_writer(std::io::stderr)).try_init(),
        _ => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // A second init (tests start many apps in one process) keeps the first subscriber.
    let _ = result;
}

fn incoming_request_id(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| value.to_string())
}

/// Root-span middleware: request id, one span per request, one access log line.
pub async fn request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let request_id = incoming_request_id(&req).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.path(),
        subject = tracing::field::Empty,
        team = tracing::field::Empty,
    );
    let started = Instant::now();
    let id = request_id.clone();
    let fut = REQUEST_ID.sync_scope(id.clone(), || next.call(req));
    let result = REQUEST_ID.scope(id, fut).instrument(span.clone()).await.map(|r| r.map_into_boxed_body());
    // Inner middleware answers errors as responses (not `Err`), so that they pass here,
    // inside the request's scope, and carry the request id like any other.
    let mut res = result?;
    if let Ok(h) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(HeaderName::from_static(REQUEST_ID_HEADER), h);
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(metrics) = res.request().app_data::<actix_web::web::Data<crate::metrics::Metrics>>() {
        let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
        metrics.observe_request(res.request().method().as_str(), &route, res.status().as_u16(), elapsed);
    }
    span.in_scope(|| {
        tracing::info!(
            status = res.status().as_u16(),
            elapsed_ms = elapsed * 1000.0,
            "request served"
        )
    });
    Ok(res)
}
