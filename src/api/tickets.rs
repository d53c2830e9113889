//! Stream tickets (`POST /v1/tickets`): a single-use stand-in for the bearer token in the
//! URL of an event stream, log follow or WebSocket (`?ticket=`). The store is
//! `auth::tickets`; the middleware in `extract` redeems them.

use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{Authorized, Viewer, accepts_query_token};
use crate::api::problem::{ApiError, ApiResult, Problem};
use crate::auth::Tickets;

/// What a ticket is for.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketRequest {
    /// Bind the ticket to this path (e.g. `/v1/jobs/{id}/events`): only a request to
    /// exactly this path (no query) redeems it. One of the routes that take `?ticket=`.
    #[schema(example = "/v1/events")]
    pub path: Option<String>,
}

/// A ticket, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TicketView {
    /// Pass as `?ticket=` on one event stream, log follow or WebSocket handshake.
    pub ticket: String,
    /// When it stops being accepted (at most 60 s on, never after the token's `exp`).
    #[schema(format = DateTime, example = "2026-01-01T12:01:00Z")]
    pub expires_at: String,
}

/// Issue a single-use stream ticket
///
/// Single use, valid at most 60 s (`BERTH_TICKET_TTL`) and never
/// past the token's own `exp`, carrying the caller's identity, role and team as verified
/// now. Accepted as `?ticket=` wherever `?access_token=` is (event streams, log follows,
/// attach, exec), and nowhere else; never as `Authorization`. A used, expired, unknown or
/// other-path ticket is refused with 401. At most 64 unused tickets per subject (429
/// `too_many_tickets`).
#[utoipa::path(
    tag = "system",
    request_body = TicketRequest,
    responses(
        (status = 201, description = "Issued", body = TicketView),
        (status = 400, description = "Bad body, or `path` is not a route that takes `?ticket=` (`invalid_request`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many unused tickets of this subject (`too_many_tickets`, with `Retry-After`)", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u64))),
    ),
    security(("bearer" = ["viewer"]))
)]
#[post("/tickets")]
pub async fn create_ticket(
    who: Authorized<Viewer>,
    req: HttpRequest,
    tickets: web::Data<Tickets>,
    body: web::Json<TicketRequest>,
) -> ApiResult<HttpResponse> {
    let path = body.into_inner().path;
    if let Some(p) = &path {
        if p.len() > 1024 || !accepts_query_token(&actix_web::http::Method::GET, p) {
            return Err(ApiError::invalid(
                "`path` must be a route that takes `?ticket=`: /v1/events, /v1/jobs/{id}/events, \
                 /v1/containers/{id}/logs, /v1/containers/{id}/attach or /v1/exec/{id}/ws (no query string).",
            ));
        }
        crate::audit::set_target(&req, format!("path={p}"));
    }
    let issued = tickets.issue(&who.principal, path).await?;
    let expires_at = chrono::DateTime::from_timestamp(issued.expires_at as i64, 0).unwrap_or_default();
    Ok(HttpResponse::Created().json(TicketView {
        ticket: issued.ticket,
        expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }))
}
