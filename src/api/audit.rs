//! `GET /v1/audit`: the audit log, for admins.

use actix_web::{get, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::Qs;
use crate::audit::{AuditFilter, AuditRecord, Auditor};
use crate::api::extract::{Admin, Authorized};
use crate::api::problem::{ApiError, ApiResult, Problem};

/// A page of audit records, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditRecord>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this subject's requests.
    pub subject: Option<String>,
    /// Only records with this outcome.
    #[param(schema_with = outcomes)]
    pub outcome: Option<String>,
    /// Exact action, e.g. `POST /v1/images/build`.
    pub action: Option<String>,
    /// Only records about this job.
    pub job_id: Option<String>,
    /// Page size, 1-1000 (default 100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The `outcome` of a record (see `crate::audit`).
const OUTCOMES: [&str; 4] = ["success", "denied", "rejected", "failed"];

fn outcomes() -> utoipa::openapi::Object {
    super::openapi::one_of("Only records with this outcome.", &OUTCOMES)
}

/// Read the audit log.
///
/// Admin only. Every mutating request and every refused one, newest first: who, role,
/// action, target, outcome, status, error code, job, client address and request id.
/// Filtered by `subject`, `outcome`, `action` and `job_id`; paged by `cursor`.
#[utoipa::path(
    tag = "system",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of audit records", body = AuditPage),
        (status = 400, description = "Bad filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not admin", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin"]))
)]
#[get("/audit")]
pub async fn list_audit(
    _: Authorized<Admin>,
    auditor: web::Data<Auditor>,
    Qs(q): Qs<AuditQuery>,
) -> ApiResult<web::Json<AuditPage>> {
    let paging = super::extract::Paging::new(q.limit, q.cursor)?;
    if let Some(o) = &q.outcome {
        if !OUTCOMES.contains(&o.as_str()) {
            return Err(ApiError::invalid("`outcome` must be success, denied, rejected or failed"));
        }
    }
    let filter = AuditFilter {
        subject: q.subject,
        outcome: q.outcome,
        action: q.action,
        job_id: q.job_id,
        before: paging.cursor.clone(),
        limit: paging.fetch(),
    };
    let mut items = auditor.log().query(filter).await?;
    let next_cursor = paging.finish(&mut items, |r| &r.id);
    Ok(web::Json(AuditPage { items, next_cursor }))
}
