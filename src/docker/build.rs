//! Image builds: a tar (or gzip tar) context, or a remote, streamed to the engine.

use bollard::query_parameters as qp;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::{BuildOutput, DockerEngine, EngineError, ObjectKind, Result};
use crate::domain::credentials::RegistryAuth;
use crate::domain::requests::BuildParams;

impl DockerEngine {
    pub(super) async fn build_image(
        &self,
        spec: &BuildParams,
        context: Option<BoxStream<'static, std::io::Result<Bytes>>>,
        auth: &[RegistryAuth],
    ) -> Result<BoxStream<'static, Result<BuildOutput>>> {
        let d = self.docker().await?;
        let opts = build_options(spec);
        // `X-Registry-Config`: the engine picks the entry of the registry it pulls from.
        let credentials = (!auth.is_empty()).then(|| {
            auth.iter()
                .filter_map(|a| Some((a.server.clone()?, super::registry::to_bollard(a))))
                .collect::<std::collections::HashMap<_, _>>()
        });
        let body = match context {
            Some(s) => bollard::body_try_stream(s),
            None => bollard::body_full(Bytes::new()),
        };
        // The build stream borrows the client: drive it in a task that owns both, and hand
        // the items over a small channel. Dropping the receiver ends the task, which drops
        // the request: the engine stops the build.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<BuildOutput>>(64);
        tokio::spawn(async move {
            let mut stream = d.build_image(opts, credentials, Some(body));
            loop {
                let item = tokio::select! {
                    item = stream.next() => item,
                    _ = tx.closed() => return,
                };
                let out = match item {
                    None => return,
                    Some(Err(e)) => Err(build_error(EngineError::from_bollard(ObjectKind::Image, e))),
                    Some(Ok(info)) => match build_output(info) {
                        Some(out) => Ok(out),
                        None => continue,
                    },
                };
                if tx.send(out).await.is_err() {
                    return;
                }
            }
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx).boxed())
    }
}

fn build_options(spec: &BuildParams) -> qp::BuildImageOptions {
    qp::BuildImageOptions {
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
    }
}

/// An item of the engine's build stream: the image id, a log line, or nothing to show.
fn build_output(info: bollard::models::BuildInfo) -> Option<BuildOutput> {
    if let Some(id) = info.aux.and_then(|a| a.id) {
        Some(BuildOutput::ImageId(id))
    } else if let Some(s) = info.stream {
        Some(BuildOutput::Log(s))
    } else {
        info.status.map(|s| {
            BuildOutput::Log(match info.id {
                Some(id) => format!("{id}: {s}\n"),
                None => format!("{s}\n"),
            })
        })
    }
}

/// A registry's refusal of a `FROM` pull, told apart from the build's own failures (a
/// `RUN` that failed quotes its command, which may say anything).
fn build_error(e: EngineError) -> EngineError {
    let EngineError::Docker(msg) = &e else { return e };
    let lower = msg.to_ascii_lowercase();
    let refused = ["unauthorized", "authentication required", "no basic auth credentials", "pull access denied", "denied: requested access"];
    if lower.starts_with("the command '") || !refused.iter().any(|p| lower.contains(p)) {
        return e;
    }
    EngineError::RegistryRefused(format!("A registry refused the credentials (or gave none) for an image the build pulls: {msg}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_refusals_are_told_apart() {
        let refused = build_error(EngineError::Docker(
            "Head \"http://127.0.0.1:5001/v2/x/manifests/1\": no basic auth credentials".into(),
        ));
        assert!(matches!(refused, EngineError::RegistryRefused(_)), "{refused:?}");
        let run = build_error(EngineError::Docker("The command '/bin/sh -c echo unauthorized && false' returned a non-zero code: 1".into()));
        assert!(matches!(run, EngineError::Docker(_)), "{run:?}");
        let copy = build_error(EngineError::Docker("COPY failed: file not found in build context".into()));
        assert!(matches!(copy, EngineError::Docker(_)));
    }
}
