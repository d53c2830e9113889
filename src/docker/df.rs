//! Disk use (`docker system df`): the engine's `GET /system/df`, with the totals and
//! what is reclaimable computed as the docker CLI computes them ([`disk_usage`]).
//!
//! bollard's `df()` model is the shape of newer engines (`ImageUsage`, `ContainerUsage`,
//! …, API 1.52+); API 1.41 (Docker 20.10) answers `LayersSize`, `Images`, `Containers`,
//! `Volumes` and `BuildCache`, of which that model reads nothing. So Berth reads the
//! answer itself where it can (`DockerEngine::df_document`, in `prune.rs`), and through bollard (the newer
//! shape) on TLS hosts; [`disk_usage`] takes either.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::{
    BuildCacheRecord, BuildCacheUsage, ContainerUsage, ContainersUsage, DiskUsage, DockerEngine,
    ImageUsage, ImagesUsage, Result, VolumeUsage, VolumesUsage,
};

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawImage {
    id: String,
    repo_tags: Option<Vec<String>>,
    size: i64,
    shared_size: i64,
    containers: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawContainer {
    id: String,
    names: Option<Vec<String>>,
    image: String,
    state: String,
    size_rw: i64,
    size_root_fs: i64,
    labels: Option<HashMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawUsage {
    size: i64,
    ref_count: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RawVolume {
    name: String,
    driver: String,
    labels: Option<HashMap<String, String>>,
    usage_data: Option<RawUsage>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawCache {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Description")]
    description: String,
    #[serde(rename = "InUse")]
    in_use: bool,
    #[serde(rename = "Shared")]
    shared: bool,
    #[serde(rename = "Size")]
    size: i64,
    #[serde(rename = "UsageCount")]
    usage_count: i64,
}

/// The items of one kind: API 1.41's `old` array, or the newer `{new: {Items}}`.
fn items<T: for<'de> Deserialize<'de>>(doc: &Value, old: &str, new: &str) -> Vec<T> {
    let list = doc.get(old).filter(|v| v.is_array()).or_else(|| doc.pointer(&format!("/{new}/Items")));
    list.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect())
        .unwrap_or_default()
}

/// Berth's view of the engine's disk-use document, totals as `docker system df` prints
/// them.
pub fn disk_usage(doc: &Value) -> DiskUsage {
    let images: Vec<RawImage> = items(doc, "Images", "ImageUsage");
    let containers: Vec<RawContainer> = items(doc, "Containers", "ContainerUsage");
    let volumes: Vec<RawVolume> = items(doc, "Volumes", "VolumeUsage");
    let cache: Vec<RawCache> = items(doc, "BuildCache", "BuildCacheUsage");

    // Every layer once (`LayersSize`); in use: what each used image holds alone.
    let layers = doc
        .get("LayersSize")
        .or_else(|| doc.pointer("/ImageUsage/TotalSize"))
        .and_then(Value::as_i64)
        .unwrap_or_else(|| images.iter().map(|i| i.size - i.shared_size.max(0)).sum());
    let used: i64 = images
        .iter()
        .filter(|i| i.containers > 0 && i.size >= 0 && i.shared_size >= 0)
        .map(|i| i.size - i.shared_size)
        .sum();
    let images = ImagesUsage {
        count: images.len() as i64,
        active: images.iter().filter(|i| i.containers > 0).count() as i64,
        size: layers,
        reclaimable: (layers - used).max(0),
        items: images
            .into_iter()
            .map(|i| ImageUsage {
                id: i.id,
                repo_tags: i.repo_tags.unwrap_or_default(),
                size: i.size,
                shared_size: i.shared_size,
                containers: i.containers,
            })
            .collect(),
    };

    let containers = containers_usage(
        containers
            .into_iter()
            .map(|c| ContainerUsage {
                id: c.id,
                names: c.names.unwrap_or_default().into_iter().map(|n| n.trim_start_matches('/').to_string()).collect(),
                image: c.image,
                state: c.state,
                size_rw: c.size_rw,
                size_root_fs: c.size_root_fs,
                labels: c.labels.unwrap_or_default(),
            })
            .collect(),
    );

    let volumes = volumes_usage(
        volumes
            .into_iter()
            .map(|v| {
                let usage = v.usage_data.unwrap_or(RawUsage { size: -1, ref_count: -1 });
                VolumeUsage {
                    name: v.name,
                    driver: v.driver,
                    size: usage.size,
                    ref_count: usage.ref_count,
                    labels: v.labels.unwrap_or_default(),
                }
            })
            .collect(),
    );

    let build_cache = BuildCacheUsage {
        count: cache.len() as i64,
        active: cache.iter().filter(|c| c.in_use).count() as i64,
        size: cache.iter().filter(|c| !c.shared).map(|c| c.size).sum(),
        reclaimable: cache.iter().filter(|c| !c.shared && !c.in_use).map(|c| c.size).sum(),
        items: cache
            .into_iter()
            .map(|c| BuildCacheRecord {
                id: c.id,
                kind: c.kind,
                description: c.description,
                in_use: c.in_use,
                shared: c.shared,
                size: c.size,
                usage_count: c.usage_count,
            })
            .collect(),
    };
    DiskUsage { images, containers, volumes, build_cache }
}

/// Containers' totals from their items: active are running, paused or restarting; the
/// others' writable layers are reclaimable.
pub fn containers_usage(items: Vec<ContainerUsage>) -> ContainersUsage {
    let active = |c: &ContainerUsage| ["running", "paused", "restarting"].contains(&c.state.as_str());
    ContainersUsage {
        count: items.len() as i64,
        active: items.iter().filter(|c| active(c)).count() as i64,
        size: items.iter().map(|c| c.size_rw.max(0)).sum(),
        reclaimable: items.iter().filter(|c| !active(c)).map(|c| c.size_rw.max(0)).sum(),
        items,
    }
}

/// Volumes' totals from their items: those no container references are reclaimable.
pub fn volumes_usage(items: Vec<VolumeUsage>) -> VolumesUsage {
    VolumesUsage {
        count: items.len() as i64,
        active: items.iter().filter(|v| v.ref_count > 0).count() as i64,
        size: items.iter().map(|v| v.size.max(0)).sum(),
        reclaimable: items.iter().filter(|v| v.ref_count == 0).map(|v| v.size.max(0)).sum(),
        items,
    }
}

impl DockerEngine {
    pub(super) async fn disk_usage(&self) -> Result<DiskUsage> {
        let doc = self.df_document().await?;
        Ok(disk_usage(&doc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An API 1.41 answer (Docker 20.10), trimmed.
    fn v141() -> Value {
        serde_json::json!({
            "LayersSize": 1000,
            "Images": [
                {"Id": "sha256:a", "RepoTags": ["a:1"], "Size": 600, "SharedSize": 100, "Containers": 2},
                {"Id": "sha256:b", "RepoTags": null, "Size": 500, "SharedSize": 100, "Containers": 0}
            ],
            "Containers": [
                {"Id": "c1", "Names": ["/one"], "Image": "a:1", "State": "running", "SizeRw": 10, "SizeRootFs": 610, "Labels": {"berth.team": "t"}},
                {"Id": "c2", "Names": ["/two"], "Image": "a:1", "State": "exited", "SizeRw": 30, "SizeRootFs": 630, "Labels": {}}
            ],
            "Volumes": [
                {"Name": "v1", "Driver": "local", "Labels": null, "UsageData": {"Size": 7, "RefCount": 1}},
                {"Name": "v2", "Driver": "local", "Labels": {"berth.team": "t"}, "UsageData": {"Size": 5, "RefCount": 0}},
                {"Name": "v3", "Driver": "other", "Labels": {}, "UsageData": {"Size": -1, "RefCount": -1}}
            ],
            "BuildCache": [
                {"ID": "x", "Type": "regular", "Description": "RUN make", "InUse": false, "Shared": false, "Size": 40, "UsageCount": 1},
                {"ID": "y", "Type": "regular", "Description": "FROM", "InUse": true, "Shared": false, "Size": 20, "UsageCount": 3},
                {"ID": "z", "Type": "regular", "Description": "shared", "InUse": false, "Shared": true, "Size": 99, "UsageCount": 1}
            ]
        })
    }

    #[test]
    fn totals_and_reclaimable_as_docker_system_df() {
        let u = disk_usage(&v141());
        assert_eq!((u.images.count, u.images.active, u.images.size), (2, 1, 1000));
        // All layers less what the used image holds alone (600 - 100).
        assert_eq!(u.images.reclaimable, 500);
        assert_eq!(u.images.items[1].repo_tags, Vec::<String>::new());
        assert_eq!((u.containers.count, u.containers.active, u.containers.size, u.containers.reclaimable), (2, 1, 40, 30));
        assert_eq!(u.containers.items[0].names, vec!["one"]);
        assert_eq!((u.volumes.count, u.volumes.active, u.volumes.size, u.volumes.reclaimable), (3, 1, 12, 5));
        assert_eq!((u.volumes.items[2].size, u.volumes.items[2].ref_count), (-1, -1));
        assert_eq!((u.build_cache.count, u.build_cache.active, u.build_cache.size, u.build_cache.reclaimable), (3, 1, 60, 40));
        assert_eq!(u.build_cache.items[0].kind, "regular");
    }

    #[test]
    fn the_newer_shape_reads_the_same() {
        let old = v141();
        let new = serde_json::json!({
            "ImageUsage": {"TotalSize": 1000, "Items": old["Images"]},
            "ContainerUsage": {"Items": old["Containers"]},
            "VolumeUsage": {"Items": old["Volumes"]},
            "BuildCacheUsage": {"Items": old["BuildCache"]}
        });
        let (a, b) = (disk_usage(&old), disk_usage(&new));
        assert_eq!(serde_json::to_value(a).unwrap(), serde_json::to_value(b).unwrap());
    }

    #[test]
    fn an_empty_answer_is_all_zero() {
        let u = disk_usage(&serde_json::json!({"LayersSize": 0, "Images": [], "Containers": [], "Volumes": [], "BuildCache": null}));
        assert_eq!((u.images.count, u.containers.count, u.volumes.count, u.build_cache.count), (0, 0, 0, 0));
        assert_eq!(u.images.reclaimable, 0);
    }
}
