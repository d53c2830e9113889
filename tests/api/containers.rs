//! `/v1/containers` against the real engine: list, inspect, lifecycle, remove, logs (SSE).

use std::time::{Duration, Instant};

use berth::auth::Role;
use serde_json::Value;

use crate::helpers::{BASE_IMAGE, Cleanup, assert_problem, docker, read_sse, run_container, spawn_app, unique};

type Events = Vec<(String, Option<String>, Value)>;

fn container_exists(name: &str) -> bool {
    std::process::Command::new("docker")
        .args(["container", "inspect", name])
        .output()
        .expect("docker CLI runs")
        .status
        .success()
}

/// `{{.State.Status}}` of a container, by the docker CLI.
fn state_of(name: &str) -> String {
    docker(&["container", "inspect", "-f", "{{.State.Status}}", name])
}

/// Run `cmd` in a container and wait for it to exit.
fn run_to_exit(cleanup: &mut Cleanup, name: &str, cmd: &str) -> String {
    let id = run_container(cleanup, name, cmd, &[]);
    docker(&["wait", name]);
    id
}

async fn list(app: &crate::helpers::TestApp, query: &str) -> Vec<Value> {
    let res = app.get(&format!("/v1/containers{query}"), Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200, "{query}");
    res.json::<Vec<Value>>().await.unwrap()
}

fn names(list: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = list.iter().map(|c| c["names"][0].as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

async fn inspect(app: &crate::helpers::TestApp, id: &str) -> Value {
    let res = app.get(&format!("/v1/containers/{id}"), Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200, "inspect {id}");
    res.json().await.unwrap()
}

async fn logs(app: &crate::helpers::TestApp, id: &str, query: &str) -> Events {
    let res = app.get(&format!("/v1/containers/{id}/logs{query}"), Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200, "logs {query}");
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    read_sse(res).await
}

/// The `log` events' (stream, text without the trailing newline).
fn log_lines(events: &Events) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|(e, _, _)| e == "log")
        .map(|(_, _, d)| (d["stream"].as_str().unwrap().to_string(), d["text"].as_str().unwrap().trim_end().to_string()))
        .collect()
}

/// Every event has an id, counting from 1; the last one is `end`.
fn assert_sequenced_and_ended(events: &Events, end_state: &str) {
    for (i, (event, id, _)) in events.iter().enumerate() {
        assert_eq!(id.as_deref(), Some((i + 1).to_string().as_str()), "event {i} ({event}) id: {events:?}");
    }
    let (last, _, data) = events.last().expect("at least the end event");
    assert_eq!(last, "end", "{events:?}");
    assert_eq!(data["state"], end_state, "{events:?}");
    assert_eq!(events.iter().filter(|(e, _, _)| e == "end").count(), 1);
    assert!(events.iter().all(|(e, _, _)| e == "log" || e == "end"), "only log and end: {events:?}");
}

#[actix_web::test]
async fn list_shows_running_only_unless_all_and_filters() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let tag = unique("ctr-list");
    let label = format!("berth.test={tag}");
    let running = format!("{tag}-running");
    let exited = format!("{tag}-exited");
    let running_id = run_container(&mut cleanup, &running, "sleep 60", &[&label, "berth.role=web"]);
    run_container(&mut cleanup, &exited, "true", &[&label]);
    docker(&["wait", &exited]);

    let l = list(&app, &format!("?label={label}")).await;
    assert_eq!(names(&l), vec![running.clone()], "running only by default");
    let c = &l[0];
    assert_eq!(c["id"], running_id);
    assert_eq!(c["state"], "running");
    assert!(c["status"].as_str().unwrap().starts_with("Up"), "{c}");
    assert_eq!(c["image"], BASE_IMAGE);
    assert!(c["image_id"].as_str().unwrap().starts_with("sha256:"));
    assert!(c["command"].as_str().unwrap().contains("sleep 60"), "{c}");
    assert!(chrono::DateTime::parse_from_rfc3339(c["created"].as_str().unwrap()).is_ok());
    assert_eq!(c["labels"]["berth.test"], tag);
    assert!(c["ports"].is_array());

    let l = list(&app, &format!("?all=true&label={label}")).await;
    assert_eq!(names(&l), vec![exited.clone(), running.clone()], "all=true shows exited ones");
    let e = l.iter().find(|c| c["names"][0] == exited.as_str()).unwrap();
    assert_eq!(e["state"], "exited");
    let l = list(&app, &format!("?all=false&label={label}")).await;
    assert_eq!(names(&l), vec![running.clone()]);

    // Label key alone, and two labels that must both match.
    let l = list(&app, &format!("?all=1&label={label}&label=berth.role=web")).await;
    assert_eq!(names(&l), vec![running.clone()]);
    let l = list(&app, &format!("?all=true&label={label}-nope")).await;
    assert!(l.is_empty(), "{l:?}");

    // name= (a substring match, as in Docker).
    let l = list(&app, &format!("?all=true&name={exited}")).await;
    assert_eq!(names(&l), vec![exited.clone()]);
    let l = list(&app, &format!("?all=true&name={tag}")).await;
    assert_eq!(names(&l), vec![exited.clone(), running.clone()]);
    let l = list(&app, &format!("?name={tag}")).await;
    assert_eq!(names(&l), vec![running.clone()]);

    // status=: Docker lists matching containers whether or not all= is set.
    let l = list(&app, &format!("?all=true&status=exited&label={label}")).await;
    assert_eq!(names(&l), vec![exited.clone()]);
    let l = list(&app, &format!("?status=exited&label={label}")).await;
    assert_eq!(names(&l), vec![exited.clone()]);
    let l = list(&app, &format!("?all=true&status=exited&status=running&label={label}")).await;
    assert_eq!(names(&l), vec![exited.clone(), running.clone()]);
    let l = list(&app, &format!("?all=true&status=paused&label={label}")).await;
    assert!(l.is_empty());

    let res = app.get("/v1/containers?status=sleeping", Role::Viewer).send().await.unwrap();
    let p = assert_problem(res, 400, "invalid_request").await;
    assert!(p["detail"].as_str().unwrap().contains("status"), "{p}");
    let res = app.get("/v1/containers?status=running&status=Running", Role::Viewer).send().await.unwrap();
    assert_problem(res, 400, "invalid_request").await;
}

#[actix_web::test]
async fn inspect_by_name_id_and_prefix() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ctr-inspect");
    let id = run_container(&mut cleanup, &name, "sleep 60", &["berth.test=inspect"]);

    for key in [name.as_str(), id.as_str(), &id[..12]] {
        let body = inspect(&app, key).await;
        assert_eq!(body["Id"], id, "{key}");
        assert_eq!(body["Name"], format!("/{name}"), "{key}");
        assert_eq!(body["State"]["Running"], true);
        assert_eq!(body["Config"]["Labels"]["berth.test"], "inspect");
        assert_eq!(body["Config"]["Image"], BASE_IMAGE);
    }
}

#[actix_web::test]
async fn missing_containers_are_404_container_not_found() {
    let app = spawn_app().await;
    let missing = unique("ctr-missing");
    let res = app.get(&format!("/v1/containers/{missing}"), Role::Viewer).send().await.unwrap();
    let p = assert_problem(res, 404, "container_not_found").await;
    assert!(p["detail"].as_str().unwrap().contains(&missing), "Docker's message kept: {p}");
    for action in ["start", "stop", "restart", "kill"] {
        let res = app.post(&format!("/v1/containers/{missing}/{action}"), Role::Operator).send().await.unwrap();
        assert_problem(res, 404, "container_not_found").await;
    }
    let res = app.delete(&format!("/v1/containers/{missing}"), Role::Operator).send().await.unwrap();
    assert_problem(res, 404, "container_not_found").await;
    let res = app.delete(&format!("/v1/containers/{missing}?force=true"), Role::Operator).send().await.unwrap();
    assert_problem(res, 404, "container_not_found").await;
}

#[actix_web::test]
async fn start_stop_restart_and_kill_change_the_state() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ctr-life");
    run_container(&mut cleanup, &name, "sleep 300", &[]);
    let first_start = inspect(&app, &name).await["State"]["StartedAt"].as_str().unwrap().to_string();

    // stop, with a short grace period (sh as pid 1 ignores SIGTERM: killed after 1 s)
    let t = Instant::now();
    let res = app.post(&format!("/v1/containers/{name}/stop?timeout=1"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    assert!(t.elapsed() < Duration::from_secs(8), "timeout=1 honoured: {:?}", t.elapsed());
    assert_eq!(state_of(&name), "exited");
    assert_eq!(inspect(&app, &name).await["State"]["Running"], false);
    // Stopping a stopped container is fine.
    let res = app.post(&format!("/v1/containers/{name}/stop?timeout=1"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 204);

    // kill of a stopped container: the engine says 409.
    let res = app.post(&format!("/v1/containers/{name}/kill"), Role::Operator).send().await.unwrap();
    let p = assert_problem(res, 409, "conflict").await;
    assert!(p["detail"].as_str().unwrap().contains("not running"), "{p}");

    // start
    let res = app.post(&format!("/v1/containers/{name}/start"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(state_of(&name), "running");
    let second_start = inspect(&app, &name).await["State"]["StartedAt"].as_str().unwrap().to_string();
    assert_ne!(first_start, second_start);
    // Starting a running container is a no-op.
    let res = app.post(&format!("/v1/containers/{name}/start"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(inspect(&app, &name).await["State"]["StartedAt"], second_start.as_str());

    // restart
    let res = app.post(&format!("/v1/containers/{name}/restart?timeout=1"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let state = inspect(&app, &name).await["State"].clone();
    assert_eq!(state["Running"], true);
    assert_ne!(state["StartedAt"], second_start.as_str(), "restarted: {state}");

    // kill: a bad signal is refused before the engine, an unknown one by the engine.
    let res = app.post(&format!("/v1/containers/{name}/kill?signal=kill%3Brm"), Role::Operator).send().await.unwrap();
    assert_problem(res, 400, "invalid_request").await;
    let res = app.post(&format!("/v1/containers/{name}/kill?signal=SIGFOO"), Role::Operator).send().await.unwrap();
    assert_problem(res, 400, "invalid_request").await;
    assert_eq!(state_of(&name), "running");
    let res = app.post(&format!("/v1/containers/{name}/kill?signal=SIGKILL"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 204);
    docker(&["wait", &name]);
    let state = inspect(&app, &name).await["State"].clone();
    assert_eq!(state["Status"], "exited");
    assert_eq!(state["ExitCode"], 137, "SIGKILL: {state}");
}

#[actix_web::test]
async fn kill_sends_the_named_signal_and_defaults_to_sigkill() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    // A shell that exits 3 on SIGUSR1 (a trap needs the shell to wait, not exec).
    let name = unique("ctr-signal");
    run_container(&mut cleanup, &name, "trap 'exit 3' USR1; while true; do sleep 0.1; done", &[]);
    let res = app.post(&format!("/v1/containers/{name}/kill?signal=USR1"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(docker(&["wait", &name]), "3", "USR1 delivered");

    let name = unique("ctr-signal-default");
    run_container(&mut cleanup, &name, "sleep 300", &[]);
    let res = app.post(&format!("/v1/containers/{name}/kill"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(docker(&["wait", &name]), "137", "SIGKILL by default");
}

#[actix_web::test]
async fn remove_needs_force_while_running() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ctr-rm");
    let id = run_container(&mut cleanup, &name, "sleep 300", &[]);

    let res = app.delete(&format!("/v1/containers/{name}"), Role::Operator).send().await.unwrap();
    let p = assert_problem(res, 409, "conflict").await;
    assert!(p["detail"].as_str().unwrap().contains("running"), "Docker's message kept: {p}");
    assert_eq!(state_of(&name), "running", "untouched");
    let res = app.delete(&format!("/v1/containers/{name}?force=false"), Role::Operator).send().await.unwrap();
    assert_problem(res, 409, "conflict").await;

    let res = app.delete(&format!("/v1/containers/{id}?force=true&volumes=true"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert!(!container_exists(&name), "gone");
    let res = app.get(&format!("/v1/containers/{name}"), Role::Viewer).send().await.unwrap();
    assert_problem(res, 404, "container_not_found").await;

    // A stopped one needs no force.
    let name = unique("ctr-rm-exited");
    run_to_exit(&mut cleanup, &name, "true");
    let res = app.delete(&format!("/v1/containers/{name}"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert!(!container_exists(&name));
}

#[actix_web::test]
async fn logs_stream_stdout_and_stderr_then_end() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ctr-logs");
    let id = run_to_exit(&mut cleanup, &name, "echo out1; echo err1 >&2; echo out2");

    for key in [name.as_str(), id.as_str()] {
        let events = logs(&app, key, "").await;
        assert_sequenced_and_ended(&events, "exited");
        let lines = log_lines(&events);
        assert_eq!(lines.len(), 3, "{events:?}");
        let stdout: Vec<&str> = lines.iter().filter(|(s, _)| s == "stdout").map(|(_, t)| t.as_str()).collect();
        let stderr: Vec<&str> = lines.iter().filter(|(s, _)| s == "stderr").map(|(_, t)| t.as_str()).collect();
        assert_eq!(stdout, ["out1", "out2"], "{events:?}");
        assert_eq!(stderr, ["err1"], "{events:?}");
        // Each log event carries exactly stream and text.
        for (e, _, d) in &events {
            if e == "log" {
                assert_eq!(d.as_object().unwrap().len(), 2, "{d}");
            }
        }
    }
}

#[actix_web::test]
async fn logs_tail_and_timestamps() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ctr-logs-tail");
    run_to_exit(&mut cleanup, &name, "echo line1; echo line2; echo line3");

    let events = logs(&app, &name, "?tail=1").await;
    assert_sequenced_and_ended(&events, "exited");
    assert_eq!(log_lines(&events), vec![("stdout".to_string(), "line3".to_string())]);
    let events = logs(&app, &name, "?tail=2").await;
    assert_eq!(log_lines(&events).iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(), ["line2", "line3"]);
    let events = logs(&app, &name, "?tail=0").await;
    assert!(log_lines(&events).is_empty(), "{events:?}");
    assert_sequenced_and_ended(&events, "exited");
    let events = logs(&app, &name, "?tail=all").await;
    assert_eq!(log_lines(&events).len(), 3);

    let before = chrono::Utc::now() - chrono::Duration::minutes(5);
    let events = logs(&app, &name, "?timestamps=true").await;
    assert_sequenced_and_ended(&events, "exited");
    let lines = log_lines(&events);
    assert_eq!(lines.len(), 3, "{events:?}");
    for (i, (_, text)) in lines.iter().enumerate() {
        let (ts, rest) = text.split_once(' ').unwrap_or_else(|| panic!("timestamp prefix: {text:?}"));
        let ts = chrono::DateTime::parse_from_rfc3339(ts).unwrap_or_else(|e| panic!("{ts:?} is RFC 3339: {e}"));
        assert!(ts > before && ts <= chrono::Utc::now(), "{ts}");
        assert_eq!(rest, format!("line{}", i + 1));
    }
    // Without timestamps, the text is the line itself.
    let events = logs(&app, &name, "?timestamps=false").await;
    assert_eq!(log_lines(&events)[0].1, "line1");

    // since= in the future: nothing.
    let future = chrono::Utc::now().timestamp() + 3600;
    let events = logs(&app, &name, &format!("?since={future}")).await;
    assert!(log_lines(&events).is_empty(), "{events:?}");
    let events = logs(&app, &name, "?since=1h").await;
    assert_eq!(log_lines(&events).len(), 3);
}

#[actix_web::test]
async fn logs_follow_a_running_container_until_it_exits() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ctr-follow");
    run_container(&mut cleanup, &name, "for i in 1 2 3 4 5 6; do echo tick$i; sleep 0.2; done", &[]);

    let t = Instant::now();
    let events = logs(&app, &name, "?follow=true").await;
    let took = t.elapsed();
    assert_sequenced_and_ended(&events, "exited");
    let texts: Vec<String> = log_lines(&events).into_iter().map(|(_, t)| t).collect();
    let expected: Vec<String> = (1..=6).map(|i| format!("tick{i}")).collect();
    assert_eq!(texts, expected, "every line, in order, while it ran");
    assert!(took >= Duration::from_millis(400), "the stream stayed open while the container ran: {took:?}");

    // Without follow, a running container's log is a snapshot that ends at once, with `running`.
    let name = unique("ctr-nofollow");
    run_container(&mut cleanup, &name, "echo started; sleep 300", &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = logs(&app, &name, "").await;
        if !log_lines(&events).is_empty() || Instant::now() > deadline {
            assert_sequenced_and_ended(&events, "running");
            assert_eq!(log_lines(&events), vec![("stdout".into(), "started".into())]);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn follow_stream_ends_when_the_container_is_stopped() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ctr-follow-stop");
    run_container(&mut cleanup, &name, "echo hello; sleep 300", &[]);

    let res = app.get(&format!("/v1/containers/{name}/logs?follow=true"), Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let reader = tokio::spawn(read_sse(res));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!reader.is_finished(), "the stream stays open while the container runs");
    docker(&["kill", &name]);
    let events = tokio::time::timeout(Duration::from_secs(20), reader).await.expect("ends after the stop").unwrap();
    assert_sequenced_and_ended(&events, "exited");
    assert_eq!(log_lines(&events), vec![("stdout".into(), "hello".into())]);
}

#[actix_web::test]
async fn logs_of_a_missing_container_are_a_404_problem() {
    let app = spawn_app().await;
    let missing = unique("ctr-logs-missing");
    let res = app.get(&format!("/v1/containers/{missing}/logs?follow=true"), Role::Viewer).send().await.unwrap();
    assert_problem(res, 404, "container_not_found").await;
    let res = app.get(&format!("/v1/containers/{missing}/logs"), Role::Viewer).send().await.unwrap();
    assert_problem(res, 404, "container_not_found").await;
}

#[actix_web::test]
async fn logs_accept_the_access_token_query_parameter() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ctr-logs-qs");
    run_to_exit(&mut cleanup, &name, "echo via-query");
    let token = app.token(Role::Viewer);

    let res = app.client.get(app.url(&format!("/v1/containers/{name}/logs?tail=all&access_token={token}"))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let events = read_sse(res).await;
    assert_sequenced_and_ended(&events, "exited");
    assert_eq!(log_lines(&events), vec![("stdout".into(), "via-query".into())]);

    // Without either: 401; an expired/garbage query token: 401.
    let res = app.client.get(app.url(&format!("/v1/containers/{name}/logs"))).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
    let res = app.client.get(app.url(&format!("/v1/containers/{name}/logs?access_token="))).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
}

#[actix_web::test]
async fn a_viewer_cannot_change_containers() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ctr-viewer");
    run_container(&mut cleanup, &name, "sleep 300", &[]);
    for action in ["stop", "restart", "kill"] {
        let res = app.post(&format!("/v1/containers/{name}/{action}"), Role::Viewer).send().await.unwrap();
        assert_problem(res, 403, "forbidden").await;
    }
    let res = app.delete(&format!("/v1/containers/{name}?force=true"), Role::Viewer).send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;
    assert_eq!(state_of(&name), "running", "untouched");
    // But may read.
    assert_eq!(inspect(&app, &name).await["State"]["Running"], true);
    let res = app.get(&format!("/v1/containers/{name}/logs"), Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

/// A short id prefix (Docker takes any unambiguous one) never names a container here: a
/// typo, or a fuzzer, must not stop somebody's container.
#[actix_web::test]
async fn short_id_prefixes_name_no_container() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ctr-prefix");
    let id = run_container(&mut cleanup, &name, "sleep 60", &[]);
    for short in [&id[..1], &id[..6], &id[..11]] {
        let res = app.get(&format!("/v1/containers/{short}"), Role::Viewer).send().await.unwrap();
        let p = assert_problem(res, 404, "container_not_found").await;
        assert!(p["detail"].as_str().unwrap().contains("12"), "{p}");
        let res = app.post(&format!("/v1/containers/{short}/stop?timeout=1"), Role::Operator).send().await.unwrap();
        assert_problem(res, 404, "container_not_found").await;
        let res = app.delete(&format!("/v1/containers/{short}?force=true"), Role::Operator).send().await.unwrap();
        assert_problem(res, 404, "container_not_found").await;
    }
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &name]), "true", "untouched");
    let res = app.post(&format!("/v1/containers/{}/stop?timeout=1", &id[..12]), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 204, "12 characters do");
}
