//! The PostgreSQL store (`BERTH_DATABASE_URL=postgres://...`): the same semantics as the
//! SQLite store, for several replicas on one database.
//!
//! - Migrations run at start under an advisory lock, so replicas starting together apply
//!   each once.
//! - A state change is one conditional `UPDATE ... WHERE state = $from`; a job's end is
//!   one transaction (state, result, error, final progress, last events).
//! - Claims take the oldest queued job of a host and kind with `FOR UPDATE SKIP LOCKED`:
//!   concurrent claimers never take one job twice and never wait on each other.
//! - Inserts take a transaction-scoped advisory lock, so the queue bound and the
//!   idempotency key hold exactly across replicas.
//! - A job's event sequence numbers come from a counter on its row (`last_seq`), bumped
//!   under the row's lock: two writers of one job's events never pick the same number.
//! - Claims count the running jobs of the host and kind under a transaction-scoped
//!   advisory lock of that pair: the concurrency limit holds across replicas.
//!
//! Replicas ([`PostgresStore::spawn_replication`]): each holds a lease in
//! `berth_replicas` (`id`, `generation`, `expires_at`), renewed by a heartbeat every
//! third of `BERTH_LEASE_TTL`. A claimed job records the replica and the lease generation
//! that claimed it, and every write to a running job is fenced by both and by the lease
//! still being live: a replica whose lease lapsed writes nothing, even before another
//! takes its jobs over. [`JobStore::orphans`] adopts the running jobs that no live lease
//! holds (and the queued builds whose context only a dead replica held) so the caller
//! ends them `interrupted`. A lapsed lease is never renewed: the replica registers again
//! with the next generation, and what it ran before is someone else's to end.
//! Wake-ups cross replicas as `NOTIFY` (ids only: `berth_events`, `berth_queue`,
//! `berth_cancel`), sent in the writing transaction, so they arrive after its commit.
//!
//! Timestamps are RFC 3339 text (UTC, milliseconds) and JSON is text, as in SQLite, so
//! both stores read and compare them alike.

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use serde_json::Value;
use tokio_postgres::Row;

use super::{AuditFilter, AuditLog, AuditRecord, Finished, Inserted, JobEnd, JobStore, Notice, Orphan, StoreError, TicketLedger};
use crate::domain::identity::{DEFAULT_TEAM, Role};
use crate::domain::job::{EventName, Job, JobError, JobEvent, JobFilter, JobKind, JobState, NewJob, Progress};

/// The advisory lock key of migrations ("berth" in ASCII).
const MIGRATION_LOCK: i64 = 0x0062_6572_7468;
/// The advisory lock key of inserts (the queue bound and idempotency keys).
const INSERT_LOCK: i64 = 0x0062_6572_7469;
/// The advisory lock key of retention sweeps: one replica sweeps at a time.
const SWEEP_LOCK: i64 = 0x0062_6572_746a;
/// The advisory lock key of issuing stream tickets (their bounds).
const TICKET_LOCK: i64 = 0x0062_6572_746d;
/// The advisory lock key of audit retention sweeps.
const AUDIT_SWEEP_LOCK: i64 = 0x0062_6572_746c;
/// The advisory lock key of adopting orphans: one replica adopts at a time.
const REAP_LOCK: i64 = 0x0062_6572_746b;
/// The first key of the advisory locks of claims (the second: the host and kind).
const CLAIM_LOCK: i32 = 0x6265_7274;
/// Rows a retention sweep deletes per transaction.
const SWEEP_BATCH: i64 = 500;
/// Notification channels.
const EVENTS_CHANNEL: &str = "berth_events";
const QUEUE_CHANNEL: &str = "berth_queue";
const CANCEL_CHANNEL: &str = "berth_cancel";

const MIGRATIONS: &[&str] = &[
    // 1: jobs, events, health, audit
    "CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        owner TEXT NOT NULL,
        team TEXT NOT NULL,
        host TEXT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        request TEXT NOT NULL,
        progress TEXT NOT NULL,
        result TEXT,
        error TEXT,
        idempotency_key TEXT,
        spool TEXT,
        authority TEXT,
        seal TEXT,
        last_seq BIGINT NOT NULL DEFAULT 0
     );
     CREATE UNIQUE INDEX jobs_idempotency ON jobs(owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
     CREATE INDEX jobs_queue ON jobs(state, kind, host, id);
     CREATE INDEX jobs_owner ON jobs(owner, id);
     CREATE INDEX jobs_team ON jobs(team, id);
     CREATE INDEX jobs_host ON jobs(host, id);
     CREATE INDEX jobs_finished ON jobs(finished_at) WHERE finished_at IS NOT NULL;
     CREATE TABLE job_events (
        job_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        event TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
     );
     CREATE TABLE health (id INTEGER PRIMARY KEY, checked_at TEXT NOT NULL);
     CREATE TABLE audit (
        id TEXT PRIMARY KEY,
        at TEXT NOT NULL,
        subject TEXT,
        role TEXT,
        team TEXT,
        host TEXT,
        action TEXT NOT NULL,
        target TEXT,
        outcome TEXT NOT NULL,
        status INTEGER NOT NULL,
        code TEXT,
        job_id TEXT,
        client TEXT,
        request_id TEXT
     );
     CREATE INDEX audit_subject ON audit(subject, id);
     CREATE INDEX audit_outcome ON audit(outcome, id);
     CREATE INDEX audit_at ON audit(at);",
    // 2: replicas and their leases; the replica (and lease generation) that claimed a job;
    // the replica a queued build's spooled context is on
    "CREATE TABLE berth_replicas (
        id TEXT PRIMARY KEY,
        generation BIGINT NOT NULL,
        started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        renewed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        expires_at TIMESTAMPTZ NOT NULL
     );
     ALTER TABLE jobs ADD COLUMN replica TEXT;
     ALTER TABLE jobs ADD COLUMN replica_gen BIGINT;
     ALTER TABLE jobs ADD COLUMN pinned TEXT;
     CREATE INDEX jobs_running ON jobs(replica) WHERE state = 'running';
     CREATE INDEX jobs_pinned ON jobs(pinned) WHERE state = 'queued' AND pinned IS NOT NULL;",
    // 3: stream tickets, shared by the replicas (by the SHA-256 of the ticket)
    "CREATE TABLE berth_tickets (
        digest BYTEA PRIMARY KEY,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        expires_at_ms BIGINT NOT NULL
     );
     CREATE INDEX berth_tickets_subject ON berth_tickets(subject);",
    // 4: claims find the oldest queued job of a host and kind among the queued rows only
    // (the table holds every finished job too)
    "CREATE INDEX jobs_queued_claim ON jobs(kind, host, id) WHERE state = 'queued';
     CREATE INDEX jobs_running_count ON jobs(kind, host) WHERE state = 'running';",
];

const COLUMNS: &str = "id, kind, state, owner, created_at, started_at, finished_at, request, progress, result, error, \
                       idempotency_key, authority, seal, spool, team, host, replica";
/// [`COLUMNS`] of table `jobs` where another table is in the query.
const JOB_COLUMNS: &str = "jobs.id, jobs.kind, jobs.state, jobs.owner, jobs.created_at, jobs.started_at, jobs.finished_at, \
                           jobs.request, jobs.progress, jobs.result, jobs.error, jobs.idempotency_key, jobs.authority, \
                           jobs.seal, jobs.spool, jobs.team, jobs.host, jobs.replica";

/// A write to a job row is this replica's to make: the job is unclaimed (queued), or it
/// was claimed by this replica under its current lease generation and that lease is live.
/// `$R`: the replica's id, `$G`: its generation.
const FENCE: &str = "(jobs.replica IS NULL OR (jobs.replica = $R AND jobs.replica_gen = $G AND EXISTS (
        SELECT 1 FROM berth_replicas r WHERE r.id = $R AND r.generation = $G AND r.expires_at > now())))";
/// This replica's lease is live.
const LIVE: &str = "EXISTS (SELECT 1 FROM berth_replicas r WHERE r.id = $R AND r.generation = $G AND r.expires_at > now())";

/// `template` with `$R` and `$G` as the numbered parameters `r` and `g`.
fn fenced(template: &str, r: usize, g: usize) -> String {
    template.replace("$R", &format!("${r}")).replace("$G", &format!("${g}"))
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Postgres(e.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Postgres(e.to_string())
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn json_col(row: &Row, idx: usize) -> Option<Value> {
    row.get::<_, Option<String>>(idx).and_then(|s| serde_json::from_str(&s).ok())
}

fn job_from_row(row: &Row) -> Result<Job, StoreError> {
    job_from_row_at(row, 0)
}

/// A job from [`COLUMNS`] starting at column `at`.
fn job_from_row_at(row: &Row, at: usize) -> Result<Job, StoreError> {
    let kind: String = row.get(at + 1);
    let state: String = row.get(at + 2);
    Ok(Job {
        id: row.get(at),
        kind: JobKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("kind `{kind}`")))?,
        state: JobState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("state `{state}`")))?,
        owner: row.get(at + 3),
        created_at: row.get(at + 4),
        started_at: row.get(at + 5),
        finished_at: row.get(at + 6),
        request: json_col(row, at + 7).unwrap_or(Value::Null),
        progress: json_col(row, at + 8).and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default(),
        result: json_col(row, at + 9),
        error: json_col(row, at + 10).and_then(|v| serde_json::from_value(v).ok()),
        idempotency_key: row.get(at + 11),
        authority: row.get::<_, Option<String>>(at + 12).and_then(|r| Role::parse(&r)),
        seal: row.get(at + 13),
        spool: row.get(at + 14),
        team: row.get::<_, Option<String>>(at + 15).unwrap_or_else(|| DEFAULT_TEAM.to_string()),
        host: row.get::<_, Option<String>>(at + 16).unwrap_or_default(),
        replica: row.get(at + 17),
    })
}

fn event_from_row(job_id: &str, r: &Row) -> Result<JobEvent, StoreError> {
    let name: String = r.get(1);
    let event = EventName::parse(&name).ok_or_else(|| StoreError::Corrupt(format!("event `{name}`")))?;
    let data: String = r.get(2);
    Ok(JobEvent { job_id: job_id.to_string(), seq: r.get::<_, i64>(0) as u64, event, data: serde_json::from_str(&data).unwrap_or(Value::Null) })
}

/// Append one event with the job's next sequence number (bumped under the row's lock),
/// fenced, and notify the other replicas once it commits: one statement.
async fn append(c: &impl GenericClient, me: &Me, id: &str, event: EventName, data: Value) -> Result<JobEvent, StoreError> {
    let sql = fenced(
        "WITH j AS (UPDATE jobs SET last_seq = last_seq + 1 WHERE id = $1 AND $FENCE RETURNING last_seq),
              e AS (INSERT INTO job_events (job_id, seq, event, data) SELECT $1, last_seq, $2, $3 FROM j RETURNING seq)
         SELECT seq, pg_notify('berth_events', $4 || ' ' || $1 || ' ' || seq || ' ' || $2 || ' '
                               || (extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM e"
            .replace("$FENCE", FENCE)
            .as_str(),
        4,
        5,
    );
    let generation = me.generation();
    let row = c.query_opt(&sql, &[&id, &event.as_str(), &data.to_string(), &me.id, &generation]).await?;
    let Some(row) = row else { return Err(StoreError::Fenced(id.to_string())) };
    let seq: i64 = row.get(0);
    Ok(JobEvent { job_id: id.to_string(), seq: seq as u64, event, data })
}

/// Tell the other replicas' dispatchers of `host` and `kind` to look at their queue.
async fn notify_queue(c: &impl GenericClient, host: &str, kind: &str) -> Result<(), StoreError> {
    c.execute("SELECT pg_notify('berth_queue', $1 || ' ' || $2)", &[&host, &kind]).await?;
    Ok(())
}

async fn get_job(c: &impl GenericClient, id: &str) -> Result<Option<Job>, StoreError> {
    c.query_opt(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"), &[&id]).await?.as_ref().map(job_from_row).transpose()
}

/// This replica: its name and the generation of its lease (bumped each time it registers).
pub struct Me {
    pub id: String,
    generation: std::sync::atomic::AtomicI64,
    ttl: std::time::Duration,
}

impl Me {
    fn generation(&self) -> i64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn ttl_secs(&self) -> f64 {
        self.ttl.as_secs_f64()
    }
}

/// A replica name nobody else has: the host name and a random suffix.
pub fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
    let suffix = &crate::store::new_id().to_lowercase()[20..];
    if host.is_empty() { format!("berth-{suffix}") } else { format!("{host}-{suffix}") }
}

/// What the lease heartbeat reports to metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaseStatus {
    /// Seconds the lease had left at its last renewal.
    pub seconds_left: f64,
    pub generation: i64,
    /// When it was last renewed.
    pub renewed: Option<std::time::Instant>,
}

/// The PostgreSQL store: a connection pool, and this replica's lease.
pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    me: Me,
    /// Stops the heartbeat and the listener.
    stop: tokio_util::sync::CancellationToken,
    lease: std::sync::Mutex<LeaseStatus>,
}

impl PostgresStore {
    /// Connect to `url` (`postgres://user[:password]@host[:port]/db`), migrate, and take a
    /// lease as a replica of a random name with a 30 s time to live.
    pub async fn connect(url: &str, max_connections: usize) -> Result<Self, StoreError> {
        Self::connect_as(url, max_connections, &replica_name(), std::time::Duration::from_secs(30)).await
    }

    /// Connect, migrate, and register as replica `id` with a lease of `ttl`.
    pub async fn connect_as(url: &str, max_connections: usize, id: &str, ttl: std::time::Duration) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| StoreError::Postgres(format!("BERTH_DATABASE_URL: {e}")))?;
        let manager = deadpool_postgres::Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections)
            .wait_timeout(Some(std::time::Duration::from_secs(5)))
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Postgres(e.to_string()))?;
        let me = Me { id: id.to_string(), generation: 0.into(), ttl };
        let store = Self { pool, config, me, stop: Default::default(), lease: Default::default() };
        store.migrate().await?;
        store.register().await?;
        Ok(store)
    }

    /// This replica's name.
    pub fn replica_id(&self) -> &str {
        &self.me.id
    }

    /// The lease as of its last renewal.
    pub fn lease(&self) -> LeaseStatus {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply the migrations this database lacks, one replica at a time.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.pool.get().await?;
        c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
        let applied = async {
            c.batch_execute("CREATE TABLE IF NOT EXISTS berth_schema (version INTEGER NOT NULL)").await?;
            let version: i64 = c.query_one("SELECT COALESCE(MAX(version), 0)::BIGINT FROM berth_schema", &[]).await?.get(0);
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                let tx = c.transaction().await?;
                tx.batch_execute(sql).await?;
                tx.execute("INSERT INTO berth_schema (version) VALUES ($1)", &[&(i as i32 + 1)]).await?;
                tx.commit().await?;
            }
            Ok::<_, StoreError>(())
        }
        .await;
        c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
        applied
    }

    /// Take a lease with the next generation of this replica's name.
    async fn register(&self) -> Result<(), StoreError> {
        let row = self
            .pool
            .get()
            .await?
            .query_one(
                "INSERT INTO berth_replicas (id, generation, expires_at) VALUES ($1, 1, now() + $2 * interval '1 second')
                 ON CONFLICT (id) DO UPDATE SET generation = berth_replicas.generation + 1, started_at = now(),
                        renewed_at = now(), expires_at = EXCLUDED.expires_at
                 RETURNING generation",
                &[&self.me.id, &self.me.ttl_secs()],
            )
            .await?;
        let generation: i64 = row.get(0);
        self.me.generation.store(generation, std::sync::atomic::Ordering::SeqCst);
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = LeaseStatus { seconds_left: self.me.ttl_secs(), generation, renewed: Some(std::time::Instant::now()) };
        Ok(())
    }

    /// Renew the lease while it is live; `Ok(false)` when it had lapsed (it is not renewed).
    async fn renew(&self) -> Result<bool, StoreError> {
        let row = self
            .pool
            .get()
            .await?
            .query_opt(
                "UPDATE berth_replicas SET expires_at = now() + $3 * interval '1 second', renewed_at = now()
                 WHERE id = $1 AND generation = $2 AND expires_at > now()
                 RETURNING extract(epoch FROM expires_at - now())::float8",
                &[&self.me.id, &self.me.generation(), &self.me.ttl_secs()],
            )
            .await?;
        let Some(row) = row else { return Ok(false) };
        let mut lease = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        *lease = LeaseStatus { seconds_left: row.get(0), generation: self.me.generation(), renewed: Some(std::time::Instant::now()) };
        Ok(true)
    }

    /// Start the heartbeat (renewing the lease every third of its time to live) and the
    /// listener (`LISTEN` on a connection of its own, reconnecting); both send what they
    /// learn to the returned channel, and stop when it is dropped or at [`JobStore::release`].
    pub fn spawn_replication(self: &std::sync::Arc<Self>) -> tokio::sync::mpsc::UnboundedReceiver<Notice> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let me = self.clone();
        let beat = tx.clone();
        tokio::spawn(async move { me.heartbeat(beat).await });
        let me = self.clone();
        tokio::spawn(async move { me.listen(tx).await });
        rx
    }

    async fn heartbeat(&self, tx: tokio::sync::mpsc::UnboundedSender<Notice>) {
        let every = (self.me.ttl / 3).max(std::time::Duration::from_millis(100));
        let mut last_renewed = tokio::time::Instant::now();
        let mut lost_reported = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.stop.cancelled() => return,
                _ = tx.closed() => return,
            }
            match self.renew().await {
                Ok(true) => {
                    last_renewed = tokio::time::Instant::now();
                    lost_reported = false;
                }
                Ok(false) => {
                    tracing::error!(replica = %self.me.id, generation = self.me.generation(),
                        "this replica's lease lapsed; its running jobs are taken over by the others; registering again");
                    if let Err(e) = self.register().await {
                        tracing::warn!(error = %e, "registering the replica again failed; retrying");
                        continue;
                    }
                    last_renewed = tokio::time::Instant::now();
                    let _ = tx.send(Notice::LeaseLost);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the replica's lease failed");
                    // Out of reach for longer than the lease: it has lapsed, whatever the
                    // database says once it answers again. Stop running what is not ours.
                    if last_renewed.elapsed() > self.me.ttl && !lost_reported {
                        lost_reported = true;
                        let _ = tx.send(Notice::LeaseLost);
                    }
                }
            }
        }
    }

    async fn listen(&self, tx: tokio::sync::mpsc::UnboundedSender<Notice>) {
        use futures_util::StreamExt;
        let mut backoff = std::time::Duration::from_millis(200);
        loop {
            let session = async {
                let (client, mut conn) = self.config.connect(tokio_postgres::NoTls).await?;
                let (ntx, mut nrx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                if ntx.send(n).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "the store's notification connection failed");
                                return;
                            }
                        }
                    }
                });
                client.batch_execute(&format!("LISTEN {EVENTS_CHANNEL}; LISTEN {QUEUE_CHANNEL}; LISTEN {CANCEL_CHANNEL}")).await?;
                // Anything sent while no connection listened is missed: look again.
                let _ = tx.send(Notice::Resync);
                loop {
                    let n = tokio::select! {
                        n = nrx.recv() => n,
                        _ = self.stop.cancelled() => break,
                        _ = tx.closed() => break,
                    };
                    let Some(n) = n else { break };
                    if let Some(notice) = self.parse_notice(n.channel(), n.payload())
                        && tx.send(notice).is_err()
                    {
                        break;
                    }
                }
                driver.abort();
                drop(client);
                Ok::<_, StoreError>(())
            };
            match session.await {
                Ok(()) => backoff = std::time::Duration::from_millis(200),
                Err(e) => tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "listening for the other replicas failed"),
            }
            if self.stop.is_cancelled() || tx.is_closed() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
        }
    }

    /// A notification as a [`Notice`]; `None` for this replica's own events and for
    /// anything malformed.
    fn parse_notice(&self, channel: &str, payload: &str) -> Option<Notice> {
        let mut parts = payload.split(' ');
        match channel {
            EVENTS_CHANNEL => {
                let (from, job_id, seq, event, at_ms) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
                if from == self.me.id {
                    return None;
                }
                let sent = at_ms.parse::<i64>().ok()?;
                let now = chrono::Utc::now().timestamp_millis();
                let lag = std::time::Duration::from_millis(now.saturating_sub(sent).max(0) as u64);
                Some(Notice::Event { job_id: job_id.to_string(), seq: seq.parse().ok()?, event: EventName::parse(event)?, lag })
            }
            QUEUE_CHANNEL => {
                let (host, kind) = (parts.next()?, parts.next()?);
                Some(Notice::Queue { host: host.to_string(), kind: JobKind::parse(kind)? })
            }
            CANCEL_CHANNEL => Some(Notice::Cancel { job_id: payload.to_string() }),
            _ => None,
        }
    }

    /// Run `sweep` unless another replica is sweeping (a session-level advisory lock on a
    /// connection held for the sweep); 0 when another one is.
    async fn alone<F, Fut>(&self, key: i64, sweep: F) -> Result<usize, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<usize, StoreError>>,
    {
        let c = self.pool.get().await?;
        let got: bool = c.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).await?.get(0);
        if !got {
            return Ok(0);
        }
        let swept = sweep().await;
        c.execute("SELECT pg_advisory_unlock($1)", &[&key]).await?;
        swept
    }
}

#[async_trait]
impl JobStore for PostgresStore {
    async fn insert(&self, id: &str, job: NewJob, capacity: usize) -> Result<Inserted, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INSERT_LOCK]).await?;
        if let Some(key) = &job.idempotency_key {
            let existing = tx
                .query_opt(&format!("SELECT {COLUMNS} FROM jobs WHERE owner = $1 AND idempotency_key = $2"), &[&job.owner, key])
                .await?;
            if let Some(row) = existing {
                return Ok(Inserted::Existing(job_from_row(&row)?));
            }
        }
        let queued: i64 = tx.query_one("SELECT count(*) FROM jobs WHERE state = 'queued'", &[]).await?.get(0);
        if queued as usize >= capacity {
            return Ok(Inserted::QueueFull);
        }
        let progress = Progress { phase: "queued".into(), ..Default::default() };
        let progress = serde_json::to_string(&progress).unwrap_or_default();
        // A spooled build context is on this replica's disk: only this replica runs it.
        let pinned = job.spool.as_ref().map(|_| self.me.id.clone());
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO jobs (id, kind, state, owner, created_at, request, progress, idempotency_key, spool, authority, seal, team, host, last_seq, pinned)
                     VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, $13)
                     RETURNING {COLUMNS}"
                ),
                &[
                    &id,
                    &job.kind.as_str(),
                    &job.owner,
                    &now(),
                    &job.request.to_string(),
                    &progress,
                    &job.idempotency_key,
                    &job.spool,
                    &job.authority.as_str(),
                    &job.seal,
                    &job.team,
                    &job.host,
                    &pinned,
                ],
            )
            .await?;
        let j = job_from_row(&row)?;
        // The `queued` event, and the wake-ups (its event; the host and kind's queue).
        let queued_event = serde_json::json!({"state": "queued"}).to_string();
        tx.execute(
            "WITH e AS (INSERT INTO job_events (job_id, seq, event, data) VALUES ($1, 1, 'state', $2) RETURNING seq)
             SELECT pg_notify('berth_events', $3 || ' ' || $1 || ' 1 state ' || (extract(epoch FROM clock_timestamp()) * 1000)::bigint),
                    pg_notify('berth_queue', $4 || ' ' || $5)
             FROM e",
            &[&id, &queued_event, &self.me.id, &job.host, &job.kind.as_str()],
        )
        .await?;
        tx.commit().await?;
        Ok(Inserted::New(j))
    }

    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        get_job(&self.pool.get().await?, id).await
    }

    async fn find_idempotent(&self, owner: &str, key: &str) -> Result<Option<Job>, StoreError> {
        let c = self.pool.get().await?;
        let row = c.query_opt(&format!("SELECT {COLUMNS} FROM jobs WHERE owner = $1 AND idempotency_key = $2"), &[&owner, &key]).await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn list(&self, f: JobFilter) -> Result<(Vec<Job>, bool), StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM jobs WHERE true");
        let mut args: Vec<String> = Vec::new();
        let mut arg = |sql: &mut String, v: String, clause: &str| {
            args.push(v);
            sql.push_str(&clause.replace("$?", &format!("${}", args.len())));
        };
        if let Some(o) = f.owner {
            arg(&mut sql, o, " AND owner = $?");
        }
        if let Some(t) = f.team {
            arg(&mut sql, t, " AND team = $?");
        }
        if let Some(h) = f.host {
            let clause = if f.host_is_default { " AND (host = $? OR host IS NULL)" } else { " AND host = $?" };
            arg(&mut sql, h, clause);
        }
        if let Some(s) = f.state {
            arg(&mut sql, s.as_str().into(), " AND state = $?");
        }
        if let Some(k) = f.kind {
            arg(&mut sql, k.as_str().into(), " AND kind = $?");
        }
        if let Some(b) = f.before {
            arg(&mut sql, b, " AND id < $?");
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", f.limit));
        let c = self.pool.get().await?;
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        let rows = c.query(&sql, &params).await?;
        let (mut jobs, mut bytes) = (Vec::new(), 0usize);
        for row in &rows {
            let job = job_from_row(row)?;
            bytes += job.request.to_string().len() + job.result.as_ref().map_or(0, |r| r.to_string().len()) + 512;
            jobs.push(job);
            if f.max_bytes > 0 && bytes >= f.max_bytes && jobs.len() < f.limit {
                return Ok((jobs, true));
            }
        }
        Ok((jobs, false))
    }

    async fn claim_next(&self, kind: JobKind, host: &str, is_default: bool, limit: usize) -> Result<Option<Job>, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        // Claims of one host and kind take turns, on every replica: the count holds until
        // the claim commits.
        tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2 || '/' || $3))", &[&CLAIM_LOCK, &host, &kind.as_str()]).await?;
        let running: i64 = tx
            .query_one(
                "SELECT count(*) FROM jobs WHERE state = 'running' AND kind = $1 AND (host = $2 OR ($3 AND host IS NULL))",
                &[&kind.as_str(), &host, &is_default],
            )
            .await?
            .get(0);
        if running as u64 >= limit as u64 {
            return Ok(None);
        }
        // The oldest queued job of the pair, locked (SKIP LOCKED: a row another claimer or
        // a cancel holds is passed over). `host = $` alone, so the partial index of queued
        // rows serves it; rows from before jobs had a host (the default host's) are looked
        // up apart, and the older of the two wins.
        let pick = |host_clause: &str| {
            format!(
                "SELECT id FROM jobs WHERE state = 'queued' AND kind = $1 AND {host_clause} AND (pinned IS NULL OR pinned = $2)
                 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
            )
        };
        let mut id: Option<String> = tx.query_opt(&pick("host = $3"), &[&kind.as_str(), &self.me.id, &host]).await?.map(|r| r.get(0));
        if is_default {
            let legacy = tx.query_opt(&pick("host IS NULL"), &[&kind.as_str(), &self.me.id]).await?.map(|r| r.get::<_, String>(0));
            id = match (id, legacy) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let Some(id) = id else { return Ok(None) };
        let sql = fenced(
            &format!(
                "UPDATE jobs SET state = 'running', started_at = $2, replica = $R, replica_gen = $G
                 WHERE id = $1 AND state = 'queued' AND {LIVE}
                 RETURNING {COLUMNS}"
            ),
            3,
            4,
        );
        let row = tx.query_opt(&sql, &[&id, &now(), &self.me.id, &self.me.generation()]).await?;
        tx.commit().await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn transition(&self, id: &str, from: JobState, to: JobState, result: Option<Value>, error: Option<JobError>) -> Result<bool, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let finished = to.is_terminal().then(now);
        let result = result.map(|r| r.to_string());
        let error = error.map(|e| serde_json::to_string(&e).unwrap_or_default());
        // Back to the queue: unclaimed again.
        let requeue = to == JobState::Queued;
        let sql = fenced(
            &format!(
                "UPDATE jobs SET state = $3, finished_at = COALESCE($4, finished_at),
                        result = COALESCE($5, result), error = COALESCE($6, error),
                        replica = CASE WHEN $9 THEN NULL ELSE replica END,
                        replica_gen = CASE WHEN $9 THEN NULL ELSE replica_gen END
                 WHERE id = $1 AND state = $2 AND {FENCE}
                 RETURNING kind, COALESCE(host, '')"
            ),
            7,
            8,
        );
        let row = tx
            .query_opt(&sql, &[&id, &from.as_str(), &to.as_str(), &finished, &result, &error, &self.me.id, &self.me.generation(), &requeue])
            .await?;
        if let Some(r) = &row
            && (from == JobState::Running || requeue)
        {
            notify_queue(&tx, r.get::<_, &str>(1), r.get::<_, &str>(0)).await?;
        }
        tx.commit().await?;
        Ok(row.is_some())
    }

    async fn set_progress(&self, id: &str, progress: &Progress) -> Result<(), StoreError> {
        let p = serde_json::to_string(progress).unwrap_or_default();
        let sql = fenced(&format!("UPDATE jobs SET progress = $2 WHERE id = $1 AND {FENCE}"), 3, 4);
        let n = self.pool.get().await?.execute(&sql, &[&id, &p, &self.me.id, &self.me.generation()]).await?;
        if n == 0 { Err(StoreError::Fenced(id.to_string())) } else { Ok(()) }
    }

    async fn set_result(&self, id: &str, result: &Value) -> Result<(), StoreError> {
        let r = result.to_string();
        let sql = fenced(&format!("UPDATE jobs SET result = $2 WHERE id = $1 AND state = 'running' AND {FENCE}"), 3, 4);
        self.pool.get().await?.execute(&sql, &[&id, &r, &self.me.id, &self.me.generation()]).await?;
        Ok(())
    }

    async fn append_event(&self, id: &str, event: EventName, data: Value) -> Result<JobEvent, StoreError> {
        append(&self.pool.get().await?, &self.me, id, event, data).await
    }

    async fn finish(&self, id: &str, end: JobEnd) -> Result<Option<Finished>, StoreError> {
        let JobEnd { from, to, result, error, events } = end;
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let result = result.map(|r| r.to_string());
        let error = error.map(|e| serde_json::to_string(&e).unwrap_or_default());
        let sql = fenced(
            &format!(
                "UPDATE jobs SET state = $3, finished_at = $4,
                        result = COALESCE($5, result), error = COALESCE($6, error)
                 WHERE id = $1 AND state = $2 AND {FENCE}
                 RETURNING progress, spool, kind, COALESCE(host, '')"
            ),
            7,
            8,
        );
        let row = tx.query_opt(&sql, &[&id, &from.as_str(), &to.as_str(), &now(), &result, &error, &self.me.id, &self.me.generation()]).await?;
        let Some(row) = row else { return Ok(None) };
        let progress: String = row.get(0);
        let spool: Option<String> = row.get(1);
        let mut progress: Progress = serde_json::from_str(&progress).unwrap_or_default();
        progress.phase = "done".into();
        tx.execute("UPDATE jobs SET progress = $2 WHERE id = $1", &[&id, &serde_json::to_string(&progress).unwrap_or_default()]).await?;
        let mut stored = Vec::with_capacity(events.len());
        for (name, data) in events {
            stored.push(append(&tx, &self.me, id, name, data).await?);
        }
        if from == JobState::Running {
            notify_queue(&tx, row.get::<_, &str>(3), row.get::<_, &str>(2)).await?;
        }
        tx.commit().await?;
        Ok(Some(Finished { events: stored, spool }))
    }

    async fn last_event(&self, id: &str) -> Result<Option<JobEvent>, StoreError> {
        let c = self.pool.get().await?;
        let row = c.query_opt("SELECT seq, event, data FROM job_events WHERE job_id = $1 ORDER BY seq DESC LIMIT 1", &[&id]).await?;
        row.map(|r| event_from_row(id, &r)).transpose()
    }

    async fn events_after(&self, id: &str, after: u64, limit: usize) -> Result<Vec<JobEvent>, StoreError> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT seq, event, data FROM job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&id, &(after.min(i64::MAX as u64) as i64), &(limit as i64)],
            )
            .await?;
        rows.iter().map(|r| event_from_row(id, r)).collect()
    }

    async fn delete_finished(&self, id: &str) -> Result<Option<Option<String>>, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let row = tx.query_opt("DELETE FROM jobs WHERE id = $1 AND state NOT IN ('queued', 'running') RETURNING spool", &[&id]).await?;
        let spool = row.map(|r| r.get::<_, Option<String>>(0));
        if spool.is_some() {
            tx.execute("DELETE FROM job_events WHERE job_id = $1", &[&id]).await?;
        }
        tx.commit().await?;
        Ok(spool)
    }

    async fn delete_finished_before(&self, cutoff: &str) -> Result<usize, StoreError> {
        self.alone(SWEEP_LOCK, || async {
            let mut total = 0;
            loop {
                let mut c = self.pool.get().await?;
                let tx = c.transaction().await?;
                let rows = tx
                    .query(
                        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE finished_at < $1 AND state NOT IN ('queued', 'running') LIMIT $2)
                         RETURNING id",
                        &[&cutoff, &SWEEP_BATCH],
                    )
                    .await?;
                let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                tx.execute("DELETE FROM job_events WHERE job_id = ANY($1)", &[&ids]).await?;
                tx.commit().await?;
                total += ids.len();
                if (ids.len() as i64) < SWEEP_BATCH {
                    return Ok(total);
                }
            }
        })
        .await
    }

    async fn orphans(&self) -> Result<Vec<Orphan>, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        // One adopter at a time: two replicas never both take a job over.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REAP_LOCK]).await?;
        let running = fenced(
            &format!(
                "UPDATE jobs SET replica = $R, replica_gen = $G
                 FROM (SELECT j.id, j.replica AS prev FROM jobs j
                       WHERE j.state = 'running' AND NOT EXISTS (
                           SELECT 1 FROM berth_replicas r
                           WHERE r.id = j.replica AND r.generation = j.replica_gen AND r.expires_at > now())) old
                 WHERE jobs.id = old.id AND {LIVE}
                 RETURNING old.prev, {JOB_COLUMNS}"
            ),
            1,
            2,
        );
        let queued = fenced(
            &format!(
                "UPDATE jobs SET pinned = $R
                 FROM (SELECT j.id, j.pinned AS prev FROM jobs j
                       WHERE j.state = 'queued' AND j.pinned IS NOT NULL AND j.pinned <> $R AND NOT EXISTS (
                           SELECT 1 FROM berth_replicas r WHERE r.id = j.pinned AND r.expires_at > now())) old
                 WHERE jobs.id = old.id AND {LIVE}
                 RETURNING old.prev, {JOB_COLUMNS}"
            ),
            1,
            2,
        );
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&self.me.id, &self.me.generation()];
        let mut rows = tx.query(&running, &params).await?;
        rows.extend(tx.query(&queued, &params).await?);
        // Long-gone replicas own nothing any more.
        tx.execute("DELETE FROM berth_replicas WHERE expires_at < now() - interval '1 day'", &[]).await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                // The job's columns follow `prev`: read them shifted by one.
                let job = job_from_row_at(r, 1)?;
                Ok(Orphan { job, replica: r.get(0) })
            })
            .collect()
    }

    async fn request_cancel(&self, id: &str) -> Result<(), StoreError> {
        self.pool.get().await?.execute("SELECT pg_notify('berth_cancel', $1)", &[&id]).await?;
        Ok(())
    }

    async fn release(&self) {
        self.stop.cancel();
        let released = async {
            self.pool
                .get()
                .await?
                .execute("UPDATE berth_replicas SET expires_at = now() WHERE id = $1 AND generation = $2", &[&self.me.id, &self.me.generation()])
                .await?;
            Ok::<_, StoreError>(())
        };
        if let Err(e) = released.await {
            tracing::warn!(error = %e, "giving up the replica's lease failed; it lapses on its own");
        }
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn replica(&self) -> Option<&str> {
        Some(&self.me.id)
    }

    fn lease_seconds_left(&self) -> Option<f64> {
        let lease = self.lease();
        Some(lease.renewed.map_or(0.0, |at| (lease.seconds_left - at.elapsed().as_secs_f64()).max(0.0)))
    }

    async fn count_queued(&self) -> Result<usize, StoreError> {
        let n: i64 = self.pool.get().await?.query_one("SELECT count(*) FROM jobs WHERE state = 'queued'", &[]).await?.get(0);
        Ok(n as usize)
    }

    async fn count_by_kind_state(&self) -> Result<Vec<(String, String, String, u64)>, StoreError> {
        let rows = self
            .pool
            .get()
            .await?
            .query("SELECT kind, state, COALESCE(host, ''), count(*) FROM jobs GROUP BY kind, state, host", &[])
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get::<_, i64>(3) as u64)).collect())
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.pool
            .get()
            .await?
            .execute("INSERT INTO health (id, checked_at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET checked_at = $1", &[&now()])
            .await?;
        Ok(())
    }

    async fn live_spools(&self) -> Result<Vec<String>, StoreError> {
        let rows = self
            .pool
            .get()
            .await?
            .query("SELECT spool FROM jobs WHERE spool IS NOT NULL AND state IN ('queued', 'running')", &[])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// Milliseconds since the Unix epoch, by this host's clock (tickets are issued and
/// checked against it, as on one process).
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[async_trait]
impl TicketLedger for PostgresStore {
    async fn put_ticket(&self, digest: &[u8], subject: &str, body: &str, expires_at_ms: i64, per_subject: usize, total: usize) -> Result<bool, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        // The bounds hold across replicas: one issuer at a time.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&TICKET_LOCK]).await?;
        tx.execute("DELETE FROM berth_tickets WHERE expires_at_ms <= $1", &[&now_ms()]).await?;
        let row = tx.query_one("SELECT count(*) FILTER (WHERE subject = $1), count(*) FROM berth_tickets", &[&subject]).await?;
        let (held, all): (i64, i64) = (row.get(0), row.get(1));
        if held as usize >= per_subject || all as usize >= total {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO berth_tickets (digest, subject, body, expires_at_ms) VALUES ($1, $2, $3, $4)",
            &[&digest, &subject, &body, &expires_at_ms],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn take_ticket(&self, digest: &[u8]) -> Result<Option<(String, i64)>, StoreError> {
        let row = self.pool.get().await?.query_opt("DELETE FROM berth_tickets WHERE digest = $1 RETURNING body, expires_at_ms", &[&digest]).await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }
}

#[async_trait]
impl AuditLog for PostgresStore {
    async fn record(&self, r: AuditRecord) -> Result<(), StoreError> {
        let status = r.status as i32;
        self.pool
            .get()
            .await?
            .execute(
                "INSERT INTO audit (id, at, subject, role, action, target, outcome, status, code, job_id, client, request_id, team, host)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                &[&r.id, &r.at, &r.subject, &r.role, &r.action, &r.target, &r.outcome, &status, &r.code, &r.job_id, &r.client, &r.request_id, &r.team, &r.host],
            )
            .await?;
        Ok(())
    }

    async fn query(&self, f: AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let mut sql = String::from(
            "SELECT id, at, subject, role, action, target, outcome, status, code, job_id, client, request_id, team, host FROM audit WHERE true",
        );
        let mut args: Vec<String> = Vec::new();
        for (col, v) in [("subject", f.subject), ("outcome", f.outcome), ("action", f.action), ("job_id", f.job_id), ("id <", f.before)] {
            if let Some(v) = v {
                args.push(v);
                let op = if col.ends_with('<') { "" } else { " =" };
                sql.push_str(&format!(" AND {col}{op} ${}", args.len()));
            }
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", f.limit));
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        let rows = self.pool.get().await?.query(&sql, &params).await?;
        Ok(rows
            .iter()
            .map(|r| AuditRecord {
                id: r.get(0),
                at: r.get(1),
                subject: r.get(2),
                role: r.get(3),
                action: r.get(4),
                target: r.get(5),
                outcome: r.get(6),
                status: r.get::<_, i32>(7) as u16,
                code: r.get(8),
                job_id: r.get(9),
                client: r.get(10),
                request_id: r.get(11),
                team: r.get(12),
                host: r.get(13),
            })
            .collect())
    }

    async fn prune_before(&self, cutoff: &str) -> Result<usize, StoreError> {
        self.alone(AUDIT_SWEEP_LOCK, || async {
            let mut total = 0;
            loop {
                let n = self
                    .pool
                    .get()
                    .await?
                    .execute("DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < $1 LIMIT $2)", &[&cutoff, &SWEEP_BATCH])
                    .await? as usize;
                total += n;
                if (n as i64) < SWEEP_BATCH {
                    return Ok(total);
                }
            }
        })
        .await
    }
}


/// A throwaway database on a PostgreSQL cluster, for tests and benchmarks: made on
/// [`ScratchDb::new`] on the cluster at `BERTH_TEST_DATABASE_URL` (default the one
/// `scripts/test-env.sh` starts), dropped (with its connections) when dropped.
#[doc(hidden)]
pub struct ScratchDb {
    admin: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

impl ScratchDb {
    pub async fn new() -> Self {
        let admin = std::env::var("BERTH_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://berth@127.0.0.1:55432/postgres".into());
        let name = format!("berth_test_{}", crate::store::new_id().to_lowercase());
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (scripts/test-env.sh starts it): {e}"));
        let driver = tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        drop(client);
        let _ = driver.await;
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("BERTH_TEST_DATABASE_URL names no database: {admin}"),
        };
        ScratchDb { admin, name, url }
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // On a thread of its own: the caller's runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            })
        })
        .join();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) use super::ScratchDb as TestDb;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn passes_the_store_suite() {
        let db = TestDb::new().await;
        let store = std::sync::Arc::new(PostgresStore::connect(&db.url, 16).await.unwrap());
        crate::store::suite::run(store.clone(), store).await;
    }

    #[tokio::test]
    async fn replicas_starting_together_migrate_once() {
        let db = TestDb::new().await;
        let starts = (0..4).map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url, 2).await.map(|_| ()) })
        });
        for s in starts.collect::<Vec<_>>() {
            s.await.unwrap().unwrap();
        }
        let store = PostgresStore::connect(&db.url, 2).await.unwrap();
        let c = store.pool.get().await.unwrap();
        let versions: i64 = c.query_one("SELECT count(*) FROM berth_schema", &[]).await.unwrap().get(0);
        assert_eq!(versions as usize, MIGRATIONS.len(), "each migration applied once");
    }

    /// Replica A's lease lapses while it runs a job: from then on A writes nothing to it
    /// (fenced, even before anyone adopts it) and claims nothing; B adopts the job and
    /// A's pinned build, and ends them; A registered again (next generation) still cannot
    /// touch them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lapsed_lease_fences_its_replica_and_another_adopts_its_jobs() {
        use crate::store::{new_id, suite::new_job};
        let db = TestDb::new().await;
        let ttl = std::time::Duration::from_millis(1500);
        let a = PostgresStore::connect_as(&db.url, 4, "replica-a", ttl).await.unwrap();
        let b = PostgresStore::connect_as(&db.url, 4, "replica-b", std::time::Duration::from_secs(60)).await.unwrap();
        let Inserted::New(run) = a.insert(&new_id(), new_job("alice", None), 10).await.unwrap() else { panic!() };
        let build = NewJob { kind: JobKind::Build, spool: Some("/x/ctx-1.ctx".into()), ..new_job("alice", None) };
        let Inserted::New(build) = a.insert(&new_id(), build, 10).await.unwrap() else { panic!() };
        assert!(b.claim_next(JobKind::Build, "a", true, 10).await.unwrap().is_none(), "the build's context is on A: B never claims it");
        let claimed = a.claim_next(JobKind::Pull, "a", true, 10).await.unwrap().unwrap();
        assert_eq!((claimed.id.as_str(), claimed.replica.as_deref()), (run.id.as_str(), Some("replica-a")));
        a.append_event(&run.id, EventName::Log, serde_json::json!({"text": "while alive"})).await.unwrap();
        assert!(b.orphans().await.unwrap().is_empty(), "a live replica's jobs are never taken");
        assert!(matches!(b.append_event(&run.id, EventName::Log, serde_json::json!({})).await, Err(StoreError::Fenced(_))), "B cannot write to A's job");

        tokio::time::sleep(ttl + std::time::Duration::from_millis(300)).await;
        // Lapsed, not yet adopted: A is fenced off already.
        let late = a.append_event(&run.id, EventName::Log, serde_json::json!({"text": "after the lease"})).await;
        assert!(matches!(late, Err(StoreError::Fenced(_))), "{late:?}");
        let end = JobEnd { from: JobState::Running, to: JobState::Succeeded, result: None, error: None, events: vec![] };
        assert!(a.finish(&run.id, end.clone()).await.unwrap().is_none(), "A cannot end it either");
        let Inserted::New(_) = a.insert(&new_id(), new_job("alice", None), 10).await.unwrap() else { panic!() };
        assert!(a.claim_next(JobKind::Pull, "a", true, 10).await.unwrap().is_none(), "no claims without a live lease");
        assert!(!a.renew().await.unwrap(), "a lapsed lease is never renewed");

        let mut orphans = b.orphans().await.unwrap();
        orphans.sort_by(|x, y| x.job.id.cmp(&y.job.id));
        let got: Vec<_> = orphans.iter().map(|o| (o.job.id.clone(), o.job.state, o.replica.clone())).collect();
        assert_eq!(got, [(run.id.clone(), JobState::Running, Some("replica-a".into())), (build.id.clone(), JobState::Queued, Some("replica-a".into()))]);
        assert!(b.orphans().await.unwrap().is_empty(), "adopted once");
        a.register().await.unwrap();
        assert_eq!(a.lease().generation, 2, "registered again with the next generation");
        assert!(matches!(a.append_event(&run.id, EventName::Log, serde_json::json!({})).await, Err(StoreError::Fenced(_))));
        assert!(a.orphans().await.unwrap().is_empty(), "B's now, and B is alive");
        let interrupted = JobEnd { to: JobState::Interrupted, ..end };
        let done = b.finish(&run.id, interrupted).await.unwrap().expect("B ends it");
        assert!(done.events.is_empty());
        let events = b.events_after(&run.id, 0, 10).await.unwrap();
        assert!(events.iter().all(|e| e.data.get("text").and_then(|t| t.as_str()) != Some("after the lease")), "nothing A wrote late");
        assert_eq!(b.get(&run.id).await.unwrap().unwrap().state, JobState::Interrupted);
        // A's own new lease claims again.
        assert!(a.claim_next(JobKind::Pull, "a", true, 10).await.unwrap().is_some());
    }

    /// Rows from before jobs had a host (NULL: copied from an old SQLite store) are the
    /// default host's queue, oldest first among its own.
    #[tokio::test]
    async fn rows_without_a_host_are_the_default_host_s() {
        use crate::store::{new_id, suite::new_job};
        let db = TestDb::new().await;
        let store = PostgresStore::connect(&db.url, 2).await.unwrap();
        let Inserted::New(old) = store.insert(&new_id(), new_job("alice", None), 10).await.unwrap() else { panic!() };
        let Inserted::New(new) = store.insert(&new_id(), new_job("alice", None), 10).await.unwrap() else { panic!() };
        store.pool.get().await.unwrap().execute("UPDATE jobs SET host = NULL WHERE id = $1", &[&old.id]).await.unwrap();
        assert!(store.claim_next(JobKind::Pull, "b", false, 10).await.unwrap().is_none(), "not another host's");
        assert_eq!(store.claim_next(JobKind::Pull, "a", true, 10).await.unwrap().unwrap().id, old.id, "the older, hostless");
        assert_eq!(store.claim_next(JobKind::Pull, "a", true, 10).await.unwrap().unwrap().id, new.id);
        assert!(store.claim_next(JobKind::Pull, "a", true, 10).await.unwrap().is_none());
    }

    /// Notices up to and with the first that `done` accepts (at most 5 s).
    async fn notices_until(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Notice>, done: impl Fn(&Notice) -> bool) -> Vec<Notice> {
        let mut seen = Vec::new();
        loop {
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await;
            let n = n.unwrap_or_else(|_| panic!("no such notice within 5 s; got {seen:?}")).expect("the channel is open");
            let last = done(&n);
            seen.push(n);
            if last {
                return seen;
            }
        }
    }

    /// What one replica writes wakes the other: a queued job, its events (ids only, with
    /// the lag), a cancel; a replica hears nothing of its own events.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn notifications_carry_ids_across_replicas() {
        use crate::store::{new_id, suite::new_job};
        let db = TestDb::new().await;
        let a = std::sync::Arc::new(PostgresStore::connect_as(&db.url, 4, "replica-a", std::time::Duration::from_secs(30)).await.unwrap());
        let b = std::sync::Arc::new(PostgresStore::connect_as(&db.url, 4, "replica-b", std::time::Duration::from_secs(30)).await.unwrap());
        let mut on_b = b.spawn_replication();
        let mut on_a = a.spawn_replication();
        // Both listen once they say so (a resync); only then is nothing missed.
        notices_until(&mut on_b, |n| *n == Notice::Resync).await;
        notices_until(&mut on_a, |n| *n == Notice::Resync).await;
        let Inserted::New(j) = a.insert(&new_id(), new_job("alice", None), 10).await.unwrap() else { panic!() };
        let got = notices_until(&mut on_b, |n| matches!(n, Notice::Event { .. })).await;
        let Some(Notice::Event { job_id, seq, event, lag }) = got.last() else { panic!("{got:?}") };
        assert_eq!((job_id, *seq, *event), (&j.id, 1, EventName::State));
        assert!(lag.as_secs() < 5, "{lag:?}");
        let queue = Notice::Queue { host: "a".into(), kind: JobKind::Pull };
        if !got.contains(&queue) {
            notices_until(&mut on_b, |n| *n == queue).await;
        }
        b.request_cancel(&j.id).await.unwrap();
        let on_a = notices_until(&mut on_a, |n| matches!(n, Notice::Cancel { .. })).await;
        assert_eq!(on_a.last(), Some(&Notice::Cancel { job_id: j.id.clone() }));
        assert!(!on_a.iter().any(|n| matches!(n, Notice::Event { .. })), "a replica hears nothing of its own events: {on_a:?}");
        b.release().await;
        a.release().await;
    }

    #[tokio::test]
    async fn a_database_that_is_not_there_is_a_clear_error() {
        let err = PostgresStore::connect("postgres://berth@127.0.0.1:1/nowhere", 2).await.err().expect("refused");
        assert!(matches!(err, StoreError::Postgres(_)), "{err}");
        assert!(PostgresStore::connect("not a url", 2).await.err().unwrap().to_string().contains("BERTH_DATABASE_URL"));
    }
}
