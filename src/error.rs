//! The one catalogue of error codes: each code's HTTP status, title and wire name,
//! declared once. Imports nothing of Berth's: every layer names its failures in these
//! codes through [`HasCode`], and only the HTTP edge (`api::problem`) turns them into
//! RFC 9457 problem documents. The wire `code` never changes once shipped.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Declares [`ErrorCode`] with, per variant, its HTTP status, snake_case name, title, and
/// the two paragraphs of its problem page: what it means and what to do.
macro_rules! error_codes {
    ($($variant:ident => $status:literal, $wire:literal, $title:literal, $meaning:literal, $remedy:literal;)+) => {
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

            /// What the problem means, for its page at `/problems/{code}` (Markdown code spans).
            pub fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => $meaning,)+ }
            }

            /// What a client or operator should do about it, for the same page.
            pub fn remedy(self) -> &'static str {
                match self { $(ErrorCode::$variant => $remedy,)+ }
            }

            /// The wire name (`code` member), as serde writes it.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $wire,)+ }
            }
        }
    };
}

error_codes! {
    Unauthorized => 401, "unauthorized", "Authentication required",
        "The request carries no bearer token, or its token is malformed, expired, not yet valid, or not signed with the key Berth trusts.",
        "Send `Authorization: Bearer <JWT>` with a valid, unexpired token (event streams and WebSockets may pass `?access_token=`). Operators mint one with `berth token`.";
    Forbidden => 403, "forbidden", "Forbidden",
        "The token is valid but its role is below the one the route needs, or the target is out of the caller's reach (Berth's own container, a browser origin that is not allowed).",
        "Use a token with the role the operation lists (viewer, operator or admin), or ask an admin to act.";
    PolicyViolation => 403, "policy_violation", "Refused by the run policy",
        "The run policy refused an option or image: options that give power over the host (privileged, host binds, host network or pid, devices, capabilities), a volume or image outside the caller's team, or a resource above the non-admin bounds. `detail` names what was refused.",
        "Drop or change the option that `detail` names, or have an admin run it.";
    NotFound => 404, "not_found", "Not found",
        "No route or object matches the request.",
        "Check the path against `/openapi.json` and the identifier you sent.";
    ImageNotFound => 404, "image_not_found", "Image not found",
        "The engine has no image by this reference or id, or the registry has no such repository or tag.",
        "Check the reference (`GET /v1/images`), or pull the image first.";
    ContainerNotFound => 404, "container_not_found", "Container not found",
        "No container by this id, id prefix or name is visible to the caller (another team's containers are absent to it).",
        "Check the id or name with `GET /v1/containers?all=true`.";
    JobNotFound => 404, "job_not_found", "Job not found",
        "No job by this id is visible to the caller: it never existed, was deleted, or belongs to another team or owner.",
        "Check the id with `GET /v1/jobs`; the `Location` header of the submit names the job.";
    HostNotFound => 404, "host_not_found", "Host not found",
        "No engine by this name is configured (`BERTH_ENGINES_FILE`), or it is not given to the caller's team.",
        "Check the name with `GET /v1/hosts`.";
    Conflict => 409, "conflict", "Conflict",
        "The object is in a state that does not allow the operation: a running container removed without `force`, an image in use, a job that already ended or is still running.",
        "Read the object's state, then retry with `force=true` where the route takes it, or after the state changes.";
    InvalidRequest => 400, "invalid_request", "Invalid request",
        "The body, a query parameter or a path parameter is malformed or out of range; `detail` names the field.",
        "Fix the field that `detail` names; `/openapi.json` documents every field.";
    InvalidReference => 400, "invalid_reference", "Invalid image reference",
        "The image reference is not a valid Docker reference (`[registry/]repository[:tag][@digest]`).",
        "Send a reference such as `127.0.0.1:5000/team/app:1.2`.";
    PayloadTooLarge => 413, "payload_too_large", "Payload too large",
        "The body is larger than the limit of the route (`BERTH_JSON_LIMIT` for JSON, `BERTH_BUILD_CONTEXT_MAX` for build contexts).",
        "Send a smaller body, or have the operator raise the limit.";
    UnsupportedMediaType => 415, "unsupported_media_type", "Unsupported media type",
        "The body is not of the media type the route takes.",
        "Send JSON with `Content-Type: application/json`, or a build context as `application/x-tar` or `application/gzip`.";
    MethodNotAllowed => 405, "method_not_allowed", "Method not allowed",
        "The path exists but does not take this HTTP method; the `Allow` header lists those it takes.",
        "Use one of the methods in `Allow`.";
    QueueFull => 429, "queue_full", "Job queue is full",
        "The job queue holds `BERTH_QUEUE_CAPACITY` jobs already; nothing was queued.",
        "Retry after the `Retry-After` seconds.";
    TooManyStreams => 429, "too_many_streams", "Too many open event streams",
        "The caller holds `BERTH_MAX_STREAMS_PER_SUBJECT` event streams open already.",
        "Close a stream you no longer read, or retry after `Retry-After` seconds.";
    InsufficientStorage => 507, "insufficient_storage", "Not enough free disk space",
        "The server's data disk has less free space than `BERTH_MIN_FREE_BYTES`; nothing was queued.",
        "Retry later, or have the operator free disk space (prune images, delete finished jobs).";
    RequestTimeout => 408, "request_timeout", "The request body stalled",
        "The request body stopped arriving before it was complete.",
        "Resend the request over a connection that keeps the body flowing.";
    IdempotencyKeyReused => 422, "idempotency_key_reused", "Idempotency key reused with another request",
        "The `Idempotency-Key` made a job before from another request; the key names one request only.",
        "Use a new key for a different request, or resend the original request unchanged.";
    TooManySessions => 429, "too_many_sessions", "Too many interactive sessions",
        "Too many interactive sessions (attach, exec) are open, on the server or of the caller's.",
        "Close a session, or retry after `Retry-After` seconds.";
    TooManyTickets => 429, "too_many_tickets", "Too many unused stream tickets",
        "The caller holds 64 unused stream tickets already.",
        "Use or let expire the tickets you hold (they last at most 60 s), then ask again.";
    DockerUnavailable => 503, "docker_unavailable", "Docker engine unavailable",
        "The Docker engine does not answer (its socket is missing or it is down). Berth stays up and answers this until it comes back.",
        "Retry later; operators check the engine (`DOCKER_HOST`) and `GET /readyz`.";
    DockerError => 502, "docker_error", "Docker engine error",
        "The engine answered with an error; `detail` carries Docker's own message.",
        "Read `detail`: it is what `docker` itself would have said.";
    Interrupted => 503, "interrupted", "Interrupted",
        "The job was running when Berth stopped, and it did not finish within the shutdown grace period.",
        "Submit the job again.";
    Canceled => 409, "canceled", "Canceled",
        "The job was canceled (`POST /v1/jobs/{id}/cancel`) before it finished.",
        "Submit the job again if it is still wanted.";
    RegistryAuthFailed => 403, "registry_auth_failed", "The registry refused the credentials",
        "The registry refused the credentials given with the request or configured for it (`BERTH_REGISTRY_AUTH_FILE`).",
        "Check the user name and password for the registry, or the configured credentials.";
    StoreUnavailable => 503, "store_unavailable", "Job store unavailable",
        "The job store cannot be read or written (disk full, database down); nothing was queued.",
        "Retry later; operators check `GET /readyz` and the data directory.";
    UriTooLong => 414, "uri_too_long", "URI too long",
        "The path or the query string is longer than Berth accepts (4096 and 8192 bytes).",
        "Send a shorter path or query; large inputs belong in the body.";
    HeadersTooLarge => 431, "headers_too_large", "Request headers too large",
        "The request headers add up to more than Berth accepts (16 KiB).",
        "Send fewer or smaller headers.";
    Internal => 500, "internal", "Internal server error",
        "Berth failed to handle the request. Nothing about the cause is sent; it is logged under the request id.",
        "Retry; if it persists, give the operator the `request_id` (also the `x-request-id` header).";
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
