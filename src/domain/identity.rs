//! Who acts: the [`Role`] ladder and the authenticated [`Principal`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

crate::wire_enum! {
    /// Roles, ordered: each includes the ones before it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
    pub enum Role {
        Viewer => "viewer",
        Operator => "operator",
        Admin => "admin",
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

