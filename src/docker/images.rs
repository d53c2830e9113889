//! Images: list, inspect, remove, tag, prune.

use std::collections::HashMap;

use bollard::query_parameters as qp;

use super::types::unix_to_rfc3339;
use super::{
    DockerEngine, EngineError, ImageDeleteItem, ImageFilters, ImageSummary, MIN_ID_PREFIX, ObjectKind,
    Result,
};

impl DockerEngine {
    pub(super) async fn list_images(&self, f: &ImageFilters) -> Result<Vec<ImageSummary>> {
        let d = self.docker().await?;
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        if let Some(dangling) = f.dangling {
            filters.insert("dangling".into(), vec![dangling.to_string()]);
        }
        if !f.reference.is_empty() {
            filters.insert("reference".into(), f.reference.clone());
        }
        if !f.label.is_empty() {
            filters.insert("label".into(), f.label.clone());
        }
        let opts = qp::ListImagesOptions { all: f.all, filters: Some(filters), ..Default::default() };
        // The engine counts containers only when asked for its disk use (`containers` is
        // -1 here): count them from one list of every container, by image id, asked at
        // the same time as the images (the answer takes the longer of the two, not both).
        let all = qp::ListContainersOptions { all: true, ..Default::default() };
        let (images, containers) = tokio::join!(d.list_images(Some(opts)), d.list_containers(Some(all)));
        let images = images.map_err(|e| self.fail(ObjectKind::Image, e))?;
        let mut uses: HashMap<String, i64> = HashMap::new();
        for c in containers.map_err(|e| self.fail(ObjectKind::Container, e))? {
            if let Some(id) = c.image_id {
                *uses.entry(id).or_default() += 1;
            }
        }
        Ok(images
            .into_iter()
            .map(|i| ImageSummary {
                containers: uses.get(&i.id).copied().unwrap_or(0),
                id: i.id,
                repo_tags: i.repo_tags.into_iter().filter(|t| t != "<none>:<none>").collect(),
                repo_digests: i.repo_digests.into_iter().filter(|t| t != "<none>@<none>").collect(),
                size: i.size,
                created: unix_to_rfc3339(i.created),
                labels: i.labels,
            })
            .collect())
    }

    /// Inspect an image named by reference, full id, or an id prefix of at least
    /// [`MIN_ID_PREFIX`] hex digits (Docker would take any unambiguous prefix: `rmi 8`).
    async fn inspect_image_checked(&self, given: &str) -> Result<bollard::models::ImageInspect> {
        let d = self.docker().await?;
        let wanted = given.trim_start_matches("sha256:");
        let looks_like_id = given.starts_with("sha256:") || (wanted.len() < 64 && wanted.bytes().all(|b| b.is_ascii_hexdigit()));
        let image = match d.inspect_image(given).await {
            Ok(image) => image,
            // A short id prefix several images share: it names none.
            Err(e) => match self.fail(ObjectKind::Image, e) {
                e if looks_like_id && wanted.len() < MIN_ID_PREFIX && !e.is_unavailable() => {
                    return Err(EngineError::NotFound { kind: ObjectKind::Image, message: too_short(given) });
                }
                e => return Err(e),
            },
        };
        let id = image.id.as_deref().unwrap_or_default();
        let hex = id.trim_start_matches("sha256:");
        let by_name = !given.starts_with("sha256:") && {
            let tags = image.repo_tags.as_deref().unwrap_or_default();
            let digests = image.repo_digests.as_deref().unwrap_or_default();
            let with_latest = format!("{given}:latest");
            tags.iter().any(|t| t == given || *t == with_latest) || digests.iter().any(|d| d == given)
        };
        let by_id = hex.starts_with(wanted) && (wanted.len() >= MIN_ID_PREFIX || wanted.len() == hex.len());
        if !looks_like_id || by_name || by_id {
            return Ok(image);
        }
        Err(EngineError::NotFound { kind: ObjectKind::Image, message: too_short(given) })
    }

    pub(super) async fn resolve_image(&self, given: &str) -> Result<String> {
        Ok(self.inspect_image_checked(given).await?.id.unwrap_or_else(|| given.to_string()))
    }

    pub(super) async fn inspect_image(&self, reference: &str) -> Result<serde_json::Value> {
        let image = self.inspect_image_checked(reference).await?;
        serde_json::to_value(image).map_err(|e| EngineError::Docker(e.to_string()))
    }

    pub(super) async fn image_identity(&self, reference: &str) -> Result<Option<(String, Vec<String>, Vec<String>)>> {
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

    pub(super) async fn remove_image(&self, reference: &str, force: bool, noprune: bool) -> Result<Vec<ImageDeleteItem>> {
        // The same naming rule as inspect: a short id prefix removes nothing.
        self.inspect_image_checked(reference).await?;
        let d = self.docker().await?;
        let opts = qp::RemoveImageOptions { force, noprune, ..Default::default() };
        let items = d
            .remove_image(reference, Some(opts), None)
            .await
            .map_err(|e| self.fail(ObjectKind::Image, e))?;
        Ok(items.into_iter().map(|i| ImageDeleteItem { untagged: i.untagged, deleted: i.deleted }).collect())
    }

    pub(super) async fn tag_image(&self, source: &str, repo: &str, tag: &str) -> Result<()> {
        let d = self.docker().await?;
        let opts = qp::TagImageOptions { repo: Some(repo.to_string()), tag: Some(tag.to_string()) };
        d.tag_image(source, Some(opts)).await.map_err(|e| self.fail(ObjectKind::Image, e))
    }

}

/// The 404 detail for an id prefix too short to name an image, whether or not the engine
/// found one (several images sharing the prefix make the engine answer "no such image").
fn too_short(given: &str) -> String {
    format!("No such image: {given} (give a reference, or an id or id prefix of at least {MIN_ID_PREFIX} hex digits)")
}
