//! Image builds: a tar (or gzip tar) context, or a remote, streamed to the engine.

use bollard::query_parameters as qp;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::{BuildOutput, DockerEngine, EngineError, ObjectKind, Result};
use crate::domain::requests::BuildParams;

impl DockerEngine {
    pub(super) async fn build_image(
        &self,
        spec: &BuildParams,
        context: Option<BoxStream<'static, std::io::Result<Bytes>>>,
    ) -> Result<BoxStream<'static, Result<BuildOutput>>> {
        let d = self.docker().await?;
        let opts = build_options(spec);
        let body = match context {
            Some(s) => bollard::body_try_stream(s),
            None => bollard::body_full(Bytes::new()),
        };
        // The build stream borrows the client: drive it in a task that owns both, and hand
        // the items over a small channel. Dropping the receiver ends the task, which drops
        // the request: the engine stops the build.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<BuildOutput>>(64);
        tokio::spawn(async move {
            let mut stream = d.build_image(opts, None, Some(body));
            loop {
                let item = tokio::select! {
                    item = stream.next() => item,
                    _ = tx.closed() => return,
                };
                let out = match item {
                    None => return,
                    Some(Err(e)) => Err(EngineError::from_bollard(ObjectKind::Image, e)),
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
