//! `GET /v1/engine/events`: the engine's events filtered by team, one upstream shared by
//! every subscriber, replay with `since`/`until`, and bad queries.

use std::pin::Pin;
use std::time::{Duration, Instant};

use berth::auth::{Role, mint_team_token};
use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use serde_json::Value;

use crate::helpers::{BASE_IMAGE, Cleanup, TestApp, assert_problem, docker, read_sse, spawn_app, spawn_app_with, unique};

fn tok(app: &TestApp, sub: &str, role: Role, team: Option<&str>) -> String {
    mint_team_token(&app.settings.jwt, sub, &[role], team, Duration::from_secs(3600)).unwrap()
}

type Events = Pin<Box<dyn Stream<Item = (String, Value)> + Send>>;

/// Open the stream (the answer's head has come: the subscription is live).
async fn subscribe(app: &TestApp, token: &str, query: &str) -> Events {
    let res = app.client.get(app.url(&format!("/v1/engine/events?{query}"))).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    Box::pin(res.bytes_stream().eventsource().map(|ev| {
        let ev = ev.expect("well-formed SSE");
        (ev.event, serde_json::from_str(&ev.data).unwrap_or(Value::String(ev.data)))
    }))
}

/// Read events until one satisfies `done` (returned with everything before it).
async fn until(events: &mut Events, mut done: impl FnMut(&str, &Value) -> bool) -> Vec<(String, Value)> {
    let mut got = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), events.next()).await;
        let Ok(Some((event, data))) = next else { panic!("no matching event within 30 s (or the stream ended); got {got:?}") };
        let stop = done(&event, &data);
        got.push((event, data));
        if stop {
            return got;
        }
    }
}

fn is(data: &Value, id: &str, action: &str) -> bool {
    data["id"] == id && data["action"] == action
}

/// Run `cmd` in a container labelled for `team`, and wait for it to end.
fn run_to_end(cleanup: &mut Cleanup, team: &str, cmd: &str) -> String {
    let name = unique("evt");
    cleanup.container(&name);
    let label = format!("berth.team={team}");
    let id = docker(&["run", "-d", "--name", &name, "--label", &label, BASE_IMAGE, "sh", "-c", cmd]);
    docker(&["wait", &id]);
    id
}

async fn gauge(app: &TestApp, name: &str) -> f64 {
    let text = app.get("/metrics", Role::Admin).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[actix_web::test]
async fn a_team_sees_its_containers_events_and_never_another_teams() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let alice = tok(&app, "alice", Role::Operator, Some("team-a"));
    let root = tok(&app, "root", Role::Admin, Some("team-a"));
    let mut a_events = subscribe(&app, &alice, "").await;
    let mut admin_events = subscribe(&app, &root, "type=container").await;

    // B's container first, to its end; then A's: by A's `die`, B's events have all gone by.
    let b = run_to_end(&mut cleanup, "team-b", "exit 4");
    let a = run_to_end(&mut cleanup, "team-a", "exit 3");

    let got = until(&mut a_events, |e, d| e == "engine" && is(d, &a, "die")).await;
    assert!(got.iter().any(|(e, d)| e == "engine" && is(d, &a, "start")), "A's start: {got:?}");
    let die = &got.last().unwrap().1;
    assert_eq!(die["type"], "container");
    assert_eq!(die["attributes"]["exitCode"], "3", "{die}");
    assert_eq!(die["attributes"]["berth.team"], "team-a", "{die}");
    assert!(die["name"].as_str().unwrap().starts_with("berth-test-evt-"), "{die}");
    assert!(chrono::DateTime::parse_from_rfc3339(die["time"].as_str().unwrap()).is_ok(), "{die}");
    assert!(!got.iter().any(|(_, d)| d["id"] == b), "team B's container's events are hidden from team A: {got:?}");

    // The admin sees both, B's `die` with its own exit code.
    let all = until(&mut admin_events, |e, d| e == "engine" && is(d, &a, "die")).await;
    let b_die = all.iter().find(|(_, d)| is(d, &b, "die")).unwrap_or_else(|| panic!("admin sees B's die: {all:?}"));
    assert_eq!(b_die.1["attributes"]["exitCode"], "4");
    assert!(all.iter().all(|(_, d)| d["type"] == "container"), "type=container: {all:?}");
}

#[actix_web::test]
async fn a_hundred_subscribers_share_one_upstream() {
    let app = spawn_app_with(|s| s.bounds.max_streams_per_subject = 200).await;
    let mut cleanup = Cleanup::default();
    let viewer = tok(&app, "vera", Role::Viewer, Some("team-a"));
    assert_eq!(gauge(&app, "berth_engine_event_upstreams").await, 0.0, "no upstream before the first subscriber");
    let mut streams = Vec::new();
    for _ in 0..100 {
        streams.push(subscribe(&app, &viewer, "type=container").await);
    }
    assert_eq!(gauge(&app, "berth_engine_event_upstreams").await, 1.0, "one upstream for 100 subscribers");
    assert_eq!(gauge(&app, "berth_engine_event_subscribers").await, 100.0);

    let name = unique("evt-fan");
    cleanup.container(&name);
    let id = docker(&["create", "--name", &name, "--label", "berth.team=team-a", BASE_IMAGE, "sh", "-c", "sleep 2"]);
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            let id = id.clone();
            tokio::spawn(async move {
                until(&mut s, |e, d| e == "engine" && is(d, &id, "start")).await;
                (Instant::now(), std::time::SystemTime::now(), s)
            })
        })
        .collect();
    let started = Instant::now();
    docker(&["start", &id]);
    let mut last = started;
    let mut last_wall = std::time::UNIX_EPOCH;
    let mut kept = Vec::new();
    for r in readers {
        let (at, wall, s) = r.await.expect("every subscriber gets the start event");
        last = last.max(at);
        last_wall = last_wall.max(wall);
        kept.push(s);
    }
    let event_time = docker(&["inspect", "-f", "{{.State.StartedAt}}", &id]);
    let event_time = chrono::DateTime::parse_from_rfc3339(&event_time).unwrap();
    let since_event = chrono::DateTime::<chrono::Utc>::from(last_wall).signed_duration_since(event_time);
    eprintln!(
        "engine events fan-out: from `docker start` to the last of 100 subscribers receiving `start`: {:?} \
         (from the container's StartedAt: {} ms)",
        last.duration_since(started),
        since_event.num_milliseconds()
    );
    assert_eq!(gauge(&app, "berth_engine_event_upstreams").await, 1.0);

    drop(kept);
    let deadline = Instant::now() + Duration::from_secs(30);
    while gauge(&app, "berth_engine_event_upstreams").await != 0.0 {
        assert!(Instant::now() < deadline, "the upstream stops when the last subscriber leaves");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(gauge(&app, "berth_engine_event_subscribers").await, 0.0);
}

#[actix_web::test]
async fn a_bad_type_or_time_is_400() {
    let app = spawn_app().await;
    for q in ["type=containers", "type=container&type=nope", "since=yesterday", "until=12:00", "since=100&until=50"] {
        let res = app.get(&format!("/v1/engine/events?{q}"), Role::Viewer).send().await.unwrap();
        let p = assert_problem(res, 400, "invalid_request").await;
        assert!(p["detail"].as_str().is_some(), "{q}: {p}");
    }
}

#[actix_web::test]
async fn since_and_until_in_the_past_replay_and_end() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let since = chrono::Utc::now() - chrono::Duration::seconds(2);
    let id = run_to_end(&mut cleanup, "team-a", "exit 3");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let until = chrono::Utc::now().timestamp().to_string();
    let res = app
        .get("/v1/engine/events", Role::Admin)
        .query(&[("since", since.to_rfc3339().as_str()), ("until", until.as_str()), ("type", "container")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got = tokio::time::timeout(Duration::from_secs(30), read_sse(res)).await.expect("the replay ends by itself");
    let actions: Vec<&str> = got.iter().filter(|(_, _, d)| d["id"] == id).map(|(_, _, d)| d["action"].as_str().unwrap()).collect();
    for a in ["create", "start", "die"] {
        assert!(actions.contains(&a), "{a} replayed: {actions:?}");
    }
    let (last, _, _) = got.last().unwrap();
    assert_eq!(last, "end", "{got:?}");
    assert!(got.iter().filter(|(e, _, _)| e == "engine").all(|(_, id, _)| id.is_some()), "engine events carry id:");
    // A team B viewer's replay of the same window has none of team A's container.
    let bob = tok(&app, "bob", Role::Viewer, Some("team-b"));
    let res = app
        .client
        .get(app.url("/v1/engine/events"))
        .bearer_auth(&bob)
        .query(&[("since", since.to_rfc3339().as_str()), ("until", until.as_str())])
        .send()
        .await
        .unwrap();
    let got = read_sse(res).await;
    assert!(!got.iter().any(|(_, _, d)| d["id"] == id), "{got:?}");
    assert_eq!(got.last().unwrap().0, "end");
}

/// Removes the test's volumes even when it fails.
struct Volumes(Vec<String>);

impl Drop for Volumes {
    fn drop(&mut self) {
        for v in &self.0 {
            crate::helpers::docker_quiet(&["volume", "rm", "-f", v]);
        }
    }
}

#[actix_web::test]
async fn volume_events_follow_the_volumes_team_even_once_it_is_gone() {
    let app = spawn_app().await;
    let alice = tok(&app, "alice", Role::Viewer, Some("team-a"));
    let (mine, theirs) = (unique("evt-vol-a"), unique("evt-vol-b"));
    let _volumes = Volumes(vec![mine.clone(), theirs.clone()]);
    let root = tok(&app, "root", Role::Admin, Some("team-a"));
    let mut events = subscribe(&app, &alice, "type=volume").await;
    let mut admin = subscribe(&app, &root, "type=volume").await;
    // Each removed only once the hub has looked at its `create` (the labels were learnt
    // then): the admin's stream, and team A's, show when.
    docker(&["volume", "create", "--label", "berth.team=team-b", &theirs]);
    until(&mut admin, |e, d| e == "engine" && is(d, &theirs, "create")).await;
    docker(&["volume", "rm", &theirs]);
    until(&mut admin, |e, d| e == "engine" && is(d, &theirs, "destroy")).await;
    docker(&["volume", "create", "--label", "berth.team=team-a", &mine]);
    let mut got = until(&mut events, |e, d| e == "engine" && is(d, &mine, "create")).await;
    docker(&["volume", "rm", &mine]);
    got.extend(until(&mut events, |e, d| e == "engine" && is(d, &mine, "destroy")).await);
    assert!(!got.iter().any(|(_, d)| d["id"] == theirs), "another team's volume is hidden: {got:?}");
    assert!(got.iter().all(|(_, d)| d["type"] == "volume"), "{got:?}");
}
