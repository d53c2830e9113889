//! Stream tickets: single-use, short-lived stand-ins for a bearer token in the URL of an
//! event stream or WebSocket (`?ticket=`), so long-lived tokens stay out of URLs and
//! proxy logs.
//!
//! A ticket carries the [`Principal`] verified when it was issued (never more than the
//! token that minted it) and expires after the configured TTL (at most 60 s) or at that
//! token's `exp`, whichever comes first. When issued for a path, only a request to exactly
//! that path redeems it. Redeeming removes it. Kept in memory, by the SHA-256 of the
//! ticket (the value itself is never stored, logged or compared byte by byte), bounded per
//! subject and in total; expired ones are swept at each issue.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{AuthError, Principal};
use crate::error::{ErrorCode, HasCode};

pub use crate::domain::identity::MAX_TICKET_TTL as MAX_TTL;
/// Outstanding tickets one subject may hold.
pub const MAX_PER_SUBJECT: usize = 64;
/// Outstanding tickets in all.
pub const MAX_TOTAL: usize = 16_384;

/// Why no ticket was issued.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TicketLimit(String);

impl HasCode for TicketLimit {
    fn code(&self) -> ErrorCode {
        ErrorCode::TooManyTickets
    }
    fn retry_after(&self) -> Option<u64> {
        Some(MAX_TTL.as_secs())
    }
}

/// A ticket just issued: the value (shown once) and when it expires (Unix seconds).
pub struct Issued {
    pub ticket: String,
    pub expires_at: u64,
}

struct Entry {
    principal: Principal,
    path: Option<String>,
    /// Unix milliseconds.
    expires_at_ms: u128,
}

pub struct Tickets {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

fn digest(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

impl Tickets {
    /// A store whose tickets live `ttl` (capped at [`MAX_TTL`]).
    pub fn new(ttl: Duration) -> Self {
        Self { ttl: ttl.min(MAX_TTL), entries: Mutex::new(HashMap::new()) }
    }

    /// Issue a ticket for `principal`, bound to `path` when given.
    pub fn issue(&self, principal: &Principal, path: Option<String>) -> Result<Issued, TicketLimit> {
        let now = now_ms();
        let token_exp_ms = u128::from(principal.expires_at) * 1000;
        let expires_at_ms = (now + self.ttl.as_millis()).min(token_exp_ms);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, e| e.expires_at_ms > now);
        let held = entries.values().filter(|e| e.principal.subject == principal.subject).count();
        if held >= MAX_PER_SUBJECT {
            return Err(TicketLimit(format!(
                "`{}` holds {held} unused stream tickets, the most one subject may; use or let them expire (at most {} s).",
                principal.subject,
                self.ttl.as_secs()
            )));
        }
        if entries.len() >= MAX_TOTAL {
            return Err(TicketLimit("Too many unused stream tickets are outstanding; retry shortly.".into()));
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).expect("the OS random source works");
        let ticket = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        entries.insert(digest(&ticket), Entry { principal: principal.clone(), path, expires_at_ms });
        Ok(Issued { ticket, expires_at: (expires_at_ms / 1000) as u64 })
    }

    /// Redeem `ticket` for a request to `path`: its principal, once. Unknown, used,
    /// expired and other-path tickets are refused (401); a refused ticket is spent too.
    pub fn redeem(&self, ticket: &str, path: &str) -> Result<Principal, AuthError> {
        let entry = self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(&digest(ticket));
        let entry = entry.ok_or_else(|| {
            AuthError("Invalid stream ticket: unknown or already used (a ticket opens one stream, once).".into())
        })?;
        if entry.expires_at_ms <= now_ms() {
            return Err(AuthError("Invalid stream ticket: it has expired; ask POST /v1/tickets for a new one.".into()));
        }
        if entry.path.as_deref().is_some_and(|p| p != path) {
            return Err(AuthError("Invalid stream ticket: it was issued for another path.".into()));
        }
        Ok(entry.principal)
    }

    /// Tickets not yet redeemed (expired ones included until the next sweep).
    pub fn outstanding(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(sub: &str) -> Principal {
        Principal::new(sub, Some(super::super::Role::Viewer), u64::MAX / 2000)
    }

    #[test]
    fn single_use_and_path_bound() {
        let t = Tickets::new(Duration::from_secs(60));
        let a = t.issue(&who("a"), None).unwrap();
        assert_eq!(a.ticket.len(), 43, "256 bits, URL-safe base64 without padding");
        assert!(a.ticket.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(t.redeem(&a.ticket, "/v1/events").unwrap().subject, "a");
        assert!(t.redeem(&a.ticket, "/v1/events").is_err(), "second use");
        let b = t.issue(&who("a"), Some("/v1/events".into())).unwrap();
        assert!(t.redeem(&b.ticket, "/v1/jobs/x/events").unwrap_err().0.contains("another path"));
        assert!(t.redeem(&b.ticket, "/v1/events").is_err(), "a refused ticket is spent");
        assert!(t.redeem("nope", "/v1/events").is_err());
    }

    #[test]
    fn never_outlives_the_token_and_is_bounded_per_subject() {
        let t = Tickets::new(Duration::from_secs(3600));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let short = Principal::new("s", None, now + 5);
        let issued = t.issue(&short, None).ok().unwrap();
        assert!(issued.expires_at <= now + 5, "capped at the token's exp");
        let far = t.issue(&who("f"), None).unwrap();
        assert!(far.expires_at <= now + 61, "capped at 60 s");
        let expired = Principal::new("e", None, now.saturating_sub(1));
        let dead = t.issue(&expired, None).ok().unwrap();
        assert!(t.redeem(&dead.ticket, "/").unwrap_err().0.contains("expired"));
        for _ in 0..MAX_PER_SUBJECT {
            t.issue(&who("busy"), None).unwrap();
        }
        assert_eq!(t.issue(&who("busy"), None).err().expect("the 65th is refused").code(), ErrorCode::TooManyTickets);
        assert!(t.issue(&who("other"), None).is_ok(), "another subject is not affected");
    }
}
