//! The job store: the only module that writes SQL.
//!
//! [`JobStore`] and [`AuditLog`] are the seam for a PostgreSQL store serving several
//! replicas later; [`sqlite::SqliteStore`] is the embedded default. This layer imports
//! the domain's types and nothing above it.

pub mod migrate;
pub mod postgres;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::job::{EventName, Job, JobError, JobEvent, JobFilter, JobKind, JobState, NewJob, Progress};
use crate::error::{ErrorCode, HasCode};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("job store (PostgreSQL): {0}")]
    Postgres(String),
    #[error("job store: corrupt row: {0}")]
    Corrupt(String),
    #[error("job store task failed: {0}")]
    Join(String),
    /// The job is not this replica's (any more): another replica adopted it after this
    /// one's lease lapsed. Nothing was written.
    #[error("job {0} is not this replica's any more (its lease lapsed and another replica took the job over)")]
    Fenced(String),
}

/// A wake-up from another replica (PostgreSQL `LISTEN/NOTIFY`): ids only, never payloads;
/// what changed is read from the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A job of `host` and `kind` was queued, or one ended (a slot freed): that queue's
    /// dispatcher may claim. `host` is empty for rows from before jobs had a host.
    Queue { host: String, kind: JobKind },
    /// Another replica stored event `seq` (`event`) of job `job_id`; `lag`: from its
    /// commit to this replica's reading of it.
    Event { job_id: String, seq: u64, event: EventName, lag: std::time::Duration },
    /// Someone asked to cancel job `job_id`: the replica running it stops it.
    Cancel { job_id: String },
    /// The listener (re)connected: notices may have been missed; look at every queue.
    Resync,
    /// This replica's lease lapsed (the database was out of reach, or the process was
    /// paused): its running jobs are no longer its own. It holds a new lease now.
    LeaseLost,
}

/// A job whose runner is gone, now this process's to end: a `running` job of a replica
/// whose lease lapsed (or, on SQLite, of the process before a restart), or a queued build
/// whose context only that replica held.
#[derive(Debug)]
pub struct Orphan {
    pub job: Job,
    /// The replica that held it; `None` on the embedded store.
    pub replica: Option<String>,
}

/// How a job ends: `from` -> `to` (terminal), its result or error, and the last
/// events to append in order.
#[derive(Debug, Clone)]
pub struct JobEnd {
    pub from: JobState,
    pub to: JobState,
    pub result: Option<Value>,
    pub error: Option<JobError>,
    pub events: Vec<(EventName, Value)>,
}

/// What ending a job stored: its last events (to publish) and its spool path.
#[derive(Debug)]
pub struct Finished {
    pub events: Vec<JobEvent>,
    pub spool: Option<String>,
}

/// Outcome of an insert.
#[derive(Debug)]
pub enum Inserted {
    New(Job),
    /// Same owner and idempotency key: the job made before.
    Existing(Job),
    /// The queue holds `capacity` queued jobs already.
    QueueFull,
}

#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Insert a queued job unless the queue is full, or return the job with the same key.
    async fn insert(&self, id: &str, job: NewJob, capacity: usize) -> Result<Inserted, StoreError>;
    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError>;
    /// The job `owner` made with `key`, if any.
    async fn find_idempotent(&self, owner: &str, key: &str) -> Result<Option<Job>, StoreError>;
    /// Newest first; `true` when `max_bytes` cut the list short of `limit`.
    async fn list(&self, filter: JobFilter) -> Result<(Vec<Job>, bool), StoreError>;
    /// Oldest queued job of `kind` on `host`, now `running` (`is_default`: rows without a
    /// host are the default host's), unless `limit` jobs of that host and kind run already
    /// (across every replica sharing the store).
    async fn claim_next(&self, kind: JobKind, host: &str, is_default: bool, limit: usize) -> Result<Option<Job>, StoreError>;
    /// `from` -> `to` with result/error; false when the job was not in `from`.
    async fn transition(
        &self,
        id: &str,
        from: JobState,
        to: JobState,
        result: Option<Value>,
        error: Option<JobError>,
    ) -> Result<bool, StoreError>;
    async fn set_progress(&self, id: &str, progress: &Progress) -> Result<(), StoreError>;
    /// A running job's partial result (a run's container id, once created).
    async fn set_result(&self, id: &str, result: &Value) -> Result<(), StoreError>;
    /// Append an event; returns it with its sequence number.
    async fn append_event(&self, id: &str, event: EventName, data: Value) -> Result<JobEvent, StoreError>;
    /// End a job in one transaction: `from` -> `to` (terminal) with its result and error,
    /// the final progress (phase `done`) and `events` appended in order. `None` when the
    /// job was not in `from` (someone else ended it).
    async fn finish(&self, id: &str, end: JobEnd) -> Result<Option<Finished>, StoreError>;
    /// The job's last stored event.
    async fn last_event(&self, id: &str) -> Result<Option<JobEvent>, StoreError>;
    /// Events with `seq > after`, in order, at most `limit`.
    async fn events_after(&self, id: &str, after: u64, limit: usize) -> Result<Vec<JobEvent>, StoreError>;
    /// Forget a finished job and its events; returns its spool path, if any.
    async fn delete_finished(&self, id: &str) -> Result<Option<Option<String>>, StoreError>;
    /// Forget jobs that finished before `cutoff` (RFC 3339), with their events; how many.
    async fn delete_finished_before(&self, cutoff: &str) -> Result<usize, StoreError>;
    /// Jobs whose runner is gone, taken over by this process to end them: at start on
    /// SQLite, every `running` job (the process before this one left them); on
    /// PostgreSQL, those of replicas whose lease lapsed (never a live replica's), and
    /// queued builds whose spooled context only such a replica held.
    async fn orphans(&self) -> Result<Vec<Orphan>, StoreError>;
    /// Ask whichever replica runs job `id` to stop it (PostgreSQL: a notification; one
    /// process: nothing to do, the caller signals it).
    async fn request_cancel(&self, _id: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// Give up this replica's lease at shutdown, so the others take over at once.
    async fn release(&self) {}
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// This replica's name, when several share the store.
    fn replica(&self) -> Option<&str> {
        None
    }
    /// Seconds left on this replica's lease, when several share the store.
    fn lease_seconds_left(&self) -> Option<f64> {
        None
    }
    async fn count_queued(&self) -> Result<usize, StoreError>;
    /// How many jobs there are of each kind in each state on each host (`""`: rows from
    /// before jobs had a host; triples with none left out).
    async fn count_by_kind_state(&self) -> Result<Vec<(String, String, String, u64)>, StoreError>;
    /// A write that changes nothing: is the store writable?
    async fn check_writable(&self) -> Result<(), StoreError>;
    /// Spool paths of jobs that will still read them (queued or running).
    async fn live_spools(&self) -> Result<Vec<String>, StoreError>;
}

impl HasCode for StoreError {
    fn code(&self) -> ErrorCode {
        ErrorCode::StoreUnavailable
    }
    fn detail(&self) -> String {
        "The job store cannot be read or written (disk full, read-only or locked?); nothing was changed. Retry later."
            .into()
    }
    fn retry_after(&self) -> Option<u64> {
        Some(5)
    }
}

/// A ULID that sorts after every id this process made before, even within one
/// millisecond: job order (FIFO, newest first) is id order.
pub fn new_id() -> String {
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut g = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
    let g = g.get_or_insert_with(ulid::Generator::new);
    g.generate().map(|u| u.to_string()).unwrap_or_else(|_| ulid::Ulid::new().to_string())
}

/// Stream tickets shared by every replica (PostgreSQL), so a ticket issued by one
/// replica opens a stream on another, once. The ticket itself is never stored: rows are
/// keyed by its SHA-256; `body` is what the ticket stands for, opaque to the store.
#[async_trait]
pub trait TicketLedger: Send + Sync + 'static {
    /// Store a ticket unless `subject` holds `per_subject` unexpired ones already, or
    /// `total` are outstanding; `false` then. Expired tickets are swept first.
    async fn put_ticket(&self, digest: &[u8], subject: &str, body: &str, expires_at_ms: i64, per_subject: usize, total: usize)
    -> Result<bool, StoreError>;
    /// Take (delete) a ticket: its body and expiry, once.
    async fn take_ticket(&self, digest: &[u8]) -> Result<Option<(String, i64)>, StoreError>;
}

/// One audited request.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Sortable by time (a ULID).
    pub id: String,
    /// When the request was answered (RFC 3339 UTC).
    #[schema(value_type = String, format = DateTime)]
    pub at: String,
    /// The token's subject; `null` when the request had no valid token.
    pub subject: Option<String>,
    pub role: Option<String>,
    /// The caller's team (`default` for a token without a team claim); `null` when the
    /// request had no valid token.
    pub team: Option<String>,
    /// The engine it acted on (engine routes and jobs); `null` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `METHOD /route/pattern`, e.g. `POST /v1/images/build`.
    pub action: String,
    /// What it acted on: path parameters, or the image/tags a job names.
    pub target: Option<String>,
    /// `success`, `denied` (401/403), `rejected` (other 4xx) or `failed` (5xx).
    pub outcome: String,
    pub status: u16,
    /// The problem `code` when it failed.
    pub code: Option<String>,
    pub job_id: Option<String>,
    /// Client address.
    pub client: Option<String>,
    pub request_id: Option<String>,
}

/// Audit filters.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub subject: Option<String>,
    pub outcome: Option<String>,
    pub action: Option<String>,
    pub job_id: Option<String>,
    pub before: Option<String>,
    pub limit: usize,
}

#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    async fn record(&self, rec: AuditRecord) -> Result<(), StoreError>;
    /// Newest first.
    async fn query(&self, filter: AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
    /// Delete records older than `cutoff` (RFC 3339); how many.
    async fn prune_before(&self, cutoff: &str) -> Result<usize, StoreError>;
}

