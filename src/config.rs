//! Settings from the environment (`BERTH_*`, `DOCKER_HOST`). See the README's table.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::SecretString;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    Auto,
    Json,
    Pretty,
}

/// How tokens are verified: a shared HS256 secret, or a public key (RS256/ES256).
#[derive(Debug, Clone)]
pub enum JwtKey {
    Secret(SecretString),
    PublicKey { algorithm: jsonwebtoken::Algorithm, pem: Vec<u8> },
}

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub key: JwtKey,
    /// The claim that names the caller's team (`BERTH_JWT_TEAM_CLAIM`, default `team`).
    pub team_claim: String,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Concurrency per job kind.
#[derive(Debug, Clone, Copy)]
pub struct Concurrency {
    pub build: usize,
    pub pull: usize,
    pub push: usize,
    pub run: usize,
    pub prune: usize,
}

impl Default for Concurrency {
    fn default() -> Self {
        Self { build: 2, pull: 4, push: 4, run: 8, prune: 1 }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    pub data_dir: PathBuf,
    pub jwt: JwtSettings,
    /// `None`: the local socket (`unix:///var/run/docker.sock`).
    pub docker_host: Option<String>,
    /// The engines Berth drives, by name (`BERTH_ENGINES_FILE`, TOML); `None`: one
    /// engine `local` at `docker_host`.
    pub engines_file: Option<PathBuf>,
    pub log_format: LogFormat,
    /// Largest JSON body accepted, in bytes.
    pub json_limit: usize,
    /// Jobs allowed to wait in the queue; beyond it `429 queue_full`.
    pub queue_capacity: usize,
    pub concurrency: Concurrency,
    /// Log events stored per job before further output is dropped (and said so).
    pub job_log_events_max: u64,
    /// How long running jobs may take to finish on shutdown before they are interrupted.
    pub shutdown_grace: Duration,
    /// Serve `/metrics` without a token.
    pub metrics_public: bool,
    /// An opaque token that opens `/metrics` and nothing else (`BERTH_METRICS_TOKEN_FILE`).
    pub metrics_token: Option<SecretString>,
    /// Largest build context accepted, in bytes.
    pub build_context_max: u64,
    /// Build contexts uploading at once; beyond it 429.
    pub max_uploads: usize,
    /// How long audit records are kept.
    pub audit_retention: Duration,
    /// How long finished jobs (and their events) are kept.
    pub job_retention: Duration,
    /// Registry credentials per host (docker `config.json` format).
    pub registry_auth_file: Option<PathBuf>,
    /// An interactive session (attach, exec) with no frame either way for this long is
    /// closed by the server. `Duration::ZERO`: never.
    pub ws_idle_timeout: Duration,
    /// Interactive sessions open at once; beyond it `429 too_many_sessions`.
    pub ws_max_sessions: usize,
    /// Origins allowed to call Berth from a browser (`BERTH_CORS_ORIGINS`, comma-separated,
    /// `*` for any); WebSocket handshakes from other origins but the service's own are 403.
    pub cors_origins: Vec<String>,
    /// How long a stream ticket lives (`BERTH_TICKET_TTL`, 1-60 s, default 60 s).
    pub ticket_ttl: Duration,
    /// Image allow-list and default container limits.
    pub policy: crate::domain::policy::RunPolicy,
    /// What any one caller may consume.
    pub bounds: Bounds,
    /// Berth's own container, an id or a name (`BERTH_SELF_CONTAINER`); found at start
    /// when unset. Nobody stops, removes, execs into or attaches to it through Berth.
    pub self_container: Option<String>,
    /// Who owns unlabelled engine objects (`BERTH_UNMANAGED`).
    pub unmanaged: Unmanaged,
    /// The key that seals job rows (HMAC over id, owner, kind, request, authority and
    /// spool): a row changed behind the API's back is refused. From
    /// `BERTH_JOB_SEAL_KEY_FILE`, else derived from the JWT key; never in the data dir.
    pub seal_key: SecretBytes,
    /// `BERTH_DATABASE_URL` (`postgres://...`): jobs, events and the audit log in
    /// PostgreSQL, shared by several replicas; `None`: the embedded SQLite store.
    pub database_url: Option<SecretString>,
    /// A replica that has not renewed its lease for this long is dead: its running jobs
    /// end `interrupted` and its queued ones run elsewhere (`BERTH_LEASE_TTL`, default 30 s).
    pub lease_ttl: Duration,
    /// This replica's name (`BERTH_REPLICA_ID`); default: the host name and a random suffix.
    pub replica_id: Option<String>,
    /// Connections to PostgreSQL this replica holds at most (`BERTH_DATABASE_POOL`).
    pub database_pool: usize,
}

/// A comma-separated list, trimmed, without empty entries.
fn list_of(v: Option<String>) -> Vec<String> {
    v.map(|v| v.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()).unwrap_or_default()
}

pub use crate::domain::scope::Unmanaged;

/// Key material that `Debug` never prints.
#[derive(Clone, Default)]
pub struct SecretBytes(pub Vec<u8>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBytes(..)")
    }
}

/// Bounds on what one caller (or one job) may consume. Each has a `BERTH_*` variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Log bytes stored per job (`BERTH_JOB_LOG_BYTES_MAX`); past it one notice.
    pub job_log_bytes_max: u64,
    /// Largest stored job request, in bytes of JSON (`BERTH_JOB_REQUEST_MAX`; 413 beyond).
    pub job_request_max: usize,
    /// A build upload that sends nothing for this long is cut off (`BERTH_UPLOAD_IDLE_TIMEOUT`).
    pub upload_idle_timeout: Duration,
    /// Build contexts one subject may upload at once (`BERTH_MAX_UPLOADS_PER_SUBJECT`).
    pub max_uploads_per_subject: usize,
    /// Event streams and log follows one subject may hold open (`BERTH_MAX_STREAMS_PER_SUBJECT`).
    pub max_streams_per_subject: usize,
    /// Interactive sessions one subject may hold open (`BERTH_WS_MAX_SESSIONS_PER_SUBJECT`).
    pub ws_max_sessions_per_subject: usize,
    /// Free bytes the data dir's file system must keep; below it uploads and job
    /// submits answer 507 (`BERTH_MIN_FREE_BYTES`).
    pub min_free_bytes: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            job_log_bytes_max: 16 * 1024 * 1024,
            job_request_max: 64 * 1024,
            upload_idle_timeout: Duration::from_secs(30),
            max_uploads_per_subject: 2,
            max_streams_per_subject: 32,
            ws_max_sessions_per_subject: 8,
            min_free_bytes: 512 * 1024 * 1024,
        }
    }
}

const SEAL_LABEL: &str = "berth job seal v1";

/// HMAC-SHA256 of `label` keyed with `key`: one key per use, derived from one secret.
pub fn derive_key(key: &[u8], label: &str) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

impl Settings {
    /// Settings with defaults and the given JWT key: what tests and `from_env` start from.
    pub fn with_key(key: JwtKey) -> Self {
        let seal_material = match &key {
            JwtKey::Secret(secret) => secrecy::ExposeSecret::expose_secret(secret).as_bytes().to_vec(),
            JwtKey::PublicKey { pem, .. } => pem.clone(),
        };
        Self {
            seal_key: SecretBytes(derive_key(&seal_material, SEAL_LABEL)),
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            jwt: JwtSettings { key, team_claim: "team".into(), issuer: None, audience: None, leeway: Duration::from_secs(5) },
            docker_host: None,
            engines_file: None,
            log_format: LogFormat::Auto,
            json_limit: 1024 * 1024,
            queue_capacity: 1000,
            concurrency: Concurrency::default(),
            job_log_events_max: 10_000,
            shutdown_grace: Duration::from_secs(30),
            metrics_public: false,
            metrics_token: None,
            build_context_max: 16 * 1024 * 1024 * 1024,
            max_uploads: 4,
            audit_retention: Duration::from_secs(90 * 24 * 3600),
            job_retention: Duration::from_secs(30 * 24 * 3600),
            registry_auth_file: None,
            ws_idle_timeout: Duration::from_secs(600),
            ws_max_sessions: 64,
            cors_origins: Vec::new(),
            ticket_ttl: crate::domain::identity::MAX_TICKET_TTL,
            policy: crate::domain::policy::RunPolicy { default_pids_limit: Some(4096), ..Default::default() },
            bounds: Bounds::default(),
            self_container: None,
            unmanaged: Unmanaged::Default,
            database_url: None,
            lease_ttl: Duration::from_secs(30),
            replica_id: None,
            database_pool: 16,
        }
    }

    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let secret = match (get("BERTH_JWT_SECRET"), get("BERTH_JWT_SECRET_FILE")) {
            (Some(_), Some(_)) => bail!("both BERTH_JWT_SECRET and BERTH_JWT_SECRET_FILE are set; set one"),
            (Some(s), None) => Some(s),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading BERTH_JWT_SECRET_FILE {path}"))?;
                Some(text.trim_end_matches(['\n', '\r']).to_string())
            }
            (None, None) => None,
        };
        let key = match (secret, get("BERTH_JWT_PUBLIC_KEY_FILE")) {
            (Some(_), Some(_)) => bail!(
                "both BERTH_JWT_SECRET (or _FILE) and BERTH_JWT_PUBLIC_KEY_FILE are set; set exactly one"
            ),
            (Some(secret), None) => {
                if secret.len() < 16 {
                    bail!("BERTH_JWT_SECRET is too short: use at least 16 bytes (for example `openssl rand -hex 32`)");
                }
                JwtKey::Secret(SecretString::from(secret))
            }
            (None, Some(path)) => {
                let pem = std::fs::read(&path)
                    .with_context(|| format!("reading BERTH_JWT_PUBLIC_KEY_FILE {path}"))?;
                JwtKey::PublicKey { algorithm: public_key_algorithm(&pem)?, pem }
            }
            (None, None) => bail!(
                "no JWT key configured: set BERTH_JWT_SECRET to a shared secret of at least 16 bytes \
                 (for example `export BERTH_JWT_SECRET=$(openssl rand -hex 32)`), BERTH_JWT_SECRET_FILE to a \
                 file holding one, or \
                 BERTH_JWT_PUBLIC_KEY_FILE to a PEM public key (RS256 or ES256)"
            ),
        };
        let mut s = Self::with_key(key);
        if let Some(path) = get("BERTH_JOB_SEAL_KEY_FILE") {
            let material = std::fs::read(&path).with_context(|| format!("reading BERTH_JOB_SEAL_KEY_FILE {path}"))?;
            if material.len() < 16 {
                bail!("BERTH_JOB_SEAL_KEY_FILE holds fewer than 16 bytes: use `openssl rand -hex 32 > FILE`");
            }
            s.seal_key = SecretBytes(derive_key(&material, SEAL_LABEL));
        }
        if let Some(v) = get("BERTH_LISTEN") {
            s.listen = v;
        }
        if let Some(v) = get("BERTH_DATA_DIR") {
            s.data_dir = PathBuf::from(v);
        }
        s.jwt.issuer = get("BERTH_JWT_ISSUER");
        if let Some(claim) = get("BERTH_JWT_TEAM_CLAIM") {
            s.jwt.team_claim = claim;
        }
        s.unmanaged = match get("BERTH_UNMANAGED").as_deref() {
            None | Some("default") => Unmanaged::Default,
            Some("admin") => Unmanaged::Admin,
            Some("read") => Unmanaged::Read,
            Some(other) => bail!("BERTH_UNMANAGED must be `default`, `admin` or `read`, not `{other}`"),
        };
        s.policy.team_images = list_of(get("BERTH_TEAM_IMAGES"));
        s.jwt.audience = get("BERTH_JWT_AUDIENCE");
        s.docker_host = get("DOCKER_HOST");
        s.engines_file = get("BERTH_ENGINES_FILE").map(PathBuf::from);
        if let Some(v) = get("BERTH_LOG_FORMAT") {
            s.log_format = match v.as_str() {
                "json" => LogFormat::Json,
                "pretty" => LogFormat::Pretty,
                other => bail!("BERTH_LOG_FORMAT must be `json` or `pretty`, not `{other}`"),
            };
        }
        let num = |name: &str, default: u64| -> anyhow::Result<u64> {
            match get(name) {
                None => Ok(default),
                Some(v) => v.parse::<u64>().with_context(|| format!("{name} must be a whole number, not `{v}`")),
            }
        };
        s.json_limit = num("BERTH_JSON_LIMIT", s.json_limit as u64)? as usize;
        s.queue_capacity = num("BERTH_QUEUE_CAPACITY", s.queue_capacity as u64)? as usize;
        let c = &mut s.concurrency;
        c.build = num("BERTH_CONCURRENCY_BUILD", c.build as u64)?.max(1) as usize;
        c.pull = num("BERTH_CONCURRENCY_PULL", c.pull as u64)?.max(1) as usize;
        c.push = num("BERTH_CONCURRENCY_PUSH", c.push as u64)?.max(1) as usize;
        c.run = num("BERTH_CONCURRENCY_RUN", c.run as u64)?.max(1) as usize;
        c.prune = num("BERTH_CONCURRENCY_PRUNE", c.prune as u64)?.max(1) as usize;
        s.job_log_events_max = num("BERTH_JOB_LOG_EVENTS_MAX", s.job_log_events_max)?;
        if let Some(v) = get("BERTH_SHUTDOWN_GRACE") {
            s.shutdown_grace = humantime::parse_duration(&v)
                .with_context(|| format!("BERTH_SHUTDOWN_GRACE must be a duration such as `30s`, not `{v}`"))?;
        }
        s.build_context_max = num("BERTH_BUILD_CONTEXT_MAX", s.build_context_max)?;
        s.max_uploads = num("BERTH_MAX_UPLOADS", s.max_uploads as u64)?.max(1) as usize;
        if let Some(v) = get("BERTH_WS_IDLE_TIMEOUT") {
            // A bare number is seconds; `0` turns the idle timeout off.
            s.ws_idle_timeout = match v.parse::<u64>() {
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => humantime::parse_duration(&v).with_context(|| {
                    format!("BERTH_WS_IDLE_TIMEOUT must be a duration such as `10m` or `90s` (0: never), not `{v}`")
                })?,
            };
        }
        s.ws_max_sessions = num("BERTH_WS_MAX_SESSIONS", s.ws_max_sessions as u64)?.max(1) as usize;
        s.registry_auth_file = get("BERTH_REGISTRY_AUTH_FILE").map(PathBuf::from);
        if let Some(v) = get("BERTH_ALLOWED_IMAGES") {
            s.policy.allowed_images = v.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect();
        }
        let list = list_of;
        s.policy.allowed_volumes = list(get("BERTH_ALLOWED_VOLUMES"));
        s.policy.build_remote_allow = list(get("BERTH_BUILD_REMOTE_ALLOW"));
        s.cors_origins = list(get("BERTH_CORS_ORIGINS"));
        if let Some(v) = get("BERTH_TICKET_TTL") {
            let ttl = match v.parse::<u64>() {
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => humantime::parse_duration(&v).unwrap_or(Duration::ZERO),
            };
            if ttl < Duration::from_secs(1) || ttl > crate::domain::identity::MAX_TICKET_TTL {
                bail!("BERTH_TICKET_TTL must be between 1 and 60 seconds (`30`, `30s`), not `{v}`");
            }
            s.ticket_ttl = ttl;
        }
        let opt_num = |name: &str| -> anyhow::Result<Option<i64>> {
            get(name).map(|v| v.parse::<i64>().with_context(|| format!("{name} must be a whole number, not `{v}`"))).transpose()
        };
        s.policy.max_memory_bytes = opt_num("BERTH_MAX_MEMORY_BYTES")?;
        s.policy.max_nano_cpus = opt_num("BERTH_MAX_NANO_CPUS")?;
        s.policy.default_pids_limit = opt_num("BERTH_DEFAULT_PIDS_LIMIT")?.or(s.policy.default_pids_limit);
        s.self_container = get("BERTH_SELF_CONTAINER");
        if let Some(v) = get("BERTH_DEFAULT_MEMORY_BYTES") {
            s.policy.default_memory_bytes =
                Some(v.parse().with_context(|| format!("BERTH_DEFAULT_MEMORY_BYTES must be bytes, not `{v}`"))?);
        }
        if let Some(v) = get("BERTH_DEFAULT_NANO_CPUS") {
            s.policy.default_nano_cpus =
                Some(v.parse().with_context(|| format!("BERTH_DEFAULT_NANO_CPUS must be a whole number, not `{v}`"))?);
        }
        if let Some(v) = get("BERTH_JOB_RETENTION") {
            s.job_retention = humantime::parse_duration(&v)
                .with_context(|| format!("BERTH_JOB_RETENTION must be a duration such as `30d`, not `{v}`"))?;
        }
        if let Some(v) = get("BERTH_AUDIT_RETENTION") {
            s.audit_retention = humantime::parse_duration(&v)
                .with_context(|| format!("BERTH_AUDIT_RETENTION must be a duration such as `90d`, not `{v}`"))?;
        }
        let b = &mut s.bounds;
        b.job_log_bytes_max = num("BERTH_JOB_LOG_BYTES_MAX", b.job_log_bytes_max)?.max(1024);
        b.job_request_max = num("BERTH_JOB_REQUEST_MAX", b.job_request_max as u64)?.max(1024) as usize;
        if let Some(v) = get("BERTH_UPLOAD_IDLE_TIMEOUT") {
            b.upload_idle_timeout = match v.parse::<u64>() {
                Ok(secs) => Duration::from_secs(secs.max(1)),
                Err(_) => humantime::parse_duration(&v)
                    .with_context(|| format!("BERTH_UPLOAD_IDLE_TIMEOUT must be a duration such as `30s`, not `{v}`"))?,
            };
        }
        b.max_uploads_per_subject = num("BERTH_MAX_UPLOADS_PER_SUBJECT", b.max_uploads_per_subject as u64)?.max(1) as usize;
        b.max_streams_per_subject = num("BERTH_MAX_STREAMS_PER_SUBJECT", b.max_streams_per_subject as u64)?.max(1) as usize;
        b.ws_max_sessions_per_subject =
            num("BERTH_WS_MAX_SESSIONS_PER_SUBJECT", b.ws_max_sessions_per_subject as u64)?.max(1) as usize;
        b.min_free_bytes = num("BERTH_MIN_FREE_BYTES", b.min_free_bytes)?;
        if let Some(path) = get("BERTH_METRICS_TOKEN_FILE") {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading BERTH_METRICS_TOKEN_FILE {path}"))?;
            let token = text.trim();
            if token.len() < 16 || token.chars().any(char::is_whitespace) {
                bail!("BERTH_METRICS_TOKEN_FILE must hold one token of at least 16 characters (for example `openssl rand -hex 32 > FILE`)");
            }
            s.metrics_token = Some(SecretString::from(token.to_string()));
        }
        let url = match (get("BERTH_DATABASE_URL"), get("BERTH_DATABASE_URL_FILE")) {
            (Some(_), Some(_)) => bail!("both BERTH_DATABASE_URL and BERTH_DATABASE_URL_FILE are set; set one"),
            (Some(url), None) => Some(url),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading BERTH_DATABASE_URL_FILE {path}"))?;
                Some(text.trim().to_string())
            }
            (None, None) => None,
        };
        if let Some(url) = url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!("BERTH_DATABASE_URL must be a PostgreSQL URL (`postgres://user:password@host:5432/db`); unset it for the embedded SQLite store");
            }
            s.database_url = Some(SecretString::from(url));
        }
        if let Some(v) = get("BERTH_LEASE_TTL") {
            let ttl = match v.parse::<u64>() {
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => humantime::parse_duration(&v)
                    .with_context(|| format!("BERTH_LEASE_TTL must be a duration such as `30s`, not `{v}`"))?,
            };
            if ttl < Duration::from_secs(1) {
                bail!("BERTH_LEASE_TTL must be at least 1 second, not `{v}`");
            }
            s.lease_ttl = ttl;
        }
        if let Some(id) = get("BERTH_REPLICA_ID") {
            if id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                bail!("BERTH_REPLICA_ID must be 1-64 letters, digits, `-`, `_` or `.`, not `{id}`");
            }
            s.replica_id = Some(id);
        }
        s.database_pool = num("BERTH_DATABASE_POOL", s.database_pool as u64)?.clamp(2, 1000) as usize;
        if let Some(v) = get("BERTH_METRICS_PUBLIC") {
            s.metrics_public = matches!(v.as_str(), "1" | "true" | "yes");
        }
        Ok(s)
    }
}

/// RS256 for an RSA key, ES256 for a P-256 EC key.
fn public_key_algorithm(pem: &[u8]) -> anyhow::Result<jsonwebtoken::Algorithm> {
    use jsonwebtoken::{Algorithm, DecodingKey};
    if DecodingKey::from_rsa_pem(pem).is_ok() {
        Ok(Algorithm::RS256)
    } else if DecodingKey::from_ec_pem(pem).is_ok() {
        Ok(Algorithm::ES256)
    } else {
        bail!("BERTH_JWT_PUBLIC_KEY_FILE does not hold an RSA or EC public key in PEM form")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn refuses_to_start_without_a_key_and_says_how() {
        let err = Settings::from_lookup(env(&[])).unwrap_err().to_string();
        assert!(err.contains("BERTH_JWT_SECRET") && err.contains("BERTH_JWT_PUBLIC_KEY_FILE"), "{err}");
        let err = Settings::from_lookup(env(&[("BERTH_JWT_SECRET", "short")])).unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
    }

    #[test]
    fn reads_the_environment() {
        let s = Settings::from_lookup(env(&[
            ("BERTH_JWT_SECRET", "0123456789abcdef0123"),
            ("BERTH_LISTEN", "0.0.0.0:9000"),
            ("BERTH_QUEUE_CAPACITY", "7"),
            ("BERTH_CONCURRENCY_BUILD", "3"),
            ("BERTH_LOG_FORMAT", "json"),
            ("BERTH_SHUTDOWN_GRACE", "2s"),
            ("BERTH_JWT_ISSUER", "idp"),
            ("BERTH_WS_IDLE_TIMEOUT", "90s"),
            ("BERTH_WS_MAX_SESSIONS", "3"),
        ]))
        .unwrap();
        assert_eq!(s.ws_idle_timeout, Duration::from_secs(90));
        assert_eq!(s.ws_max_sessions, 3);
        assert_eq!(s.listen, "0.0.0.0:9000");
        assert_eq!(s.queue_capacity, 7);
        assert_eq!(s.concurrency.build, 3);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.shutdown_grace, Duration::from_secs(2));
        assert_eq!(s.jwt.issuer.as_deref(), Some("idp"));
        assert!(!format!("{:?}", s.jwt.key).contains("0123456789abcdef0123"), "Debug redacts the secret");
        let err = Settings::from_lookup(env(&[("BERTH_JWT_SECRET", "0123456789abcdef0123"), ("BERTH_QUEUE_CAPACITY", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("BERTH_QUEUE_CAPACITY"), "{err}");
    }

    #[test]
    fn the_metrics_token_comes_from_a_file_and_the_ticket_ttl_is_bounded() {
        use secrecy::ExposeSecret;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scrape");
        std::fs::write(&path, "0123456789abcdef-scrape\n").unwrap();
        let file = path.to_str().unwrap();
        let key = ("BERTH_JWT_SECRET", "0123456789abcdef0123");
        let s = Settings::from_lookup(env(&[key, ("BERTH_METRICS_TOKEN_FILE", file), ("BERTH_TICKET_TTL", "5s")])).unwrap();
        assert_eq!(s.metrics_token.as_ref().map(|t| t.expose_secret().to_string()).as_deref(), Some("0123456789abcdef-scrape"));
        assert!(!format!("{s:?}").contains("0123456789abcdef-scrape"), "Debug redacts the scrape token");
        assert_eq!(s.ticket_ttl, Duration::from_secs(5));
        assert_eq!(Settings::from_lookup(env(&[key])).unwrap().ticket_ttl, Duration::from_secs(60));
        std::fs::write(&path, "short").unwrap();
        let err = Settings::from_lookup(env(&[key, ("BERTH_METRICS_TOKEN_FILE", file)])).unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
        let err = Settings::from_lookup(env(&[key, ("BERTH_METRICS_TOKEN_FILE", "/nonexistent/berth")])).unwrap_err();
        assert!(format!("{err:#}").contains("BERTH_METRICS_TOKEN_FILE"), "{err:#}");
        for bad in ["61", "0", "2m", "soon"] {
            let err = Settings::from_lookup(env(&[key, ("BERTH_TICKET_TTL", bad)])).unwrap_err().to_string();
            assert!(err.contains("BERTH_TICKET_TTL"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_secret_may_come_from_a_file_and_seals_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        let path = path.to_str().unwrap();
        let from_file = Settings::from_lookup(env(&[("BERTH_JWT_SECRET_FILE", path)])).unwrap();
        let from_env = Settings::from_lookup(env(&[("BERTH_JWT_SECRET", "0123456789abcdef0123")])).unwrap();
        match (&from_file.jwt.key, &from_env.jwt.key) {
            (JwtKey::Secret(a), JwtKey::Secret(b)) => {
                use secrecy::ExposeSecret;
                assert_eq!(a.expose_secret(), b.expose_secret(), "the trailing newline is not part of the secret");
            }
            _ => panic!("a secret"),
        }
        assert_eq!(from_file.seal_key.0, from_env.seal_key.0);
        assert_eq!(from_env.seal_key.0.len(), 32);
        assert_ne!(from_env.seal_key.0, b"0123456789abcdef0123".to_vec(), "the seal key is derived, not the JWT secret");
        let both = Settings::from_lookup(env(&[("BERTH_JWT_SECRET_FILE", path), ("BERTH_JWT_SECRET", "0123456789abcdef0123")]));
        assert!(both.unwrap_err().to_string().contains("BERTH_JWT_SECRET_FILE"));
        let missing = Settings::from_lookup(env(&[("BERTH_JWT_SECRET_FILE", "/nonexistent/berth")])).unwrap_err();
        assert!(format!("{missing:#}").contains("/nonexistent/berth"));
    }

    #[test]
    fn the_database_url_is_postgres_and_may_come_from_a_file() {
        let key = ("BERTH_JWT_SECRET", "0123456789abcdef0123");
        let s = Settings::from_lookup(env(&[key])).unwrap();
        assert!(s.database_url.is_none(), "SQLite by default");
        assert_eq!(s.lease_ttl, Duration::from_secs(30));
        let err = Settings::from_lookup(env(&[key, ("BERTH_DATABASE_URL", "mysql://x/y")])).unwrap_err().to_string();
        assert!(err.contains("PostgreSQL URL"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "postgres://berth:pw@db:5432/berth\n").unwrap();
        let s = Settings::from_lookup(env(&[key, ("BERTH_DATABASE_URL_FILE", file.to_str().unwrap()), ("BERTH_LEASE_TTL", "5s")])).unwrap();
        let url = secrecy::ExposeSecret::expose_secret(s.database_url.as_ref().unwrap()).to_string();
        assert_eq!(url, "postgres://berth:pw@db:5432/berth");
        assert_eq!(s.lease_ttl, Duration::from_secs(5));
        assert!(Settings::from_lookup(env(&[key, ("BERTH_LEASE_TTL", "0")])).is_err(), "a lease of 0 is refused");
        assert!(Settings::from_lookup(env(&[key, ("BERTH_REPLICA_ID", "a b")])).is_err());
    }

    #[test]
    fn websocket_limits() {
        let key = ("BERTH_JWT_SECRET", "0123456789abcdef0123");
        let s = Settings::from_lookup(env(&[key])).unwrap();
        assert_eq!((s.ws_idle_timeout, s.ws_max_sessions), (Duration::from_secs(600), 64), "defaults");
        let s = Settings::from_lookup(env(&[key, ("BERTH_WS_IDLE_TIMEOUT", "45")])).unwrap();
        assert_eq!(s.ws_idle_timeout, Duration::from_secs(45), "a bare number is seconds");
        let s = Settings::from_lookup(env(&[key, ("BERTH_WS_IDLE_TIMEOUT", "0")])).unwrap();
        assert_eq!(s.ws_idle_timeout, Duration::ZERO);
        let err = Settings::from_lookup(env(&[key, ("BERTH_WS_IDLE_TIMEOUT", "soon")])).unwrap_err().to_string();
        assert!(err.contains("BERTH_WS_IDLE_TIMEOUT"), "{err}");
        let err = Settings::from_lookup(env(&[key, ("BERTH_WS_MAX_SESSIONS", "-1")])).unwrap_err().to_string();
        assert!(err.contains("BERTH_WS_MAX_SESSIONS"), "{err}");
    }
}
