//! The domain's error type: a refusal of input (validation or policy) with its code.

use std::fmt;

use crate::error::{ErrorCode, HasCode};

/// A refusal with a code and a message for the caller: what validation and policy
/// checks below the HTTP edge return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub detail: String,
}

impl Rejection {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into() }
    }
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, detail)
    }
    pub fn policy(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::PolicyViolation, detail)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for Rejection {}

impl HasCode for Rejection {
    fn code(&self) -> ErrorCode {
        self.code
    }
}

