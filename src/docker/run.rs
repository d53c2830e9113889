//! What a `run` does on the engine: create a container from a [`RunSpec`], attach to its
//! output before it starts, wait for its exit code.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters as qp;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::containers::split_output;
use super::{DockerEngine, EngineError, LogStream, ObjectKind, Result};
use crate::domain::policy::VolumeFacts;
use crate::domain::run::RunSpec;

type PortBindings = HashMap<String, Option<Vec<PortBinding>>>;

impl DockerEngine {
    pub(super) async fn create_container(&self, spec: &RunSpec) -> Result<String> {
        let d = self.docker().await?;
        let opts = qp::CreateContainerOptions { name: spec.name.clone(), platform: String::new() };
        let res = d.create_container(Some(opts), create_body(spec)).await.map_err(|e| match self.fail(ObjectKind::Image, e) {
            // A create 404 is about the image, or about another object it names (a network,
            // a volume plugin): tell them apart by the engine's message. A 409 is the name.
            EngineError::NotFound { message, .. } => {
                let about_image = message.to_ascii_lowercase().contains("image");
                EngineError::NotFound { kind: if about_image { ObjectKind::Image } else { ObjectKind::Other }, message }
            }
            other => other,
        })?;
        Ok(res.id)
    }

    /// Without `logs`: the engine subscribes the live streams before it answers the
    /// attach, and replaying the log as well sent the first lines twice when the
    /// container started (and wrote) before the replay ran. `docker run` attaches so too.
    pub(super) async fn attach_output(&self, id: &str) -> Result<BoxStream<'static, Result<(LogStream, Bytes)>>> {
        let d = self.docker().await?;
        let opts = qp::AttachContainerOptions {
            stdout: true,
            stderr: true,
            stream: true,
            logs: false,
            stdin: false,
            detach_keys: None,
        };
        let res = d.attach_container(id, Some(opts)).await.map_err(|e| self.fail(ObjectKind::Container, e))?;
        // Raw bytes: a line (or a UTF-8 character) may span frames; the caller assembles.
        Ok(res
            .output
            .map(|item| item.map(split_output).map_err(|e| EngineError::from_bollard(ObjectKind::Container, e)))
            .boxed())
    }

    /// A named volume's driver, labels and options; `None` when the engine has none by
    /// that name (a run would create it).
    pub(super) async fn volume_facts(&self, name: &str) -> Result<Option<VolumeFacts>> {
        let d = self.docker().await?;
        match d.inspect_volume(name).await {
            Ok(v) => Ok(Some(VolumeFacts { name: v.name, driver: v.driver, labels: v.labels, options: v.options })),
            Err(e) => match self.fail(ObjectKind::Other, e) {
                EngineError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    pub(super) async fn wait_exit(&self, id: &str) -> Result<i64> {
        let d = self.docker().await?;
        let opts = qp::WaitContainerOptions { condition: "not-running".into() };
        let mut stream = d.wait_container(id, Some(opts));
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(self.fail(ObjectKind::Container, e)),
            None => Err(EngineError::Docker("the engine closed the wait without an exit code".into())),
        }
    }
}

/// The engine's create body for a validated run request.
fn create_body(spec: &RunSpec) -> ContainerCreateBody {
    let port_bindings = port_bindings(spec);
    ContainerCreateBody {
        image: Some(spec.image.to_string()),
        cmd: spec.cmd.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        labels: (!spec.labels.is_empty()).then(|| spec.labels.clone()),
        exposed_ports: (!port_bindings.is_empty()).then(|| port_bindings.keys().cloned().collect()),
        volumes: (!spec.anonymous_volumes.is_empty()).then(|| spec.anonymous_volumes.clone()),
        working_dir: spec.workdir.clone(),
        user: spec.user.clone(),
        // As the docker CLI sets them: `run -dit` keeps stdin open for a later attach
        // (`GET /v1/containers/{id}/attach`) without attaching anything now; an attached
        // `run -i` also attaches stdin, once: when the first client attached to stdin
        // goes away, the process reads EOF.
        tty: Some(spec.tty),
        open_stdin: Some(spec.open_stdin),
        attach_stdin: Some(spec.open_stdin && !spec.detach),
        stdin_once: Some(spec.open_stdin && !spec.detach),
        attach_stdout: Some(!spec.detach),
        attach_stderr: Some(!spec.detach),
        host_config: Some(host_config(spec, port_bindings)),
        ..Default::default()
    }
}

/// Published ports by container port; an exposed-only port has no bindings.
fn port_bindings(spec: &RunSpec) -> PortBindings {
    let mut port_bindings = PortBindings::new();
    for p in &spec.ports {
        let entry = port_bindings.entry(p.container_port.clone()).or_insert_with(|| Some(Vec::new()));
        if p.host_port.is_some() || p.host_ip.is_some() {
            entry.get_or_insert_with(Vec::new).push(PortBinding {
                host_ip: p.host_ip.clone(),
                host_port: p.host_port.clone(),
            });
        }
    }
    port_bindings
}

fn host_config(spec: &RunSpec, port_bindings: PortBindings) -> HostConfig {
    let restart_policy = spec.restart.as_ref().map(|r| RestartPolicy {
        name: Some(match r.name.as_str() {
            "always" => RestartPolicyNameEnum::ALWAYS,
            "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
            "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
            _ => RestartPolicyNameEnum::NO,
        }),
        maximum_retry_count: r.max_retries,
    });
    // Volumes with a source and bind mounts are both the engine's `Binds`.
    let binds = [&spec.binds[..], &spec.bind_mounts[..]].concat();
    HostConfig {
        binds: (!binds.is_empty()).then_some(binds),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        // An attached run removes its container itself once it has the exit code.
        auto_remove: Some(spec.auto_remove && spec.detach),
        restart_policy,
        memory: spec.memory_bytes,
        nano_cpus: spec.nano_cpus,
        pids_limit: spec.pids_limit,
        network_mode: spec.network.clone(),
        privileged: Some(spec.privileged),
        cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
        devices: (!spec.devices.is_empty()).then(|| {
            spec.devices
                .iter()
                .map(|(h, c, p)| bollard::models::DeviceMapping {
                    path_on_host: Some(h.clone()),
                    path_in_container: Some(c.clone()),
                    cgroup_permissions: Some(p.clone()),
                })
                .collect()
        }),
        security_opt: (!spec.security_opt.is_empty()).then(|| spec.security_opt.clone()),
        pid_mode: spec.pid_mode.clone(),
        ipc_mode: spec.ipc_mode.clone(),
        ..Default::default()
    }
}
