//! `build`: stream the spooled context (or `remote=`) to the engine, the builder's
//! output as `log` events and its steps as `step` events (see `jobs::steps`), then the
//! extra tags.

use serde_json::{Value, json};

use super::{Failure, JobCtx, set_phase};
use crate::docker::BuildOutput;
use crate::domain::ImageRef;
use crate::domain::job::{EventData, LogSource, Progress};
use crate::domain::requests::BuildParams;
use crate::error::{ErrorCode, HasCode};
use crate::jobs::steps::StepTracker;

pub(super) async fn build(ctx: &mut JobCtx, params: &BuildParams) -> Result<Value, Failure> {
    set_phase(ctx, "building").await;

    // Only ever a file inside the spool dir (the row is sealed, and the path is checked).
    let spool = ctx.job.spool.as_deref().and_then(|p| ctx.jobs.spool_path(p));
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
    // The image carries the job's team, owner and id as build labels; stamped here, at
    // execution, not in the stored request.
    let own_labels = params.labels.len();
    let mut stamped = params.clone();
    crate::domain::scope::stamp(&mut stamped.labels, &ctx.job.team, &ctx.job.owner, Some(&ctx.job.id));
    let params = &stamped;
    let engine = ctx.engine.clone();
    let auth = super::build_credentials(ctx);
    let mut stream = Box::pin(ctx.cancellable(engine.build(params, context, &auth)).await??);
    let mut image_id: Option<String> = None;
    let mut last_line = String::new();
    let mut steps = StepTracker::new(params.labels.len(), params.labels.len() - own_labels);
    loop {
        let item = ctx.next(&mut stream).await?;
        if !matches!(item, Some(Ok(_))) {
            // The end, or an error item: a step still open ran (and maybe failed).
            if let Some(step) = steps.finish() {
                ctx.emit(EventData::Step(step)).await;
            }
        }
        match item {
            None => break,
            Some(Ok(BuildOutput::ImageId(id))) => image_id = Some(id),
            Some(Ok(BuildOutput::Log(text))) => {
                // The classic builder sends bare newlines between steps: skip those.
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    if let Some(id) = line.strip_prefix("Successfully built ") {
                        image_id.get_or_insert_with(|| id.trim().to_string());
                    }
                    last_line = line.to_string();
                    ctx.log(LogSource::Build, line).await;
                    for step in steps.line(line) {
                        ctx.emit(EventData::Step(step)).await;
                    }
                    if let Some((index, total)) = steps.started() {
                        step_progress(ctx, index, total, line).await;
                    }
                }
            }
            Some(Err(e)) if e.is_unavailable() => return Err(e.into()),
            Some(Err(e)) => {
                let code = match e.code() {
                    ErrorCode::RegistryAuthFailed => ErrorCode::RegistryAuthFailed,
                    _ => ErrorCode::DockerError,
                };
                return Err(Failure::Error {
                    code,
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
    Ok(json!({
        "image_id": image_id,
        "tags": params.tags,
        "log_events_dropped": ctx.logs_dropped(),
        "steps": steps.steps(),
        "cache_hits": steps.cache_hits(),
    }))
}

/// Progress at the start of step `index` of `total`: the steps before it are done.
async fn step_progress(ctx: &mut JobCtx, index: u32, total: u32, line: &str) {
    let p = Progress {
        phase: "building".into(),
        percent: Some(((index - 1) * 100 / total.max(1)).min(100) as u8),
        message: Some(line.chars().take(512).collect()),
        step: Some(index),
        steps_total: Some(total),
        ..Default::default()
    };
    ctx.progress(&p, true).await;
}


