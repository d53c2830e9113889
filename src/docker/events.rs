//! The engine's event stream (`GET /events`) and the labels of networks, which the
//! engine's network events do not carry.

use std::collections::HashMap;

use bollard::query_parameters::{EventsOptions, InspectNetworkOptions};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::{DockerEngine, EngineError, EngineEvent, ObjectKind, Result};

impl DockerEngine {
    /// The engine's events from `since` to `until` (engine time formats: Unix seconds,
    /// `seconds.nanos`, RFC 3339), of the given `types` (all when empty). Without `until`
    /// the stream follows live until the engine closes it.
    pub(super) async fn events(
        &self,
        since: Option<&str>,
        until: Option<&str>,
        types: &[String],
    ) -> Result<BoxStream<'static, Result<EngineEvent>>> {
        let d = self.docker().await?;
        let filters = (!types.is_empty()).then(|| HashMap::from([("type".to_string(), types.to_vec())]));
        let options = EventsOptions { since: since.map(str::to_string), until: until.map(str::to_string), filters };
        Ok(d.events(Some(options))
            .map(|item| match item {
                Ok(m) => Ok(from_message(m)),
                Err(e) => Err(EngineError::from_bollard(ObjectKind::Other, e)),
            })
            .boxed())
    }

    /// A network's labels; `None` when the engine has no such network.
    pub(super) async fn network_labels(&self, id: &str) -> Result<Option<HashMap<String, String>>> {
        let d = self.docker().await?;
        match d.inspect_network(id, None::<InspectNetworkOptions>).await {
            Ok(n) => Ok(Some(n.labels.unwrap_or_default())),
            Err(e) => match EngineError::from_bollard(ObjectKind::Other, e) {
                e if e.is_unavailable() => Err(self.forget_if_unavailable(e)),
                EngineError::NotFound { .. } => Ok(None),
                e => Err(e),
            },
        }
    }
}

fn from_message(m: bollard::models::EventMessage) -> EngineEvent {
    let actor = m.actor.unwrap_or_default();
    let time_nano = m.time_nano.unwrap_or_else(|| m.time.unwrap_or(0).saturating_mul(1_000_000_000));
    EngineEvent {
        typ: m.typ.map(|t| t.to_string()).unwrap_or_default(),
        action: m.action.unwrap_or_default(),
        id: actor.id.unwrap_or_default(),
        attributes: actor.attributes.unwrap_or_default(),
        time_nano,
    }
}
