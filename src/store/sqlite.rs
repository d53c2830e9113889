//! The embedded SQLite store: one file in `BERTH_DATA_DIR`, WAL mode, one writer
//! connection and one reader. Every state change is one conditional UPDATE: the
//! affected-row count decides races.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use super::{AuditFilter, AuditLog, AuditRecord, Inserted, JobStore, StoreError};
use super::{Finished, JobEnd};
use crate::domain::identity::{DEFAULT_TEAM, Role};
use crate::domain::job::{EventName, Job, JobError, JobEvent, JobFilter, JobKind, JobState, NewJob, Progress};

const MIGRATIONS: &[&str] = &[
    // 1: jobs and their events
    "CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        owner TEXT NOT NULL,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        request TEXT NOT NULL,
        progress TEXT NOT NULL,
        result TEXT,
        error TEXT,
        idempotency_key TEXT,
        spool TEXT
     );
     CREATE UNIQUE INDEX jobs_idempotency ON jobs(owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
     CREATE INDEX jobs_queue ON jobs(state, kind, id);
     CREATE INDEX jobs_owner ON jobs(owner, id);
     CREATE TABLE job_events (
        job_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        event TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
     ) WITHOUT ROWID;
     CREATE TABLE health (id INTEGER PRIMARY KEY, checked_at TEXT NOT NULL);",
    // 2: the audit log
    "CREATE TABLE audit (
        id TEXT PRIMARY KEY,
        at TEXT NOT NULL,
        subject TEXT,
        role TEXT,
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
     CREATE INDEX audit_outcome ON audit(outcome, id);",
    // 3: indexes for the retention sweeps
    "CREATE INDEX audit_at ON audit(at);
     CREATE INDEX jobs_finished ON jobs(finished_at) WHERE finished_at IS NOT NULL;",
    // 4: the role a job was submitted with, and the seal over the row (NULL for rows made before)
    "ALTER TABLE jobs ADD COLUMN authority TEXT;
     ALTER TABLE jobs ADD COLUMN seal TEXT;",
    // 5: teams (NULL: team `default`)
    "ALTER TABLE jobs ADD COLUMN team TEXT;
     CREATE INDEX jobs_team ON jobs(team, id);
     ALTER TABLE audit ADD COLUMN team TEXT;",
    // 6: hosts (NULL: the default host, for rows from before there were several)
    "ALTER TABLE jobs ADD COLUMN host TEXT;
     CREATE INDEX jobs_host_queue ON jobs(state, kind, host, id);
     CREATE INDEX jobs_host ON jobs(host, id);
     ALTER TABLE audit ADD COLUMN host TEXT;",
];

/// Rows a retention sweep deletes per write transaction, so other writes interleave.
const SWEEP_BATCH: usize = 500;

/// One writer connection and one reader: in WAL mode reads go on while a write waits
/// for the file lock.
pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
}

/// How long a write waits for the file lock before it fails (and the request gets 503).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1500);

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

const COLUMNS: &str =
    "id, kind, state, owner, created_at, started_at, finished_at, request, progress, result, error, idempotency_key, authority, seal, spool, team, host";

fn json_col(row: &Row, idx: usize) -> rusqlite::Result<Option<Value>> {
    let s: Option<String> = row.get(idx)?;
    Ok(s.and_then(|s| serde_json::from_str(&s).ok()))
}

fn job_from_row(row: &Row) -> rusqlite::Result<Job> {
    let kind: String = row.get(1)?;
    let state: String = row.get(2)?;
    let bad = |what: &str, v: &str| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, format!("{what} `{v}`").into())
    };
    Ok(Job {
        id: row.get(0)?,
        kind: JobKind::parse(&kind).ok_or_else(|| bad("kind", &kind))?,
        state: JobState::parse(&state).ok_or_else(|| bad("state", &state))?,
        owner: row.get(3)?,
        created_at: row.get(4)?,
        started_at: row.get(5)?,
        finished_at: row.get(6)?,
        request: json_col(row, 7)?.unwrap_or(Value::Null),
        progress: json_col(row, 8)?.and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default(),
        result: json_col(row, 9)?,
        error: json_col(row, 10)?.and_then(|v| serde_json::from_value(v).ok()),
        idempotency_key: row.get(11)?,
        authority: row.get::<_, Option<String>>(12)?.and_then(|r| Role::parse(&r)),
        seal: row.get(13)?,
        spool: row.get(14)?,
        team: row.get::<_, Option<String>>(15)?.unwrap_or_else(|| DEFAULT_TEAM.to_string()),
        host: row.get::<_, Option<String>>(16)?.unwrap_or_default(),
        replica: None,
    })
}

impl SqliteStore {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(dir.join("berth.db"))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        let reader = Connection::open(dir.join("berth.db"))?;
        reader.busy_timeout(BUSY_TIMEOUT)?;
        Ok(Self { writer: Arc::new(Mutex::new(conn)), reader: Arc::new(Mutex::new(reader)) })
    }

    /// Run a write on the writer connection, off the async workers.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        Self::on(self.writer.clone(), f).await
    }

    /// Run a sweep that deletes up to `SWEEP_BATCH` rows per write transaction until a
    /// batch comes back short, so other writes interleave; how many rows in all.
    async fn in_batches(
        &self,
        batch: impl Fn(&mut Connection) -> Result<usize, StoreError> + Send + Sync + Clone + 'static,
    ) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self.with(batch.clone()).await?;
            total += n;
            if n < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }

    /// Run a read on the reader connection.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        Self::on(self.reader.clone(), f).await
    }

    async fn on<T: Send + 'static>(
        conn: Arc<Mutex<Connection>>,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
    }
}

/// `(seq, event, data)` columns as an event of job `job_id`.
fn event_from_row(job_id: &str, r: &Row) -> rusqlite::Result<JobEvent> {
    let data: String = r.get(2)?;
    let name: String = r.get(1)?;
    let event = EventName::parse(&name).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, format!("event `{name}`").into())
    })?;
    Ok(JobEvent { job_id: job_id.to_string(), seq: r.get(0)?, event, data: serde_json::from_str(&data).unwrap_or(Value::Null) })
}

/// Append one event with the job's next sequence number.
fn append(conn: &Connection, id: &str, event: EventName, data: Value) -> rusqlite::Result<JobEvent> {
    let seq: u64 = conn.query_row(
        "INSERT INTO job_events (job_id, seq, event, data)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_events WHERE job_id = ?1), ?2, ?3)
         RETURNING seq",
        params![id, event.as_str(), data.to_string()],
        |r| r.get(0),
    )?;
    Ok(JobEvent { job_id: id.to_string(), seq, event, data })
}

fn get_job(conn: &Connection, id: &str) -> rusqlite::Result<Option<Job>> {
    conn.query_row(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"), [id], job_from_row).optional()
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn insert(&self, id: &str, job: NewJob, capacity: usize) -> Result<Inserted, StoreError> {
        let id = id.to_string();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if let Some(key) = &job.idempotency_key {
                let existing = tx
                    .query_row(
                        &format!("SELECT {COLUMNS} FROM jobs WHERE owner = ?1 AND idempotency_key = ?2"),
                        params![job.owner, key],
                        job_from_row,
                    )
                    .optional()?;
                if let Some(j) = existing {
                    return Ok(Inserted::Existing(j));
                }
            }
            let queued: usize = tx.query_row("SELECT count(*) FROM jobs WHERE state = 'queued'", [], |r| r.get(0))?;
            if queued >= capacity {
                return Ok(Inserted::QueueFull);
            }
            let progress = Progress { phase: "queued".into(), ..Default::default() };
            tx.execute(
                "INSERT INTO jobs (id, kind, state, owner, created_at, request, progress, idempotency_key, spool, authority, seal, team, host)
                 VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    id,
                    job.kind.as_str(),
                    job.owner,
                    now(),
                    job.request.to_string(),
                    serde_json::to_string(&progress).unwrap_or_default(),
                    job.idempotency_key,
                    job.spool,
                    job.authority.as_str(),
                    job.seal,
                    job.team,
                    job.host,
                ],
            )?;
            tx.execute(
                "INSERT INTO job_events (job_id, seq, event, data) VALUES (?1, 1, 'state', ?2)",
                params![id, serde_json::json!({"state": "queued"}).to_string()],
            )?;
            let j = get_job(&tx, &id)?.ok_or_else(|| StoreError::Corrupt("inserted job vanished".into()))?;
            tx.commit()?;
            Ok(Inserted::New(j))
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| Ok(get_job(conn, &id)?)).await
    }

    async fn find_idempotent(&self, owner: &str, key: &str) -> Result<Option<Job>, StoreError> {
        let (owner, key) = (owner.to_string(), key.to_string());
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {COLUMNS} FROM jobs WHERE owner = ?1 AND idempotency_key = ?2"),
                    params![owner, key],
                    job_from_row,
                )
                .optional()?)
        })
        .await
    }

    async fn list(&self, f: JobFilter) -> Result<(Vec<Job>, bool), StoreError> {
        self.read(move |conn| {
            let mut sql = format!("SELECT {COLUMNS} FROM jobs WHERE 1=1");
            let mut args: Vec<String> = Vec::new();
            if let Some(o) = f.owner {
                args.push(o);
                sql.push_str(&format!(" AND owner = ?{}", args.len()));
            }
            if let Some(t) = f.team {
                args.push(t);
                sql.push_str(&format!(" AND COALESCE(team, '{DEFAULT_TEAM}') = ?{}", args.len()));
            }
            if let Some(h) = f.host {
                args.push(h);
                let n = args.len();
                match f.host_is_default {
                    true => sql.push_str(&format!(" AND (host = ?{n} OR host IS NULL)")),
                    false => sql.push_str(&format!(" AND host = ?{n}")),
                }
            }
            if let Some(s) = f.state {
                args.push(s.as_str().into());
                sql.push_str(&format!(" AND state = ?{}", args.len()));
            }
            if let Some(k) = f.kind {
                args.push(k.as_str().into());
                sql.push_str(&format!(" AND kind = ?{}", args.len()));
            }
            if let Some(b) = f.before {
                args.push(b);
                sql.push_str(&format!(" AND id < ?{}", args.len()));
            }
            sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", f.limit));
            let mut stmt = conn.prepare(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
            let (mut jobs, mut bytes) = (Vec::new(), 0usize);
            while let Some(row) = rows.next()? {
                let job = job_from_row(row)?;
                bytes += job.request.to_string().len() + job.result.as_ref().map_or(0, |r| r.to_string().len()) + 512;
                jobs.push(job);
                if f.max_bytes > 0 && bytes >= f.max_bytes && jobs.len() < f.limit {
                    return Ok((jobs, true));
                }
            }
            Ok((jobs, false))
        })
        .await
    }

    async fn claim_next(&self, kind: JobKind, host: &str, is_default: bool, limit: usize) -> Result<Option<Job>, StoreError> {
        let host = host.to_string();
        self.with(move |conn| {
            // One writer: the count and the claim cannot interleave with another claim.
            let running: i64 = conn.query_row(
                "SELECT count(*) FROM jobs WHERE state = 'running' AND kind = ?1 AND (host = ?2 OR (?3 AND host IS NULL))",
                params![kind.as_str(), host, is_default],
                |r| r.get(0),
            )?;
            if running as usize >= limit {
                return Ok(None);
            }
            let id: Option<String> = conn
                .query_row(
                    "UPDATE jobs SET state = 'running', started_at = ?2
                     WHERE id = (SELECT id FROM jobs
                                 WHERE state = 'queued' AND kind = ?1 AND (host = ?3 OR (?4 AND host IS NULL))
                                 ORDER BY id LIMIT 1)
                       AND state = 'queued'
                     RETURNING id",
                    params![kind.as_str(), now(), host, is_default],
                    |r| r.get(0),
                )
                .optional()?;
            match id {
                Some(id) => Ok(get_job(conn, &id)?),
                None => Ok(None),
            }
        })
        .await
    }

    async fn transition(
        &self,
        id: &str,
        from: JobState,
        to: JobState,
        result: Option<Value>,
        error: Option<JobError>,
    ) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with(move |conn| {
            let finished = to.is_terminal().then(now);
            let n = conn.execute(
                "UPDATE jobs SET state = ?3, finished_at = COALESCE(?4, finished_at),
                        result = COALESCE(?5, result), error = COALESCE(?6, error)
                 WHERE id = ?1 AND state = ?2",
                params![
                    id,
                    from.as_str(),
                    to.as_str(),
                    finished,
                    result.map(|r| r.to_string()),
                    error.map(|e| serde_json::to_string(&e).unwrap_or_default()),
                ],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn set_progress(&self, id: &str, progress: &Progress) -> Result<(), StoreError> {
        let id = id.to_string();
        let p = serde_json::to_string(progress).unwrap_or_default();
        self.with(move |conn| {
            conn.execute("UPDATE jobs SET progress = ?2 WHERE id = ?1", params![id, p])?;
            Ok(())
        })
        .await
    }

    async fn set_result(&self, id: &str, result: &Value) -> Result<(), StoreError> {
        let (id, r) = (id.to_string(), result.to_string());
        self.with(move |conn| {
            conn.execute("UPDATE jobs SET result = ?2 WHERE id = ?1 AND state = 'running'", params![id, r])?;
            Ok(())
        })
        .await
    }

    async fn append_event(&self, id: &str, event: EventName, data: Value) -> Result<JobEvent, StoreError> {
        let id = id.to_string();
        self.with(move |conn| Ok(append(conn, &id, event, data)?)).await
    }

    async fn finish(&self, id: &str, end: JobEnd) -> Result<Option<Finished>, StoreError> {
        let id = id.to_string();
        let JobEnd { from, to, result, error, events } = end;
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let Some((progress, spool)) = tx
                .query_row(
                    "UPDATE jobs SET state = ?3, finished_at = ?4,
                            result = COALESCE(?5, result), error = COALESCE(?6, error)
                     WHERE id = ?1 AND state = ?2
                     RETURNING progress, spool",
                    params![
                        id,
                        from.as_str(),
                        to.as_str(),
                        now(),
                        result.map(|r| r.to_string()),
                        error.map(|e| serde_json::to_string(&e).unwrap_or_default()),
                    ],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
                )
                .optional()?
            else {
                return Ok(None);
            };
            let mut progress: Progress = serde_json::from_str(&progress).unwrap_or_default();
            progress.phase = "done".into();
            tx.execute(
                "UPDATE jobs SET progress = ?2 WHERE id = ?1",
                params![id, serde_json::to_string(&progress).unwrap_or_default()],
            )?;
            let mut stored = Vec::with_capacity(events.len());
            for (name, data) in events {
                stored.push(append(&tx, &id, name, data)?);
            }
            tx.commit()?;
            Ok(Some(Finished { events: stored, spool }))
        })
        .await
    }

    async fn events_after(&self, id: &str, after: u64, limit: usize) -> Result<Vec<JobEvent>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, event, data FROM job_events WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![id, after, limit as i64], |r| event_from_row(&id, r))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn last_event(&self, id: &str) -> Result<Option<JobEvent>, StoreError> {
        let id = id.to_string();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT seq, event, data FROM job_events WHERE job_id = ?1 ORDER BY seq DESC LIMIT 1",
                    [&id],
                    |r| event_from_row(&id, r),
                )
                .optional()?)
        })
        .await
    }

    async fn delete_finished(&self, id: &str) -> Result<Option<Option<String>>, StoreError> {
        let id = id.to_string();
        self.with(move |conn| {
            let tx = conn.transaction()?;
            let spool: Option<Option<String>> = tx
                .query_row(
                    "DELETE FROM jobs WHERE id = ?1 AND state NOT IN ('queued', 'running') RETURNING spool",
                    [&id],
                    |r| r.get(0),
                )
                .optional()?;
            if spool.is_some() {
                tx.execute("DELETE FROM job_events WHERE job_id = ?1", [&id])?;
            }
            tx.commit()?;
            Ok(spool)
        })
        .await
    }

    async fn delete_finished_before(&self, cutoff: &str) -> Result<usize, StoreError> {
        let cutoff = cutoff.to_string();
        self.in_batches(move |conn| {
            let tx = conn.transaction()?;
            let ids: Vec<String> = {
                let mut stmt =
                    tx.prepare("SELECT id FROM jobs WHERE finished_at < ?1 AND state NOT IN ('queued', 'running') LIMIT ?2")?;
                stmt.query_map(params![cutoff, SWEEP_BATCH as i64], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
            };
            for id in &ids {
                tx.execute("DELETE FROM job_events WHERE job_id = ?1", [id])?;
                tx.execute("DELETE FROM jobs WHERE id = ?1", [id])?;
            }
            tx.commit()?;
            Ok(ids.len())
        })
        .await
    }

    async fn orphans(&self) -> Result<Vec<super::Orphan>, StoreError> {
        // One process per file: at start, whatever is `running` was the last process's.
        self.read(|conn| {
            let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM jobs WHERE state = 'running' ORDER BY id"))?;
            let rows = stmt.query_map([], job_from_row)?;
            Ok(rows.map(|j| j.map(|job| super::Orphan { job, replica: None })).collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn count_queued(&self) -> Result<usize, StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT count(*) FROM jobs WHERE state = 'queued'", [], |r| r.get(0))?))
            .await
    }

    async fn count_by_kind_state(&self) -> Result<Vec<(String, String, String, u64)>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT kind, state, COALESCE(host, ''), count(*) FROM jobs GROUP BY kind, state, host")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? as u64)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO health (id, checked_at) VALUES (1, ?1) ON CONFLICT(id) DO UPDATE SET checked_at = ?1",
                [now()],
            )?;
            Ok(())
        })
        .await
    }

    async fn live_spools(&self) -> Result<Vec<String>, StoreError> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare("SELECT spool FROM jobs WHERE spool IS NOT NULL AND state IN ('queued', 'running')")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn record(&self, r: AuditRecord) -> Result<(), StoreError> {
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO audit (id, at, subject, role, action, target, outcome, status, code, job_id, client, request_id, team, host)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    r.id,
                    r.at,
                    r.subject,
                    r.role,
                    r.action,
                    r.target,
                    r.outcome,
                    r.status,
                    r.code,
                    r.job_id,
                    r.client,
                    r.request_id,
                    r.team,
                    r.host
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn prune_before(&self, cutoff: &str) -> Result<usize, StoreError> {
        let cutoff = cutoff.to_string();
        self.in_batches(move |conn| {
            Ok(conn.execute(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ?1 LIMIT ?2)",
                params![cutoff, SWEEP_BATCH as i64],
            )?)
        })
        .await
    }

    async fn query(&self, f: AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        self.read(move |conn| {
            let mut sql = String::from(
                "SELECT id, at, subject, role, action, target, outcome, status, code, job_id, client, request_id, team, host FROM audit WHERE 1=1",
            );
            let mut args: Vec<String> = Vec::new();
            for (col, v) in [("subject", f.subject), ("outcome", f.outcome), ("action", f.action), ("job_id", f.job_id)] {
                if let Some(v) = v {
                    args.push(v);
                    sql.push_str(&format!(" AND {col} = ?{}", args.len()));
                }
            }
            if let Some(b) = f.before {
                args.push(b);
                sql.push_str(&format!(" AND id < ?{}", args.len()));
            }
            sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", f.limit));
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok(AuditRecord {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    subject: r.get(2)?,
                    role: r.get(3)?,
                    action: r.get(4)?,
                    target: r.get(5)?,
                    outcome: r.get(6)?,
                    status: r.get(7)?,
                    code: r.get(8)?,
                    job_id: r.get(9)?,
                    client: r.get(10)?,
                    request_id: r.get(11)?,
                    team: r.get(12)?,
                    host: r.get(13)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::new_id;
    use crate::store::suite::new_job;


    #[tokio::test]
    async fn each_host_has_its_own_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let Inserted::New(on_a) = store.insert(&new_id(), new_job("alice", None), 10).await.unwrap() else { panic!() };
        let Inserted::New(on_b) = store.insert(&new_id(), NewJob { host: "b".into(), ..new_job("alice", None) }, 10).await.unwrap() else { panic!() };
        assert_eq!(on_b.host, "b");
        // A row from before jobs had a host belongs to the default host.
        let old = new_id();
        store.insert(&old, new_job("alice", None), 10).await.unwrap();
        store.with({ let old = old.clone(); move |c| Ok(c.execute("UPDATE jobs SET host = NULL WHERE id = ?1", [old])?) }).await.unwrap();
        assert_eq!(store.get(&old).await.unwrap().unwrap().host, "");
        // B's queue gives B's job only, though A's is older.
        let c = store.claim_next(JobKind::Pull, "b", false, usize::MAX).await.unwrap().unwrap();
        assert_eq!(c.id, on_b.id);
        assert!(store.claim_next(JobKind::Pull, "b", false, usize::MAX).await.unwrap().is_none());
        // The default host's queue takes its own and the hostless rows; another host none of them.
        assert!(store.claim_next(JobKind::Pull, "c", false, usize::MAX).await.unwrap().is_none());
        assert_eq!(store.claim_next(JobKind::Pull, "a", true, usize::MAX).await.unwrap().unwrap().id, on_a.id);
        assert_eq!(store.claim_next(JobKind::Pull, "a", true, usize::MAX).await.unwrap().unwrap().id, old);
        // Lists filter by host; the default's includes the hostless rows.
        let list = |host: &str, host_is_default| {
            store.list(JobFilter { limit: 10, host: Some(host.into()), host_is_default, ..Default::default() })
        };
        assert_eq!(list("b", false).await.unwrap().0.len(), 1);
        assert_eq!(list("a", false).await.unwrap().0.len(), 1);
        assert_eq!(list("a", true).await.unwrap().0.len(), 2);
    }

    #[tokio::test]
    async fn passes_the_store_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(dir.path()).unwrap());
        crate::store::suite::run(store.clone(), store).await;
    }



    /// A database written before the authority column existed opens, migrates, and its
    /// rows read back and replay as they were.
    #[tokio::test]
    async fn rows_from_before_the_renovation_load_and_replay() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("berth.db")).unwrap();
            for (i, sql) in MIGRATIONS.iter().take(3).enumerate() {
                conn.execute_batch(sql).unwrap();
                conn.pragma_update(None, "user_version", i + 1).unwrap();
            }
            // Exactly what the previous release wrote for a detached run that succeeded.
            conn.execute_batch(r#"
                INSERT INTO jobs (id, kind, state, owner, created_at, started_at, finished_at, request, progress, result, error, idempotency_key, spool)
                VALUES ('01JOLDROW0000000000000000', 'run', 'succeeded', 'alice', '2026-11-30T10:00:00.000Z', '2026-11-30T10:00:01.000Z', '2026-11-30T10:00:02.000Z',
                        '{"image":"berth-test/busybox:latest","cmd":["true"],"detach":true,"auto_remove":null}',
                        '{"phase":"done","current":null,"total":null,"percent":null,"layers_done":0,"layers_total":0,"message":null}',
                        '{"container_id":"abc"}', NULL, 'k1', NULL);
                INSERT INTO job_events VALUES ('01JOLDROW0000000000000000', 1, 'state', '{"state":"queued"}');
                INSERT INTO job_events VALUES ('01JOLDROW0000000000000000', 2, 'state', '{"state":"running"}');
                INSERT INTO job_events VALUES ('01JOLDROW0000000000000000', 3, 'log', '{"stream":"stdout","text":"[berth] created container abc","container_id":"abc"}');
                INSERT INTO job_events VALUES ('01JOLDROW0000000000000000', 4, 'result', '{"container_id":"abc"}');
                INSERT INTO job_events VALUES ('01JOLDROW0000000000000000', 5, 'state', '{"state":"succeeded"}');
                INSERT INTO job_events VALUES ('01JOLDROW0000000000000000', 6, 'end', '{"state":"succeeded"}');
            "#).unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let job = store.get("01JOLDROW0000000000000000").await.unwrap().unwrap();
        assert_eq!((job.kind, job.state, job.owner.as_str()), (JobKind::Run, JobState::Succeeded, "alice"));
        assert_eq!(job.authority, None, "old rows have no recorded authority");
        assert_eq!(job.result, Some(serde_json::json!({"container_id": "abc"})));
        let spec = crate::domain::job_spec::JobSpec::from_stored(job.kind, &job.request, Role::Operator).unwrap();
        assert_eq!(spec.request_json()["image"], "berth-test/busybox:latest");
        let names: Vec<EventName> = store.events_after(&job.id, 0, 10).await.unwrap().iter().map(|e| e.event).collect();
        use EventName::*;
        assert_eq!(names, [State, State, Log, Result, State, End]);
        let again = store.find_idempotent("alice", "k1").await.unwrap().unwrap();
        assert_eq!(again.id, job.id);
        // A row from before teams is team `default`'s, for the team filter too.
        let in_team = |t: &str| JobFilter { team: Some(t.into()), limit: 10, ..Default::default() };
        assert_eq!(store.list(in_team(DEFAULT_TEAM)).await.unwrap().0.len(), 1);
        assert!(store.list(in_team("blue")).await.unwrap().0.is_empty());
    }
}
