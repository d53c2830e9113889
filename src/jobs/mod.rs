//! The job engine: a persistent, bounded queue of builds, pulls, pushes, runs and prunes.
//!
//! [`Jobs`] is the one door in: submit, get, list, cancel, delete, `follow` (a job's
//! events: replay, then live, then end) and the state feed of `/v1/events`, plus the
//! build-upload slots and spool. The store and the hub are private to it.
//!
//! Design (after Meilisearch's scheduler and crates.io's worker):
//! - Submitting records the job in the store (one transaction that also enforces the
//!   queue bound and the idempotency key), then wakes the dispatcher of its kind.
//! - One dispatcher per host and kind ([`worker`]) claims the oldest queued job of its
//!   host and kind with a conditional UPDATE when one of that pair's concurrency permits
//!   is free, and runs it in its own task on its host's engine: a busy host never holds
//!   up another's queue. No polling: dispatchers sleep on a `Notify` until a job of
//!   their host and kind is queued.
//! - A job's request is typed ([`JobSpec`]) and carries the authority it was submitted
//!   with; the [`executor`] matches on it and never grants more.
//! - Every event gets the next per-job sequence number in the store, then goes to the
//!   [`hub`], which only wakes followers; [`events`] replays from the store, so a
//!   reconnecting client (or one arriving after a restart) sees the whole record.
//!   Ending a job is one store transaction (state, result or error, final progress,
//!   `result`/`error`, `state` and `end` events) with one publisher.
//! - Cancellation is cooperative: each running job has a `CancellationToken` that the
//!   executor `select!`s against its engine stream; dropping the stream aborts the call.
//! - Start-up marks rows left `running` by a dead process `interrupted`; queued rows run.
//!   Shutdown stops claiming, gives running jobs a grace period, then interrupts them.
//!
//! This layer imports the store, the engine, the domain and the config; never HTTP.

mod cluster;
pub mod events;
pub mod executor;
pub mod hub;
pub mod progress;
pub mod seal;
pub mod steps;
mod worker;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::docker::fleet::Fleet;
use crate::docker::{Engine, RegistryAuth};
use crate::domain::Rejection;
use crate::domain::credentials::CredentialStore;
use crate::domain::identity::{Principal, Role};
pub use crate::domain::job::*;
pub use crate::domain::job_spec::JobSpec;
use crate::error::{ErrorCode, HasCode};
use crate::metrics::{JobLabels, Metrics};
use crate::store::{self as store, Inserted, JobStore, StoreError};

/// What the job engine answers when it refuses or fails a request.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// No such job, or not one the caller may see.
    #[error("No job `{0}`.")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("The job queue holds its limit of {0} queued jobs; retry later.")]
    QueueFull(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error(transparent)]
    Engine(#[from] crate::docker::EngineError),
    #[error("The job's request is larger than BERTH_JOB_REQUEST_MAX ({0} bytes of JSON).")]
    TooLarge(usize),
    /// The key made job `0` from another request.
    #[error("This Idempotency-Key made job {0} from another request; use a new key for a new request.")]
    KeyReused(String),
    /// The data dir's file system has less free space than `BERTH_MIN_FREE_BYTES`.
    #[error(
        "The server's data disk has {free} bytes free, below BERTH_MIN_FREE_BYTES ({min}); nothing was queued. Retry once space is freed."
    )]
    InsufficientStorage { free: u64, min: u64 },
    #[error("{0}")]
    Internal(String),
}

impl HasCode for JobsError {
    fn code(&self) -> ErrorCode {
        match self {
            JobsError::NotFound(_) => ErrorCode::JobNotFound,
            JobsError::Conflict(_) => ErrorCode::Conflict,
            JobsError::QueueFull(_) => ErrorCode::QueueFull,
            JobsError::Store(e) => e.code(),
            JobsError::Rejected(e) => e.code(),
            JobsError::Engine(e) => e.code(),
            JobsError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            JobsError::KeyReused(_) => ErrorCode::IdempotencyKeyReused,
            JobsError::InsufficientStorage { .. } => ErrorCode::InsufficientStorage,
            JobsError::Internal(_) => ErrorCode::Internal,
        }
    }
    fn detail(&self) -> String {
        match self {
            JobsError::Store(e) => e.detail(),
            JobsError::Engine(e) => e.detail(),
            other => other.to_string(),
        }
    }
    fn retry_after(&self) -> Option<u64> {
        match self {
            JobsError::QueueFull(_) => Some(5),
            JobsError::Store(e) => e.retry_after(),
            JobsError::Engine(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// The most request and result JSON one page of `GET /v1/jobs` holds.
pub const LIST_BYTES_MAX: usize = 4 * 1024 * 1024;

/// A queue of one host and kind: its dispatcher's permits and wake-up.
type QueueKey = (String, JobKind);

/// Whether `who` may see a job of `owner` in `team`: admins all; a token with a team
/// claim its team's jobs; one without a claim (a single-team deployment) its own.
pub fn sees(who: &Principal, owner: &str, team: &str) -> bool {
    who.is_admin() || if who.team_claimed { team == who.team } else { owner == who.subject }
}

/// Outcome of a submission.
pub enum Submitted {
    New(Job),
    Existing(Job),
}

/// A job to queue: what it does, who asks and with which role, and what it holds.
pub struct Submission {
    pub spec: JobSpec,
    /// The engine it runs on: a host of the fleet the submitter may use (checked by the
    /// caller).
    pub host: String,
    pub owner: Principal,
    pub idempotency_key: Option<String>,
    /// A spooled build context, owned by the job from here on.
    pub spool: Option<PathBuf>,
    /// Request credentials: kept in memory for the job's run, never stored.
    pub secret: Option<RegistryAuth>,
    /// More request credentials, one per registry (a build's `X-Registry-Config`).
    pub registry_config: Vec<RegistryAuth>,
}

/// A build upload in progress: a slot of its subject's and one of all; given back when
/// dropped.
pub struct UploadSlot {
    _permit: OwnedSemaphorePermit,
    subject: String,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap();
        if let Some(n) = held.get_mut(&self.subject) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.subject);
            }
        }
    }
}

/// Why no upload slot was free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadsBusy {
    /// The subject holds `BERTH_MAX_UPLOADS_PER_SUBJECT` already.
    Subject,
    /// `BERTH_MAX_UPLOADS` are held in all.
    All,
}

pub struct Jobs {
    store: Arc<dyn JobStore>,
    hub: hub::EventHub,
    fleet: Arc<Fleet>,
    capacity: usize,
    log_events_max: u64,
    spool_dir: PathBuf,
    credentials: CredentialStore,
    /// Concurrency permits per host and kind (`BERTH_CONCURRENCY_*`, or the host's
    /// `concurrency` table).
    limits: HashMap<QueueKey, Arc<Semaphore>>,
    /// The same limits as numbers: a claim counts the running jobs of its host and kind
    /// in the store (across replicas) against them.
    limit_of: HashMap<QueueKey, usize>,
    /// A replica whose lease is this old is dead (`BERTH_LEASE_TTL`).
    lease_ttl: Duration,
    wake: HashMap<QueueKey, Arc<Notify>>,
    running: Mutex<HashMap<String, worker::Running>>,
    /// Cancels that came while a job was claimed but not yet registered as running; taken
    /// under the `running` lock, so a cancel is never lost between the two.
    pending_cancels: Mutex<HashSet<String>>,
    /// Request credentials, by job id, in memory only.
    secrets: Mutex<HashMap<String, Vec<RegistryAuth>>>,
    /// Build contexts being uploaded at once (`BERTH_MAX_UPLOADS`).
    uploads: Arc<Semaphore>,
    /// Uploads held per subject, and the most one may hold (`BERTH_MAX_UPLOADS_PER_SUBJECT`).
    uploads_by_subject: Arc<Mutex<HashMap<String, usize>>>,
    max_uploads_per_subject: usize,
    stopping: CancellationToken,
    tasks: TaskTracker,
    metrics: Arc<Metrics>,
    /// Finished jobs are forgotten this long after they end.
    retention: Duration,
    /// Seals job rows (see [`seal`]).
    seal_key: crate::config::SecretBytes,
    /// Largest stored request (`BERTH_JOB_REQUEST_MAX`).
    request_max: usize,
    /// Log bytes stored per job (`BERTH_JOB_LOG_BYTES_MAX`).
    log_bytes_max: u64,
    /// The named-volume rule reads it (allowed and protected volumes).
    policy: crate::domain::policy::RunPolicy,
    /// Who owns objects made outside Berth (`BERTH_UNMANAGED`), for a run's network.
    unmanaged: crate::domain::scope::Unmanaged,
    /// Free bytes the data dir's file system keeps (`BERTH_MIN_FREE_BYTES`).
    min_free_bytes: u64,
}

/// Bytes an unprivileged process may still write to the file system holding `path`
/// (`statvfs`: `f_bavail * f_frsize`).
fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `path` is a NUL-terminated string and `st` a valid `statvfs` to fill in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Run `sweep(cutoff)` now and every hour, `cutoff` being `retention` ago (RFC 3339).
pub fn every_hour_before<F, Fut>(retention: Duration, sweep: F)
where
    F: Fn(String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let ago = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(36500));
            let cutoff = chrono::Utc::now().checked_sub_signed(ago).unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
            sweep(cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)).await;
        }
    });
}

impl Jobs {
    pub fn new(
        settings: &Settings,
        store: Arc<dyn JobStore>,
        fleet: Arc<Fleet>,
        credentials: CredentialStore,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        let spool_dir = settings.data_dir.join("contexts");
        std::fs::create_dir_all(&spool_dir)?;
        let c = settings.concurrency;
        let limit = |host: &crate::docker::fleet::Host, k: JobKind| {
            let (name, default) = match k {
                JobKind::Build => ("build", c.build),
                JobKind::Pull => ("pull", c.pull),
                JobKind::Push => ("push", c.push),
                JobKind::Run => ("run", c.run),
                JobKind::PruneImages
                | JobKind::PruneContainers
                | JobKind::PruneVolumes
                | JobKind::PruneNetworks
                | JobKind::PruneBuildCache => ("prune", c.prune),
            };
            host.entry.concurrency.get(name).copied().unwrap_or(default)
        };
        let queues: Vec<(QueueKey, usize)> = fleet
            .hosts()
            .iter()
            .flat_map(|h| JobKind::ALL.iter().map(move |&k| ((h.entry.name.clone(), k), limit(h, k))))
            .collect();
        Ok(Arc::new(Self {
            store,
            hub: hub::EventHub::default(),
            fleet,
            capacity: settings.queue_capacity,
            log_events_max: settings.job_log_events_max,
            spool_dir,
            credentials,
            limits: queues.iter().map(|(q, n)| (q.clone(), Arc::new(Semaphore::new(*n)))).collect(),
            limit_of: queues.iter().cloned().collect(),
            lease_ttl: settings.lease_ttl,
            wake: queues.into_iter().map(|(q, _)| (q, Arc::new(Notify::new()))).collect(),
            running: Mutex::new(HashMap::new()),
            pending_cancels: Mutex::new(HashSet::new()),
            secrets: Mutex::new(HashMap::new()),
            uploads: Arc::new(Semaphore::new(settings.max_uploads)),
            uploads_by_subject: Arc::default(),
            max_uploads_per_subject: settings.bounds.max_uploads_per_subject,
            stopping: CancellationToken::new(),
            tasks: TaskTracker::new(),
            metrics,
            retention: settings.job_retention,
            seal_key: settings.seal_key.clone(),
            request_max: settings.bounds.job_request_max,
            log_bytes_max: settings.bounds.job_log_bytes_max,
            policy: settings.policy.clone(),
            unmanaged: settings.unmanaged,
            min_free_bytes: settings.bounds.min_free_bytes,
        }))
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where uploaded build contexts are spooled.
    pub fn spool_dir(&self) -> &PathBuf {
        &self.spool_dir
    }

    /// A build-upload slot for `subject`: one of its `BERTH_MAX_UPLOADS_PER_SUBJECT` and
    /// one of the `BERTH_MAX_UPLOADS` in all, held until the slot is dropped. One caller
    /// holding its own slots leaves the others free for everyone else.
    pub fn upload_slot(&self, subject: &str) -> Result<UploadSlot, UploadsBusy> {
        let mut held = self.uploads_by_subject.lock().unwrap();
        if held.get(subject).is_some_and(|n| *n >= self.max_uploads_per_subject) {
            return Err(UploadsBusy::Subject);
        }
        let permit = self.uploads.clone().try_acquire_owned().map_err(|_| UploadsBusy::All)?;
        *held.entry(subject.to_string()).or_insert(0) += 1;
        Ok(UploadSlot { _permit: permit, subject: subject.to_string(), held: self.uploads_by_subject.clone() })
    }

    /// 429 `queue_full` before an upload starts, when the queue has no room for its job.
    pub async fn ensure_room(&self) -> Result<(), JobsError> {
        if self.store.count_queued().await? >= self.capacity {
            return Err(self.queue_full());
        }
        Ok(())
    }

    /// 507 `insufficient_storage` when the data dir's file system has less free space
    /// than `BERTH_MIN_FREE_BYTES`: a full disk would stop the store, and the engine when
    /// they share it. Checked by every submit and while a build context is received.
    pub fn ensure_space(&self) -> Result<(), JobsError> {
        match free_bytes(&self.spool_dir) {
            Ok(free) if free < self.min_free_bytes => {
                Err(JobsError::InsufficientStorage { free, min: self.min_free_bytes })
            }
            Ok(_) => Ok(()),
            // Cannot tell: the writes themselves will say.
            Err(e) => {
                tracing::warn!(error = %e, "reading the free space of the data dir failed");
                Ok(())
            }
        }
    }

    /// Set the job gauges from the store (at each scrape): jobs by kind and state, every
    /// pair (zero included, so a series never vanishes), and the queue depth.
    pub async fn refresh_metrics(&self) -> Result<(), JobsError> {
        let counts = self.store.count_by_kind_state().await?;
        let default = self.default_host();
        let mut queued = 0;
        for host in self.fleet.hosts().iter().map(|h| h.entry.name.as_str()) {
            for kind in JobKind::ALL {
                for state in JobState::ALL {
                    let n: u64 = counts
                        .iter()
                        .filter(|(k, s, h, _)| k == kind.as_str() && s == state.as_str() && (h == host || (h.is_empty() && host == default)))
                        .map(|(_, _, _, n)| *n)
                        .sum();
                    if *state == JobState::Queued {
                        queued += n;
                    }
                    let labels = JobLabels { kind: kind.as_str().into(), state: state.as_str().into(), host: host.into() };
                    self.metrics.jobs.get_or_create(&labels).set(n as i64);
                }
            }
        }
        self.metrics.jobs_queued.set(queued as i64);
        if let Some(left) = self.store.lease_seconds_left() {
            self.metrics.lease_seconds_left.set(left);
        }
        Ok(())
    }

    /// The store's kind (`sqlite`, `postgres`) and this replica's name, if several share it.
    pub fn store_backend(&self) -> (&'static str, Option<&str>) {
        (self.store.backend(), self.store.replica())
    }

    /// Is the store writable? (for `/readyz`)
    pub async fn check_store(&self) -> Result<(), JobsError> {
        Ok(self.store.check_writable().await?)
    }

    pub fn queue_full(&self) -> JobsError {
        JobsError::QueueFull(self.capacity)
    }

    /// Queue a job. Credentials stay in memory for the job's run: put there before the
    /// row exists, so a dispatcher that claims it at once finds them. A spooled context
    /// belongs to the job from here on: deleted unless a new job took it. Done in a task
    /// of its own, so a client that goes away mid-request cannot leave a row without its
    /// secret, or a secret or a spool file without a row.
    pub async fn submit(self: &Arc<Self>, sub: Submission) -> Result<Submitted, JobsError> {
        if let Err(e) = self.ensure_space() {
            if let Some(path) = &sub.spool {
                let _ = tokio::fs::remove_file(path).await;
            }
            return Err(e);
        }
        let me = self.clone();
        tokio::spawn(async move { me.submit_now(sub).await })
            .await
            .map_err(|e| JobsError::Internal(format!("submitting the job: {e}")))?
    }

    async fn submit_now(&self, sub: Submission) -> Result<Submitted, JobsError> {
        let kind = sub.spec.kind();
        let host = sub.host;
        let Some(wake) = self.wake.get(&(host.clone(), kind)).cloned() else {
            return Err(JobsError::Internal(format!("no queue for host `{host}`")));
        };
        let spool = sub.spool.map(|p| p.to_string_lossy().into_owned());
        let request = sub.spec.request_json();
        let text = request.to_string();
        if text.len() > self.request_max {
            return Err(JobsError::TooLarge(self.request_max));
        }
        let id = store::new_id();
        let (owner, team, authority) = (sub.owner.subject.clone(), sub.owner.team.clone(), sub.owner.role.unwrap_or(Role::Viewer));
        let sealed = seal::Sealed { id: &id, owner: &owner, team: &team, kind, authority, spool: spool.as_deref(), request: &text, host: &host };
        let seal = seal::seal(&self.seal_key.0, &sealed);
        let sub_request = request.clone();
        let new = NewJob { kind, owner, team, host: host.clone(), request, authority, seal, idempotency_key: sub.idempotency_key, spool: spool.clone() };
        let secrets: Vec<RegistryAuth> = sub.secret.into_iter().chain(sub.registry_config).collect();
        if !secrets.is_empty() {
            self.secrets.lock().unwrap().insert(id.clone(), secrets);
        }
        self.hub.open(&id);
        let inserted = self.store.insert(&id, new, self.capacity).await;
        if !matches!(inserted, Ok(Inserted::New(_))) {
            self.hub.discard(&id);
            self.secrets.lock().unwrap().remove(&id);
            if let Some(path) = spool {
                let _ = tokio::fs::remove_file(path).await;
            }
        }
        match inserted? {
            // The same key with another request is a client's mistake, not a repeat.
            Inserted::Existing(job) if job.kind != kind || job.request != sub_request || self.host_of(&job) != host => {
                Err(JobsError::KeyReused(job.id))
            }
            Inserted::Existing(job) => Ok(Submitted::Existing(self.view(job))),
            Inserted::QueueFull => Err(self.queue_full()),
            Inserted::New(job) => {
                // The one publisher of `queued`: the store wrote it with the row.
                if let Ok(evs) = self.store.events_after(&job.id, 0, 1).await {
                    for ev in evs {
                        self.publish(&job, ev);
                    }
                }
                wake.notify_one();
                Ok(Submitted::New(self.view(job)))
            }
        }
    }

    /// The named-volume rule for a run's named volumes, with what the engine knows of
    /// each (labels, driver options): at submit, and again just before the create.
    /// `team`: the submitter's (a non-admin mounts only their own team's volumes).
    /// Its `network`, too: a user-defined network must be one the submitter may use
    /// (their team's, by the team rule), else `404 not_found` as if absent.
    /// `engine`: the job's host's.
    pub async fn check_run_volumes(&self, engine: &Engine, spec: &JobSpec, authority: Role, team: &str) -> Result<(), JobsError> {
        let JobSpec::Run { spec, .. } = spec else { return Ok(()) };
        for name in spec.named_volumes() {
            let facts = engine.volume_facts(&name).await?;
            self.policy.check_volume(&name, facts.as_ref(), authority >= Role::Admin, team)?;
        }
        // `host` and `container:` are host power (refused to non-admins before this);
        // `bridge`, `default` and `none` are everyone's.
        let custom = spec.network.as_deref().filter(|n| {
            !["bridge", "default", "none", "host", ""].contains(n) && !n.starts_with("container:")
        });
        if let (Some(net), true) = (custom, authority < Role::Admin) {
            let who = Principal { team: team.into(), team_claimed: true, ..Principal::new("run", Some(authority), u64::MAX) };
            let usable = match engine.inspect_network(net).await? {
                Some(n) => crate::domain::scope::access(&who, Some(&n.labels), self.unmanaged) == crate::domain::scope::Access::Act,
                None => false,
            };
            if !usable {
                return Err(crate::domain::Rejection::new(
                    crate::error::ErrorCode::NotFound,
                    format!("`network`: no such network: {net} (a run joins its own team's networks)"),
                )
                .into());
            }
        }
        Ok(())
    }

    /// The job `who` made before with `key`, if any.
    pub async fn find_idempotent(&self, who: &Principal, key: &str) -> Result<Option<Job>, JobsError> {
        Ok(self.store.find_idempotent(&who.subject, key).await?.map(|j| self.view(j)))
    }

    /// A job the caller may see (see [`sees`]), else 404 `job_not_found`; as
    /// views show it (secret values redacted).
    pub async fn get(&self, id: &str, who: &Principal) -> Result<Job, JobsError> {
        self.get_record(id, who).await.map(|j| self.view(j))
    }

    async fn get_record(&self, id: &str, who: &Principal) -> Result<Job, JobsError> {
        let not_found = || JobsError::NotFound(id.escape_debug().to_string());
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(not_found());
        }
        match self.store.get(id).await? {
            Some(job) if sees(who, &job.owner, &job.team) => Ok(job),
            _ => Err(not_found()),
        }
    }

    /// Jobs `who` may see, newest first: with a team claim their team's (`owner` filters
    /// by subject within it), without one their own, with admin anyone's (`owner` and
    /// `team` filter). A non-admin naming another owner (without a team claim) or another
    /// team is refused. A page holds at most [`LIST_BYTES_MAX`] of requests and results;
    /// `true` when that ended it early.
    pub async fn list(&self, who: &Principal, mut filter: JobFilter) -> Result<(Vec<Job>, bool), JobsError> {
        filter.max_bytes = LIST_BYTES_MAX;
        filter.host_is_default = filter.host.as_deref() == Some(self.default_host());
        if who.is_admin() {
            let (jobs, cut) = self.store.list(filter).await?;
            return Ok((jobs.into_iter().map(|j| self.view(j)).collect(), cut));
        }
        if filter.team.as_ref().is_some_and(|t| *t != who.team) {
            return Err(Rejection::new(ErrorCode::Forbidden, "Only admins may list other teams' jobs.").into());
        }
        if who.team_claimed {
            filter.team = Some(who.team.clone());
        } else {
            filter.owner = match filter.owner.take() {
                Some(o) if o != who.subject => {
                    return Err(Rejection::new(ErrorCode::Forbidden, "Only admins may list other owners' jobs.").into());
                }
                _ => Some(who.subject.clone()),
            };
        }
        let (jobs, cut) = self.store.list(filter).await?;
        Ok((jobs.into_iter().map(|j| self.view(j)).collect(), cut))
    }

    /// The last stored event of a job (a resuming follower at `end` needs nothing more).
    pub async fn last_event(&self, job: &Job) -> Result<Option<JobEvent>, JobsError> {
        Ok(self.store.last_event(&job.id).await?)
    }

    /// Cancel: a queued job ends at once; a running one is told to stop and ends within
    /// seconds. Answers the job as it is after the request.
    pub async fn cancel(&self, id: &str, who: &Principal) -> Result<Job, JobsError> {
        let job = self.get_record(id, who).await?;
        match job.state {
            JobState::Queued => {
                self.finish(&job, JobState::Canceled, None, None).await;
                // Lost the race to a dispatcher: it is running now; cancel that.
                if self.store.get(&job.id).await?.is_some_and(|j| j.state == JobState::Running) {
                    self.signal_anywhere(&job.id).await?;
                    self.wait_terminal(&job.id, Duration::from_secs(10)).await;
                }
            }
            JobState::Running => {
                self.signal_anywhere(&job.id).await?;
                self.wait_terminal(&job.id, Duration::from_secs(10)).await;
            }
            s => return Err(JobsError::Conflict(format!("The job has already ended ({s})."))),
        }
        let now = self.store.get(&job.id).await?.unwrap_or(job);
        if now.state.is_terminal() {
            // It ended before the signal found it: nothing is left to cancel.
            self.pending_cancels.lock().unwrap().remove(&now.id);
        }
        Ok(self.view(now))
    }

    /// Stop a running job here, or ask the replica that runs it to.
    async fn signal_anywhere(&self, id: &str) -> Result<(), JobsError> {
        if !self.signal(id) {
            self.store.request_cancel(id).await?;
        }
        Ok(())
    }

    async fn wait_terminal(&self, id: &str, max: Duration) {
        let mut rx = self.hub.subscribe(id);
        let deadline = tokio::time::Instant::now() + max;
        loop {
            if let Ok(Some(j)) = self.store.get(id).await {
                if j.state.is_terminal() {
                    break;
                }
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => break,
                Ok(Ok(ev)) if ev.is_end() => break,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Ok(_) => {}
            }
        }
        drop(rx);
        self.hub.release(id);
    }

    /// Forget a finished job and its events.
    pub async fn delete(&self, id: &str, who: &Principal) -> Result<(), JobsError> {
        let job = self.get_record(id, who).await?;
        if !job.state.is_terminal() {
            return Err(JobsError::Conflict(format!(
                "The job is {}; cancel it first, or wait for it to end.",
                job.state
            )));
        }
        match self.store.delete_finished(&job.id).await? {
            Some(spool) => {
                if let Some(s) = spool {
                    self.remove_spool(&s).await;
                }
                Ok(())
            }
            None => Err(JobsError::Conflict("The job is not finished.".into())),
        }
    }

    /// Where a row's spool path points, only ever inside the spool dir: a path planted
    /// in a row (`/etc/passwd`, `../x`) names nothing outside it.
    pub(crate) fn spool_path(&self, path: &str) -> Option<PathBuf> {
        let name = std::path::Path::new(path).file_name()?;
        name.to_str().is_some_and(|n| n.ends_with(".ctx")).then(|| self.spool_dir.join(name))
    }

    /// Delete a spooled context, only ever inside the spool dir.
    async fn remove_spool(&self, path: &str) {
        if let Some(path) = self.spool_path(path) {
            let _ = tokio::fs::remove_file(path).await;
        }
    }

    /// Record a terminal state: one transaction stores the transition, the final
    /// progress, the result or error and the `result`/`error`, `state`, `end` events;
    /// then they are published and the spool goes.
    async fn finish(&self, job: &Job, to: JobState, result: Option<serde_json::Value>, error: Option<JobError>) {
        let from = if job.state == JobState::Queued { JobState::Queued } else { JobState::Running };
        let mut events = Vec::new();
        if let Some(r) = &result {
            events.push(EventData::Result(r.clone()));
        }
        if let Some(e) = &error {
            events.push(EventData::Error(e.clone()));
        }
        events.push(EventData::State(to));
        events.push(EventData::End(to));
        let events = events.iter().map(|e| (e.name(), e.to_json())).collect();
        match self.store.finish(&job.id, store::JobEnd { from, to, result, error, events }).await {
            Ok(Some(done)) => {
                let labels = JobLabels { kind: job.kind.as_str().into(), state: to.as_str().into(), host: self.host_of(job).into() };
                self.metrics.jobs_finished.get_or_create(&labels).inc();
                for ev in done.events {
                    self.publish(job, ev);
                }
                if let Some(spool) = done.spool {
                    self.remove_spool(&spool).await;
                }
            }
            Ok(None) => return, // someone else finished it
            Err(e) => {
                tracing::error!(job_id = %job.id, error = %e, "recording the end of a job failed");
                return;
            }
        }
        self.pending_cancels.lock().unwrap().remove(&job.id);
        self.secrets.lock().unwrap().remove(&job.id);
    }

    /// Persist an event, then publish it. A store failure is logged, not fatal to the job.
    pub(crate) async fn emit(&self, job: &Job, data: EventData) {
        let name = data.name();
        match self.store.append_event(&job.id, name, data.to_json()).await {
            Ok(ev) => self.publish(job, ev),
            Err(StoreError::Fenced(_)) => self.abandon(&job.id),
            Err(e) => tracing::warn!(job_id = %job.id, event = name.as_str(), error = %e, "storing a job event failed"),
        }
    }

    pub(crate) fn take_secret(&self, id: &str) -> Option<RegistryAuth> {
        self.take_secrets(id).into_iter().next()
    }

    /// All the request credentials of a job (taken: they are used once).
    pub(crate) fn take_secrets(&self, id: &str) -> Vec<RegistryAuth> {
        self.secrets.lock().unwrap().remove(id).unwrap_or_default()
    }

    pub(crate) fn configured_credentials(&self, host: &str) -> Option<RegistryAuth> {
        self.credentials.for_host(host)
    }

    /// The server's credentials for every registry it holds some for.
    pub(crate) fn all_configured_credentials(&self) -> Vec<RegistryAuth> {
        self.credentials.all()
    }

    /// The name of the default host (the first of the fleet).
    pub fn default_host(&self) -> &str {
        &self.fleet.default_host().entry.name
    }

    /// The host a job runs on: rows from before jobs had a host are the default host's.
    pub fn host_of<'a>(&'a self, job: &'a Job) -> &'a str {
        if job.host.is_empty() { self.default_host() } else { &job.host }
    }

    /// The engine of a job's host; `None` for a host no longer in the fleet.
    pub(crate) fn engine_of(&self, job: &Job) -> Option<&Arc<Engine>> {
        self.fleet.get(self.host_of(job)).map(|h| &h.engine)
    }

    /// A job as the API shows it: what views never show is redacted from its request,
    /// and its host is named.
    fn view(&self, mut job: Job) -> Job {
        crate::domain::job_spec::redact_request(job.kind, &mut job.request);
        if job.host.is_empty() {
            job.host = self.default_host().to_string();
        }
        job
    }

    /// Wake the followers of a stored event.
    fn publish(&self, job: &Job, ev: JobEvent) {
        self.hub.publish(job.kind, &job.owner, &job.team, self.host_of(job), ev);
    }

    fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }

    pub(crate) fn log_events_max(&self) -> u64 {
        self.log_events_max
    }

    pub(crate) fn log_bytes_max(&self) -> u64 {
        self.log_bytes_max
    }

    /// Was this row made by this service, unchanged since?
    pub(crate) fn is_sealed(&self, job: &Job) -> bool {
        seal::verify(&self.seal_key.0, job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_sees_which_job() {
        let claimed = |sub: &str, team: &str, role| Principal { team: team.into(), team_claimed: true, ..Principal::new(sub, Some(role), u64::MAX) };
        let plain = Principal::new("alice", Some(Role::Operator), u64::MAX);
        assert!(sees(&plain, "alice", "default"));
        assert!(!sees(&plain, "bob", "default"), "without a team claim: own jobs only");
        let blue = claimed("carol", "blue", Role::Viewer);
        assert!(sees(&blue, "dave", "blue"));
        assert!(!sees(&blue, "carol", "red"), "another team's job, even one's own subject's");
        assert!(sees(&claimed("x", "red", Role::Admin), "dave", "blue"));
        assert!(sees(&Principal::new("root", Some(Role::Admin), u64::MAX), "dave", "blue"));
    }
}
