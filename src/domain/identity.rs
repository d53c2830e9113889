//! Who acts: the [`Role`] ladder and the authenticated [`Principal`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        tokio::time::Instant::now() + std::time::Duration::from_secs(self.expires_at.saturating_sub(now))
    }

    pub fn has(&self, role: Role) -> bool {
        self.role.is_some_and(|r| r >= role)
    }
    pub fn is_admin(&self) -> bool {
        self.has(Role::Admin)
    }
}

