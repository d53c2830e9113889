//! `berth migrate --to postgres://...`: copy the embedded SQLite store (jobs, their
//! events, the audit log) into PostgreSQL, so one Berth process can become several
//! replicas sharing a database.
//!
//! - The SQLite file is opened through [`SqliteStore::open`] first, which brings an old
//!   file's schema current; its tables are then read over a read-only connection, inside
//!   one read transaction: one consistent snapshot for the copy and its check. Stop the
//!   server first: what it writes after the snapshot is not copied.
//! - PostgreSQL is opened through [`PostgresStore::connect`] first, which applies its
//!   schema (and takes a replica lease, given up at the end). Rows go over a connection
//!   of their own, 1000 per statement (`INSERT ... SELECT FROM unnest(...)`, each its
//!   own transaction) with `ON CONFLICT DO NOTHING`: a second run copies nothing new
//!   and fails nothing. A row already there is left as it is, never updated.
//! - A job's `last_seq` (the counter its next event's number comes from) is its highest
//!   event `seq`; `replica`, `replica_gen` and `pinned` stay NULL: no replica holds it.
//!   A job that was `running` is copied as it is: the first replica to start adopts it
//!   as an orphan and ends it `interrupted`. A queued build's spooled context stays on
//!   the old machine's disk: it must be reachable at the same path for the job to run.
//! - Then every key read from SQLite is looked up in PostgreSQL; [`Report::verified`]
//!   fails unless all of them are there.

use std::fmt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use tokio_postgres::types::ToSql;

use super::{JobStore, PostgresStore, SqliteStore};
use crate::domain::identity::DEFAULT_TEAM;

/// Rows per page read from SQLite, and per statement written to PostgreSQL.
const BATCH: usize = 1000;

/// The file [`SqliteStore::open`] keeps in the data dir.
const SQLITE_FILE: &str = "berth.db";

/// Why a migration was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("`{0}` is not a PostgreSQL URL: --to (or BERTH_DATABASE_URL) takes postgres://user[:password]@host[:port]/database")]
    NotPostgres(String),
    #[error("no SQLite store at {}: --data-dir (or BERTH_DATA_DIR) names the directory that holds berth.db", .0.display())]
    NoStore(PathBuf),
    #[error("cannot reach PostgreSQL at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("reading the SQLite store: {0}")]
    Sqlite(String),
    #[error("writing to PostgreSQL: {0}")]
    Postgres(String),
    #[error("verification failed: {0}")]
    Missing(String),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sqlite(e.to_string())
    }
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        MigrateError::Postgres(e.to_string())
    }
}

/// What one table's copy read, wrote and found.
#[derive(Debug, Clone, PartialEq)]
pub struct TableReport {
    pub table: &'static str,
    /// Rows in SQLite.
    pub read: u64,
    /// Rows new to PostgreSQL.
    pub copied: u64,
    /// Rows read whose key is in PostgreSQL after the copy.
    pub present: u64,
}

impl TableReport {
    /// Rows that were in PostgreSQL before (an earlier run).
    pub fn already_there(&self) -> u64 {
        self.read - self.copied
    }
}

/// What a migration did, and what the operator should know about the jobs it moved.
#[derive(Debug)]
pub struct Report {
    /// The SQLite file read.
    pub from: PathBuf,
    /// The database written (its password hidden).
    pub to: String,
    /// `jobs`, `job_events`, `audit`.
    pub tables: Vec<TableReport>,
    /// Jobs copied `running`: the first replica to start ends them `interrupted`.
    pub running: u64,
    /// Queued jobs with a spooled build context on this machine's disk, and one such path.
    pub spooled: u64,
    pub spool_example: Option<String>,
}

impl Report {
    /// Every row read from SQLite is in PostgreSQL; else what is missing.
    pub fn verified(&self) -> Result<(), MigrateError> {
        let missing: Vec<String> = self
            .tables
            .iter()
            .filter(|t| t.present != t.read)
            .map(|t| format!("{}: {} rows in SQLite, {} of them in PostgreSQL ({} missing)", t.table, t.read, t.present, t.read - t.present))
            .collect();
        match missing.is_empty() {
            true => Ok(()),
            false => Err(MigrateError::Missing(missing.join("; "))),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Copied {} into {}:", self.from.display(), self.to)?;
        writeln!(f, "  {:<12} {:>9} {:>9} {:>14}", "table", "read", "copied", "already there")?;
        for t in &self.tables {
            writeln!(f, "  {:<12} {:>9} {:>9} {:>14}", t.table, t.read, t.copied, t.already_there())?;
        }
        match self.verified() {
            Ok(()) => writeln!(f, "Verified: every row read from SQLite is in PostgreSQL.")?,
            Err(e) => writeln!(f, "NOT verified: {e}")?,
        }
        if self.running > 0 {
            writeln!(
                f,
                "{} job(s) were running and are copied as running: the first replica to start adopts them as orphans and ends them `interrupted`.",
                self.running
            )?;
        }
        if let Some(example) = &self.spool_example {
            writeln!(
                f,
                "{} queued job(s) have a spooled build context on this machine's disk (e.g. {example}): \
                 it must be reachable at the same path from the replicas for them to run.",
                self.spooled
            )?;
        }
        Ok(())
    }
}

/// Copy the SQLite store in `data_dir` into the PostgreSQL database at `url`, then check
/// that every row read is there. Refuses a URL that is not PostgreSQL's and a data dir
/// without a store (creating nothing); a verification that fails is in the report
/// ([`Report::verified`]), so the caller can show what was copied too.
pub async fn migrate(data_dir: &Path, url: &str) -> Result<Report, MigrateError> {
    migrate_in_pages(data_dir, url, BATCH).await
}

/// [`migrate`], reading and writing `batch` rows at a time.
async fn migrate_in_pages(data_dir: &Path, url: &str, batch: usize) -> Result<Report, MigrateError> {
    let shown = redact(url);
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(MigrateError::NotPostgres(shown));
    }
    let file = data_dir.join(SQLITE_FILE);
    let from = std::path::absolute(&file).unwrap_or_else(|_| file.clone());
    if !file.is_file() {
        return Err(MigrateError::NoStore(from));
    }
    let src = open_sqlite(data_dir)?;
    let unreachable = |e: &dyn fmt::Display| MigrateError::Unreachable { url: shown.clone(), reason: e.to_string() };
    let store = PostgresStore::connect(url, 4).await.map_err(|e| unreachable(&e))?;
    let copied = match connect(url).await {
        Ok(dst) => copy_all(&src, &dst, batch).await,
        Err(e) => Err(unreachable(&e)),
    };
    store.release().await;
    let (tables, jobs) = copied?;
    Ok(Report { from, to: shown, tables, running: jobs.running, spooled: jobs.spooled, spool_example: jobs.spool_example })
}

/// What the operator must know about the jobs copied.
struct JobsToMind {
    running: u64,
    spooled: u64,
    spool_example: Option<String>,
}

/// Bring the SQLite file's schema current (through the store, then closed), and open it
/// again read-only.
fn open_sqlite(data_dir: &Path) -> Result<Connection, MigrateError> {
    let opened = SqliteStore::open(data_dir).map_err(|e| MigrateError::Sqlite(e.to_string()))?;
    drop(opened);
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Ok(Connection::open_with_flags(data_dir.join(SQLITE_FILE), flags)?)
}

/// A connection of the migration's own to `url`, its driver on a task.
async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(std::time::Duration::from_secs(10));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "the migration's PostgreSQL connection failed");
        }
    });
    Ok(client)
}

/// Copy every table from one snapshot of `src`, then count what PostgreSQL holds of it.
/// SQLite reads are local and short, so they run inline.
async fn copy_all(src: &Connection, dst: &tokio_postgres::Client, batch: usize) -> Result<(Vec<TableReport>, JobsToMind), MigrateError> {
    let snapshot = src.unchecked_transaction()?;
    let tables = tables();
    let mut reports = Vec::with_capacity(tables.len());
    for table in &tables {
        let (read, copied) = copy(table.pages(&snapshot, batch), dst).await?;
        reports.push(TableReport { table: table.name, read, copied, present: 0 });
    }
    for (table, report) in tables.iter().zip(&mut reports) {
        report.present = count_present(table.pages(&snapshot, batch), dst).await?;
    }
    let running = snapshot.query_row("SELECT count(*) FROM jobs WHERE state = 'running'", [], |r| r.get::<_, i64>(0))?;
    let (spooled, spool_example) = snapshot.query_row(
        "SELECT count(*), MIN(spool) FROM jobs WHERE state = 'queued' AND spool IS NOT NULL",
        [],
        |r| Ok((r.get::<_, i64>(0)?, r.get(1)?)),
    )?;
    Ok((reports, JobsToMind { running: running as u64, spooled: spooled as u64, spool_example }))
}

/// Copy a table a page per statement; how many rows were read, and how many were new.
async fn copy(pages: Pages<'_>, dst: &tokio_postgres::Client) -> Result<(u64, u64), MigrateError> {
    let insert = dst.prepare(&pages.table.insert_sql()).await?;
    let (mut read, mut copied) = (0, 0);
    for page in pages {
        let page = page?;
        read += page.len() as u64;
        copied += dst.execute(&insert, &Columns::of(page).params()).await?;
    }
    Ok((read, copied))
}

/// How many of a table's rows in SQLite have their key in PostgreSQL.
async fn count_present(pages: Pages<'_>, dst: &tokio_postgres::Client) -> Result<u64, MigrateError> {
    let present = dst.prepare(&pages.table.present_sql()).await?;
    let mut found = 0;
    for page in pages {
        let columns = Columns::of(page?);
        let key = columns.text.first().map(Vec::as_slice).unwrap_or_default();
        found += dst.query_one(&present, &[&key, &columns.number]).await?.get::<_, i64>(0) as u64;
    }
    Ok(found)
}

/// A table copied as rows of text columns and one integer column, in key order. Its key
/// is the first text column, with the integer when `number_in_key`.
struct Table {
    name: &'static str,
    /// The text columns, as PostgreSQL names them.
    text: &'static [&'static str],
    /// The integer column, as PostgreSQL names it.
    number: &'static str,
    number_in_key: bool,
    /// SQLite: the next page in key order, the `text` columns then the integer; `?1` and
    /// `?2`: the last key read (`?2` unused when the key is text only); `?3`: the page size.
    select: String,
}

/// The tables copied, jobs first.
fn tables() -> [Table; 3] {
    [
        Table {
            name: "jobs",
            text: &[
                "id", "kind", "state", "owner", "team", "host", "created_at", "started_at", "finished_at", "request", "progress",
                "result", "error", "idempotency_key", "spool", "authority", "seal",
            ],
            number: "last_seq",
            number_in_key: false,
            // A row from before teams has none: it is team `default`'s, which PostgreSQL
            // spells out. `last_seq`: the job's highest event seq, 0 without events.
            select: format!(
                "SELECT id, kind, state, owner, COALESCE(team, '{DEFAULT_TEAM}'), host, created_at, started_at, finished_at,
                        request, progress, result, error, idempotency_key, spool, authority, seal,
                        (SELECT COALESCE(MAX(seq), 0) FROM job_events e WHERE e.job_id = jobs.id)
                 FROM jobs WHERE id > ?1 ORDER BY id LIMIT ?3"
            ),
        },
        Table {
            name: "job_events",
            text: &["job_id", "event", "data"],
            number: "seq",
            number_in_key: true,
            select: "SELECT job_id, event, data, seq FROM job_events WHERE (job_id, seq) > (?1, ?2) ORDER BY job_id, seq LIMIT ?3"
                .into(),
        },
        Table {
            name: "audit",
            text: &["id", "at", "subject", "role", "team", "host", "action", "target", "outcome", "code", "job_id", "client", "request_id"],
            number: "status",
            number_in_key: false,
            select: "SELECT id, at, subject, role, team, host, action, target, outcome, code, job_id, client, request_id, status
                     FROM audit WHERE id > ?1 ORDER BY id LIMIT ?3"
                .into(),
        },
    ]
}

impl Table {
    /// PostgreSQL: insert a page given as one array per column, skipping rows whose key
    /// (or idempotency key) is there already. `status` arrives as a bigint and is
    /// assigned to its integer column.
    fn insert_sql(&self) -> String {
        let arrays: Vec<String> = (1..=self.text.len()).map(|i| format!("${i}::text[]")).collect();
        format!(
            "INSERT INTO {} ({}, {}) SELECT * FROM unnest({}, ${}::bigint[]) ON CONFLICT DO NOTHING",
            self.name,
            self.text.join(", "),
            self.number,
            arrays.join(", "),
            self.text.len() + 1
        )
    }

    /// PostgreSQL: how many of a page's keys (`$1`: the first text column, `$2`: the
    /// integers) are in the table.
    fn present_sql(&self) -> String {
        let also = match self.number_in_key {
            true => format!(" AND t.{} = k.n", self.number),
            false => String::new(),
        };
        format!("SELECT count(*) FROM {} t JOIN unnest($1::text[], $2::bigint[]) AS k(key, n) ON t.{} = k.key{also}", self.name, self.text[0])
    }

    /// Its rows in `src`, `size` at a time.
    fn pages<'a>(&'a self, src: &'a Connection, size: usize) -> Pages<'a> {
        Pages { src, table: self, size, after: (String::new(), i64::MIN), done: false }
    }
}

/// One row as copied: its text columns, then its integer.
struct Flat {
    text: Vec<Option<String>>,
    number: i64,
}

/// A table's rows from SQLite, a page at a time in key order (keyset paging: each page
/// starts after the last key read).
struct Pages<'a> {
    src: &'a Connection,
    table: &'a Table,
    size: usize,
    after: (String, i64),
    done: bool,
}

impl Pages<'_> {
    fn read(&self) -> rusqlite::Result<Vec<Flat>> {
        let n = self.table.text.len();
        let mut stmt = self.src.prepare_cached(&self.table.select)?;
        let rows = stmt.query_map(rusqlite::params![self.after.0, self.after.1, self.size as i64], |r| {
            Ok(Flat { text: (0..n).map(|i| r.get(i)).collect::<rusqlite::Result<_>>()?, number: r.get(n)? })
        })?;
        rows.collect()
    }
}

impl Iterator for Pages<'_> {
    type Item = rusqlite::Result<Vec<Flat>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let page = match self.read() {
            Ok(page) => page,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        self.done = page.len() < self.size;
        let last = page.last()?;
        self.after = (last.text[0].clone().unwrap_or_default(), last.number);
        Some(Ok(page))
    }
}

/// A page as PostgreSQL arrays: one per text column, then the integers.
struct Columns {
    text: Vec<Vec<Option<String>>>,
    number: Vec<i64>,
}

impl Columns {
    fn of(rows: Vec<Flat>) -> Self {
        let width = rows.first().map_or(0, |r| r.text.len());
        let mut columns = Columns { text: vec![Vec::with_capacity(rows.len()); width], number: Vec::with_capacity(rows.len()) };
        for row in rows {
            for (column, value) in columns.text.iter_mut().zip(row.text) {
                column.push(value);
            }
            columns.number.push(row.number);
        }
        columns
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.text.iter().map(|c| c as &(dyn ToSql + Sync)).chain([&self.number as &(dyn ToSql + Sync)]).collect()
    }
}

/// `url` with its password, if it has one, as `***`: for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some((userinfo, host)) = rest[..authority_end].rsplit_once('@') else { return url.to_string() };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::identity::Role;
    use crate::domain::job::{EventName, JobError, JobFilter, JobKind, JobState, NewJob, Progress};
    use crate::error::ErrorCode;
    use crate::store::postgres::tests::TestDb;
    use crate::store::{AuditFilter, AuditLog, AuditRecord, Inserted, JobEnd, new_id};

    /// Log lines as engines and builds write them: several lines, unicode, blank.
    const LOG_LINES: &[&str] = &[
        "Step 1/3 : FROM busybox\n ---> 3f57d9401f8d\n",
        "überbau — 日本語 — 🚢 ✓",
        "tab\there\r\ncarriage returns\r\n",
        "",
    ];

    /// What the populated store holds that the checks need.
    #[derive(Default)]
    struct Fixture {
        running: Vec<String>,
        /// `(owner, key, id)`.
        keyed: Vec<(String, String, String)>,
        /// A queued job with log events after its first.
        queued_with_logs: String,
    }

    /// The `i`th job: kinds, hosts, teams, owners, roles and keys varied.
    fn job(i: usize) -> NewJob {
        let kinds = [JobKind::Pull, JobKind::Build, JobKind::Run, JobKind::Push, JobKind::PruneImages];
        let kind = kinds[i % kinds.len()];
        NewJob {
            kind,
            owner: ["alice", "bob", "zoë"][i % 3].into(),
            request: json!({"image": format!("berth-test/img-{i}:latest"), "labels": {"note": "ünï ✓"}}),
            authority: [Role::Operator, Role::Admin][i % 2],
            seal: format!("seal-{i}"),
            team: if i.is_multiple_of(4) { "blue".into() } else { DEFAULT_TEAM.into() },
            host: if i.is_multiple_of(2) { "a".into() } else { "b".into() },
            idempotency_key: (i % 3 == 1).then(|| format!("key-{i}")),
            spool: (kind == JobKind::Build).then(|| format!("/var/lib/berth/spool/ctx-{i}.tar")),
        }
    }

    /// Insert the `i`th job, noting its key.
    async fn insert(store: &SqliteStore, f: &mut Fixture, i: usize) -> String {
        let new = job(i);
        let key = new.idempotency_key.clone().map(|k| (new.owner.clone(), k));
        let Inserted::New(j) = store.insert(&new_id(), new, 1000).await.unwrap() else { panic!("job {i} not inserted") };
        if let Some((owner, key)) = key {
            f.keyed.push((owner, key, j.id.clone()));
        }
        j.id
    }

    async fn logs(store: &SqliteStore, id: &str, i: usize) {
        for (n, text) in LOG_LINES.iter().enumerate().take(1 + i % LOG_LINES.len()) {
            let data = json!({"stream": if n % 2 == 0 { "stdout" } else { "stderr" }, "text": text});
            store.append_event(id, EventName::Log, data).await.unwrap();
        }
    }

    fn end(from: JobState, to: JobState, result: Option<Value>, error: Option<JobError>) -> JobEnd {
        let events = vec![(EventName::State, json!({"state": to.as_str()})), (EventName::End, json!({"state": to.as_str()}))];
        JobEnd { from, to, result, error, events }
    }

    /// 36 jobs: 24 that were claimed (succeeded with a result, failed with an error,
    /// canceled, still running), then 12 queued (some canceled there, builds spooled, some
    /// with logs), one made to look like a row from before teams, hosts and roles; and
    /// audit records.
    async fn populate(dir: &Path) -> Fixture {
        let store = SqliteStore::open(dir).unwrap();
        let mut f = Fixture::default();
        for i in 0..24 {
            let id = insert(&store, &mut f, i).await;
            let new = job(i);
            let claimed = store.claim_next(new.kind, &new.host, new.host == "a", usize::MAX).await.unwrap().unwrap();
            assert_eq!(claimed.id, id);
            let progress = Progress { phase: "pulling".into(), current: Some(10), total: Some(100), percent: Some(10), layers_done: 1, layers_total: 3, message: Some("Downloading ⬇".into()), ..Default::default() };
            store.set_progress(&id, &progress).await.unwrap();
            logs(&store, &id, i).await;
            let running = JobState::Running;
            match i % 4 {
                0 => store.finish(&id, end(running, JobState::Succeeded, Some(json!({"image_id": format!("sha256:{i}"), "tags": ["x:1"]})), None)).await,
                1 => {
                    let error = JobError { code: ErrorCode::Conflict, message: format!("job {i} failed:\nsecond line ✗") };
                    store.finish(&id, end(running, JobState::Failed, None, Some(error))).await
                }
                2 => store.finish(&id, end(running, JobState::Canceled, None, None)).await,
                _ => {
                    store.set_result(&id, &json!({"container_id": format!("c{i}")})).await.unwrap();
                    f.running.push(id);
                    continue;
                }
            }
            .unwrap()
            .expect("ended");
        }
        for i in 24..36 {
            let id = insert(&store, &mut f, i).await;
            match i % 3 {
                0 => assert!(store.finish(&id, end(JobState::Queued, JobState::Canceled, None, None)).await.unwrap().is_some()),
                1 => {
                    logs(&store, &id, 2).await;
                    f.queued_with_logs = id;
                }
                _ => {}
            }
        }
        let (queued, _) = store.list(JobFilter { limit: 1, state: Some(JobState::Queued), ..Default::default() }).await.unwrap();
        let old = rusqlite::Connection::open(dir.join(SQLITE_FILE)).unwrap();
        old.execute("UPDATE jobs SET team = NULL, host = NULL, authority = NULL, seal = NULL WHERE id = ?1", [&queued[0].id]).unwrap();
        for i in 0..5 {
            store.record(audit_record(i)).await.unwrap();
        }
        f
    }

    fn audit_record(i: usize) -> AuditRecord {
        let some = |s: &str| i.is_multiple_of(2).then(|| s.to_string());
        AuditRecord {
            id: new_id(),
            at: format!("2026-12-0{}T10:00:00.000Z", i + 1),
            subject: some("alice"),
            role: some("operator"),
            team: some("blue"),
            host: some("b"),
            action: "POST /v1/images/build".into(),
            target: Some(format!("tags=bérth:{i}")),
            outcome: ["success", "denied", "rejected", "failed", "success"][i].into(),
            status: [202, 403, 422, 500, 200][i],
            code: (i == 3).then(|| "docker_unavailable".into()),
            job_id: some("01JOB"),
            client: Some("127.0.0.1".into()),
            request_id: Some(format!("req-{i}")),
        }
    }

    /// Everything a store holds about jobs `ids` (each with the fields its JSON leaves out,
    /// and its events) and its audit log, as JSON values to compare one by one.
    async fn contents(jobs: &dyn JobStore, audit: &dyn AuditLog, ids: &[String]) -> Vec<Value> {
        let mut all = Vec::new();
        for id in ids {
            let job = jobs.get(id).await.unwrap().unwrap_or_else(|| panic!("job {id} missing"));
            let events = jobs.events_after(id, 0, 10_000).await.unwrap();
            all.push(json!({
                "job": serde_json::to_value(&job).unwrap(),
                "hidden": [job.authority, job.seal, job.spool, job.idempotency_key],
                "events": events,
            }));
        }
        for rec in audit.query(AuditFilter { limit: 10_000, ..Default::default() }).await.unwrap() {
            all.push(serde_json::to_value(rec).unwrap());
        }
        all
    }

    fn assert_same(got: &[Value], want: &[Value]) {
        assert_eq!(got.len(), want.len());
        for (got, want) in got.iter().zip(want) {
            assert_eq!(got, want);
        }
    }

    /// A populated SQLite store lands in PostgreSQL whole: every job equal (hidden fields
    /// too), its events, its key, the audit log; a second run copies nothing and changes
    /// nothing; the next event of a migrated job follows its last; the running jobs are
    /// the orphans the first replica adopts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn copies_a_sqlite_store_whole_and_again_copies_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = populate(dir.path()).await;
        let sqlite = SqliteStore::open(dir.path()).unwrap();
        let (jobs, _) = sqlite.list(JobFilter { limit: 1000, ..Default::default() }).await.unwrap();
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        assert_eq!(ids.len(), 36);
        let want = contents(&sqlite, &sqlite, &ids).await;
        let events = want.iter().filter_map(|v| v.get("events")).map(|e| e.as_array().unwrap().len() as u64).sum::<u64>();

        let db = TestDb::new().await;
        // Pages of 7 rows: every table spans several, events cross jobs within one.
        let report = migrate_in_pages(dir.path(), &db.url, 7).await.unwrap();
        report.verified().unwrap();
        let counts = |r: &Report| r.tables.iter().map(|t| (t.table, t.read, t.copied, t.present)).collect::<Vec<_>>();
        assert_eq!(counts(&report), [("jobs", 36, 36, 36), ("job_events", events, events, events), ("audit", 5, 5, 5)]);
        assert_eq!((report.running, report.spooled), (f.running.len() as u64, 2), "{report}");

        let pg = PostgresStore::connect(&db.url, 4).await.unwrap();
        let (listed, _) = pg.list(JobFilter { limit: 1000, ..Default::default() }).await.unwrap();
        assert_eq!(listed.iter().map(|j| j.id.clone()).collect::<Vec<_>>(), ids);
        assert_same(&contents(&pg, &pg, &ids).await, &want);
        for (owner, key, id) in &f.keyed {
            assert_eq!(pg.find_idempotent(owner, key).await.unwrap().map(|j| j.id).as_ref(), Some(id), "{owner}/{key}");
        }

        let again = migrate(dir.path(), &db.url).await.unwrap();
        again.verified().unwrap();
        assert_eq!(counts(&again), [("jobs", 36, 0, 36), ("job_events", events, 0, events), ("audit", 5, 0, 5)]);
        assert!(again.tables.iter().all(|t| t.already_there() == t.read));
        assert_same(&contents(&pg, &pg, &ids).await, &want);

        let last = sqlite.last_event(&f.queued_with_logs).await.unwrap().unwrap().seq;
        assert!(last > 1, "the queued job has logs after its first event");
        let next = pg.append_event(&f.queued_with_logs, EventName::Log, json!({"text": "on PostgreSQL"})).await.unwrap();
        assert_eq!(next.seq, last + 1, "last_seq was set to the job's highest seq");

        let mut adopted: Vec<String> = pg.orphans().await.unwrap().into_iter().map(|o| o.job.id).collect();
        adopted.sort();
        assert_eq!(adopted, f.running, "the running jobs, and no queued build, are the first replica's orphans");
        pg.release().await;
    }

    /// Refusals name the problem, hide the password, and create nothing.
    #[tokio::test]
    async fn refuses_a_url_that_is_not_postgres_a_missing_store_and_an_unreachable_database() {
        let dir = tempfile::tempdir().unwrap();
        let err = migrate(dir.path(), "mysql://root:hunter2@db/berth").await.unwrap_err();
        assert!(matches!(err, MigrateError::NotPostgres(_)), "{err}");
        assert!(err.to_string().contains("mysql://root:***@db/berth") && !err.to_string().contains("hunter2"), "{err}");

        let err = migrate(dir.path(), "postgres://berth@127.0.0.1:55432/postgres").await.unwrap_err();
        assert!(matches!(err, MigrateError::NoStore(_)), "{err}");
        assert!(err.to_string().contains(&dir.path().join("berth.db").display().to_string()), "{err}");
        assert!(!dir.path().join("berth.db").exists(), "no store is created");

        SqliteStore::open(dir.path()).unwrap();
        let err = migrate(dir.path(), "postgresql://berth:hunter2@127.0.0.1:1/nowhere").await.unwrap_err();
        assert!(matches!(err, MigrateError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("127.0.0.1:1") && !err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn a_report_that_misses_rows_is_not_verified() {
        let table = |table, present| TableReport { table, read: 3, copied: 2, present };
        let report = Report {
            from: "/data/berth.db".into(),
            to: "postgres://berth@db/berth".into(),
            tables: vec![table("jobs", 3), table("audit", 1)],
            running: 0,
            spooled: 0,
            spool_example: None,
        };
        let err = report.verified().unwrap_err().to_string();
        assert!(err.contains("audit: 3 rows in SQLite, 1 of them in PostgreSQL (2 missing)") && !err.contains("jobs"), "{err}");
        assert!(report.to_string().contains("NOT verified"), "{report}");
    }
}
