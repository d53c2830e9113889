//! Interactive sessions: `docker attach` and `docker exec -it` over a WebSocket.
//!
//! A handler checks everything that can fail (role, limits, the container or exec, the
//! engine's hijacked connection) while it can still answer with a problem, then upgrades
//! and hands the WebSocket and the engine connection to [`run_session`] (in `pump.rs`),
//! which pumps both directions until one side ends.
//!
//! Wire protocol (also in the OpenAPI descriptions and the README):
//! - client -> server, binary frame: bytes for the process's stdin, as they are;
//! - client -> server, text frame: one JSON control message ([`ClientControl`](crate::domain::exec::ClientControl)):
//!   `{"type":"resize","cols":C,"rows":R}` or `{"type":"close_stdin"}`;
//! - server -> client, binary frame: output. With a TTY the raw bytes; without, the first
//!   byte names the stream (`1` stdout, `2` stderr, as in Docker's stdcopy header) and the
//!   rest is the payload;
//! - server -> client, text frame: one JSON control message ([`ServerControl`](crate::domain::exec::ServerControl)):
//!   `exit`, `detached` or `error`;
//! - close codes: 1000 after `exit`/`detached` (or answering the client's close), 1001
//!   idle timeout, 1011 after an engine `error`, 1002/1009 on a protocol error or an
//!   oversized message from the client.
//!
//! Limits: [`Sessions`] holds a semaphore (`BERTH_WS_MAX_SESSIONS`, 429
//! `too_many_sessions` before the upgrade), the sessions per subject
//! (`BERTH_WS_MAX_SESSIONS_PER_SUBJECT`, the same answer) and the idle timeout
//! (`BERTH_WS_IDLE_TIMEOUT`: no frame either way for that long closes the session).
//! It also counts the event streams (SSE, log follows) each subject holds open
//! (`BERTH_MAX_STREAMS_PER_SUBJECT`, 429 `too_many_streams`): the other long-lived
//! connections of the API. A browser page may open a session only from an origin the
//! service allows ([`check_origin`]). Backpressure both ways: one
//! output chunk (at most 32 KiB) is read from the engine only once the previous one went
//! into the WebSocket's bounded queue, and the next client message is read only once the
//! previous stdin bytes were written to the engine. The two directions run concurrently,
//! so a process that is blocked writing output never blocks its own input.

mod pump;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Settings;
use crate::docker::{Engine, Stdio};
use crate::domain::exec::ExecSpec;
use crate::domain::identity::Principal;
use crate::error::{ErrorCode, HasCode};
pub use pump::{output_frame, run_session};

/// Why a session could not be opened or went wrong: a code from the catalogue, a
/// message for the caller, and when to retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct SessionError {
    pub code: ErrorCode,
    pub detail: String,
    pub retry_after: Option<u64>,
}

impl SessionError {
    fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, detail: detail.into(), retry_after: None }
    }
    fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, detail)
    }
    fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl HasCode for SessionError {
    fn code(&self) -> ErrorCode {
        self.code
    }
    fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }
}

/// Largest WebSocket message accepted from a client (a frame, or a fragmented message
/// put together), in bytes: a bound on the stdin held at once.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// Exec instances one owner may hold unstarted (each may carry a large command and env).
const MAX_UNSTARTED_EXECS_PER_OWNER: usize = 32;

/// An exec instance created but not started is forgotten after this long.
const EXEC_TTL: Duration = Duration::from_secs(3600);

/// The limits and the exec instances of interactive sessions; one per application.
pub struct Sessions {
    permits: Arc<Semaphore>,
    max: usize,
    /// Interactive sessions per subject (`BERTH_WS_MAX_SESSIONS_PER_SUBJECT`).
    per_subject: SubjectSlots,
    /// Event streams per subject (`BERTH_MAX_STREAMS_PER_SUBJECT`).
    streams: SubjectSlots,
    idle_timeout: Duration,
    execs: Arc<Mutex<HashMap<String, ExecRecord>>>,
    /// Several replicas share the job store: exec instances (in memory) are each
    /// replica's own, and a 404 says so.
    several_replicas: bool,
}

/// Slots each subject may hold at once: a count per subject, taken by
/// [`SubjectSlots::take`] and given back when the [`SubjectSlot`] drops.
#[derive(Clone)]
pub struct SubjectSlots {
    max: usize,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

impl SubjectSlots {
    pub fn new(max: usize) -> Self {
        Self { max, held: Arc::default() }
    }

    /// A slot for `subject`, or `None` when it holds `max` already.
    pub fn take(&self, subject: &str) -> Option<SubjectSlot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.get(subject).is_some_and(|&n| n >= self.max) || self.max == 0 {
            return None;
        }
        *held.entry(subject.to_string()).or_insert(0) += 1;
        Some(SubjectSlot { held: self.held.clone(), subject: subject.to_string() })
    }
}

/// One subject's slot, given back when dropped.
pub struct SubjectSlot {
    held: Arc<Mutex<HashMap<String, usize>>>,
    subject: String,
}

impl Drop for SubjectSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.subject) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.subject);
            }
        }
    }
}

/// What an open session holds: a slot of the server's and one of its subject's.
pub struct SessionPermit {
    _server: OwnedSemaphorePermit,
    _subject: SubjectSlot,
}

/// An exec instance made through Berth: only its creator (or an admin) may start it.
#[derive(Debug, Clone)]
pub struct ExecRecord {
    pub owner: String,
    pub container_id: String,
    /// The host whose engine holds it.
    pub host: String,
    pub spec: ExecSpec,
    created: Instant,
    claimed: bool,
}

impl Sessions {
    pub fn new(settings: &Settings) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(settings.ws_max_sessions)),
            max: settings.ws_max_sessions,
            per_subject: SubjectSlots::new(settings.bounds.ws_max_sessions_per_subject),
            streams: SubjectSlots::new(settings.bounds.max_streams_per_subject),
            idle_timeout: settings.ws_idle_timeout,
            execs: Arc::default(),
            several_replicas: settings.database_url.is_some(),
        }
    }

    /// A session slot of the server's and one of `subject`'s, or 429
    /// `too_many_sessions`. Held for the whole session.
    pub fn permit(&self, subject: &str) -> Result<SessionPermit, SessionError> {
        let server = self.permits.clone().try_acquire_owned().map_err(|_| {
            SessionError::new(
                ErrorCode::TooManySessions,
                format!(
                    "{} interactive sessions are open, the most this server allows (BERTH_WS_MAX_SESSIONS); retry when one ends.",
                    self.max
                ),
            )
            .with_retry_after(5)
        })?;
        let subject = self.per_subject.take(subject).ok_or_else(|| {
            SessionError::new(
                ErrorCode::TooManySessions,
                format!(
                    "You hold {} interactive sessions, the most one subject may (BERTH_WS_MAX_SESSIONS_PER_SUBJECT); retry when one ends.",
                    self.per_subject.max
                ),
            )
            .with_retry_after(5)
        })?;
        Ok(SessionPermit { _server: server, _subject: subject })
    }

    /// A slot among the event streams `subject` may hold open, or 429
    /// `too_many_streams`. Held by the stream until it ends or its client goes away.
    pub fn stream_slot(&self, subject: &str) -> Result<SubjectSlot, SessionError> {
        self.streams.take(subject).ok_or_else(|| {
            SessionError::new(
                ErrorCode::TooManyStreams,
                format!(
                    "You hold {} event streams open, the most one subject may (BERTH_MAX_STREAMS_PER_SUBJECT); close one and retry.",
                    self.streams.max
                ),
            )
            .with_retry_after(5)
        })
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// Event streams open now (all subjects).
    pub fn streams_open(&self) -> usize {
        self.streams.held.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }

    /// Remember an exec instance made by `owner`.
    /// Refuse a new exec instance when `owner` holds too many that were never started.
    pub fn check_exec_quota(&self, owner: &str) -> Result<(), SessionError> {
        let mut execs = self.execs.lock().expect("exec registry lock");
        execs.retain(|_, r| r.claimed || r.created.elapsed() < EXEC_TTL);
        let unstarted = execs.values().filter(|r| !r.claimed && r.owner == owner).count();
        if unstarted >= MAX_UNSTARTED_EXECS_PER_OWNER {
            return Err(SessionError::new(
                ErrorCode::TooManySessions,
                format!(
                    "{unstarted} exec instances of yours were created and never started; start them (GET /v1/exec/{{id}}/ws) or wait for them to expire."
                ),
            )
            .with_retry_after(60));
        }
        Ok(())
    }

    pub fn register_exec(&self, id: &str, owner: &str, host: &str, container_id: &str, spec: &ExecSpec) {
        let mut execs = self.execs.lock().expect("exec registry lock");
        execs.retain(|_, r| r.claimed || r.created.elapsed() < EXEC_TTL);
        execs.insert(
            id.to_string(),
            ExecRecord {
                owner: owner.to_string(),
                container_id: container_id.to_string(),
                host: host.to_string(),
                spec: spec.clone(),
                created: Instant::now(),
                claimed: false,
            },
        );
    }

    /// Claim an exec instance for starting: 404 `not_found` when Berth made none by this
    /// id for this caller (admins may start anyone's), 409 `conflict` when it was started.
    pub fn claim_exec(&self, id: &str, who: &Principal) -> Result<ExecClaim, SessionError> {
        let mut execs = self.execs.lock().expect("exec registry lock");
        let elsewhere = if self.several_replicas {
            " Exec instances live in the Berth replica that created them: with several replicas, \
             send the create and the WebSocket to the same replica (a sticky route at the proxy)."
        } else {
            ""
        };
        let not_found = || {
            SessionError::new(ErrorCode::NotFound, format!(
                "No exec instance `{id}` of yours: create one with POST /v1/containers/{{id}}/exec (it can be started once, by its creator, within an hour).{elsewhere}"
            ))
        };
        let record = execs.get_mut(id).ok_or_else(not_found)?;
        if record.owner != who.subject && !who.is_admin() {
            return Err(not_found());
        }
        if record.claimed {
            return Err(SessionError::new(
                ErrorCode::Conflict,
                format!("Exec instance `{id}` was already started; create a new one."),
            ));
        }
        record.claimed = true;
        Ok(ExecClaim { execs: self.execs.clone(), id: id.to_string(), record: record.clone(), started: false })
    }
}

/// A claimed exec instance. Dropped before [`ExecClaim::started`], it can be claimed
/// again; after, it is forgotten (an exec instance runs once).
pub struct ExecClaim {
    execs: Arc<Mutex<HashMap<String, ExecRecord>>>,
    pub id: String,
    pub record: ExecRecord,
    started: bool,
}

impl ExecClaim {
    pub fn started(&mut self) {
        self.started = true;
    }
}

impl Drop for ExecClaim {
    fn drop(&mut self) {
        let mut execs = self.execs.lock().expect("exec registry lock");
        if self.started {
            execs.remove(&self.id);
        } else if let Some(r) = execs.get_mut(&self.id) {
            r.claimed = false;
        }
    }
}

/// What a session is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionTarget {
    /// A container's own stdio (`docker attach`).
    Attach { container_id: String },
    /// An exec instance (`docker exec`).
    Exec { container_id: String, exec_id: String },
}

impl SessionTarget {
    pub fn container_id(&self) -> &str {
        match self {
            SessionTarget::Attach { container_id } | SessionTarget::Exec { container_id, .. } => container_id,
        }
    }
    pub fn exec_id(&self) -> Option<&str> {
        match self {
            SessionTarget::Attach { .. } => None,
            SessionTarget::Exec { exec_id, .. } => Some(exec_id),
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            SessionTarget::Attach { .. } => "attach",
            SessionTarget::Exec { .. } => "exec",
        }
    }
}

/// Who did what, for the audit trail.
#[derive(Debug, Clone)]
pub struct SessionAudit {
    pub subject: String,
    pub target: SessionTarget,
    pub tty: bool,
    /// The exec's command, user and privileges (`None` for an attach).
    pub exec: Option<ExecSpec>,
}

/// A moment in a session's life.
#[derive(Debug, Clone)]
pub enum SessionPhase<'a> {
    /// An exec instance was created (not started yet).
    ExecCreated,
    /// The WebSocket is open and connected to the process.
    Started,
    /// The session ended: why (`exited`, `detached`, `client_closed`, `client_gone`,
    /// `idle_timeout`, `engine_error`, `protocol_error`), the exit code when known, and
    /// what went through it.
    Ended { reason: &'a str, exit_code: Option<i64>, duration: Duration, stdin_bytes: u64, output_bytes: u64 },
}

/// The one place interactive sessions are audited: every exec creation, session start
/// and session end goes through here. Today a structured log line (target
/// `berth::audit`); an audit store hooks in here. Never given stdin or output, nor the
/// exec's environment values (secrets live there); the command line is recorded, as the
/// engine's own events do.
pub fn audit_session(audit: &SessionAudit, phase: &SessionPhase<'_>) {
    let exec = audit.exec.as_ref();
    let cmd = exec.map(|e| e.cmd.join(" "));
    let user = exec.and_then(|e| e.user.as_deref());
    let privileged = exec.is_some_and(|e| e.privileged);
    let env_keys =
        exec.map(|e| e.env.iter().map(|kv| kv.split('=').next().unwrap_or("")).collect::<Vec<_>>().join(","));
    let kind = audit.target.kind();
    let (subject, container_id, exec_id, tty) =
        (audit.subject.as_str(), audit.target.container_id(), audit.target.exec_id(), audit.tty);
    match phase {
        SessionPhase::ExecCreated => tracing::info!(
            target: "berth::audit", event = "exec_created", kind, subject, container_id, exec_id, tty,
            cmd, user, privileged, env_keys, "exec instance created"
        ),
        SessionPhase::Started => tracing::info!(
            target: "berth::audit", event = "session_started", kind, subject, container_id, exec_id, tty,
            cmd, user, privileged, "interactive session started"
        ),
        SessionPhase::Ended { reason, exit_code, duration, stdin_bytes, output_bytes } => tracing::info!(
            target: "berth::audit", event = "session_ended", kind, subject, container_id, exec_id, tty,
            reason, exit_code, duration_ms = duration.as_millis() as u64, stdin_bytes, output_bytes,
            "interactive session ended"
        ),
    }
}

/// Fail early, with a problem, when the request is not a WebSocket handshake.
pub fn check_handshake(req: &HttpRequest) -> Result<(), SessionError> {
    actix_http::ws::verify_handshake(req.head()).map_err(|e| {
        SessionError::invalid(format!(
            "This route is a WebSocket: connect with `Connection: Upgrade`, `Upgrade: websocket` ({e})."
        ))
    })
}

/// A browser's handshake (one with `Origin`) is accepted only from an origin listed in
/// `allowed` (`BERTH_CORS_ORIGINS`, `*` for any) or from the service's own: the scheme
/// and `Host` the request was addressed to. Else 403 `forbidden`, before the upgrade, so
/// a page elsewhere cannot open a shell with a token it got hold of. Without `Origin`
/// (not a browser) the token alone decides.
pub fn check_origin(req: &HttpRequest, allowed: &[String]) -> Result<(), SessionError> {
    let Some(origin) = req.headers().get(actix_web::http::header::ORIGIN) else {
        return Ok(());
    };
    let info = req.connection_info();
    let own = format!("{}://{}", info.scheme(), info.host());
    match origin.to_str() {
        Ok(origin) if origin_allowed(origin, &own, allowed) => Ok(()),
        _ => Err(SessionError::new(
            ErrorCode::Forbidden,
            format!(
                "WebSocket handshakes from the origin `{}` are refused: only {own} and the origins in BERTH_CORS_ORIGINS may open sessions.",
                String::from_utf8_lossy(origin.as_bytes()).chars().take(200).collect::<String>().escape_debug()
            ),
        )),
    }
}

/// Is `origin` the service's own (`own`, `scheme://host[:port]`) or listed in `allowed`?
/// Compared without case, and without a scheme's default port.
fn origin_allowed(origin: &str, own: &str, allowed: &[String]) -> bool {
    fn normal(o: &str) -> String {
        let o = o.trim().trim_end_matches('/').to_ascii_lowercase();
        match o.strip_suffix(":80").filter(|_| o.starts_with("http://")) {
            Some(bare) => bare.to_string(),
            None => o.strip_suffix(":443").filter(|_| o.starts_with("https://")).unwrap_or(&o).to_string(),
        }
    }
    let origin = normal(origin);
    origin == normal(own) || allowed.iter().any(|a| a.trim() == "*" || normal(a) == origin)
}

/// The `cols`/`rows` query pair: both or neither, 1–10000.
pub fn initial_size(cols: Option<u16>, rows: Option<u16>) -> Result<Option<(u16, u16)>, SessionError> {
    match (cols, rows) {
        (None, None) => Ok(None),
        (Some(c), Some(r)) if (1..=10_000).contains(&c) && (1..=10_000).contains(&r) => Ok(Some((c, r))),
        _ => Err(SessionError::invalid("`cols` and `rows` go together, each between 1 and 10000")),
    }
}

/// Everything a session needs once the engine connection is open.
pub struct SessionParams {
    pub engine: Arc<Engine>,
    pub audit: SessionAudit,
    /// Whether the client may write to stdin (the process has it open).
    pub stdin: bool,
    pub idle_timeout: Duration,
    pub permit: SessionPermit,
    /// The exec instance's registration, forgotten when the session ends.
    pub exec_claim: Option<ExecClaim>,
}

impl Sessions {
    /// Upgrade to a WebSocket and run the session on this worker. The 101 answer carries
    /// `x-berth-tty: true|false`, which says how binary frames are framed.
    pub fn upgrade(
        &self,
        req: &HttpRequest,
        body: web::Payload,
        params: SessionParams,
        stdio: Stdio,
    ) -> Result<HttpResponse, SessionError> {
        let (mut response, session, messages) =
            actix_ws::handle(req, body).map_err(|e| SessionError::invalid(format!("WebSocket handshake failed: {e}")))?;
        let messages = messages
            .max_frame_size(MAX_CLIENT_MESSAGE)
            .aggregate_continuations()
            .max_continuation_size(MAX_CLIENT_MESSAGE);
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-berth-tty"),
            actix_web::http::header::HeaderValue::from_static(if params.audit.tty { "true" } else { "false" }),
        );
        // The session's log lines keep the upgrade request's span (request id, subject).
        let span = tracing::Span::current();
        actix_web::rt::spawn(tracing::Instrument::instrument(run_session(params, stdio, session, messages), span));
        Ok(response)
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_go_together() {
        assert_eq!(initial_size(None, None).unwrap(), None);
        assert_eq!(initial_size(Some(80), Some(24)).unwrap(), Some((80, 24)));
        for (c, r) in [(Some(80), None), (None, Some(3)), (Some(0), Some(3)), (Some(80), Some(20_000))] {
            assert!(initial_size(c, r).is_err());
        }
    }

    fn principal(sub: &str, role: crate::domain::identity::Role) -> Principal {
        Principal::new(sub, Some(role), u64::MAX)
    }

    #[test]
    fn origins_the_service_allows() {
        let own = "http://127.0.0.1:8080";
        let listed = vec!["https://console.example".to_string()];
        for ok in ["http://127.0.0.1:8080", "HTTP://127.0.0.1:8080/", "https://console.example", "https://console.example:443"] {
            assert!(origin_allowed(ok, own, &listed), "{ok}");
        }
        for bad in ["http://evil.example", "null", "http://127.0.0.1:8081", "https://127.0.0.1:8080", "http://console.example"] {
            assert!(!origin_allowed(bad, own, &listed), "{bad}");
        }
        assert!(origin_allowed("http://anything.example", own, &["*".to_string()]));
        assert!(origin_allowed("http://berth.example", "http://berth.example:80", &[]), "default ports");
    }

    #[test]
    fn subject_slots_count_per_subject_and_come_back() {
        let slots = SubjectSlots::new(2);
        let (a1, _a2) = (slots.take("alice").unwrap(), slots.take("alice").unwrap());
        assert!(slots.take("alice").is_none());
        let _b = slots.take("bob").expect("another subject has its own count");
        drop(a1);
        assert!(slots.take("alice").is_some());
    }

    #[test]
    fn exec_instances_start_once_by_their_creator() {
        let settings = Settings::with_key(crate::config::JwtKey::Secret("0123456789abcdef".to_string().into()));
        let sessions = Sessions::new(&settings);
        let spec =
            ExecSpec { cmd: vec!["sh".into()], tty: false, env: vec![], workdir: None, user: None, privileged: false };
        sessions.register_exec("e1", "alice", "local", "c1", &spec);
        use crate::domain::identity::Role::*;
        assert_eq!(sessions.claim_exec("e1", &principal("bob", Operator)).err().unwrap().code, ErrorCode::NotFound);
        assert_eq!(sessions.claim_exec("nope", &principal("alice", Operator)).err().unwrap().code, ErrorCode::NotFound);
        let claim = sessions.claim_exec("e1", &principal("alice", Operator)).unwrap();
        assert_eq!(sessions.claim_exec("e1", &principal("root", Admin)).err().unwrap().code, ErrorCode::Conflict);
        drop(claim); // not started: may be claimed again
        let mut claim = sessions.claim_exec("e1", &principal("root", Admin)).unwrap();
        claim.started();
        drop(claim); // started: forgotten
        assert_eq!(sessions.claim_exec("e1", &principal("alice", Operator)).err().unwrap().code, ErrorCode::NotFound);
    }
}
