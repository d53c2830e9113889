//! Conditional GETs: a strong `ETag` from the SHA-256 of a JSON body, and `304 Not
//! Modified` when `If-None-Match` names it (RFC 9110 §13.1.2: weak comparison, lists,
//! `*`). The gzip middleware (`compress`) turns the tag weak on the compressed
//! representation, which still matches here.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::api::problem::ApiError;

/// The strong entity tag of `body`: `"` + 32 hex digits of its SHA-256 + `"`.
pub fn tag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// The opaque part of an entity tag, without `W/` and quotes; `None` if malformed.
fn opaque(tag: &str) -> Option<&str> {
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.strip_prefix('"')?.strip_suffix('"').filter(|t| !t.contains('"'))
}

/// Whether an `If-None-Match` value (`*`, or a list of entity tags) matches `etag` by
/// weak comparison: `W/"x"` matches `"x"`.
pub fn none_match(if_none_match: &str, etag: &str) -> bool {
    let Some(current) = opaque(etag) else { return false };
    if if_none_match.trim() == "*" {
        return true;
    }
    // Entity tags may hold commas inside their quotes: split at quotes, not commas.
    let mut rest = if_none_match;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let start = if rest.starts_with("W/") { 2 } else { 0 };
        if !rest[start..].starts_with('"') {
            return false;
        }
        let Some(close) = rest[start + 1..].find('"') else { return false };
        let end = start + 1 + close + 1;
        if opaque(&rest[..end]) == Some(current) {
            return true;
        }
        rest = &rest[end..];
    }
}

/// Whether the request's `If-None-Match` headers (all of them) match `etag`.
pub fn request_matches(req: &HttpRequest, etag: &str) -> bool {
    req.headers().get_all(header::IF_NONE_MATCH).filter_map(|v| v.to_str().ok()).any(|v| none_match(v, etag))
}

/// `200` with `value` as JSON and its `ETag`, or `304` (the tag, no body) when the
/// request's `If-None-Match` already names it.
pub fn json(req: &HttpRequest, value: &impl Serialize) -> Result<HttpResponse, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::internal(e.into()))?;
    Ok(bytes(req, body, "application/json"))
}

/// As [`json`], for a body already serialized.
pub fn bytes(req: &HttpRequest, body: impl Into<actix_web::web::Bytes>, content_type: &'static str) -> HttpResponse {
    let body = body.into();
    let etag = tag_of(&body);
    let value = HeaderValue::from_str(&etag).expect("hex in quotes is a header value");
    if request_matches(req, &etag) {
        return HttpResponse::NotModified().insert_header((header::ETAG, value)).finish();
    }
    HttpResponse::Ok().insert_header((header::ETAG, value)).content_type(content_type).body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_strong_and_follow_the_body() {
        let a = tag_of(b"{\"a\":1}");
        assert!(a.starts_with('"') && a.ends_with('"') && a.len() == 34, "{a}");
        assert_eq!(a, tag_of(b"{\"a\":1}"));
        assert_ne!(a, tag_of(b"{\"a\":2}"));
    }

    #[test]
    fn if_none_match_by_weak_comparison() {
        let tag = "\"abc\"";
        for yes in ["\"abc\"", "W/\"abc\"", "*", " * ", "\"x\", \"abc\"", "\"x\",W/\"abc\"", "\"a,b\", \"abc\""] {
            assert!(none_match(yes, tag), "{yes}");
        }
        for no in ["\"abcd\"", "abc", "\"x\"", "", "W/abc", "\"abc", "\"x\" junk \"abc\""] {
            assert!(!none_match(no, tag), "{no}");
        }
        assert!(none_match("\"abc\"", "W/\"abc\""), "a weak current tag matches too");
    }
}
