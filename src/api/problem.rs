//! Problem documents: every failure that leaves the service, rendered as RFC 9457
//! `application/problem+json` from the code catalogue in [`crate::error`].
//!
//! [`ApiError`] is the HTTP edge's error type. Below the edge each module has its own
//! error type implementing [`HasCode`]; one blanket `From` turns any of them into an
//! `ApiError` (5xx causes are logged, never sent). Also here: the extractor error
//! handlers, the default 404/405 with the route table, and the safety net that turns
//! any non-JSON error body into a problem.

use std::fmt;

use actix_web::dev::ServiceResponse;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpResponse, ResponseError, http::StatusCode, http::header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ErrorCode, HasCode};
use crate::telemetry::current_request_id;

/// An RFC 9457 problem document, as every error response carries it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "/problems/container_not_found",
    "title": "Container not found",
    "status": 404,
    "detail": "No such container: web-1",
    "code": "container_not_found",
    "request_id": "0f6a2b1e-4c1d-4a8e-9d55-0c2b9a7f4e11"
}))]
pub struct Problem {
    /// The problem type: `/problems/{code}`, a URI reference (relative to the URI the
    /// request went to) of the page Berth serves about this `code`.
    #[serde(rename = "type")]
    #[schema(format = "uri-reference")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    /// What went wrong, for a human. For engine errors, Docker's own message.
    pub detail: String,
    pub code: ErrorCode,
    /// The id of the request, also sent as the `x-request-id` header and logged.
    pub request_id: String,
    /// The engine the problem is about (`docker_unavailable`, `docker_error`,
    /// `host_not_found`), when the request named one (`?host=`, a job's `host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// The error type of every handler.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    /// Seconds, sent as `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
    /// The cause, logged (never sent) for 5xx.
    pub source: Option<anyhow::Error>,
    /// The engine it is about, when not the one `?host=` named (a job body's `host`).
    pub host: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into(), retry_after: None, source: None, host: None }
    }
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, detail)
    }
    pub fn internal(source: anyhow::Error) -> Self {
        Self {
            code: ErrorCode::Internal,
            detail: INTERNAL_DETAIL.into(),
            retry_after: None,
            source: Some(source),
            host: None,
        }
    }
    pub fn with_source(mut self, source: anyhow::Error) -> Self {
        self.source = Some(source);
        self
    }
    /// About the engine `host` (a job body's `host`).
    pub fn on_host(mut self, host: &str) -> Self {
        self.host = Some(host.to_string());
        self
    }
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn problem(&self) -> Problem {
        Problem {
            type_: super::problems::type_uri(self.code),
            title: self.code.title().to_string(),
            status: self.code.status(),
            detail: self.detail.clone(),
            code: self.code,
            request_id: current_request_id().unwrap_or_default(),
            host: matches!(self.code, ErrorCode::DockerUnavailable | ErrorCode::DockerError | ErrorCode::HostNotFound)
                .then(|| self.host.clone().or_else(super::hosts::current_host))
                .flatten(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let problem = self.problem();
        if self.status().is_server_error() {
            match &self.source {
                Some(source) => tracing::error!(code = %self.code, detail = %self.detail, cause = format!("{source:#}"), "request failed"),
                None => tracing::warn!(code = %self.code, detail = %self.detail, "request failed"),
            }
        } else {
            tracing::info!(code = %self.code, detail = %self.detail, "request rejected");
        }
        let mut res = HttpResponse::build(self.status());
        res.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.code == ErrorCode::Unauthorized {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        let mut res = res.body(serde_json::to_vec(&problem).unwrap_or_default());
        // For the audit record of this request.
        res.extensions_mut().insert(self.code);
        res
    }
}

/// Extractor and routing failures, converted into problems.
pub mod handlers {
    use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
    use actix_web::{HttpRequest, HttpResponse, ResponseError};

    use super::{ApiError, ErrorCode};

    pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
        let api = match &err {
            JsonPayloadError::OverflowKnownLength { length, limit } => ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("The JSON body is {length} bytes; the limit is {limit} bytes."),
            ),
            JsonPayloadError::Overflow { limit } => ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("The JSON body is larger than the limit of {limit} bytes."),
            ),
            JsonPayloadError::ContentType => ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "The body must be JSON, sent with `Content-Type: application/json`.",
            ),
            JsonPayloadError::Deserialize(e) => ApiError::invalid(format!("Invalid JSON body: {}", redact_values(&e.to_string()))),
            JsonPayloadError::Serialize(e) => ApiError::internal(anyhow::anyhow!("{e}")),
            other => ApiError::invalid(format!("Could not read the JSON body: {other}")),
        };
        actix_web::error::InternalError::from_response(err, api.error_response()).into()
    }

    /// serde quotes the offending value (`invalid type: string "hunter2", expected …`);
    /// that value may be a password sent in the wrong place, so it never reaches a
    /// response or a log line.
    pub fn redact_values(msg: &str) -> String {
        let out = redact_quoted(msg, "string \"", '"', "a string");
        // Numbers, booleans, characters and enum names are quoted in backticks: a numeric
        // password or PIN is as secret as a string one.
        [
            ("integer `", "an integer"),
            ("floating point `", "a number"),
            ("boolean `", "a boolean"),
            ("character `", "a character"),
            ("unknown variant `", "an unknown variant"),
        ]
        .iter()
        .fold(out, |acc, (marker, with)| redact_quoted(&acc, marker, '`', with))
    }

    /// Replace every `marker` + value + `close` in `msg` with `with`.
    fn redact_quoted(msg: &str, marker: &str, close: char, with: &str) -> String {
        let mut out = String::with_capacity(msg.len());
        let mut rest = msg;
        while let Some(i) = rest.find(marker) {
            out.push_str(&rest[..i]);
            out.push_str(with);
            let after = &rest[i + marker.len()..];
            let mut end = None;
            let mut escaped = false;
            for (j, c) in after.char_indices() {
                match c {
                    '\\' if !escaped && close == '"' => escaped = true,
                    c if c == close && !escaped => {
                        end = Some(j);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            rest = match end {
                Some(j) => &after[j + close.len_utf8()..],
                None => "",
            };
        }
        out.push_str(rest);
        out
    }

    pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
        let api = ApiError::invalid(format!("Invalid query string: {err}"));
        actix_web::error::InternalError::from_response(err, api.error_response()).into()
    }

    pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
        let api = ApiError::invalid(format!("Invalid path parameter: {err}"));
        actix_web::error::InternalError::from_response(err, api.error_response()).into()
    }

    /// The default service: unknown routes are 404, known paths with another method 405
    /// (with `Allow` listing the methods the path does take).
    pub async fn not_found(req: HttpRequest) -> HttpResponse {
        let allowed = req
            .app_data::<actix_web::web::Data<RouteTable>>()
            .map(|t| t.methods_for(req.path()))
            .unwrap_or_default();
        if !allowed.is_empty() {
            let allow = allowed.join(", ");
            let mut res = ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("{} is not allowed on {}; use {allow}.", req.method(), req.path()),
            )
            .error_response();
            if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&allow) {
                res.headers_mut().insert(actix_web::http::header::ALLOW, v);
            }
            return res;
        }
        ApiError::not_found(format!("No route for {} {}", req.method(), req.path())).error_response()
    }

    /// Every documented path and its methods, taken from the OpenAPI document: what the
    /// 405 answer's `Allow` header lists.
    #[derive(Debug, Default)]
    pub struct RouteTable {
        routes: Vec<(Vec<String>, Vec<String>)>,
    }

    impl RouteTable {
        pub fn from_spec(spec: &utoipa::openapi::OpenApi) -> Self {
            Self::from_json(&serde_json::to_value(spec).unwrap_or_default())
        }

        /// The same, from the document as JSON.
        pub fn from_json(json: &serde_json::Value) -> Self {
            let mut routes = Vec::new();
            if let Some(paths) = json.get("paths").and_then(|p| p.as_object()) {
                for (path, item) in paths {
                    let methods: Vec<String> = ["get", "post", "put", "patch", "delete"]
                        .iter()
                        .filter(|m| item.get(**m).is_some())
                        .map(|m| m.to_uppercase())
                        .collect();
                    let segments = path.trim_start_matches('/').split('/').map(String::from).collect();
                    routes.push((segments, methods));
                }
            }
            Self { routes }
        }

        /// `{reference}` takes the rest of the path (image references contain `/`);
        /// other `{params}` one segment.
        pub fn methods_for(&self, path: &str) -> Vec<String> {
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let mut out: Vec<String> = Vec::new();
            for (pattern, methods) in &self.routes {
                let matches = pattern.len() <= parts.len()
                    && pattern.iter().enumerate().all(|(i, seg)| match seg.as_str() {
                        "{reference}" => i == pattern.len() - 1 && !parts[i..].join("/").is_empty(),
                        s if s.starts_with('{') => !parts[i].is_empty(),
                        s => parts[i] == s,
                    })
                    && (pattern.len() == parts.len() || pattern.last().is_some_and(|s| s == "{reference}"));
                if matches {
                    for m in methods {
                        if !out.contains(m) {
                            out.push(m.clone());
                        }
                    }
                }
            }
            out
        }
    }
}


impl ApiError {
    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// Any module's error becomes a problem with the code it names; the cause of a 5xx is
/// kept for the log line.
impl<E: HasCode + std::error::Error + Send + Sync + 'static> From<E> for ApiError {
    fn from(e: E) -> Self {
        let code = e.code();
        let detail = if code == ErrorCode::Internal { INTERNAL_DETAIL.to_string() } else { e.detail() };
        let logged = code.status() >= 500 && !matches!(code, ErrorCode::DockerUnavailable | ErrorCode::DockerError);
        ApiError { code, detail, retry_after: e.retry_after(), source: logged.then(|| anyhow::Error::new(e)), host: None }
    }
}

const INTERNAL_DETAIL: &str = "The server failed to handle the request; the request id identifies the cause in its log.";

pub type ApiResult<T> = Result<T, ApiError>;

/// Any error response without a JSON body (a framework default, say) becomes one,
/// so no route ever answers with a plain-text error body.
pub fn problem_safety_net<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
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

#[cfg(test)]
mod tests {
    use super::handlers::redact_values;

    #[test]
    fn quoted_values_are_redacted() {
        assert_eq!(
            redact_values(r#"invalid type: string "hunter2", expected struct X at line 1"#),
            "invalid type: a string, expected struct X at line 1"
        );
        assert_eq!(redact_values(r#"a string "x\"y" and string "z""#), "a a string and a string");
        assert_eq!(redact_values("unknown field `foo`"), "unknown field `foo`");
        assert_eq!(
            redact_values("invalid type: integer `934712`, expected a string at line 1 column 30"),
            "invalid type: an integer, expected a string at line 1 column 30"
        );
        assert_eq!(
            redact_values("unknown variant `hunter2`, expected one of `missing`, `always`, `never`"),
            "an unknown variant, expected one of `missing`, `always`, `never`"
        );
        assert_eq!(redact_values("invalid type: floating point `3.14`, expected u32"), "invalid type: a number, expected u32");
        assert_eq!(redact_values("invalid type: boolean `true`, expected a string"), "invalid type: a boolean, expected a string");
    }
}

/// Longest path and query string accepted (414 beyond).
pub const MAX_PATH: usize = 4096;
pub const MAX_QUERY: usize = 8192;
/// Largest total of header names and values accepted (431 beyond).
pub const MAX_HEADERS: usize = 16 * 1024;

/// Middleware: 414 for an overlong path or query, 431 for oversized headers, before
/// anything else reads them. Runs inside the request span, so the problem carries the
/// request id.
pub async fn refuse_oversized(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody + 'static>>, actix_web::Error> {
    let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    let refusal = if req.path().len() > MAX_PATH || req.query_string().len() > MAX_QUERY {
        Some(ApiError::new(
            ErrorCode::UriTooLong,
            format!("Paths are limited to {MAX_PATH} bytes and query strings to {MAX_QUERY} bytes."),
        ))
    } else if header_bytes > MAX_HEADERS {
        Some(ApiError::new(ErrorCode::HeadersTooLarge, format!("Request headers are limited to {MAX_HEADERS} bytes in all.")))
    } else {
        None
    };
    match refusal {
        Some(refusal) => Ok(req.into_response(refusal.error_response()).map_into_right_body()),
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}
