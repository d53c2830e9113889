//! `pull` and `push`: the engine's per-layer messages folded into `layer` and
//! `progress` events.

use futures_util::Stream;
use serde_json::{Value, json};

use super::{Failure, JobCtx, credentials_for, image_reference};
use crate::docker::{EngineError, ProgressMessage, RegistryAuth};
use crate::domain::ImageRef;
use crate::error::ErrorCode;
use crate::jobs::progress::ProgressTracker;

async fn fold_progress(
    ctx: &mut JobCtx,
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
            Some(Err(e)) => return Err(e.into()),
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

pub(super) async fn pull(
    ctx: &mut JobCtx,
    image: &ImageRef,
    platform: Option<&str>,
    auth: Option<&RegistryAuth>,
) -> Result<Value, Failure> {
    let engine = ctx.engine.clone();
    let tag = image.digest.clone().unwrap_or_else(|| image.tag_or_latest().to_string());
    let stream = ctx
        .cancellable(engine.pull(&image.repository(), &tag, platform, auth))
        .await?
        ?;
    fold_progress(ctx, "pulling", stream).await?;
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

pub(super) async fn push(ctx: &mut JobCtx, image: &ImageRef) -> Result<Value, Failure> {
    let auth = credentials_for(ctx, image);
    let engine = ctx.engine.clone();
    if engine.image_identity(&image_reference(image)).await?.is_none() {
        return Err(Failure::new(ErrorCode::ImageNotFound, format!("No such image: {}", image_reference(image))));
    }
    let stream = ctx
        .cancellable(engine.push(&image.repository(), image.tag_or_latest(), auth.as_ref()))
        .await?
        ?;
    let (statuses, aux_digest) = fold_progress(ctx, "pushing", stream).await?;
    // The engine's `aux.Digest`, else its status line "<tag>: digest: sha256:… size: N".
    let digest = aux_digest.or_else(|| {
        statuses.iter().rev().find_map(|s| {
            let i = s.find("digest: ")?;
            s[i + 8..].split_whitespace().next().map(String::from)
        })
    });
    Ok(json!({"digest": digest}))
}

