//! Networks: list, inspect, create, remove, connect and disconnect a container.
//!
//! The engine's list leaves out which containers are attached; Berth asks the running
//! containers (one call) and maps their endpoints onto the networks.

use std::collections::HashMap;

use bollard::models::{NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest};
use bollard::query_parameters as qp;

use super::volumes::engine_time;
use super::{DockerEngine, EngineError, MIN_ID_PREFIX, ObjectKind, Result};
use crate::domain::objects::{AttachedContainer, NetworkFilters, NetworkInfo, NetworkSpec};

impl DockerEngine {
    /// Map a network call's failure. The engine answers 403 for the state of a network
    /// or endpoint (active endpoints on removal, a container already connected or not
    /// connected): a conflict, with Docker's message.
    fn fail_network(&self, e: bollard::errors::Error) -> EngineError {
        match e {
            bollard::errors::Error::DockerResponseServerError { status_code: 403, message } => EngineError::Conflict(message),
            e => self.fail(ObjectKind::Other, e),
        }
    }

    /// The running containers with an endpoint, by network id (`network`: only that one).
    async fn attached(&self, network: Option<&str>) -> Result<HashMap<String, Vec<AttachedContainer>>> {
        let d = self.docker().await?;
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        if let Some(n) = network {
            filters.insert("network".into(), vec![n.to_string()]);
        }
        let opts = qp::ListContainersOptions { all: false, filters: Some(filters), ..Default::default() };
        let list = d.list_containers(Some(opts)).await.map_err(|e| self.fail(ObjectKind::Container, e))?;
        let mut by_network: HashMap<String, Vec<AttachedContainer>> = HashMap::new();
        for c in list {
            let endpoints = c.network_settings.and_then(|s| s.networks).unwrap_or_default();
            let ids: Vec<String> = endpoints.into_values().filter_map(|e| e.network_id).filter(|id| !id.is_empty()).collect();
            let container = AttachedContainer { id: c.id.unwrap_or_default(), labels: c.labels.unwrap_or_default() };
            for id in ids {
                by_network.entry(id).or_default().push(container.clone());
            }
        }
        Ok(by_network)
    }

    pub(super) async fn list_networks(&self, f: &NetworkFilters) -> Result<Vec<NetworkInfo>> {
        let d = self.docker().await?;
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        for (key, values) in [("name", &f.name), ("label", &f.label)] {
            if !values.is_empty() {
                filters.insert(key.into(), values.clone());
            }
        }
        let opts = qp::ListNetworksOptions { filters: Some(filters) };
        let list = d.list_networks(Some(opts)).await.map_err(|e| self.fail_network(e))?;
        let mut attached = self.attached(None).await?;
        Ok(list
            .into_iter()
            .map(|n| {
                let id = n.id.unwrap_or_default();
                NetworkInfo {
                    attached: attached.remove(&id).unwrap_or_default(),
                    id,
                    name: n.name.unwrap_or_default(),
                    driver: n.driver.unwrap_or_default(),
                    scope: n.scope.unwrap_or_default(),
                    internal: n.internal.unwrap_or(false),
                    created_at: engine_time(n.created),
                    labels: n.labels.unwrap_or_default(),
                }
            })
            .collect())
    }

    /// By name, full id, or an id prefix of at least [`MIN_ID_PREFIX`] characters; `None`
    /// when it names no network.
    pub(super) async fn inspect_network(&self, given: &str) -> Result<Option<NetworkInfo>> {
        let d = self.docker().await?;
        let n = match d.inspect_network(given, None).await {
            Ok(n) => n,
            Err(e) => match self.fail_network(e) {
                // A short prefix several networks share names none of them.
                e if given.len() < MIN_ID_PREFIX && !e.is_unavailable() => return Ok(None),
                EngineError::NotFound { .. } => return Ok(None),
                e => return Err(e),
            },
        };
        let id = n.id.clone().unwrap_or_default();
        let name = n.name.clone().unwrap_or_default();
        if !(given == name || given == id || (given.len() >= MIN_ID_PREFIX && id.starts_with(given))) {
            return Ok(None);
        }
        let mut labelled = self.attached(Some(&id)).await?.remove(&id).unwrap_or_default();
        // The engine's own list of endpoints decides who is attached; labels come from ps.
        let endpoints: Vec<String> = n.containers.unwrap_or_default().into_keys().collect();
        let attached = endpoints
            .into_iter()
            .map(|cid| match labelled.iter().position(|c| c.id == cid) {
                Some(i) => labelled.swap_remove(i),
                None => AttachedContainer { id: cid, labels: HashMap::new() },
            })
            .collect();
        Ok(Some(NetworkInfo {
            id,
            name,
            driver: n.driver.unwrap_or_default(),
            scope: n.scope.unwrap_or_default(),
            internal: n.internal.unwrap_or(false),
            created_at: engine_time(n.created),
            labels: n.labels.unwrap_or_default(),
            attached,
        }))
    }

    pub(super) async fn create_network(&self, spec: &NetworkSpec) -> Result<String> {
        let d = self.docker().await?;
        let body = NetworkCreateRequest {
            name: spec.name.clone(),
            driver: Some("bridge".into()),
            internal: Some(spec.internal),
            labels: Some(spec.labels.clone()),
            ..Default::default()
        };
        let res = d.create_network(body).await.map_err(|e| self.fail_network(e))?;
        Ok(res.id)
    }

    pub(super) async fn remove_network(&self, id: &str) -> Result<()> {
        let d = self.docker().await?;
        d.remove_network(id).await.map_err(|e| self.fail_network(e))
    }

    pub(super) async fn connect_network(&self, network: &str, container: &str) -> Result<()> {
        let d = self.docker().await?;
        let body = NetworkConnectRequest { container: container.to_string(), endpoint_config: None };
        d.connect_network(network, body).await.map_err(|e| self.fail_network(e))
    }

    pub(super) async fn disconnect_network(&self, network: &str, container: &str, force: bool) -> Result<()> {
        let d = self.docker().await?;
        let body = NetworkDisconnectRequest { container: container.to_string(), force: Some(force) };
        d.disconnect_network(network, body).await.map_err(|e| self.fail_network(e))
    }
}
