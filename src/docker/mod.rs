//! The Docker engine adapter: the only module that imports bollard.
//!
//! The rest of the crate drives an engine through [`EngineApi`] (`Arc<Engine>`, where
//! [`Engine`] is `dyn EngineApi`), so several engines can be driven later; [`DockerEngine`]
//! is the implementation, one file per resource. Everything it returns is Berth's own
//! type ([`types`]) or plain JSON, and its errors are [`EngineError`].
//!
//! - `client.rs`: the connection, API version negotiation, reconnecting;
//! - `images.rs`, `containers.rs`, `run.rs` (create, attach output, wait), `build.rs`,
//!   `registry.rs` (pull, push);
//! - `stats.rs` (container stats, computed; `docker top`), `df.rs` (`docker system df`);
//! - `attach.rs`, `exec.rs`: interactive stdio, over hijacked connections that Berth
//!   upgrades itself (`raw.rs`) so that it reads the engine's framing exactly (`stdio.rs`).

mod attach;
mod build;
mod client;
mod containers;
mod df;
mod error;
mod events;
mod exec;
pub mod fleet;
mod history;
mod images;
mod networks;
mod prune;
mod raw;
mod registry;
mod run;
pub mod stats;
mod stdio;
mod tls;
pub mod types;
mod volumes;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};

pub use crate::domain::credentials::RegistryAuth;
use crate::domain::exec::ExecSpec;
use crate::domain::requests::BuildParams;
use crate::domain::run::RunSpec;
pub use attach::ContainerStdioInfo;
pub use client::DockerEngine;
pub use error::{EngineError, ObjectKind};
pub use exec::ExecInfo;
pub use stdio::{MAX_CHUNK, OutputChunk, OutputStream, Stdio, StdioDecoder};
pub use df::{containers_usage, volumes_usage};
pub use types::*;

/// The shortest id prefix that names a container. Docker takes any unambiguous prefix; a
/// control plane should not let a one-character typo (or a fuzzer) hit some container:
/// 12 is the short id `docker ps` shows.
pub const MIN_ID_PREFIX: usize = 12;

type Result<T> = std::result::Result<T, EngineError>;

/// The engine behind Berth, as the rest of the crate holds it: `Arc<Engine>`.
pub type Engine = dyn EngineApi;

/// What Berth asks of a container engine. Images and containers are named by reference,
/// name, full id, or an id prefix of at least [`MIN_ID_PREFIX`] characters; streams end
/// when the engine's answer ends, and dropping one closes the engine connection.
#[async_trait]
pub trait EngineApi: Send + Sync {
    /// Where the engine is (`unix://…`, `tcp://…`).
    fn host(&self) -> &str;
    async fn ping(&self) -> Result<()>;
    async fn info(&self) -> Result<EngineInfo>;

    // ---- images -------------------------------------------------------------------------

    async fn list_images(&self, filters: &ImageFilters) -> Result<Vec<ImageSummary>>;
    /// The id of an image named by reference, full id, or a long enough id prefix.
    async fn resolve_image(&self, given: &str) -> Result<String>;
    /// The engine's full inspect document, as `docker image inspect` prints it.
    async fn inspect_image(&self, reference: &str) -> Result<serde_json::Value>;
    /// An image's history, newest layer first; the image named as for inspect.
    async fn image_history(&self, reference: &str) -> Result<Vec<ImageLayer>>;
    /// `(id, repo_digests, repo_tags)` of an image, `None` when it is not on the engine.
    async fn image_identity(&self, reference: &str) -> Result<Option<(String, Vec<String>, Vec<String>)>>;
    async fn remove_image(&self, reference: &str, force: bool, noprune: bool) -> Result<Vec<ImageDeleteItem>>;
    /// Tag `source` as `repo:tag`.
    async fn tag_image(&self, source: &str, repo: &str, tag: &str) -> Result<()>;
    /// Prune `target` (`label` and `until` filters as the engine takes them); with
    /// `dry_run`, only what it would remove, and nothing removed.
    async fn prune(&self, target: PruneTarget, label: &[String], until: Option<&str>, dry_run: bool) -> Result<PruneReport>;
    /// Build from a tar (or gzip tar) context streamed from `context`, or from `remote`.
    /// Dropping the stream stops the build. (`engine.build(..)` takes any byte stream.)
    /// `auth`: credentials per registry (`server`) for the images the build pulls
    /// (`FROM`), sent as the engine's `X-Registry-Config`. A registry's refusal is
    /// [`EngineError::RegistryRefused`].
    async fn build_image(
        &self,
        spec: &BuildParams,
        context: Option<BoxStream<'static, std::io::Result<Bytes>>>,
        auth: &[RegistryAuth],
    ) -> Result<BoxStream<'static, Result<BuildOutput>>>;
    async fn pull(
        &self,
        repository: &str,
        tag: &str,
        platform: Option<&str>,
        auth: Option<&RegistryAuth>,
    ) -> Result<BoxStream<'static, Result<ProgressMessage>>>;
    async fn push(
        &self,
        repository: &str,
        tag: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<BoxStream<'static, Result<ProgressMessage>>>;

    // ---- containers ---------------------------------------------------------------------

    async fn list_containers(&self, filters: &ContainerFilters) -> Result<Vec<ContainerSummary>>;
    /// The full id of a container named by name, id, or a long enough id prefix.
    async fn resolve_container(&self, given: &str) -> Result<String>;
    /// The engine's full inspect document, as `docker inspect` prints it.
    async fn inspect_container(&self, id: &str) -> Result<serde_json::Value>;
    /// Whether the container is running (and exists).
    async fn container_running(&self, id: &str) -> Result<bool>;
    async fn start_container(&self, id: &str) -> Result<()>;
    async fn stop_container(&self, id: &str, timeout: Option<i32>) -> Result<()>;
    async fn restart_container(&self, id: &str, timeout: Option<i32>) -> Result<()>;
    async fn kill_container(&self, id: &str, signal: &str) -> Result<()>;
    async fn remove_container(&self, id: &str, force: bool, volumes: bool) -> Result<()>;
    /// The container's output. The stream ends when the log ends (or, with `follow`,
    /// when the container stops).
    async fn logs(&self, id: &str, options: &LogOptions) -> Result<BoxStream<'static, Result<LogLine>>>;
    /// Create (not start) a container; returns its id.
    async fn create_container(&self, spec: &RunSpec) -> Result<String>;
    /// Attach to a created container's output before it starts, so nothing is missed: raw
    /// bytes (a line, or a UTF-8 character, may span items; the caller assembles).
    async fn attach_output(&self, id: &str) -> Result<BoxStream<'static, Result<(LogStream, Bytes)>>>;
    /// Wait until the container is not running; its exit code.
    async fn wait_exit(&self, id: &str) -> Result<i64>;
    /// One stats snapshot of a container (the engine samples twice, about a second
    /// apart, so CPU is a real figure); a stopped container's is all zero.
    async fn container_stats(&self, id: &str) -> Result<ContainerStats>;
    /// The container's stats about every second, until the stream is dropped (or the
    /// engine ends it); a stopped container's come all zero (`running: false`).
    async fn container_stats_stream(&self, id: &str) -> Result<BoxStream<'static, Result<ContainerStats>>>;
    /// The processes of a running container (`docker top`); 409 when it is not running.
    async fn container_top(&self, id: &str) -> Result<ContainerTop>;
    /// The engine's disk use (`docker system df`).
    async fn disk_usage(&self) -> Result<DiskUsage>;
    /// A named volume's driver, labels and options (`None`: no such volume).
    async fn volume_facts(&self, name: &str) -> Result<Option<crate::domain::policy::VolumeFacts>>;

    // ---- volumes and networks -------------------------------------------------------------

    async fn list_volumes(&self, filters: &crate::domain::objects::VolumeFilters) -> Result<Vec<crate::domain::objects::VolumeView>>;
    /// `None`: no volume by that name.
    async fn inspect_volume(&self, name: &str) -> Result<Option<crate::domain::objects::VolumeView>>;
    async fn create_volume(&self, spec: &crate::domain::objects::VolumeSpec) -> Result<crate::domain::objects::VolumeView>;
    async fn remove_volume(&self, name: &str, force: bool) -> Result<()>;
    async fn list_networks(&self, filters: &crate::domain::objects::NetworkFilters) -> Result<Vec<crate::domain::objects::NetworkInfo>>;
    /// By name, full id or an id prefix of at least [`MIN_ID_PREFIX`]; `None`: none such.
    async fn inspect_network(&self, given: &str) -> Result<Option<crate::domain::objects::NetworkInfo>>;
    /// Create a bridge network; its id.
    async fn create_network(&self, spec: &crate::domain::objects::NetworkSpec) -> Result<String>;
    async fn remove_network(&self, id: &str) -> Result<()>;
    async fn connect_network(&self, network: &str, container: &str) -> Result<()>;
    async fn disconnect_network(&self, network: &str, container: &str, force: bool) -> Result<()>;

    // ---- events -------------------------------------------------------------------------

    /// The engine's events (`GET /events`) from `since` until `until` (engine formats:
    /// Unix seconds, `seconds.nanos`, RFC 3339) of `types` (all when empty). Without
    /// `until` it follows live until the engine closes it; dropping it closes it.
    async fn events(
        &self,
        since: Option<&str>,
        until: Option<&str>,
        types: &[String],
    ) -> Result<BoxStream<'static, Result<EngineEvent>>>;
    /// A network's labels (`None`: no such network).
    async fn network_labels(&self, id: &str) -> Result<Option<std::collections::HashMap<String, String>>>;

    // ---- interactive --------------------------------------------------------------------

    /// A container's id, state, stdio settings and power over the host.
    async fn container_stdio_info(&self, id: &str) -> Result<ContainerStdioInfo>;
    /// Attach to a running container's stdio (`docker attach`). `logs` replays its
    /// earlier output first; `stdin` attaches its stdin (it must have `OpenStdin`).
    async fn attach_stdio(&self, id: &str, tty: bool, stdin: bool, logs: bool) -> Result<Stdio>;
    /// Resize a container's TTY (`POST /containers/{id}/resize`).
    async fn resize_container_tty(&self, id: &str, cols: u16, rows: u16) -> Result<()>;
    /// Create an exec instance with stdin, stdout and stderr attached; its id.
    async fn create_exec(&self, container: &str, spec: &ExecSpec) -> Result<String>;
    /// An exec instance's state (404 `not_found` when the engine has none by that id).
    async fn inspect_exec(&self, id: &str) -> Result<ExecInfo>;
    /// Start an exec instance attached (`docker exec -i`).
    async fn start_exec_stdio(&self, id: &str, tty: bool) -> Result<Stdio>;
    /// Resize an exec instance's TTY.
    async fn resize_exec(&self, id: &str, cols: u16, rows: u16) -> Result<()>;
}

impl dyn EngineApi {
    /// [`EngineApi::build_image`] from any stream of context bytes.
    pub async fn build(
        &self,
        spec: &BuildParams,
        context: Option<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static>,
        auth: &[RegistryAuth],
    ) -> Result<BoxStream<'static, Result<BuildOutput>>> {
        self.build_image(spec, context.map(StreamExt::boxed), auth).await
    }
}
