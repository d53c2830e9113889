//! Response sets shared by many routes, for the OpenAPI document.

use utoipa::IntoResponses;

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
    /// The queue is full (`queue_full`); retry after `Retry-After` seconds.
    #[response(status = 429, content_type = "application/problem+json", headers(("Retry-After" = u64)))]
    QueueFull(Problem),
    /// The job store cannot be written (`store_unavailable`); nothing was queued.
    #[response(status = 503, content_type = "application/problem+json")]
    StoreUnavailable(Problem),
}

/// The failures of an action on one container (start, stop, restart, kill, remove).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ContainerActionErrors {
    /// Not a valid container id or name, or a bad option.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No or bad token.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// Role below operator.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such container (`container_not_found`).
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// The engine failed (`docker_error`, Docker's message in `detail`).
    #[response(status = 502, content_type = "application/problem+json")]
    EngineFailed(Problem),
    /// The engine does not answer (`docker_unavailable`).
    #[response(status = 503, content_type = "application/problem+json")]
    EngineUnavailable(Problem),
}
