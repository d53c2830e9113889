//! Job kind -> engine calls. Each kind streams from the engine, `select!`ed against the
//! job's cancellation token, turns what it sees into events, and returns the result.
//! Success means the engine stream ended without an error item.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Job, JobKind, Progress};
use super::progress::ProgressTracker;
use super::Jobs;
use crate::docker::{BuildOutput, EngineError, LogStream, ProgressMessage, RegistryAuth};
use crate::domain::ImageRef;
use crate::domain::requests::{BuildParams, PruneContainersRequest, PruneImagesRequest, PullRequest, PushRequest};
use crate::domain::run::{PullPolicy, RunContainerRequest};
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
    pub job: Job,
    pub cancel: CancellationToken,
    logs_stored: u64,
    logs_dropped: u64,
    last_progress: Option<Instant>,
    layers: HashMap<String, (String, Instant)>,
}

impl JobCtx {
    pub fn new(jobs: Arc<Jobs>, job: Job, cancel: CancellationToken) -> Self {
        Self { jobs, job, cancel, logs_stored: 0, logs_dropped: 0, last_progress: None, layers: HashMap::new() }
    }

    async fn emit(&self, event: &str, data: Value) {
        self.jobs.emit(&self.job, event, data).await;
    }

    /// A `log` event, until the per-job cap; past it one notice, then output is dropped.
    async fn log(&mut self, stream: LogStream, text: &str) {
        let max = self.jobs.log_events_max();
        if self.logs_stored < max {
            self.logs_stored += 1;
            self.emit("log", json!({"stream": stream, "text": text})).await;
            return;
        }
        if self.logs_dropped == 0 {
            self.emit(
                "log",
                json!({"stream": stream, "text": format!(
                    "[berth] output truncated: this job stores at most {max} log events (BERTH_JOB_LOG_EVENTS_MAX); further output is dropped"
                ), "truncated": true}),
            )
            .await;
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
        self.emit("progress", serde_json::to_value(p).unwrap_or_default()).await;
    }

    /// `layer` events on a status change, else at most every `EVENT_INTERVAL` per layer.
    async fn layer(&mut self, ev: super::LayerEvent) {
        let due = match self.layers.get(&ev.id) {
            None => true,
            Some((status, at)) => *status != ev.status || at.elapsed() >= EVENT_INTERVAL,
        };
        if due {
            self.layers.insert(ev.id.clone(), (ev.status.clone(), Instant::now()));
            self.emit("layer", serde_json::to_value(&ev).unwrap_or_default()).await;
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

    fn request<T: serde::de::DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_value(self.job.request.clone())
            .map_err(|e| Failure::new(ErrorCode::Internal, format!("the stored request does not parse: {e}")))
    }

    fn logs_dropped(&self) -> u64 {
        self.logs_dropped
    }
}

pub async fn run(ctx: &mut JobCtx) -> Result<Value, Failure> {
    match ctx.job.kind {
        JobKind::Build => build(ctx).await,
        JobKind::Pull => {
            let req: PullRequest = ctx.request()?;
            let image = ImageRef::parse(&req.image).map_err(|e| Failure::new(ErrorCode::InvalidReference, e.to_string()))?;
            let auth = credentials_for(ctx, &image);
            pull(ctx, &image, req.platform.as_deref(), auth.as_ref()).await
        }
        JobKind::Push => push(ctx).await,
        JobKind::Run => run_container(ctx).await,
        JobKind::PruneImages => {
            let req: PruneImagesRequest = ctx.request()?;
            set_phase(ctx, "pruning").await;
            let engine = ctx.jobs.engine().clone();
            let report = ctx
                .cancellable(engine.prune_images(req.all, &req.filters.label, req.filters.until.as_deref()))
                .await??;
            Ok(json!({"deleted": report.deleted, "untagged": report.untagged, "space_reclaimed": report.space_reclaimed}))
        }
        JobKind::PruneContainers => {
            let req: PruneContainersRequest = ctx.request()?;
            set_phase(ctx, "pruning").await;
            let engine = ctx.jobs.engine().clone();
            let report = ctx
                .cancellable(engine.prune_containers(&req.filters.label, req.filters.until.as_deref()))
                .await??;
            Ok(json!({"deleted": report.deleted, "space_reclaimed": report.space_reclaimed}))
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

/// Registry refusals get codes of their own, so a portal can tell them apart.
fn registry_failure(e: EngineError, image: &ImageRef) -> Failure {
    if e.is_unavailable() {
        return Failure::from(e);
    }
    let msg = e.to_string();
    let lower = msg.to_ascii_lowercase();
    // Without credentials the engine says "no basic auth credentials" (pull and push).
    if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("denied")
        || lower.contains("no basic auth credentials")
    {
        return Failure::new(
            ErrorCode::RegistryAuthFailed,
            format!("The registry {} refused the credentials (or gave none): {msg}", image.registry_host()),
        );
    }
    if lower.contains("not found") || lower.contains("manifest unknown") || lower.contains("no such image") {
        return Failure::new(ErrorCode::ImageNotFound, msg);
    }
    Failure::from(e)
}

async fn build(ctx: &mut JobCtx) -> Result<Value, Failure> {
    let params: BuildParams = ctx.request()?;
    set_phase(ctx, "building").await;

    let spool = ctx.jobs.store().spool(&ctx.job.id).await.map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?;
    let context = match (&spool, &params.remote) {
        (Some(path), _) => {
            let file = tokio::fs::File::open(path).await.map_err(|e| {
                Failure::new(ErrorCode::Internal, format!("the spooled build context is gone ({e}); submit the build again"))
            })?;
            Some(tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024))
        }
        (None, Some(_)) => None,
        (None, None) => return Err(Failure::new(ErrorCode::InvalidRequest, "the build has neither a context nor `remote`")),
    };
    let engine = ctx.jobs.engine().clone();
    let mut stream = Box::pin(ctx.cancellable(engine.build(&params, context)).await??);
    let mut image_id: Option<String> = None;
    let mut last_line = String::new();
    loop {
        match ctx.next(&mut stream).await? {
            None => break,
            Some(Ok(BuildOutput::ImageId(id))) => image_id = Some(id),
            Some(Ok(BuildOutput::Log(text))) => {
                // The classic builder sends bare newlines between steps: skip those.
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    if let Some(id) = line.strip_prefix("Successfully built ") {
                        image_id.get_or_insert_with(|| id.trim().to_string());
                    }
                    last_line = line.to_string();
                    ctx.log(LogStream::Build, line).await;
                }
            }
            Some(Err(e)) if e.is_unavailable() => return Err(e.into()),
            Some(Err(e)) => {
                return Err(Failure::Error {
                    code: ErrorCode::DockerError,
                    message: format!("The build failed: {e}"),
                    result: None,
                });
            }
        }
    }
    let Some(image_id) = image_id else {
        return Err(Failure::new(
            ErrorCode::DockerError,
            format!("The build ended without an image id (last output: {last_line})"),
        ));
    };
    for extra in params.tags.iter().skip(1) {
        let r = ImageRef::parse(extra).map_err(|e| Failure::new(ErrorCode::InvalidReference, e.to_string()))?;
        engine.tag_image(&image_id, &r.repository(), r.tag_or_latest()).await?;
    }
    let image_id = if image_id.starts_with("sha256:") { image_id } else {
        engine.image_identity(&image_id).await?.map(|(id, _, _)| id).unwrap_or(image_id)
    };
    Ok(json!({"image_id": image_id, "tags": params.tags, "log_events_dropped": ctx.logs_dropped()}))
}

async fn fold_progress(
    ctx: &mut JobCtx,
    image: &ImageRef,
    phase: &str,
    stream: impl Stream<Item = Result<ProgressMessage, EngineError>>,
) -> Result<(Vec<String>, Option<String>), Failure> {
    let mut tracker = ProgressTracker::new(phase);
    let mut statuses = Vec::new();
    let mut digest = None;
    let mut stream = Box::pin(stream);
    loop {
        match ctx.next(&mut stream).await? {
            None => break,
            Some(Err(e)) => return Err(registry_failure(e, image)),
            Some(Ok(msg)) => {
                if msg.digest.is_some() {
                    digest = msg.digest.clone();
                }
                if let Some(s) = &msg.status {
                    if msg.id.is_none() {
                        statuses.push(s.clone());
                    }
                }
                if let Some(layer) = tracker.apply(&msg) {
                    ctx.layer(layer).await;
                }
                ctx.progress(&tracker.progress(), false).await;
            }
        }
    }
    ctx.progress(&tracker.progress(), true).await;
    Ok((statuses, digest))
}

async fn pull(
    ctx: &mut JobCtx,
    image: &ImageRef,
    platform: Option<&str>,
    auth: Option<&RegistryAuth>,
) -> Result<Value, Failure> {
    let engine = ctx.jobs.engine().clone();
    let tag = image.digest.clone().unwrap_or_else(|| image.tag_or_latest().to_string());
    let stream = ctx
        .cancellable(engine.pull(&image.repository(), &tag, platform, auth))
        .await?
        .map_err(|e| registry_failure(e, image))?;
    fold_progress(ctx, image, "pulling", stream).await?;
    let reference = image_reference(image);
    let (id, digests, _) = engine
        .image_identity(&reference)
        .await?
        .ok_or_else(|| Failure::new(ErrorCode::ImageNotFound, format!("{reference} is not on the engine after the pull")))?;
    let repo = image.repository();
    let digest = digests
        .iter()
        .find_map(|d| d.split_once('@').filter(|(r, _)| *r == repo).map(|(_, dg)| dg.to_string()))
        .or_else(|| digests.first().and_then(|d| d.split_once('@')).map(|(_, dg)| dg.to_string()));
    Ok(json!({"image_id": id, "digest": digest}))
}

/// `repo:tag` or `repo@digest`, as the engine names a pulled image.
fn image_reference(image: &ImageRef) -> String {
    match &image.digest {
        Some(d) => format!("{}@{d}", image.repository()),
        None => format!("{}:{}", image.repository(), image.tag_or_latest()),
    }
}

async fn push(ctx: &mut JobCtx) -> Result<Value, Failure> {
    let req: PushRequest = ctx.request()?;
    let image = ImageRef::parse(&req.image).map_err(|e| Failure::new(ErrorCode::InvalidReference, e.to_string()))?;
    let auth = credentials_for(ctx, &image);
    let engine = ctx.jobs.engine().clone();
    if engine.image_identity(&image_reference(&image)).await?.is_none() {
        return Err(Failure::new(ErrorCode::ImageNotFound, format!("No such image: {}", image_reference(&image))));
    }
    let stream = ctx
        .cancellable(engine.push(&image.repository(), image.tag_or_latest(), auth.as_ref()))
        .await?
        .map_err(|e| registry_failure(e, &image))?;
    let (statuses, aux_digest) = fold_progress(ctx, &image, "pushing", stream).await?;
    // The engine's `aux.Digest`, else its status line "<tag>: digest: sha256:… size: N".
    let digest = aux_digest.or_else(|| {
        statuses.iter().rev().find_map(|s| {
            let i = s.find("digest: ")?;
            s[i + 8..].split_whitespace().next().map(String::from)
        })
    });
    Ok(json!({"digest": digest}))
}

async fn run_container(ctx: &mut JobCtx) -> Result<Value, Failure> {
    let req: RunContainerRequest = ctx.request()?;
    // The policy was applied when the job was accepted, with the caller's role.
    let spec = req.validate(true).map_err(|e| Failure::new(e.code, e.detail))?;
    let engine = ctx.jobs.engine().clone();
    let reference = image_reference(&spec.image);
    let present = engine.image_identity(&reference).await?.is_some();
    match (spec.pull, present) {
        (PullPolicy::Always, _) | (PullPolicy::Missing, false) => {
            let auth = credentials_for(ctx, &spec.image);
            pull(ctx, &spec.image, None, auth.as_ref()).await?;
        }
        (PullPolicy::Never, false) => {
            return Err(Failure::new(
                ErrorCode::ImageNotFound,
                format!("{reference} is not on the engine and `pull` is `never`"),
            ));
        }
        _ => {}
    }
    set_phase(ctx, "creating").await;
    // Not raced against the cancel: the engine completes a create whose request was
    // dropped, which left an orphan container. Create, then honour a cancel that came
    // meanwhile by removing the container that never ran.
    let id = engine.create_container(&spec).await?;
    if ctx.cancel.is_cancelled() {
        let _ = engine.remove_container(&id, true, true).await;
        return Err(Failure::Canceled);
    }
    ctx.emit("log", json!({"stream": "stdout", "text": format!("[berth] created container {id}"), "container_id": id}))
        .await;
    // Recorded at once: a restart after a crash finds (and stops) the container by it.
    let _ = ctx.jobs.store().set_result(&ctx.job.id, &json!({"container_id": id})).await;
    if spec.detach {
        if let Err(e) = engine.start_container(&id).await {
            // A container that never started is ours to clean up, not the user's.
            let _ = engine.remove_container(&id, true, true).await;
            return Err(e.into());
        }
        set_phase(ctx, "running").await;
        return Ok(json!({"container_id": id}));
    }
    let outcome = attached_run(ctx, &id).await;
    if spec.auto_remove {
        let _ = engine.remove_container(&id, true, true).await;
    }
    let exit_code = outcome?;
    Ok(json!({"container_id": id, "exit_code": exit_code, "log_events_dropped": ctx.logs_dropped()}))
}

/// Attach, start, stream the output, and wait for the exit code. Cancel stops the
/// container (SIGTERM, SIGKILL after 2 s).
async fn attached_run(ctx: &mut JobCtx, id: &str) -> Result<i64, Failure> {
    let engine = ctx.jobs.engine().clone();
    let mut output = Box::pin(engine.attach_output(id).await?);
    engine.start_container(id).await?;
    set_phase(ctx, "running").await;
    // The engine hands over output in frames that need not end at a newline (nor at a
    // character): one `log` event per line, whatever the framing (a line longer than
    // 64 KiB is cut there).
    let mut partial = [(LogStream::Stdout, Vec::new()), (LogStream::Stderr, Vec::new())];
    loop {
        match ctx.next(&mut output).await {
            Err(Failure::Canceled) => {
                let _ = engine.stop_container(id, Some(2)).await;
                return Err(Failure::Canceled);
            }
            Err(e) => return Err(e),
            Ok(None) => break,
            Ok(Some(Ok((stream, bytes)))) => {
                let buf = &mut partial[usize::from(stream == LogStream::Stderr)].1;
                buf.extend_from_slice(&bytes);
                for line in take_lines(buf, 64 * 1024) {
                    ctx.log(stream, &line).await;
                }
            }
            Ok(Some(Err(e))) => return Err(e.into()),
        }
    }
    for (stream, rest) in partial {
        if !rest.is_empty() {
            let text = String::from_utf8_lossy(&rest);
            ctx.log(stream, text.trim_end_matches('\r')).await;
        }
    }
    match ctx.cancellable(engine.wait_exit(id)).await {
        Err(Failure::Canceled) => {
            let _ = engine.stop_container(id, Some(2)).await;
            Err(Failure::Canceled)
        }
        Err(e) => Err(e),
        Ok(r) => Ok(r?),
    }
}

/// The complete lines at the front of `buf` (without their `\n` / `\r\n`), decoded,
/// leaving an unfinished one in it; a run of `max` bytes without a newline counts as a
/// line. One pass and one shift of the buffer, whatever the number of lines.
fn take_lines(buf: &mut Vec<u8>, max: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
        let mut line = &buf[start..start + nl];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        lines.push(String::from_utf8_lossy(line).into_owned());
        start += nl + 1;
    }
    while buf.len() - start >= max {
        // Cut before a UTF-8 continuation byte, never inside a character.
        let mut cut = start + max;
        while cut > start && (buf[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        lines.push(String::from_utf8_lossy(&buf[start..cut]).into_owned());
        start = cut;
    }
    buf.drain(..start);
    lines
}

#[cfg(test)]
mod tests {
    use super::take_lines;

    #[test]
    fn lines_survive_any_chunking() {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        // "é" is split across two frames here.
        for chunk in [&b"hel"[..], b"lo\nwor", b"ld\r\n", b"\n", b"caf\xc3", b"\xa9\n", b"tail"] {
            buf.extend_from_slice(chunk);
            out.extend(take_lines(&mut buf, 1024));
        }
        assert_eq!(out, ["hello", "world", "", "café"]);
        assert_eq!(buf, b"tail");
        let mut long = "é".repeat(10).into_bytes();
        // 20 bytes, cut at 5 but never inside a character: 4-byte pieces, 4 left over.
        assert_eq!(take_lines(&mut long, 5), ["éé", "éé", "éé", "éé"]);
        assert_eq!(long, "éé".as_bytes());
        // Many short lines in one frame: all of them, in order.
        let mut many = b"x\n".repeat(20_000);
        let lines = take_lines(&mut many, 64 * 1024);
        assert_eq!(lines.len(), 20_000);
        assert!(many.is_empty());
    }
}
