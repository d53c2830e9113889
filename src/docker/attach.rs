//! Attach to a container's stdio (`docker attach`), and what an attach needs to know
//! about the container first: its state, its TTY, and its power over the host.

use bollard::models::{HostConfig, MountType};
use bollard::query_parameters as qp;

use super::stdio::{stdio_from_bollard, stdio_from_io};
use super::{DockerEngine, ObjectKind, Result, Stdio};
use crate::domain::policy::EffectiveHostConfig;

/// What an attach needs to know about a container.
#[derive(Debug, Clone)]
pub struct ContainerStdioInfo {
    /// The full id.
    pub id: String,
    pub running: bool,
    pub tty: bool,
    pub open_stdin: bool,
    /// The options that give this container power over the host
    /// ([`crate::domain::policy::HostPower`]): a shell in it is a shell on the host, so
    /// attach and exec need admin when this is not empty.
    pub host_power: Vec<&'static str>,
}

/// The engine's host config, as far as host power goes.
fn effective(hc: &HostConfig) -> EffectiveHostConfig {
    let list = |l: &Option<Vec<String>>| l.clone().unwrap_or_default();
    let bind_mounts = hc.mounts.iter().flatten().filter(|m| matches!(m.typ, Some(MountType::BIND)));
    EffectiveHostConfig {
        privileged: hc.privileged == Some(true),
        volumes: list(&hc.binds),
        bind_mounts: bind_mounts.map(|m| m.source.clone().unwrap_or_default()).collect(),
        network_mode: hc.network_mode.clone(),
        // The engine reports its default (the container's own namespace) as "".
        pid_mode: hc.pid_mode.clone().filter(|m| !m.is_empty()),
        ipc_mode: hc.ipc_mode.clone(),
        cap_add: list(&hc.cap_add),
        devices: hc.devices.iter().flatten().map(|d| d.path_on_host.clone().unwrap_or_default()).collect(),
        security_opt: list(&hc.security_opt),
    }
}

impl DockerEngine {
    pub(super) async fn container_stdio_info(&self, id: &str) -> Result<ContainerStdioInfo> {
        let c = self.inspect_checked(id).await?;
        let config = c.config.unwrap_or_default();
        let host = c.host_config.as_ref().map(effective).unwrap_or_default();
        Ok(ContainerStdioInfo {
            id: c.id.unwrap_or_else(|| id.to_string()),
            running: c.state.and_then(|s| s.running).unwrap_or(false),
            tty: config.tty.unwrap_or(false),
            open_stdin: config.open_stdin.unwrap_or(false),
            host_power: host.host_power().iter().map(|u| u.power.option()).collect(),
        })
    }

    pub(super) async fn attach_stdio(&self, id: &str, tty: bool, stdin: bool, logs: bool) -> Result<Stdio> {
        let d = self.docker().await?;
        if self.speaks_raw() {
            let flag = |b: bool| if b { "1" } else { "0" };
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("stream", "1")
                .append_pair("stdin", flag(stdin))
                .append_pair("stdout", "1")
                .append_pair("stderr", "1")
                .append_pair("logs", flag(logs))
                .finish();
            let path = Self::versioned(&d, &format!("/containers/{id}/attach?{query}"));
            let io = super::raw::hijack(self.host(), &path, String::new(), ObjectKind::Container)
                .await
                .map_err(|e| self.forget_if_unavailable(e))?;
            return Ok(stdio_from_io(io, tty));
        }
        let opts =
            qp::AttachContainerOptions { stdin, stdout: true, stderr: true, stream: true, logs, detach_keys: None };
        let res = d.attach_container(id, Some(opts)).await.map_err(|e| self.fail(ObjectKind::Container, e))?;
        Ok(stdio_from_bollard(res.output, res.input, tty))
    }

    pub(super) async fn resize_container_tty(&self, id: &str, cols: u16, rows: u16) -> Result<()> {
        let d = self.docker().await?;
        let opts = qp::ResizeContainerTTYOptions { w: cols.into(), h: rows.into() };
        d.resize_container_tty(id, opts).await.map_err(|e| self.fail(ObjectKind::Container, e))
    }
}
