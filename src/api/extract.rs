//! Extractors and middleware of the HTTP edge: the `/v1` authentication middleware, the
//! `Authorized<R>` role extractor, a query-string extractor that takes repeated keys, and
//! the paging of Berth's own records.
//!
//! [`authenticate`] is middleware on the whole `/v1` scope, so no route can forget it:
//! it verifies the token and stores the [`Principal`] in the request. Handlers state the
//! role they need in their signature with [`Authorized`], e.g. `_: Authorized<Operator>`,
//! placed first so the role is decided before the body is read or validated.

use std::future::{Ready, ready};
use std::marker::PhantomData;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError, web};
use serde::de::DeserializeOwned;

use super::problem::ApiError;
use crate::auth::{JwtVerifier, Principal, Role, Tickets};
use crate::error::ErrorCode;

/// Query-string extractor that accepts repeated keys (`?label=a&label=b`) into `Vec`
/// fields, and answers a malformed query with `400 invalid_request`.
pub struct Qs<T>(pub T);

impl<T: DeserializeOwned> FromRequest for Qs<T> {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(
            serde_html_form::from_str::<T>(req.query_string())
                .map(Qs)
                .map_err(|e| ApiError::invalid(format!("Invalid query string: {}", super::problem::handlers::redact_values(&e.to_string()))).into()),
        )
    }
}

/// The shared paging of Berth's own records (jobs, audit): `?limit=` (1-1000, default
/// 100) and `?cursor=` (the last id of the previous page; ids sort by time).
pub(crate) struct Paging {
    pub limit: usize,
    pub cursor: Option<String>,
}

impl Paging {
    pub fn new(limit: Option<u32>, cursor: Option<String>) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::invalid("`limit` must be between 1 and 1000"));
        }
        if let Some(c) = &cursor {
            if c.is_empty() || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(ApiError::invalid("`cursor` is not a cursor this server gave out"));
            }
        }
        Ok(Self { limit: limit as usize, cursor })
    }

    /// How many rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> usize {
        self.limit + 1
    }

    /// Cut the fetched rows to the page; the next cursor, when more follow.
    pub fn finish<T>(&self, items: &mut Vec<T>, id: impl Fn(&T) -> &str) -> Option<String> {
        if items.len() <= self.limit {
            return None;
        }
        items.truncate(self.limit);
        items.last().map(|t| id(t).to_string())
    }
}

/// Paths whose responses are event streams (or WebSockets): browsers cannot set headers
/// there, so `?access_token=` (or a stream `?ticket=`) is accepted in place of the
/// `Authorization` header. Matched segment by segment and for GET only, so that
/// `GET /v1/containers/logs` (inspect of a container named `logs`) or `DELETE …` never
/// authenticates with a query token.
pub(crate) fn accepts_query_token(method: &actix_web::http::Method, path: &str) -> bool {
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

/// What a request authenticates with.
enum Credential {
    /// A JWT, from the `Authorization` header or `?access_token=`.
    Token(String),
    /// A stream ticket from `POST /v1/tickets` (`?ticket=`; never the header).
    Ticket(String),
}

/// The token of the `Authorization: Bearer` header, if there is one (401 if malformed).
pub(crate) fn header_token(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) else { return Ok(None) };
    let value = value
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::Unauthorized, "The Authorization header is not valid text."))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "The Authorization header must be `Bearer <token>`."))?;
    Ok(Some(token.trim().to_string()))
}

fn credential(req: &HttpRequest) -> Result<Option<Credential>, ApiError> {
    if let Some(token) = header_token(req)? {
        return Ok(Some(Credential::Token(token)));
    }
    if accepts_query_token(req.method(), req.path()) {
        let query = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default();
        let find = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        if let Some(token) = find("access_token") {
            return Ok(Some(Credential::Token(token)));
        }
        if let Some(ticket) = find("ticket") {
            return Ok(Some(Credential::Ticket(ticket)));
        }
    }
    Ok(None)
}

/// Middleware for the `/v1` scope: a valid token or 401.
pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    match principal(req.request()).await {
        Ok(principal) => {
            tracing::Span::current().record("subject", principal.subject.as_str());
            tracing::Span::current().record("team", principal.team.as_str());
            req.extensions_mut().insert(principal);
            Ok(next.call(req).await?.map_into_left_body())
        }
        // Answered as a response, not an `Err`, so the outer middleware adds the request id.
        Err(e) => Ok(req.into_response(e.error_response()).map_into_right_body()),
    }
}

/// The verified caller of a request, or why not (401). A stream ticket is spent here.
pub async fn principal(req: &HttpRequest) -> Result<Principal, ApiError> {
    let missing = |what: &str| ApiError::internal(anyhow::anyhow!("{what} missing from app data"));
    match credential(req)? {
        Some(Credential::Token(token)) => {
            let verifier = req.app_data::<web::Data<JwtVerifier>>().ok_or_else(|| missing("JwtVerifier"))?;
            Ok(verifier.verify(&token)?)
        }
        Some(Credential::Ticket(ticket)) => {
            let tickets = req.app_data::<web::Data<Tickets>>().ok_or_else(|| missing("Tickets"))?;
            Ok(tickets.redeem(&ticket, req.path()).await?)
        }
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
