//! The run policy beyond roles: what gives a container power over the host (the one
//! list, for create and for attach/exec), which images may be run, pulled and pushed, and
//! the resource limits a container gets when it asks for none.

use std::collections::HashMap;

use super::ImageRef;
use super::Rejection;
use crate::error::ErrorCode;

#[derive(Debug, Clone, Default)]
pub struct RunPolicy {
    /// Glob patterns (`*` matches anything, `/` included) over image references; empty:
    /// every image is allowed.
    pub allowed_images: Vec<String>,
    pub default_memory_bytes: Option<i64>,
    pub default_nano_cpus: Option<i64>,
    /// Most memory a non-admin's container may ask for (`BERTH_MAX_MEMORY_BYTES`).
    pub max_memory_bytes: Option<i64>,
    /// Most CPU a non-admin's container may ask for, in 1e-9 CPUs (`BERTH_MAX_NANO_CPUS`).
    pub max_nano_cpus: Option<i64>,
    /// Process limit for containers that set none (`BERTH_DEFAULT_PIDS_LIMIT`).
    pub default_pids_limit: Option<i64>,
    /// Named volumes a non-admin may mount besides their team's (`BERTH_ALLOWED_VOLUMES`,
    /// globs; default none).
    pub allowed_volumes: Vec<String>,
    /// Named volumes nobody may mount through Berth: those holding its own data.
    pub protected_volumes: Vec<String>,
    /// Hosts `remote=` builds may fetch from (`BERTH_BUILD_REMOTE_ALLOW`; default none).
    pub build_remote_allow: Vec<String>,
    /// Image patterns with a `{team}` placeholder (`BERTH_TEAM_IMAGES`): when set, a
    /// non-admin's build tags, tag targets, pushes and removals must match one for their
    /// own team.
    pub team_images: Vec<String>,
}

fn glob(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

impl RunPolicy {
    /// The forms an image is known by: `repo`, `repo:tag`, and for Docker Hub images
    /// also `docker.io/library/name:tag`. With a digest the engine uses the digest and
    /// ignores the tag, so the reference is known only by its digest forms (`repo@d`,
    /// `repo:tag@d`) and its repository: a tag-pinned pattern does not admit it.
    fn names(image: &ImageRef) -> Vec<String> {
        let repo = image.repository();
        let hub = image.domain.is_none().then(|| {
            let path = if image.path.contains('/') { image.path.clone() } else { format!("library/{}", image.path) };
            format!("docker.io/{path}")
        });
        let mut names = Vec::new();
        for r in std::iter::once(repo).chain(hub) {
            names.push(r.clone());
            match (&image.tag, &image.digest) {
                (Some(t), Some(d)) => names.push(format!("{r}:{t}@{d}")),
                (Some(t), None) => names.push(format!("{r}:{t}")),
                (None, Some(_)) => {}
                (None, None) => names.push(format!("{r}:latest")),
            }
            if let Some(d) = &image.digest {
                names.push(format!("{r}@{d}"));
            }
        }
        names
    }

    /// 403 `policy_violation` unless the image matches an allowed pattern.
    pub fn check_image(&self, image: &ImageRef, action: &str) -> Result<(), Rejection> {
        if self.allowed_images.is_empty() {
            return Ok(());
        }
        let names = Self::names(image);
        if self.allowed_images.iter().any(|p| names.iter().any(|n| glob(p, n))) {
            return Ok(());
        }
        Err(Rejection::new(
            ErrorCode::PolicyViolation,
            format!(
                "`image` {image} may not be used to {action}: it matches none of BERTH_ALLOWED_IMAGES ({})",
                self.allowed_images.join(", ")
            ),
        ))
    }
}

impl RunPolicy {
    /// 403 `policy_violation` unless the image matches a `BERTH_TEAM_IMAGES` pattern
    /// with `{team}` replaced by the caller's team (the same glob and name forms as
    /// [`RunPolicy::check_image`]). Unset: every name is allowed. Admins are not held
    /// to it; the caller decides that.
    pub fn check_team_image(&self, image: &ImageRef, team: &str, action: &str) -> Result<(), Rejection> {
        if self.team_images.is_empty() {
            return Ok(());
        }
        let names = Self::names(image);
        let patterns: Vec<String> = self.team_images.iter().map(|p| p.replace("{team}", team)).collect();
        if patterns.iter().any(|p| names.iter().any(|n| glob(p, n))) {
            return Ok(());
        }
        Err(Rejection::policy(format!(
            "`image` {image} may not be used to {action}: it matches none of BERTH_TEAM_IMAGES for team `{team}` ({})",
            patterns.join(", ")
        )))
    }

    /// The team-image rule for removing an image by id (or id prefix, or digest): every
    /// tag it has (`tags`, as the engine reports them) must be the team's. An image
    /// without tags is the team's only when it carries `berth.team=<team>` (`labelled`).
    pub fn check_team_image_tags(&self, given: &str, tags: &[String], labelled: bool, team: &str, action: &str) -> Result<(), Rejection> {
        if self.team_images.is_empty() {
            return Ok(());
        }
        if tags.is_empty() && !labelled {
            return Err(Rejection::policy(format!(
                "image {} may not be used to {action}: it has no tag, and BERTH_TEAM_IMAGES admits only team `{team}`'s names",
                given.escape_debug()
            )));
        }
        for tag in tags {
            let image = ImageRef::parse(tag)?;
            self.check_team_image(&image, team, action).map_err(|e| {
                Rejection::policy(format!("image {} is also tagged {tag}: {}", given.escape_debug(), e.detail))
            })?;
        }
        Ok(())
    }
}

/// What gives a container power over the host: the one list, default-deny. A non-admin
/// may not create a container with any of these (403 `policy_violation` naming the
/// option), nor attach to or exec in one that has them: a shell in it is a shell on the
/// host. Judged at create from the request, and at attach/exec from what the engine
/// reports of the container (its mounts as `.Mounts` lists them, namespace modes,
/// devices, capabilities, runtime, the driver options of its volumes, its ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPower {
    /// Privileged mode: every capability and the host's devices.
    Privileged,
    /// A bind mount of a host path (`Binds`, or a `bind` entry of `.Mounts`, which
    /// `--volumes-from` a container with one also makes).
    HostBind,
    /// Another container's volumes and binds (`--volumes-from`).
    VolumesFrom,
    /// The host's (or another container's) network namespace.
    HostNetwork,
    /// A PID namespace other than the container's own.
    PidMode,
    /// An IPC namespace other than the container's own (private, shareable, none).
    IpcMode,
    /// The host's UTS namespace (`--uts host`).
    UtsMode,
    /// A user namespace mode (`--userns host` turns off the engine's remapping).
    UsernsMode,
    /// The host's cgroup namespace where it is not the engine's default.
    CgroupnsMode,
    /// Capabilities beyond the engine's default set.
    CapAdd,
    /// Host devices.
    Devices,
    /// Device cgroup rules (`--device-cgroup-rule`): access to host devices by number.
    DeviceCgroupRules,
    /// Device requests (`--gpus`).
    DeviceRequests,
    /// Security options (seccomp, AppArmor, SELinux, `no-new-privileges`).
    SecurityOpt,
    /// An OCI runtime other than the engine's default.
    Runtime,
    /// A volume whose driver options mount something of the host (`type=none,o=bind,
    /// device=/…`, a block device, a network share).
    HostVolume,
    /// A published host port below 1024.
    PrivilegedPort,
}

impl HostPower {
    /// Every power, in the order a refusal lists them.
    pub const ALL: [HostPower; 17] = [
        HostPower::Privileged,
        HostPower::HostBind,
        HostPower::VolumesFrom,
        HostPower::HostNetwork,
        HostPower::PidMode,
        HostPower::IpcMode,
        HostPower::UtsMode,
        HostPower::UsernsMode,
        HostPower::CgroupnsMode,
        HostPower::CapAdd,
        HostPower::Devices,
        HostPower::DeviceCgroupRules,
        HostPower::DeviceRequests,
        HostPower::SecurityOpt,
        HostPower::Runtime,
        HostPower::HostVolume,
        HostPower::PrivilegedPort,
    ];

    /// The option that grants it, as the run request (or `docker run`) names it.
    pub fn option(self) -> &'static str {
        match self {
            HostPower::Privileged => "privileged",
            HostPower::HostBind => "binds",
            HostPower::VolumesFrom => "volumes_from",
            HostPower::HostNetwork => "network",
            HostPower::PidMode => "pid_mode",
            HostPower::IpcMode => "ipc_mode",
            HostPower::UtsMode => "uts_mode",
            HostPower::UsernsMode => "userns_mode",
            HostPower::CgroupnsMode => "cgroupns_mode",
            HostPower::CapAdd => "cap_add",
            HostPower::Devices => "devices",
            HostPower::DeviceCgroupRules => "device_cgroup_rules",
            HostPower::DeviceRequests => "device_requests",
            HostPower::SecurityOpt => "security_opt",
            HostPower::Runtime => "runtime",
            HostPower::HostVolume => "volumes",
            HostPower::PrivilegedPort => "ports",
        }
    }

    /// Why it is reserved; `setting` is the value that grants it.
    fn why(self, setting: &str) -> String {
        match self {
            HostPower::Privileged => "a privileged container owns the host".into(),
            HostPower::HostBind => "host bind mounts give the container the host's files".into(),
            HostPower::VolumesFrom => format!("`{setting}` shares another container's mounts, host binds included"),
            HostPower::HostNetwork => format!("network mode `{setting}` shares a namespace"),
            HostPower::PidMode => "sharing a PID namespace exposes other processes".into(),
            HostPower::IpcMode => format!("IPC mode `{setting}` shares a namespace"),
            HostPower::UtsMode => format!("UTS mode `{setting}` shares the host's hostname namespace"),
            HostPower::UsernsMode => format!("user namespace mode `{setting}` turns off user-namespace remapping"),
            HostPower::CgroupnsMode => format!("cgroup namespace mode `{setting}` shares the host's cgroups"),
            HostPower::CapAdd => "added capabilities widen what the container may do to the host".into(),
            HostPower::Devices => "host devices give the container the host's hardware".into(),
            HostPower::DeviceCgroupRules => "device cgroup rules open the host's devices to the container".into(),
            HostPower::DeviceRequests => "device requests give the container the host's hardware".into(),
            HostPower::SecurityOpt => "security options can switch off confinement".into(),
            HostPower::Runtime => format!("runtime `{setting}` is not the engine's default"),
            HostPower::HostVolume => format!("volume {setting} mounts the host's files through its driver options"),
            HostPower::PrivilegedPort => format!("host port {setting} is a privileged port (below 1024)"),
        }
    }
}

/// A container's effective host configuration, as far as host power goes: what a run
/// request asks for, or what the engine reports of an existing container. The engine's
/// own defaults (its default runtime, its default cgroup namespace mode) are left out by
/// whoever fills this in; anything else set here counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EffectiveHostConfig {
    pub privileged: bool,
    /// Volumes as `docker run -v` takes them, `source:target[:mode]`: a source that is a
    /// host path (`/…`, `./…`, `~…`) makes it a bind mount; otherwise it names a volume.
    pub volumes: Vec<String>,
    /// Explicit bind mounts (the run request's `binds`, `--mount type=bind`, the `bind`
    /// entries of `.Mounts`): host paths whatever their spelling.
    pub bind_mounts: Vec<String>,
    /// Containers whose mounts this one takes (`--volumes-from`).
    pub volumes_from: Vec<String>,
    pub network_mode: Option<String>,
    /// `None`: the container's own PID namespace. The engine knows no other modes than
    /// `host` and `container:<id>`, so any mode shares one (the engine reports its
    /// default as `""`: leave that out).
    pub pid_mode: Option<String>,
    pub ipc_mode: Option<String>,
    /// `None`: the container's own. The engine knows only `host` besides.
    pub uts_mode: Option<String>,
    /// `None`: the engine's default (remapped when the engine remaps).
    pub userns_mode: Option<String>,
    /// `None` (or `private`): the engine's default or the container's own.
    pub cgroupns_mode: Option<String>,
    pub cap_add: Vec<String>,
    /// Host paths of the devices.
    pub devices: Vec<String>,
    pub device_cgroup_rules: Vec<String>,
    /// One entry per device request (its driver, or its capabilities).
    pub device_requests: Vec<String>,
    pub security_opt: Vec<String>,
    /// `None`: the engine's default runtime.
    pub runtime: Option<String>,
    /// Volumes whose driver options mount the host, as [`VolumeFacts::host_source`]
    /// describes them.
    pub host_volumes: Vec<String>,
    /// Published host ports.
    pub host_ports: Vec<u16>,
}

/// One power found in a configuration, and the setting that grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPowerUse {
    pub power: HostPower,
    /// The value that grants it: a volume or mount, a namespace mode, the first entry of
    /// a list (`true` for `privileged`).
    pub setting: String,
    /// Granted by a `-v` volume with a host-path source, which the run request takes in
    /// `volumes`.
    via_volume: bool,
}

impl HostPowerUse {
    fn new(power: HostPower, setting: impl Into<String>) -> Self {
        Self { power, setting: setting.into(), via_volume: false }
    }

    /// The option the run request gave it in.
    pub fn option(&self) -> &'static str {
        if self.via_volume { "volumes" } else { self.power.option() }
    }

    /// 403 `policy_violation`: `` `option` is reserved to the admin role: why ``.
    pub fn refusal(&self) -> Rejection {
        let why = if self.via_volume {
            format!("`{}` bind-mounts a host path", self.setting)
        } else {
            self.power.why(&self.setting)
        };
        reserved_to_admins(self.option(), &why)
    }
}

/// 403 `policy_violation` for an option only admins may use.
pub fn reserved_to_admins(option: &str, why: &str) -> Rejection {
    Rejection::new(ErrorCode::PolicyViolation, format!("`{option}` is reserved to the admin role: {why}"))
}

/// Whether a `-v` volume's source is a host path (else it names a volume).
pub fn is_host_path(source: &str) -> bool {
    source.starts_with('/') || source.starts_with('.') || source.starts_with('~')
}

/// Whether a namespace mode shares another's namespace: the host's or a container's.
pub fn shares_namespace(mode: &str) -> bool {
    mode == "host" || mode.starts_with("container:")
}

/// IPC modes that keep the container's own namespace (`""`: the engine's default).
const OWN_IPC_MODES: [&str; 4] = ["", "private", "shareable", "none"];

impl EffectiveHostConfig {
    /// Every power this configuration has, at most one use of each, in
    /// [`HostPower::ALL`] order. Empty: nothing here needs admin.
    pub fn host_power(&self) -> Vec<HostPowerUse> {
        HostPower::ALL.into_iter().filter_map(|p| self.find(p)).collect()
    }

    /// The first setting that grants `power`, if any. Unknown modes count: a mode is
    /// harmless only when it is one known to keep the container's own namespace.
    fn find(&self, power: HostPower) -> Option<HostPowerUse> {
        let first = |list: &[String]| list.first().map(|s| HostPowerUse::new(power, s.clone()));
        let other_than = |mode: &Option<String>, own: &[&str]| {
            mode.as_deref().filter(|m| !own.contains(m)).map(|m| HostPowerUse::new(power, m))
        };
        match power {
            HostPower::Privileged => self.privileged.then(|| HostPowerUse::new(power, "true")),
            HostPower::HostBind => match self.volumes.iter().find(|v| is_host_path(v)) {
                Some(v) => Some(HostPowerUse { via_volume: true, ..HostPowerUse::new(power, v.clone()) }),
                None => first(&self.bind_mounts),
            },
            HostPower::VolumesFrom => first(&self.volumes_from),
            HostPower::HostNetwork => {
                self.network_mode.as_deref().filter(|m| shares_namespace(m)).map(|m| HostPowerUse::new(power, m))
            }
            // Any mode given, `""` included: the request's field names no private mode.
            HostPower::PidMode => self.pid_mode.as_ref().map(|m| HostPowerUse::new(power, m.clone())),
            HostPower::IpcMode => other_than(&self.ipc_mode, &OWN_IPC_MODES),
            HostPower::UtsMode => other_than(&self.uts_mode, &[""]),
            HostPower::UsernsMode => other_than(&self.userns_mode, &[""]),
            HostPower::CgroupnsMode => other_than(&self.cgroupns_mode, &["", "private"]),
            HostPower::CapAdd => first(&self.cap_add),
            HostPower::Devices => first(&self.devices),
            HostPower::DeviceCgroupRules => first(&self.device_cgroup_rules),
            HostPower::DeviceRequests => first(&self.device_requests),
            HostPower::SecurityOpt => first(&self.security_opt),
            HostPower::Runtime => other_than(&self.runtime, &["", "runc"]),
            HostPower::HostVolume => first(&self.host_volumes),
            HostPower::PrivilegedPort => {
                self.host_ports.iter().find(|p| **p < 1024).map(|p| HostPowerUse::new(power, p.to_string()))
            }
        }
    }
}

pub use super::identity::DEFAULT_TEAM;
pub use super::scope::TEAM_LABEL;

/// A named volume as the engine knows it: what the named-volume rule and the host-power
/// list read of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeFacts {
    pub name: String,
    pub driver: String,
    pub labels: HashMap<String, String>,
    /// The driver's options (`docker volume create -o`).
    pub options: HashMap<String, String>,
}

impl VolumeFacts {
    /// What of the host the volume mounts through its driver options, described
    /// (`` `data` (device=/srv, o=bind, type=none) ``); `None` when it mounts nothing of the
    /// host. The `local` driver mounts its `device` with `type` and `o`: a bind of a host
    /// path, a block device, a network share reached from the host's network. Only a
    /// `tmpfs` (or no options at all) is harmless; other drivers are plugins an admin
    /// installed, and are judged by whoever installed them.
    pub fn host_source(&self) -> Option<String> {
        let local = self.driver.is_empty() || self.driver == "local";
        let tmpfs = self.options.get("type").is_some_and(|t| t == "tmpfs");
        if !local || self.options.is_empty() || tmpfs {
            return None;
        }
        let mut opts: Vec<String> = self.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        opts.sort();
        Some(format!("`{}` ({})", self.name, opts.join(", ")))
    }
}

impl RunPolicy {
    /// The rule for making a volume (`POST /v1/volumes`): nobody makes one under the name
    /// of Berth's own data volumes (403 `forbidden`), and driver options that mount
    /// something of the host ([`VolumeFacts::host_source`], the host-power list's
    /// judgment of volumes) are reserved to admins (403 `policy_violation`).
    pub fn check_volume_create(&self, facts: &VolumeFacts, is_admin: bool) -> Result<(), Rejection> {
        if self.is_protected_volume(&facts.name) {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                format!("volume `{}` is the name of Berth's own data volume: nobody makes or removes it through Berth", facts.name),
            ));
        }
        match facts.host_source() {
            Some(source) if !is_admin => Err(reserved_to_admins("driver_opts", &HostPower::HostVolume.why(&source))),
            _ => Ok(()),
        }
    }

    /// Whether `name` is one of the volumes holding Berth's own data.
    pub fn is_protected_volume(&self, name: &str) -> bool {
        self.protected_volumes.iter().any(|p| p == name)
    }

    /// The named-volume rule for one volume a run mounts (`facts`: `None` when the engine
    /// has no such volume yet). Nobody mounts the volumes holding Berth's own data; an
    /// admin mounts any other; a non-admin one whose driver options mount nothing of the
    /// host and that matches `BERTH_ALLOWED_VOLUMES` or carries `berth.team=<team>`.
    pub fn check_volume(&self, name: &str, facts: Option<&VolumeFacts>, is_admin: bool, team: &str) -> Result<(), Rejection> {
        if self.protected_volumes.iter().any(|p| p == name) {
            return Err(Rejection::policy(format!(
                "`volumes`: volume `{name}` holds Berth's own data (its jobs, contexts and audit log); nobody mounts it through Berth"
            )));
        }
        if is_admin {
            return Ok(());
        }
        if let Some(source) = facts.and_then(VolumeFacts::host_source) {
            return Err(HostPowerUse::new(HostPower::HostVolume, source).refusal());
        }
        let teams = facts.is_some_and(|f| f.labels.get(TEAM_LABEL).is_some_and(|t| t == team));
        if teams || self.allowed_volumes.iter().any(|p| glob(p, name)) {
            return Ok(());
        }
        let allowed = if self.allowed_volumes.is_empty() { "none set".to_string() } else { self.allowed_volumes.join(", ") };
        Err(Rejection::policy(format!(
            "`volumes`: named volume `{name}` may not be mounted: it matches none of BERTH_ALLOWED_VOLUMES ({allowed}) \
             and is not labelled `{TEAM_LABEL}={team}`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "anything/at:all"));
        assert!(glob("127.0.0.1:5000/*", "127.0.0.1:5000/team/app:1"));
        assert!(glob("berth-test/*:1.*", "berth-test/app:1.2"));
        assert!(!glob("berth-test/*:1.*", "berth-test/app:2.0"));
        assert!(!glob("team/app", "team/app2"));
        assert!(glob("a*b*c", "aXXbYYc"));
    }

    #[test]
    fn allow_list() {
        let open = RunPolicy::default();
        assert!(open.check_image(&ImageRef::parse("x").unwrap(), "run").is_ok());
        let p = RunPolicy { allowed_images: vec!["127.0.0.1:5000/*".into(), "docker.io/library/busybox:*".into()], ..Default::default() };
        assert!(p.check_image(&ImageRef::parse("127.0.0.1:5000/team/app:1").unwrap(), "run").is_ok());
        assert!(p.check_image(&ImageRef::parse("busybox:1.36").unwrap(), "pull").is_ok());
        let tagged = RunPolicy { allowed_images: vec!["team/app:latest".into()], ..Default::default() };
        let digest = format!("team/app@sha256:{}", "a".repeat(64));
        assert!(tagged.check_image(&ImageRef::parse(&digest).unwrap(), "run").is_err(), "a digest is not :latest");
        assert!(tagged.check_image(&ImageRef::parse("team/app").unwrap(), "run").is_ok());
        let other = "b".repeat(64);
        let pinned = RunPolicy { allowed_images: vec!["team/app:1.0".into()], ..Default::default() };
        let check = |p: &RunPolicy, r: &str| p.check_image(&ImageRef::parse(r).unwrap(), "run").is_ok();
        assert!(check(&pinned, "team/app:1.0"));
        assert!(!check(&pinned, &format!("team/app:1.0@sha256:{other}")), "the engine would use the digest, not the tag");
        assert!(!check(&pinned, &format!("docker.io/team/app:1.0@sha256:{other}")));
        let digest_pinned = RunPolicy { allowed_images: vec![format!("team/app@sha256:{other}")], ..Default::default() };
        assert!(check(&digest_pinned, &format!("team/app:1.0@sha256:{other}")), "a digest pattern matches the digest");
        assert!(check(&digest_pinned, &format!("team/app@sha256:{other}")));
        assert!(!check(&digest_pinned, &format!("team/app@sha256:{}", "c".repeat(64))));
        let both = RunPolicy { allowed_images: vec![format!("team/app:1.0@sha256:{other}")], ..Default::default() };
        assert!(check(&both, &format!("team/app:1.0@sha256:{other}")));
        assert!(!check(&both, "team/app:1.0"), "a tag+digest pattern pins the digest");
        let starred = RunPolicy { allowed_images: vec!["team/app:*".into(), "docker.io/library/busybox:*".into()], ..Default::default() };
        assert!(check(&starred, &format!("team/app:1.0@sha256:{other}")), "a pattern ending in `*` still matches");
        assert!(check(&starred, &format!("busybox:1.36@sha256:{other}")));
        let repo = RunPolicy { allowed_images: vec!["team/app".into()], ..Default::default() };
        assert!(check(&repo, &format!("team/app:1.0@sha256:{other}")), "a repository pattern admits any of its images");
        let e = p.check_image(&ImageRef::parse("evil/app").unwrap(), "push").unwrap_err();
        assert_eq!(e.code, ErrorCode::PolicyViolation);
        assert!(e.detail.contains("evil/app") && e.detail.contains("BERTH_ALLOWED_IMAGES"), "{}", e.detail);
    }

    #[test]
    fn team_images() {
        let open = RunPolicy::default();
        assert!(open.check_team_image(&ImageRef::parse("x").unwrap(), "blue", "push").is_ok());
        let p = RunPolicy { team_images: vec!["127.0.0.1:5000/{team}/*".into(), "{team}-*".into()], ..Default::default() };
        let check = |r: &str, t: &str| p.check_team_image(&ImageRef::parse(r).unwrap(), t, "push");
        assert!(check("127.0.0.1:5000/blue/app:1", "blue").is_ok());
        assert!(check("127.0.0.1:5000/blue/sub/app", "blue").is_ok());
        assert!(check("blue-app:2", "blue").is_ok());
        let e = check("127.0.0.1:5000/red/app:1", "blue").unwrap_err();
        assert_eq!(e.code, ErrorCode::PolicyViolation);
        assert!(e.detail.contains("127.0.0.1:5000/red/app:1") && e.detail.contains("BERTH_TEAM_IMAGES"), "{}", e.detail);
        assert!(e.detail.contains("127.0.0.1:5000/blue/*"), "{}", e.detail);
        assert!(check("busybox", "blue").is_err());
        let tags = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(p.check_team_image_tags("abc", &tags(&["blue-a:1", "127.0.0.1:5000/blue/b:2"]), false, "blue", "remove").is_ok());
        let e = p.check_team_image_tags("abc", &tags(&["blue-a:1", "red-a:1"]), false, "blue", "remove").unwrap_err();
        assert!(e.detail.contains("red-a:1"), "{}", e.detail);
        assert!(p.check_team_image_tags("abc", &[], false, "blue", "remove").is_err(), "untagged, unlabelled");
        assert!(p.check_team_image_tags("abc", &[], true, "blue", "remove").is_ok(), "untagged, the team's label");
        assert!(open.check_team_image_tags("abc", &[], false, "blue", "remove").is_ok());
    }

    #[test]
    fn one_list_of_host_powers() {
        assert!(EffectiveHostConfig::default().host_power().is_empty());
        let quiet = EffectiveHostConfig {
            volumes: vec!["data:/data".into()],
            network_mode: Some("bridge".into()),
            ipc_mode: Some("private".into()),
            ..Default::default()
        };
        assert!(quiet.host_power().is_empty(), "named volumes, own namespaces");
        let all = EffectiveHostConfig {
            privileged: true,
            volumes: vec!["data:/data".into(), "/etc:/x:ro".into()],
            bind_mounts: vec!["/srv".into()],
            volumes_from: vec!["socket-holder".into()],
            network_mode: Some("container:abc".into()),
            pid_mode: Some("host".into()),
            ipc_mode: Some("host".into()),
            uts_mode: Some("host".into()),
            userns_mode: Some("host".into()),
            cgroupns_mode: Some("host".into()),
            cap_add: vec!["SYS_ADMIN".into()],
            devices: vec!["/dev/kmsg".into()],
            device_cgroup_rules: vec!["c 1:3 rwm".into()],
            device_requests: vec!["nvidia".into()],
            security_opt: vec!["seccomp=unconfined".into()],
            runtime: Some("kata".into()),
            host_volumes: vec!["`v` (device=/srv, o=bind, type=none)".into()],
            host_ports: vec![8080, 80],
        };
        let found = all.host_power();
        assert_eq!(found.iter().map(|u| u.power).collect::<Vec<_>>(), HostPower::ALL.to_vec());
        let names: Vec<_> = HostPower::ALL.iter().map(|p| p.option()).collect();
        assert_eq!(
            names,
            [
                "privileged", "binds", "volumes_from", "network", "pid_mode", "ipc_mode", "uts_mode", "userns_mode",
                "cgroupns_mode", "cap_add", "devices", "device_cgroup_rules", "device_requests", "security_opt",
                "runtime", "volumes", "ports"
            ]
        );
        assert_eq!(found[16].setting, "80", "the privileged port, not the first one");
        let bind = &found[1];
        assert_eq!((bind.option(), bind.setting.as_str()), ("volumes", "/etc:/x:ro"));
        assert_eq!(
            bind.refusal().detail,
            "`volumes` is reserved to the admin role: `/etc:/x:ro` bind-mounts a host path"
        );
        let mounted = EffectiveHostConfig { bind_mounts: vec!["/srv".into()], ..Default::default() }.host_power();
        assert_eq!(
            mounted[0].refusal().detail,
            "`binds` is reserved to the admin role: host bind mounts give the container the host's files"
        );
        let net = &found[3];
        assert_eq!(net.refusal().code, ErrorCode::PolicyViolation);
        assert_eq!(
            net.refusal().detail,
            "`network` is reserved to the admin role: network mode `container:abc` shares a namespace"
        );
    }

    #[test]
    fn engine_defaults_and_private_modes_are_no_power() {
        let defaults = EffectiveHostConfig {
            ipc_mode: Some("shareable".into()),
            uts_mode: Some(String::new()),
            userns_mode: Some(String::new()),
            cgroupns_mode: Some("private".into()),
            runtime: Some("runc".into()),
            host_ports: vec![1024, 8080],
            ..Default::default()
        };
        assert!(defaults.host_power().is_empty(), "{:?}", defaults.host_power());
        // Default-deny: a mode not known to be private counts.
        let odd = EffectiveHostConfig { ipc_mode: Some("weird".into()), uts_mode: Some("weird".into()), ..Default::default() };
        let found: Vec<_> = odd.host_power().into_iter().map(|u| u.power).collect();
        assert_eq!(found, [HostPower::IpcMode, HostPower::UtsMode]);
    }

    fn volume(name: &str, options: &[(&str, &str)], labels: &[(&str, &str)]) -> VolumeFacts {
        let map = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        VolumeFacts { name: name.into(), driver: "local".into(), labels: map(labels), options: map(options) }
    }

    #[test]
    fn volume_driver_options_that_mount_the_host() {
        assert_eq!(volume("plain", &[], &[]).host_source(), None);
        assert_eq!(volume("ram", &[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")], &[]).host_source(), None);
        let bind = volume("b", &[("type", "none"), ("o", "bind"), ("device", "/tmp/x")], &[]);
        assert_eq!(bind.host_source().as_deref(), Some("`b` (device=/tmp/x, o=bind, type=none)"));
        assert!(volume("disk", &[("type", "ext4"), ("device", "/dev/sda1")], &[]).host_source().is_some());
        assert!(volume("nfs", &[("type", "nfs"), ("o", "addr=10.0.0.1"), ("device", ":/export")], &[]).host_source().is_some());
        let plugin = VolumeFacts { driver: "rexray".into(), ..bind };
        assert_eq!(plugin.host_source(), None, "plugins are the admin's who installed them");
    }

    #[test]
    fn the_named_volume_rule() {
        let p = RunPolicy {
            allowed_volumes: vec!["shared-*".into()],
            protected_volumes: vec!["berth-data".into()],
            ..Default::default()
        };
        let team = volume("mine", &[], &[(TEAM_LABEL, DEFAULT_TEAM)]);
        let other = volume("theirs", &[], &[(TEAM_LABEL, "blue")]);
        let bind = volume("shared-bind", &[("type", "none"), ("o", "bind"), ("device", "/")], &[(TEAM_LABEL, DEFAULT_TEAM)]);
        assert!(p.check_volume("mine", Some(&team), false, DEFAULT_TEAM).is_ok(), "the caller's team's");
        assert!(p.check_volume("shared-x", None, false, DEFAULT_TEAM).is_ok(), "allowed by BERTH_ALLOWED_VOLUMES");
        let e = p.check_volume("theirs", Some(&other), false, DEFAULT_TEAM).unwrap_err();
        assert_eq!(e.code, ErrorCode::PolicyViolation);
        assert!(e.detail.contains("`theirs`") && e.detail.contains("BERTH_ALLOWED_VOLUMES (shared-*)"), "{}", e.detail);
        assert!(p.check_volume("new", None, false, DEFAULT_TEAM).is_err(), "an unknown volume is no team's");
        let e = p.check_volume("shared-bind", Some(&bind), false, DEFAULT_TEAM).unwrap_err();
        assert!(e.detail.starts_with("`volumes` is reserved to the admin role") && e.detail.contains("device=/"), "{}", e.detail);
        assert!(p.check_volume("shared-bind", Some(&bind), true, DEFAULT_TEAM).is_ok(), "admin");
        for admin in [false, true] {
            let e = p.check_volume("berth-data", None, admin, DEFAULT_TEAM).unwrap_err();
            assert!(e.detail.contains("Berth's own data"), "{}", e.detail);
        }
        let none = RunPolicy::default().check_volume("x", None, false, DEFAULT_TEAM).unwrap_err();
        assert!(none.detail.contains("(none set)"), "{}", none.detail);
    }
}

#[cfg(test)]
mod volume_create_tests {
    use super::*;

    #[test]
    fn making_a_volume_that_mounts_the_host_needs_admin() {
        let p = RunPolicy { protected_volumes: vec!["berth-data".into()], ..Default::default() };
        let facts = |name: &str, opts: &[(&str, &str)]| VolumeFacts {
            name: name.into(),
            driver: "local".into(),
            options: opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        };
        let bind = facts("b", &[("type", "none"), ("o", "bind"), ("device", "/etc")]);
        let e = p.check_volume_create(&bind, false).unwrap_err();
        assert_eq!(e.code, ErrorCode::PolicyViolation);
        assert!(e.detail.starts_with("`driver_opts` is reserved to the admin role") && e.detail.contains("device=/etc"), "{}", e.detail);
        assert!(p.check_volume_create(&bind, true).is_ok());
        assert!(p.check_volume_create(&facts("t", &[("type", "tmpfs"), ("device", "tmpfs")]), false).is_ok());
        assert!(p.check_volume_create(&facts("plain", &[]), false).is_ok());
        for admin in [false, true] {
            assert_eq!(p.check_volume_create(&facts("berth-data", &[]), admin).unwrap_err().code, ErrorCode::Forbidden);
        }
    }
}
