//! Containers: list, inspect, start, stop, restart, kill, remove, logs, prune.

use std::collections::HashMap;

use bollard::query_parameters as qp;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::types::unix_to_rfc3339;
use super::{
    ContainerFilters, ContainerSummary, DockerEngine, EngineError, LogLine, LogOptions, LogStream, MIN_ID_PREFIX,
    ObjectKind, PortView, Result,
};

impl DockerEngine {
    pub(super) async fn list_containers(&self, f: &ContainerFilters) -> Result<Vec<ContainerSummary>> {
        let d = self.docker().await?;
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        for (key, values) in [("label", &f.label), ("status", &f.status), ("name", &f.name)] {
            if !values.is_empty() {
                filters.insert(key.into(), values.clone());
            }
        }
        let opts = qp::ListContainersOptions { all: f.all, filters: Some(filters), ..Default::default() };
        let list = d.list_containers(Some(opts)).await.map_err(|e| self.fail(ObjectKind::Container, e))?;
        Ok(list.into_iter().map(summary).collect())
    }

    /// Inspect by name, full id, or an id prefix of at least [`MIN_ID_PREFIX`] characters.
    pub(super) async fn inspect_checked(&self, given: &str) -> Result<bollard::models::ContainerInspectResponse> {
        let d = self.docker().await?;
        let not_found = || EngineError::container_not_found(given);
        let c = match d.inspect_container(given, None::<qp::InspectContainerOptions>).await {
            Ok(c) => c,
            // A short prefix several containers share ("Multiple IDs found"): it names none.
            Err(e) => match self.fail(ObjectKind::Container, e) {
                e if given.len() < MIN_ID_PREFIX && !e.is_unavailable() => return Err(not_found()),
                // One wording for every absent container, which a hidden one shares.
                EngineError::NotFound { .. } => return Err(not_found()),
                e => return Err(e),
            },
        };
        let id = c.id.as_deref().unwrap_or_default();
        let name = c.name.as_deref().unwrap_or_default().trim_start_matches('/');
        if given == name || given == id || (given.len() >= MIN_ID_PREFIX && id.starts_with(given)) {
            return Ok(c);
        }
        Err(not_found())
    }

    pub(super) async fn resolve_container(&self, given: &str) -> Result<String> {
        Ok(self.inspect_checked(given).await?.id.unwrap_or_else(|| given.to_string()))
    }

    pub(super) async fn inspect_container(&self, id: &str) -> Result<serde_json::Value> {
        let c = self.inspect_checked(id).await?;
        serde_json::to_value(c).map_err(|e| EngineError::Docker(e.to_string()))
    }

    pub(super) async fn container_running(&self, id: &str) -> Result<bool> {
        let c = self.inspect_checked(id).await?;
        Ok(c.state.and_then(|s| s.running).unwrap_or(false))
    }

    pub(super) async fn start_container(&self, id: &str) -> Result<()> {
        let d = self.docker().await?;
        d.start_container(id, None::<qp::StartContainerOptions>)
            .await
            .map_err(|e| self.fail(ObjectKind::Container, e))
    }

    pub(super) async fn stop_container(&self, id: &str, timeout: Option<i32>) -> Result<()> {
        let d = self.docker().await?;
        let opts = qp::StopContainerOptions { t: timeout, signal: None };
        d.stop_container(id, Some(opts)).await.map_err(|e| self.fail(ObjectKind::Container, e))
    }

    pub(super) async fn restart_container(&self, id: &str, timeout: Option<i32>) -> Result<()> {
        let d = self.docker().await?;
        let opts = qp::RestartContainerOptions { t: timeout, signal: None };
        d.restart_container(id, Some(opts)).await.map_err(|e| self.fail(ObjectKind::Container, e))
    }

    pub(super) async fn kill_container(&self, id: &str, signal: &str) -> Result<()> {
        let d = self.docker().await?;
        let opts = qp::KillContainerOptions { signal: signal.to_string() };
        d.kill_container(id, Some(opts)).await.map_err(|e| self.fail(ObjectKind::Container, e))
    }

    pub(super) async fn remove_container(&self, id: &str, force: bool, volumes: bool) -> Result<()> {
        let d = self.docker().await?;
        let opts = qp::RemoveContainerOptions { force, v: volumes, link: false };
        d.remove_container(id, Some(opts)).await.map_err(|e| self.fail(ObjectKind::Container, e))
    }

    pub(super) async fn logs(&self, id: &str, o: &LogOptions) -> Result<BoxStream<'static, Result<LogLine>>> {
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
        Ok(stream
            .map(|item| item.map(log_line).map_err(|e| EngineError::from_bollard(ObjectKind::Container, e)))
            .boxed())
    }

}

fn summary(c: bollard::models::ContainerSummary) -> ContainerSummary {
    ContainerSummary {
        id: c.id.unwrap_or_default(),
        names: c.names.unwrap_or_default().into_iter().map(|n| n.trim_start_matches('/').to_string()).collect(),
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
    }
}

/// Which stream a piece of attached or logged output came from, and its bytes.
pub(super) fn split_output(out: bollard::container::LogOutput) -> (LogStream, bytes::Bytes) {
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
