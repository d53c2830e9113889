//! The engine event hub: one upstream `GET /events` to the engine, shared by every
//! subscriber of `GET /v1/engine/events`.
//!
//! The first subscriber starts the upstream; each event is looked at once (a volume's or
//! network's labels looked up, the JSON encoded) and sent to every subscriber through a
//! tokio broadcast channel as one shared value; the upstream stops when the last
//! subscriber leaves. If the engine drops the stream, the hub reconnects with backoff
//! (250 ms doubling to 30 s), asking for the events since the last one it saw, so
//! subscribers stay connected and miss nothing the engine still has. A subscriber that
//! falls [`CAPACITY`] events behind is told so (`lagged`) and its stream ends.
//!
//! Who sees what is one rule, [`may_see`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytestring::ByteString;
use futures_util::StreamExt;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::sync::broadcast;
use utoipa::ToSchema;

use crate::docker::{Engine, EngineEvent};
use crate::domain::identity::Principal;
use crate::domain::scope::{Access, Unmanaged, access};
use crate::metrics::Metrics;

/// The engine's event types (`Type`), the values `?type=` takes.
pub const TYPES: &[&str] =
    &["builder", "config", "container", "daemon", "image", "network", "node", "plugin", "secret", "service", "volume"];

/// How many events a subscriber may fall behind before its stream ends with `lagged`.
pub const CAPACITY: usize = 1024;

/// How many volumes' and networks' labels the hub remembers (so that the event of an
/// object already gone, `destroy`, can still be decided).
const LABEL_CACHE: usize = 4096;

const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The `data:` of an `engine` event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EngineEventView {
    /// The engine's `Type`: `container`, `image`, `volume`, `network`, `daemon`, …
    #[serde(rename = "type")]
    pub typ: String,
    /// What happened: `create`, `start`, `die`, `destroy`, `pull`, `mount`, …
    pub action: String,
    /// The Actor ID: a container's or image's id, a volume's name, a network's id.
    pub id: String,
    /// `attributes.name`, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Actor attributes as the engine sends them (for a container its labels, `name`,
    /// `image`, and on `die` `exitCode`).
    pub attributes: std::collections::BTreeMap<String, String>,
    /// When (RFC 3339, UTC, to the nanosecond).
    pub time: String,
}

impl EngineEventView {
    pub fn of(ev: &EngineEvent) -> Self {
        Self {
            typ: ev.typ.clone(),
            action: ev.action.clone(),
            id: ev.id.clone(),
            name: ev.attributes.get("name").cloned(),
            attributes: ev.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            time: rfc3339_nanos(ev.time_nano),
        }
    }
}

/// One event as the hub shares it with every subscriber: looked at and encoded once.
#[derive(Debug)]
pub struct Shared {
    pub event: EngineEvent,
    /// The labels that decide who sees it: a container's are in its attributes; a
    /// volume's or network's were looked up. `None`: not known.
    pub labels: Option<HashMap<String, String>>,
    /// The encoded [`EngineEventView`].
    pub json: ByteString,
}

/// The one rule for engine events: whether `who` may see an event of type `typ` about an
/// object carrying `labels` (`None`: not known).
///
/// - images are shared for reading: everyone;
/// - containers, volumes, networks: as the object routes decide ([`access`]: own team's;
///   unlabelled ones per `BERTH_UNMANAGED`); an object whose labels are not known: admins only;
/// - everything else (`daemon`, `plugin`, `builder`, swarm types): admins only.
pub fn may_see(who: &Principal, unmanaged: Unmanaged, typ: &str, labels: Option<&HashMap<String, String>>) -> bool {
    if who.is_admin() {
        return true;
    }
    match typ {
        "image" => true,
        "container" | "volume" | "network" => labels.is_some_and(|l| access(who, Some(l), unmanaged) != Access::None),
        _ => false,
    }
}

/// A time as the API takes it (`since`, `until`): Unix seconds (with an optional
/// fraction, as the engine takes it) or RFC 3339. In nanoseconds since the epoch.
pub fn parse_time(given: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(given) {
        return t.timestamp_nanos_opt();
    }
    let (secs, frac) = given.split_once('.').unwrap_or((given, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if secs.is_empty() || secs.len() > 11 || !digits(secs) || !digits(frac) || frac.len() > 9 {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let nanos: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Nanoseconds since the epoch in the engine's `seconds.nanoseconds` form.
pub fn engine_time(nanos: i64) -> String {
    format!("{}.{:09}", nanos.div_euclid(1_000_000_000), nanos.rem_euclid(1_000_000_000))
}

/// Now, in nanoseconds since the epoch.
pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn rfc3339_nanos(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Labels by `type/id`, the oldest forgotten first past [`LABEL_CACHE`].
#[derive(Default)]
struct LabelCache {
    map: HashMap<String, HashMap<String, String>>,
    order: VecDeque<String>,
}

impl LabelCache {
    fn get(&self, key: &str) -> Option<HashMap<String, String>> {
        self.map.get(key).cloned()
    }
    fn put(&mut self, key: String, labels: HashMap<String, String>) {
        if self.map.insert(key.clone(), labels).is_none() {
            self.order.push_back(key);
            while self.order.len() > LABEL_CACHE {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

struct HubState {
    tx: Option<broadcast::Sender<Arc<Shared>>>,
    subscribers: usize,
    task: Option<tokio::task::AbortHandle>,
}

/// The hub (one per engine), held in the application state.
pub struct EventHub {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    state: Mutex<HubState>,
    labels: Mutex<LabelCache>,
}

/// A live subscription: events come on `rx`; dropping it leaves the hub.
pub struct Subscription {
    pub rx: broadcast::Receiver<Arc<Shared>>,
    hub: Arc<EventHub>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.leave();
    }
}

/// Holds a gauge up by one while alive.
struct Up(Gauge);

impl Up {
    fn new(g: &Gauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl EventHub {
    pub fn new(engine: Arc<Engine>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            engine,
            metrics,
            state: Mutex::new(HubState { tx: None, subscribers: 0, task: None }),
            labels: Mutex::new(LabelCache::default()),
        })
    }

    pub fn engine(&self) -> &Engine {
        &*self.engine
    }

    /// Subscribe to the live events, starting the upstream if this is the first subscriber.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let mut st = self.state.lock().expect("hub lock");
        st.subscribers += 1;
        // inc/dec, not set: every host has a hub, and the gauge counts them all.
        self.metrics.engine_event_subscribers.inc();
        let rx = match &st.tx {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = broadcast::channel(CAPACITY);
                let task = tokio::spawn(upstream(self.clone(), tx.clone()));
                st.tx = Some(tx);
                st.task = Some(task.abort_handle());
                rx
            }
        };
        Subscription { rx, hub: self.clone() }
    }

    fn leave(&self) {
        let mut st = self.state.lock().expect("hub lock");
        if st.subscribers > 0 {
            st.subscribers -= 1;
            self.metrics.engine_event_subscribers.dec();
        }
        if st.subscribers == 0 {
            st.tx = None;
            if let Some(task) = st.task.take() {
                task.abort();
            }
        }
    }

    /// Hand `event` to the live subscribers as the upstream would (tests).
    #[cfg(test)]
    pub(crate) async fn inject(&self, event: EngineEvent) -> usize {
        let shared = Arc::new(self.share(event).await);
        let tx = self.state.lock().expect("hub lock").tx.clone();
        tx.map_or(0, |tx| tx.send(shared).unwrap_or(0))
    }

    /// Look at an event once: the labels that decide who sees it, and its JSON.
    pub async fn share(&self, event: EngineEvent) -> Shared {
        let labels = match event.typ.as_str() {
            "container" => Some(event.attributes.clone()),
            "volume" | "network" => self.object_labels(&event).await,
            _ => None,
        };
        let json = ByteString::from(serde_json::to_string(&EngineEventView::of(&event)).unwrap_or_else(|_| "null".into()));
        Shared { event, labels, json }
    }

    /// A volume's or network's labels: remembered, or looked up (and remembered). A
    /// `create` always looks up (a name may be used again); a `destroy` only remembers.
    async fn object_labels(&self, ev: &EngineEvent) -> Option<HashMap<String, String>> {
        let key = format!("{}/{}", ev.typ, ev.id);
        if ev.action != "create"
            && let Some(l) = self.labels.lock().expect("labels lock").get(&key)
        {
            return Some(l);
        }
        if ev.action == "destroy" {
            return None;
        }
        let found = match ev.typ.as_str() {
            "volume" => self.engine.volume_facts(&ev.id).await.map(|f| f.map(|f| f.labels)),
            _ => self.engine.network_labels(&ev.id).await,
        };
        match found {
            Ok(Some(labels)) => {
                self.labels.lock().expect("labels lock").put(key, labels.clone());
                Some(labels)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, object = %key, "looking up the labels of an engine event's object failed");
                None
            }
        }
    }
}

/// The one upstream: follow the engine's events and broadcast them, reconnecting with
/// backoff, until aborted (the last subscriber left).
async fn upstream(hub: Arc<EventHub>, tx: broadcast::Sender<Arc<Shared>>) {
    let _up = Up::new(&hub.metrics.engine_event_upstreams);
    // The last event sent (deduplicates a reconnect's replay), and where to resume.
    // From the start: the first subscriber has its answer's head already, and the
    // engine may take a moment to answer; it replays from here.
    let mut last: Option<i64> = None;
    let mut resume: i64 = now_nanos();
    let mut backoff = MIN_BACKOFF;
    loop {
        let since = engine_time(resume);
        match hub.engine.events(Some(&since), None, &[]).await {
            Ok(mut stream) => {
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(ev) => {
                            backoff = MIN_BACKOFF;
                            if last.is_some_and(|l| ev.time_nano <= l) {
                                continue;
                            }
                            last = Some(ev.time_nano);
                            resume = ev.time_nano;
                            let shared = hub.share(ev).await;
                            // No receiver now is fine: one may come.
                            let _ = tx.send(Arc::new(shared));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the engine's event stream failed; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot follow the engine's events"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identity::Role;
    use crate::domain::scope::TEAM_LABEL;

    fn who(team: &str, role: Role) -> Principal {
        Principal { team: team.into(), team_claimed: true, ..Principal::new("s", Some(role), u64::MAX) }
    }

    #[test]
    fn who_sees_which_engine_events() {
        let a: HashMap<String, String> = [(TEAM_LABEL.to_string(), "a".to_string()), ("name".into(), "x".into())].into();
        let none: HashMap<String, String> = [("name".to_string(), "x".to_string())].into();
        let (op_a, op_b, admin) = (who("a", Role::Viewer), who("b", Role::Operator), who("b", Role::Admin));
        let d = Unmanaged::Default;
        for typ in ["container", "volume", "network"] {
            assert!(may_see(&op_a, d, typ, Some(&a)), "{typ}: own team");
            assert!(!may_see(&op_b, d, typ, Some(&a)), "{typ}: another team's");
            assert!(may_see(&admin, d, typ, Some(&a)), "{typ}: admin");
            assert!(!may_see(&op_a, d, typ, None), "{typ}: unknown labels: admin only");
            assert!(may_see(&admin, d, typ, None), "{typ}: admin sees unknown");
            // Unlabelled: per BERTH_UNMANAGED, as the object routes.
            assert!(may_see(&who("default", Role::Viewer), d, typ, Some(&none)));
            assert!(!may_see(&op_a, d, typ, Some(&none)));
            assert!(!may_see(&who("default", Role::Viewer), Unmanaged::Admin, typ, Some(&none)));
            assert!(may_see(&op_a, Unmanaged::Read, typ, Some(&none)));
        }
        assert!(may_see(&op_b, d, "image", None), "images are shared for reading");
        for typ in ["daemon", "plugin", "builder", "service", ""] {
            assert!(!may_see(&op_a, d, typ, None), "{typ}");
            assert!(may_see(&admin, d, typ, None), "{typ}");
        }
    }

    #[test]
    fn times_as_the_engine_takes_them() {
        assert_eq!(parse_time("1700000000"), Some(1_700_000_000_000_000_000));
        assert_eq!(parse_time("1700000000.5"), Some(1_700_000_000_500_000_000));
        assert_eq!(parse_time("1700000000.000000001"), Some(1_700_000_000_000_000_001));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000_000_000));
        assert_eq!(parse_time("2023-11-14T23:13:20.25+01:00"), Some(1_700_000_000_250_000_000));
        for bad in ["", "yesterday", "-5", "1.2.3", "10m", "1700000000.0000000001", "99999999999999999999", "1e9"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert_eq!(engine_time(1_700_000_000_000_000_001), "1700000000.000000001");
        assert_eq!(rfc3339_nanos(1_700_000_000_000_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn the_label_cache_is_bounded() {
        let mut c = LabelCache::default();
        for i in 0..LABEL_CACHE + 10 {
            c.put(format!("volume/{i}"), HashMap::new());
        }
        assert_eq!(c.map.len(), LABEL_CACHE);
        assert!(c.get("volume/0").is_none());
        assert!(c.get(&format!("volume/{}", LABEL_CACHE + 9)).is_some());
    }
}
