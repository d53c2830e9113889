//! The built-in console at `/ui/`: static files from `ui/`, embedded in the binary at
//! build time (rust-embed), so it needs no CDN and no network at run time. The console
//! itself is a client of the public API like any portal; nothing here authenticates.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use rust_embed::RustEmbed;

use crate::api::problem::ApiError;

#[derive(RustEmbed)]
#[folder = "ui/"]
struct Assets;

/// Scripts and pages revalidate on every load (the ETag makes that a 304); vendored
/// libraries change only with the binary.
fn cache_control(path: &str) -> &'static str {
    if path.starts_with("vendor/") { "public, max-age=3600" } else { "no-cache" }
}

/// The page may talk to another Berth (the base URL field), so connections go anywhere;
/// everything else comes from here.
const CSP: &str = "default-src 'self'; connect-src 'self' http: https: ws: wss:; \
                   style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'self'";

async fn asset(req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let path = path.into_inner();
    let path = if path.is_empty() || path.ends_with('/') { format!("{path}index.html") } else { path };
    let Some(file) = Assets::get(&path) else {
        return Err(ApiError::not_found(format!("no file {path} in the console")));
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    // Weak comparison and lists, as for the API's own tags (a gzip proxy weakens them).
    let fresh = crate::api::etag::request_matches(&req, &etag);
    let mut res = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    res.insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, cache_control(&path)))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .insert_header((header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP));
    if fresh {
        return Ok(res.finish());
    }
    // RFC 9239: JavaScript is text/javascript (mime_guess says application/ for .mjs).
    let mime = if path.ends_with(".mjs") { "text/javascript" } else { file.metadata.mimetype() };
    Ok(res.content_type(mime).body(file.data.into_owned()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `/ui` -> `/ui/`, and the files under it.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/ui",
        web::get().to(|| async { HttpResponse::MovedPermanently().insert_header((header::LOCATION, "/ui/")).finish() }),
    )
    .route("/ui/{path:.*}", web::get().to(asset));
}
