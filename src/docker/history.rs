//! Image history: one entry per layer, newest first, as `docker history` shows it.

use super::types::unix_to_rfc3339;
use super::{DockerEngine, ImageLayer, ObjectKind, Result};

/// Instructions that change only the image's configuration, never its files.
const METADATA_ONLY: &[&str] = &[
    "ENV", "LABEL", "CMD", "ENTRYPOINT", "EXPOSE", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL",
    "HEALTHCHECK", "SHELL", "MAINTAINER",
];

impl DockerEngine {
    /// The history of an image named as inspect names it (reference, full id, or a long
    /// enough id prefix): the same image inspect would show, or the same 404.
    pub(super) async fn image_history(&self, given: &str) -> Result<Vec<ImageLayer>> {
        let id = self.resolve_image(given).await?;
        let d = self.docker().await?;
        let items = d.image_history(&id).await.map_err(|e| self.fail(ObjectKind::Image, e))?;
        Ok(items
            .into_iter()
            .map(|i| {
                let empty_layer = i.size == 0 && instruction(&i.created_by).is_some_and(|w| METADATA_ONLY.contains(&w.as_str()));
                ImageLayer {
                    id: i.id,
                    created: unix_to_rfc3339(i.created),
                    created_by: i.created_by,
                    size: i.size,
                    tags: i.tags.into_iter().filter(|t| t != "<none>:<none>").collect(),
                    empty_layer,
                    comment: i.comment,
                }
            })
            .collect())
    }
}

/// The Dockerfile instruction a history entry came from, upper-case: the classic
/// builder writes `/bin/sh -c #(nop)  ENV A=1` for metadata and `/bin/sh -c make` for a
/// `RUN`; BuildKit writes the instruction itself (`ENV A=1`, `RUN /bin/sh -c make #
/// buildkit`). `None` when there is none to tell (an imported image).
fn instruction(created_by: &str) -> Option<String> {
    let text = created_by.trim();
    if text.is_empty() {
        return None;
    }
    if let Some((_, rest)) = text.split_once("#(nop)") {
        return rest.split_whitespace().next().map(|w| w.to_ascii_uppercase());
    }
    let first = text.split_whitespace().next()?;
    if first.len() > 1 && first.bytes().all(|b| b.is_ascii_uppercase()) {
        return Some(first.to_string());
    }
    (text.starts_with("/bin/sh -c") || text.starts_with("|")).then(|| "RUN".to_string())
}

#[cfg(test)]
mod tests {
    use super::instruction;

    #[test]
    fn instructions_of_both_builders() {
        let cases = [
            ("/bin/sh -c #(nop)  ENV A=1", Some("ENV")),
            ("/bin/sh -c #(nop)  CMD [\"sh\"]", Some("CMD")),
            ("/bin/sh -c #(nop) ADD file:abc in / ", Some("ADD")),
            ("/bin/sh -c #(nop) COPY file:abc in /a ", Some("COPY")),
            ("/bin/sh -c echo hi > /x", Some("RUN")),
            ("|1 X=1 /bin/sh -c echo $X", Some("RUN")),
            ("LABEL a=b", Some("LABEL")),
            ("RUN /bin/sh -c make # buildkit", Some("RUN")),
            ("", None),
            ("Imported from -", None),
        ];
        for (text, want) in cases {
            assert_eq!(instruction(text).as_deref(), want, "{text}");
        }
    }
}
