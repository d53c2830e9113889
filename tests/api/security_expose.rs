//! What a token can read or hold beyond its share, performed against the real engine
//! (issue 9, findings 1, 6, 7, 10 and 12): secrets in inspect documents, a full disk,
//! event streams and sessions per subject, browser origins, stop timeouts, and the
//! audit log's size.

use std::time::{Duration, Instant};

use berth::auth::Role;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{BASE_IMAGE, Cleanup, TestApp, assert_problem, docker, run_container, spawn_app, spawn_app_with, unique};
use crate::jobs::tar_of;
use crate::ws::handshake_get;

/// `GET path` as `token`.
async fn get_as(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client.get(app.url(path)).bearer_auth(token).send().await.unwrap()
}

/// Poll `open` until it answers `status`; panics after 20 s.
async fn eventually(what: &str, status: u16, open: impl AsyncFn() -> reqwest::Response) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = open().await;
        if res.status() == status {
            return res;
        }
        assert!(Instant::now() < deadline, "{what}: still {} after 20 s", res.status());
        drop(res);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn a_viewer_reads_no_environment_value_from_an_inspect_document() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("expose-env");
    let secret = format!("jwt-{}", uuid::Uuid::new_v4().simple());
    cleanup.container(&name);
    // As the shipped compose file once did: the JWT key in a container's environment.
    let env = format!("BERTH_JWT_SECRET={secret}");
    docker(&["run", "-d", "--name", &name, "-e", &env, BASE_IMAGE, "sleep", "300"]);
    let image = format!("{name}:1");
    cleanup.image(&image);
    let image_secret = format!("key-{}", uuid::Uuid::new_v4().simple());
    docker(&["commit", "--change", &format!("ENV API_KEY={image_secret}"), &name, &image]);

    for role in [Role::Viewer, Role::Operator] {
        let res = app.get(&format!("/v1/containers/{name}"), role).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        assert!(!text.contains(&secret), "{role} reads the secret: {text}");
        let doc: Value = serde_json::from_str(&text).unwrap();
        let env: Vec<&str> = doc["Config"]["Env"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
        assert!(env.contains(&"BERTH_JWT_SECRET=<redacted>"), "{role} sees the key: {env:?}");
        assert!(env.iter().all(|e| e.ends_with("=<redacted>") || !e.contains('=')), "{env:?}");

        let res = app.get(&format!("/v1/images/{image}"), role).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let text = res.text().await.unwrap();
        assert!(!text.contains(&image_secret) && !text.contains(&secret), "{role} reads the image's secret: {text}");
        assert!(text.contains("API_KEY=<redacted>"), "{text}");
    }
    // Admins see the values.
    let doc: Value = app.get(&format!("/v1/containers/{name}"), Role::Admin).send().await.unwrap().json().await.unwrap();
    assert!(doc["Config"]["Env"].as_array().unwrap().contains(&json!(env)), "{doc}");
    let doc: Value = app.get(&format!("/v1/images/{image}"), Role::Admin).send().await.unwrap().json().await.unwrap();
    assert!(doc["Config"]["Env"].as_array().unwrap().contains(&json!(format!("API_KEY={image_secret}"))), "{doc}");
}

#[actix_web::test]
async fn below_the_free_space_floor_submits_and_uploads_answer_507() {
    let app = spawn_app_with(|s| s.bounds.min_free_bytes = u64::MAX / 2).await;
    let body = json!({"image": "127.0.0.1:5000/berth-test/never-pulled:1"});
    let res = app.post("/v1/images/pull", Role::Operator).json(&body).send().await.unwrap();
    let p = assert_problem(res, 507, "insufficient_storage").await;
    assert!(p["detail"].as_str().unwrap().contains("BERTH_MIN_FREE_BYTES"), "{p}");
    let ctx = tar_of(&[("Dockerfile", format!("FROM {BASE_IMAGE}\n").as_bytes())]);
    let res = app
        .post("/v1/images/build", Role::Operator)
        .query(&[("tag", &format!("{}:1", unique("never-built")))])
        .header("content-type", "application/x-tar")
        .body(ctx)
        .send()
        .await
        .unwrap();
    assert_problem(res, 507, "insufficient_storage").await;
    let res = app.post("/v1/containers", Role::Operator).json(&json!({"image": BASE_IMAGE, "cmd": ["true"]})).send().await.unwrap();
    assert_problem(res, 507, "insufficient_storage").await;

    // Nothing queued, nothing spooled.
    let page: Value = app.get("/v1/jobs", Role::Admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["items"], json!([]), "{page}");
    let spool: Vec<_> = std::fs::read_dir(app.data_dir.path().join("contexts")).unwrap().collect();
    assert!(spool.is_empty(), "{spool:?}");
}

#[actix_web::test]
async fn event_streams_per_subject_are_bounded_and_come_back() {
    let app = spawn_app_with(|s| s.bounds.max_streams_per_subject = 2).await;
    let mut cleanup = Cleanup::default();
    let done = unique("streams-done");
    run_container(&mut cleanup, &done, "echo bye", &[]);
    let hog = app.token_for(&unique("hog"), Role::Viewer);
    let other = app.token_for(&unique("other"), Role::Viewer);

    let first = get_as(&app, "/v1/events", &hog).await;
    let second = get_as(&app, "/v1/events", &hog).await;
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    // Every SSE route is counted, before the engine or the store is asked: a container
    // or job that does not exist is 429 too, not 404.
    for path in ["/v1/events", "/v1/containers/berth-test-no-such-ctr/logs?follow=true", "/v1/jobs/NOSUCHJOB/events"] {
        let res = get_as(&app, path, &hog).await;
        assert!(res.headers().get("retry-after").is_some(), "{path}: Retry-After");
        let p = assert_problem(res, 429, "too_many_streams").await;
        assert!(p["detail"].as_str().unwrap().contains("BERTH_MAX_STREAMS_PER_SUBJECT"), "{p}");
    }
    // Another subject has its own share.
    let theirs = get_as(&app, "/v1/events", &other).await;
    assert_eq!(theirs.status(), 200);

    // A client that goes away gives its slot back...
    drop(second);
    let third = eventually("a slot back after the client left", 200, async || get_as(&app, "/v1/events", &hog).await).await;
    drop(third);
    // ...and so does a stream that ends by itself (a log without follow).
    let logs = eventually("a log stream", 200, async || get_as(&app, &format!("/v1/containers/{done}/logs"), &hog).await).await;
    let events = crate::helpers::read_sse(logs).await;
    assert_eq!(events.last().map(|e| e.0.as_str()), Some("end"), "{events:?}");
    let again = eventually("a slot back after the stream ended", 200, async || get_as(&app, "/v1/events", &hog).await).await;
    let res = get_as(&app, "/v1/events", &hog).await;
    assert_problem(res, 429, "too_many_streams").await;
    drop((first, again, theirs));
}

/// Open a WebSocket on `path` with `token`; panics unless the answer is 101.
async fn open_session(app: &TestApp, path: &str, token: &str) -> impl Sized {
    let mut req = format!("ws://127.0.0.1:{}{}", app.port, path).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, res) = tokio_tungstenite::connect_async(req).await.expect("the upgrade");
    assert_eq!(res.status(), 101);
    ws
}

#[actix_web::test]
async fn websocket_sessions_per_subject_are_bounded() {
    let app = spawn_app_with(|s| s.bounds.ws_max_sessions_per_subject = 1).await;
    let mut cleanup = Cleanup::default();
    let name = unique("ws-per-subject");
    run_container(&mut cleanup, &name, "sleep 300", &[]);
    let attach = format!("/v1/containers/{name}/attach");
    let hog = app.token_for(&unique("hog"), Role::Operator);
    let other = app.token_for(&unique("other"), Role::Operator);

    let held = open_session(&app, &attach, &hog).await;
    let res = handshake_get(&app, &attach).bearer_auth(&hog).send().await.unwrap();
    assert!(res.headers().get("retry-after").is_some(), "Retry-After");
    let p = assert_problem(res, 429, "too_many_sessions").await;
    assert!(p["detail"].as_str().unwrap().contains("BERTH_WS_MAX_SESSIONS_PER_SUBJECT"), "{p}");
    // The server has room for another subject.
    let theirs = open_session(&app, &attach, &other).await;
    drop(held);
    let res = eventually("the session slot back", 101, async || handshake_get(&app, &attach).bearer_auth(&hog).send().await.unwrap()).await;
    drop((res, theirs));
}

#[actix_web::test]
async fn a_page_on_a_foreign_origin_cannot_open_a_session() {
    let app = spawn_app_with(|s| s.cors_origins = vec!["http://console.example".into()]).await;
    let mut cleanup = Cleanup::default();
    let name = unique("ws-origin");
    run_container(&mut cleanup, &name, "sleep 300", &[]);
    let attach = format!("/v1/containers/{name}/attach");
    let res = app.post(&format!("/v1/containers/{name}/exec"), Role::Operator).json(&json!({"cmd": ["true"]})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let exec: Value = res.json().await.unwrap();
    let exec = format!("/v1/exec/{}/ws", exec["id"].as_str().unwrap());
    let token = app.token(Role::Operator);

    // A browser on evil.example with the operator's token in hand.
    for path in [&attach, &exec] {
        let res = handshake_get(&app, path).bearer_auth(&token).header("origin", "http://evil.example").send().await.unwrap();
        let p = assert_problem(res, 403, "forbidden").await;
        assert!(p["detail"].as_str().unwrap().contains("BERTH_CORS_ORIGINS"), "{p}");
    }
    // The service's own origin and a listed one may; the refused exec is still startable.
    let own = format!("http://127.0.0.1:{}", app.port);
    let res = handshake_get(&app, &attach).bearer_auth(&token).header("origin", &own).send().await.unwrap();
    assert_eq!(res.status(), 101);
    drop(res);
    let res = handshake_get(&app, &exec).bearer_auth(&token).header("origin", "http://console.example").send().await.unwrap();
    assert_eq!(res.status(), 101);
}

#[actix_web::test]
async fn a_stop_or_restart_may_not_hold_a_request_past_300_seconds() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("stop-timeout");
    // Ends at once on SIGTERM: without the bound the stop would succeed quickly.
    run_container(&mut cleanup, &name, "trap 'exit 0' TERM; while true; do sleep 1; done", &[]);
    let started = docker(&["container", "inspect", "-f", "{{.State.StartedAt}}", &name]);
    for path in [format!("/v1/containers/{name}/stop?timeout=301"), format!("/v1/containers/{name}/restart?timeout=3600")] {
        let res = app.post(&path, Role::Operator).send().await.unwrap();
        let p = assert_problem(res, 400, "invalid_request").await;
        assert!(p["detail"].as_str().unwrap().contains("300"), "{p}");
    }
    let now = docker(&["container", "inspect", "-f", "{{.State.Running}} {{.State.StartedAt}}", &name]);
    assert_eq!(now, format!("true {started}"), "neither stopped nor restarted");
    let t = Instant::now();
    let res = app.post(&format!("/v1/containers/{name}/stop?timeout=300"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert!(t.elapsed() < Duration::from_secs(60), "the container stopped on SIGTERM");
}

/// The audit records of an action, as an admin reads them.
async fn audit_of(app: &TestApp, query: &str) -> Vec<Value> {
    let res = app.get(&format!("/v1/audit?limit=1000&{query}"), Role::Admin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let page: Value = res.json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

#[actix_web::test]
async fn one_request_cannot_make_a_large_audit_record() {
    let app = spawn_app().await;
    // A 1 MB `source`, refused as a reference.
    let body = json!({"source": "a".repeat(1_000_000), "target": "x"});
    let res = app.post("/v1/images/tag", Role::Operator).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 400);
    // A 4000-byte path parameter, refused as a container name.
    let res = app.delete(&format!("/v1/containers/{}", "b".repeat(4000)), Role::Operator).send().await.unwrap();
    assert_problem(res, 400, "invalid_request").await;

    let records = audit_of(&app, "subject=test-operator").await;
    assert_eq!(records.len(), 2, "{records:?}");
    for rec in &records {
        let size = rec.to_string().len();
        assert!(size < 4096, "an audit record of {size} bytes");
        let target = rec["target"].as_str().unwrap_or("");
        assert!(target.len() <= 1024, "a target of {} bytes", target.len());
    }
    let delete = records.iter().find(|r| r["action"] == "DELETE /v1/containers/{id}").expect("the delete's record");
    assert!(delete["target"].as_str().unwrap().starts_with("id=bbbb"), "the target is cut, not dropped: {delete}");
}

#[actix_web::test]
async fn refusals_of_one_subject_stop_being_stored_past_a_budget() {
    let app = spawn_app().await;
    let (flooder, other) = (unique("flooder"), unique("bystander"));
    let flood = app.token_for(&flooder, Role::Viewer);
    for _ in 0..80 {
        let res = app.client.post(app.url("/v1/containers/flood/stop")).bearer_auth(&flood).send().await.unwrap();
        assert_eq!(res.status(), 403);
    }
    let theirs = app.token_for(&other, Role::Viewer);
    for _ in 0..5 {
        let res = app.client.post(app.url("/v1/containers/flood/stop")).bearer_auth(&theirs).send().await.unwrap();
        assert_eq!(res.status(), 403);
    }
    let stored = audit_of(&app, &format!("subject={flooder}")).await.len();
    assert!((40..80).contains(&stored), "{stored} of 80 refusals stored: past the budget they are counted, not stored");
    assert_eq!(audit_of(&app, &format!("subject={other}")).await.len(), 5, "another subject's refusals are stored");
}
