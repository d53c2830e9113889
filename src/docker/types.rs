//! Berth's own views of engine objects and of what engine calls return, independent of
//! bollard.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One image, as `docker images` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageSummary {
    /// Content-addressed id (`sha256:…`).
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// Size in bytes.
    pub size: i64,
    /// Creation time, RFC 3339 UTC.
    #[schema(value_type = String, format = DateTime)]
    pub created: String,
    pub labels: HashMap<String, String>,
    /// How many containers (running or not) were made from the image.
    pub containers: i64,
}

/// One entry of an image's history: a layer, or a step that changed only metadata.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageLayer {
    /// The image id of this step (`sha256:…`), or `<missing>` for a step built elsewhere
    /// (pulled layers have no local image of their own).
    pub id: String,
    /// When the step was made, RFC 3339 UTC.
    #[schema(value_type = String, format = DateTime)]
    pub created: String,
    /// The instruction that made it, as the builder recorded it (`/bin/sh -c make`,
    /// `/bin/sh -c #(nop)  ENV A=1`).
    pub created_by: String,
    /// Bytes the layer adds.
    pub size: i64,
    /// The references of the image this step produced, if any.
    pub tags: Vec<String>,
    /// `true` when the step added no files: size 0 and a metadata-only instruction (`ENV`,
    /// `LABEL`, `CMD`, `ENTRYPOINT`, `EXPOSE`, `USER`, `WORKDIR`, `ARG`, ...).
    pub empty_layer: bool,
    /// The commit message, if any.
    pub comment: String,
}

/// A published or exposed port of a container.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PortView {
    pub ip: Option<String>,
    pub private_port: u16,
    pub public_port: Option<u16>,
    /// `tcp`, `udp` or `sctp`.
    #[serde(rename = "type")]
    pub protocol: Option<String>,
}

/// One container, as `docker ps` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContainerSummary {
    pub id: String,
    /// Names, without Docker's leading `/`.
    pub names: Vec<String>,
    pub image: String,
    pub image_id: String,
    pub command: String,
    /// Creation time, RFC 3339 UTC.
    #[schema(value_type = String, format = DateTime)]
    pub created: String,
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited` or `dead`.
    pub state: String,
    /// Human-readable status, e.g. `Up 3 minutes`.
    pub status: String,
    pub ports: Vec<PortView>,
    pub labels: HashMap<String, String>,
}

/// One line removed from the image store by a delete.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageDeleteItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untagged: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<String>,
}

/// Which output stream a log line came from. `build` is for build output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
    Build,
}

/// A chunk of container output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    pub stream: LogStream,
    pub text: String,
}

/// The engine's identity and counts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EngineInfo {
    /// Docker Engine version, e.g. `20.10.24`.
    pub version: String,
    /// The engine's highest API version.
    pub api_version: String,
    /// The API version Berth negotiated and speaks with it.
    pub negotiated_api_version: String,
    pub min_api_version: Option<String>,
    pub os: String,
    pub arch: String,
    pub kernel_version: Option<String>,
    pub containers: i64,
    pub containers_running: i64,
    pub containers_paused: i64,
    pub containers_stopped: i64,
    pub images: i64,
}

/// Options of a container log read.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    /// `None`: all lines.
    pub tail: Option<u64>,
    /// Unix seconds.
    pub since: Option<i64>,
    pub timestamps: bool,
}

/// Filters of an image list.
#[derive(Debug, Clone, Default)]
pub struct ImageFilters {
    pub all: bool,
    pub dangling: Option<bool>,
    pub reference: Vec<String>,
    pub label: Vec<String>,
}

/// Filters of a container list.
#[derive(Debug, Clone, Default)]
pub struct ContainerFilters {
    pub all: bool,
    pub label: Vec<String>,
    pub status: Vec<String>,
    pub name: Vec<String>,
}

/// One pull/push status message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProgressMessage {
    pub id: Option<String>,
    pub status: Option<String>,
    pub current: Option<i64>,
    pub total: Option<i64>,
    /// The pushed manifest's digest (push's `aux.Digest`).
    pub digest: Option<String>,
}

/// One item of build output.
#[derive(Debug, Clone, PartialEq)]
pub enum BuildOutput {
    Log(String),
    ImageId(String),
}

/// What a prune removed.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// Ids of the images or containers deleted.
    pub deleted: Vec<String>,
    /// References untagged on the way (image prune).
    pub untagged: Vec<String>,
    pub space_reclaimed: i64,
}

/// The engine's prune filters: `label` and `until`.
pub(super) fn prune_filters(label: &[String], until: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut f = HashMap::new();
    if !label.is_empty() {
        f.insert("label".to_string(), label.to_vec());
    }
    if let Some(u) = until {
        f.insert("until".to_string(), vec![u.to_string()]);
    }
    f
}

/// Unix seconds as RFC 3339 UTC, the views' time format.
pub(super) fn unix_to_rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One event of the engine's event stream (`docker events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEvent {
    /// The engine's `Type`: `container`, `image`, `volume`, `network`, `daemon`, …
    pub typ: String,
    pub action: String,
    /// The Actor ID (a container or image id, a volume name, a network id).
    pub id: String,
    /// The Actor attributes (for a container: its labels, `name`, `image`, `exitCode`…).
    pub attributes: HashMap<String, String>,
    /// When, in nanoseconds since the Unix epoch.
    pub time_nano: i64,
}
