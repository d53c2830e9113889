//! Response sets shared by many routes, for the OpenAPI document.
//!
//! Beside [`JobSubmitted`], the sets are failures only: each a problem document
//! (`application/problem+json`, the `Problem` schema), declared as a table of status and
//! description. A route lists the sets whose every row it answers with, word for word,
//! and its own rows beside them.

use std::collections::BTreeMap;

use utoipa::IntoResponses;
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};

use crate::api::problem::Problem;
use crate::jobs::Job;

/// The answers of every route that queues a job (build, pull, push, run, prune).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum JobSubmitted {
    /// Queued; `Location: /v1/jobs/{id}` names the job.
    #[response(status = 202, headers(("Location" = String, description = "/v1/jobs/{id}")))]
    Queued(Job),
    /// The job made before by the same owner with the same `Idempotency-Key`.
    #[response(status = 200, headers(("Location" = String, description = "/v1/jobs/{id}")))]
    Existing(Job),
    /// Bad body, options or reference (`invalid_request`, `invalid_reference`).
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No or bad token.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// Below the role the route needs (`forbidden`), or refused by the run policy
    /// (`policy_violation`, naming the option or image).
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// The body is not of the media type the route takes.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// The `Idempotency-Key` made a job from another request (`idempotency_key_reused`).
    #[response(status = 422, content_type = "application/problem+json")]
    KeyReused(Problem),
    /// The queue is full (`queue_full`); retry after `Retry-After` seconds.
    #[response(status = 429, content_type = "application/problem+json", headers(("Retry-After" = u64)))]
    QueueFull(Problem),
    /// The job store cannot be written (`store_unavailable`); nothing was queued.
    #[response(status = 503, content_type = "application/problem+json")]
    StoreUnavailable(Problem),
    /// The server's data disk is below `BERTH_MIN_FREE_BYTES` (`insufficient_storage`);
    /// nothing was queued.
    #[response(status = 507, content_type = "application/problem+json")]
    InsufficientStorage(Problem),
}

/// Problem answers, by status and description.
fn problems(rows: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    let schema = Ref::from_schema_name("Problem");
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("application/problem+json", Content::new(Some(schema.clone())))
            .build()
    };
    rows.iter().map(|&(status, description)| (status.to_string(), problem(description).into())).collect()
}

/// A set of problem answers: a unit type whose `IntoResponses` is the table.
macro_rules! problem_set {
    ($(#[$doc:meta])* $name:ident = [$($row:expr),+ $(,)?]) => {
        $(#[$doc])*
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                problems(&[$($row),+])
            }
        }
    };
}

const UNAUTHORIZED: (u16, &str) = (401, "No or bad token");
const ENGINE_UNREACHABLE: (u16, &str) = (503, "Engine unreachable");

problem_set! {
    /// The failures any route has before it is even routed (the unauthenticated routes
    /// document these; `/v1` routes have them too).
    EdgeErrors = [
        (414, "The path or query string is too long (`uri_too_long`)"),
        (431, "The request headers are too large (`headers_too_large`)"),
    ]
}

problem_set! {
    /// The failures of an action on one container (start, stop, restart, kill, remove).
    ContainerActionErrors = [
        (400, "Not a valid container id or name, or a bad option."),
        (401, "No or bad token."),
        (403, "Role below operator, or the container is Berth's own (`forbidden`)."),
        (404, "No such container (`container_not_found`)."),
        (502, "The engine failed (`docker_error`, Docker's message in `detail`)."),
        (503, "The engine does not answer (`docker_unavailable`)."),
    ]
}

problem_set! {
    /// The failures of any route that asks the engine, beside the route's own.
    EngineErrors = [UNAUTHORIZED, (502, "The engine failed (Docker's message in `detail`)"), ENGINE_UNREACHABLE]
}

problem_set! {
    /// The failures every WebSocket route (attach, exec) has, beside its 404 and 409.
    WebSocketErrors = [
        (400, "Bad id or query, or not a WebSocket handshake"),
        UNAUTHORIZED,
        (403, "Role below operator, or a browser `Origin` that is neither the service's own nor in BERTH_CORS_ORIGINS (`forbidden`)"),
        (429, "Too many interactive sessions, on the server or of the caller's (`too_many_sessions`, with `Retry-After`)"),
        ENGINE_UNREACHABLE,
    ]
}
