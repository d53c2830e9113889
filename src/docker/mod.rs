//! The Docker engine adapter: the only module that imports bollard.
//!
//! [`Engine`] connects lazily: the service starts (and answers `503 docker_unavailable`)
//! while the engine is away, and connects on the first call that finds it. On connect it
//! negotiates the API version with the engine, so an older engine (Debian's 20.10 speaks
//! API 1.41) and newer ones both work. A transport failure drops the client, so the next
//! call reconnects and negotiates again: the service recovers by itself when the engine
//! comes back. Everything it returns is Berth's own type ([`types`]) or plain JSON.
//!
//! Attach and exec start are hijacked connections, upgraded by Berth itself so that it
//! reads the engine's framing exactly (see [`interactive`]).

mod interactive;
mod ops;
mod raw;
pub mod types;

use std::collections::HashMap;
use std::sync::RwLock;

use bollard::Docker;
use bollard::query_parameters as qp;
use futures_util::{Stream, StreamExt};

pub use interactive::{ContainerStdioInfo, ExecInfo, MAX_CHUNK, OutputChunk, OutputStream, Stdio, StdioDecoder};
pub use crate::domain::credentials::RegistryAuth;
pub use ops::{BuildOutput, ProgressMessage, PruneReport};
pub use types::*;

/// The shortest id prefix that names a container. Docker takes any unambiguous prefix; a
/// control plane should not let a one-character typo (or a fuzzer) hit some container:
/// 12 is the short id `docker ps` shows.
pub const MIN_ID_PREFIX: usize = 12;

/// Which kind of object a 404 was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Image,
    Container,
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Docker engine unavailable: {0}")]
    Unavailable(String),
    #[error("{message}")]
    NotFound { kind: ObjectKind, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Docker(String),
}

impl crate::error::HasCode for EngineError {
    fn code(&self) -> crate::error::ErrorCode {
        use crate::error::ErrorCode;
        match self {
            EngineError::Unavailable(_) => ErrorCode::DockerUnavailable,
            EngineError::NotFound { kind: ObjectKind::Image, .. } => ErrorCode::ImageNotFound,
            EngineError::NotFound { kind: ObjectKind::Container, .. } => ErrorCode::ContainerNotFound,
            EngineError::NotFound { kind: ObjectKind::Other, .. } => ErrorCode::NotFound,
            EngineError::Conflict(_) => ErrorCode::Conflict,
            EngineError::BadRequest(_) => ErrorCode::InvalidRequest,
            EngineError::Docker(_) => ErrorCode::DockerError,
        }
    }
    fn detail(&self) -> String {
        match self {
            EngineError::Unavailable(msg) => format!("The Docker engine does not answer: {msg}"),
            other => other.to_string(),
        }
    }
    fn retry_after(&self) -> Option<u64> {
        self.is_unavailable().then_some(5)
    }
}

impl EngineError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, EngineError::Unavailable(_))
    }

    fn from_bollard(kind: ObjectKind, e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as B;
        match e {
            B::DockerResponseServerError { status_code, message } => match status_code {
                404 => EngineError::NotFound { kind, message },
                409 => EngineError::Conflict(message),
                400 => EngineError::BadRequest(message),
                _ => EngineError::Docker(message),
            },
            B::SocketNotFoundError(path) => EngineError::Unavailable(format!("no socket at {path}")),
            B::HyperLegacyError { err } => EngineError::Unavailable(format!("{err}")),
            B::IOError { err } => EngineError::Unavailable(err.to_string()),
            B::RequestTimeoutError => EngineError::Unavailable("the engine did not answer in time".into()),
            // The connection broke while a body was streaming: the engine went away.
            B::HyperResponseError { err } => EngineError::Unavailable(format!("the engine connection broke: {err}")),
            B::DockerStreamError { error } => EngineError::Docker(error),
            other => EngineError::Docker(other.to_string()),
        }
    }
}

/// The engine behind Berth.
pub struct Engine {
    host: String,
    client: RwLock<Option<Docker>>,
}

type Result<T> = std::result::Result<T, EngineError>;

impl Engine {
    /// `host`: `DOCKER_HOST` (`unix://…`, `tcp://…`), or the local socket when `None`.
    pub fn new(host: Option<String>) -> Self {
        let host = host.unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        Self { host, client: RwLock::new(None) }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The connected client, connecting and negotiating the API version first if needed.
    async fn docker(&self) -> Result<Docker> {
        if let Some(d) = self.client.read().expect("engine lock").as_ref() {
            return Ok(d.clone());
        }
        let docker = Docker::connect_with_host(&self.host)
            .map_err(|e| EngineError::Unavailable(format!("{} ({e})", self.host)))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| match EngineError::from_bollard(ObjectKind::Other, e) {
                EngineError::Unavailable(m) => EngineError::Unavailable(m),
                other => EngineError::Unavailable(format!("version negotiation failed: {other}")),
            })?;
        let v = docker.client_version();
        tracing::info!(host = %self.host, api_version = %format!("{}.{}", v.major_version, v.minor_version), "connected to the Docker engine");
        *self.client.write().expect("engine lock") = Some(docker.clone());
        Ok(docker)
    }

    /// Forget the client when the transport failed, so the next call reconnects.
    fn forget_if_unavailable(&self, err: EngineError) -> EngineError {
        if err.is_unavailable() {
            self.client.write().expect("engine lock").take();
        }
        err
    }

    /// Map a bollard error, forgetting the client when the transport failed.
    fn fail(&self, kind: ObjectKind, e: bollard::errors::Error) -> EngineError {
        self.forget_if_unavailable(EngineError::from_bollard(kind, e))
    }

    pub async fn ping(&self) -> Result<()> {
        let d = self.docker().await?;
        d.ping().await.map(|_| ()).map_err(|e| self.fail(ObjectKind::Other, e))
    }

    pub async fn info(&self) -> Result<EngineInfo> {
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

    // ---- images -------------------------------------------------------------------------

    pub async fn list_images(&self, f: &ImageFilters) -> Result<Vec<ImageSummary>> {
        let d = self.docker().await?;
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        if let Some(dangling) = f.dangling {
            filters.insert("dangling".into(), vec![dangling.to_string()]);
        }
        if !f.reference.is_empty() {
            filters.insert("reference".into(), f.reference.clone());
        }
        if !f.label.is_empty() {
            filters.insert("label".into(), f.label.clone());
        }
        let opts = qp::ListImagesOptions { all: f.all, filters: Some(filters), ..Default::default() };
        let images = d.list_images(Some(opts)).await.map_err(|e| self.fail(ObjectKind::Image, e))?;
        Ok(images
            .into_iter()
            .map(|i| ImageSummary {
                id: i.id,
                repo_tags: i.repo_tags.into_iter().filter(|t| t != "<none>:<none>").collect(),
                repo_digests: i.repo_digests.into_iter().filter(|t| t != "<none>@<none>").collect(),
                size: i.size,
                created: unix_to_rfc3339(i.created),
                labels: i.labels,
                containers: i.containers,
            })
            .collect())
    }

    /// The engine's full inspect document, as `docker image inspect` prints it.
    /// Inspect an image named by reference, full id, or an id prefix of at least
    /// [`MIN_ID_PREFIX`] hex digits (Docker would take any unambiguous prefix: `rmi 8`).
    async fn inspect_image_checked(&self, given: &str) -> Result<bollard::models::ImageInspect> {
        let d = self.docker().await?;
        let image = d.inspect_image(given).await.map_err(|e| self.fail(ObjectKind::Image, e))?;
        let id = image.id.as_deref().unwrap_or_default();
        let hex = id.trim_start_matches("sha256:");
        let wanted = given.trim_start_matches("sha256:");
        let looks_like_id = given.starts_with("sha256:") || (wanted.len() < 64 && wanted.bytes().all(|b| b.is_ascii_hexdigit()));
        let by_name = !given.starts_with("sha256:") && {
            let tags = image.repo_tags.as_deref().unwrap_or_default();
            let digests = image.repo_digests.as_deref().unwrap_or_default();
            let with_latest = format!("{given}:latest");
            tags.iter().any(|t| t == given || *t == with_latest) || digests.iter().any(|d| d == given)
        };
        let by_id = hex.starts_with(wanted) && (wanted.len() >= MIN_ID_PREFIX || wanted.len() == hex.len());
        if !looks_like_id || by_name || by_id {
            return Ok(image);
        }
        Err(EngineError::NotFound {
            kind: ObjectKind::Image,
            message: format!(
                "No such image: {given} (give a reference, or an id or id prefix of at least {MIN_ID_PREFIX} hex digits)"
            ),
        })
    }

    /// The id of an image named by reference, full id, or a long enough id prefix.
    pub async fn resolve_image(&self, given: &str) -> Result<String> {
        Ok(self.inspect_image_checked(given).await?.id.unwrap_or_else(|| given.to_string()))
    }

    pub async fn inspect_image(&self, reference: &str) -> Result<serde_json::Value> {
        let image = self.inspect_image_checked(reference).await?;
        serde_json::to_value(image).map_err(|e| EngineError::Docker(e.to_string()))
    }

    pub async fn remove_image(&self, reference: &str, force: bool, noprune: bool) -> Result<Vec<ImageDeleteItem>> {
        // The same naming rule as inspect: a short id prefix removes nothing.
        self.inspect_image_checked(reference).await?;
        let d = self.docker().await?;
        let opts = qp::RemoveImageOptions { force, noprune, ..Default::default() };
        let items = d
            .remove_image(reference, Some(opts), None)
            .await
            .map_err(|e| self.fail(ObjectKind::Image, e))?;
        Ok(items.into_iter().map(|i| ImageDeleteItem { untagged: i.untagged, deleted: i.deleted }).collect())
    }

    /// Tag `source` as `repo:tag`.
    pub async fn tag_image(&self, source: &str, repo: &str, tag: &str) -> Result<()> {
        let d = self.docker().await?;
        let opts = qp::TagImageOptions { repo: Some(repo.to_string()), tag: Some(tag.to_string()) };
        d.tag_image(source, Some(opts)).await.map_err(|e| self.fail(ObjectKind::Image, e))
    }

    // ---- containers ---------------------------------------------------------------------

    pub async fn list_containers(&self, f: &ContainerFilters) -> Result<Vec<ContainerSummary>> {
        let d = self.docker().await?;
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        for (key, values) in [("label", &f.label), ("status", &f.status), ("name", &f.name)] {
            if !values.is_empty() {
                filters.insert(key.into(), values.clone());
            }
        }
        let opts = qp::ListContainersOptions { all: f.all, filters: Some(filters), ..Default::default() };
        let list = d.list_containers(Some(opts)).await.map_err(|e| self.fail(ObjectKind::Container, e))?;
        Ok(list
            .into_iter()
            .map(|c| ContainerSummary {
                id: c.id.unwrap_or_default(),
                names: c
                    .names
                    .unwrap_or_default()
                    .into_iter()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .collect(),
                image: c.image.unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
                command: c.command.unwrap_or_default(),
                created: unix_to_rfc3339(c.created.unwrap_or(0)),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                status: c.status.unwrap_or_default(),
                ports: c
                    .ports
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| PortView {
                        ip: p.ip,
                        private_port: p.private_port,
                        public_port: p.public_port,
                        protocol: p.typ.map(|t| t.to_string()),
                    })
                    .collect(),
                labels: c.labels.unwrap_or_default(),
            })
            .collect())
    }

    /// Inspect by name, full id, or an id prefix of at least [`MIN_ID_PREFIX`] characters.
    async fn inspect_checked(&self, given: &str) -> Result<bollard::models::ContainerInspectResponse> {
        let d = self.docker().await?;
        let c = d
            .inspect_container(given, None::<qp::InspectContainerOptions>)
            .await
            .map_err(|e| self.fail(ObjectKind::Container, e))?;
        let id = c.id.as_deref().unwrap_or_default();
        let name = c.name.as_deref().unwrap_or_default().trim_start_matches('/');
        if given == name || given == id || (given.len() >= MIN_ID_PREFIX && id.starts_with(given)) {
            return Ok(c);
        }
        Err(EngineError::NotFound {
            kind: ObjectKind::Container,
            message: format!(
                "No such container: {given} (give a name, or an id or id prefix of at least {MIN_ID_PREFIX} characters)"
            ),
        })
    }

    /// The full id of a container named by name, id, or a long enough id prefix.
    pub async fn resolve_container(&self, given: &str) -> Result<String> {
        Ok(self.inspect_checked(given).await?.id.unwrap_or_else(|| given.to_string()))
    }

    pub async fn inspect_container(&self, id: &str) -> Result<serde_json::Value> {
        let c = self.inspect_checked(id).await?;
        serde_json::to_value(c).map_err(|e| EngineError::Docker(e.to_string()))
    }

    /// Whether the container is running (and exists).
    pub async fn container_running(&self, id: &str) -> Result<bool> {
        let c = self.inspect_checked(id).await?;
        Ok(c.state.and_then(|s| s.running).unwrap_or(false))
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        let d = self.docker().await?;
        d.start_container(id, None::<qp::StartContainerOptions>)
            .await
            .map_err(|e| self.fail(ObjectKind::Container, e))
    }

    pub async fn stop_container(&self, id: &str, timeout: Option<i32>) -> Result<()> {
        let d = self.docker().await?;
        let opts = qp::StopContainerOptions { t: timeout, signal: None };
        d.stop_container(id, Some(opts)).await.map_err(|e| self.fail(ObjectKind::Container, e))
    }

    pub async fn restart_container(&self, id: &str, timeout: Option<i32>) -> Result<()> {
        let d = self.docker().await?;
        let opts = qp::RestartContainerOptions { t: timeout, signal: None };
        d.restart_container(id, Some(opts)).await.map_err(|e| self.fail(ObjectKind::Container, e))
    }

    pub async fn kill_container(&self, id: &str, signal: &str) -> Result<()> {
        let d = self.docker().await?;
        let opts = qp::KillContainerOptions { signal: signal.to_string() };
        d.kill_container(id, Some(opts)).await.map_err(|e| self.fail(ObjectKind::Container, e))
    }

    pub async fn remove_container(&self, id: &str, force: bool, volumes: bool) -> Result<()> {
        let d = self.docker().await?;
        let opts = qp::RemoveContainerOptions { force, v: volumes, link: false };
        d.remove_container(id, Some(opts)).await.map_err(|e| self.fail(ObjectKind::Container, e))
    }

    /// The container's output. The stream ends when the log ends (or, with `follow`,
    /// when the container stops); dropping it closes the engine connection.
    pub async fn logs(
        &self,
        id: &str,
        o: &LogOptions,
    ) -> Result<impl Stream<Item = Result<LogLine>> + Send + 'static + use<>> {
        let d = self.docker().await?;
        let opts = qp::LogsOptions {
            follow: o.follow,
            stdout: true,
            stderr: true,
            since: o.since.unwrap_or(0).clamp(0, i32::MAX as i64) as i32,
            until: 0,
            timestamps: o.timestamps,
            tail: o.tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into()),
        };
        let stream = d.logs(id, Some(opts));
        Ok(stream.map(|item| {
            item.map(log_line).map_err(|e| EngineError::from_bollard(ObjectKind::Container, e))
        }))
    }
}

fn split_output(out: bollard::container::LogOutput) -> (LogStream, bytes::Bytes) {
    use bollard::container::LogOutput as L;
    match out {
        L::StdErr { message } => (LogStream::Stderr, message),
        L::StdOut { message } | L::Console { message } | L::StdIn { message } => (LogStream::Stdout, message),
    }
}

fn log_line(out: bollard::container::LogOutput) -> LogLine {
    let (stream, bytes) = split_output(out);
    LogLine { stream, text: String::from_utf8_lossy(&bytes).into_owned() }
}

fn unix_to_rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
