//! Volumes and networks: what their routes take (validated into specs) and what they show.
//!
//! Both carry Berth's team labels like containers (see [`super::scope`]). Names follow
//! Docker's rule for volume names, `[a-zA-Z0-9][a-zA-Z0-9_.-]+`; the engine's predefined
//! networks (`bridge`, `host`, `none`) are nobody's to remove.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Rejection;
use super::policy::VolumeFacts;
use crate::error::ErrorCode;

/// The networks every engine has, which cannot be removed.
pub const PREDEFINED_NETWORKS: [&str; 3] = ["bridge", "host", "none"];

/// The longest volume or network name Berth accepts.
pub const MAX_NAME: usize = 255;

/// Whether `name` is one of the engine's predefined networks.
pub fn is_predefined_network(name: &str) -> bool {
    PREDEFINED_NETWORKS.contains(&name)
}

fn invalid(msg: impl Into<String>) -> Rejection {
    Rejection::invalid(msg)
}

/// A name as a new volume or network takes it: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, at most
/// [`MAX_NAME`] characters.
pub fn validate_object_name(kind: &str, s: &str) -> Result<(), Rejection> {
    let b = s.as_bytes();
    let ok = b.len() >= 2
        && b.len() <= MAX_NAME
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c));
    if ok {
        return Ok(());
    }
    Err(invalid(format!(
        "`{}` is not a valid {kind} name: use [a-zA-Z0-9][a-zA-Z0-9_.-]+ (at least 2, at most {MAX_NAME} characters)",
        s.chars().take(MAX_NAME + 8).collect::<String>().escape_debug()
    )))
}

/// A name, id or id prefix that a path names an existing volume or network by: one
/// character or more of `[a-zA-Z0-9_.-]`, starting alphanumeric.
pub fn validate_object_ref(kind: &str, s: &str) -> Result<(), Rejection> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_NAME
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c));
    if ok {
        return Ok(());
    }
    Err(invalid(format!(
        "`{}` is not a valid {kind} name or id: use [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most {MAX_NAME} characters",
        s.chars().take(MAX_NAME + 8).collect::<String>().escape_debug()
    )))
}

/// Caller-set labels: printable keys without `=`, values without NUL, none under `berth.`.
fn valid_labels(labels: Option<&HashMap<String, String>>) -> Result<HashMap<String, String>, Rejection> {
    let labels = labels.cloned().unwrap_or_default();
    if labels.len() > 256 {
        return Err(invalid("`labels` may hold at most 256 entries"));
    }
    for (k, v) in &labels {
        if k.is_empty() || k.len() > 256 || k.chars().any(|c| c.is_control() || c == '=') {
            return Err(invalid(format!("label key `{}` must be 1-256 printable characters without `=`", k.escape_debug())));
        }
        super::run::check_text("labels", v, 4096)?;
    }
    super::scope::refuse_reserved_labels("labels", labels.keys())?;
    Ok(labels)
}

// ---- volumes ------------------------------------------------------------------------------

/// Create a named volume (`docker volume create`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeCreateRequest {
    /// The volume's name, `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
    #[schema(example = "team-cache")]
    pub name: String,
    /// `local` (the default and the only driver Berth creates with).
    #[schema(example = "local")]
    pub driver: Option<String>,
    /// Volume labels; keys under `berth.` are Berth's to set (400 `invalid_request`).
    pub labels: Option<HashMap<String, String>>,
    /// The `local` driver's options (`docker volume create -o`). Options that mount
    /// something of the host (`type=none` with `o=bind` and a `device` path, a block
    /// device, an `nfs`/`cifs` share) are reserved to admins; `type=tmpfs` is not.
    #[schema(example = json!({"type": "tmpfs", "device": "tmpfs", "o": "size=64m"}))]
    pub driver_opts: Option<HashMap<String, String>>,
}

/// A validated volume create request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    pub name: String,
    pub driver: String,
    /// The caller's labels; Berth stamps its own before the engine sees them.
    pub labels: HashMap<String, String>,
    pub driver_opts: HashMap<String, String>,
}

impl VolumeCreateRequest {
    pub fn validate(&self) -> Result<VolumeSpec, Rejection> {
        validate_object_name("volume", &self.name)?;
        let driver = match self.driver.as_deref() {
            None | Some("") | Some("local") => "local".to_string(),
            Some(other) => {
                return Err(invalid(format!(
                    "`driver` must be `local`, not `{}`: Berth creates volumes with the local driver only",
                    other.escape_debug()
                )));
            }
        };
        let labels = valid_labels(self.labels.as_ref())?;
        let driver_opts = self.driver_opts.clone().unwrap_or_default();
        if driver_opts.len() > 32 {
            return Err(invalid("`driver_opts` may hold at most 32 entries"));
        }
        for (k, v) in &driver_opts {
            let key_ok = !k.is_empty() && k.len() <= 64 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !key_ok {
                return Err(invalid(format!("`driver_opts` key `{}` must be 1-64 characters of [a-zA-Z0-9_.-]", k.escape_debug())));
            }
            if v.len() > 4096 || v.chars().any(char::is_control) {
                return Err(invalid(format!("`driver_opts.{k}` must be at most 4096 printable bytes")));
            }
        }
        Ok(VolumeSpec { name: self.name.clone(), driver, labels, driver_opts })
    }
}

impl VolumeSpec {
    /// The volume as the host-power list judges it (the same judgment runs and attaches
    /// make of existing volumes).
    pub fn facts(&self) -> VolumeFacts {
        VolumeFacts {
            name: self.name.clone(),
            driver: self.driver.clone(),
            labels: self.labels.clone(),
            options: self.driver_opts.clone(),
        }
    }
}

/// A volume, as Berth shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VolumeView {
    pub name: String,
    /// `local`, or the plugin that manages it.
    pub driver: String,
    /// Where the engine keeps its data on the host.
    pub mountpoint: String,
    /// Creation time, RFC 3339 UTC (when the engine reports it).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<String>,
    /// Its labels, Berth's (`berth.team`, `berth.owner`) included.
    pub labels: HashMap<String, String>,
    /// `local` (this engine) or `global` (a cluster).
    pub scope: String,
    /// The driver options it was created with.
    pub options: HashMap<String, String>,
    /// Whether a container (running or not) mounts it: such a volume cannot be removed.
    /// `null` when the engine did not say.
    pub in_use: Option<bool>,
}

/// Filters of a volume list.
#[derive(Debug, Clone, Default)]
pub struct VolumeFilters {
    /// Name substrings (any matches).
    pub name: Vec<String>,
    /// `key` or `key=value` (all must match).
    pub label: Vec<String>,
    /// `true`: only volumes no container uses; `false`: only those in use.
    pub dangling: Option<bool>,
}

// ---- networks -----------------------------------------------------------------------------

/// Create a network (`docker network create`), with the bridge driver.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreateRequest {
    /// The network's name, `[a-zA-Z0-9][a-zA-Z0-9_.-]+`; not one of the predefined ones.
    #[schema(example = "team-backend")]
    pub name: String,
    /// `bridge` (the default and the only driver Berth creates with).
    #[schema(example = "bridge")]
    pub driver: Option<String>,
    /// No route out of the network (`docker network create --internal`).
    pub internal: Option<bool>,
    /// Network labels; keys under `berth.` are Berth's to set (400 `invalid_request`).
    pub labels: Option<HashMap<String, String>>,
}

/// A validated network create request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    pub internal: bool,
    /// The caller's labels; Berth stamps its own before the engine sees them.
    pub labels: HashMap<String, String>,
}

impl NetworkCreateRequest {
    pub fn validate(&self) -> Result<NetworkSpec, Rejection> {
        validate_object_name("network", &self.name)?;
        if is_predefined_network(&self.name) || self.name == "default" {
            return Err(Rejection::new(
                ErrorCode::Conflict,
                format!("`{}` is a network name the engine reserves for its own networks", self.name),
            ));
        }
        match self.driver.as_deref() {
            None | Some("") | Some("bridge") => {}
            Some(other) => {
                return Err(invalid(format!(
                    "`driver` must be `bridge`, not `{}`: Berth creates bridge networks only",
                    other.escape_debug()
                )));
            }
        }
        let labels = valid_labels(self.labels.as_ref())?;
        Ok(NetworkSpec { name: self.name.clone(), internal: self.internal.unwrap_or(false), labels })
    }
}

/// Connect a container to a network (`docker network connect`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkConnectRequest {
    /// The container: name, id, or an id prefix of at least 12 characters.
    #[schema(example = "web-1")]
    pub container: String,
}

/// Disconnect a container from a network (`docker network disconnect`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkDisconnectRequest {
    /// The container: name, id, or an id prefix of at least 12 characters.
    #[schema(example = "web-1")]
    pub container: String,
    /// Disconnect even when the engine cannot reach the container's endpoint cleanly.
    pub force: Option<bool>,
}

/// A network as the engine reports it, with the containers attached to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub scope: String,
    pub internal: bool,
    pub created_at: Option<String>,
    pub labels: HashMap<String, String>,
    /// The running containers with an endpoint on it (what keeps it from removal).
    pub attached: Vec<AttachedContainer>,
}

/// A container attached to a network: its id and labels (which decide who sees it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedContainer {
    pub id: String,
    pub labels: HashMap<String, String>,
}

/// A network, as Berth shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkView {
    /// The full id.
    pub id: String,
    pub name: String,
    /// `bridge`, `host`, `null`, `overlay`, or a plugin.
    pub driver: String,
    /// `local`, `swarm` or `global`.
    pub scope: String,
    /// No route out of the network.
    pub internal: bool,
    /// One of the engine's own (`bridge`, `host`, `none`): nobody removes it.
    pub predefined: bool,
    /// Creation time, RFC 3339 UTC.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<String>,
    pub labels: HashMap<String, String>,
    /// The running containers attached to it that the caller may see (full ids).
    pub containers: Vec<String>,
    /// How many of them there are (`containers.len()`).
    pub container_count: usize,
    /// Whether any container at all is attached (then it cannot be removed).
    pub in_use: bool,
}

/// Filters of a network list.
#[derive(Debug, Clone, Default)]
pub struct NetworkFilters {
    /// Name substrings (any matches).
    pub name: Vec<String>,
    /// `key` or `key=value` (all must match).
    pub label: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["ab", "data", "a.b_c-d", "0123abcdef"] {
            assert!(validate_object_name("volume", ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "-ab", "a/b", "../x", "a b", "a\u{0}b", &"x".repeat(256)] {
            assert!(validate_object_name("volume", bad).is_err(), "{bad:?}");
        }
        assert!(validate_object_ref("network", "a").is_ok());
        assert!(validate_object_ref("network", "a/b").is_err());
    }

    #[test]
    fn volume_requests() {
        let req = |v: serde_json::Value| serde_json::from_value::<VolumeCreateRequest>(v).unwrap().validate();
        let spec = req(serde_json::json!({"name": "cache", "labels": {"app": "x"}})).unwrap();
        assert_eq!((spec.driver.as_str(), spec.labels["app"].as_str()), ("local", "x"));
        assert!(req(serde_json::json!({"name": "cache", "driver": "rexray"})).unwrap_err().detail.contains("local"));
        let e = req(serde_json::json!({"name": "cache", "labels": {"berth.team": "x"}})).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(req(serde_json::json!({"name": "cache", "driver_opts": {"o;x": "1"}})).is_err());
        let bind = req(serde_json::json!({"name": "b1", "driver_opts": {"type": "none", "o": "bind", "device": "/etc"}}));
        assert!(bind.unwrap().facts().host_source().is_some());
        let tmpfs = req(serde_json::json!({"name": "t1", "driver_opts": {"type": "tmpfs", "device": "tmpfs"}}));
        assert!(tmpfs.unwrap().facts().host_source().is_none());
    }

    #[test]
    fn network_requests() {
        let req = |v: serde_json::Value| serde_json::from_value::<NetworkCreateRequest>(v).unwrap().validate();
        let spec = req(serde_json::json!({"name": "backend", "internal": true})).unwrap();
        assert!(spec.internal);
        assert_eq!(req(serde_json::json!({"name": "bridge"})).unwrap_err().code, ErrorCode::Conflict);
        assert!(req(serde_json::json!({"name": "n1", "driver": "overlay"})).unwrap_err().detail.contains("bridge"));
        assert!(req(serde_json::json!({"name": "n1", "labels": {"berth.owner": "me"}})).is_err());
    }
}
