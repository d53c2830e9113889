//! What every handler shares.

use std::sync::Arc;

use crate::config::Settings;
use crate::docker::Engine;
use crate::jobs::Jobs;
use crate::sessions::Sessions;

/// What every handler can reach. Cheap to clone (every field is shared): a request
/// routed to another host gets a copy whose `engine` is that host's.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    /// The default host's engine (the first of the fleet).
    pub engine: Arc<Engine>,
    /// Every engine, by name (`BERTH_ENGINES_FILE`).
    pub fleet: Arc<crate::docker::fleet::Fleet>,
    pub jobs: Arc<Jobs>,
    /// Interactive sessions (attach, exec): limits and exec instances.
    pub sessions: Arc<Sessions>,
    /// The engine event hub (`GET /v1/engine/events`): one upstream for all subscribers.
    pub engine_events: Arc<crate::engine_events::EventHub>,
    /// Every host's event hub, by host name (a request routed to a host gets its hub).
    pub event_hubs: Arc<std::collections::HashMap<String, Arc<crate::engine_events::EventHub>>>,
}

