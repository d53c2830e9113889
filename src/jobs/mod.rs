//! The job engine: a persistent, bounded queue of builds, pulls, pushes, runs and prunes.
//!
//! Design (after Meilisearch's scheduler and crates.io's worker):
//! - A handler records the job in the [`store`] (one transaction that also enforces the
//!   queue bound and the idempotency key), then wakes the dispatcher of its kind.
//! - One dispatcher per kind claims the oldest queued job with a conditional UPDATE when a
//!   concurrency permit is free, and runs it in its own task. No polling: dispatchers
//!   sleep on a `Notify` until a job of their kind is queued.
//! - Every event gets the next per-job sequence number in the store, then goes to the
//!   [`hub`] for live subscribers; SSE replays from the store, so a reconnecting client
//!   (or one arriving after a restart) sees the whole record.
//! - Cancellation is cooperative: each running job has a `CancellationToken` that the
//!   [`executor`] `select!`s against its engine stream; dropping the stream aborts the
//!   engine call.
//! - Start-up marks rows left `running` by a dead process `interrupted`; queued rows run.
//!   Shutdown stops claiming, gives running jobs a grace period, then interrupts them.

pub mod executor;
pub mod hub;
pub mod progress;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::identity::Principal;
use crate::config::Settings;
use crate::docker::{Engine, RegistryAuth};
use crate::domain::credentials::CredentialStore;
use crate::domain::Rejection;
use crate::error::{ErrorCode, HasCode};
use crate::metrics::{JobLabels, Metrics};
pub use crate::domain::job::*;
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
            JobsError::Internal(_) => ErrorCode::Internal,
        }
    }
    fn detail(&self) -> String {
        match self {
            JobsError::Store(e) => e.detail(),
            other => other.to_string(),
        }
    }
    fn retry_after(&self) -> Option<u64> {
        match self {
            JobsError::QueueFull(_) => Some(5),
            JobsError::Store(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// Why a running job's token fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Canceled,
    Shutdown,
}

struct Running {
    token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

/// Outcome of a submission.
pub enum Submitted {
    New(Job),
    Existing(Job),
}

pub struct Jobs {
    store: Arc<dyn JobStore>,
    hub: hub::EventHub,
    engine: Arc<Engine>,
    capacity: usize,
    log_events_max: u64,
    spool_dir: PathBuf,
    credentials: CredentialStore,
    limits: HashMap<JobKind, Arc<Semaphore>>,
    wake: HashMap<JobKind, Arc<Notify>>,
    running: Mutex<HashMap<String, Running>>,
    /// Cancels that came while a job was claimed but not yet registered as running; taken
    /// under the `running` lock, so a cancel is never lost between the two.
    pending_cancels: Mutex<HashSet<String>>,
    /// Request credentials, by job id, in memory only.
    secrets: Mutex<HashMap<String, RegistryAuth>>,
    stopping: CancellationToken,
    tasks: TaskTracker,
    metrics: Arc<Metrics>,
    /// Finished jobs are forgotten this long after they end.
    retention: Duration,
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
        engine: Arc<Engine>,
        credentials: CredentialStore,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        let spool_dir = settings.data_dir.join("contexts");
        std::fs::create_dir_all(&spool_dir)?;
        let c = settings.concurrency;
        let limit = |k: JobKind| match k {
            JobKind::Build => c.build,
            JobKind::Pull => c.pull,
            JobKind::Push => c.push,
            JobKind::Run => c.run,
            JobKind::PruneImages | JobKind::PruneContainers => c.prune,
        };
        Ok(Arc::new(Self {
            store,
            hub: hub::EventHub::default(),
            engine,
            capacity: settings.queue_capacity,
            log_events_max: settings.job_log_events_max,
            spool_dir,
            credentials,
            limits: JobKind::ALL.into_iter().map(|k| (k, Arc::new(Semaphore::new(limit(k))))).collect(),
            wake: JobKind::ALL.into_iter().map(|k| (k, Arc::new(Notify::new()))).collect(),
            running: Mutex::new(HashMap::new()),
            pending_cancels: Mutex::new(HashSet::new()),
            secrets: Mutex::new(HashMap::new()),
            stopping: CancellationToken::new(),
            tasks: TaskTracker::new(),
            metrics,
            retention: settings.job_retention,
        }))
    }

    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }
    pub fn hub(&self) -> &hub::EventHub {
        &self.hub
    }
    pub fn spool_dir(&self) -> &PathBuf {
        &self.spool_dir
    }
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Recover after a restart, then start one dispatcher per kind.
    pub async fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        for id in self.store.running_ids().await? {
            let Some(job) = self.store.get(&id).await? else { continue };
            let err = JobError {
                code: ErrorCode::Interrupted,
                message: "The service stopped while this job was running; it was not resumed.".into(),
            };
            self.finish(&job, JobState::Interrupted, None, Some(err)).await;
            // In the background: a stop may take its timeout, start-up need not wait.
            let me = self.clone();
            tokio::spawn(async move { me.stop_orphan(&job).await });
        }
        self.sweep_spool().await?;
        let me = self.clone();
        every_hour_before(self.retention, move |cutoff| {
            let me = me.clone();
            async move {
                match me.store.delete_finished_before(&cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "finished jobs past BERTH_JOB_RETENTION forgotten"),
                    Err(e) => tracing::warn!(error = %e, "forgetting old jobs failed"),
                }
            }
        });
        for kind in JobKind::ALL {
            let me = self.clone();
            tokio::spawn(async move { me.run_dispatcher_until_stopped(kind).await });
        }
        Ok(())
    }

    async fn run_dispatcher_until_stopped(self: Arc<Self>, kind: JobKind) {
        let limit = self.limits[&kind].clone();
        let wake = self.wake[&kind].clone();
        let mut backoff = Duration::from_millis(500);
        loop {
            let permit = tokio::select! {
                p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = self.stopping.cancelled() => return,
            };
            // Register for a wake-up before looking, so an enqueue in between is not lost.
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.store.claim_next(kind).await {
                Ok(Some(job)) if self.stopping.is_cancelled() => {
                    // Claimed as the service stops: back to the queue, to run after the restart.
                    let _ = self.store.transition(&job.id, JobState::Running, JobState::Queued, None, None).await;
                    return;
                }
                Ok(Some(job)) => {
                    backoff = Duration::from_millis(500);
                    let me = self.clone();
                    self.tasks.spawn(async move {
                        me.execute(job).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    backoff = Duration::from_millis(500);
                    drop(permit);
                    tokio::select! {
                        _ = notified => {}
                        _ = self.stopping.cancelled() => return,
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::error!(kind = kind.as_str(), error = %e, retry_in_ms = backoff.as_millis() as u64, "claiming a job failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.stopping.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn execute(self: &Arc<Self>, job: Job) {
        let token = CancellationToken::new();
        let reason = Arc::new(Mutex::new(None));
        {
            let mut running = self.running.lock().unwrap();
            running.insert(job.id.clone(), Running { token: token.clone(), reason: reason.clone() });
            if self.pending_cancels.lock().unwrap().remove(&job.id) {
                *reason.lock().unwrap() = Some(StopReason::Canceled);
                token.cancel();
            }
        }
        self.metrics.jobs_running.inc();
        // `queued` goes out before `running`, even when this worker beat the submitter to it.
        self.publish_stored(&job).await;
        self.emit(&job, "state", json!({"state": "running"})).await;
        let span = tracing::info_span!("job", job_id = %job.id, kind = job.kind.as_str(), owner = %job.owner);
        span.in_scope(|| tracing::info!("job started"));
        // In a task of its own: a panic in an executor fails the job, not the worker.
        let task = {
            let mut ctx = executor::JobCtx::new(self.clone(), job.clone(), token.clone());
            tokio::spawn(tracing::Instrument::instrument(async move { executor::run(&mut ctx).await }, span.clone()))
        };
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(e) => {
                span.in_scope(|| tracing::error!(error = %e, "the job's task panicked"));
                Err(executor::Failure::Error {
                    code: ErrorCode::Internal,
                    message: "The job stopped on an internal error; the service log has the cause.".into(),
                    result: None,
                })
            }
        };
        self.running.lock().unwrap().remove(&job.id);
        self.secrets.lock().unwrap().remove(&job.id);
        self.metrics.jobs_running.dec();
        let stop = *reason.lock().unwrap();
        match outcome {
            Ok(result) => self.finish(&job, JobState::Succeeded, Some(result), None).await,
            Err(executor::Failure::Canceled) => match stop {
                Some(StopReason::Shutdown) => {
                    let err = JobError {
                        code: ErrorCode::Interrupted,
                        message: "The service shut down while this job was running.".into(),
                    };
                    self.finish(&job, JobState::Interrupted, None, Some(err)).await
                }
                _ => self.finish(&job, JobState::Canceled, None, None).await,
            },
            Err(executor::Failure::Error { code, message, result }) => {
                self.finish(&job, JobState::Failed, result, Some(JobError { code, message })).await
            }
        }
        span.in_scope(|| tracing::info!("job ended"));
    }

    /// Delete spooled build contexts no queued job will read (uploads cut short by a crash).
    async fn sweep_spool(&self) -> anyhow::Result<()> {
        // By file name: the data dir may be spelled differently from one start to the next.
        let file_name = |p: &str| std::path::Path::new(p).file_name().map(|n| n.to_os_string());
        let live: HashSet<std::ffi::OsString> =
            self.store.live_spools().await?.iter().filter_map(|p| file_name(p)).collect();
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.spool_dir)?.flatten() {
            let name = entry.file_name();
            let is_ctx = name.to_string_lossy().ends_with(".ctx");
            if is_ctx && !live.contains(&name) && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed build contexts no job will read");
        }
        Ok(())
    }

    /// An attached run's container lived only for its job: after a crash, stop it (and
    /// remove it when the run asked for `auto_remove`), as a graceful stop would have.
    async fn stop_orphan(&self, job: &Job) {
        if job.kind != JobKind::Run || job.request.get("detach").and_then(|d| d.as_bool()).unwrap_or(true) {
            return;
        }
        let Some(cid) = job.result.as_ref().and_then(|r| r.get("container_id")).and_then(|c| c.as_str()) else {
            return;
        };
        let auto_remove = job.request.get("auto_remove").and_then(|a| a.as_bool()).unwrap_or(false);
        // The engine may not answer yet at start-up: retry, backing off, for up to an hour.
        let mut wait = Duration::from_secs(1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        loop {
            let done = if auto_remove {
                self.engine.remove_container(cid, true, true).await
            } else {
                self.engine.stop_container(cid, Some(5)).await
            };
            match done {
                Ok(()) | Err(crate::docker::EngineError::NotFound { .. }) => {
                    tracing::info!(job_id = %job.id, container_id = cid, "stopped the container of an interrupted run");
                    return;
                }
                Err(e) if e.is_unavailable() && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(60));
                }
                Err(e) => {
                    tracing::warn!(job_id = %job.id, container_id = cid, error = %e, "could not stop the container of an interrupted run");
                    return;
                }
            }
        }
    }

    /// Record a terminal state: the transition, then `result`/`error`, `state`, `end`.
    async fn finish(&self, job: &Job, to: JobState, result: Option<Value>, error: Option<JobError>) {
        let from = if job.state == JobState::Queued { JobState::Queued } else { JobState::Running };
        match self.store.transition(&job.id, from, to, result.clone(), error.clone()).await {
            Ok(true) => {
                let labels = JobLabels { kind: job.kind.as_str().into(), state: to.as_str().into() };
                self.metrics.jobs_finished.get_or_create(&labels).inc();
            }
            Ok(false) => return, // someone else finished it
            Err(e) => {
                tracing::error!(job_id = %job.id, error = %e, "recording the end of a job failed");
                return;
            }
        }
        let mut progress = job.progress.clone();
        if let Ok(Some(current)) = self.store.get(&job.id).await {
            progress = current.progress;
        }
        progress.phase = "done".into();
        let _ = self.store.set_progress(&job.id, &progress).await;
        if let Some(r) = result {
            self.emit(job, "result", r).await;
        }
        if let Some(e) = error {
            self.emit(job, "error", json!({"code": e.code, "message": e.message})).await;
        }
        self.emit(job, "state", json!({"state": to})).await;
        self.emit(job, "end", json!({"state": to})).await;
        if let Ok(Some(spool)) = self.store.spool(&job.id).await {
            let _ = tokio::fs::remove_file(spool).await;
        }
        self.pending_cancels.lock().unwrap().remove(&job.id);
        self.secrets.lock().unwrap().remove(&job.id);
    }

    /// Persist an event, then publish it. A store failure is logged, not fatal to the job.
    pub(crate) async fn emit(&self, job: &Job, event: &str, data: Value) {
        match self.store.append_event(&job.id, event, data).await {
            Ok(ev) => self.hub.publish(job.kind, &job.owner, ev),
            Err(e) => tracing::warn!(job_id = %job.id, event, error = %e, "storing a job event failed"),
        }
    }

    /// Queue a job. Credentials stay in memory for the job's run: put there before the
    /// row exists, so a dispatcher that claims it at once finds them. A spooled context
    /// (`new.spool`) belongs to the job from here on: deleted unless a new job took it.
    /// Done in a task of its own, so a client that goes away mid-request cannot leave a
    /// row without its secret, or a secret or a spool file without a row.
    pub async fn submit(self: &Arc<Self>, new: NewJob, secret: Option<RegistryAuth>) -> Result<Submitted, JobsError> {
        let me = self.clone();
        tokio::spawn(async move { me.submit_now(new, secret).await })
            .await
            .map_err(|e| JobsError::Internal(format!("submitting the job: {e}")))?
    }

    async fn submit_now(&self, new: NewJob, secret: Option<RegistryAuth>) -> Result<Submitted, JobsError> {
        let kind = new.kind;
        let spool = new.spool.clone();
        let id = store::new_id();
        if let Some(s) = secret {
            self.secrets.lock().unwrap().insert(id.clone(), s);
        }
        let inserted = self.store.insert(&id, new, self.capacity).await;
        if !matches!(inserted, Ok(Inserted::New(_))) {
            self.secrets.lock().unwrap().remove(&id);
            if let Some(path) = spool {
                let _ = tokio::fs::remove_file(path).await;
            }
        }
        match inserted? {
            Inserted::Existing(job) => Ok(Submitted::Existing(job)),
            Inserted::QueueFull => Err(self.queue_full()),
            Inserted::New(job) => {
                self.publish_stored(&job).await;
                self.wake[&kind].notify_one();
                Ok(Submitted::New(job))
            }
        }
    }

    /// Publish the events the store holds for a job that the hub has not sent yet.
    async fn publish_stored(&self, job: &Job) {
        if let Ok(evs) = self.store.events_after(&job.id, 0, 100).await {
            for ev in evs {
                self.hub.publish(job.kind, &job.owner, ev);
            }
        }
    }

    pub fn queue_full(&self) -> JobsError {
        JobsError::QueueFull(self.capacity)
    }

    pub(crate) fn take_secret(&self, id: &str) -> Option<RegistryAuth> {
        self.secrets.lock().unwrap().remove(id)
    }

    pub(crate) fn configured_credentials(&self, host: &str) -> Option<RegistryAuth> {
        self.credentials.for_host(host)
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub(crate) fn log_events_max(&self) -> u64 {
        self.log_events_max
    }

    /// A job the caller may see (its owner, or admin), else 404 `job_not_found`.
    pub async fn visible(&self, id: &str, who: &Principal) -> Result<Job, JobsError> {
        let not_found = || JobsError::NotFound(id.escape_debug().to_string());
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(not_found());
        }
        match self.store.get(id).await? {
            Some(job) if who.is_admin() || job.owner == who.subject => Ok(job),
            _ => Err(not_found()),
        }
    }

    /// Cancel: a queued job ends at once; a running one is told to stop and ends within
    /// seconds. Answers the job as it is after the request.
    pub async fn cancel(&self, id: &str, who: &Principal) -> Result<Job, JobsError> {
        let job = self.visible(id, who).await?;
        match job.state {
            JobState::Queued => {
                self.finish(&job, JobState::Canceled, None, None).await;
                // Lost the race to a dispatcher: it is running now; cancel that.
                if self.store.get(&job.id).await?.is_some_and(|j| j.state == JobState::Running) {
                    self.signal(&job.id);
                    self.wait_terminal(&job.id, Duration::from_secs(10)).await;
                }
            }
            JobState::Running => {
                self.signal(&job.id);
                self.wait_terminal(&job.id, Duration::from_secs(10)).await;
            }
            s => {
                return Err(JobsError::Conflict(format!("The job has already ended ({}).", s.as_str())));
            }
        }
        let now = self.store.get(&job.id).await?.unwrap_or(job);
        if now.state.is_terminal() {
            // It ended before the signal found it: nothing is left to cancel.
            self.pending_cancels.lock().unwrap().remove(&now.id);
        }
        Ok(now)
    }

    /// Tell a running job to stop; one claimed but not yet registered stops as soon as it
    /// registers.
    fn signal(&self, id: &str) {
        let running = self.running.lock().unwrap();
        match running.get(id) {
            Some(r) => {
                r.reason.lock().unwrap().get_or_insert(StopReason::Canceled);
                r.token.cancel();
            }
            None => {
                self.pending_cancels.lock().unwrap().insert(id.to_string());
            }
        }
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
                Ok(Ok(ev)) if ev.event == "end" => break,
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
        let job = self.visible(id, who).await?;
        if !job.state.is_terminal() {
            return Err(JobsError::Conflict(format!(
                "The job is {}; cancel it first, or wait for it to end.",
                job.state.as_str()
            )));
        }
        match self.store.delete_finished(&job.id).await? {
            Some(spool) => {
                if let Some(s) = spool {
                    let _ = tokio::fs::remove_file(s).await;
                }
                Ok(())
            }
            None => Err(JobsError::Conflict("The job is not finished.".into())),
        }
    }

    /// Stop taking work; give running jobs `grace` to end, then interrupt them.
    pub async fn shutdown(&self, grace: Duration) {
        self.stopping.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_ok() {
            return;
        }
        let ids: Vec<String> = self.running.lock().unwrap().keys().cloned().collect();
        tracing::warn!(jobs = ids.len(), "grace period over; interrupting running jobs");
        {
            let running = self.running.lock().unwrap();
            for r in running.values() {
                // A user's cancel that is under way stays a cancel.
                r.reason.lock().unwrap().get_or_insert(StopReason::Shutdown);
                r.token.cancel();
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.tasks.wait()).await;
    }
}
