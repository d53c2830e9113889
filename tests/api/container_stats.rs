//! Container figures against the real engine: stats (snapshot and SSE), the bulk
//! `/v1/stats`, top, and `/v1/system/df`; each team-scoped.

use std::time::{Duration, Instant};

use berth::auth::{Role, mint_team_token};
use futures_util::StreamExt;
use serde_json::Value;

use crate::helpers::*;

const BUSY: &str = "while :; do :; done";

fn tok(app: &TestApp, sub: &str, role: Role, team: Option<&str>) -> String {
    mint_team_token(&app.settings.jwt, sub, &[role], team, Duration::from_secs(3600)).unwrap()
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let res = app.get(path, Role::Viewer).send().await.unwrap();
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} answers JSON ({e}): {body}"))
}

/// Removes the named volumes a test made, even when it fails.
struct Volumes(Vec<String>);

impl Drop for Volumes {
    fn drop(&mut self) {
        for v in &self.0 {
            docker_quiet(&["volume", "rm", "-f", v]);
        }
    }
}

#[actix_web::test]
async fn a_busy_container_shows_cpu_memory_and_pids() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("stats-busy");
    let id = run_container(&mut cleanup, &name, BUSY, &[]);
    // Let the loop run for a while so the engine's sample sees it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let s = get_json(&app, &format!("/v1/containers/{name}/stats")).await;
    eprintln!("stats snapshot took {:?}: {s}", started.elapsed());
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["name"], name.as_str());
    assert_eq!(s["running"], true);
    assert!(s["read"].as_str().is_some_and(|r| chrono::DateTime::parse_from_rfc3339(r).is_ok()), "{s}");
    assert!(s["cpu_percent"].as_f64().unwrap() > 0.0, "a busy loop uses CPU: {s}");
    assert!(s["memory_bytes"].as_u64().unwrap() > 0, "{s}");
    assert!(s["memory_limit_bytes"].as_u64().unwrap() >= s["memory_bytes"].as_u64().unwrap(), "{s}");
    assert!(s["pids"].as_u64().unwrap() >= 1, "{s}");
    for key in ["net_rx_bytes", "net_tx_bytes", "block_read_bytes", "block_write_bytes"] {
        assert!(s[key].is_u64(), "`{key}` is a count: {s}");
    }
}

#[actix_web::test]
async fn the_stream_sends_stats_events_until_the_container_stops_then_end() {
    use eventsource_stream::Eventsource;
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("stats-stream");
    run_container(&mut cleanup, &name, BUSY, &[]);
    let res = app.get(&format!("/v1/containers/{name}/stats?stream=true"), Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut events = res.bytes_stream().eventsource();
    let mut stats = Vec::new();
    while stats.len() < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("a stats event within 20 s")
            .expect("the stream stays open while the container runs")
            .expect("well-formed SSE");
        assert_eq!(ev.event, "stats", "{ev:?}");
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        assert_eq!(v["running"], true, "{v}");
        assert_eq!(v["name"], name.as_str());
        stats.push(v);
    }
    docker(&["kill", &name]);
    let mut last = None;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(20), events.next()).await.expect("the stream ends after the stop") {
        let ev = ev.expect("well-formed SSE");
        last = Some((ev.event.clone(), ev.data.clone()));
    }
    let (event, data) = last.expect("an event after the stop");
    assert_eq!(event, "end", "{data}");
    assert_eq!(serde_json::from_str::<Value>(&data).unwrap()["state"], "exited", "{data}");
}

#[actix_web::test]
async fn a_stopped_container_is_not_running_with_no_read_time_and_top_is_409() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("stats-stopped");
    run_container(&mut cleanup, &name, "true", &[]);
    docker(&["wait", &name]);
    let s = get_json(&app, &format!("/v1/containers/{name}/stats")).await;
    assert_eq!(s["running"], false, "{s}");
    assert_eq!(s["read"], Value::Null, "{s}");
    assert_eq!(s["cpu_percent"], 0.0, "{s}");
    assert_eq!(s["memory_bytes"], 0, "{s}");
    let res = app.get(&format!("/v1/containers/{name}/top"), Role::Viewer).send().await.unwrap();
    let p = assert_problem(res, 409, "conflict").await;
    assert!(p["detail"].as_str().unwrap().contains("not running"), "{p}");
    // The stream of a stopped container: its figures once, then `end`.
    let res = app.get(&format!("/v1/containers/{name}/stats?stream=true"), Role::Viewer).send().await.unwrap();
    let events = read_sse(res).await;
    let kinds: Vec<&str> = events.iter().map(|(e, _, _)| e.as_str()).collect();
    assert_eq!(kinds, ["stats", "end"], "{events:?}");
    assert_eq!(events[0].2["running"], false);
}

#[actix_web::test]
async fn top_lists_the_busy_process() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("top-busy");
    run_container(&mut cleanup, &name, BUSY, &[]);
    let top = get_json(&app, &format!("/v1/containers/{name}/top")).await;
    let titles: Vec<&str> = top["titles"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(titles.contains(&"PID") && titles.contains(&"CMD"), "{top}");
    let rows = top["processes"].as_array().unwrap();
    assert!(!rows.is_empty(), "{top}");
    assert!(rows.iter().all(|r| r.as_array().unwrap().len() == titles.len()), "a value per title: {top}");
    assert!(rows.iter().any(|r| r.to_string().contains("while :")), "the busy loop is listed: {top}");
}

#[actix_web::test]
async fn another_teams_container_is_absent_from_stats_and_top() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("stats-team-a");
    run_container(&mut cleanup, &name, "sleep 300", &["berth.team=team-a", "berth.owner=alice"]);
    let bob = tok(&app, "bob", Role::Viewer, Some("team-b"));
    let alice = tok(&app, "alice", Role::Viewer, Some("team-a"));
    for path in [format!("/v1/containers/{name}/stats"), format!("/v1/containers/{name}/stats?stream=true"), format!("/v1/containers/{name}/top")] {
        let res = app.client.get(app.url(&path)).bearer_auth(&bob).send().await.unwrap();
        assert_problem(res, 404, "container_not_found").await;
    }
    let res = app.client.get(app.url(&format!("/v1/containers/{name}/top"))).bearer_auth(&alice).send().await.unwrap();
    assert_eq!(res.status(), 200, "its own team reaches it");
    // The bulk list: alice's team sees it, bob's does not.
    for (t, present) in [(&alice, true), (&bob, false)] {
        let res = app.client.get(app.url("/v1/stats")).bearer_auth(t).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let all: Vec<Value> = res.json().await.unwrap();
        assert_eq!(all.iter().any(|s| s["name"] == name.as_str()), present, "{all:?}");
    }
}

#[actix_web::test]
async fn df_counts_a_new_volume_and_shows_non_admins_their_teams_only() {
    let app = spawn_app().await;
    let mine = unique("df-vol-default");
    let theirs = unique("df-vol-team-b");
    let _volumes = Volumes(vec![mine.clone(), theirs.clone()]);
    let admin = tok(&app, "root", Role::Admin, None);
    docker(&["volume", "create", "--label", "berth.team=default", &mine]);
    docker(&["volume", "create", "--label", "berth.team=team-b", &theirs]);
    let res = app.client.get(app.url("/v1/system/df")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let df: Value = res.json().await.unwrap();
    for kind in ["images", "containers", "volumes", "build_cache"] {
        for key in ["count", "active", "size", "reclaimable"] {
            assert!(df[kind][key].is_i64(), "{kind}.{key}: {df}");
        }
        assert!(df[kind]["items"].is_array(), "{kind}.items");
        assert!(df[kind]["reclaimable"].as_i64() <= df[kind]["size"].as_i64(), "{kind}: {df}");
    }
    assert!(df["images"]["count"].as_i64().unwrap() >= 1, "the base image at least: {df}");
    let names = |df: &Value| -> Vec<String> {
        df["volumes"]["items"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap().to_string()).collect()
    };
    assert!(names(&df).contains(&mine) && names(&df).contains(&theirs), "admin sees both: {:?}", names(&df));
    let v = df["volumes"]["items"].as_array().unwrap().iter().find(|v| v["name"] == mine.as_str()).unwrap().clone();
    assert_eq!(v["ref_count"], 0, "{v}");
    assert!(v["size"].as_i64().unwrap() >= 0, "{v}");
    assert_eq!(v["labels"]["berth.team"], "default");

    // A default-team viewer sees its volume, not team-b's; the totals are of what it sees.
    let df = get_json(&app, "/v1/system/df").await;
    let seen = names(&df);
    assert!(seen.contains(&mine), "{seen:?}");
    assert!(!seen.contains(&theirs), "another team's volume is left out: {seen:?}");
    assert_eq!(df["volumes"]["count"].as_i64().unwrap(), seen.len() as i64);
    assert_eq!(df["build_cache"]["items"], Value::Array(vec![]), "build cache records are admin's to see");
}

#[actix_web::test]
async fn bulk_stats_of_fifty_containers() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let label = unique("bulk");
    let names: Vec<String> = (0..50).map(|i| format!("{label}-{i:02}")).collect();
    for n in &names {
        cleanup.container(n);
    }
    let created = Instant::now();
    // Start them eight at a time: the docker CLI is slow one by one.
    for chunk in names.chunks(8) {
        let runs: Vec<_> = chunk
            .iter()
            .map(|n| {
                let (n, l) = (n.clone(), format!("berth.test.bulk={label}"));
                tokio::task::spawn_blocking(move || docker(&["run", "-d", "--name", &n, "--label", &l, BASE_IMAGE, "sleep", "300"]))
            })
            .collect();
        for r in runs {
            r.await.expect("docker run");
        }
    }
    eprintln!("started 50 containers in {:?}", created.elapsed());
    let started = Instant::now();
    let all = get_json(&app, "/v1/stats").await;
    let wall = started.elapsed();
    let all = all.as_array().unwrap();
    let ours: Vec<&Value> = all.iter().filter(|s| s["name"].as_str().is_some_and(|n| n.starts_with(&label))).collect();
    eprintln!("GET /v1/stats: {} containers ({} of this test's 50) in {wall:?}", all.len(), ours.len());
    assert_eq!(ours.len(), 50, "all 50 present");
    assert!(ours.iter().all(|s| s["running"] == true && s["pids"].as_u64().unwrap() >= 1), "{ours:?}");
    let mut sorted: Vec<&str> = all.iter().map(|s| s["name"].as_str().unwrap()).collect();
    sorted.sort();
    assert_eq!(sorted, all.iter().map(|s| s["name"].as_str().unwrap()).collect::<Vec<_>>(), "sorted by name");
}
