//! Attach to a container's stdio (`docker attach`), and what an attach needs to know
//! about the container first: its state, its TTY, and its power over the host.

use bollard::models::{ContainerInspectResponse, HostConfigCgroupnsModeEnum, MountType, SystemInfoCgroupVersionEnum};
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
    /// The named volumes it mounts.
    pub volumes: Vec<String>,
}

/// What the engine does by default, which the host-power list does not count: its
/// default runtime, and on cgroup v1 the host's cgroup namespace (every container's
/// there, so `--cgroupns host` cannot be told from the default).
struct EngineDefaults {
    runtime: String,
    cgroupns_host: bool,
}

/// The container's effective host configuration, from its inspect document: `.Mounts`
/// (what it really mounts, `--volumes-from` included), not only what it was created with.
/// A mount that is neither a volume nor a tmpfs counts as a bind of host files.
/// `host_volumes`: its volumes whose driver options mount the host.
fn effective(c: &ContainerInspectResponse, defaults: &EngineDefaults, host_volumes: Vec<String>) -> EffectiveHostConfig {
    let hc = c.host_config.clone().unwrap_or_default();
    let list = |l: &Option<Vec<String>>| l.clone().unwrap_or_default();
    let mounted = c.mounts.iter().flatten().filter(|m| !matches!(m.typ.as_deref(), Some("volume" | "tmpfs")));
    let declared = hc.mounts.iter().flatten().filter(|m| !matches!(m.typ, Some(MountType::VOLUME | MountType::TMPFS)));
    let bind_mounts = mounted.map(|m| m.source.clone().unwrap_or_default()).chain(declared.map(|m| m.source.clone().unwrap_or_default()));
    let cgroupns = match hc.cgroupns_mode {
        Some(HostConfigCgroupnsModeEnum::HOST) if !defaults.cgroupns_host => Some("host".to_string()),
        _ => None,
    };
    let host_ports = hc.port_bindings.iter().flatten().flat_map(|(_, b)| b.iter().flatten());
    EffectiveHostConfig {
        privileged: hc.privileged == Some(true),
        volumes: list(&hc.binds),
        bind_mounts: bind_mounts.collect(),
        volumes_from: list(&hc.volumes_from),
        network_mode: hc.network_mode.clone(),
        // The engine reports its default (the container's own namespace) as "".
        pid_mode: hc.pid_mode.clone().filter(|m| !m.is_empty()),
        ipc_mode: hc.ipc_mode.clone(),
        uts_mode: hc.uts_mode.clone(),
        userns_mode: hc.userns_mode.clone(),
        cgroupns_mode: cgroupns,
        cap_add: list(&hc.cap_add),
        devices: hc.devices.iter().flatten().map(|d| d.path_on_host.clone().unwrap_or_default()).collect(),
        device_cgroup_rules: list(&hc.device_cgroup_rules),
        device_requests: hc.device_requests.iter().flatten().map(|r| r.driver.clone().unwrap_or_else(|| "gpu".into())).collect(),
        security_opt: list(&hc.security_opt),
        runtime: hc.runtime.clone().filter(|r| *r != defaults.runtime),
        host_volumes,
        host_ports: host_ports.filter_map(|b| b.host_port.as_deref()?.parse().ok()).collect(),
    }
}

impl DockerEngine {
    pub(super) async fn container_stdio_info(&self, id: &str) -> Result<ContainerStdioInfo> {
        let c = self.inspect_checked(id).await?;
        let defaults = self.engine_defaults().await?;
        let volumes: Vec<String> = c
            .mounts
            .iter()
            .flatten()
            .filter(|m| m.typ.as_deref() == Some("volume"))
            .filter_map(|m| m.name.clone())
            .collect();
        let mut host_volumes = Vec::new();
        for name in &volumes {
            // A volume removed meanwhile mounts nothing new.
            if let Some(source) = self.volume_facts(name).await?.and_then(|f| f.host_source()) {
                host_volumes.push(source);
            }
        }
        let host = effective(&c, &defaults, host_volumes);
        let config = c.config.unwrap_or_default();
        Ok(ContainerStdioInfo {
            id: c.id.unwrap_or_else(|| id.to_string()),
            running: c.state.and_then(|s| s.running).unwrap_or(false),
            tty: config.tty.unwrap_or(false),
            open_stdin: config.open_stdin.unwrap_or(false),
            host_power: host.host_power().iter().map(|u| u.power.option()).collect(),
            volumes,
        })
    }

    async fn engine_defaults(&self) -> Result<EngineDefaults> {
        let d = self.docker().await?;
        let info = d.info().await.map_err(|e| self.fail(ObjectKind::Other, e))?;
        Ok(EngineDefaults {
            runtime: info.default_runtime.unwrap_or_else(|| "runc".into()),
            cgroupns_host: matches!(info.cgroup_version, Some(SystemInfoCgroupVersionEnum::_1) | None),
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
