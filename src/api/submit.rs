//! What every job-making route shares: the `Idempotency-Key` header, the 202/200 answer
//! with `Location`, and recording the job's target for the audit log.

use actix_web::{HttpRequest, HttpResponse, http::header};

use super::problem::{ApiError, ApiResult};
use crate::auth::Principal;
use crate::jobs::{JobSpec, Submission, Submitted};
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

/// Record and queue a job on `host` (see [`super::hosts::job_host`]); its target and
/// host go to the audit log.
pub async fn submit_job(
    state: &AppState,
    req: &HttpRequest,
    who: &Principal,
    host: String,
    spec: JobSpec,
    secret: Option<crate::docker::RegistryAuth>,
) -> ApiResult<HttpResponse> {
    submit_with_spool(state, req, who, host, spec, secret, None).await
}

/// As [`submit_job`], with a spooled build context the job takes over.
pub async fn submit_with_spool(
    state: &AppState,
    req: &HttpRequest,
    who: &Principal,
    host: String,
    spec: JobSpec,
    secret: Option<crate::docker::RegistryAuth>,
    spool: Option<std::path::PathBuf>,
) -> ApiResult<HttpResponse> {
    crate::audit::set_target(req, spec.audit_target());
    crate::audit::set_host(req, &host);
    let registry_config = match &spec {
        JobSpec::Build(_) => registry_config(req)?,
        _ => Vec::new(),
    };
    let sub = Submission { spec, host, owner: who.clone(), idempotency_key: idempotency_key(req)?, spool, secret, registry_config };
    Ok(job_response(state.jobs.submit(sub).await?))
}

/// A build's request credentials: the `X-Registry-Config` header (the engine's format),
/// none without it. Never stored, never logged.
pub fn registry_config(req: &HttpRequest) -> ApiResult<Vec<crate::docker::RegistryAuth>> {
    let Some(v) = req.headers().get("x-registry-config") else { return Ok(Vec::new()) };
    let v = v.to_str().map_err(|_| ApiError::invalid("`X-Registry-Config` must be base64"))?;
    Ok(crate::domain::credentials::parse_registry_config(v)?)
}
