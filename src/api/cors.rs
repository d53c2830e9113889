//! CORS for portals in browsers (`BERTH_CORS_ORIGINS`): preflights are answered before
//! authentication for the listed origins (or any, with `*`), with the request headers a
//! portal sends and the response headers it reads. Bearer tokens need no credentials
//! mode, so none is offered. An unlisted origin gets no CORS headers (the browser then
//! keeps the answer from the page); the request itself is judged as any other.

use actix_cors::Cors;
use actix_web::http::{Method, header};

/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: usize = 600;

pub fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("last-event-id"),
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::LOCATION,
            header::RETRY_AFTER,
            header::ALLOW,
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("x-berth-tty"),
        ])
        .max_age(PREFLIGHT_MAX_AGE)
        .block_on_origin_mismatch(false);
    for origin in origins {
        cors = if origin == "*" { cors.allow_any_origin().send_wildcard() } else { cors.allowed_origin(origin) };
    }
    cors
}
