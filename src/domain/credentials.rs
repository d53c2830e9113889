//! Registry credentials: from a request, or from the server's per-registry file (the
//! `auths` section of a docker `config.json`). Held in memory only: never stored in a
//! job, an event or a log line (`Debug` redacts them).

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Rejection;

/// Registry credentials, sent to the engine as `X-Registry-Auth`; never stored.
#[derive(Clone, Default)]
pub struct RegistryAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    pub identity_token: Option<String>,
    pub server: Option<String>,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// `{username, password}` or `{identity_token}` for the image's registry.
#[derive(Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentials {
    pub username: Option<String>,
    #[schema(format = Password)]
    pub password: Option<String>,
    /// An OAuth identity token, instead of username and password.
    #[schema(format = Password)]
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials").field("username", &self.username).finish_non_exhaustive()
    }
}

impl RegistryCredentials {
    pub fn into_auth(self, server: &str) -> Result<RegistryAuth, Rejection> {
        match (&self.username, &self.password, &self.identity_token) {
            (Some(u), Some(p), None) if !u.is_empty() && u.len() <= 512 && p.len() <= 8192 => Ok(RegistryAuth {
                username: Some(u.clone()),
                password: Some(p.clone()),
                identity_token: None,
                server: Some(server.to_string()),
            }),
            (None, None, Some(t)) if !t.is_empty() && t.len() <= 16384 => Ok(RegistryAuth {
                identity_token: Some(t.clone()),
                server: Some(server.to_string()),
                ..Default::default()
            }),
            _ => Err(Rejection::invalid(
                "`credentials` must be {username, password} or {identity_token}",
            )),
        }
    }
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// Credentials per registry host, from a docker `config.json`.
#[derive(Default, Clone)]
pub struct CredentialStore {
    by_host: HashMap<String, RegistryAuth>,
}

impl std::fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialStore").field("hosts", &self.by_host.keys().collect::<Vec<_>>()).finish()
    }
}

/// `https://index.docker.io/v1/` -> `docker.io`; `http://host:5000/` -> `host:5000`.
fn normalize_host(key: &str) -> String {
    let h = key.trim_start_matches("https://").trim_start_matches("http://");
    let h = h.split('/').next().unwrap_or(h);
    match h {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io".into(),
        other => other.to_string(),
    }
}

impl CredentialStore {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing {} (docker config.json `auths` format)", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: ConfigFile = serde_json::from_str(text)?;
        let mut by_host = HashMap::new();
        for (key, e) in file.auths {
            let host = normalize_host(&key);
            let (username, password) = match (&e.auth, e.username, e.password) {
                (Some(auth), _, _) if !auth.is_empty() => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .with_context(|| format!("`auth` of {key} is not base64"))?;
                    let raw = String::from_utf8(raw).with_context(|| format!("`auth` of {key} is not UTF-8"))?;
                    let (u, p) = raw.split_once(':').with_context(|| format!("`auth` of {key} is not user:password"))?;
                    (Some(u.to_string()), Some(p.to_string()))
                }
                (_, u, p) => (u, p),
            };
            by_host.insert(
                host.clone(),
                RegistryAuth { username, password, identity_token: e.identitytoken, server: Some(host) },
            );
        }
        Ok(Self { by_host })
    }

    pub fn for_host(&self, host: &str) -> Option<RegistryAuth> {
        self.by_host.get(host).cloned()
    }

    /// Every registry's credentials (each with its `server`).
    pub fn all(&self) -> Vec<RegistryAuth> {
        self.by_host.values().cloned().collect()
    }
}

/// The most registries one `X-Registry-Config` header may name.
const REGISTRY_CONFIG_MAX: usize = 32;

/// A build's `X-Registry-Config` header, in the engine's own format: base64 (standard
/// or URL-safe, padded or not) of a JSON object from registry host to
/// `{username, password}`, `{auth}` (base64 `user:password`) or `{identitytoken}`.
/// One [`RegistryAuth`] per registry, its `server` the host.
pub fn parse_registry_config(header: &str) -> Result<Vec<RegistryAuth>, Rejection> {
    let bad = |why: &str| Rejection::invalid(format!("`X-Registry-Config` {why}"));
    let header = header.trim();
    let raw = [&base64::engine::general_purpose::URL_SAFE, &base64::engine::general_purpose::STANDARD]
        .iter()
        .find_map(|e| e.decode(header).ok())
        .or_else(|| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok())
        .or_else(|| base64::engine::general_purpose::STANDARD_NO_PAD.decode(header.trim_end_matches('=')).ok())
        .ok_or_else(|| bad("must be base64 of a JSON object from registry host to credentials"))?;
    #[derive(Deserialize)]
    struct Entry {
        username: Option<String>,
        password: Option<String>,
        auth: Option<String>,
        #[serde(alias = "identity_token")]
        identitytoken: Option<String>,
    }
    let map: HashMap<String, Entry> =
        serde_json::from_slice(&raw).map_err(|_| bad("must be base64 of a JSON object from registry host to credentials"))?;
    if map.len() > REGISTRY_CONFIG_MAX {
        return Err(bad(&format!("names more than {REGISTRY_CONFIG_MAX} registries")));
    }
    let mut out = Vec::new();
    for (key, e) in map {
        let host = normalize_host(&key);
        if host.is_empty() || host.len() > 256 || host.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("has a registry key that is not a host"));
        }
        let (username, password) = match (e.auth.filter(|a| !a.is_empty()), e.username, e.password) {
            (Some(auth), _, _) => {
                let pair = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|r| String::from_utf8(r).ok())
                    .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())))
                    .ok_or_else(|| bad(&format!("entry `{host}`: `auth` must be base64 of user:password")))?;
                (Some(pair.0), Some(pair.1))
            }
            (None, u, p) => (u, p),
        };
        let creds = RegistryCredentials { username, password, identity_token: e.identitytoken.filter(|t| !t.is_empty()) };
        let auth = creds.into_auth(&host).map_err(|_| {
            bad(&format!("entry `{host}` must hold {{username, password}}, {{auth}} or {{identitytoken}}"))
        })?;
        out.push(auth);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_config_auths() {
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:hunter2");
        let text = format!(
            r#"{{"auths": {{"127.0.0.1:5001": {{"auth": "{auth}"}}, "https://index.docker.io/v1/": {{"identitytoken": "tok"}}}}}}"#
        );
        let store = CredentialStore::parse(&text).unwrap();
        let a = store.for_host("127.0.0.1:5001").unwrap();
        assert_eq!((a.username.as_deref(), a.password.as_deref()), (Some("bob"), Some("hunter2")));
        assert_eq!(store.for_host("docker.io").unwrap().identity_token.as_deref(), Some("tok"));
        assert!(store.for_host("other").is_none());
        assert!(!format!("{store:?} {a:?}").contains("hunter2"), "Debug redacts");
    }

    #[test]
    fn registry_config_headers() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let json = r#"{"127.0.0.1:5001": {"username": "berth", "password": "pw"}, "https://ghcr.io/": {"auth": "dTpw"}}"#;
        for header in [STANDARD.encode(json), URL_SAFE_NO_PAD.encode(json)] {
            let mut got = parse_registry_config(&header).unwrap();
            got.sort_by(|a, b| a.server.cmp(&b.server));
            assert_eq!(got[0].server.as_deref(), Some("127.0.0.1:5001"));
            assert_eq!((got[0].username.as_deref(), got[0].password.as_deref()), (Some("berth"), Some("pw")));
            assert_eq!((got[1].server.as_deref(), got[1].username.as_deref(), got[1].password.as_deref()), (Some("ghcr.io"), Some("u"), Some("p")));
        }
        let token = STANDARD.encode(r#"{"r.example": {"identitytoken": "tok"}}"#);
        assert_eq!(parse_registry_config(&token).unwrap()[0].identity_token.as_deref(), Some("tok"));
        for bad in ["%%%".to_string(), STANDARD.encode("[1]"), STANDARD.encode(r#"{"h": {"username": "u"}}"#), STANDARD.encode(r#"{"h": {"auth": "bm9jb2xvbg=="}}"#)] {
            let e = parse_registry_config(&bad).unwrap_err();
            assert!(e.detail.contains("X-Registry-Config") && !e.detail.contains("nocolon"), "{}", e.detail);
        }
    }

    #[test]
    fn request_credentials_shape() {
        let ok = RegistryCredentials { username: Some("u".into()), password: Some("p".into()), identity_token: None };
        assert!(ok.clone().into_auth("h").is_ok());
        assert!(!format!("{ok:?}").contains("\"p\""), "Debug redacts the password");
        let bad = RegistryCredentials { username: Some("u".into()), password: None, identity_token: None };
        assert!(bad.into_auth("h").is_err());
    }
}
