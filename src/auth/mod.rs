//! Who the caller is: JWT verification (fixed algorithm, `exp` required, `nbf`,
//! `iss`/`aud` when configured), the [`Role`] ladder and the [`Principal`]. Knows no
//! HTTP: the middleware and the `Authorized<R>` extractor live in `api::extract`.

mod jwt;
pub mod tickets;

pub use crate::domain::identity::{DEFAULT_TEAM, Principal, Role, is_team_name};
pub use jwt::{Claims, JwtVerifier, mint_team_token, mint_token};
pub use tickets::Tickets;

use crate::error::{ErrorCode, HasCode};

/// Why a token was refused (401 `unauthorized`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

impl HasCode for AuthError {
    fn code(&self) -> ErrorCode {
        ErrorCode::Unauthorized
    }
}
