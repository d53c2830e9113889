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
    /// What was deleted: image, container or cache ids, volume or network names.
    pub deleted: Vec<String>,
    /// References untagged on the way (image prune).
    pub untagged: Vec<String>,
    pub space_reclaimed: i64,
}

pub use crate::domain::requests::PruneTarget;

/// Unix seconds as RFC 3339 UTC, the views' time format.
pub(super) fn unix_to_rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A container's resource figures at one moment (`docker stats`), computed from the
/// engine's raw counters ([`super::stats`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ContainerStats {
    /// The full id.
    pub id: String,
    /// The name, without Docker's leading `/`.
    pub name: String,
    /// Whether the container was running when read; `false`: every figure is 0.
    pub running: bool,
    /// When the engine read the figures, RFC 3339; `null` for a stopped container.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub read: Option<String>,
    /// CPU use over the last sampling interval (about 1 s), in percent of one CPU:
    /// `(cpu_delta / system_delta) * online_cpus * 100`, so a container using two whole
    /// CPUs shows 200.
    pub cpu_percent: f64,
    /// Memory in use, page cache left out (usage minus `total_inactive_file` on cgroup
    /// v1, `inactive_file` on v2), as `docker stats` shows it.
    pub memory_bytes: u64,
    /// The memory limit (the host's memory when the container has none).
    pub memory_limit_bytes: u64,
    /// Bytes received, over all the container's network interfaces.
    pub net_rx_bytes: u64,
    /// Bytes sent, over all the container's network interfaces.
    pub net_tx_bytes: u64,
    /// Bytes read from block devices (the `Read` entries of `io_service_bytes_recursive`).
    pub block_read_bytes: u64,
    /// Bytes written to block devices (the `Write` entries of `io_service_bytes_recursive`).
    pub block_write_bytes: u64,
    /// Processes and threads in the container.
    pub pids: u64,
}

impl ContainerStats {
    /// The figures of a container that is not running: all zero, `read: null`.
    pub fn stopped(id: &str, name: &str) -> Self {
        ContainerStats {
            id: id.to_string(),
            name: name.trim_start_matches('/').to_string(),
            running: false,
            read: None,
            cpu_percent: 0.0,
            memory_bytes: 0,
            memory_limit_bytes: 0,
            net_rx_bytes: 0,
            net_tx_bytes: 0,
            block_read_bytes: 0,
            block_write_bytes: 0,
            pids: 0,
        }
    }
}

/// The processes of a running container (`docker top`, `ps -ef` on the host).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContainerTop {
    /// The `ps` column titles (`UID`, `PID`, `PPID`, `C`, `STIME`, `TTY`, `TIME`, `CMD`).
    pub titles: Vec<String>,
    /// One row per process, a value per title.
    pub processes: Vec<Vec<String>>,
}

/// The engine's disk use (`docker system df`): per kind, the totals and the items.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiskUsage {
    pub images: ImagesUsage,
    pub containers: ContainersUsage,
    pub volumes: VolumesUsage,
    pub build_cache: BuildCacheUsage,
}

/// Images' disk use. Reclaimable: the space of the images no container uses, as
/// `docker system df` counts it (all layers, less the unshared size of each image in use).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImagesUsage {
    pub count: i64,
    /// Images some container (running or not) was made from.
    pub active: i64,
    /// Bytes of all image layers (each shared layer once).
    pub size: i64,
    pub reclaimable: i64,
    pub items: Vec<ImageUsage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageUsage {
    pub id: String,
    pub repo_tags: Vec<String>,
    /// Bytes of the image, shared layers included.
    pub size: i64,
    /// Bytes of layers it shares with other images.
    pub shared_size: i64,
    /// Containers made from it.
    pub containers: i64,
}

/// Containers' disk use. Reclaimable: the writable layers of containers that are not
/// running (nor paused, nor restarting).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContainersUsage {
    pub count: i64,
    /// Running, paused or restarting.
    pub active: i64,
    /// Bytes of the writable layers.
    pub size: i64,
    pub reclaimable: i64,
    pub items: Vec<ContainerUsage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContainerUsage {
    pub id: String,
    /// Names, without Docker's leading `/`.
    pub names: Vec<String>,
    pub image: String,
    pub state: String,
    /// Bytes of its writable layer.
    pub size_rw: i64,
    /// Bytes of its whole filesystem (image included).
    pub size_root_fs: i64,
    pub labels: HashMap<String, String>,
}

/// Volumes' disk use. Reclaimable: volumes no container references (`ref_count` 0).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VolumesUsage {
    pub count: i64,
    /// Volumes some container references.
    pub active: i64,
    pub size: i64,
    pub reclaimable: i64,
    pub items: Vec<VolumeUsage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VolumeUsage {
    pub name: String,
    pub driver: String,
    /// Bytes, or -1 when the driver cannot tell.
    pub size: i64,
    /// Containers referencing it, or -1 when unknown.
    pub ref_count: i64,
    pub labels: HashMap<String, String>,
}

/// The builder's cache. Reclaimable: records not in use and not shared.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BuildCacheUsage {
    pub count: i64,
    /// Records in use.
    pub active: i64,
    /// Bytes, shared records left out (as `docker system df`).
    pub size: i64,
    pub reclaimable: i64,
    pub items: Vec<BuildCacheRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BuildCacheRecord {
    pub id: String,
    /// `internal`, `frontend`, `source.local`, `source.git.checkout`, `exec.cachemount`, `regular`.
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    pub in_use: bool,
    pub shared: bool,
    pub size: i64,
    pub usage_count: i64,
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
