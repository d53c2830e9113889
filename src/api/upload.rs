//! The body of `POST /v1/images/build`: a build context, streamed to a spool file as it
//! arrives (never held in memory) and handed to the job engine with the job.
//!
//! Receiving one checks, in this order, everything that can refuse it before a byte is
//! read: the media type (415), the announced length (413), the build policy on the tags
//! and `remote=` host (403), a full queue and the upload slots, the caller's and everyone's
//! (429), the free-space floor (507); then the bytes, cut off at `BERTH_BUILD_CONTEXT_MAX`
//! (413), after `BERTH_UPLOAD_IDLE_TIMEOUT` without one (408), or when the disk's free
//! space falls below the floor (507, checked every few MiB); then the Dockerfile inside
//! (403 for an image outside the allow-list, or for a non-admin an `ADD` URL inside the host).

use std::time::Duration;

use actix_web::{HttpRequest, http::header, web};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::problem::{ApiError, ApiResult};
use crate::auth::Principal;
use crate::domain::Rejection;
use crate::domain::dockerfile::{self, ContextError};
use crate::domain::requests::BuildParams;
use crate::error::ErrorCode;
use crate::jobs::{UploadSlot, UploadsBusy};
use crate::state::AppState;

/// How long a name in an `ADD` URL may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Host names of `ADD` URLs resolved per build.
const RESOLVE_MAX: usize = 32;

/// A build context received into the spool directory.
pub struct SpooledContext {
    file: SpoolFile,
    /// Its size in bytes.
    pub bytes: u64,
    /// `tar`, `gzip`, or `tar or gzip` (the engine detects compression itself).
    pub format: &'static str,
    /// Held until the context is checked and handed to the job engine.
    _slot: UploadSlot,
}

impl SpooledContext {
    /// The context of a build: none with `remote=` (the engine fetches it; a body as
    /// well is refused), else the body, received and its Dockerfile checked. Its size and
    /// format go into `params`.
    pub async fn for_build(
        state: &AppState,
        req: &HttpRequest,
        payload: web::Payload,
        params: &mut BuildParams,
        who: &Principal,
    ) -> ApiResult<Option<Self>> {
        let format = match params.remote {
            Some(_) => {
                refuse_body(req)?;
                None
            }
            None => Some(context_format(req)?),
        };
        let max = state.settings.build_context_max;
        if format.is_some() && content_length(req).is_some_and(|n| n > max) {
            return Err(too_large(max));
        }
        let team = (!who.is_admin()).then_some(who.team.as_str());
        params.check_policy(&state.settings.policy, team)?;
        let Some(format) = format else { return Ok(None) };
        let context = Self::receive(state, payload, format, &who.subject).await?;
        context.check_dockerfile(state, params, who.is_admin()).await?;
        params.context_bytes = Some(context.bytes);
        params.context_format = Some(context.format.to_string());
        Ok(Some(context))
    }

    /// Receive the body into a spool file.
    async fn receive(state: &AppState, payload: web::Payload, format: &'static str, subject: &str) -> ApiResult<Self> {
        state.jobs.ensure_room().await?;
        state.jobs.ensure_space()?;
        let slot = upload_slot(state, subject)?;
        let (file, bytes) = spool(state, payload).await?;
        if bytes == 0 {
            return Err(ApiError::invalid("The build context is empty."));
        }
        Ok(Self { file, bytes, format, _slot: slot })
    }

    /// Read the Dockerfile the engine will build from and hold it to the build policy:
    /// `FROM` and `COPY --from` images to `BERTH_ALLOWED_IMAGES`; for non-admins, no
    /// `ADD` URL whose host is (or resolves to) an address inside the host. A context
    /// that is not a tar, or has no such Dockerfile, is left to the engine to report.
    async fn check_dockerfile(&self, state: &AppState, params: &BuildParams, admin: bool) -> ApiResult<()> {
        let path = std::path::PathBuf::from(self.path());
        let name = params.dockerfile.clone();
        let build_args = params.build_args.clone();
        let read = tokio::task::spawn_blocking(move || {
            let texts = dockerfile::dockerfiles_in_context(|| std::fs::File::open(&path), name.as_deref())?;
            Ok::<_, ContextError>(texts.iter().map(|t| dockerfile::analyze(t, &build_args)).collect::<Vec<_>>())
        })
        .await
        .map_err(|e| ApiError::internal(e.into()))?;
        let found = read.map_err(|e| match e {
            ContextError::Refused(r) => ApiError::from(r),
            ContextError::Io(e) => ApiError::new(ErrorCode::Internal, "Cannot read the build context.").with_source(e.into()),
        })?;
        let mut names = Vec::new();
        for f in &found {
            for host in dockerfile::check(f, &state.settings.policy, admin)? {
                if !names.contains(&host) {
                    names.push(host);
                }
            }
        }
        if names.len() > RESOLVE_MAX {
            return Err(ApiError::from(Rejection::policy(format!(
                "The Dockerfile's `ADD` URLs name more than {RESOLVE_MAX} hosts to check: only admins may"
            ))));
        }
        for host in names {
            let addrs = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host.host.as_str(), host.port)))
                .await
                .map_err(|_| dockerfile::unresolvable(&host, "no answer in 5 s"))?
                .map_err(|e| dockerfile::unresolvable(&host, &e.to_string()))?;
            for addr in addrs {
                dockerfile::refuse_internal(&host, addr.ip())?;
            }
        }
        Ok(())
    }

    /// The spool file's path.
    pub fn path(&self) -> &str {
        &self.file.path
    }

    /// Hand the file to the job engine, which from here deletes it unless a new job
    /// takes it; the upload slot is given back.
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

/// An upload slot of the caller's (`BERTH_MAX_UPLOADS_PER_SUBJECT`) and of everyone's
/// (`BERTH_MAX_UPLOADS`), held while the body is received and checked.
fn upload_slot(state: &AppState, subject: &str) -> ApiResult<UploadSlot> {
    state.jobs.upload_slot(subject).map_err(|busy| {
        let detail = match busy {
            UploadsBusy::Subject => format!(
                "You are uploading {} build contexts already (BERTH_MAX_UPLOADS_PER_SUBJECT); retry when one has arrived.",
                state.settings.bounds.max_uploads_per_subject
            ),
            UploadsBusy::All => format!(
                "{} build contexts are being uploaded already (BERTH_MAX_UPLOADS); retry later.",
                state.settings.max_uploads
            ),
        };
        ApiError::new(ErrorCode::QueueFull, detail).with_retry_after(5)
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

/// Write the body to a spool file as it arrives; bounded memory whatever its size. A body
/// that sends nothing for `BERTH_UPLOAD_IDLE_TIMEOUT` is cut off (408); the file goes with
/// the error.
async fn spool(state: &AppState, mut payload: web::Payload) -> ApiResult<(SpoolFile, u64)> {
    let max = state.settings.build_context_max;
    let idle = state.settings.bounds.upload_idle_timeout;
    let path = state.jobs.spool_dir().join(format!("{}.ctx", uuid::Uuid::new_v4()));
    let spool = SpoolFile { path: path.to_string_lossy().into_owned(), keep: false };
    let file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, "Cannot store the build context.").with_source(e.into()))?;
    let mut out = tokio::io::BufWriter::with_capacity(1024 * 1024, file);
    let mut bytes: u64 = 0;
    let result: ApiResult<()> = async {
        loop {
            let next = tokio::time::timeout(idle, payload.next()).await.map_err(|_| {
                ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "The build context stalled: nothing arrived for {} (BERTH_UPLOAD_IDLE_TIMEOUT), after {bytes} bytes.",
                        humantime::format_duration(idle)
                    ),
                )
            })?;
            let Some(chunk) = next else { break };
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
