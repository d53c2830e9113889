//! `run`: pull per policy, create, start; attached runs stream the output and wait for
//! the exit code.

use serde_json::{Value, json};

use super::{Failure, JobCtx, credentials_for, image_reference, set_phase};
use crate::docker::LogStream;
use crate::domain::job::{EventData, LogSource};
use crate::domain::run::{PullPolicy, RunSpec};
use crate::error::{ErrorCode, HasCode};

fn source(stream: LogStream) -> LogSource {
    match stream {
        LogStream::Stdout => LogSource::Stdout,
        LogStream::Stderr => LogSource::Stderr,
        LogStream::Build => LogSource::Build,
    }
}

pub(super) async fn run_container(ctx: &mut JobCtx, spec: &RunSpec) -> Result<Value, Failure> {
    let engine = ctx.engine.clone();
    let reference = image_reference(&spec.image);
    let present = engine.image_identity(&reference).await?.is_some();
    match (spec.pull, present) {
        (PullPolicy::Always, _) | (PullPolicy::Missing, false) => {
            let auth = credentials_for(ctx, &spec.image);
            super::registry::pull(ctx, &spec.image, None, auth.as_ref()).await?;
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
    // The named volumes as the engine knows them now, not as they were at submit.
    let authority = ctx.job.authority.unwrap_or(crate::domain::identity::Role::Operator);
    let held = ctx.jobs.check_run_volumes(&*ctx.engine, &ctx.spec, authority, &ctx.job.team).await;
    held.map_err(|e| Failure::new(e.code(), e.detail()))?;
    // Not raced against the cancel: the engine completes a create whose request was
    // dropped, which left an orphan container. Create, then honour a cancel that came
    // meanwhile by removing the container that never ran.
    // Stamped with the job that made it (recovery after a crash acts on nothing else),
    // its team and its owner: the access rule reads them.
    let mut spec = spec.clone();
    crate::domain::scope::stamp(&mut spec.labels, &ctx.job.team, &ctx.job.owner, Some(&ctx.job.id));
    let id = engine.create_container(&spec).await?;
    if ctx.cancel.is_cancelled() {
        let _ = engine.remove_container(&id, true, true).await;
        return Err(Failure::Canceled);
    }
    let text = format!("[berth] created container {id}");
    ctx.emit(EventData::Log { stream: LogSource::Stdout, text, truncated: false, container_id: Some(id.clone()) }).await;
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
    let engine = ctx.engine.clone();
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
                    ctx.log(source(stream), &line).await;
                }
            }
            Ok(Some(Err(e))) => return Err(e.into()),
        }
    }
    for (stream, rest) in partial {
        if !rest.is_empty() {
            let text = String::from_utf8_lossy(&rest);
            ctx.log(source(stream), text.trim_end_matches('\r')).await;
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
        while cut > start && cut < buf.len() && (buf[cut] & 0xC0) == 0x80 {
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
        // A run of exactly `max` bytes without a newline is one line (no index past the end).
        let mut exact = vec![b'a'; 64 * 1024];
        assert_eq!(take_lines(&mut exact, 64 * 1024).len(), 1);
        assert!(exact.is_empty());
        let mut many = b"x\n".repeat(20_000);
        let lines = take_lines(&mut many, 64 * 1024);
        assert_eq!(lines.len(), 20_000);
        assert!(many.is_empty());
    }
}
