//! The workers: one dispatcher per host and kind claims that queue's jobs and runs each
//! in its own task on the host's engine; start-up recovery, cancellation signals and
//! shutdown, each on the job's own host.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{EventData, Job, JobError, JobKind, JobSpec, JobState, Jobs, executor};
use crate::domain::identity::Role;
use crate::domain::run::RunContainerRequest;
use crate::error::ErrorCode;

/// Why a running job's token fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopReason {
    Canceled,
    Shutdown,
}

pub(super) struct Running {
    token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl Running {
    /// Stop the job; a reason given before (a user's cancel under way) stays.
    pub(super) fn stop(&self, reason: StopReason) {
        self.reason.lock().unwrap().get_or_insert(reason);
        self.token.cancel();
    }
}

impl Jobs {
    /// Recover after a restart, then start one dispatcher per host and kind.
    pub async fn start(self: &Arc<Self>) -> anyhow::Result<()> {
        self.fail_jobs_of_unknown_hosts().await?;
        // Never another live replica's: only jobs no live lease holds.
        self.recover_orphans().await?;
        self.sweep_spool().await?;
        let me = self.clone();
        super::every_hour_before(self.retention, move |cutoff| {
            let me = me.clone();
            async move {
                match me.store.delete_finished_before(&cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "finished jobs past BERTH_JOB_RETENTION forgotten"),
                    Err(e) => tracing::warn!(error = %e, "forgetting old jobs failed"),
                }
            }
        });
        for (host, kind) in self.limits.keys().cloned() {
            let me = self.clone();
            tokio::spawn(async move { me.run_dispatcher_until_stopped(host, kind).await });
        }
        Ok(())
    }

    /// Queued jobs of a host no longer in the engines file would wait forever: they fail
    /// with `host_not_found` instead.
    async fn fail_jobs_of_unknown_hosts(&self) -> anyhow::Result<()> {
        let filter = super::JobFilter { state: Some(JobState::Queued), limit: self.capacity.max(1) * 2, ..Default::default() };
        let (queued, _) = self.store.list(filter).await?;
        for job in queued.iter().filter(|j| self.engine_of(j).is_none()) {
            let err = JobError {
                code: ErrorCode::HostNotFound,
                message: format!("The job's host `{}` is not in BERTH_ENGINES_FILE any more; it was not run.", job.host),
            };
            self.finish(job, JobState::Failed, None, Some(err)).await;
        }
        Ok(())
    }

    async fn run_dispatcher_until_stopped(self: Arc<Self>, host: String, kind: JobKind) {
        let key = (host, kind);
        let limit = self.limits[&key].clone();
        let max_running = self.limit_of[&key];
        let wake = self.wake[&key].clone();
        let (host, is_default) = (key.0.as_str(), key.0 == self.default_host());
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
            match self.store.claim_next(kind, host, is_default, max_running).await {
                Ok(Some(job)) if self.stopping.is_cancelled() => {
                    // Claimed as the service stops: back to the queue, to run after the restart.
                    let _ = self.store.transition(&job.id, JobState::Running, JobState::Queued, None, None).await;
                    return;
                }
                Ok(Some(job)) => {
                    backoff = Duration::from_millis(500);
                    let labels = crate::metrics::KindLabels { kind: kind.as_str().into(), host: host.into() };
                    self.metrics.job_claims.get_or_create(&labels).inc();
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
                    tracing::error!(host, kind = kind.as_str(), error = %e, retry_in_ms = backoff.as_millis() as u64, "claiming a job failed");
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
        let started = std::time::Instant::now();
        self.emit(&job, EventData::State(JobState::Running)).await;
        let span = tracing::info_span!("job", job_id = %job.id, kind = job.kind.as_str(), owner = %job.owner, host = self.host_of(&job));
        span.in_scope(|| tracing::info!("job started"));
        // In a task of its own: a panic in an executor fails the job, not the worker.
        let outcome = match self.spec_of(&job) {
            Err(failure) => Err(failure),
            Ok(spec) => self.run_executor(&job, spec, token.clone(), &span).await,
        };
        self.running.lock().unwrap().remove(&job.id);
        self.secrets.lock().unwrap().remove(&job.id);
        self.metrics.jobs_running.dec();
        // The job reads its spooled context no more: gone before the end is visible.
        if let Some(spool) = job.spool.as_deref().filter(|_| self.is_sealed(&job)) {
            self.remove_spool(spool).await;
        }
        let stop = *reason.lock().unwrap();
        self.conclude(&job, outcome, stop).await;
        let kind = crate::metrics::KindLabels { kind: job.kind.as_str().into(), host: self.host_of(&job).into() };
        self.metrics.job_duration.get_or_create(&kind).observe(started.elapsed().as_secs_f64());
        span.in_scope(|| tracing::info!("job ended"));
    }

    /// The stored request, sealed at submit and held to the authority it was submitted
    /// with: a row changed outside Berth is refused, never run.
    fn spec_of(&self, job: &Job) -> Result<JobSpec, executor::Failure> {
        if !self.is_sealed(job) {
            span_warn(job, "refused a job row whose seal does not verify");
            let message = "The stored job does not carry a valid seal (it was written or changed outside Berth, \
                           or before jobs were sealed); it was not run. Submit it again.";
            return Err(executor::Failure::Error { code: ErrorCode::Forbidden, message: message.into(), result: None });
        }
        let authority = job.authority.unwrap_or(Role::Operator);
        JobSpec::from_stored(job.kind, &job.request, authority)
            .map_err(|e| executor::Failure::Error { code: e.code, message: e.detail, result: None })
    }

    /// The executor in a task of its own: a panic fails the job, not the worker.
    async fn run_executor(
        self: &Arc<Self>,
        job: &Job,
        spec: JobSpec,
        token: CancellationToken,
        span: &tracing::Span,
    ) -> Result<serde_json::Value, executor::Failure> {
        let Some(engine) = self.engine_of(job).cloned() else {
            let message = format!("The job's host `{}` is not in BERTH_ENGINES_FILE any more; it was not run.", job.host);
            return Err(executor::Failure::Error { code: ErrorCode::HostNotFound, message, result: None });
        };
        let task = {
            let mut ctx = executor::JobCtx::new(self.clone(), engine, job.clone(), spec, token);
            tokio::spawn(tracing::Instrument::instrument(async move { executor::run(&mut ctx).await }, span.clone()))
        };
        match task.await {
            Ok(outcome) => outcome,
            Err(e) => {
                span.in_scope(|| tracing::error!(error = %e, "the job's task panicked"));
                // An attached run's container lived only for its job: stop it (and remove
                // it when `auto_remove` said so), as the executor would have.
                if let Ok(Some(recorded)) = self.store.get(&job.id).await {
                    let me = self.clone();
                    tokio::spawn(async move { me.stop_orphan(&recorded).await });
                }
                Err(executor::Failure::Error {
                    code: ErrorCode::Internal,
                    message: "The job stopped on an internal error; the service log has the cause.".into(),
                    result: None,
                })
            }
        }
    }

    /// The terminal state an executor's outcome makes.
    async fn conclude(&self, job: &Job, outcome: Result<serde_json::Value, executor::Failure>, stop: Option<StopReason>) {
        match outcome {
            Ok(result) => self.finish(job, JobState::Succeeded, Some(result), None).await,
            Err(executor::Failure::Canceled) => match stop {
                Some(StopReason::Shutdown) => {
                    let err = JobError {
                        code: ErrorCode::Interrupted,
                        message: "The service shut down while this job was running.".into(),
                    };
                    self.finish(job, JobState::Interrupted, None, Some(err)).await
                }
                _ => self.finish(job, JobState::Canceled, None, None).await,
            },
            Err(executor::Failure::Error { code, message, result }) => {
                self.finish(job, JobState::Failed, result, Some(JobError { code, message })).await
            }
        }
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
    pub(super) async fn stop_orphan(&self, job: &Job) {
        if job.kind != JobKind::Run || !self.is_sealed(job) {
            return;
        }
        // Read, not validated: whatever the row asked, its container is ours to stop.
        let Ok(request) = serde_json::from_value::<RunContainerRequest>(job.request.clone()) else { return };
        if request.detach.unwrap_or(true) {
            return;
        }
        let auto_remove = request.auto_remove.unwrap_or(false);
        let Some(cid) = job.result.as_ref().and_then(|r| r.get("container_id")).and_then(|c| c.as_str()) else {
            return;
        };
        // The engine may not answer yet at start-up: retry, backing off, for up to an hour.
        let mut wait = Duration::from_secs(1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        loop {
            let done = self.stop_own_container(job, cid, auto_remove).await;
            match done {
                Ok(()) | Err(crate::docker::EngineError::NotFound { .. }) => return,
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

    /// Stop (or remove) an interrupted run's container. The result that names it is
    /// written while the job runs, outside the seal: act only on the container this job
    /// made, as its `berth.job` label says.
    async fn stop_own_container(&self, job: &Job, cid: &str, auto_remove: bool) -> Result<(), crate::docker::EngineError> {
        // On the job's own host; one no longer in the fleet has nothing Berth can reach.
        let Some(engine) = self.engine_of(job).cloned() else { return Ok(()) };
        let doc = engine.inspect_container(cid).await?;
        let label = doc.pointer("/Config/Labels").and_then(|l| l.get(crate::domain::scope::JOB_LABEL));
        if label.and_then(|v| v.as_str()) != Some(job.id.as_str()) {
            span_warn(job, "an interrupted run names a container it did not make; left alone");
            return Ok(());
        }
        if auto_remove {
            engine.remove_container(cid, true, true).await?;
        } else {
            engine.stop_container(cid, Some(5)).await?;
        }
        tracing::info!(job_id = %job.id, container_id = cid, "stopped the container of an interrupted run");
        Ok(())
    }

    /// Tell a running job to stop; one claimed but not yet registered stops as soon as it
    /// registers. `false` when it does not run here (it may run on another replica).
    pub(super) fn signal(&self, id: &str) -> bool {
        let running = self.running.lock().unwrap();
        match running.get(id) {
            Some(r) => {
                r.stop(StopReason::Canceled);
                true
            }
            None => {
                self.pending_cancels.lock().unwrap().insert(id.to_string());
                false
            }
        }
    }

    /// A job this replica no longer owns (its writes were fenced off): stop running it.
    pub(super) fn abandon(&self, id: &str) {
        if let Some(r) = self.running.lock().unwrap().get(id) {
            tracing::warn!(job_id = id, "another replica took this job over (this replica's lease lapsed); stopping it here");
            r.stop(StopReason::Shutdown);
        }
    }

    /// Stop taking work; give running jobs `grace` to end, then interrupt them.
    pub async fn shutdown(&self, grace: Duration) {
        self.stopping.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_ok() {
            self.store.release().await;
            return;
        }
        let ids: Vec<String> = self.running.lock().unwrap().keys().cloned().collect();
        tracing::warn!(jobs = ids.len(), "grace period over; interrupting running jobs");
        {
            let running = self.running.lock().unwrap();
            for r in running.values() {
                // A user's cancel that is under way stays a cancel.
                r.stop(StopReason::Shutdown);
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.tasks.wait()).await;
        self.store.release().await;
    }
}

fn span_warn(job: &Job, msg: &str) {
    tracing::warn!(job_id = %job.id, kind = job.kind.as_str(), owner = %job.owner, "{msg}");
}
