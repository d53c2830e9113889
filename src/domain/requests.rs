//! Job request bodies. What a job stores as its `request` is the same shape with the
//! credentials removed.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ImageRef;
use super::Rejection;
use super::credentials::RegistryCredentials;
use super::net;
use super::policy::RunPolicy;

/// Pull an image (`docker pull`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// Reference; the tag defaults to `latest`.
    #[schema(example = "127.0.0.1:5000/team/app:1.2")]
    pub image: String,
    /// `os[/arch[/variant]]`, e.g. `linux/amd64`.
    pub platform: Option<String>,
    /// For this pull only; else the server's credentials for the registry, if any.
    /// Never stored with the job, never shown.
    #[serde(default, skip_serializing_if = "never_shown")]
    #[schema(write_only)]
    pub credentials: Option<RegistryCredentials>,
    /// The engine to run the job on (a name of `GET /v1/hosts`); else `?host=`, else the
    /// default host. Kept as the job's `host`, not in its `request`.
    #[serde(default, skip_serializing_if = "kept_apart")]
    #[schema(example = "local")]
    pub host: Option<String>,
}

/// Push an image (`docker push`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// Reference with a registry host; the tag defaults to `latest`.
    #[schema(example = "127.0.0.1:5000/team/app:1.2")]
    pub image: String,
    /// For this push only; else the server's credentials for the registry, if any.
    /// Never stored with the job, never shown.
    #[serde(default, skip_serializing_if = "never_shown")]
    #[schema(write_only)]
    pub credentials: Option<RegistryCredentials>,
    /// The engine to run the job on (a name of `GET /v1/hosts`); else `?host=`, else the
    /// default host. Kept as the job's `host`, not in its `request`.
    #[serde(default, skip_serializing_if = "kept_apart")]
    #[schema(example = "local")]
    pub host: Option<String>,
}

/// Credentials are read from a request and never written anywhere (the job's stored
/// `request` included); as `skip_serializing_if` rather than `skip_serializing`, so the
/// OpenAPI document still shows clients the field they may send.
fn never_shown<T>(_: &T) -> bool {
    true
}

/// A job body's `host` is the job's own field, never part of its stored `request`.
pub(crate) fn kept_apart<T>(_: &T) -> bool {
    true
}

/// Prune filters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneFilters {
    /// Only objects with these labels: `key`, `key=value`, or `!key`/`key!=value` to exclude.
    #[serde(default)]
    pub label: Vec<String>,
    /// Only objects created before: Unix seconds, RFC 3339, or a Go duration (`24h`).
    pub until: Option<String>,
    /// Only objects labelled `berth.team=<team>` (what Berth made for that team).
    #[schema(example = "blue")]
    pub team: Option<String>,
}

/// What a prune acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneTarget {
    /// `all: false`: dangling images only.
    Images { all: bool },
    Containers,
    Volumes,
    Networks,
    /// `all: false`: not shared records only.
    BuildCache { all: bool },
}

/// Remove unused images (`docker image prune`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneImagesRequest {
    /// `false` (default): dangling images only; `true`: every image no container uses (`-a`).
    #[serde(default)]
    pub all: bool,
    /// `true`: compute what the prune would remove (and the space), and remove nothing.
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub filters: PruneFilters,
    /// The engine to run the job on (a name of `GET /v1/hosts`); else `?host=`, else the
    /// default host. Kept as the job's `host`, not in its `request`.
    #[serde(default, skip_serializing_if = "kept_apart")]
    #[schema(example = "local")]
    pub host: Option<String>,
}

/// Remove stopped containers, unused volumes or unused networks (`docker container
/// prune`, `volume prune`, `network prune`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    /// `true`: compute what the prune would remove (and the space), and remove nothing.
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub filters: PruneFilters,
    /// The engine to run the job on (a name of `GET /v1/hosts`); else `?host=`, else the
    /// default host. Kept as the job's `host`, not in its `request`.
    #[serde(default, skip_serializing_if = "kept_apart")]
    #[schema(example = "local")]
    pub host: Option<String>,
}

/// Remove unused build cache (`docker builder prune`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneBuildCacheRequest {
    /// `false` (default): unused records that no other record shares; `true`: every
    /// unused record (`-a`).
    #[serde(default)]
    pub all: bool,
    /// `true`: compute what the prune would remove (and the space), and remove nothing.
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub filters: BuildCacheFilters,
    /// The engine to run the job on (a name of `GET /v1/hosts`); else `?host=`, else the
    /// default host. Kept as the job's `host`, not in its `request`.
    #[serde(default, skip_serializing_if = "kept_apart")]
    #[schema(example = "local")]
    pub host: Option<String>,
}

/// Filters of a build-cache prune (the cache has no labels).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildCacheFilters {
    /// Only records last used before: Unix seconds, RFC 3339, or a Go duration (`24h`).
    pub until: Option<String>,
}

impl BuildCacheFilters {
    pub fn validate(&self) -> Result<(), Rejection> {
        PruneFilters { until: self.until.clone(), ..Default::default() }.validate()
    }
}

impl PruneFilters {
    pub fn validate(&self) -> Result<(), Rejection> {
        for l in &self.label {
            super::names::validate_label_filter(l)?;
        }
        if let Some(t) = &self.team {
            if !super::identity::is_team_name(t) {
                return Err(Rejection::invalid("`filters.team` must be a team name: [a-z0-9][a-z0-9_.-]{0,62}"));
            }
        }
        if let Some(u) = &self.until {
            if !is_until(u) {
                return Err(Rejection::invalid(
                    "`filters.until` must be Unix seconds, an RFC 3339 time, or a duration such as 24h or 1h30m",
                ));
            }
        }
        Ok(())
    }
}

impl PruneFilters {
    /// The label filters the engine gets: the caller's, and `berth.team=<team>` when
    /// `team` is given.
    pub fn engine_labels(&self) -> Vec<String> {
        let mut labels = self.label.clone();
        if let Some(t) = &self.team {
            labels.push(format!("{}={t}", super::scope::TEAM_LABEL));
        }
        labels
    }
}

/// What the engine takes as `until`: Unix seconds (with a fraction), an RFC 3339 time, or
/// a Go duration (`1h30m`, `90s`, `1.5h`).
fn is_until(u: &str) -> bool {
    until_cutoff(u, 0.0).is_some()
}

/// The Unix time an `until` names, as the engine reads it: Unix seconds or an RFC 3339
/// time as they are, a Go duration back from `now`. `None`: not an `until`.
pub fn until_cutoff(u: &str, now: f64) -> Option<f64> {
    if u.is_empty() || u.len() > 64 {
        return None;
    }
    if let Some(n) = u.parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0) {
        return Some(n);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(u) {
        return Some(t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9);
    }
    // A Go duration: one or more number+unit pairs.
    let mut rest = u;
    let mut secs = 0.0;
    while !rest.is_empty() {
        let num_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let n: f64 = rest[..num_len].parse().ok().filter(|_| num_len > 0)?;
        rest = &rest[num_len..];
        let units = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];
        let (unit, scale) = units.iter().find(|(unit, _)| rest.starts_with(unit))?;
        rest = &rest[unit.len()..];
        secs += n * scale;
    }
    Some(now - secs)
}

#[cfg(test)]
mod until_tests {
    use super::is_until;

    #[test]
    fn until_forms() {
        for ok in ["1700000000", "1700000000.5", "2026-11-29T07:00:00Z", "24h", "1h30m", "90s", "1.5h", "10ms"] {
            assert!(is_until(ok), "{ok}");
        }
        for bad in ["", "yesterday", "h", "1x", "-5h", "1h-", "24h ", "∞", "1d"] {
            assert!(!is_until(bad), "{bad}");
        }
        use super::until_cutoff;
        assert_eq!(until_cutoff("1h30m", 10_000.0), Some(10_000.0 - 5400.0));
        assert_eq!(until_cutoff("1700000000", 5.0), Some(1_700_000_000.0));
        assert_eq!(until_cutoff("2026-11-29T07:00:00Z", 5.0), Some(1_795_935_600.0));
    }
}

/// Build options, from the query string of `POST /v1/images/build`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct BuildQuery {
    /// Name and tag for the image (repeatable).
    #[serde(default)]
    pub tag: Vec<String>,
    /// Path of the Dockerfile inside the context (default `Dockerfile`).
    pub dockerfile: Option<String>,
    /// Build stage to stop at (multi-stage builds).
    pub target: Option<String>,
    /// Build argument `KEY=VALUE` (repeatable).
    #[serde(default)]
    pub buildarg: Vec<String>,
    /// Label `KEY=VALUE` for the image (repeatable); keys under `berth.` are Berth's to set (400).
    #[serde(default)]
    pub label: Vec<String>,
    /// Do not use the build cache.
    #[serde(default, deserialize_with = "crate::domain::de_bool_opt")]
    #[param(value_type = Option<bool>)]
    #[schema(value_type = Option<bool>)]
    pub nocache: Option<bool>,
    /// Always try to pull newer base images.
    #[serde(default, deserialize_with = "crate::domain::de_bool_opt")]
    #[param(value_type = Option<bool>)]
    #[schema(value_type = Option<bool>)]
    pub pull: Option<bool>,
    /// A git repository or tar URL to build from, with no body.
    pub remote: Option<String>,
    /// The bearer token is never accepted here (not an event stream).
    #[serde(default, skip_serializing)]
    #[param(ignore)]
    #[schema(ignore)]
    pub access_token: Option<String>,
}

/// A validated build: what the job stores and runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BuildParams {
    pub tags: Vec<String>,
    pub dockerfile: Option<String>,
    pub target: Option<String>,
    pub build_args: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    pub nocache: bool,
    pub pull: bool,
    pub remote: Option<String>,
    /// Size of the uploaded context, in bytes.
    pub context_bytes: Option<u64>,
    /// `tar` or `gzip`.
    pub context_format: Option<String>,
}

fn key_value(field: &str, s: &str) -> Result<(String, String), Rejection> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && k.len() <= 256 && !k.chars().any(|c| c.is_control() || c.is_whitespace()) => {
            if v.len() > 64 * 1024 || v.contains('\0') {
                return Err(Rejection::invalid(format!("`{field}` value of `{k}` is too long or contains NUL")));
            }
            Ok((k.to_string(), v.to_string()))
        }
        // The value may be a secret: the error names at most the key.
        _ => Err(Rejection::invalid(format!(
            "`{field}` must be KEY=VALUE with a KEY of printable characters and no spaces (got `{}…`)",
            s.chars().take_while(|c| *c != '=' && !c.is_whitespace()).take(64).collect::<String>().escape_debug()
        ))),
    }
}

impl BuildParams {
    /// The policy a build is held to before a byte of its context is read: every tag to
    /// `BERTH_ALLOWED_IMAGES`, and a `remote=` URL's host to `BERTH_BUILD_REMOTE_ALLOW`
    /// (the engine fetches it from the host's own network, loopback included). 403
    /// `policy_violation` naming the reference or the host.
    /// `team`: the caller's, whose names (`BERTH_TEAM_IMAGES`) the tags must be; `None`
    /// for an admin, who is not held to them.
    pub fn check_policy(&self, policy: &RunPolicy, team: Option<&str>) -> Result<(), Rejection> {
        for tag in &self.tags {
            let image = ImageRef::parse(tag)?;
            policy.check_image(&image, "tag a build")?;
            if let Some(team) = team {
                policy.check_team_image(&image, team, "tag a build")?;
            }
        }
        if let Some(remote) = &self.remote {
            let host = net::url_host(remote).map_err(|_| Rejection::invalid("`remote` has no host that can be checked"))?;
            if !policy.build_remote_allow.iter().any(|allowed| remote_allowed(allowed, &host)) {
                let listed = match policy.build_remote_allow.as_slice() {
                    [] => "it lists none".to_string(),
                    hosts => format!("it lists {}", hosts.join(", ")),
                };
                return Err(Rejection::policy(format!(
                    "`remote` host `{}` is not in BERTH_BUILD_REMOTE_ALLOW ({listed}): the engine fetches remote contexts from the host's own network",
                    host.display()
                )));
            }
        }
        Ok(())
    }
}

/// Does an entry of `BERTH_BUILD_REMOTE_ALLOW` (`host`, any port; or `host:port`) admit
/// this host?
fn remote_allowed(allowed: &str, host: &net::UrlHost) -> bool {
    let Ok(entry) = net::url_host(&format!("http://{}/", allowed.trim())) else { return false };
    entry.host == host.host && (!entry.explicit_port || entry.port == host.port)
}

impl BuildQuery {
    pub fn validate(&self) -> Result<BuildParams, Rejection> {
        let mut tags = Vec::new();
        for t in &self.tag {
            let r = ImageRef::parse(t)?;
            if r.digest.is_some() {
                return Err(Rejection::new(crate::error::ErrorCode::InvalidReference, "A build tag cannot carry a digest."));
            }
            tags.push(format!("{}:{}", r.repository(), r.tag_or_latest()));
        }
        for (field, v) in [("dockerfile", &self.dockerfile), ("target", &self.target)] {
            if let Some(v) = v {
                if v.is_empty() || v.len() > 1024 || v.chars().any(char::is_control) {
                    return Err(Rejection::invalid(format!("`{field}` must be 1-1024 printable characters")));
                }
            }
        }
        if let Some(r) = &self.remote {
            let ok = (r.starts_with("https://") || r.starts_with("http://") || r.starts_with("git@") || r.starts_with("git://"))
                && r.len() <= 2048
                && !r.chars().any(|c| c.is_control() || c.is_whitespace());
            if !ok {
                return Err(Rejection::invalid("`remote` must be an http(s) or git URL"));
            }
            // user:token@ in a URL would be stored with the job and echoed in its errors.
            let authority = r.split("://").nth(1).unwrap_or("").split('/').next().unwrap_or("");
            if authority.contains('@') {
                return Err(Rejection::invalid(
                    "`remote` must not carry credentials (user:token@host): they would be stored with the job",
                ));
            }
        }
        let labels: HashMap<String, String> = self.label.iter().map(|s| key_value("label", s)).collect::<Result<_, _>>()?;
        super::scope::refuse_reserved_labels("label", labels.keys())?;
        Ok(BuildParams {
            tags,
            dockerfile: self.dockerfile.clone(),
            target: self.target.clone(),
            build_args: self.buildarg.iter().map(|s| key_value("buildarg", s)).collect::<Result<_, _>>()?,
            labels,
            nocache: self.nocache.unwrap_or(false),
            pull: self.pull.unwrap_or(false),
            remote: self.remote.clone(),
            context_bytes: None,
            context_format: None,
        })
    }
}

#[cfg(test)]
mod build_policy_tests {
    use super::*;

    fn params(tags: &[&str], remote: Option<&str>) -> BuildParams {
        let q = BuildQuery {
            tag: tags.iter().map(|t| t.to_string()).collect(),
            remote: remote.map(String::from),
            ..Default::default()
        };
        q.validate().unwrap()
    }

    #[test]
    fn remote_hosts_need_listing() {
        let none = RunPolicy::default();
        let e = params(&[], Some("http://127.0.0.1:8080/ctx.tar")).check_policy(&none, None).unwrap_err();
        assert_eq!(e.code, crate::error::ErrorCode::PolicyViolation);
        assert!(e.detail.contains("`127.0.0.1:8080`") && e.detail.contains("BERTH_BUILD_REMOTE_ALLOW (it lists none)"), "{}", e.detail);
        let listed = RunPolicy { build_remote_allow: vec!["git.example.com".into(), "ctx.example:8443".into(), "[::1]:80".into()], ..Default::default() };
        for ok in ["https://git.example.com/r.git", "https://GIT.example.com.:444/r.git", "git://git.example.com/r", "git@git.example.com:r.git", "https://ctx.example:8443/c.tar", "http://[::1]/c"] {
            assert!(params(&[], Some(ok)).check_policy(&listed, None).is_ok(), "{ok}");
        }
        for bad in ["https://ctx.example/c.tar", "https://evil.example/r.git", "http://2130706433/", "https://git.example.com.evil/r", "http://[::1]:81/c"] {
            assert!(params(&[], Some(bad)).check_policy(&listed, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn build_tags_are_held_to_the_allow_list() {
        let p = RunPolicy { allowed_images: vec!["berth-test/*".into()], ..Default::default() };
        assert!(params(&["berth-test/app:1"], None).check_policy(&p, None).is_ok());
        let e = params(&["berth-test/app:1", "evil/app:1"], None).check_policy(&p, None).unwrap_err();
        assert!(e.detail.contains("evil/app:1") && e.detail.contains("tag a build"), "{}", e.detail);
    }
}
