//! [`DockerEngine`]: the connection to one Docker engine.
//!
//! It connects lazily: the service starts (and answers `503 docker_unavailable`) while the
//! engine is away, and connects on the first call that finds it. On connect it negotiates
//! the API version with the engine, so an older engine (Debian's 20.10 speaks API 1.41)
//! and newer ones both work. A transport failure drops the client, so the next call
//! reconnects and negotiates again: the service recovers by itself when the engine comes
//! back.

use std::sync::{Arc, RwLock};

use bollard::Docker;

use bytes::Bytes;
use futures_util::stream::BoxStream;

use super::*;
use crate::domain::exec::ExecSpec;
use crate::domain::requests::BuildParams;
use crate::domain::run::RunSpec;
use crate::metrics::Metrics;

/// The Docker engine behind Berth, through bollard (and, for hijacked connections and
/// the push stream, Berth's own HTTP on the same transport).
pub struct DockerEngine {
    host: String,
    client: RwLock<Option<Docker>>,
    /// Where each call's time and failure are counted ([`DockerEngine::timed`]).
    metrics: Option<Arc<Metrics>>,
    /// Mutual TLS for a `tcp://` engine.
    tls: Option<super::fleet::TlsFiles>,
    /// Its name in the fleet (metrics carry it).
    name: String,
}

impl DockerEngine {
    /// `host`: `DOCKER_HOST` (`unix://…`, `tcp://…`), or the local socket when `None`.
    pub fn new(host: Option<String>) -> Self {
        let host = host.unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        Self { host, client: RwLock::new(None), metrics: None, tls: None, name: super::fleet::LOCAL.into() }
    }

    /// Reach the engine over mutual TLS (`tcp://` hosts).
    pub fn with_tls(mut self, tls: Option<super::fleet::TlsFiles>) -> Self {
        self.tls = tls;
        self
    }

    /// Its name in the fleet.
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// Count every engine call in `metrics`: latency and errors by host and operation.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Run one engine call named `operation`, timing it (for a stream: until the stream
    /// starts) and counting its failure by error code. Every method of [`EngineApi`]
    /// goes through here.
    async fn timed<T>(&self, operation: &'static str, call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let started = std::time::Instant::now();
        let out = call.await;
        if let Some(m) = &self.metrics {
            let code = out.as_ref().err().map(|e| crate::error::HasCode::code(e).as_str());
            m.observe_engine(&self.name, operation, started.elapsed().as_secs_f64(), code);
        }
        out
    }

    pub(super) fn host(&self) -> &str {
        &self.host
    }

    /// The connected client, connecting and negotiating the API version first if needed.
    pub(super) async fn docker(&self) -> Result<Docker> {
        if let Some(d) = self.client.read().expect("engine lock").as_ref() {
            return Ok(d.clone());
        }
        let docker = match &self.tls {
            Some(t) => super::tls::connect(&self.host, t, 120, bollard::API_DEFAULT_VERSION),
            None => Docker::connect_with_host(&self.host).map_err(|e| e.to_string()),
        }
        .map_err(|e| EngineError::Unavailable(format!("{} ({e})", self.host)))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| match EngineError::from_bollard(ObjectKind::Other, e) {
                EngineError::Unavailable(m) => self.forget_if_unavailable(EngineError::Unavailable(m)),
                other => EngineError::Unavailable(format!("{}: version negotiation failed: {other}", self.host)),
            })?;
        let v = docker.client_version();
        tracing::info!(host = %self.host, api_version = %format!("{}.{}", v.major_version, v.minor_version), "connected to the Docker engine");
        *self.client.write().expect("engine lock") = Some(docker.clone());
        Ok(docker)
    }

    /// Whether Berth's own HTTP reaches this host (plain `unix://` and `tcp://`; TLS
    /// hosts go through bollard).
    pub(super) fn speaks_raw(&self) -> bool {
        self.tls.is_none() && super::raw::supported(&self.host)
    }

    /// `/v{negotiated}{path}`: a path for Berth's own requests.
    pub(super) fn versioned(docker: &Docker, path: &str) -> String {
        let v = docker.client_version();
        format!("/v{}.{}{path}", v.major_version, v.minor_version)
    }

    /// Forget the client when the transport failed, so the next call reconnects; the
    /// error names the engine's address (with several hosts, which one is down matters).
    pub(super) fn forget_if_unavailable(&self, err: EngineError) -> EngineError {
        match err {
            EngineError::Unavailable(msg) => {
                self.client.write().expect("engine lock").take();
                let addr = self.host.split_once("://").map_or(self.host.as_str(), |(_, a)| a);
                match msg.contains(addr) {
                    true => EngineError::Unavailable(msg),
                    false => EngineError::Unavailable(format!("{}: {msg}", self.host)),
                }
            }
            other => other,
        }
    }

    /// Map a bollard error, forgetting the client when the transport failed.
    pub(super) fn fail(&self, kind: ObjectKind, e: bollard::errors::Error) -> EngineError {
        self.forget_if_unavailable(EngineError::from_bollard(kind, e))
    }

    pub(super) async fn ping(&self) -> Result<()> {
        let d = self.docker().await?;
        d.ping().await.map(|_| ()).map_err(|e| self.fail(ObjectKind::Other, e))
    }

    pub(super) async fn info(&self) -> Result<EngineInfo> {
        let d = self.docker().await?;
        let version = d.version().await.map_err(|e| self.fail(ObjectKind::Other, e))?;
        let info = d.info().await.map_err(|e| self.fail(ObjectKind::Other, e))?;
        let v = d.client_version();
        Ok(EngineInfo {
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            negotiated_api_version: format!("{}.{}", v.major_version, v.minor_version),
            min_api_version: version.min_api_version,
            os: version.os.unwrap_or_default(),
            arch: version.arch.unwrap_or_default(),
            kernel_version: version.kernel_version,
            containers: info.containers.unwrap_or(0),
            containers_running: info.containers_running.unwrap_or(0),
            containers_paused: info.containers_paused.unwrap_or(0),
            containers_stopped: info.containers_stopped.unwrap_or(0),
            images: info.images.unwrap_or(0),
        })
    }
}

/// Each method is implemented in its resource's file (`images.rs`, `containers.rs`, …).
#[async_trait::async_trait]
impl EngineApi for DockerEngine {
    fn host(&self) -> &str {
        DockerEngine::host(self)
    }
    async fn ping(&self) -> Result<()> {
        self.timed("ping", DockerEngine::ping(self)).await
    }
    async fn info(&self) -> Result<EngineInfo> {
        self.timed("info", DockerEngine::info(self)).await
    }
    async fn list_images(&self, filters: &ImageFilters) -> Result<Vec<ImageSummary>> {
        self.timed("list_images", DockerEngine::list_images(self, filters)).await
    }
    async fn resolve_image(&self, given: &str) -> Result<String> {
        self.timed("resolve_image", DockerEngine::resolve_image(self, given)).await
    }
    async fn inspect_image(&self, reference: &str) -> Result<serde_json::Value> {
        self.timed("inspect_image", DockerEngine::inspect_image(self, reference)).await
    }
    async fn image_history(&self, reference: &str) -> Result<Vec<ImageLayer>> {
        self.timed("image_history", DockerEngine::image_history(self, reference)).await
    }
    async fn image_identity(&self, reference: &str) -> Result<Option<(String, Vec<String>, Vec<String>)>> {
        self.timed("image_identity", DockerEngine::image_identity(self, reference)).await
    }
    async fn remove_image(&self, reference: &str, force: bool, noprune: bool) -> Result<Vec<ImageDeleteItem>> {
        self.timed("remove_image", DockerEngine::remove_image(self, reference, force, noprune)).await
    }
    async fn tag_image(&self, source: &str, repo: &str, tag: &str) -> Result<()> {
        self.timed("tag_image", DockerEngine::tag_image(self, source, repo, tag)).await
    }
    async fn prune(&self, target: PruneTarget, label: &[String], until: Option<&str>, dry_run: bool) -> Result<PruneReport> {
        self.timed("prune", DockerEngine::prune(self, target, label, until, dry_run)).await
    }
    async fn build_image(&self, spec: &BuildParams, context: Option<BoxStream<'static, std::io::Result<Bytes>>>, auth: &[RegistryAuth]) -> Result<BoxStream<'static, Result<BuildOutput>>> {
        self.timed("build_image", DockerEngine::build_image(self, spec, context, auth)).await
    }
    async fn pull(&self, repository: &str, tag: &str, platform: Option<&str>, auth: Option<&RegistryAuth>) -> Result<BoxStream<'static, Result<ProgressMessage>>> {
        self.timed("pull", DockerEngine::pull(self, repository, tag, platform, auth)).await
    }
    async fn push(&self, repository: &str, tag: &str, auth: Option<&RegistryAuth>) -> Result<BoxStream<'static, Result<ProgressMessage>>> {
        self.timed("push", DockerEngine::push(self, repository, tag, auth)).await
    }
    async fn list_containers(&self, filters: &ContainerFilters) -> Result<Vec<ContainerSummary>> {
        self.timed("list_containers", DockerEngine::list_containers(self, filters)).await
    }
    async fn resolve_container(&self, given: &str) -> Result<String> {
        self.timed("resolve_container", DockerEngine::resolve_container(self, given)).await
    }
    async fn inspect_container(&self, id: &str) -> Result<serde_json::Value> {
        self.timed("inspect_container", DockerEngine::inspect_container(self, id)).await
    }
    async fn container_running(&self, id: &str) -> Result<bool> {
        self.timed("container_running", DockerEngine::container_running(self, id)).await
    }
    async fn start_container(&self, id: &str) -> Result<()> {
        self.timed("start_container", DockerEngine::start_container(self, id)).await
    }
    async fn stop_container(&self, id: &str, timeout: Option<i32>) -> Result<()> {
        self.timed("stop_container", DockerEngine::stop_container(self, id, timeout)).await
    }
    async fn restart_container(&self, id: &str, timeout: Option<i32>) -> Result<()> {
        self.timed("restart_container", DockerEngine::restart_container(self, id, timeout)).await
    }
    async fn kill_container(&self, id: &str, signal: &str) -> Result<()> {
        self.timed("kill_container", DockerEngine::kill_container(self, id, signal)).await
    }
    async fn remove_container(&self, id: &str, force: bool, volumes: bool) -> Result<()> {
        self.timed("remove_container", DockerEngine::remove_container(self, id, force, volumes)).await
    }
    async fn logs(&self, id: &str, options: &LogOptions) -> Result<BoxStream<'static, Result<LogLine>>> {
        self.timed("logs", DockerEngine::logs(self, id, options)).await
    }
    async fn create_container(&self, spec: &RunSpec) -> Result<String> {
        self.timed("create_container", DockerEngine::create_container(self, spec)).await
    }
    async fn attach_output(&self, id: &str) -> Result<BoxStream<'static, Result<(LogStream, Bytes)>>> {
        self.timed("attach_output", DockerEngine::attach_output(self, id)).await
    }
    async fn wait_exit(&self, id: &str) -> Result<i64> {
        self.timed("wait_exit", DockerEngine::wait_exit(self, id)).await
    }
    async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        self.timed("container_stats", DockerEngine::container_stats(self, id)).await
    }
    async fn container_stats_stream(&self, id: &str) -> Result<BoxStream<'static, Result<ContainerStats>>> {
        self.timed("container_stats_stream", DockerEngine::container_stats_stream(self, id)).await
    }
    async fn container_top(&self, id: &str) -> Result<ContainerTop> {
        self.timed("container_top", DockerEngine::container_top(self, id)).await
    }
    async fn disk_usage(&self) -> Result<DiskUsage> {
        self.timed("disk_usage", DockerEngine::disk_usage(self)).await
    }
    async fn volume_facts(&self, name: &str) -> Result<Option<crate::domain::policy::VolumeFacts>> {
        self.timed("volume_facts", DockerEngine::volume_facts(self, name)).await
    }
    async fn list_volumes(&self, f: &crate::domain::objects::VolumeFilters) -> Result<Vec<crate::domain::objects::VolumeView>> {
        self.timed("list_volumes", DockerEngine::list_volumes(self, f)).await
    }
    async fn inspect_volume(&self, name: &str) -> Result<Option<crate::domain::objects::VolumeView>> {
        self.timed("inspect_volume", DockerEngine::inspect_volume(self, name)).await
    }
    async fn create_volume(&self, spec: &crate::domain::objects::VolumeSpec) -> Result<crate::domain::objects::VolumeView> {
        self.timed("create_volume", DockerEngine::create_volume(self, spec)).await
    }
    async fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        self.timed("remove_volume", DockerEngine::remove_volume(self, name, force)).await
    }
    async fn list_networks(&self, f: &crate::domain::objects::NetworkFilters) -> Result<Vec<crate::domain::objects::NetworkInfo>> {
        self.timed("list_networks", DockerEngine::list_networks(self, f)).await
    }
    async fn inspect_network(&self, given: &str) -> Result<Option<crate::domain::objects::NetworkInfo>> {
        self.timed("inspect_network", DockerEngine::inspect_network(self, given)).await
    }
    async fn create_network(&self, spec: &crate::domain::objects::NetworkSpec) -> Result<String> {
        self.timed("create_network", DockerEngine::create_network(self, spec)).await
    }
    async fn remove_network(&self, id: &str) -> Result<()> {
        self.timed("remove_network", DockerEngine::remove_network(self, id)).await
    }
    async fn connect_network(&self, network: &str, container: &str) -> Result<()> {
        self.timed("connect_network", DockerEngine::connect_network(self, network, container)).await
    }
    async fn disconnect_network(&self, network: &str, container: &str, force: bool) -> Result<()> {
        self.timed("disconnect_network", DockerEngine::disconnect_network(self, network, container, force)).await
    }
    async fn events(&self, since: Option<&str>, until: Option<&str>, types: &[String]) -> Result<BoxStream<'static, Result<EngineEvent>>> {
        self.timed("events", DockerEngine::events(self, since, until, types)).await
    }
    async fn network_labels(&self, id: &str) -> Result<Option<std::collections::HashMap<String, String>>> {
        self.timed("network_labels", DockerEngine::network_labels(self, id)).await
    }
    async fn container_stdio_info(&self, id: &str) -> Result<ContainerStdioInfo> {
        self.timed("container_stdio_info", DockerEngine::container_stdio_info(self, id)).await
    }
    async fn attach_stdio(&self, id: &str, tty: bool, stdin: bool, logs: bool) -> Result<Stdio> {
        self.timed("attach_stdio", DockerEngine::attach_stdio(self, id, tty, stdin, logs)).await
    }
    async fn resize_container_tty(&self, id: &str, cols: u16, rows: u16) -> Result<()> {
        self.timed("resize_container_tty", DockerEngine::resize_container_tty(self, id, cols, rows)).await
    }
    async fn create_exec(&self, container: &str, spec: &ExecSpec) -> Result<String> {
        self.timed("create_exec", DockerEngine::create_exec(self, container, spec)).await
    }
    async fn inspect_exec(&self, id: &str) -> Result<ExecInfo> {
        self.timed("inspect_exec", DockerEngine::inspect_exec(self, id)).await
    }
    async fn start_exec_stdio(&self, id: &str, tty: bool) -> Result<Stdio> {
        self.timed("start_exec_stdio", DockerEngine::start_exec_stdio(self, id, tty)).await
    }
    async fn resize_exec(&self, id: &str, cols: u16, rows: u16) -> Result<()> {
        self.timed("resize_exec", DockerEngine::resize_exec(self, id, cols, rows)).await
    }
}
