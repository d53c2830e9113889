//! Bearer JWT authentication and role-based authorization.
//!
//! [`authenticate`] is middleware on the whole `/v1` scope, so no route can forget it:
//! it verifies the token (fixed algorithm, `exp` required, `nbf`, `iss`/`aud` when
//! configured) and stores the [`Principal`] in the request. Handlers state the role they
//! need in their signature with [`Authorized`], e.g. `_: Authorized<Operator>`, placed
//! first so the role is decided before the body is read or validated.

mod jwt;

use std::future::{Ready, ready};
use std::marker::PhantomData;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use jwt::{Claims, JwtVerifier, mint_token};

use crate::error::{ApiError, ErrorCode};

/// Roles, ordered: each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`: owner of the jobs this caller creates.
    pub subject: String,
    /// The highest role the token grants; `None` when it names no known role.
    pub role: Option<Role>,
    /// The token's `exp` (Unix seconds): long-lived streams end there.
    pub expires_at: u64,
}

impl Principal {
    /// When the token expires, as a tokio instant (streams opened with it end then; the
    /// client reconnects with a fresh token and resumes by `Last-Event-ID`).
    pub fn stream_deadline(&self) -> tokio::time::Instant {
        let now = jsonwebtoken::get_current_timestamp();
        tokio::time::Instant::now() + std::time::Duration::from_secs(self.expires_at.saturating_sub(now))
    }

    pub fn has(&self, role: Role) -> bool {
        self.role.is_some_and(|r| r >= role)
    }
    pub fn is_admin(&self) -> bool {
        self.has(Role::Admin)
    }
}

/// Paths whose responses are event streams (or WebSockets): browsers cannot set headers
/// there, so `?access_token=` is accepted in place of the `Authorization` header.
/// Matched segment by segment and for GET only, so that `GET /v1/containers/logs` (inspect
/// of a container named `logs`) or `DELETE …` never authenticates with a query token.
fn accepts_query_token(method: &actix_web::http::Method, path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    method == actix_web::http::Method::GET
        && matches!(
            segments.as_slice(),
            ["", "v1", "events"]
                | ["", "v1", "jobs", _, "events"]
                | ["", "v1", "containers", _, "logs" | "attach"]
                | ["", "v1", "exec", _, "ws"]
        )
}

fn bearer_token(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::new(ErrorCode::Unauthorized, "The Authorization header is not valid text."))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "The Authorization header must be `Bearer <token>`."))?;
        return Ok(Some(token.trim().to_string()));
    }
    if accepts_query_token(req.method(), req.path()) {
        let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default();
        if let Some((_, token)) = query.into_iter().find(|(k, _)| k == "access_token") {
            return Ok(Some(token));
        }
    }
    Ok(None)
}

/// Middleware for the `/v1` scope: a valid token or 401.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    match principal(req.request()) {
        Ok(principal) => {
            tracing::Span::current().record("subject", principal.subject.as_str());
            req.extensions_mut().insert(principal);
            Ok(next.call(req).await?.map_into_left_body())
        }
        // Answered as a response, not an `Err`, so the outer middleware adds the request id.
        Err(e) => Ok(req.into_response(e.error_response()).map_into_right_body()),
    }
}

/// The verified caller of a request, or why not (401).
pub fn principal(req: &HttpRequest) -> Result<Principal, ApiError> {
    let verifier = req
        .app_data::<web::Data<JwtVerifier>>()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("JwtVerifier missing from app data")))?;
    match bearer_token(req)? {
        Some(token) => verifier.verify(&token),
        None => Err(ApiError::new(ErrorCode::Unauthorized, "This route needs `Authorization: Bearer <token>`.")),
    }
}

/// A role a handler requires, as a type.
pub trait RequiredRole {
    const ROLE: Role;
}
pub struct Viewer;
pub struct Operator;
pub struct Admin;
impl RequiredRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl RequiredRole for Operator {
    const ROLE: Role = Role::Operator;
}
impl RequiredRole for Admin {
    const ROLE: Role = Role::Admin;
}

/// Extractor: the caller, holding at least role `R` (else 403 `forbidden`).
pub struct Authorized<R: RequiredRole> {
    pub principal: Principal,
    _role: PhantomData<R>,
}

impl<R: RequiredRole> std::ops::Deref for Authorized<R> {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl<R: RequiredRole> FromRequest for Authorized<R> {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let principal = req.extensions().get::<Principal>().cloned();
        ready(match principal {
            None => Err(ApiError::new(ErrorCode::Unauthorized, "This route needs a bearer token.").into()),
            Some(p) if p.has(R::ROLE) => Ok(Authorized { principal: p, _role: PhantomData }),
            Some(p) => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "This action needs the `{}` role; the token grants {}.",
                    R::ROLE,
                    p.role.map(|r| format!("`{r}`")).unwrap_or_else(|| "no known role".into())
                ),
            )
            .into()),
        })
    }
}
