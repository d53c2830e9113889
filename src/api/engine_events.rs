//! `GET /v1/engine/events`: the engine's events, as the caller may see them.

use std::collections::HashSet;

use actix_web::{HttpRequest, Responder, get, web};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use utoipa::IntoParams;

use super::extract::{Authorized, Qs, Viewer};
use super::problem::{ApiError, ApiResult, Problem};
use super::sse::{Data, Event, sse_json};
use super::streams::sse_framing;
use crate::domain::identity::Principal;
use crate::domain::scope::Unmanaged;
use crate::engine_events::{EventHub, Shared, Subscription, TYPES, engine_time, may_see, now_nanos, parse_time};
use crate::error::HasCode;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EngineEventsQuery {
    /// Replay the engine's events from this time first (Unix seconds, optionally with a
    /// fraction, or RFC 3339), then follow live.
    pub since: Option<String>,
    /// Stop at this time (same forms) with an `end` event. In the past: only the replay.
    pub until: Option<String>,
    /// Only events of these engine types (repeatable): builder, config, container,
    /// daemon, image, network, node, plugin, secret, service, volume.
    #[serde(default, rename = "type")]
    #[param(rename = "type")]
    pub types: Vec<String>,
    /// The bearer token, for clients that cannot set headers (EventSource).
    pub access_token: Option<String>,
    /// A single-use stream ticket (`POST /v1/tickets`), in place of the token.
    pub ticket: Option<String>,
}

/// What one subscriber asked for, checked.
struct Plan {
    since: Option<i64>,
    until: Option<i64>,
    types: Vec<String>,
    /// Events at or before this time were seen already (`Last-Event-ID`).
    after: Option<i64>,
}

fn plan(q: EngineEventsQuery, last_event_id: Option<&str>) -> ApiResult<Plan> {
    let time = |name: &str, v: &Option<String>| -> ApiResult<Option<i64>> {
        v.as_deref()
            .map(|s| {
                parse_time(s).ok_or_else(|| {
                    ApiError::invalid(format!("`{name}` must be Unix seconds or an RFC 3339 time, not {:?}", s.escape_debug().to_string()))
                })
            })
            .transpose()
    };
    let mut since = time("since", &q.since)?;
    let until = time("until", &q.until)?;
    if let (Some(s), Some(u)) = (since, until)
        && u < s
    {
        return Err(ApiError::invalid("`until` is before `since`"));
    }
    if let Some(bad) = q.types.iter().find(|t| !TYPES.contains(&t.as_str())) {
        return Err(ApiError::invalid(format!(
            "`type` must be one of the engine's event types ({}), not {:?}",
            TYPES.join(", "),
            bad.escape_debug().to_string()
        )));
    }
    let after = match last_event_id {
        Some(id) => Some(id.trim().parse::<i64>().map_err(|_| ApiError::invalid("`Last-Event-ID` must be an event id (a whole number)"))?),
        None => None,
    };
    if let Some(a) = after {
        since = Some(since.map_or(a, |s| s.max(a)));
    }
    let mut types = q.types;
    types.sort();
    types.dedup();
    Ok(Plan { since, until, types, after })
}

/// Follow the engine's events.
///
/// `engine` events, `data: {type, action, id, name?, attributes, time}` (the engine's
/// `Type`, `Action`, Actor ID and attributes; `name` from `attributes.name`; `time` RFC
/// 3339), `id:` the event's time in nanoseconds (`Last-Event-ID` resumes after it), of
/// what the caller may see: containers, volumes and networks of the caller's team (as
/// the container routes decide, from the labels; a volume or network whose labels are
/// not known: admins only), every image event, and the rest (daemon, plugin, builder, …)
/// for admins only. `since` replays from that time first; `until` ends the stream with
/// `end` at that time (in the past: after the replay). All subscribers share one stream
/// from the engine. A reader more than 1024 events behind gets `lagged` (`{missed}`) and
/// the stream ends: reconnect with `Last-Event-ID`. If the engine fails midway: `error`
/// (`{code, message}`), then the stream ends.
#[utoipa::path(
    tag = "system",
    params(EngineEventsQuery),
    responses(
        (status = 200, description = sse_framing!("Events: `engine` (EngineEventView), `lagged` (LaggedEvent, no `id:`, last), `error` (JobError, last) and `end` (EngineEndEvent `{}`, last, at `until`)."), content_type = "text/event-stream", body = super::streams::EngineStreamEvent),
        (status = 400, description = "A bad `since`, `until` or `type`, or `Last-Event-ID` (`invalid_request`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller holds BERTH_MAX_STREAMS_PER_SUBJECT streams open already (`too_many_streams`, with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["viewer"]))
)]
#[get("/engine/events")]
pub async fn stream_engine_events(
    req: HttpRequest,
    who: Authorized<Viewer>,
    state: web::Data<AppState>,
    Qs(q): Qs<EngineEventsQuery>,
) -> ApiResult<impl Responder> {
    let last = req.headers().get("last-event-id").map(|v| v.to_str().unwrap_or("?").to_string());
    let plan = plan(q, last.as_deref())?;
    let slot = super::sse::slot(&state, &who)?;
    let deadline = who.stream_deadline();
    let (tx, rx) = mpsc::channel::<Event>(16);
    let hub = state.engine_events.clone();
    // Subscribe now, before answering (and before any replay), so that nothing that
    // happens once the client has the answer's head is missed.
    let live = plan.until.is_none_or(|u| u > now_nanos());
    let sub = live.then(|| hub.subscribe());
    tokio::spawn(produce(tx, hub, sub, who.principal.clone(), state.settings.unmanaged, plan));
    Ok(super::sse::stream(tokio_stream::wrappers::ReceiverStream::new(rx), deadline, slot))
}

/// How long before subscribing a replayed event's key is remembered, to drop the same
/// event when it comes live too.
const OVERLAP_NANOS: i64 = 10_000_000_000;

type Key = (i64, String, String, String);

fn key(ev: &crate::docker::EngineEvent) -> Key {
    (ev.time_nano, ev.typ.clone(), ev.action.clone(), ev.id.clone())
}

fn engine_event(shared: &Shared) -> Event {
    Data::new(shared.json.clone()).event("engine").id(shared.event.time_nano.to_string()).into()
}

/// One subscriber's events: the replay (`since`), then the live hub (unless `until` is
/// past), then `end` at `until`.
async fn produce(
    tx: mpsc::Sender<Event>,
    hub: std::sync::Arc<EventHub>,
    mut sub: Option<Subscription>,
    who: Principal,
    unmanaged: Unmanaged,
    plan: Plan,
) {
    let now = now_nanos();
    let live = sub.is_some();
    let wanted = |shared: &Shared| {
        (plan.types.is_empty() || plan.types.contains(&shared.event.typ))
            && plan.after.is_none_or(|a| shared.event.time_nano > a)
            && may_see(&who, unmanaged, &shared.event.typ, shared.labels.as_ref())
    };
    let mut seen: HashSet<Key> = HashSet::new();
    if let Some(since) = plan.since {
        let until = engine_time(if live { now } else { plan.until.unwrap_or(now) });
        let replay = hub.engine().events(Some(&engine_time(since)), Some(&until), &plan.types).await;
        let mut replay = match replay {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(error_event(&e)).await;
                return;
            }
        };
        loop {
            let item = tokio::select! {
                item = futures_util::StreamExt::next(&mut replay) => item,
                _ = tx.closed() => return,
            };
            match item {
                None => break,
                Some(Ok(ev)) => {
                    if live && ev.time_nano >= now - OVERLAP_NANOS {
                        seen.insert(key(&ev));
                    }
                    let shared = hub.share(ev).await;
                    if wanted(&shared) && tx.send(engine_event(&shared)).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    let _ = tx.send(error_event(&e)).await;
                    return;
                }
            }
        }
    }
    if let Some(sub) = sub.as_mut() {
        let stop = plan.until.map(|u| tokio::time::Instant::now() + std::time::Duration::from_nanos((u - now).max(0) as u64));
        let at_until = async {
            match stop {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(at_until);
        loop {
            let item = tokio::select! {
                item = sub.rx.recv() => item,
                _ = tx.closed() => return,
                _ = &mut at_until => break,
            };
            match item {
                Ok(shared) => {
                    if !seen.is_empty() && seen.contains(&key(&shared.event)) {
                        continue;
                    }
                    if wanted(&shared) && tx.send(engine_event(&shared)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let _ = tx.send(sse_json("lagged", &serde_json::json!({"missed": missed})).into()).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
    drop(sub);
    let _ = tx.send(sse_json("end", &serde_json::json!({})).into()).await;
}

fn error_event(e: &crate::docker::EngineError) -> Event {
    sse_json("error", &serde_json::json!({"code": e.code().as_str(), "message": e.to_string()})).into()
}


#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use actix_web::Responder;

    use super::*;
    use crate::docker::{DockerEngine, Engine, EngineEvent};
    use crate::domain::identity::Role;
    use crate::metrics::Metrics;

    fn hub() -> (Arc<EventHub>, Arc<Metrics>) {
        // An engine that is not there: the upstream only retries; the test injects.
        let engine: Arc<Engine> = Arc::new(DockerEngine::new(Some("unix:///nonexistent/berth-test.sock".into())));
        let metrics = Arc::new(Metrics::default());
        (EventHub::new(engine, metrics.clone()), metrics)
    }

    fn container(id: &str, team: &str, action: &str, t: i64) -> EngineEvent {
        EngineEvent {
            typ: "container".into(),
            action: action.into(),
            id: id.into(),
            attributes: HashMap::from([("berth.team".to_string(), team.to_string()), ("name".to_string(), id.to_string())]),
            time_nano: t,
        }
    }

    fn plan() -> Plan {
        Plan { since: None, until: None, types: vec![], after: None }
    }

    fn who(team: &str) -> Principal {
        Principal { team: team.into(), team_claimed: true, ..Principal::new("s", Some(Role::Viewer), u64::MAX) }
    }

    /// The stream's text once it ends.
    async fn body(rx: mpsc::Receiver<Event>) -> String {
        let req = actix_web::test::TestRequest::default().to_http_request();
        let slots = crate::sessions::SubjectSlots::new(1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let res = crate::api::sse::stream(tokio_stream::wrappers::ReceiverStream::new(rx), deadline, slots.take("t").unwrap())
            .respond_to(&req);
        let bytes = actix_web::body::to_bytes(res.into_body()).await.map_err(|_| "body").unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[actix_web::test]
    async fn one_upstream_for_all_and_none_once_they_leave() {
        let (hub, metrics) = hub();
        let a = hub.subscribe();
        let b = hub.subscribe();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(metrics.engine_event_upstreams.get(), 1);
        assert_eq!(metrics.engine_event_subscribers.get(), 2);
        assert_eq!(hub.inject(container("c1", "a", "start", 1)).await, 2, "both get the one shared event");
        drop(a);
        assert_eq!(metrics.engine_event_upstreams.get(), 1, "one left: the upstream stays");
        drop(b);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(metrics.engine_event_upstreams.get(), 0, "the last left: the upstream stops");
        assert_eq!(metrics.engine_event_subscribers.get(), 0);
        let _c = hub.subscribe();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(metrics.engine_event_upstreams.get(), 1, "a new first subscriber starts it again");
    }

    #[actix_web::test]
    async fn a_subscriber_sees_its_team_and_ends_at_until() {
        let (hub, _) = hub();
        let (tx, rx) = mpsc::channel(16);
        let until = now_nanos() + 300_000_000;
        let sub = Some(hub.subscribe());
        let task = tokio::spawn(produce(tx, hub.clone(), sub, who("a"), Unmanaged::Default, Plan { until: Some(until), ..plan() }));
        hub.inject(container("mine", "a", "die", 1)).await;
        hub.inject(container("theirs", "b", "die", 2)).await;
        let text = body(rx).await;
        task.await.unwrap();
        assert!(text.contains("event: engine\ndata: {\"type\":\"container\",\"action\":\"die\",\"id\":\"mine\""), "{text}");
        assert!(text.contains("id: 1\n"), "{text}");
        assert!(!text.contains("theirs"), "{text}");
        assert!(text.ends_with("event: end\ndata: {}\n\n"), "{text}");
    }

    #[actix_web::test]
    async fn a_lagging_subscriber_is_told_and_its_stream_ends() {
        let (hub, _) = hub();
        let (tx, rx) = mpsc::channel(1);
        let sub = Some(hub.subscribe());
        let task = tokio::spawn(produce(tx, hub.clone(), sub, who("a"), Unmanaged::Default, plan()));
        // Nobody reads: the producer stalls on its channel, the broadcast overruns.
        for i in 0..(crate::engine_events::CAPACITY as i64 + 100) {
            hub.inject(container("c", "a", "exec_start", i + 1)).await;
        }
        let text = body(rx).await;
        task.await.unwrap();
        assert!(text.contains("event: lagged\ndata: {\"missed\":"), "{}", &text[text.len().saturating_sub(300)..]);
        assert!(text.trim_end().ends_with('}') && text.rfind("event: lagged") > text.rfind("event: engine"), "lagged is last");
    }
}
