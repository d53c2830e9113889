//! The pump: a WebSocket and an engine connection, both directions, until one side ends;
//! then say why and close.
//!
//! Three things run at once in the session's task: the engine's output into the
//! WebSocket ([`Pump::outbound`]), the client's messages into the process's stdin or the
//! engine ([`Pump::inbound`]), and the idle clock ([`Pump::idle`]). The first to end
//! decides the [`End`]; the engine connection is then closed (the engine detaches, the
//! process goes on) and the client told why ([`Pump::close`]).

use std::cell::Cell;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{SessionAudit, SessionParams, SessionPhase, SessionTarget, audit_session};
use crate::docker::{Engine, EngineError, OutputChunk, OutputStream, Stdio};
use crate::domain::exec::{ClientControl, ServerControl};
use crate::error::{ErrorCode, HasCode};

/// How long to wait, once the output ended, for the engine to report the exit code.
const EXIT_CODE_WAIT: Duration = Duration::from_secs(3);

/// How long the last messages may wait for a client that does not read.
const GOODBYE_WAIT: Duration = Duration::from_secs(5);

/// Why a session ended.
enum End {
    /// The engine closed the output: the process ended, or the engine detached.
    OutputEnded,
    EngineFailed(EngineError),
    ClientClosed,
    ClientGone,
    Protocol(ProtocolError),
    Idle,
}

/// How a session ends: the audit's reason and exit code, and what the client is told.
struct Ending {
    reason: &'static str,
    exit_code: Option<i64>,
    /// The last control message.
    last: Option<ServerControl>,
    /// `None`: the client is gone, there is no one to close to.
    close: Option<CloseReason>,
}

/// A binary frame of output: raw with a TTY, else the stream byte and the payload.
pub fn output_frame(chunk: OutputChunk) -> Bytes {
    let prefix = match chunk.stream {
        OutputStream::Tty => return chunk.bytes,
        OutputStream::Stdout => 1u8,
        OutputStream::Stderr => 2u8,
    };
    let mut frame = BytesMut::with_capacity(chunk.bytes.len() + 1);
    frame.put_u8(prefix);
    frame.extend_from_slice(&chunk.bytes);
    frame.freeze()
}

fn control_text(msg: &ServerControl) -> String {
    serde_json::to_string(msg).unwrap_or_else(|_| "{\"type\":\"error\"}".into())
}

fn error_message(e: EngineError) -> ServerControl {
    ServerControl::Error { code: e.code(), message: e.detail() }
}

fn close_reason(code: CloseCode, description: &str) -> CloseReason {
    CloseReason { code, description: Some(description.to_string()) }
}

/// Pump a WebSocket and an engine connection until one side ends; then say why and close.
pub async fn run_session(
    params: SessionParams,
    stdio: Stdio,
    session: actix_ws::Session,
    mut messages: AggregatedMessageStream,
) {
    let SessionParams { engine, audit, stdin, idle_timeout, permit, exec_claim } = params;
    let started = Instant::now();
    audit_session(&audit, &SessionPhase::Started);
    let pump = Pump::new(engine, &audit, stdin, idle_timeout, session);
    let end = pump.run(stdio, &mut messages).await;
    let (reason, exit_code) = pump.close(end).await;
    audit_session(
        &audit,
        &SessionPhase::Ended {
            reason,
            exit_code,
            duration: started.elapsed(),
            stdin_bytes: pump.stdin_bytes.get(),
            output_bytes: pump.output_bytes.get(),
        },
    );
    drop(exec_claim);
    drop(permit);
}

/// What the directions of a running session share. They run in one task, so the
/// counters are cells.
struct Pump<'a> {
    engine: Arc<Engine>,
    target: &'a SessionTarget,
    tty: bool,
    /// Whether the process has stdin open.
    stdin: bool,
    idle_timeout: Duration,
    session: actix_ws::Session,
    /// The last frame either way.
    activity: Cell<Instant>,
    stdin_bytes: Cell<u64>,
    output_bytes: Cell<u64>,
}

/// The process's stdin, as the inbound direction sees it.
struct StdinSide {
    input: Pin<Box<dyn AsyncWrite + Send>>,
    open: bool,
    /// Whether the client was told that its input is dropped (it is told once).
    told_dropped: bool,
}

impl<'a> Pump<'a> {
    fn new(
        engine: Arc<Engine>,
        audit: &'a SessionAudit,
        stdin: bool,
        idle_timeout: Duration,
        session: actix_ws::Session,
    ) -> Self {
        Self {
            engine,
            target: &audit.target,
            tty: audit.tty,
            stdin,
            idle_timeout,
            session,
            activity: Cell::new(Instant::now()),
            stdin_bytes: Cell::new(0),
            output_bytes: Cell::new(0),
        }
    }

    /// Run both directions and the idle clock until one ends; then close the engine
    /// connection first: the engine detaches, the process goes on.
    async fn run(&self, stdio: Stdio, messages: &mut AggregatedMessageStream) -> End {
        let Stdio { mut output, input } = stdio;
        let mut stdin = StdinSide { input, open: self.stdin, told_dropped: false };
        let end = tokio::select! {
            end = self.outbound(&mut output) => end,
            end = self.inbound(messages, &mut stdin) => end,
            end = self.idle() => end,
        };
        drop(stdin);
        drop(output);
        end
    }

    /// The engine's output into the WebSocket, one chunk at a time.
    async fn outbound(&self, output: &mut BoxStream<'static, Result<OutputChunk, EngineError>>) -> End {
        let mut ws = self.session.clone();
        while let Some(item) = output.next().await {
            match item {
                Ok(chunk) => {
                    self.output_bytes.set(self.output_bytes.get() + chunk.bytes.len() as u64);
                    if ws.binary(output_frame(chunk)).await.is_err() {
                        return End::ClientGone;
                    }
                    self.activity.set(Instant::now());
                }
                Err(e) => return End::EngineFailed(e),
            }
        }
        End::OutputEnded
    }

    /// The client's messages, one at a time: the next is read once this one was handled.
    async fn inbound(&self, messages: &mut AggregatedMessageStream, stdin: &mut StdinSide) -> End {
        let mut ws = self.session.clone();
        loop {
            let msg = match messages.next().await {
                None => return End::ClientGone,
                Some(Err(e)) => return End::Protocol(e),
                Some(Ok(m)) => m,
            };
            self.activity.set(Instant::now());
            let ok = match msg {
                AggregatedMessage::Binary(bytes) => self.write_stdin(&bytes, stdin).await,
                AggregatedMessage::Text(text) => self.control(&text, stdin).await,
                AggregatedMessage::Ping(payload) => ws.pong(&payload).await.is_ok(),
                AggregatedMessage::Pong(_) => true,
                AggregatedMessage::Close(_) => return End::ClientClosed,
            };
            if !ok {
                return End::ClientGone;
            }
        }
    }

    /// Bytes for the process's stdin; dropped, and the client told once, when it is not
    /// open. `false`: the client is gone.
    async fn write_stdin(&self, bytes: &[u8], stdin: &mut StdinSide) -> bool {
        if !stdin.open {
            if stdin.told_dropped {
                return true;
            }
            stdin.told_dropped = true;
            let why = if self.stdin {
                "stdin was closed (`close_stdin`); input is dropped."
            } else {
                "This process's stdin is not open (run the container with `open_stdin: true`); input is dropped."
            };
            return self.tell(ErrorCode::InvalidRequest, why.into()).await;
        }
        let written = async {
            stdin.input.write_all(bytes).await?;
            stdin.input.flush().await
        };
        match written.await {
            Ok(()) => {
                self.stdin_bytes.set(self.stdin_bytes.get() + bytes.len() as u64);
                true
            }
            Err(e) => {
                stdin.open = false;
                stdin.told_dropped = true;
                self.tell(ErrorCode::Conflict, format!("The process's stdin is closed ({e}); further input is dropped."))
                    .await
            }
        }
    }

    /// A control message from the client. `false`: the client is gone.
    async fn control(&self, text: &str, stdin: &mut StdinSide) -> bool {
        match ClientControl::parse(text) {
            Err(message) => self.tell(ErrorCode::InvalidRequest, message).await,
            Ok(ClientControl::Resize { .. }) if !self.tty => {
                self.tell(ErrorCode::InvalidRequest, "There is no TTY to resize (no `tty: true`).".into()).await
            }
            Ok(ClientControl::Resize { cols, rows }) => {
                let resized = match self.target {
                    SessionTarget::Attach { container_id } => {
                        self.engine.resize_container_tty(container_id, cols, rows).await
                    }
                    SessionTarget::Exec { exec_id, .. } => self.engine.resize_exec(exec_id, cols, rows).await,
                };
                match resized {
                    Ok(()) => true,
                    Err(e) => self.send(&error_message(e)).await,
                }
            }
            Ok(ClientControl::CloseStdin) => {
                if stdin.open {
                    stdin.open = false;
                    let _ = stdin.input.shutdown().await;
                }
                true
            }
        }
    }

    /// Ends the session once no frame went either way for the idle timeout (never when it
    /// is zero).
    async fn idle(&self) -> End {
        if self.idle_timeout.is_zero() {
            return std::future::pending::<End>().await;
        }
        loop {
            let deadline = self.activity.get() + self.idle_timeout;
            if Instant::now() >= deadline {
                return End::Idle;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }

    /// A control message to the client. `false`: the client is gone.
    async fn send(&self, msg: &ServerControl) -> bool {
        self.session.clone().text(control_text(msg)).await.is_ok()
    }

    /// An `error` control message to the client; the session goes on.
    async fn tell(&self, code: ErrorCode, message: String) -> bool {
        self.send(&ServerControl::Error { code, message }).await
    }

    /// Tell the client why the session ended and close; the audit's reason and the exit
    /// code. A client that stopped reading must not keep the session (and its slot)
    /// forever: the goodbye has [`GOODBYE_WAIT`].
    async fn close(&self, end: End) -> (&'static str, Option<i64>) {
        let Ending { reason, exit_code, last, close } = self.ending(end).await;
        let goodbye = async {
            if let Some(msg) = last {
                self.send(&msg).await;
            }
            if let Some(close) = close {
                let _ = self.session.clone().close(Some(close)).await;
            }
        };
        let _ = tokio::time::timeout(GOODBYE_WAIT, goodbye).await;
        (reason, exit_code)
    }

    async fn ending(&self, end: End) -> Ending {
        let closing = |reason, last, code, description: &str| Ending {
            reason,
            exit_code: None,
            last,
            close: Some(close_reason(code, description)),
        };
        let engine_error = |e| closing("engine_error", Some(error_message(e)), CloseCode::Error, "engine error");
        match end {
            End::OutputEnded => match exit_status(&*self.engine, self.target).await {
                Ok(Some(code)) => Ending {
                    exit_code: Some(code),
                    ..closing("exited", Some(ServerControl::Exit { exit_code: code }), CloseCode::Normal, "exited")
                },
                Ok(None) => closing("detached", Some(ServerControl::Detached), CloseCode::Normal, "detached"),
                Err(e) => engine_error(e),
            },
            End::EngineFailed(e) => engine_error(e),
            End::ClientClosed => closing("client_closed", None, CloseCode::Normal, "detached"),
            End::ClientGone => Ending { reason: "client_gone", exit_code: None, last: None, close: None },
            End::Protocol(e) => {
                let code = if matches!(e, ProtocolError::Overflow) { CloseCode::Size } else { CloseCode::Protocol };
                closing("protocol_error", None, code, &e.to_string())
            }
            End::Idle => {
                let why = format!("idle timeout: no frames for {} s", self.idle_timeout.as_secs());
                closing("idle_timeout", None, CloseCode::Away, &why)
            }
        }
    }
}

/// Once the output ended: the exit code, or `None` when the process still runs (the
/// engine detached: Ctrl-P Ctrl-Q).
async fn exit_status(engine: &Engine, target: &SessionTarget) -> Result<Option<i64>, EngineError> {
    match target {
        SessionTarget::Attach { container_id } => {
            match tokio::time::timeout(EXIT_CODE_WAIT, engine.wait_exit(container_id)).await {
                Ok(code) => code.map(Some),
                Err(_) => Ok(None),
            }
        }
        SessionTarget::Exec { exec_id, .. } => {
            let deadline = Instant::now() + EXIT_CODE_WAIT;
            loop {
                let info = engine.inspect_exec(exec_id).await?;
                if !info.running {
                    return Ok(Some(info.exit_code.unwrap_or(-1)));
                }
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_frames() {
        let f = |stream, b: &'static [u8]| output_frame(OutputChunk { stream, bytes: Bytes::from_static(b) });
        assert_eq!(&f(OutputStream::Tty, b"\x01hi")[..], b"\x01hi");
        assert_eq!(&f(OutputStream::Stdout, b"hi")[..], b"\x01hi");
        assert_eq!(&f(OutputStream::Stderr, b"")[..], b"\x02");
    }
}
