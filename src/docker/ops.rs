//! Engine operations behind jobs: build, pull, push, run, prune. Streams yield Berth's
//! own message types; an error item in a 200 stream is an `Err` item.

use std::collections::HashMap;

use bollard::auth::DockerCredentials;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters as qp;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::Value;

use super::{Engine, EngineError, LogStream, ObjectKind, Result, split_output};
use crate::domain::credentials::RegistryAuth;
use crate::domain::requests::BuildParams;
use crate::domain::run::RunSpec;

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

fn to_bollard(auth: &RegistryAuth) -> DockerCredentials {
    DockerCredentials {
        username: auth.username.clone(),
        password: auth.password.clone(),
        identitytoken: auth.identity_token.clone(),
        serveraddress: auth.server.clone(),
        ..Default::default()
    }
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

fn progress_message(
    id: Option<String>,
    status: Option<String>,
    detail: Option<bollard::models::ProgressDetail>,
) -> ProgressMessage {
    let (current, total) = detail.map(|d| (d.current, d.total)).unwrap_or((None, None));
    ProgressMessage { id, status, current, total, digest: None }
}

/// A message of the engine's JSON progress stream; an `error` item is an error.
fn progress_from_json(v: Value) -> Result<ProgressMessage> {
    if let Some(err) = v.get("errorDetail").and_then(|e| e.get("message")).or_else(|| v.get("error")) {
        return Err(EngineError::Docker(err.as_str().unwrap_or("error").to_string()));
    }
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
    let detail = v.get("progressDetail");
    let n = |k: &str| detail.and_then(|d| d.get(k)).and_then(|x| x.as_i64());
    Ok(ProgressMessage {
        id: s("id"),
        status: s("status"),
        current: n("current"),
        total: n("total"),
        digest: v.get("aux").and_then(|a| a.get("Digest")).and_then(|d| d.as_str()).map(String::from),
    })
}

/// `X-Registry-Auth`: base64url of the JSON credentials (`{}` when none).
fn registry_auth_header(auth: Option<&RegistryAuth>) -> String {
    use base64::Engine as _;
    let json = match auth {
        Some(a) => serde_json::json!({
            "username": a.username, "password": a.password,
            "identitytoken": a.identity_token, "serveraddress": a.server,
        }),
        None => serde_json::json!({}),
    };
    base64::engine::general_purpose::URL_SAFE.encode(json.to_string())
}

fn prune_filters(label: &[String], until: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut f = HashMap::new();
    if !label.is_empty() {
        f.insert("label".to_string(), label.to_vec());
    }
    if let Some(u) = until {
        f.insert("until".to_string(), vec![u.to_string()]);
    }
    f
}

impl Engine {
    /// Build from a tar (or gzip tar) context streamed from `context`, or from `remote`.
    pub async fn build(
        &self,
        spec: &BuildParams,
        context: Option<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static>,
    ) -> Result<tokio_stream::wrappers::ReceiverStream<Result<BuildOutput>>> {
        let d = self.docker().await?;
        let opts = qp::BuildImageOptions {
            dockerfile: spec.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into()),
            t: spec.tags.first().cloned(),
            remote: spec.remote.clone(),
            nocache: spec.nocache,
            pull: spec.pull.then(|| "1".to_string()),
            rm: true,
            forcerm: true,
            buildargs: (!spec.build_args.is_empty()).then(|| spec.build_args.clone()),
            labels: (!spec.labels.is_empty()).then(|| spec.labels.clone()),
            target: spec.target.clone().unwrap_or_default(),
            ..Default::default()
        };
        let body = match context {
            Some(s) => bollard::body_try_stream(s),
            None => bollard::body_full(Bytes::new()),
        };
        // The build stream borrows the client: drive it in a task that owns both, and hand
        // the items over a small channel. Dropping the receiver ends the task, which drops
        // the request: the engine stops the build.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<BuildOutput>>(64);
        tokio::spawn(async move {
            let mut stream = d.build_image(opts, None, Some(body));
            loop {
                let item = tokio::select! {
                    item = stream.next() => item,
                    _ = tx.closed() => return,
                };
                let out = match item {
                    None => return,
                    Some(Err(e)) => Err(EngineError::from_bollard(ObjectKind::Image, e)),
                    Some(Ok(info)) => {
                        if let Some(id) = info.aux.and_then(|a| a.id) {
                            Ok(BuildOutput::ImageId(id))
                        } else if let Some(s) = info.stream {
                            Ok(BuildOutput::Log(s))
                        } else if let Some(s) = info.status {
                            Ok(BuildOutput::Log(match info.id {
                                Some(id) => format!("{id}: {s}\n"),
                                None => format!("{s}\n"),
                            }))
                        } else {
                            continue;
                        }
                    }
                };
                if tx.send(out).await.is_err() {
                    return;
                }
            }
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
    }

    pub async fn pull(
        &self,
        repository: &str,
        tag: &str,
        platform: Option<&str>,
        auth: Option<&RegistryAuth>,
    ) -> Result<impl Stream<Item = Result<ProgressMessage>> + Send + 'static + use<>> {
        let d = self.docker().await?;
        let opts = qp::CreateImageOptions {
            from_image: Some(repository.to_string()),
            tag: Some(tag.to_string()),
            platform: platform.unwrap_or_default().to_string(),
            ..Default::default()
        };
        let stream = d.create_image(Some(opts), None, auth.map(|a| to_bollard(a)));
        Ok(stream.map(|item| match item {
            Ok(i) => Ok(progress_message(i.id, i.status, i.progress_detail)),
            Err(e) => Err(EngineError::from_bollard(ObjectKind::Image, e)),
        }))
    }

    pub async fn push(
        &self,
        repository: &str,
        tag: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<futures_util::stream::BoxStream<'static, Result<ProgressMessage>>> {
        let d = self.docker().await?;
        if super::raw::supported(&self.host) {
            // bollard's push model drops the layer ids and the digest: read the raw stream.
            let v = d.client_version();
            let query: String = form_urlencoded::Serializer::new(String::new()).append_pair("tag", tag).finish();
            let path = format!("/v{}.{}/images/{repository}/push?{query}", v.major_version, v.minor_version);
            let headers = [("X-Registry-Auth", registry_auth_header(auth))];
            let stream = super::raw::raw_post_stream(&self.host, &path, &headers, ObjectKind::Image)
                .await
                .map_err(|e| self.forget_if_unavailable(e))?;
            return Ok(stream.map(|item| item.and_then(progress_from_json)).boxed());
        }
        let opts = qp::PushImageOptions { tag: Some(tag.to_string()), platform: None };
        let stream = d.push_image(repository, Some(opts), auth.map(|a| to_bollard(a)));
        Ok(stream
            .map(|item| match item {
                Ok(i) => Ok(progress_message(None, i.status, i.progress_detail)),
                Err(e) => Err(EngineError::from_bollard(ObjectKind::Image, e)),
            })
            .boxed())
    }

    /// `(id, repo_digests, repo_tags)` of an image, `None` when it is not on the engine.
    pub async fn image_identity(&self, reference: &str) -> Result<Option<(String, Vec<String>, Vec<String>)>> {
        let d = self.docker().await?;
        match d.inspect_image(reference).await {
            Ok(i) => Ok(Some((
                i.id.unwrap_or_default(),
                i.repo_digests.unwrap_or_default(),
                i.repo_tags.unwrap_or_default(),
            ))),
            Err(e) => match self.fail(ObjectKind::Image, e) {
                EngineError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Create (not start) a container; returns its id.
    pub async fn create_container(&self, spec: &RunSpec) -> Result<String> {
        let d = self.docker().await?;
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in &spec.ports {
            let entry = port_bindings.entry(p.container_port.clone()).or_insert_with(|| Some(Vec::new()));
            if p.host_port.is_some() || p.host_ip.is_some() {
                entry.get_or_insert_with(Vec::new).push(PortBinding {
                    host_ip: p.host_ip.clone(),
                    host_port: p.host_port.clone(),
                });
            }
        }
        let restart_policy = spec.restart.as_ref().map(|r| RestartPolicy {
            name: Some(match r.name.as_str() {
                "always" => RestartPolicyNameEnum::ALWAYS,
                "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                _ => RestartPolicyNameEnum::NO,
            }),
            maximum_retry_count: r.max_retries,
        });
        let host_config = HostConfig {
            binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings.clone()),
            // An attached run removes its container itself once it has the exit code.
            auto_remove: Some(spec.auto_remove && spec.detach),
            restart_policy,
            memory: spec.memory_bytes,
            nano_cpus: spec.nano_cpus,
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
        };
        let body = ContainerCreateBody {
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
            host_config: Some(host_config),
            ..Default::default()
        };
        let opts = qp::CreateContainerOptions { name: spec.name.clone(), platform: String::new() };
        let res = d.create_container(Some(opts), body).await.map_err(|e| match self.fail(ObjectKind::Image, e) {
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

    /// Attach to a created container's output before it starts, so nothing is missed.
    /// Without `logs`: the engine subscribes the live streams before it answers the
    /// attach, and replaying the log as well sent the first lines twice when the
    /// container started (and wrote) before the replay ran. `docker run` attaches so too.
    pub async fn attach_output(
        &self,
        id: &str,
    ) -> Result<impl Stream<Item = Result<(LogStream, Bytes)>> + Send + 'static + use<>> {
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
        Ok(res.output.map(|item| item.map(split_output).map_err(|e| EngineError::from_bollard(ObjectKind::Container, e))))
    }

    /// Wait until the container is not running; its exit code.
    pub async fn wait_exit(&self, id: &str) -> Result<i64> {
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

    pub async fn prune_images(&self, all: bool, label: &[String], until: Option<&str>) -> Result<PruneReport> {
        let d = self.docker().await?;
        let mut filters = prune_filters(label, until);
        filters.insert("dangling".into(), vec![(!all).to_string()]);
        let res = d
            .prune_images(Some(qp::PruneImagesOptions { filters: Some(filters) }))
            .await
            .map_err(|e| self.fail(ObjectKind::Image, e))?;
        let items = res.images_deleted.unwrap_or_default();
        let deleted = items.iter().filter_map(|i| i.deleted.clone()).collect();
        let untagged = items.into_iter().filter_map(|i| i.untagged).collect();
        Ok(PruneReport { deleted, untagged, space_reclaimed: res.space_reclaimed.unwrap_or(0) })
    }

    pub async fn prune_containers(&self, label: &[String], until: Option<&str>) -> Result<PruneReport> {
        let d = self.docker().await?;
        let filters = prune_filters(label, until);
        let res = d
            .prune_containers(Some(qp::PruneContainersOptions { filters: Some(filters) }))
            .await
            .map_err(|e| self.fail(ObjectKind::Container, e))?;
        Ok(PruneReport {
            deleted: res.containers_deleted.unwrap_or_default(),
            untagged: Vec::new(),
            space_reclaimed: res.space_reclaimed.unwrap_or(0),
        })
    }
}
