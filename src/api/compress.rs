//! gzip for large JSON answers, when the client asks (`Accept-Encoding: gzip`).
//!
//! Only a `200` JSON body of known size, at least [`MIN_BYTES`], is compressed: event
//! streams (bodies of unknown size, which must reach the client as they are written),
//! WebSocket upgrades, problems and small answers pass as they are. Such a body carries
//! `Vary: Accept-Encoding` whether compressed or not; compressed, its strong `ETag`
//! becomes weak (`W/"…"`), as the bytes differ while the content is the same, and
//! `If-None-Match` still matches it (weak comparison).

use std::io::Write;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, AcceptEncoding, Encoding, Header, HeaderValue};
use actix_web::middleware::Next;

/// Smaller JSON bodies are sent as they are: gzip would save little.
pub const MIN_BYTES: u64 = 1024;

fn wants_gzip(req: &ServiceRequest) -> bool {
    AcceptEncoding::parse(req.request())
        .ok()
        .filter(|a| !a.0.is_empty())
        .and_then(|a| a.negotiate([Encoding::gzip(), Encoding::identity()].iter()))
        == Some(Encoding::gzip())
}

fn compressible(res: &ServiceResponse<impl MessageBody>) -> bool {
    let json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let large = matches!(res.response().body().size(), BodySize::Sized(n) if n >= MIN_BYTES);
    res.status() == actix_web::http::StatusCode::OK && json && large && !res.headers().contains_key(header::CONTENT_ENCODING)
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4), flate2::Compression::default());
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// Middleware: gzip large JSON answers for clients that accept it.
pub async fn gzip_json(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let wanted = wants_gzip(&req);
    let mut res = next.call(req).await?;
    if !compressible(&res) {
        return Ok(res.map_into_boxed_body());
    }
    res.headers_mut().append(header::VARY, HeaderValue::from_static("accept-encoding"));
    if !wanted {
        return Ok(res.map_into_boxed_body());
    }
    let (req, res) = res.into_parts();
    let (mut res, body) = res.into_parts();
    let bytes = actix_web::body::to_bytes(body).await.map_err(|e| actix_web::error::ErrorInternalServerError(e.into()))?;
    let compressed = gzip(&bytes).map_err(actix_web::error::ErrorInternalServerError)?;
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    let weak = headers.get(header::ETAG).and_then(|v| v.to_str().ok()).filter(|t| !t.starts_with("W/")).map(|t| format!("W/{t}"));
    if let Some(v) = weak.and_then(|w| HeaderValue::from_str(&w).ok()) {
        headers.insert(header::ETAG, v);
    }
    Ok(ServiceResponse::new(req, res.set_body(BoxBody::new(compressed))))
}
