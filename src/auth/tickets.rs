//! Stream tickets: single-use, short-lived stand-ins for a bearer token in the URL of an
//! event stream or WebSocket (`?ticket=`), so long-lived tokens stay out of URLs and
//! proxy logs.
//!
//! A ticket carries the [`Principal`] verified when it was issued (never more than the
//! token that minted it) and expires after the configured TTL (at most 60 s) or at that
//! token's `exp`, whichever comes first. When issued for a path, only a request to exactly
//! that path redeems it. Redeeming removes it. Kept by the SHA-256 of the ticket (the
//! value itself is never stored, logged or compared byte by byte), bounded per subject
//! and in total; expired ones are swept at each issue. In memory with one process; in
//! the shared store ([`TicketLedger`]) with several replicas, so a ticket one replica
//! issued opens a stream on any other, still once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{AuthError, Principal};
use crate::domain::identity::Role;
use crate::error::{ErrorCode, HasCode};
use crate::store::{StoreError, TicketLedger};

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

/// Why a ticket was not issued, or not redeemed.
#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error(transparent)]
    Limit(#[from] TicketLimit),
    #[error(transparent)]
    Refused(#[from] AuthError),
    /// The shared store did not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl HasCode for TicketError {
    fn code(&self) -> ErrorCode {
        match self {
            TicketError::Limit(e) => e.code(),
            TicketError::Refused(e) => e.code(),
            TicketError::Store(e) => e.code(),
        }
    }
    fn detail(&self) -> String {
        match self {
            TicketError::Store(e) => e.detail(),
            other => other.to_string(),
        }
    }
    fn retry_after(&self) -> Option<u64> {
        match self {
            TicketError::Limit(e) => e.retry_after(),
            TicketError::Refused(_) => None,
            TicketError::Store(e) => e.retry_after(),
        }
    }
}

/// What a ticket stands for, as the shared store keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Shared {
    subject: String,
    role: Option<String>,
    team: String,
    team_claimed: bool,
    token_expires_at: u64,
    path: Option<String>,
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
    /// Several replicas: the tickets live in the shared store instead.
    shared: Option<Arc<dyn TicketLedger>>,
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

fn digest(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

impl Tickets {
    /// A store whose tickets live `ttl` (capped at [`MAX_TTL`]), in memory.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl: ttl.min(MAX_TTL), entries: Mutex::new(HashMap::new()), shared: None }
    }

    /// The same, kept in the store every replica shares.
    pub fn shared(ttl: Duration, ledger: Arc<dyn TicketLedger>) -> Self {
        Self { shared: Some(ledger), ..Self::new(ttl) }
    }

    /// Issue a ticket for `principal`, bound to `path` when given.
    pub async fn issue(&self, principal: &Principal, path: Option<String>) -> Result<Issued, TicketError> {
        let now = now_ms();
        let token_exp_ms = u128::from(principal.expires_at) * 1000;
        let expires_at_ms = (now + self.ttl.as_millis()).min(token_exp_ms);
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).expect("the OS random source works");
        let ticket = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let issued = Issued { ticket, expires_at: (expires_at_ms / 1000) as u64 };
        let Some(ledger) = &self.shared else {
            self.issue_here(principal, path, &issued.ticket, expires_at_ms, now)?;
            return Ok(issued);
        };
        let body = Shared {
            subject: principal.subject.clone(),
            role: principal.role.map(|r| r.as_str().to_string()),
            team: principal.team.clone(),
            team_claimed: principal.team_claimed,
            token_expires_at: principal.expires_at,
            path,
        };
        let body = serde_json::to_string(&body).expect("a ticket's body serializes");
        let expires = i64::try_from(expires_at_ms).unwrap_or(i64::MAX);
        if !ledger.put_ticket(&digest(&issued.ticket), &principal.subject, &body, expires, MAX_PER_SUBJECT, MAX_TOTAL).await? {
            return Err(self.limit(&principal.subject).into());
        }
        Ok(issued)
    }

    fn limit(&self, subject: &str) -> TicketLimit {
        TicketLimit(format!(
            "`{subject}` holds {MAX_PER_SUBJECT} unused stream tickets, the most one subject may (or {MAX_TOTAL} are \
             outstanding in all); use them or let them expire (at most {} s).",
            self.ttl.as_secs()
        ))
    }

    fn issue_here(&self, principal: &Principal, path: Option<String>, ticket: &str, expires_at_ms: u128, now: u128) -> Result<(), TicketLimit> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, e| e.expires_at_ms > now);
        let held = entries.values().filter(|e| e.principal.subject == principal.subject).count();
        if held >= MAX_PER_SUBJECT || entries.len() >= MAX_TOTAL {
            return Err(self.limit(&principal.subject));
        }
        entries.insert(digest(ticket), Entry { principal: principal.clone(), path, expires_at_ms });
        Ok(())
    }

    /// Redeem `ticket` for a request to `path`: its principal, once. Unknown, used,
    /// expired and other-path tickets are refused (401); a refused ticket is spent too.
    pub async fn redeem(&self, ticket: &str, path: &str) -> Result<Principal, TicketError> {
        let entry = match &self.shared {
            None => self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(&digest(ticket)),
            Some(ledger) => ledger.take_ticket(&digest(ticket)).await?.and_then(|(body, expires)| {
                let s: Shared = serde_json::from_str(&body).ok()?;
                let principal = Principal {
                    subject: s.subject,
                    role: s.role.as_deref().and_then(Role::parse),
                    expires_at: s.token_expires_at,
                    team: s.team,
                    team_claimed: s.team_claimed,
                };
                Some(Entry { principal, path: s.path, expires_at_ms: u128::try_from(expires).unwrap_or(0) })
            }),
        };
        let entry = entry.ok_or_else(|| {
            AuthError("Invalid stream ticket: unknown or already used (a ticket opens one stream, once).".into())
        })?;
        if entry.expires_at_ms <= now_ms() {
            return Err(AuthError("Invalid stream ticket: it has expired; ask POST /v1/tickets for a new one.".into()).into());
        }
        if entry.path.as_deref().is_some_and(|p| p != path) {
            return Err(AuthError("Invalid stream ticket: it was issued for another path.".into()).into());
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

    #[tokio::test]
    async fn single_use_and_path_bound() {
        let t = Tickets::new(Duration::from_secs(60));
        let a = t.issue(&who("a"), None).await.unwrap();
        assert_eq!(a.ticket.len(), 43, "256 bits, URL-safe base64 without padding");
        assert!(a.ticket.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(t.redeem(&a.ticket, "/v1/events").await.unwrap().subject, "a");
        assert!(t.redeem(&a.ticket, "/v1/events").await.is_err(), "second use");
        let b = t.issue(&who("a"), Some("/v1/events".into())).await.unwrap();
        assert!(t.redeem(&b.ticket, "/v1/jobs/x/events").await.unwrap_err().to_string().contains("another path"));
        assert!(t.redeem(&b.ticket, "/v1/events").await.is_err(), "a refused ticket is spent");
        assert!(t.redeem("nope", "/v1/events").await.is_err());
    }

    #[tokio::test]
    async fn never_outlives_the_token_and_is_bounded_per_subject() {
        let t = Tickets::new(Duration::from_secs(3600));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let short = Principal::new("s", None, now + 5);
        let issued = t.issue(&short, None).await.ok().unwrap();
        assert!(issued.expires_at <= now + 5, "capped at the token's exp");
        let far = t.issue(&who("f"), None).await.unwrap();
        assert!(far.expires_at <= now + 61, "capped at 60 s");
        let expired = Principal::new("e", None, now.saturating_sub(1));
        let dead = t.issue(&expired, None).await.ok().unwrap();
        assert!(t.redeem(&dead.ticket, "/").await.unwrap_err().to_string().contains("expired"));
        for _ in 0..MAX_PER_SUBJECT {
            t.issue(&who("busy"), None).await.unwrap();
        }
        assert_eq!(t.issue(&who("busy"), None).await.err().expect("the 65th is refused").code(), ErrorCode::TooManyTickets);
        assert!(t.issue(&who("other"), None).await.is_ok(), "another subject is not affected");
    }

    /// Two replicas on one PostgreSQL: a ticket one issued opens a stream on the other,
    /// once, as what it was issued for; the per-subject bound is the fleet's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_share_tickets_and_their_bounds() {
        let db = crate::store::postgres::ScratchDb::new().await;
        let connect = |id: &'static str| {
            let url = db.url.clone();
            async move { Arc::new(crate::store::PostgresStore::connect_as(&url, 2, id, Duration::from_secs(30)).await.unwrap()) }
        };
        let (a, b) = (Tickets::shared(Duration::from_secs(60), connect("a").await), Tickets::shared(Duration::from_secs(60), connect("b").await));
        let carol = Principal { team: "blue".into(), team_claimed: true, ..who("carol") };
        let t = a.issue(&carol, Some("/v1/events".into())).await.unwrap();
        assert!(b.redeem(&t.ticket, "/v1/jobs/x/events").await.unwrap_err().to_string().contains("another path"));
        let t = a.issue(&carol, Some("/v1/events".into())).await.unwrap();
        assert_eq!(b.redeem(&t.ticket, "/v1/events").await.unwrap(), carol, "the same principal, on the other replica");
        assert!(a.redeem(&t.ticket, "/v1/events").await.is_err(), "once, fleet-wide");
        for i in 0..MAX_PER_SUBJECT {
            let on = if i % 2 == 0 { &a } else { &b };
            on.issue(&who("busy"), None).await.unwrap();
        }
        assert_eq!(b.issue(&who("busy"), None).await.err().expect("the 65th is refused").code(), ErrorCode::TooManyTickets);
    }
}
