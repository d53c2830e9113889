//! Job spec -> engine calls. Each kind streams from the engine, `select!`ed against the
//! job's cancellation token, turns what it sees into typed events, and returns the
//! result. Success means the engine stream ended without an error item. The spec was
//! read back under the authority it was submitted with; nothing here re-checks roles.

mod build;
mod registry;
mod run;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{EventData, Job, JobSpec, Jobs, LayerEvent, LogSource, Progress};
use crate::docker::{EngineError, RegistryAuth};
use crate::domain::ImageRef;
use crate::error::{ErrorCode, HasCode};

/// How often `progress` and per-layer `layer` events are written at most.
const EVENT_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub enum Failure {
    Canceled,
    Error { code: ErrorCode, message: String, result: Option<Value> },
}

impl Failure {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure::Error { code, message: message.into(), result: None }
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::Error { code: e.code(), message: e.detail(), result: None }
    }
}

pub struct JobCtx {
    jobs: Arc<Jobs>,
    /// The engine of the job's host.
    pub engine: Arc<crate::docker::Engine>,
    pub job: Job,
    pub spec: JobSpec,
    pub cancel: CancellationToken,
    logs_stored: u64,
    logs_dropped: u64,
    log_bytes: u64,
    last_progress: Option<Instant>,
    layers: HashMap<String, (String, Instant)>,
}

impl JobCtx {
    pub fn new(jobs: Arc<Jobs>, engine: Arc<crate::docker::Engine>, job: Job, spec: JobSpec, cancel: CancellationToken) -> Self {
        Self { jobs, engine, job, spec, cancel, logs_stored: 0, logs_dropped: 0, log_bytes: 0, last_progress: None, layers: HashMap::new() }
    }

    async fn emit(&self, data: EventData) {
        self.jobs.emit(&self.job, data).await;
    }

    /// A `log` event, until the per-job caps (events and bytes); past them one notice,
    /// then output is dropped.
    async fn log(&mut self, stream: LogSource, text: &str) {
        let (max, bytes_max) = (self.jobs.log_events_max(), self.jobs.log_bytes_max());
        let bytes = self.log_bytes.saturating_add(text.len() as u64);
        if self.logs_dropped == 0 && self.logs_stored < max && bytes <= bytes_max {
            self.logs_stored += 1;
            self.log_bytes = bytes;
            self.emit(EventData::log(stream, text)).await;
            return;
        }
        if self.logs_dropped == 0 {
            let text = if self.logs_stored >= max {
                format!(
                    "[berth] output truncated: this job stores at most {max} log events (BERTH_JOB_LOG_EVENTS_MAX); further output is dropped"
                )
            } else {
                format!(
                    "[berth] output truncated: this job stores at most {bytes_max} bytes of log (BERTH_JOB_LOG_BYTES_MAX); further output is dropped"
                )
            };
            self.emit(EventData::Log { stream, text, truncated: true, container_id: None }).await;
        }
        self.logs_dropped += 1;
    }

    async fn progress(&mut self, p: &Progress, force: bool) {
        let due = self.last_progress.is_none_or(|t| t.elapsed() >= EVENT_INTERVAL);
        if !(force || due) {
            return;
        }
        self.last_progress = Some(Instant::now());
        let _ = self.jobs.store().set_progress(&self.job.id, p).await;
        self.emit(EventData::Progress(p.clone())).await;
    }

    /// `layer` events on a status change, else at most every `EVENT_INTERVAL` per layer.
    async fn layer(&mut self, ev: LayerEvent) {
        let due = match self.layers.get(&ev.id) {
            None => true,
            Some((status, at)) => *status != ev.status || at.elapsed() >= EVENT_INTERVAL,
        };
        if due {
            self.layers.insert(ev.id.clone(), (ev.status.clone(), Instant::now()));
            self.emit(EventData::Layer(ev)).await;
        }
    }

    /// The next item of an engine stream, or `Canceled`.
    async fn next<T>(&self, stream: &mut (impl Stream<Item = T> + Unpin)) -> Result<Option<T>, Failure> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(Failure::Canceled),
            item = stream.next() => Ok(item),
        }
    }

    /// A future, or `Canceled`.
    async fn cancellable<T>(&self, fut: impl std::future::Future<Output = T>) -> Result<T, Failure> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(Failure::Canceled),
            v = fut => Ok(v),
        }
    }

    fn logs_dropped(&self) -> u64 {
        self.logs_dropped
    }
}

pub async fn run(ctx: &mut JobCtx) -> Result<Value, Failure> {
    match ctx.spec.clone() {
        JobSpec::Build(params) => build::build(ctx, &params).await,
        JobSpec::Pull { request, image } => {
            let auth = credentials_for(ctx, &image);
            registry::pull(ctx, &image, request.platform.as_deref(), auth.as_ref()).await
        }
        JobSpec::Push { image, .. } => registry::push(ctx, &image).await,
        JobSpec::Run { spec, .. } => run::run_container(ctx, &spec).await,
        spec => {
            let plan = spec.prune().ok_or_else(|| Failure::new(ErrorCode::Internal, "not a prune job"))?;
            set_phase(ctx, if plan.dry_run { "planning" } else { "pruning" }).await;
            let engine = ctx.engine.clone();
            let report =
                ctx.cancellable(engine.prune(plan.target, &plan.labels, plan.until.as_deref(), plan.dry_run)).await??;
            let mut out = json!({"deleted": report.deleted, "space_reclaimed": report.space_reclaimed, "dry_run": plan.dry_run});
            if let crate::docker::PruneTarget::Images { .. } = plan.target {
                out["untagged"] = json!(report.untagged);
            }
            Ok(out)
        }
    }
}

async fn set_phase(ctx: &mut JobCtx, phase: &str) {
    let p = Progress { phase: phase.into(), ..Default::default() };
    ctx.progress(&p, true).await;
}

/// Request credentials first, then the server's for the image's registry.
fn credentials_for(ctx: &JobCtx, image: &ImageRef) -> Option<RegistryAuth> {
    ctx.jobs.take_secret(&ctx.job.id).or_else(|| ctx.jobs.configured_credentials(image.registry_host()))
}

/// A build's credentials, one per registry: the request's (`X-Registry-Config`), then
/// the server's for every registry it holds some for (the engine sends each only to its
/// own registry, as `docker build` does with the CLI's config).
fn build_credentials(ctx: &JobCtx) -> Vec<RegistryAuth> {
    let mut auth = ctx.jobs.take_secrets(&ctx.job.id);
    for configured in ctx.jobs.all_configured_credentials() {
        if !auth.iter().any(|a| a.server == configured.server) {
            auth.push(configured);
        }
    }
    auth
}

/// `repo:tag` or `repo@digest`, as the engine names a pulled image.
fn image_reference(image: &ImageRef) -> String {
    match &image.digest {
        Some(d) => format!("{}@{d}", image.repository()),
        None => format!("{}:{}", image.repository(), image.tag_or_latest()),
    }
}

