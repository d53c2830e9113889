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

/// The longest any one stream (SSE, log follow) stays open on one token.
pub const MAX_STREAM_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The longest a stream ticket (`POST /v1/tickets`) lives; `BERTH_TICKET_TTL` may shorten it.
pub const MAX_TICKET_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// The team of a token without a `team` claim, and of objects without a `berth.team` label.
pub const DEFAULT_TEAM: &str = "default";

/// A team name: `[a-z0-9][a-z0-9_.-]{0,62}`.
pub fn is_team_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_.-".contains(c))
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
    /// The caller's team: the token's `team` claim, else [`DEFAULT_TEAM`].
    pub team: String,
    /// Whether the token named its team. A token that names none keeps the behaviour of
    /// a single-team deployment: it sees the jobs it owns, not its team's.
    pub team_claimed: bool,
}

impl Principal {
    /// When the token expires, as a tokio instant (streams opened with it end then; the
    /// client reconnects with a fresh token and resumes by `Last-Event-ID`).
    /// A token valid for longer than [`MAX_STREAM_LIFETIME`] (an `exp` near `u64::MAX`,
    /// say) still ends its streams then: checked arithmetic, never an overflow.
    pub fn stream_deadline(&self) -> tokio::time::Instant {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let left = std::time::Duration::from_secs(self.expires_at.saturating_sub(now)).min(MAX_STREAM_LIFETIME);
        let start = tokio::time::Instant::now();
        start.checked_add(left).unwrap_or(start)
    }

    pub fn has(&self, role: Role) -> bool {
        self.role.is_some_and(|r| r >= role)
    }
    pub fn is_admin(&self) -> bool {
        self.has(Role::Admin)
    }

    /// A caller of the default team, as a token without a `team` claim makes.
    pub fn new(subject: impl Into<String>, role: Option<Role>, expires_at: u64) -> Self {
        Self { subject: subject.into(), role, expires_at, team: DEFAULT_TEAM.into(), team_claimed: false }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_names() {
        for ok in ["default", "a", "team-1", "9lives", "a.b_c-d"] {
            assert!(is_team_name(ok), "{ok}");
        }
        for bad in ["", "-a", "A", "a b", "a/b", "é", &"a".repeat(64)] {
            assert!(!is_team_name(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_far_future_exp_does_not_overflow() {
        let p = Principal::new("s", Some(Role::Viewer), u64::MAX);
        let left = p.stream_deadline() - tokio::time::Instant::now();
        assert!(left <= MAX_STREAM_LIFETIME && left > MAX_STREAM_LIFETIME / 2, "{left:?}");
        let expired = Principal { expires_at: 0, ..p };
        assert!(expired.stream_deadline() <= tokio::time::Instant::now());
    }
}
