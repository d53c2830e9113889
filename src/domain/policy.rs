//! The run policy beyond roles: what gives a container power over the host (the one
//! list, for create and for attach/exec), which images may be run, pulled and pushed, and
//! the resource limits a container gets when it asks for none.

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

/// What gives a container power over the host: the one list. A non-admin may not create a
/// container with any of these (403 `policy_violation` naming the option), nor attach to
/// or exec in one that has them: a shell in it is a shell on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPower {
    /// Privileged mode: every capability and the host's devices.
    Privileged,
    /// A bind mount of a host path.
    HostBind,
    /// The host's (or another container's) network namespace.
    HostNetwork,
    /// A PID namespace other than the container's own.
    PidMode,
    /// The host's (or another container's) IPC namespace.
    IpcMode,
    /// Capabilities beyond the engine's default set.
    CapAdd,
    /// Host devices.
    Devices,
    /// Security options (seccomp, AppArmor, SELinux, `no-new-privileges`).
    SecurityOpt,
}

impl HostPower {
    /// Every power, in the order a refusal lists them.
    pub const ALL: [HostPower; 8] = [
        HostPower::Privileged,
        HostPower::HostBind,
        HostPower::HostNetwork,
        HostPower::PidMode,
        HostPower::IpcMode,
        HostPower::CapAdd,
        HostPower::Devices,
        HostPower::SecurityOpt,
    ];

    /// The option that grants it, as the run request names it.
    pub fn option(self) -> &'static str {
        match self {
            HostPower::Privileged => "privileged",
            HostPower::HostBind => "binds",
            HostPower::HostNetwork => "network",
            HostPower::PidMode => "pid_mode",
            HostPower::IpcMode => "ipc_mode",
            HostPower::CapAdd => "cap_add",
            HostPower::Devices => "devices",
            HostPower::SecurityOpt => "security_opt",
        }
    }

    /// Why it is reserved; `setting` is the value that grants it.
    fn why(self, setting: &str) -> String {
        match self {
            HostPower::Privileged => "a privileged container owns the host".into(),
            HostPower::HostBind => "host bind mounts give the container the host's files".into(),
            HostPower::HostNetwork => format!("network mode `{setting}` shares a namespace"),
            HostPower::PidMode => "sharing a PID namespace exposes other processes".into(),
            HostPower::IpcMode => format!("IPC mode `{setting}` shares a namespace"),
            HostPower::CapAdd => "added capabilities widen what the container may do to the host".into(),
            HostPower::Devices => "host devices give the container the host's hardware".into(),
            HostPower::SecurityOpt => "security options can switch off confinement".into(),
        }
    }
}

/// A container's effective host configuration, as far as host power goes: what a run
/// request asks for, or what the engine reports of an existing container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EffectiveHostConfig {
    pub privileged: bool,
    /// Volumes as `docker run -v` takes them, `source:target[:mode]`: a source that is a
    /// host path (`/…`, `./…`, `~…`) makes it a bind mount; otherwise it names a volume.
    pub volumes: Vec<String>,
    /// Explicit bind mounts (the run request's `binds`, `--mount type=bind`): host paths
    /// whatever their spelling.
    pub bind_mounts: Vec<String>,
    pub network_mode: Option<String>,
    /// `None`: the container's own PID namespace. The engine knows no other modes than
    /// `host` and `container:<id>`, so any mode shares one.
    pub pid_mode: Option<String>,
    pub ipc_mode: Option<String>,
    pub cap_add: Vec<String>,
    /// Host paths of the devices.
    pub devices: Vec<String>,
    pub security_opt: Vec<String>,
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

impl EffectiveHostConfig {
    /// Every power this configuration has, at most one use of each, in
    /// [`HostPower::ALL`] order. Empty: nothing here needs admin.
    pub fn host_power(&self) -> Vec<HostPowerUse> {
        HostPower::ALL.into_iter().filter_map(|p| self.find(p)).collect()
    }

    /// The first setting that grants `power`, if any.
    fn find(&self, power: HostPower) -> Option<HostPowerUse> {
        let first = |list: &[String]| list.first().map(|s| HostPowerUse::new(power, s.clone()));
        let shared = |mode: &Option<String>| {
            mode.as_deref().filter(|m| shares_namespace(m)).map(|m| HostPowerUse::new(power, m))
        };
        match power {
            HostPower::Privileged => self.privileged.then(|| HostPowerUse::new(power, "true")),
            HostPower::HostBind => match self.volumes.iter().find(|v| is_host_path(v)) {
                Some(v) => Some(HostPowerUse { via_volume: true, ..HostPowerUse::new(power, v.clone()) }),
                None => first(&self.bind_mounts),
            },
            HostPower::HostNetwork => shared(&self.network_mode),
            HostPower::PidMode => self.pid_mode.as_ref().map(|m| HostPowerUse::new(power, m.clone())),
            HostPower::IpcMode => shared(&self.ipc_mode),
            HostPower::CapAdd => first(&self.cap_add),
            HostPower::Devices => first(&self.devices),
            HostPower::SecurityOpt => first(&self.security_opt),
        }
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
            network_mode: Some("container:abc".into()),
            pid_mode: Some("host".into()),
            ipc_mode: Some("host".into()),
            cap_add: vec!["SYS_ADMIN".into()],
            devices: vec!["/dev/kmsg".into()],
            security_opt: vec!["seccomp=unconfined".into()],
        };
        let found = all.host_power();
        assert_eq!(found.iter().map(|u| u.power).collect::<Vec<_>>(), HostPower::ALL.to_vec());
        let names: Vec<_> = HostPower::ALL.iter().map(|p| p.option()).collect();
        assert_eq!(names, ["privileged", "binds", "network", "pid_mode", "ipc_mode", "cap_add", "devices", "security_opt"]);
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
        let net = &found[2];
        assert_eq!(net.refusal().code, ErrorCode::PolicyViolation);
        assert_eq!(
            net.refusal().detail,
            "`network` is reserved to the admin role: network mode `container:abc` shares a namespace"
        );
    }
}
