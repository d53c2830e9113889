//! What a job does, typed: one variant per kind, built once from validated requests
//! when the job is submitted, and read back from a stored row under the authority it
//! was submitted with. The stored `request` JSON is the request DTO (credentials
//! removed), unchanged from earlier versions.

use serde_json::Value;

use super::identity::Role;
use super::job::JobKind;
use super::policy::RunPolicy;
use super::requests::{BuildParams, PruneBuildCacheRequest, PruneFilters, PruneImagesRequest, PruneRequest, PullRequest, PushRequest};
use super::run::{RunContainerRequest, RunSpec};
use super::{ImageRef, Rejection};
use crate::error::ErrorCode;

#[derive(Debug, Clone)]
pub enum JobSpec {
    Build(BuildParams),
    Pull { request: PullRequest, image: ImageRef },
    Push { request: PushRequest, image: ImageRef },
    Run { request: RunContainerRequest, spec: Box<RunSpec> },
    PruneImages(PruneImagesRequest),
    PruneContainers(PruneRequest),
    PruneVolumes(PruneRequest),
    PruneNetworks(PruneRequest),
    PruneBuildCache(PruneBuildCacheRequest),
}

/// What a prune job does: its target, filters (`label`, with `berth.team` for a
/// team filter; `until`) and whether it only plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePlan {
    pub target: super::requests::PruneTarget,
    pub labels: Vec<String>,
    pub until: Option<String>,
    pub dry_run: bool,
}

impl JobSpec {
    pub fn pull(request: PullRequest) -> Result<Self, Rejection> {
        let image = ImageRef::parse(&request.image)?;
        Ok(JobSpec::Pull { request, image })
    }

    pub fn push(request: PushRequest) -> Result<Self, Rejection> {
        let image = ImageRef::parse(&request.image)?;
        Ok(JobSpec::Push { request, image })
    }

    /// A run, validated with the submitter's role (the host-power options need admin);
    /// with a policy (at submit) its image allow-list and default limits apply too.
    pub fn run(mut request: RunContainerRequest, authority: Role, policy: Option<&RunPolicy>) -> Result<Self, Rejection> {
        let mut spec = request.validate(authority >= Role::Admin)?;
        if let Some(policy) = policy {
            request.apply_policy(policy, authority >= Role::Admin)?;
            spec.memory_bytes = request.memory_bytes;
            spec.nano_cpus = request.nano_cpus;
            spec.pids_limit = request.pids_limit;
        }
        Ok(JobSpec::Run { request, spec: Box::new(spec) })
    }

    pub fn kind(&self) -> JobKind {
        match self {
            JobSpec::Build(_) => JobKind::Build,
            JobSpec::Pull { .. } => JobKind::Pull,
            JobSpec::Push { .. } => JobKind::Push,
            JobSpec::Run { .. } => JobKind::Run,
            JobSpec::PruneImages(_) => JobKind::PruneImages,
            JobSpec::PruneContainers(_) => JobKind::PruneContainers,
            JobSpec::PruneVolumes(_) => JobKind::PruneVolumes,
            JobSpec::PruneNetworks(_) => JobKind::PruneNetworks,
            JobSpec::PruneBuildCache(_) => JobKind::PruneBuildCache,
        }
    }

    /// A prune job's plan; `None` for the other kinds.
    pub fn prune(&self) -> Option<PrunePlan> {
        use super::requests::PruneTarget as T;
        let of = |target, f: &PruneFilters, dry_run| PrunePlan { target, labels: f.engine_labels(), until: f.until.clone(), dry_run };
        Some(match self {
            JobSpec::PruneImages(r) => of(T::Images { all: r.all }, &r.filters, r.dry_run),
            JobSpec::PruneContainers(r) => of(T::Containers, &r.filters, r.dry_run),
            JobSpec::PruneVolumes(r) => of(T::Volumes, &r.filters, r.dry_run),
            JobSpec::PruneNetworks(r) => of(T::Networks, &r.filters, r.dry_run),
            JobSpec::PruneBuildCache(r) => {
                PrunePlan { target: T::BuildCache { all: r.all }, labels: Vec::new(), until: r.filters.until.clone(), dry_run: r.dry_run }
            }
            _ => return None,
        })
    }

    /// The least role that may submit a job of this kind.
    pub fn required_role(kind: JobKind) -> Role {
        match kind {
            JobKind::PruneImages
            | JobKind::PruneContainers
            | JobKind::PruneVolumes
            | JobKind::PruneNetworks
            | JobKind::PruneBuildCache => Role::Admin,
            _ => Role::Operator,
        }
    }

    /// The `request` the job stores and shows: the DTO, credentials removed.
    pub fn request_json(&self) -> Value {
        let json = match self {
            JobSpec::Build(p) => serde_json::to_value(p),
            JobSpec::Pull { request, .. } => serde_json::to_value(request),
            JobSpec::Push { request, .. } => serde_json::to_value(request),
            JobSpec::Run { request, .. } => serde_json::to_value(request),
            JobSpec::PruneImages(r) => serde_json::to_value(r),
            JobSpec::PruneContainers(r) | JobSpec::PruneVolumes(r) | JobSpec::PruneNetworks(r) => serde_json::to_value(r),
            JobSpec::PruneBuildCache(r) => serde_json::to_value(r),
        };
        json.unwrap_or(Value::Null)
    }

    /// What the job acts on, for the audit log: its image, tags or filters.
    pub fn audit_target(&self) -> String {
        match self {
            JobSpec::Pull { request, .. } => format!("image={}", request.image),
            JobSpec::Push { request, .. } => format!("image={}", request.image),
            JobSpec::Run { request, .. } => match &request.name {
                Some(name) => format!("image={} name={name}", request.image),
                None => format!("image={}", request.image),
            },
            JobSpec::Build(p) => format!("tags={}", p.tags.join(",")),
            other => other.request_json().to_string(),
        }
    }

    /// A stored request read back, held to the authority it was submitted with: a row
    /// never runs with more power than its submitter had.
    pub fn from_stored(kind: JobKind, request: &Value, authority: Role) -> Result<Self, Rejection> {
        let required = Self::required_role(kind);
        if authority < required {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                format!("a {kind} job needs the {required} role; it was submitted with {authority}"),
            ));
        }
        let bad = |e: serde_json::Error| Rejection::new(ErrorCode::Internal, format!("the stored request does not parse: {e}"));
        Ok(match kind {
            JobKind::Build => JobSpec::Build(serde_json::from_value(request.clone()).map_err(bad)?),
            JobKind::Pull => JobSpec::pull(serde_json::from_value(request.clone()).map_err(bad)?)?,
            JobKind::Push => JobSpec::push(serde_json::from_value(request.clone()).map_err(bad)?)?,
            JobKind::Run => JobSpec::run(serde_json::from_value(request.clone()).map_err(bad)?, authority, None)?,
            JobKind::PruneImages => JobSpec::PruneImages(serde_json::from_value(request.clone()).map_err(bad)?),
            JobKind::PruneContainers => JobSpec::PruneContainers(serde_json::from_value(request.clone()).map_err(bad)?),
            JobKind::PruneVolumes => JobSpec::PruneVolumes(serde_json::from_value(request.clone()).map_err(bad)?),
            JobKind::PruneNetworks => JobSpec::PruneNetworks(serde_json::from_value(request.clone()).map_err(bad)?),
            JobKind::PruneBuildCache => JobSpec::PruneBuildCache(serde_json::from_value(request.clone()).map_err(bad)?),
        })
    }

    /// For an attached run (`detach: false`): whether its container is removed at the end.
    pub fn attached_run(&self) -> Option<bool> {
        match self {
            JobSpec::Run { spec, .. } if !spec.detach => Some(spec.auto_remove),
            _ => None,
        }
    }
}

/// What a job view shows in place of a secret value.
pub const REDACTED: &str = "<redacted>";

/// Remove what a job's views never show from its stored request: environment values
/// (`KEY=<redacted>`), build-argument values, and the query string of a `remote=` URL.
pub fn redact_request(kind: JobKind, request: &mut Value) {
    match kind {
        JobKind::Run => {
            if let Some(env) = request.get_mut("env").and_then(Value::as_array_mut) {
                for entry in env.iter_mut() {
                    if let Some(key) = entry.as_str().map(|e| e.split('=').next().unwrap_or("").to_string()) {
                        *entry = Value::String(format!("{key}={REDACTED}"));
                    }
                }
            }
        }
        JobKind::Build => {
            if let Some(args) = request.get_mut("build_args").and_then(Value::as_object_mut) {
                for value in args.values_mut() {
                    *value = Value::String(REDACTED.into());
                }
            }
            if let Some(remote) = request.get_mut("remote") {
                if let Some((base, _)) = remote.as_str().and_then(|r| r.split_once('?')) {
                    *remote = Value::String(format!("{base}?{REDACTED}"));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_rows_run_with_the_recorded_authority() {
        let host = serde_json::json!({"image": "busybox", "privileged": true});
        let e = JobSpec::from_stored(JobKind::Run, &host, Role::Operator).unwrap_err();
        assert_eq!(e.code, ErrorCode::PolicyViolation);
        assert!(JobSpec::from_stored(JobKind::Run, &host, Role::Admin).is_ok());
        let prune = serde_json::json!({"all": true});
        assert_eq!(JobSpec::from_stored(JobKind::PruneImages, &prune, Role::Operator).unwrap_err().code, ErrorCode::Forbidden);
        let pull = serde_json::json!({"image": "busybox:1", "platform": null});
        let spec = JobSpec::from_stored(JobKind::Pull, &pull, Role::Operator).unwrap();
        assert_eq!(spec.request_json(), pull, "the stored shape round-trips");
        assert_eq!(spec.audit_target(), "image=busybox:1");
        assert!(JobSpec::from_stored(JobKind::Pull, &pull, Role::Viewer).is_err());
    }

    #[test]
    fn views_hide_env_values_build_args_and_url_queries() {
        let mut run = serde_json::json!({"image": "x", "env": ["DB_PASSWORD=hunter2", "PLAIN"]});
        redact_request(JobKind::Run, &mut run);
        assert_eq!(run["env"], serde_json::json!(["DB_PASSWORD=<redacted>", "PLAIN=<redacted>"]));
        let mut build = serde_json::json!({"build_args": {"TOKEN": "s3cret"}, "remote": "https://git.example/x.git?token=abc"});
        redact_request(JobKind::Build, &mut build);
        assert_eq!(build["build_args"]["TOKEN"], REDACTED);
        assert_eq!(build["remote"], "https://git.example/x.git?<redacted>");
        assert!(!build.to_string().contains("s3cret") && !build.to_string().contains("abc"));
    }
}
