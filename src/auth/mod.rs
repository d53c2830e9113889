//! Who the caller is: JWT verification (fixed algorithm, `exp` required, `nbf`,
//! `iss`/`aud` when configured), the [`Role`] ladder and the [`Principal`]. Knows no
//! HTTP: the middleware and the `Authorized<R>` extractor live in `api::extract`.

mod jwt;

pub use crate::domain::identity::{Principal, Role};
pub use jwt::{Claims, JwtVerifier, mint_token};

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
