//! What every job-making route shares: the `Idempotency-Key` header, the 202/200 answer
//! with `Location`, and recording the job's target for the audit log.

use actix_web::{HttpRequest, HttpResponse, http::header};

use super::problem::{ApiError, ApiResult};
use crate::auth::Principal;
use crate::jobs::{JobKind, NewJob, Submitted};
use crate::state::AppState;

/// The `Idempotency-Key` header: 1-255 visible ASCII characters.
pub fn idempotency_key(req: &HttpRequest) -> ApiResult<Option<String>> {
    match req.headers().get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let s = v.to_str().map_err(|_| ApiError::invalid("`Idempotency-Key` must be visible ASCII"))?;
            if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| (0x21..0x7f).contains(&b)) {
                return Err(ApiError::invalid("`Idempotency-Key` must be 1-255 visible ASCII characters"));
            }
            Ok(Some(s.to_string()))
        }
    }
}

/// 202 with the new job, or 200 with the one made before with the same key.
pub fn job_response(submitted: Submitted) -> HttpResponse {
    let (mut res, job) = match submitted {
        Submitted::New(j) => (HttpResponse::Accepted(), j),
        Submitted::Existing(j) => (HttpResponse::Ok(), j),
    };
    res.insert_header((header::LOCATION, format!("/v1/jobs/{}", job.id))).json(job)
}

/// Record and queue a job made from a JSON request.
pub async fn submit_job(
    state: &AppState,
    req: &HttpRequest,
    who: &Principal,
    kind: JobKind,
    request: serde_json::Value,
    secret: Option<crate::docker::RegistryAuth>,
) -> ApiResult<HttpResponse> {
    crate::audit::set_target(req, audit_target(&request));
    let new = NewJob { kind, owner: who.subject.clone(), request, idempotency_key: idempotency_key(req)?, spool: None };
    Ok(job_response(state.jobs.submit(new, secret).await?))
}

/// What a job request acts on, for the audit log: its image, tags or filters.
pub fn audit_target(request: &serde_json::Value) -> String {
    if let Some(image) = request.get("image").and_then(|v| v.as_str()) {
        return match request.get("name").and_then(|v| v.as_str()) {
            Some(name) => format!("image={image} name={name}"),
            None => format!("image={image}"),
        };
    }
    if let Some(tags) = request.get("tags").and_then(|v| v.as_array()) {
        let tags: Vec<&str> = tags.iter().filter_map(|t| t.as_str()).collect();
        return format!("tags={}", tags.join(","));
    }
    request.to_string()
}
