//! The `run` request: what `POST /v1/containers` takes, validated into a [`RunSpec`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ImageRef;
use super::Rejection;
use super::policy::{EffectiveHostConfig, is_host_path, shares_namespace};

/// When to pull the image before creating the container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Pull only when the image is not on the engine (default).
    #[default]
    Missing,
    /// Always pull first.
    Always,
    /// Never pull: a missing image fails the job with `image_not_found`.
    Never,
}

/// Create and start a container (`docker run`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunContainerRequest {
    /// Image reference, e.g. `127.0.0.1:5000/team/app:1.2`.
    #[schema(example = "berth-test/busybox:latest")]
    pub image: String,
    /// Container name (`--name`).
    pub name: Option<String>,
    /// Command (replaces the image's CMD).
    #[schema(example = json!(["sh", "-c", "echo hello"]))]
    pub cmd: Option<Vec<String>>,
    /// Entrypoint (replaces the image's ENTRYPOINT).
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` entries.
    pub env: Option<Vec<String>>,
    /// Container labels; keys under `berth.` are Berth's to set (400 `invalid_request`).
    pub labels: Option<HashMap<String, String>>,
    /// Published ports, as `docker run -p`: `8080:80`, `127.0.0.1:8443:443/tcp`, `53/udp`.
    /// A host port below 1024 is reserved to admins.
    pub ports: Option<Vec<String>>,
    /// Volumes, as `docker run -v`: `/data` (anonymous) or `name:/data[:ro]` (named).
    /// A host path source (`/srv:/data`) is a bind mount, reserved to admins. A
    /// non-admin mounts a named volume only when it matches `BERTH_ALLOWED_VOLUMES` or is
    /// labelled `berth.team` with the caller's team; nobody mounts Berth's own data volume.
    pub volumes: Option<Vec<String>>,
    /// Working directory (`-w`).
    pub workdir: Option<String>,
    /// User (`-u`), `name|uid[:group|gid]`.
    pub user: Option<String>,
    /// Remove the container when it exits (`--rm`).
    pub auto_remove: Option<bool>,
    /// `true` (default): the job ends once the container started, with `{container_id}`.
    /// `false`: the job streams the output as `log` events and ends with `exit_code`.
    pub detach: Option<bool>,
    pub pull: Option<PullPolicy>,
    /// `no`, `always`, `unless-stopped`, `on-failure` or `on-failure:N`.
    pub restart_policy: Option<String>,
    /// Memory limit in bytes (`--memory`); for non-admins at most `BERTH_MAX_MEMORY_BYTES`.
    pub memory_bytes: Option<i64>,
    /// CPU quota in units of 1e-9 CPUs (`--cpus 1.5` = 1500000000); for non-admins at
    /// most `BERTH_MAX_NANO_CPUS`.
    pub nano_cpus: Option<i64>,
    /// Most processes the container may hold (`--pids-limit`): a positive number, or `-1`
    /// for none (admins only). Unset: `BERTH_DEFAULT_PIDS_LIMIT` (4096), which is also the
    /// most a non-admin may ask for.
    pub pids_limit: Option<i64>,
    /// Network to join (`--network`); `host` is reserved to admins.
    pub network: Option<String>,
    /// Privileged mode: reserved to admins.
    pub privileged: Option<bool>,
    /// Host bind mounts `/host/path:/container/path[:ro]`: reserved to admins.
    pub binds: Option<Vec<String>>,
    /// Allocate a TTY (`-t`).
    pub tty: Option<bool>,
    /// Keep stdin open (`-i`).
    pub open_stdin: Option<bool>,
    /// Extra kernel capabilities (`--cap-add`): reserved to admins.
    pub cap_add: Option<Vec<String>>,
    /// Host devices `/dev/x[:/dev/y[:rwm]]` (`--device`): reserved to admins.
    pub devices: Option<Vec<String>>,
    /// Security options (`--security-opt`, e.g. `seccomp=unconfined`): reserved to admins.
    pub security_opt: Option<Vec<String>>,
    /// PID namespace (`--pid host`): reserved to admins.
    pub pid_mode: Option<String>,
    /// IPC namespace (`--ipc`): `private`, `shareable`, `none`; `host` and
    /// `container:…` are reserved to admins.
    pub ipc_mode: Option<String>,
    /// The engine to run it on (a name of `GET /v1/hosts`); else `?host=`, else the
    /// default host. Kept as the job's `host`, not in its `request`.
    #[serde(default, skip_serializing_if = "super::requests::kept_apart")]
    #[schema(example = "local")]
    pub host: Option<String>,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub host_ip: Option<String>,
    pub host_port: Option<String>,
    /// `80/tcp`
    pub container_port: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartSpec {
    pub name: String,
    pub max_retries: Option<i64>,
}

/// A validated run request.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub image: ImageRef,
    pub name: Option<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    pub ports: Vec<PortSpec>,
    /// Anonymous volume paths.
    pub anonymous_volumes: Vec<String>,
    /// The other `volumes`, `src:dst[:mode]`: named volumes, and (admin) host paths.
    pub binds: Vec<String>,
    /// (Admin) host bind mounts from `binds`, `src:dst[:mode]`.
    pub bind_mounts: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub auto_remove: bool,
    pub detach: bool,
    pub pull: PullPolicy,
    pub restart: Option<RestartSpec>,
    pub memory_bytes: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    pub network: Option<String>,
    pub privileged: bool,
    pub tty: bool,
    pub open_stdin: bool,
    pub cap_add: Vec<String>,
    /// `(host path, container path, permissions)`
    pub devices: Vec<(String, String, String)>,
    pub security_opt: Vec<String>,
    pub pid_mode: Option<String>,
    pub ipc_mode: Option<String>,
}

impl RunSpec {
    /// What the container asks of the host, for the host-power list.
    pub fn host_config(&self) -> EffectiveHostConfig {
        EffectiveHostConfig {
            privileged: self.privileged,
            volumes: self.binds.clone(),
            bind_mounts: self.bind_mounts.clone(),
            network_mode: self.network.clone(),
            pid_mode: self.pid_mode.clone(),
            ipc_mode: self.ipc_mode.clone(),
            cap_add: self.cap_add.clone(),
            devices: self.devices.iter().map(|(host, _, _)| host.clone()).collect(),
            security_opt: self.security_opt.clone(),
            host_ports: self.ports.iter().filter_map(|p| p.host_port.as_deref()?.parse().ok()).collect(),
            ..Default::default()
        }
    }

    /// The named volumes it mounts: the sources that are no host path, of `volumes` and
    /// of `binds` too (an admin's `binds` entry `name:/x` is a named volume to the engine).
    pub fn named_volumes(&self) -> Vec<String> {
        let sources = self.binds.iter().chain(&self.bind_mounts).filter_map(|b| b.split(':').next());
        sources.filter(|s| !is_host_path(s)).map(String::from).collect()
    }
}

fn invalid(msg: impl Into<String>) -> Rejection {
    Rejection::invalid(msg)
}

/// Options that give a container power over the host need `admin`: 403
/// `policy_violation` naming the first one found.
fn check_host_power(host: &EffectiveHostConfig, is_admin: bool) -> Result<(), Rejection> {
    match host.host_power().first() {
        Some(found) if !is_admin => Err(found.refusal()),
        _ => Ok(()),
    }
}

pub(super) fn check_text(field: &str, s: &str, max: usize) -> Result<(), Rejection> {
    if s.len() > max || s.contains('\0') {
        return Err(invalid(format!("`{field}` must be at most {max} bytes, without NUL characters")));
    }
    Ok(())
}

fn parse_port(s: &str) -> Result<PortSpec, Rejection> {
    let bad = || invalid(format!("`ports` entry `{}` is not [ip:][host_port:]container_port[/tcp|udp|sctp]", s.escape_debug()));
    let (rest, proto) = match s.rsplit_once('/') {
        Some((r, p)) if ["tcp", "udp", "sctp"].contains(&p) => (r, p),
        Some(_) => return Err(bad()),
        None => (s, "tcp"),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let is_port = |p: &str| p.parse::<u16>().is_ok_and(|n| n > 0);
    let (ip, host, ctr) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), Some(*h), *c),
        _ => return Err(bad()),
    };
    if !is_port(ctr) || host.is_some_and(|h| !h.is_empty() && !is_port(h)) {
        return Err(bad());
    }
    if let Some(ip) = ip {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(bad());
        }
    }
    Ok(PortSpec {
        host_ip: ip.map(String::from),
        host_port: host.filter(|h| !h.is_empty()).map(String::from),
        container_port: format!("{ctr}/{proto}"),
    })
}

fn check_mount(field: &str, spec: &str) -> Result<(String, String), Rejection> {
    let parts: Vec<&str> = spec.split(':').collect();
    let bad = || invalid(format!("`{field}` entry `{}` is not source:/container/path[:ro|rw]", spec.escape_debug()));
    let (src, dst) = match parts.as_slice() {
        [s, d] => (*s, *d),
        [s, d, mode] if ["ro", "rw", "z", "Z"].contains(mode) => (*s, *d),
        _ => return Err(bad()),
    };
    if src.is_empty() || !dst.starts_with('/') || spec.chars().any(char::is_control) {
        return Err(bad());
    }
    Ok((src.to_string(), dst.to_string()))
}

impl RunContainerRequest {
    /// Validate, and apply the run policy: options that give a container power over the
    /// host need `admin` (403 `policy_violation` naming the option).
    pub fn validate(&self, is_admin: bool) -> Result<RunSpec, Rejection> {
        let spec = self.checked()?;
        check_host_power(&spec.host_config(), is_admin)?;
        Ok(spec)
    }

    /// Every field checked, in the order of the request; the spec.
    fn checked(&self) -> Result<RunSpec, Rejection> {
        let image = ImageRef::parse(&self.image)?;
        self.check_name()?;
        self.check_command()?;
        let env = self.valid_env()?;
        let labels = self.valid_labels()?;
        let ports = self.ports.iter().flatten().map(|p| parse_port(p)).collect::<Result<Vec<_>, _>>()?;
        let (anonymous_volumes, binds) = self.valid_volumes()?;
        let bind_mounts = self.valid_binds()?;
        self.check_network()?;
        let restart = self.valid_restart()?;
        self.check_resources()?;
        self.check_process_options()?;
        Ok(RunSpec {
            image,
            name: self.name.clone(),
            cmd: self.cmd.clone(),
            entrypoint: self.entrypoint.clone(),
            env,
            labels,
            ports,
            anonymous_volumes,
            binds,
            bind_mounts,
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            auto_remove: self.auto_remove.unwrap_or(false),
            detach: self.detach.unwrap_or(true),
            pull: self.pull.unwrap_or_default(),
            restart,
            memory_bytes: self.memory_bytes,
            nano_cpus: self.nano_cpus,
            pids_limit: self.pids_limit,
            network: self.network.clone(),
            privileged: self.privileged.unwrap_or(false),
            tty: self.tty.unwrap_or(false),
            open_stdin: self.open_stdin.unwrap_or(false),
            cap_add: self.valid_cap_add()?,
            devices: self.valid_devices()?,
            security_opt: self.valid_security_opt()?,
            pid_mode: self.valid_pid_mode()?,
            ipc_mode: self.valid_ipc_mode()?,
        })
    }

    fn check_name(&self) -> Result<(), Rejection> {
        let Some(name) = &self.name else { return Ok(()) };
        let b = name.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && b[0].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c));
        if !ok {
            return Err(invalid("`name` must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 128 characters)"));
        }
        Ok(())
    }

    /// `cmd` and `entrypoint`.
    fn check_command(&self) -> Result<(), Rejection> {
        for (field, list) in [("cmd", &self.cmd), ("entrypoint", &self.entrypoint)] {
            for a in list.iter().flatten() {
                check_text(field, a, 64 * 1024)?;
            }
        }
        Ok(())
    }

    fn valid_env(&self) -> Result<Vec<String>, Rejection> {
        let env = self.env.clone().unwrap_or_default();
        for e in &env {
            let key = e.split('=').next().unwrap_or("");
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-') {
                return Err(invalid(format!(
                    "`env` entries must be KEY=VALUE with KEY of [A-Za-z0-9_.-]; got key `{}`",
                    key.escape_debug()
                )));
            }
            check_text("env", e, 64 * 1024)?;
        }
        Ok(env)
    }

    fn valid_labels(&self) -> Result<HashMap<String, String>, Rejection> {
        let labels = self.labels.clone().unwrap_or_default();
        for (k, v) in &labels {
            if k.is_empty() || k.len() > 256 || k.chars().any(|c| c.is_control() || c == '=') {
                return Err(invalid(format!("label key `{}` must be 1-256 printable characters without `=`", k.escape_debug())));
            }
            check_text("labels", v, 4096)?;
        }
        super::scope::refuse_reserved_labels("labels", labels.keys())?;
        Ok(labels)
    }

    /// `volumes`: `(anonymous volume paths, src:dst[:mode] entries)`. A host-path source
    /// is a bind mount, which the host-power check then reserves.
    fn valid_volumes(&self) -> Result<(Vec<String>, Vec<String>), Rejection> {
        let mut anonymous = Vec::new();
        let mut binds = Vec::new();
        for v in self.volumes.iter().flatten() {
            if v.starts_with('/') && !v.contains(':') {
                check_text("volumes", v, 4096)?;
                if v.chars().any(char::is_control) {
                    return Err(invalid("`volumes` paths must not contain control characters"));
                }
                anonymous.push(v.clone());
                continue;
            }
            let (src, _) = check_mount("volumes", v)?;
            if !is_host_path(&src) && !src.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
                return Err(invalid(format!("volume name `{}` must be [a-zA-Z0-9_.-]", src.escape_debug())));
            }
            binds.push(v.clone());
        }
        Ok((anonymous, binds))
    }

    /// `binds`: host bind mounts, reserved to admins by the host-power check.
    fn valid_binds(&self) -> Result<Vec<String>, Rejection> {
        let binds = self.binds.clone().unwrap_or_default();
        for b in &binds {
            check_mount("binds", b)?;
        }
        Ok(binds)
    }

    fn check_network(&self) -> Result<(), Rejection> {
        match &self.network {
            Some(net) if net.is_empty() || net.len() > 128 || net.chars().any(|c| c.is_control() || c == '/') => {
                Err(invalid("`network` must be a network name"))
            }
            _ => Ok(()),
        }
    }

    /// `restart_policy`, which `auto_remove` excludes.
    fn valid_restart(&self) -> Result<Option<RestartSpec>, Rejection> {
        let restart = match self.restart_policy.as_deref() {
            None | Some("") | Some("no") => None,
            Some(p @ ("always" | "unless-stopped")) => Some(RestartSpec { name: p.into(), max_retries: None }),
            Some("on-failure") => Some(RestartSpec { name: "on-failure".into(), max_retries: None }),
            Some(p) => match p.strip_prefix("on-failure:").map(|n| n.parse::<i64>()) {
                Some(Ok(n)) if n >= 0 => Some(RestartSpec { name: "on-failure".into(), max_retries: Some(n) }),
                _ => return Err(invalid("`restart_policy` must be no, always, unless-stopped, on-failure or on-failure:N")),
            },
        };
        if restart.is_some() && self.auto_remove == Some(true) {
            return Err(invalid("`auto_remove` cannot be combined with a restart policy"));
        }
        Ok(restart)
    }

    /// `memory_bytes`, `nano_cpus` and `pids_limit`.
    fn check_resources(&self) -> Result<(), Rejection> {
        if self.memory_bytes.is_some_and(|m| m < 6 * 1024 * 1024) {
            return Err(invalid("`memory_bytes` must be at least 6 MiB (6291456)"));
        }
        if self.nano_cpus.is_some_and(|c| c <= 0) {
            return Err(invalid("`nano_cpus` must be positive"));
        }
        if self.pids_limit.is_some_and(|p| p == 0 || p < -1) {
            return Err(invalid("`pids_limit` must be a positive number of processes, or -1 for no limit"));
        }
        Ok(())
    }

    /// A non-admin's resources stay within the configured maxima (400 naming the field
    /// and the bound); `-1` (no process limit) is beyond any.
    fn check_bounds(&self, policy: &super::policy::RunPolicy) -> Result<(), Rejection> {
        let bounds = [
            ("memory_bytes", self.memory_bytes, policy.max_memory_bytes, "BERTH_MAX_MEMORY_BYTES"),
            ("nano_cpus", self.nano_cpus, policy.max_nano_cpus, "BERTH_MAX_NANO_CPUS"),
            ("pids_limit", self.pids_limit, policy.default_pids_limit, "BERTH_DEFAULT_PIDS_LIMIT"),
        ];
        for (field, asked, max, variable) in bounds {
            if let (Some(asked), Some(max)) = (asked, max) {
                if asked > max || asked < 0 {
                    return Err(invalid(format!("`{field}` must be at most {max} ({variable}) for non-admins")));
                }
            }
        }
        Ok(())
    }

    /// `workdir` and `user`.
    fn check_process_options(&self) -> Result<(), Rejection> {
        for (field, v) in [("workdir", &self.workdir), ("user", &self.user)] {
            if let Some(v) = v {
                check_text(field, v, 4096)?;
                if v.chars().any(char::is_control) {
                    return Err(invalid(format!("`{field}` must not contain control characters")));
                }
            }
        }
        if self.workdir.as_ref().is_some_and(|w| !w.starts_with('/')) {
            return Err(invalid("`workdir` must be an absolute path"));
        }
        Ok(())
    }

    fn valid_cap_add(&self) -> Result<Vec<String>, Rejection> {
        let cap_add = self.cap_add.clone().unwrap_or_default();
        for c in &cap_add {
            if c.is_empty() || c.len() > 64 || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(invalid(format!("`cap_add` entry `{}` is not a capability name", c.escape_debug())));
            }
        }
        Ok(cap_add)
    }

    /// `devices`: `(host path, container path, permissions)`.
    fn valid_devices(&self) -> Result<Vec<(String, String, String)>, Rejection> {
        let mut devices = Vec::new();
        for d in self.devices.iter().flatten() {
            let parts: Vec<&str> = d.split(':').collect();
            let (host, ctr, perm) = match parts.as_slice() {
                [h] => (*h, *h, "rwm"),
                [h, c] => (*h, *c, "rwm"),
                [h, c, p] => (*h, *c, *p),
                _ => ("", "", ""),
            };
            if !host.starts_with("/dev/") || !ctr.starts_with('/') || perm.is_empty() || !perm.bytes().all(|b| b"rwm".contains(&b)) {
                return Err(invalid(format!("`devices` entry `{}` is not /dev/host[:/container[:rwm]]", d.escape_debug())));
            }
            devices.push((host.to_string(), ctr.to_string(), perm.to_string()));
        }
        Ok(devices)
    }

    fn valid_security_opt(&self) -> Result<Vec<String>, Rejection> {
        let security_opt = self.security_opt.clone().unwrap_or_default();
        for o in &security_opt {
            check_text("security_opt", o, 1024)?;
        }
        Ok(security_opt)
    }

    /// Any PID namespace mode (the engine knows `host` and `container:<id>`).
    fn valid_pid_mode(&self) -> Result<Option<String>, Rejection> {
        if let Some(p) = &self.pid_mode {
            check_text("pid_mode", p, 256)?;
        }
        Ok(self.pid_mode.clone())
    }

    /// The IPC namespace mode; `""` is the engine's default.
    fn valid_ipc_mode(&self) -> Result<Option<String>, Rejection> {
        if let Some(i) = &self.ipc_mode {
            check_text("ipc_mode", i, 256)?;
            if !shares_namespace(i) && !["private", "shareable", "none", ""].contains(&i.as_str()) {
                return Err(invalid("`ipc_mode` must be private, shareable, none, host or container:<id>"));
            }
        }
        Ok(self.ipc_mode.clone().filter(|i| !i.is_empty()))
    }

    /// Apply the configured policy: the image allow-list, a non-admin's resource maxima,
    /// and default limits for a container that sets none (written into the request, so
    /// the job shows them). A non-admin's container that sets no memory or CPU limit and
    /// has no default gets the maximum, when there is one.
    pub fn apply_policy(&mut self, policy: &super::policy::RunPolicy, is_admin: bool) -> Result<(), Rejection> {
        let image = ImageRef::parse(&self.image)?;
        policy.check_image(&image, "run")?;
        if !is_admin {
            self.check_bounds(policy)?;
        }
        // What was asked, else the default; for a non-admin never above the maximum.
        let fill = |asked: Option<i64>, default: Option<i64>, max: Option<i64>| {
            let max = max.filter(|_| !is_admin);
            asked.or(default).map(|v| max.map_or(v, |m| v.min(m))).or(max)
        };
        self.memory_bytes = fill(self.memory_bytes, policy.default_memory_bytes, policy.max_memory_bytes);
        self.nano_cpus = fill(self.nano_cpus, policy.default_nano_cpus, policy.max_nano_cpus);
        self.pids_limit = self.pids_limit.or(policy.default_pids_limit);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn req(image: &str) -> RunContainerRequest {
        RunContainerRequest { image: image.into(), ..Default::default() }
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("80").unwrap().container_port, "80/tcp");
        let p = parse_port("127.0.0.1:8443:443/udp").unwrap();
        assert_eq!((p.host_ip.as_deref(), p.host_port.as_deref(), p.container_port.as_str()), (Some("127.0.0.1"), Some("8443"), "443/udp"));
        assert_eq!(parse_port("8080:80").unwrap().host_port.as_deref(), Some("8080"));
        for bad in ["", "0", "x:80", "80/icmp", "1.2.3:1:80", "1:2:3:4", "70000"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn policy_reserves_host_power_to_admins() {
        let cases: Vec<(&str, RunContainerRequest)> = vec![
            ("privileged", RunContainerRequest { privileged: Some(true), ..req("a") }),
            ("binds", RunContainerRequest { binds: Some(vec!["/:/host".into()]), ..req("a") }),
            ("volumes", RunContainerRequest { volumes: Some(vec!["/etc:/x:ro".into()]), ..req("a") }),
            ("network", RunContainerRequest { network: Some("host".into()), ..req("a") }),
            ("cap_add", RunContainerRequest { cap_add: Some(vec!["SYS_ADMIN".into()]), ..req("a") }),
            ("devices", RunContainerRequest { devices: Some(vec!["/dev/kmsg".into()]), ..req("a") }),
            ("security_opt", RunContainerRequest { security_opt: Some(vec!["seccomp=unconfined".into()]), ..req("a") }),
            ("pid_mode", RunContainerRequest { pid_mode: Some("host".into()), ..req("a") }),
            ("ipc_mode", RunContainerRequest { ipc_mode: Some("host".into()), ..req("a") }),
            ("ports", RunContainerRequest { ports: Some(vec!["8080:8080".into(), "127.0.0.1:80:80".into()]), ..req("a") }),
        ];
        for (option, r) in cases {
            let e = r.validate(false).unwrap_err();
            assert_eq!(e.code, ErrorCode::PolicyViolation, "{option}");
            assert!(e.detail.contains(option), "{option}: {}", e.detail);
            assert!(r.validate(true).is_ok(), "admin may use {option}");
        }
        let ok = RunContainerRequest { volumes: Some(vec!["data:/data".into(), "/anon".into()]), ..req("a") };
        let spec = ok.validate(false).unwrap();
        assert_eq!(spec.binds, vec!["data:/data".to_string()]);
        assert_eq!(spec.anonymous_volumes, vec!["/anon".to_string()]);
        assert_eq!(spec.named_volumes(), ["data"]);
        let admin = RunContainerRequest { binds: Some(vec!["/srv:/srv".into(), "v:/v".into()]), ..req("a") };
        assert_eq!(admin.validate(true).unwrap().named_volumes(), ["v"]);
        let high = RunContainerRequest { ports: Some(vec!["1024:80".into(), "80".into()]), ..req("a") };
        assert!(high.validate(false).is_ok(), "high host ports, and container ports below 1024");
    }

    #[test]
    fn resource_bounds_hold_for_non_admins() {
        use super::super::policy::RunPolicy;
        let policy = RunPolicy {
            max_memory_bytes: Some(64 << 20),
            max_nano_cpus: Some(1_000_000_000),
            default_pids_limit: Some(4096),
            ..Default::default()
        };
        for (field, r) in [
            ("memory_bytes", RunContainerRequest { memory_bytes: Some(65 << 20), ..req("a") }),
            ("nano_cpus", RunContainerRequest { nano_cpus: Some(2_000_000_000), ..req("a") }),
            ("pids_limit", RunContainerRequest { pids_limit: Some(5000), ..req("a") }),
            ("pids_limit", RunContainerRequest { pids_limit: Some(-1), ..req("a") }),
        ] {
            let e = r.clone().apply_policy(&policy, false).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{field}");
            assert!(e.detail.starts_with(&format!("`{field}` must be at most")), "{}", e.detail);
            let mut admin = r;
            assert!(admin.apply_policy(&policy, true).is_ok(), "admin may ask {field}");
        }
        // Unset: the default, else (non-admin) the maximum; the pids default for everyone.
        let mut none = req("a");
        none.apply_policy(&policy, false).unwrap();
        assert_eq!((none.memory_bytes, none.nano_cpus, none.pids_limit), (Some(64 << 20), Some(1_000_000_000), Some(4096)));
        let mut admin = req("a");
        admin.apply_policy(&policy, true).unwrap();
        assert_eq!((admin.memory_bytes, admin.nano_cpus, admin.pids_limit), (None, None, Some(4096)));
        let big_default = RunPolicy { default_memory_bytes: Some(1 << 30), ..policy };
        let mut capped = req("a");
        capped.apply_policy(&big_default, false).unwrap();
        assert_eq!(capped.memory_bytes, Some(64 << 20), "a default above the maximum is capped");
        for bad in [0, -2] {
            assert!(RunContainerRequest { pids_limit: Some(bad), ..req("a") }.validate(true).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_host_power_check_comes_after_the_fields_and_names_the_option() {
        // `binds` are bind mounts whatever their source; any PID mode is reserved.
        for (option, r) in [
            ("binds", RunContainerRequest { binds: Some(vec!["data:/data".into()]), ..req("a") }),
            ("pid_mode", RunContainerRequest { pid_mode: Some(String::new()), ..req("a") }),
        ] {
            let e = r.validate(false).unwrap_err();
            assert!(e.code == ErrorCode::PolicyViolation && e.detail.starts_with(&format!("`{option}`")), "{e:?}");
        }
        let both = RunContainerRequest { privileged: Some(true), workdir: Some("rel".into()), ..req("a") };
        assert_eq!(both.validate(false).unwrap_err().code, ErrorCode::InvalidRequest);
        let spec = RunContainerRequest { volumes: Some(vec!["v:/v".into()]), binds: Some(vec!["/srv:/srv".into()]), ..req("a") }
            .validate(true)
            .unwrap();
        assert_eq!((spec.binds, spec.bind_mounts), (vec!["v:/v".to_string()], vec!["/srv:/srv".to_string()]));
    }

    #[test]
    fn rejects_bad_fields() {
        for r in [
            req("UPPER"),
            RunContainerRequest { name: Some("a/b".into()), ..req("a") },
            RunContainerRequest { env: Some(vec!["=x".into()]), ..req("a") },
            RunContainerRequest { env: Some(vec!["A B=x".into()]), ..req("a") },
            RunContainerRequest { restart_policy: Some("sometimes".into()), ..req("a") },
            RunContainerRequest { memory_bytes: Some(10), ..req("a") },
            RunContainerRequest { workdir: Some("rel".into()), ..req("a") },
            RunContainerRequest { ports: Some(vec!["x".into()]), ..req("a") },
        ] {
            let e = r.validate(true).unwrap_err();
            assert!(matches!(e.code, ErrorCode::InvalidRequest | ErrorCode::InvalidReference), "{r:?}");
        }
        let spec = RunContainerRequest { restart_policy: Some("on-failure:3".into()), ..req("a") }.validate(false).unwrap();
        assert_eq!(spec.restart, Some(RestartSpec { name: "on-failure".into(), max_retries: Some(3) }));
        assert!(spec.detach, "detach defaults to true");
    }
}
