//! Volumes: list, inspect, create, remove.

use std::collections::{HashMap, HashSet};

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters as qp;

use super::{DockerEngine, EngineError, ObjectKind, Result};
use crate::domain::objects::{VolumeFilters, VolumeSpec, VolumeView};

impl DockerEngine {
    async fn volumes(&self, filters: HashMap<String, Vec<String>>) -> Result<Vec<bollard::models::Volume>> {
        let d = self.docker().await?;
        let opts = qp::ListVolumesOptions { filters: Some(filters) };
        let res = d.list_volumes(Some(opts)).await.map_err(|e| self.fail(ObjectKind::Other, e))?;
        Ok(res.volumes.unwrap_or_default())
    }

    /// The list; `in_use` from a second, dangling-only list when the filters leave it open.
    pub(super) async fn list_volumes(&self, f: &VolumeFilters) -> Result<Vec<VolumeView>> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        for (key, values) in [("name", &f.name), ("label", &f.label)] {
            if !values.is_empty() {
                filters.insert(key.into(), values.clone());
            }
        }
        if let Some(d) = f.dangling {
            filters.insert("dangling".into(), vec![d.to_string()]);
        }
        let list = self.volumes(filters.clone()).await?;
        let dangling: HashSet<String> = match f.dangling {
            Some(true) => list.iter().map(|v| v.name.clone()).collect(),
            Some(false) => HashSet::new(),
            None => {
                filters.insert("dangling".into(), vec!["true".into()]);
                self.volumes(filters).await?.into_iter().map(|v| v.name).collect()
            }
        };
        Ok(list.into_iter().map(|v| view(v, &dangling)).collect())
    }

    /// `None`: no volume by that name.
    pub(super) async fn inspect_volume(&self, name: &str) -> Result<Option<VolumeView>> {
        let d = self.docker().await?;
        let v = match d.inspect_volume(name).await {
            Ok(v) => v,
            Err(e) => match self.fail(ObjectKind::Other, e) {
                EngineError::NotFound { .. } => return Ok(None),
                other => return Err(other),
            },
        };
        // The engine's name filter matches substrings: the exact name decides.
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()]), ("dangling".into(), vec!["true".into()])]);
        let dangling: HashSet<String> = self.volumes(filters).await?.into_iter().map(|v| v.name).collect();
        Ok(Some(view(v, &dangling)))
    }

    pub(super) async fn create_volume(&self, spec: &VolumeSpec) -> Result<VolumeView> {
        let d = self.docker().await?;
        let body = VolumeCreateRequest {
            name: Some(spec.name.clone()),
            driver: Some(spec.driver.clone()),
            driver_opts: Some(spec.driver_opts.clone()),
            labels: Some(spec.labels.clone()),
            cluster_volume_spec: None,
        };
        let v = d.create_volume(body).await.map_err(|e| self.fail(ObjectKind::Other, e))?;
        // A new volume: nothing mounts it yet.
        Ok(view(v, &HashSet::from([spec.name.clone()])))
    }

    pub(super) async fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        let d = self.docker().await?;
        let opts = qp::RemoveVolumeOptions { force };
        d.remove_volume(name, Some(opts)).await.map_err(|e| self.fail(ObjectKind::Other, e))
    }
}

fn view(v: bollard::models::Volume, dangling: &HashSet<String>) -> VolumeView {
    VolumeView {
        in_use: Some(!dangling.contains(&v.name)),
        name: v.name,
        driver: v.driver,
        mountpoint: v.mountpoint,
        created_at: engine_time(v.created_at),
        labels: v.labels,
        scope: v.scope.map(|s| s.to_string()).filter(|s| !s.is_empty()).unwrap_or_else(|| "local".into()),
        options: v.options,
    }
}

/// An engine timestamp (RFC 3339, nanoseconds and a zone) as the views write time: RFC
/// 3339 UTC to the second. `None` for the engine's zero time.
pub(super) fn engine_time(t: Option<String>) -> Option<String> {
    let t = t?;
    match chrono::DateTime::parse_from_rfc3339(&t) {
        Ok(t) if t.timestamp() > 0 => {
            Some(t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }
        Ok(_) => None,
        Err(_) => Some(t),
    }
}
