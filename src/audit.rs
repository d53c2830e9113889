//! The audit log: every mutating request, every interactive session (attach, exec) and
//! every request refused for want of a token or a role, becomes one record (who, what, on what, outcome, job, client, request id),
//! stored for `GET /v1/audit` and emitted as a structured log line (target `berth::audit`).

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, web};

use crate::auth::Principal;
use crate::error::ErrorCode;
pub use crate::store::{AuditFilter, AuditLog, AuditRecord};

/// Where audit records go.
pub struct Auditor {
    log: Arc<dyn AuditLog>,
    /// Refusals of requests without a valid token, per client address and minute: past a
    /// budget they are counted, not each stored, so an anonymous flood cannot fill the disk.
    anonymous: Budget,
    /// Refusals (4xx) of requests with a valid token, per subject and minute: the same,
    /// so one token cannot fill the disk either.
    refused: Budget,
}

/// How many records of a kind are stored per key (a client, a subject) and minute, and
/// from all keys together; past it they are counted and the count logged.
struct Budget {
    what: &'static str,
    per_key: u32,
    total: u32,
    windows: std::sync::Mutex<std::collections::HashMap<String, Window>>,
}

struct Window {
    started: std::time::Instant,
    stored: u32,
    suppressed: u32,
}

/// Anonymous refusals stored per client (an IPv4 address, an IPv6 /64) and minute.
const ANONYMOUS_PER_MINUTE: u32 = 30;
/// …and from all clients together, per minute.
const ANONYMOUS_TOTAL_PER_MINUTE: u32 = 600;
/// Refusals of a token-holder stored per subject and minute (subjects come from signed
/// tokens, so there is no total).
const REFUSALS_PER_SUBJECT_PER_MINUTE: u32 = 60;

/// The longest text an audit field stores, in bytes; longer ones are cut (at a character
/// boundary) and end with `…`.
pub const FIELD_MAX: usize = 1024;

/// The budget key of a client address: the address, or its /64 for IPv6 (one host may
/// hold a whole /64).
fn client_key(client: &str) -> String {
    match client.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        _ => client.to_string(),
    }
}

impl Window {
    fn new() -> Self {
        Self { started: std::time::Instant::now(), stored: 0, suppressed: 0 }
    }
}

impl Budget {
    fn new(what: &'static str, per_key: u32, total: u32) -> Self {
        Self { what, per_key, total, windows: Default::default() }
    }

    /// Whether to store one more record for `key` (false past the budget).
    fn admit(&self, key: &str) -> bool {
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let minute = std::time::Duration::from_secs(60);
        let what = self.what;
        // All keys together: one window under the key "*".
        let total = map.entry("*".to_string()).or_insert_with(Window::new);
        if total.started.elapsed() >= minute {
            if total.suppressed > 0 {
                tracing::warn!(target: "berth::audit", suppressed = total.suppressed, "{what} past the audit budget were counted, not stored");
            }
            *total = Window::new();
            // A new minute: forget the keys of the last one.
            map.retain(|k, w| k == "*" || w.started.elapsed() < minute);
        }
        let total = map.get_mut("*").expect("the total window");
        if total.stored >= self.total {
            total.suppressed += 1;
            return false;
        }
        total.stored += 1;
        let w = map.entry(key.to_string()).or_insert_with(Window::new);
        if w.started.elapsed() >= minute {
            if w.suppressed > 0 {
                tracing::warn!(target: "berth::audit", key, suppressed = w.suppressed, "{what} past the audit budget were counted, not stored");
            }
            *w = Window::new();
        }
        if w.stored < self.per_key {
            w.stored += 1;
            true
        } else {
            w.suppressed += 1;
            // Not stored after all: give the slot back to the total.
            if let Some(t) = map.get_mut("*") {
                t.stored -= 1;
                t.suppressed += 1;
            }
            false
        }
    }
}

/// Cut `text` to [`FIELD_MAX`] bytes.
fn clip(text: &mut String) {
    if text.len() > FIELD_MAX {
        let mut end = FIELD_MAX - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

/// Every text field of a record, at most [`FIELD_MAX`] bytes: a request cannot make its
/// own record large (a long path, body or header).
fn clip_fields(rec: &mut AuditRecord) {
    clip(&mut rec.action);
    let fields = [&mut rec.subject, &mut rec.role, &mut rec.target, &mut rec.code, &mut rec.job_id, &mut rec.host, &mut rec.client, &mut rec.request_id];
    for text in fields.into_iter().flatten() {
        clip(text);
    }
}

/// What a request acted on, when the path does not say (set by handlers).
#[derive(Debug, Clone)]
pub struct AuditTarget(pub String);

/// Name what a request acted on, for its audit record.
pub fn set_target(req: &HttpRequest, target: impl Into<String>) {
    req.extensions_mut().insert(AuditTarget(target.into()));
}

/// The engine a request acted on (its audit record's `host`).
#[derive(Debug, Clone)]
pub struct AuditHost(pub String);

/// Name the engine a request acted on, for its audit record.
pub fn set_host(req: &HttpRequest, host: &str) {
    req.extensions_mut().insert(AuditHost(host.to_string()));
}

impl Auditor {
    pub fn new(log: Arc<dyn AuditLog>) -> Self {
        Self {
            log,
            anonymous: Budget::new("anonymous refusals", ANONYMOUS_PER_MINUTE, ANONYMOUS_TOTAL_PER_MINUTE),
            refused: Budget::new("refusals of a subject", REFUSALS_PER_SUBJECT_PER_MINUTE, u32::MAX),
        }
    }

    /// Whether to store this record: successes and failures always; refusals within
    /// their budget (anonymous ones per client, others per subject).
    fn admit(&self, rec: &AuditRecord) -> bool {
        match &rec.subject {
            None => self.anonymous.admit(&client_key(rec.client.as_deref().unwrap_or("-"))),
            Some(subject) if (400..500).contains(&rec.status) => self.refused.admit(subject),
            Some(_) => true,
        }
    }

    /// Delete records older than `retention`, every hour, until the process ends.
    pub fn spawn_retention(self: &Arc<Self>, retention: std::time::Duration) {
        let me = self.clone();
        crate::jobs::every_hour_before(retention, move |cutoff| {
            let me = me.clone();
            async move {
                match me.log.prune_before(&cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "audit records past BERTH_AUDIT_RETENTION removed"),
                    Err(e) => tracing::warn!(error = %e, "pruning the audit log failed"),
                }
            }
        });
    }

    pub fn log(&self) -> &Arc<dyn AuditLog> {
        &self.log
    }

    /// Record one event: logged at once, then stored.
    pub async fn record(&self, mut rec: AuditRecord) {
        if !self.admit(&rec) {
            return;
        }
        clip_fields(&mut rec);
        tracing::info!(
            target: "berth::audit",
            subject = rec.subject.as_deref().unwrap_or("-"),
            role = rec.role.as_deref().unwrap_or("-"),
            action = %rec.action,
            target_object = rec.target.as_deref().unwrap_or("-"),
            outcome = %rec.outcome,
            status = rec.status,
            code = rec.code.as_deref().unwrap_or("-"),
            job_id = rec.job_id.as_deref().unwrap_or("-"),
            host = rec.host.as_deref().unwrap_or("-"),
            client = rec.client.as_deref().unwrap_or("-"),
            "audit"
        );
        if let Err(e) = self.log.record(rec).await {
            tracing::error!(error = %e, "storing an audit record failed");
        }
    }
}

fn outcome(status: u16) -> &'static str {
    match status {
        200..=399 => "success",
        401 | 403 => "denied",
        400..=499 => "rejected",
        _ => "failed",
    }
}

/// Build a record for a request and its status; `action` defaults to the route.
pub fn record_for(req: &HttpRequest, status: u16, code: Option<ErrorCode>, action: Option<String>) -> AuditRecord {
    let principal = req.extensions().get::<Principal>().cloned();
    let route = req.match_pattern().unwrap_or_else(|| req.path().to_string());
    let params: Vec<String> = req.match_info().iter().map(|(k, v)| format!("{k}={v}")).collect();
    let target = req
        .extensions()
        .get::<AuditTarget>()
        .map(|t| t.0.clone())
        .or_else(|| (!params.is_empty()).then(|| params.join(" ")));
    let host = req.extensions().get::<AuditHost>().map(|h| h.0.clone());
    AuditRecord {
        id: crate::store::new_id(),
        at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        subject: principal.as_ref().map(|p| p.subject.clone()),
        team: principal.as_ref().map(|p| p.team.clone()),
        host,
        role: principal.and_then(|p| p.role).map(|r| r.as_str().to_string()),
        action: action.unwrap_or_else(|| format!("{} {route}", req.method())),
        target,
        outcome: outcome(status).to_string(),
        status,
        code: code.map(|c| c.as_str().to_string()),
        job_id: None,
        client: req.connection_info().peer_addr().map(String::from),
        request_id: crate::telemetry::current_request_id(),
    }
}

/// Middleware: audit mutating `/v1` requests and every refused one.
pub async fn audit_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // Opening a shell in a container is as strong as any write.
    let session = req.path().ends_with("/attach") || (req.path().starts_with("/v1/exec/") && req.path().ends_with("/ws"));
    let in_api = req.path().starts_with("/v1/") || req.path() == "/v1";
    let auditor = req.app_data::<web::Data<Auditor>>().cloned();
    let res = next.call(req).await?;
    let status = res.status().as_u16();
    let refused = status == 401 || status == 403;
    if let Some(auditor) = auditor.filter(|_| in_api && (mutating || session || refused)) {
        let code = res.response().extensions().get::<ErrorCode>().copied();
        let mut rec = record_for(res.request(), status, code, None);
        rec.job_id = res
            .headers()
            .get(actix_web::http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| l.strip_prefix("/v1/jobs/"))
            .map(String::from)
            .or_else(|| res.request().match_info().get("id").filter(|_| res.request().path().starts_with("/v1/jobs/")).map(String::from));
        auditor.record(rec).await;
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoLog;

    #[async_trait::async_trait]
    impl AuditLog for NoLog {
        async fn record(&self, _: AuditRecord) -> Result<(), crate::store::StoreError> {
            Ok(())
        }
        async fn query(&self, _: AuditFilter) -> Result<Vec<AuditRecord>, crate::store::StoreError> {
            Ok(Vec::new())
        }
        async fn prune_before(&self, _: &str) -> Result<usize, crate::store::StoreError> {
            Ok(0)
        }
    }

    fn refusal(subject: Option<&str>, client: &str) -> AuditRecord {
        AuditRecord {
            id: String::new(),
            at: String::new(),
            subject: subject.map(String::from),
            role: None,
            team: None,
            host: None,
            action: "POST /v1/x".into(),
            target: None,
            outcome: "denied".into(),
            status: 403,
            code: None,
            job_id: None,
            client: Some(client.into()),
            request_id: None,
        }
    }

    #[test]
    fn anonymous_budgets_per_client_and_in_all() {
        let a = Auditor::new(Arc::new(NoLog));
        let admitted = |subject: Option<&str>, client: &str| a.admit(&refusal(subject, client));
        assert_eq!((0..50).filter(|_| admitted(None, "10.0.0.1")).count(), 30);
        // One IPv6 /64 is one client, whatever the interface id.
        let v6 = (0..50).filter(|i| admitted(None, &format!("2001:db8:1:2::{i:x}"))).count();
        assert_eq!(v6, 30);
        // Many clients: at most the total per minute.
        let spread = (0..2000).filter(|i| admitted(None, &format!("10.1.{}.{}", i / 250, i % 250))).count();
        assert_eq!(spread, (ANONYMOUS_TOTAL_PER_MINUTE - 60) as usize);
        // A token-holder's refusals have their own budget, per subject, whatever the flood.
        assert_eq!((0..100).filter(|_| admitted(Some("alice"), "10.0.0.1")).count(), REFUSALS_PER_SUBJECT_PER_MINUTE as usize);
        assert!(admitted(Some("bob"), "10.0.0.1"));
        let mut ok = refusal(Some("alice"), "10.0.0.1");
        ok.status = 204;
        assert!(a.admit(&ok), "successes are always stored");
    }

    #[test]
    fn fields_are_clipped_at_a_character_boundary() {
        let mut rec = refusal(Some("s"), "c");
        rec.target = Some("é".repeat(5000));
        rec.action = "x".repeat(FIELD_MAX);
        clip_fields(&mut rec);
        let target = rec.target.unwrap();
        assert!(target.len() <= FIELD_MAX && target.ends_with('…'), "{}", target.len());
        assert_eq!(rec.action.len(), FIELD_MAX, "a field at the limit is kept whole");
    }
}
