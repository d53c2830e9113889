//! Prunes of every kind, and their plans (`dry_run`): what the prune would remove,
//! computed from the engine's own disk-use report by the rules the engine prunes by,
//! with nothing removed.
//!
//! The engine has no dry run (moby/moby#30623). The plan reads `/system/df` (each
//! image's container count and unique size, each container's state and writable size,
//! each volume's reference count and size, the build cache's records) and the network
//! list, and applies the engine's prune rules and filters to them:
//! - images: no container (running or not) uses it; without `all`, only dangling ones
//!   (no tag); `label` and `until` (created before);
//! - containers: not running, paused or restarting; `label`, `until`;
//! - volumes: the `local` driver, no container mounts it (engine 20.10 prunes named
//!   volumes too); `label` (the engine takes no `until` here);
//! - networks: not predefined, no running container attached; `label`, `until`;
//! - build cache: not in use (without `all`, not shared either); `until` (last used
//!   before).

use std::collections::HashMap;

use bollard::query_parameters as qp;
use serde_json::Value;

use super::{DockerEngine, EngineError, ObjectKind, PruneReport, PruneTarget, Result};
use crate::domain::objects::is_predefined_network;

/// One `label` filter as the engine reads a prune's: `key`, `key=value`, or `!key` and
/// `key!=value` to exclude.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LabelFilter {
    exclude: bool,
    key: String,
    value: Option<String>,
}

impl LabelFilter {
    fn parse(s: &str) -> LabelFilter {
        if let Some(key) = s.strip_prefix('!') {
            let (key, value) = split(key);
            return LabelFilter { exclude: true, key, value };
        }
        if let Some((key, value)) = s.split_once("!=") {
            return LabelFilter { exclude: true, key: key.into(), value: Some(value.into()) };
        }
        let (key, value) = split(s);
        LabelFilter { exclude: false, key, value }
    }

    fn hit(&self, labels: &HashMap<String, String>) -> bool {
        match (&self.value, labels.get(&self.key)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(want), Some(v)) => want == v,
        }
    }

    /// `(filter key, value)` as the engine's prune filters take it.
    fn engine(&self) -> (&'static str, String) {
        let text = match &self.value {
            Some(v) => format!("{}={v}", self.key),
            None => self.key.clone(),
        };
        (if self.exclude { "label!" } else { "label" }, text)
    }
}

fn split(s: &str) -> (String, Option<String>) {
    match s.split_once('=') {
        Some((k, v)) => (k.into(), Some(v.into())),
        None => (s.into(), None),
    }
}

/// What the filters select, as the engine applies them: every `label` present, no
/// `label!` present, created before `until`.
#[derive(Debug, Clone)]
pub(super) struct Selection {
    labels: Vec<LabelFilter>,
    /// Unix seconds.
    until: Option<f64>,
}

impl Selection {
    pub(super) fn new(label: &[String], until: Option<&str>) -> Selection {
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        Selection {
            labels: label.iter().map(|l| LabelFilter::parse(l)).collect(),
            until: until.and_then(|u| crate::domain::requests::until_cutoff(u, now)),
        }
    }

    fn takes(&self, labels: &HashMap<String, String>, created: Option<f64>) -> bool {
        let labels_ok = self.labels.iter().all(|f| f.hit(labels) != f.exclude);
        let time_ok = match (self.until, created) {
            (Some(cutoff), Some(t)) => t < cutoff,
            (Some(_), None) => false,
            (None, _) => true,
        };
        labels_ok && time_ok
    }

    /// The engine's prune filters.
    pub(super) fn engine_filters(&self, until: Option<&str>) -> HashMap<String, Vec<String>> {
        let mut f: HashMap<String, Vec<String>> = HashMap::new();
        for l in &self.labels {
            let (key, value) = l.engine();
            f.entry(key.into()).or_default().push(value);
        }
        if let Some(u) = until {
            f.insert("until".into(), vec![u.to_string()]);
        }
        f
    }
}

fn labels_of(v: &Value) -> HashMap<String, String> {
    v.get("Labels").and_then(|l| serde_json::from_value(l.clone()).ok()).unwrap_or_default()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn int_of(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// An RFC 3339 time of the engine's, as Unix seconds.
fn rfc3339_secs(s: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis() as f64 / 1000.0)
}

fn items<'a>(df: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    df.get(key).and_then(Value::as_array).map(|a| a.as_slice()).unwrap_or(&[]).iter()
}

/// The plan of an image prune, from the engine's disk-use report and every image's
/// parent (`parents`, intermediate images included): an image that is an ancestor of
/// one that stays is not removed (the engine refuses to delete an image with dependent
/// children, and its prune skips it).
pub(super) fn plan_images(df: &Value, parents: &HashMap<String, String>, all: bool, sel: &Selection) -> PruneReport {
    let takes = |i: &Value| {
        let tags = refs(i, "RepoTags", "<none>:<none>");
        int_of(i, "Containers") == 0
            && (all || tags.is_empty())
            && sel.takes(&labels_of(i), Some(int_of(i, "Created") as f64))
    };
    let mut needed = std::collections::HashSet::new();
    for i in items(df, "Images").filter(|i| !takes(i)) {
        let mut at = parents.get(str_of(i, "Id"));
        while let Some(p) = at.filter(|p| !p.is_empty() && needed.insert(p.to_string())) {
            at = parents.get(p);
        }
    }
    let mut r = PruneReport::default();
    for i in items(df, "Images") {
        if !takes(i) || needed.contains(str_of(i, "Id")) {
            continue;
        }
        let tags = refs(i, "RepoTags", "<none>:<none>");
        r.untagged.extend(tags);
        r.untagged.extend(refs(i, "RepoDigests", "<none>@<none>"));
        r.deleted.push(str_of(i, "Id").to_string());
        let shared = int_of(i, "SharedSize").max(0);
        r.space_reclaimed += (int_of(i, "Size") - shared).max(0);
    }
    r
}

fn refs(v: &Value, key: &str, none: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).filter(|t| *t != none).map(String::from).collect())
        .unwrap_or_default()
}

/// The plan of a container prune: every container that is not running.
pub(super) fn plan_containers(df: &Value, sel: &Selection) -> PruneReport {
    let mut r = PruneReport::default();
    for c in items(df, "Containers") {
        if ["running", "paused", "restarting"].contains(&str_of(c, "State")) {
            continue;
        }
        if sel.takes(&labels_of(c), Some(int_of(c, "Created") as f64)) {
            r.deleted.push(str_of(c, "Id").to_string());
            r.space_reclaimed += int_of(c, "SizeRw").max(0);
        }
    }
    r
}

/// The plan of a volume prune: the local volumes no container mounts.
pub(super) fn plan_volumes(df: &Value, sel: &Selection) -> PruneReport {
    let mut r = PruneReport::default();
    for v in items(df, "Volumes") {
        let usage = v.get("UsageData").cloned().unwrap_or(Value::Null);
        if str_of(v, "Driver") != "local" || int_of(&usage, "RefCount") != 0 {
            continue;
        }
        if sel.takes(&labels_of(v), rfc3339_secs(str_of(v, "CreatedAt"))) {
            r.deleted.push(str_of(v, "Name").to_string());
            r.space_reclaimed += int_of(&usage, "Size").max(0);
        }
    }
    r
}

/// The plan of a build-cache prune: the records not in use (and, without `all`, not
/// shared with another record).
pub(super) fn plan_build_cache(df: &Value, all: bool, sel: &Selection) -> PruneReport {
    let mut r = PruneReport::default();
    for b in items(df, "BuildCache") {
        let in_use = b.get("InUse").and_then(Value::as_bool).unwrap_or(false);
        let shared = b.get("Shared").and_then(Value::as_bool).unwrap_or(false);
        if in_use || (!all && shared) {
            continue;
        }
        let used = b.get("LastUsedAt").and_then(Value::as_str).or_else(|| b.get("CreatedAt").and_then(Value::as_str));
        if sel.takes(&HashMap::new(), used.and_then(rfc3339_secs)) {
            r.deleted.push(str_of(b, "ID").to_string());
            r.space_reclaimed += int_of(b, "Size").max(0);
        }
    }
    r
}

impl DockerEngine {
    /// The engine's disk-use report (`/system/df`) as it wrote it: API 1.41 writes
    /// `LayersSize`, `Images`, `Containers`, `Volumes` and `BuildCache`, which bollard's
    /// models (written for a newer API) do not read.
    pub(super) async fn df_document(&self) -> Result<Value> {
        let d = self.docker().await?;
        if !self.speaks_raw() {
            let df = d.df(None::<qp::DataUsageOptions>).await.map_err(|e| self.fail(ObjectKind::Other, e))?;
            return serde_json::to_value(df).map_err(|e| EngineError::Docker(e.to_string()));
        }
        let path = Self::versioned(&d, "/system/df");
        super::raw::get_json(self.host(), &path, ObjectKind::Other).await.map_err(|e| self.forget_if_unavailable(e))
    }

    pub(super) async fn prune(&self, target: PruneTarget, label: &[String], until: Option<&str>, dry_run: bool) -> Result<PruneReport> {
        let sel = Selection::new(label, until);
        if dry_run {
            return match target {
                PruneTarget::Networks => self.plan_networks(&sel).await,
                PruneTarget::Images { all } => {
                    let d = self.docker().await?;
                    let every = qp::ListImagesOptions { all: true, ..Default::default() };
                    let list = d.list_images(Some(every)).await.map_err(|e| self.fail(ObjectKind::Image, e))?;
                    let parents = list.into_iter().map(|i| (i.id, i.parent_id)).collect();
                    Ok(plan_images(&self.df_document().await?, &parents, all, &sel))
                }
                PruneTarget::Containers => Ok(plan_containers(&self.df_document().await?, &sel)),
                PruneTarget::Volumes => Ok(plan_volumes(&self.df_document().await?, &sel)),
                PruneTarget::BuildCache { all } => Ok(plan_build_cache(&self.df_document().await?, all, &sel)),
            };
        }
        let d = self.docker().await?;
        let filters = Some(sel.engine_filters(until));
        match target {
            PruneTarget::Images { all } => {
                let mut filters = filters;
                filters.get_or_insert_default().insert("dangling".into(), vec![(!all).to_string()]);
                let res = d
                    .prune_images(Some(qp::PruneImagesOptions { filters }))
                    .await
                    .map_err(|e| self.fail(ObjectKind::Image, e))?;
                let items = res.images_deleted.unwrap_or_default();
                let deleted = items.iter().filter_map(|i| i.deleted.clone()).collect();
                let untagged = items.into_iter().filter_map(|i| i.untagged).collect();
                Ok(PruneReport { deleted, untagged, space_reclaimed: res.space_reclaimed.unwrap_or(0) })
            }
            PruneTarget::Containers => {
                let res = d
                    .prune_containers(Some(qp::PruneContainersOptions { filters }))
                    .await
                    .map_err(|e| self.fail(ObjectKind::Container, e))?;
                let deleted = res.containers_deleted.unwrap_or_default();
                Ok(PruneReport { deleted, untagged: Vec::new(), space_reclaimed: res.space_reclaimed.unwrap_or(0) })
            }
            PruneTarget::Volumes => {
                let res = d
                    .prune_volumes(Some(qp::PruneVolumesOptions { filters }))
                    .await
                    .map_err(|e| self.fail(ObjectKind::Other, e))?;
                let deleted = res.volumes_deleted.unwrap_or_default();
                Ok(PruneReport { deleted, untagged: Vec::new(), space_reclaimed: res.space_reclaimed.unwrap_or(0) })
            }
            PruneTarget::Networks => {
                let res = d
                    .prune_networks(Some(qp::PruneNetworksOptions { filters }))
                    .await
                    .map_err(|e| self.fail(ObjectKind::Other, e))?;
                Ok(PruneReport { deleted: res.networks_deleted.unwrap_or_default(), ..Default::default() })
            }
            PruneTarget::BuildCache { all } => {
                let opts = qp::PruneBuildOptions { all: Some(all), filters, ..Default::default() };
                let res = d.prune_build(Some(opts)).await.map_err(|e| self.fail(ObjectKind::Other, e))?;
                Ok(PruneReport {
                    deleted: res.caches_deleted.unwrap_or_default(),
                    untagged: Vec::new(),
                    space_reclaimed: res.space_reclaimed.unwrap_or(0),
                })
            }
        }
    }

    /// The plan of a network prune: user-defined networks no running container is
    /// attached to (a stopped container holds no endpoint).
    async fn plan_networks(&self, sel: &Selection) -> Result<PruneReport> {
        let mut r = PruneReport::default();
        for n in self.list_networks(&Default::default()).await? {
            if is_predefined_network(&n.name) || !n.attached.is_empty() || n.scope == "swarm" {
                continue;
            }
            if sel.takes(&n.labels, n.created_at.as_deref().and_then(rfc3339_secs)) {
                r.deleted.push(n.name);
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(label: &[&str], until: Option<&str>) -> Selection {
        Selection::new(&label.iter().map(|s| s.to_string()).collect::<Vec<_>>(), until)
    }

    #[test]
    fn label_filters_as_the_engine_reads_them() {
        let labels: HashMap<String, String> = [("a".to_string(), "1".to_string()), ("b".into(), "2".into())].into();
        for (filters, takes) in [
            (vec!["a"], true),
            (vec!["a=1"], true),
            (vec!["a=2"], false),
            (vec!["a", "b=2"], true),
            (vec!["c"], false),
            (vec!["!c"], true),
            (vec!["!a"], false),
            (vec!["a!=1"], false),
            (vec!["a!=9"], true),
        ] {
            assert_eq!(sel(&filters, None).takes(&labels, None), takes, "{filters:?}");
        }
        let f = sel(&["a=1", "!b", "c!=3"], Some("10s")).engine_filters(Some("10s"));
        assert_eq!(f["label"], ["a=1"]);
        let mut excluded = f["label!"].clone();
        excluded.sort();
        assert_eq!(excluded, ["b", "c=3"]);
        assert_eq!(f["until"], ["10s"]);
    }

    #[test]
    fn until_keeps_newer_objects() {
        let s = sel(&[], Some("1700000000"));
        assert!(s.takes(&HashMap::new(), Some(1_600_000_000.0)));
        assert!(!s.takes(&HashMap::new(), Some(1_750_000_000.0)));
        assert!(!s.takes(&HashMap::new(), None), "no time: not older than anything");
    }

    #[test]
    fn image_plans() {
        let df = json!({"Images": [
            {"Id": "sha256:used", "RepoTags": ["a:1"], "Containers": 1, "Size": 10, "SharedSize": 0, "Created": 1, "Labels": {}},
            {"Id": "sha256:tagged", "RepoTags": ["b:1"], "RepoDigests": ["b@sha256:x"], "Containers": 0, "Size": 30, "SharedSize": 10, "Created": 1, "Labels": {"t": "x"}},
            {"Id": "sha256:dangling", "RepoTags": ["<none>:<none>"], "Containers": 0, "Size": 5, "SharedSize": -1, "Created": 1, "Labels": null},
        ]});
        let none = HashMap::new();
        let p = plan_images(&df, &none, false, &sel(&[], None));
        assert_eq!((p.deleted, p.space_reclaimed), (vec!["sha256:dangling".to_string()], 5));
        let p = plan_images(&df, &none, true, &sel(&[], None));
        assert_eq!(p.deleted, ["sha256:tagged", "sha256:dangling"]);
        assert_eq!(p.untagged, ["b:1", "b@sha256:x"]);
        assert_eq!(p.space_reclaimed, 25, "unique sizes: 30 - 10 shared, and 5");
        assert_eq!(plan_images(&df, &none, true, &sel(&["t=x"], None)).deleted, ["sha256:tagged"]);
        // `tagged` is the base of `used` (through an intermediate image): it stays.
        let parents: HashMap<String, String> =
            [("sha256:used".to_string(), "sha256:mid".to_string()), ("sha256:mid".into(), "sha256:tagged".into())].into();
        assert_eq!(plan_images(&df, &parents, true, &sel(&[], None)).deleted, ["sha256:dangling"]);
    }

    #[test]
    fn container_volume_and_cache_plans() {
        let df = json!({
            "Containers": [
                {"Id": "up", "State": "running", "SizeRw": 1, "Created": 1, "Labels": {}},
                {"Id": "p", "State": "paused", "SizeRw": 1, "Created": 1, "Labels": {}},
                {"Id": "down", "State": "exited", "SizeRw": 7, "Created": 1, "Labels": {}},
                {"Id": "new", "State": "created", "SizeRw": 0, "Created": 1, "Labels": {}},
            ],
            "Volumes": [
                {"Name": "used", "Driver": "local", "UsageData": {"RefCount": 1, "Size": 4}, "Labels": {}},
                {"Name": "free", "Driver": "local", "UsageData": {"RefCount": 0, "Size": 4}, "Labels": {"k": "v"}},
                {"Name": "plugin", "Driver": "nfs", "UsageData": {"RefCount": 0, "Size": -1}, "Labels": {}},
            ],
            "BuildCache": [
                {"ID": "busy", "InUse": true, "Shared": false, "Size": 1, "LastUsedAt": "2020-01-01T00:00:00Z"},
                {"ID": "shared", "InUse": false, "Shared": true, "Size": 2, "LastUsedAt": "2020-01-01T00:00:00Z"},
                {"ID": "old", "InUse": false, "Shared": false, "Size": 3, "LastUsedAt": "2020-01-01T00:00:00Z"},
            ],
        });
        let p = plan_containers(&df, &sel(&[], None));
        assert_eq!((p.deleted, p.space_reclaimed), (vec!["down".to_string(), "new".into()], 7));
        let p = plan_volumes(&df, &sel(&[], None));
        assert_eq!((p.deleted, p.space_reclaimed), (vec!["free".to_string()], 4));
        assert!(plan_volumes(&df, &sel(&["!k"], None)).deleted.is_empty());
        assert_eq!(plan_build_cache(&df, false, &sel(&[], None)).deleted, ["old"]);
        let all = plan_build_cache(&df, true, &sel(&[], None));
        assert_eq!((all.deleted, all.space_reclaimed), (vec!["shared".to_string(), "old".into()], 5));
        assert!(plan_build_cache(&df, true, &sel(&[], Some("1500000000"))).deleted.is_empty());
    }
}
