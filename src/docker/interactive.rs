//! Interactive I/O with the engine: attach to a container's stdio, create and start exec
//! instances, resize their TTYs.
//!
//! Attach and exec start are "hijacked" connections: the engine answers `101 UPGRADED`
//! and the HTTP connection becomes a bidirectional byte stream. Berth upgrades the
//! connection itself (same transport and negotiated API version as the bollard client)
//! so that it reads exactly what the engine sends: raw bytes when the process has a TTY,
//! Docker's stdcopy frames (8-byte header: stream, 0, 0, 0, big-endian length) when it
//! has not. bollard guesses the framing from the first byte, which breaks on TTY output
//! that starts with a byte below 3; TLS hosts still go through bollard.
//!
//! Reads are bounded: a chunk is at most [`MAX_CHUNK`] bytes, and the stream is pulled
//! by the consumer, so the engine is never read faster than the consumer drains.

use std::pin::Pin;

use bollard::models::ExecConfig;
use bollard::query_parameters as qp;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, UPGRADE};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWrite;
use tokio_util::codec::{Decoder, FramedRead};

use super::{Engine, EngineError, ObjectKind, Result};
use crate::domain::exec::ExecSpec;

/// Largest piece of output handed on at once, in bytes.
pub const MAX_CHUNK: usize = 32 * 1024;

/// Which stream a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
    /// A TTY: stdout and stderr are one stream.
    Tty,
}

/// A piece of a process's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: OutputStream,
    pub bytes: Bytes,
}

/// Both directions of a hijacked connection. Dropping it closes the connection: the
/// engine detaches (the container or exec goes on).
pub struct Stdio {
    /// The process's output; ends when the process ends (or the engine detaches).
    pub output: BoxStream<'static, Result<OutputChunk>>,
    /// The process's stdin. `shutdown()` closes it (EOF) and keeps the output open.
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

/// What an attach needs to know about a container.
#[derive(Debug, Clone)]
pub struct ContainerStdioInfo {
    /// The full id.
    pub id: String,
    pub running: bool,
    pub tty: bool,
    pub open_stdin: bool,
    /// The options that give this container power over the host (`privileged`, host
    /// binds, host namespaces, added capabilities, devices, security options): a shell in
    /// it is a shell on the host, so attach and exec need admin when this is not empty.
    pub host_power: Vec<&'static str>,
}

fn host_power(hc: &bollard::models::HostConfig) -> Vec<&'static str> {
    let mut out = Vec::new();
    if hc.privileged == Some(true) {
        out.push("privileged");
    }
    let host_path = |b: &String| b.starts_with('/') || b.starts_with('.') || b.starts_with('~');
    if hc.binds.as_ref().is_some_and(|b| b.iter().any(host_path))
        || hc.mounts.as_ref().is_some_and(|m| {
            m.iter().any(|m| matches!(m.typ, Some(bollard::models::MountType::BIND)))
        })
    {
        out.push("binds");
    }
    let shares = |mode: &Option<String>| mode.as_deref().is_some_and(|m| m == "host" || m.starts_with("container:"));
    if shares(&hc.network_mode) {
        out.push("network");
    }
    if shares(&hc.pid_mode) {
        out.push("pid_mode");
    }
    if shares(&hc.ipc_mode) {
        out.push("ipc_mode");
    }
    if hc.cap_add.as_ref().is_some_and(|c| !c.is_empty()) {
        out.push("cap_add");
    }
    if hc.devices.as_ref().is_some_and(|d| !d.is_empty()) {
        out.push("devices");
    }
    if hc.security_opt.as_ref().is_some_and(|o| !o.is_empty()) {
        out.push("security_opt");
    }
    out
}

/// An exec instance, as the engine reports it.
#[derive(Debug, Clone)]
pub struct ExecInfo {
    pub id: String,
    pub container_id: String,
    pub running: bool,
    /// Set once the process ended.
    pub exit_code: Option<i64>,
    pub tty: bool,
    pub open_stdin: bool,
    /// Whether it was ever started: an exec instance starts once.
    pub started: bool,
}

impl Engine {
    /// A container's id, state and stdio settings.
    pub async fn container_stdio_info(&self, id: &str) -> Result<ContainerStdioInfo> {
        let c = self.inspect_checked(id).await?;
        let config = c.config.unwrap_or_default();
        Ok(ContainerStdioInfo {
            id: c.id.unwrap_or_else(|| id.to_string()),
            running: c.state.and_then(|s| s.running).unwrap_or(false),
            tty: config.tty.unwrap_or(false),
            open_stdin: config.open_stdin.unwrap_or(false),
            host_power: c.host_config.as_ref().map(host_power).unwrap_or_default(),
        })
    }

    /// Attach to a running container's stdio (`docker attach`). `logs` replays its
    /// earlier output first; `stdin` attaches its stdin (it must have `OpenStdin`).
    pub async fn attach_stdio(&self, id: &str, tty: bool, stdin: bool, logs: bool) -> Result<Stdio> {
        let d = self.docker().await?;
        if super::raw::supported(&self.host) {
            let flag = |b: bool| if b { "1" } else { "0" };
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("stream", "1")
                .append_pair("stdin", flag(stdin))
                .append_pair("stdout", "1")
                .append_pair("stderr", "1")
                .append_pair("logs", flag(logs))
                .finish();
            let v = d.client_version();
            let path = format!("/v{}.{}/containers/{id}/attach?{query}", v.major_version, v.minor_version);
            let io = hijack(&self.host, &path, String::new(), ObjectKind::Container)
                .await
                .map_err(|e| self.forget_if_unavailable(e))?;
            return Ok(stdio_from_io(io, tty));
        }
        let opts =
            qp::AttachContainerOptions { stdin, stdout: true, stderr: true, stream: true, logs, detach_keys: None };
        let res = d.attach_container(id, Some(opts)).await.map_err(|e| self.fail(ObjectKind::Container, e))?;
        Ok(stdio_from_bollard(res.output, res.input, tty))
    }

    /// Resize a container's TTY (`POST /containers/{id}/resize`).
    pub async fn resize_container_tty(&self, id: &str, cols: u16, rows: u16) -> Result<()> {
        let d = self.docker().await?;
        let opts = qp::ResizeContainerTTYOptions { w: cols.into(), h: rows.into() };
        d.resize_container_tty(id, opts).await.map_err(|e| self.fail(ObjectKind::Container, e))
    }

    /// Create an exec instance with stdin, stdout and stderr attached; its id.
    pub async fn create_exec(&self, container: &str, spec: &ExecSpec) -> Result<String> {
        let d = self.docker().await?;
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(spec.tty),
            env: (!spec.env.is_empty()).then(|| spec.env.clone()),
            cmd: Some(spec.cmd.clone()),
            privileged: Some(spec.privileged),
            user: spec.user.clone(),
            working_dir: spec.workdir.clone(),
            ..Default::default()
        };
        let res = d.create_exec(container, config).await.map_err(|e| self.fail(ObjectKind::Container, e))?;
        Ok(res.id)
    }

    /// An exec instance's state (404 `not_found` when the engine has none by that id).
    pub async fn inspect_exec(&self, id: &str) -> Result<ExecInfo> {
        let d = self.docker().await?;
        let e = d.inspect_exec(id).await.map_err(|e| self.fail(ObjectKind::Other, e))?;
        let running = e.running.unwrap_or(false);
        Ok(ExecInfo {
            id: e.id.unwrap_or_else(|| id.to_string()),
            container_id: e.container_id.unwrap_or_default(),
            running,
            exit_code: e.exit_code,
            tty: e.process_config.and_then(|p| p.tty).unwrap_or(false),
            open_stdin: e.open_stdin.unwrap_or(false),
            // A started exec has a pid (while it runs) or an exit code (once it ended).
            started: running || e.exit_code.is_some() || e.pid.is_some_and(|p| p > 0),
        })
    }

    /// Start an exec instance attached (`docker exec -i`).
    pub async fn start_exec_stdio(&self, id: &str, tty: bool) -> Result<Stdio> {
        let d = self.docker().await?;
        if super::raw::supported(&self.host) {
            let v = d.client_version();
            let path = format!("/v{}.{}/exec/{id}/start", v.major_version, v.minor_version);
            let body = serde_json::json!({"Detach": false, "Tty": tty}).to_string();
            let io =
                hijack(&self.host, &path, body, ObjectKind::Other).await.map_err(|e| self.forget_if_unavailable(e))?;
            return Ok(stdio_from_io(io, tty));
        }
        let opts = bollard::exec::StartExecOptions { detach: false, tty, output_capacity: Some(MAX_CHUNK) };
        match d.start_exec(id, Some(opts)).await.map_err(|e| self.fail(ObjectKind::Other, e))? {
            bollard::exec::StartExecResults::Attached { output, input } => Ok(stdio_from_bollard(output, input, tty)),
            bollard::exec::StartExecResults::Detached => {
                Err(EngineError::Docker("the engine started the exec detached".into()))
            }
        }
    }

    /// Resize an exec instance's TTY.
    pub async fn resize_exec(&self, id: &str, cols: u16, rows: u16) -> Result<()> {
        let d = self.docker().await?;
        let opts = qp::ResizeExecOptions { w: cols.into(), h: rows.into() };
        d.resize_exec(id, opts).await.map_err(|e| self.fail(ObjectKind::Other, e))
    }
}

fn stdio_from_io<T>(io: T, tty: bool) -> Stdio
where
    T: tokio::io::AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let output = FramedRead::with_capacity(read, StdioDecoder::new(tty), MAX_CHUNK)
        .map(|item| item.map_err(|e| EngineError::Unavailable(format!("reading from the engine: {e}"))));
    Stdio { output: output.boxed(), input: Box::pin(write) }
}

fn stdio_from_bollard(
    output: Pin<
        Box<dyn Stream<Item = std::result::Result<bollard::container::LogOutput, bollard::errors::Error>> + Send>,
    >,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    tty: bool,
) -> Stdio {
    use bollard::container::LogOutput as L;
    let output = output.filter_map(move |item| {
        std::future::ready(match item {
            Ok(L::StdOut { message }) | Ok(L::Console { message }) => Some(Ok(OutputChunk {
                stream: if tty { OutputStream::Tty } else { OutputStream::Stdout },
                bytes: message,
            })),
            Ok(L::StdErr { message }) => Some(Ok(OutputChunk { stream: OutputStream::Stderr, bytes: message })),
            Ok(L::StdIn { .. }) => None,
            Err(e) => Some(Err(EngineError::from_bollard(ObjectKind::Container, e))),
        })
    });
    Stdio { output: output.boxed(), input }
}

/// POST `path_and_query` (already versioned) asking for `Upgrade: tcp`; the upgraded
/// connection. An answer other than 101 is mapped like any engine error.
async fn hijack(
    host: &str,
    path_and_query: &str,
    body: String,
    kind: ObjectKind,
) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
    let req = hyper::Request::builder()
        .method("POST")
        .uri(path_and_query)
        .header(HOST, "docker")
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, "tcp")
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| EngineError::Docker(e.to_string()))?;
    let upgraded = if let Some(path) = host.strip_prefix("unix://") {
        let stream = tokio::net::UnixStream::connect(path).await.map_err(|e| unavailable(path, &e))?;
        upgrade_over(TokioIo::new(stream), req, kind).await?
    } else {
        let authority = host.trim_start_matches("tcp://").trim_end_matches('/');
        let stream = tokio::net::TcpStream::connect(authority).await.map_err(|e| unavailable(authority, &e))?;
        let _ = stream.set_nodelay(true);
        upgrade_over(TokioIo::new(stream), req, kind).await?
    };
    Ok(TokioIo::new(upgraded))
}

fn unavailable(what: &str, e: &dyn std::fmt::Display) -> EngineError {
    EngineError::Unavailable(format!("{what}: {e}"))
}

async fn upgrade_over<T>(io: T, req: hyper::Request<Full<Bytes>>, kind: ObjectKind) -> Result<hyper::upgrade::Upgraded>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| unavailable("engine handshake", &e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "engine connection ended");
        }
    });
    let response = sender.send_request(req).await.map_err(|e| unavailable("engine request", &e))?;
    let status = response.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        return Err(match status.as_u16() {
            404 => EngineError::NotFound { kind, message },
            409 => EngineError::Conflict(message),
            400 => EngineError::BadRequest(message),
            s if s < 300 => {
                EngineError::Docker(format!("the engine answered {status} instead of upgrading the connection"))
            }
            _ => EngineError::Docker(message),
        });
    }
    hyper::upgrade::on(response).await.map_err(|e| unavailable("engine upgrade", &e))
}

/// Splits the engine's output into chunks: raw with a TTY, stdcopy frames without. A
/// frame's payload is handed on as it arrives, in pieces of at most [`MAX_CHUNK`], so a
/// large frame is never held whole.
#[derive(Debug)]
pub struct StdioDecoder {
    tty: bool,
    /// The stream and the bytes still due of the frame being read.
    frame: Option<(OutputStream, usize)>,
}

impl StdioDecoder {
    pub fn new(tty: bool) -> Self {
        Self { tty, frame: None }
    }
}

impl Decoder for StdioDecoder {
    type Item = OutputChunk;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> std::result::Result<Option<OutputChunk>, std::io::Error> {
        if self.tty {
            if src.is_empty() {
                return Ok(None);
            }
            let n = src.len().min(MAX_CHUNK);
            return Ok(Some(OutputChunk { stream: OutputStream::Tty, bytes: src.split_to(n).freeze() }));
        }
        loop {
            match self.frame {
                None => {
                    if src.len() < 8 {
                        return Ok(None);
                    }
                    let stream = match src[0] {
                        // Stdin is never echoed on the raw stream; treat it as stdout.
                        0 | 1 => OutputStream::Stdout,
                        2 => OutputStream::Stderr,
                        other => {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                format!("unexpected stream type {other} in the engine's output"),
                            ));
                        }
                    };
                    let len = u32::from_be_bytes([src[4], src[5], src[6], src[7]]) as usize;
                    src.advance(8);
                    if len > 0 {
                        self.frame = Some((stream, len));
                    }
                }
                Some((stream, due)) => {
                    if src.is_empty() {
                        return Ok(None);
                    }
                    let n = src.len().min(due).min(MAX_CHUNK);
                    let bytes = src.split_to(n).freeze();
                    self.frame = (due > n).then_some((stream, due - n));
                    return Ok(Some(OutputChunk { stream, bytes }));
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> std::result::Result<Option<OutputChunk>, std::io::Error> {
        match self.decode(src)? {
            Some(chunk) => Ok(Some(chunk)),
            // A torn header at the end: nothing more will come.
            None => {
                src.clear();
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![stream, 0, 0, 0];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn drain(d: &mut StdioDecoder, buf: &mut BytesMut) -> Vec<OutputChunk> {
        let mut out = Vec::new();
        while let Some(c) = d.decode(buf).unwrap() {
            out.push(c);
        }
        out
    }

    #[test]
    fn tty_output_is_raw_even_when_it_starts_with_a_low_byte() {
        let mut d = StdioDecoder::new(true);
        let mut buf = BytesMut::from(&b"\x01\x02\x00hi"[..]);
        let out = drain(&mut d, &mut buf);
        assert_eq!(out, vec![OutputChunk { stream: OutputStream::Tty, bytes: Bytes::from_static(b"\x01\x02\x00hi") }]);
    }

    #[test]
    fn stdcopy_frames_are_split_by_stream_and_may_arrive_torn() {
        let mut d = StdioDecoder::new(false);
        let mut bytes = frame(1, b"out\n");
        bytes.extend(frame(2, b"err\n"));
        bytes.extend(frame(1, b""));
        bytes.extend(frame(1, b"more"));
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // Feed one byte at a time.
        for b in bytes {
            buf.extend_from_slice(&[b]);
            out.extend(drain(&mut d, &mut buf));
        }
        let joined = |s: OutputStream| -> Vec<u8> {
            out.iter().filter(|c| c.stream == s).flat_map(|c| c.bytes.to_vec()).collect()
        };
        assert_eq!(joined(OutputStream::Stdout), b"out\nmore");
        assert_eq!(joined(OutputStream::Stderr), b"err\n");
    }

    #[test]
    fn a_large_frame_comes_in_bounded_chunks() {
        let mut d = StdioDecoder::new(false);
        let payload = vec![b'x'; MAX_CHUNK * 2 + 5];
        let mut buf = BytesMut::from(&frame(2, &payload)[..]);
        let out = drain(&mut d, &mut buf);
        assert_eq!(out.iter().map(|c| c.bytes.len()).collect::<Vec<_>>(), vec![MAX_CHUNK, MAX_CHUNK, 5]);
        assert!(out.iter().all(|c| c.stream == OutputStream::Stderr));
    }

    #[test]
    fn a_bad_stream_type_is_an_error() {
        let mut d = StdioDecoder::new(false);
        let mut buf = BytesMut::from(&frame(7, b"x")[..]);
        assert!(d.decode(&mut buf).is_err());
    }
}
