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
//!
//! Timestamps are RFC 3339 text (UTC, milliseconds) and JSON is text, as in SQLite, so
//! both stores read and compare them alike.

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use serde_json::Value;
use tokio_postgres::Row;

use super::{AuditFilter, AuditLog, AuditRecord, Finished, Inserted, JobEnd, JobStore, StoreError};
use crate::domain::identity::{DEFAULT_TEAM, Role};
use crate::domain::job::{EventName, Job, JobError, JobEvent, JobFilter, JobKind, JobState, NewJob, Progress};

/// The advisory lock key of migrations ("berth" in ASCII).
const MIGRATION_LOCK: i64 = 0x0062_6572_7468;
/// The advisory lock key of inserts (the queue bound and idempotency keys).
const INSERT_LOCK: i64 = 0x0062_6572_7469;
/// Rows a retention sweep deletes per transaction.
const SWEEP_BATCH: i64 = 500;

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
];

const COLUMNS: &str = "id, kind, state, owner, created_at, started_at, finished_at, request, progress, result, error, \
                       idempotency_key, authority, seal, spool, team, host";

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
    let kind: String = row.get(1);
    let state: String = row.get(2);
    Ok(Job {
        id: row.get(0),
        kind: JobKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("kind `{kind}`")))?,
        state: JobState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("state `{state}`")))?,
        owner: row.get(3),
        created_at: row.get(4),
        started_at: row.get(5),
        finished_at: row.get(6),
        request: json_col(row, 7).unwrap_or(Value::Null),
        progress: json_col(row, 8).and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default(),
        result: json_col(row, 9),
        error: json_col(row, 10).and_then(|v| serde_json::from_value(v).ok()),
        idempotency_key: row.get(11),
        authority: row.get::<_, Option<String>>(12).and_then(|r| Role::parse(&r)),
        seal: row.get(13),
        spool: row.get(14),
        team: row.get::<_, Option<String>>(15).unwrap_or_else(|| DEFAULT_TEAM.to_string()),
        host: row.get::<_, Option<String>>(16).unwrap_or_default(),
    })
}

fn event_from_row(job_id: &str, r: &Row) -> Result<JobEvent, StoreError> {
    let name: String = r.get(1);
    let event = EventName::parse(&name).ok_or_else(|| StoreError::Corrupt(format!("event `{name}`")))?;
    let data: String = r.get(2);
    Ok(JobEvent { job_id: job_id.to_string(), seq: r.get::<_, i64>(0) as u64, event, data: serde_json::from_str(&data).unwrap_or(Value::Null) })
}

/// Append one event with the job's next sequence number (bumped under the row's lock).
async fn append(c: &impl GenericClient, id: &str, event: EventName, data: Value) -> Result<JobEvent, StoreError> {
    let row = c.query_one("UPDATE jobs SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq", &[&id]).await?;
    let seq: i64 = row.get(0);
    c.execute("INSERT INTO job_events (job_id, seq, event, data) VALUES ($1, $2, $3, $4)", &[&id, &seq, &event.as_str(), &data.to_string()])
        .await?;
    Ok(JobEvent { job_id: id.to_string(), seq: seq as u64, event, data })
}

async fn get_job(c: &impl GenericClient, id: &str) -> Result<Option<Job>, StoreError> {
    c.query_opt(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"), &[&id]).await?.as_ref().map(job_from_row).transpose()
}

/// The PostgreSQL store: a connection pool.
pub struct PostgresStore {
    pool: Pool,
}

impl PostgresStore {
    /// Connect to `url` (`postgres://user[:password]@host[:port]/db`) and migrate.
    pub async fn connect(url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| StoreError::Postgres(format!("BERTH_DATABASE_URL: {e}")))?;
        let manager = deadpool_postgres::Manager::from_config(
            config,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections)
            .wait_timeout(Some(std::time::Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Postgres(e.to_string()))?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
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
        tx.execute(
            "INSERT INTO jobs (id, kind, state, owner, created_at, request, progress, idempotency_key, spool, authority, seal, team, host, last_seq)
             VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1)",
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
            ],
        )
        .await?;
        let queued_event = serde_json::json!({"state": "queued"}).to_string();
        tx.execute("INSERT INTO job_events (job_id, seq, event, data) VALUES ($1, 1, 'state', $2)", &[&id, &queued_event]).await?;
        let j = get_job(&tx, id).await?.ok_or_else(|| StoreError::Corrupt("inserted job vanished".into()))?;
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

    async fn claim_next(&self, kind: JobKind, host: &str, is_default: bool) -> Result<Option<Job>, StoreError> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                &format!(
                    "UPDATE jobs SET state = 'running', started_at = $2
                     WHERE id = (SELECT id FROM jobs
                                 WHERE state = 'queued' AND kind = $1 AND (host = $3 OR ($4 AND host IS NULL))
                                 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
                       AND state = 'queued'
                     RETURNING {COLUMNS}"
                ),
                &[&kind.as_str(), &now(), &host, &is_default],
            )
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn transition(&self, id: &str, from: JobState, to: JobState, result: Option<Value>, error: Option<JobError>) -> Result<bool, StoreError> {
        let c = self.pool.get().await?;
        let finished = to.is_terminal().then(now);
        let result = result.map(|r| r.to_string());
        let error = error.map(|e| serde_json::to_string(&e).unwrap_or_default());
        let n = c
            .execute(
                "UPDATE jobs SET state = $3, finished_at = COALESCE($4, finished_at),
                        result = COALESCE($5, result), error = COALESCE($6, error)
                 WHERE id = $1 AND state = $2",
                &[&id, &from.as_str(), &to.as_str(), &finished, &result, &error],
            )
            .await?;
        Ok(n == 1)
    }

    async fn set_progress(&self, id: &str, progress: &Progress) -> Result<(), StoreError> {
        let p = serde_json::to_string(progress).unwrap_or_default();
        self.pool.get().await?.execute("UPDATE jobs SET progress = $2 WHERE id = $1", &[&id, &p]).await?;
        Ok(())
    }

    async fn set_result(&self, id: &str, result: &Value) -> Result<(), StoreError> {
        let r = result.to_string();
        self.pool.get().await?.execute("UPDATE jobs SET result = $2 WHERE id = $1 AND state = 'running'", &[&id, &r]).await?;
        Ok(())
    }

    async fn append_event(&self, id: &str, event: EventName, data: Value) -> Result<JobEvent, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let ev = append(&tx, id, event, data).await?;
        tx.commit().await?;
        Ok(ev)
    }

    async fn finish(&self, id: &str, end: JobEnd) -> Result<Option<Finished>, StoreError> {
        let JobEnd { from, to, result, error, events } = end;
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let result = result.map(|r| r.to_string());
        let error = error.map(|e| serde_json::to_string(&e).unwrap_or_default());
        let Some(row) = tx
            .query_opt(
                "UPDATE jobs SET state = $3, finished_at = $4,
                        result = COALESCE($5, result), error = COALESCE($6, error)
                 WHERE id = $1 AND state = $2
                 RETURNING progress, spool",
                &[&id, &from.as_str(), &to.as_str(), &now(), &result, &error],
            )
            .await?
        else {
            return Ok(None);
        };
        let progress: String = row.get(0);
        let spool: Option<String> = row.get(1);
        let mut progress: Progress = serde_json::from_str(&progress).unwrap_or_default();
        progress.phase = "done".into();
        tx.execute("UPDATE jobs SET progress = $2 WHERE id = $1", &[&id, &serde_json::to_string(&progress).unwrap_or_default()]).await?;
        let mut stored = Vec::with_capacity(events.len());
        for (name, data) in events {
            stored.push(append(&tx, id, name, data).await?);
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
    }

    async fn running_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows = self.pool.get().await?.query("SELECT id FROM jobs WHERE state = 'running' ORDER BY id", &[]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of its own on the test cluster (`BERTH_TEST_DATABASE_URL`, default the
    /// one `scripts/test-env.sh` starts), dropped when the test ends.
    pub(crate) struct TestDb {
        admin: String,
        name: String,
        pub url: String,
    }

    impl TestDb {
        pub(crate) async fn new() -> Self {
            let admin = std::env::var("BERTH_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://berth@127.0.0.1:55432/postgres".into());
            let name = format!("berth_test_{}", crate::store::new_id().to_lowercase());
            let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (scripts/test-env.sh starts it): {e}"));
            tokio::spawn(conn);
            client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
            let url = match admin.rsplit_once('/') {
                Some((base, _)) => format!("{base}/{name}"),
                None => panic!("BERTH_TEST_DATABASE_URL names no database: {admin}"),
            };
            TestDb { admin, name, url }
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            let (admin, name) = (self.admin.clone(), self.name.clone());
            // On a thread of its own: the test's runtime is shutting down.
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

    #[tokio::test]
    async fn a_database_that_is_not_there_is_a_clear_error() {
        let err = PostgresStore::connect("postgres://berth@127.0.0.1:1/nowhere", 2).await.err().expect("refused");
        assert!(matches!(err, StoreError::Postgres(_)), "{err}");
        assert!(PostgresStore::connect("not a url", 2).await.err().unwrap().to_string().contains("BERTH_DATABASE_URL"));
    }
}
