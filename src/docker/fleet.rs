//! The engines Berth drives, by name: `BERTH_ENGINES_FILE` (TOML), or one engine
//! `local` from `DOCKER_HOST` without it.
//!
//! ```toml
//! [[engine]]
//! name = "build-1"
//! url = "tcp://10.0.0.5:2376"
//! ca = "/etc/berth/tls/ca.pem"
//! cert = "/etc/berth/tls/cert.pem"
//! key = "/etc/berth/tls/key.pem"
//! labels = { zone = "a" }
//! teams = ["search"]          # only these teams see and use it (admins: all)
//! concurrency = { build = 4 } # per-kind overrides of BERTH_CONCURRENCY_*
//! ```
//!
//! Each engine is its own [`DockerEngine`]: it connects, negotiates its API version and
//! reconnects on its own. The first engine of the file is the default host.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{DockerEngine, Engine, EngineInfo};
use crate::domain::identity::{Principal, is_team_name};

/// The name of the one engine when there is no engines file.
pub const LOCAL: &str = "local";

/// The job kinds a `concurrency` table may name.
const KINDS: [&str; 5] = ["build", "pull", "push", "run", "prune"];

/// How long a health probe waits for an engine.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// TLS material of a `tcp://` engine (mutual TLS, as `docker --tlsverify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One engine of the file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EngineEntry {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The teams that see and use it; none: every team.
    pub teams: Option<Vec<String>>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Per-kind overrides of `BERTH_CONCURRENCY_*` for this engine.
    #[serde(default)]
    pub concurrency: BTreeMap<String, usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnginesFile {
    #[serde(rename = "engine", default)]
    engines: Vec<EngineEntry>,
}

impl EngineEntry {
    /// The TLS files, when the entry names them (all three, or none).
    pub fn tls(&self) -> Option<TlsFiles> {
        match (&self.ca, &self.cert, &self.key) {
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() }),
            _ => None,
        }
    }

    /// The URL as Berth shows it: a password in it left out.
    pub fn public_url(&self) -> String {
        match self.url.split_once("://") {
            Some((scheme, rest)) => match rest.split_once('@') {
                Some((user, host)) => format!("{scheme}://{}@{host}", user.split(':').next().unwrap_or("")),
                None => self.url.clone(),
            },
            None => self.url.clone(),
        }
    }

    fn validate(&self, base: &Path) -> Result<(), String> {
        let name = &self.name;
        if !is_team_name(name) {
            return Err(format!("engine name `{}` must be [a-z0-9][a-z0-9_.-]{{0,62}}", name.escape_debug()));
        }
        let scheme = self.url.split_once("://").map(|(s, _)| s).unwrap_or("");
        match scheme {
            "unix" | "tcp" => {}
            "ssh" => {
                return Err(format!(
                    "engine `{name}`: ssh:// is not supported by this build (bollard's `ssh` feature is not compiled in); \
                     reach the engine over tcp:// with TLS"
                ));
            }
            _ => return Err(format!("engine `{name}`: url `{}` must be unix://PATH or tcp://HOST:PORT", self.url.escape_debug())),
        }
        let given = [&self.ca, &self.cert, &self.key].iter().filter(|f| f.is_some()).count();
        if given != 0 && given != 3 {
            return Err(format!("engine `{name}`: TLS needs all three of `ca`, `cert` and `key`"));
        }
        if given == 3 && scheme != "tcp" {
            return Err(format!("engine `{name}`: TLS files apply to tcp:// engines only"));
        }
        for f in [&self.ca, &self.cert, &self.key].into_iter().flatten() {
            let path = if f.is_absolute() { f.clone() } else { base.join(f) };
            if !path.is_file() {
                return Err(format!("engine `{name}`: no file {}", path.display()));
            }
        }
        if let Some(bad) = self.teams.iter().flatten().find(|t| !is_team_name(t)) {
            return Err(format!("engine `{name}`: `{}` in `teams` is not a team name", bad.escape_debug()));
        }
        if let Some(bad) = self.concurrency.keys().find(|k| !KINDS.contains(&k.as_str())) {
            return Err(format!("engine `{name}`: `concurrency.{bad}`: the kinds are {}", KINDS.join(", ")));
        }
        if self.concurrency.values().any(|n| *n == 0) {
            return Err(format!("engine `{name}`: a `concurrency` value must be at least 1"));
        }
        Ok(())
    }

    /// TLS paths relative to the file's directory, made absolute.
    fn resolve(mut self, base: &Path) -> Self {
        for f in [&mut self.ca, &mut self.cert, &mut self.key].into_iter().flatten() {
            if !f.is_absolute() {
                *f = base.join(&*f);
            }
        }
        self
    }
}

/// Read and check an engines file: at least one engine, unique names.
pub fn parse_engines(text: &str, base: &Path) -> Result<Vec<EngineEntry>, String> {
    let file: EnginesFile = toml::from_str(text).map_err(|e| e.to_string())?;
    if file.engines.is_empty() {
        return Err("it names no engine (`[[engine]]` tables with `name` and `url`)".into());
    }
    let mut seen = HashSet::new();
    for e in &file.engines {
        e.validate(base)?;
        if !seen.insert(e.name.clone()) {
            return Err(format!("engine `{}` is named twice", e.name));
        }
    }
    Ok(file.engines.into_iter().map(|e| e.resolve(base)).collect())
}

/// What the last health probe of a host found.
#[derive(Debug, Clone, Default)]
struct Health {
    last_ping: Option<String>,
    error: Option<String>,
}

/// One engine of the fleet.
pub struct Host {
    pub entry: EngineEntry,
    pub engine: Arc<Engine>,
    health: Mutex<Health>,
}

/// A host as `GET /v1/hosts` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HostView {
    pub name: String,
    /// Where it is (`unix://…`, `tcp://…`), without secrets.
    pub url: String,
    /// Whether this is the default host (the first of the engines file).
    pub default: bool,
    pub labels: BTreeMap<String, String>,
    /// The teams it is given (`null`: every team). Shown to admins only.
    pub teams: Option<Vec<String>>,
    /// Whether the engine answered the probe of this request.
    pub healthy: bool,
    /// When it last answered a probe, RFC 3339.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_ping: Option<String>,
    /// Why it did not answer, when it did not.
    pub error: Option<String>,
    /// The engine's version, API versions (its own and the one Berth negotiated), OS,
    /// architecture and counts; `null` while it does not answer.
    pub engine: Option<EngineInfo>,
}

impl Host {
    /// Probe the engine now (ping and info, within a few seconds) and show it.
    pub async fn probe(&self, default: bool, admin: bool) -> HostView {
        let info = match tokio::time::timeout(PROBE_TIMEOUT, self.engine.info()).await {
            Ok(Ok(info)) => Ok(info),
            Ok(Err(e)) => Err(crate::error::HasCode::detail(&e)),
            Err(_) => Err(format!("the engine did not answer within {} s", PROBE_TIMEOUT.as_secs())),
        };
        let health = {
            let mut h = self.health.lock().expect("health lock");
            match &info {
                Ok(_) => {
                    h.last_ping = Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                    h.error = None;
                }
                Err(e) => h.error = Some(e.clone()),
            }
            h.clone()
        };
        HostView {
            name: self.entry.name.clone(),
            url: self.entry.public_url(),
            default,
            labels: self.entry.labels.clone(),
            teams: if admin { self.entry.teams.clone() } else { None },
            healthy: info.is_ok(),
            last_ping: health.last_ping,
            error: health.error,
            engine: info.ok(),
        }
    }

    /// Whether `who` may see and use this host.
    pub fn open_to(&self, who: &Principal) -> bool {
        who.is_admin() || self.entry.teams.as_ref().is_none_or(|t| t.contains(&who.team))
    }
}

/// Every engine Berth drives; the first is the default.
pub struct Fleet {
    hosts: Vec<Host>,
}

impl Fleet {
    /// The fleet of `entries` (non-empty), each engine built by `make`.
    pub fn new(entries: Vec<EngineEntry>, make: impl Fn(&EngineEntry) -> DockerEngine) -> Self {
        assert!(!entries.is_empty(), "a fleet has at least one engine");
        let hosts = entries
            .into_iter()
            .map(|entry| Host { engine: Arc::new(make(&entry)), entry, health: Mutex::new(Health::default()) })
            .collect();
        Fleet { hosts }
    }

    /// One engine `local` at `docker_host` (or the local socket).
    pub fn local(docker_host: Option<String>) -> Vec<EngineEntry> {
        vec![EngineEntry {
            name: LOCAL.into(),
            url: docker_host.unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
            labels: BTreeMap::new(),
            teams: None,
            ca: None,
            cert: None,
            key: None,
            concurrency: BTreeMap::new(),
        }]
    }

    pub fn default_host(&self) -> &Host {
        &self.hosts[0]
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn get(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.entry.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_files() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let ok = r#"
            [[engine]]
            name = "a"
            url = "unix:///var/run/docker.sock"
            labels = { zone = "1" }
            [[engine]]
            name = "b"
            url = "tcp://10.0.0.2:2376"
            ca = "ca.pem"
            cert = "cert.pem"
            key = "key.pem"
            teams = ["search"]
            concurrency = { build = 3 }
        "#;
        let e = parse_engines(ok, dir.path()).unwrap();
        assert_eq!(e.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(e[1].tls().unwrap().ca, dir.path().join("ca.pem"));
        assert_eq!(e[1].concurrency["build"], 3);
        assert!(e[0].tls().is_none());
        let bad = |text: &str| parse_engines(text, dir.path()).unwrap_err();
        assert!(bad("").contains("no engine"));
        assert!(bad("[[engine]]\nname='a'\nurl='unix:///x'\n[[engine]]\nname='a'\nurl='unix:///y'").contains("twice"));
        assert!(bad("[[engine]]\nname='A B'\nurl='unix:///x'").contains("name"));
        assert!(bad("[[engine]]\nname='a'\nurl='http://x'").contains("unix://"));
        assert!(bad("[[engine]]\nname='a'\nurl='ssh://u@h'").contains("ssh"));
        assert!(bad("[[engine]]\nname='a'\nurl='tcp://h:1'\nca='ca.pem'").contains("all three"));
        assert!(bad("[[engine]]\nname='a'\nurl='tcp://h:1'\nca='ca.pem'\ncert='cert.pem'\nkey='nope.pem'").contains("no file"));
        assert!(bad("[[engine]]\nname='a'\nurl='unix:///x'\nconcurrency={deploy=1}").contains("kinds"));
        assert!(bad("[[engine]]\nname='a'\nurl='unix:///x'\nhost='y'").contains("unknown field"));
    }

    #[test]
    fn urls_without_secrets() {
        let mut e = Fleet::local(Some("ssh://deploy:hunter2@build-1".into())).remove(0);
        assert_eq!(e.public_url(), "ssh://deploy@build-1");
        e.url = "tcp://10.0.0.2:2376".into();
        assert_eq!(e.public_url(), "tcp://10.0.0.2:2376");
    }
}
