//! The one catalogue of error codes: each code's HTTP status, title and wire name,
//! declared once. Imports nothing of Berth's: every layer names its failures in these
//! codes through [`HasCode`], and only the HTTP edge (`api::problem`) turns them into
//! RFC 9457 problem documents. The wire `code` never changes once shipped.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Declares [`ErrorCode`] with, per variant, its HTTP status, title and snake_case name.
macro_rules! error_codes {
    ($($variant:ident => $status:literal, $wire:literal, $title:literal;)+) => {
        /// Stable machine-readable error codes (the `code` member of a problem).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($variant,)+
        }

        impl ErrorCode {
            /// Every code, in catalogue order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The HTTP status a problem with this code carries.
            pub fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)+ }
            }

            pub fn title(self) -> &'static str {
                match self { $(ErrorCode::$variant => $title,)+ }
            }

            /// The wire name (`code` member), as serde writes it.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $wire,)+ }
            }
        }
    };
}

error_codes! {
    Unauthorized => 401, "unauthorized", "Authentication required";
    Forbidden => 403, "forbidden", "Forbidden";
    PolicyViolation => 403, "policy_violation", "Refused by the run policy";
    NotFound => 404, "not_found", "Not found";
    ImageNotFound => 404, "image_not_found", "Image not found";
    ContainerNotFound => 404, "container_not_found", "Container not found";
    JobNotFound => 404, "job_not_found", "Job not found";
    Conflict => 409, "conflict", "Conflict";
    InvalidRequest => 400, "invalid_request", "Invalid request";
    InvalidReference => 400, "invalid_reference", "Invalid image reference";
    PayloadTooLarge => 413, "payload_too_large", "Payload too large";
    UnsupportedMediaType => 415, "unsupported_media_type", "Unsupported media type";
    MethodNotAllowed => 405, "method_not_allowed", "Method not allowed";
    QueueFull => 429, "queue_full", "Job queue is full";
    TooManyStreams => 429, "too_many_streams", "Too many open event streams";
    InsufficientStorage => 507, "insufficient_storage", "Not enough free disk space";
    RequestTimeout => 408, "request_timeout", "The request body stalled";
    IdempotencyKeyReused => 422, "idempotency_key_reused", "Idempotency key reused with another request";
    TooManySessions => 429, "too_many_sessions", "Too many interactive sessions";
    TooManyTickets => 429, "too_many_tickets", "Too many unused stream tickets";
    DockerUnavailable => 503, "docker_unavailable", "Docker engine unavailable";
    DockerError => 502, "docker_error", "Docker engine error";
    Interrupted => 503, "interrupted", "Interrupted";
    Canceled => 409, "canceled", "Canceled";
    RegistryAuthFailed => 403, "registry_auth_failed", "The registry refused the credentials";
    StoreUnavailable => 503, "store_unavailable", "Job store unavailable";
    UriTooLong => 414, "uri_too_long", "URI too long";
    HeadersTooLarge => 431, "headers_too_large", "Request headers too large";
    Internal => 500, "internal", "Internal server error";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure that knows its code: every module's error type implements it, and the
/// HTTP edge has one `From` for all of them.
pub trait HasCode: fmt::Display {
    fn code(&self) -> ErrorCode;
    /// What the caller is told (`detail`); by default the error's own message. A 5xx
    /// whose message would show internals says something generic here.
    fn detail(&self) -> String {
        self.to_string()
    }
    /// Seconds a client should wait before retrying (`Retry-After`), if any.
    fn retry_after(&self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn wire_names_are_serdes() {
        for code in ErrorCode::ALL {
            let wire = serde_json::to_value(code).unwrap();
            assert_eq!(wire, serde_json::Value::String(code.as_str().into()));
            assert!((400..600).contains(&code.status()), "{code}");
        }
    }
}
