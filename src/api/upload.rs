//! The body of `POST /v1/images/build`: a build context, streamed to a spool file as it
//! arrives (never held in memory) and handed to the job engine with the job.
//!
//! Receiving one checks, in this order, everything that can refuse it before a byte is
//! read: the media type (415), the announced length (413), a full queue and the upload
//! slots (429), the free-space floor (507); then the bytes, cut off at
//! `BERTH_BUILD_CONTEXT_MAX` (413) or when the disk's free space falls below the floor
//! (507, checked every few MiB).

use actix_web::{HttpRequest, http::header, web};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::problem::{ApiError, ApiResult};
use crate::domain::requests::BuildParams;
use crate::error::ErrorCode;
use crate::state::AppState;

/// A build context received into the spool directory.
pub struct SpooledContext {
    file: SpoolFile,
    /// Its size in bytes.
    pub bytes: u64,
    /// `tar`, `gzip`, or `tar or gzip` (the engine detects compression itself).
    pub format: &'static str,
}

impl SpooledContext {
    /// The context of a build: none with `remote=` (the engine fetches it; a body as
    /// well is refused), else the body, received. Its size and format go into `params`.
    pub async fn for_build(
        state: &AppState,
        req: &HttpRequest,
        payload: web::Payload,
        params: &mut BuildParams,
    ) -> ApiResult<Option<Self>> {
        if params.remote.is_some() {
            refuse_body(req)?;
            return Ok(None);
        }
        let context = Self::receive(state, req, payload).await?;
        params.context_bytes = Some(context.bytes);
        params.context_format = Some(context.format.to_string());
        Ok(Some(context))
    }

    /// Receive the body of `req` into a spool file.
    pub async fn receive(state: &AppState, req: &HttpRequest, payload: web::Payload) -> ApiResult<Self> {
        let format = context_format(req)?;
        let max = state.settings.build_context_max;
        if content_length(req).is_some_and(|n| n > max) {
            return Err(too_large(max));
        }
        state.jobs.ensure_room().await?;
        state.jobs.ensure_space()?;
        let _slot = upload_slot(state)?;
        let (file, bytes) = spool(state, payload, max).await?;
        if bytes == 0 {
            return Err(ApiError::invalid("The build context is empty."));
        }
        Ok(Self { file, bytes, format })
    }

    /// The spool file's path.
    pub fn path(&self) -> &str {
        &self.file.path
    }

    /// Hand the file to the job engine, which from here deletes it unless a new job
    /// takes it.
    pub fn keep(mut self) {
        self.file.keep = true;
    }
}

/// With `remote=` the engine fetches the context: a body as well is refused.
fn refuse_body(req: &HttpRequest) -> ApiResult<()> {
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if content_length(req).is_some_and(|n| n > 0) || chunked {
        return Err(ApiError::invalid("Send either a context body or `remote`, not both."));
    }
    Ok(())
}

fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
}

/// The context's format, from its `Content-Type`.
fn context_format(req: &HttpRequest) -> ApiResult<&'static str> {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "Send the build context with `Content-Type: application/x-tar` (or `application/gzip`), or use `remote=`.",
        ));
    };
    match ct.split(';').next().unwrap_or("").trim() {
        "application/x-tar" | "application/tar" => Ok("tar"),
        // The engine detects compression itself.
        "application/octet-stream" => Ok("tar or gzip"),
        "application/gzip" | "application/x-gzip" | "application/tar+gzip" => Ok("gzip"),
        other => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("The build context must be `application/x-tar` or `application/gzip`, not `{other}`."),
        )),
    }
}

/// One of the `BERTH_MAX_UPLOADS` slots, held while the body is received.
fn upload_slot(state: &AppState) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
    state.jobs.upload_slot().ok_or_else(|| {
        ApiError::new(
            ErrorCode::QueueFull,
            format!(
                "{} build contexts are being uploaded already (BERTH_MAX_UPLOADS); retry later.",
                state.settings.max_uploads
            ),
        )
        .with_retry_after(5)
    })
}

/// A spooled build context, deleted when dropped unless handed to the job engine: an
/// upload cut short or refused leaves nothing behind.
struct SpoolFile {
    path: String,
    keep: bool,
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("The build context is larger than BERTH_BUILD_CONTEXT_MAX ({max} bytes)."),
    )
}

/// How often (in bytes received) an upload checks `BERTH_MIN_FREE_BYTES` again.
const SPACE_CHECK_EVERY: u64 = 4 * 1024 * 1024;

/// Write the body to a spool file as it arrives; bounded memory whatever its size.
async fn spool(state: &AppState, mut payload: web::Payload, max: u64) -> ApiResult<(SpoolFile, u64)> {
    let path = state.jobs.spool_dir().join(format!("{}.ctx", uuid::Uuid::new_v4()));
    let spool = SpoolFile { path: path.to_string_lossy().into_owned(), keep: false };
    let file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, "Cannot store the build context.").with_source(e.into()))?;
    let mut out = tokio::io::BufWriter::with_capacity(1024 * 1024, file);
    let mut bytes: u64 = 0;
    let result: ApiResult<()> = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::invalid(format!("Reading the build context failed: {e}")))?;
            bytes += chunk.len() as u64;
            if bytes > max {
                return Err(too_large(max));
            }
            // The disk's free space, again every few MiB: a large upload stops at the floor.
            if bytes / SPACE_CHECK_EVERY != (bytes - chunk.len() as u64) / SPACE_CHECK_EVERY {
                state.jobs.ensure_space()?;
            }
            out.write_all(&chunk).await.map_err(|e| {
                ApiError::new(ErrorCode::Internal, "Cannot store the build context (disk full?).").with_source(e.into())
            })?;
        }
        out.flush().await.map_err(|e| ApiError::internal(e.into()))?;
        Ok(())
    }
    .await;
    drop(out);
    result.map(|()| (spool, bytes))
}
