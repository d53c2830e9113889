//! The one catalogue of error codes, rendered as RFC 9457 `application/problem+json`.
//!
//! Every failure that leaves the service goes through [`ApiError`]: handler errors,
//! extractor errors (bad JSON, bad query, bad path), unknown routes and methods, auth
//! rejections and engine failures. The wire `code` is the snake_case name of
//! [`ErrorCode`] and never changes once shipped.

use std::fmt;

use actix_web::{HttpResponse, ResponseError, http::StatusCode, http::header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::telemetry::current_request_id;

/// Stable machine-readable error codes (the `code` member of a problem).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Unauthorized,
    Forbidden,
    PolicyViolation,
    NotFound,
    ImageNotFound,
    ContainerNotFound,
    JobNotFound,
    Conflict,
    InvalidRequest,
    InvalidReference,
    PayloadTooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    QueueFull,
    TooManySessions,
    DockerUnavailable,
    DockerError,
    Interrupted,
    Canceled,
    RegistryAuthFailed,
    StoreUnavailable,
    UriTooLong,
    HeadersTooLarge,
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            Unauthorized => StatusCode::UNAUTHORIZED,
            Forbidden | PolicyViolation => StatusCode::FORBIDDEN,
            NotFound | ImageNotFound | ContainerNotFound | JobNotFound => StatusCode::NOT_FOUND,
            Conflict => StatusCode::CONFLICT,
            InvalidRequest | InvalidReference => StatusCode::BAD_REQUEST,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            QueueFull | TooManySessions => StatusCode::TOO_MANY_REQUESTS,
            DockerUnavailable | Interrupted => StatusCode::SERVICE_UNAVAILABLE,
            DockerError => StatusCode::BAD_GATEWAY,
            Canceled => StatusCode::CONFLICT,
            RegistryAuthFailed => StatusCode::FORBIDDEN,
            StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            UriTooLong => StatusCode::URI_TOO_LONG,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn title(self) -> &'static str {
        use ErrorCode::*;
        match self {
            Unauthorized => "Authentication required",
            Forbidden => "Forbidden",
            PolicyViolation => "Refused by the run policy",
            NotFound => "Not found",
            ImageNotFound => "Image not found",
            ContainerNotFound => "Container not found",
            JobNotFound => "Job not found",
            Conflict => "Conflict",
            InvalidRequest => "Invalid request",
            InvalidReference => "Invalid image reference",
            PayloadTooLarge => "Payload too large",
            UnsupportedMediaType => "Unsupported media type",
            MethodNotAllowed => "Method not allowed",
            QueueFull => "Job queue is full",
            TooManySessions => "Too many interactive sessions",
            DockerUnavailable => "Docker engine unavailable",
            DockerError => "Docker engine error",
            Interrupted => "Interrupted",
            Canceled => "Canceled",
            RegistryAuthFailed => "The registry refused the credentials",
            StoreUnavailable => "Job store unavailable",
            UriTooLong => "URI too long",
            HeadersTooLarge => "Request headers too large",
            Internal => "Internal server error",
        }
    }

    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            PolicyViolation => "policy_violation",
            NotFound => "not_found",
            ImageNotFound => "image_not_found",
            ContainerNotFound => "container_not_found",
            JobNotFound => "job_not_found",
            Conflict => "conflict",
            InvalidRequest => "invalid_request",
            InvalidReference => "invalid_reference",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            MethodNotAllowed => "method_not_allowed",
            QueueFull => "queue_full",
            TooManySessions => "too_many_sessions",
            DockerUnavailable => "docker_unavailable",
            DockerError => "docker_error",
            Interrupted => "interrupted",
            Canceled => "canceled",
            RegistryAuthFailed => "registry_auth_failed",
            StoreUnavailable => "store_unavailable",
            UriTooLong => "uri_too_long",
            HeadersTooLarge => "headers_too_large",
            Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RFC 9457 problem document, as every error response carries it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "https://berth.dev/problems/container_not_found",
    "title": "Container not found",
    "status": 404,
    "detail": "No such container: web-1",
    "code": "container_not_found",
    "request_id": "0f6a2b1e-4c1d-4a8e-9d55-0c2b9a7f4e11"
}))]
pub struct Problem {
    /// A URI naming the problem type; one per `code`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    /// What went wrong, for a human. For engine errors, Docker's own message.
    pub detail: String,
    pub code: ErrorCode,
    /// The id of the request, also sent as the `x-request-id` header and logged.
    pub request_id: String,
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
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into(), retry_after: None, source: None }
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
            detail: "The server failed to handle the request; the request id identifies the cause in its log.".into(),
            retry_after: None,
            source: Some(source),
        }
    }
    pub fn with_source(mut self, source: anyhow::Error) -> Self {
        self.source = Some(source);
        self
    }
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn problem(&self) -> Problem {
        Problem {
            type_: format!("https://berth.dev/problems/{}", self.code),
            title: self.code.title().to_string(),
            status: self.code.status().as_u16(),
            detail: self.detail.clone(),
            code: self.code,
            request_id: current_request_id().unwrap_or_default(),
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
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let problem = self.problem();
        if self.code.status().is_server_error() {
            match &self.source {
                Some(source) => tracing::error!(code = %self.code, detail = %self.detail, cause = format!("{source:#}"), "request failed"),
                None => tracing::warn!(code = %self.code, detail = %self.detail, "request failed"),
            }
        } else {
            tracing::info!(code = %self.code, detail = %self.detail, "request rejected");
        }
        let mut res = HttpResponse::build(self.code.status());
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

impl From<crate::docker::EngineError> for ApiError {
    fn from(e: crate::docker::EngineError) -> Self {
        use crate::docker::{EngineError, ObjectKind};
        match e {
            EngineError::Unavailable(msg) => ApiError::new(
                ErrorCode::DockerUnavailable,
                format!("The Docker engine does not answer: {msg}"),
            )
            .with_retry_after(5),
            EngineError::NotFound { kind, message } => ApiError::new(
                match kind {
                    ObjectKind::Image => ErrorCode::ImageNotFound,
                    ObjectKind::Container => ErrorCode::ContainerNotFound,
                    ObjectKind::Other => ErrorCode::NotFound,
                },
                message,
            ),
            EngineError::Conflict(message) => ApiError::new(ErrorCode::Conflict, message),
            EngineError::BadRequest(message) => ApiError::invalid(message),
            EngineError::Docker(message) => ApiError::new(ErrorCode::DockerError, message),
        }
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
        let mut out = String::with_capacity(msg.len());
        let mut rest = msg;
        while let Some(i) = rest.find("string \"") {
            out.push_str(&rest[..i]);
            out.push_str("a string");
            let after = &rest[i + 8..];
            let mut end = None;
            let mut escaped = false;
            for (j, c) in after.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = Some(j);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            match end {
                Some(j) => rest = &after[j + 1..],
                None => {
                    rest = "";
                }
            }
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
            let json = serde_json::to_value(spec).unwrap_or_default();
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

pub type ApiResult<T> = Result<T, ApiError>;

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
    }
}
