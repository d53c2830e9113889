//! Stream tickets (`POST /v1/tickets`): single use, short-lived, bound to the subject and
//! to a path when given, accepted as `?ticket=` on the stream routes only, never logged.

use std::time::Duration;

use berth::auth::Role;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{Cleanup, TestApp, assert_problem, read_sse, run_container, spawn_app, spawn_app_with, unique};
use crate::jobs::{cheap_job, run_job};

/// A ticket for `token`, optionally bound to `path`; asserts 201 and the answer's shape.
async fn ticket_with(app: &TestApp, token: &str, path: Option<&str>) -> String {
    let body = match path {
        Some(p) => json!({ "path": p }),
        None => json!({}),
    };
    let res = app.client.post(app.url("/v1/tickets")).bearer_auth(token).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let v: Value = res.json().await.unwrap();
    let ticket = v["ticket"].as_str().expect("ticket").to_string();
    assert_eq!(ticket.len(), 43, "256 bits in URL-safe base64: {v}");
    let expires = chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().unwrap()).expect("RFC 3339");
    let left = expires.timestamp() - chrono::Utc::now().timestamp();
    assert!((0..=60).contains(&left), "valid at most 60 s: {v}");
    ticket
}

async fn ticket(app: &TestApp, role: Role, path: Option<&str>) -> String {
    ticket_with(app, &app.token(role), path).await
}

async fn get(app: &TestApp, path_and_query: &str) -> reqwest::Response {
    app.client.get(app.url(path_and_query)).send().await.unwrap()
}

#[actix_web::test]
async fn a_ticket_opens_one_stream_once() {
    let app = spawn_app().await;
    let t = ticket(&app, Role::Viewer, None).await;
    let res = get(&app, &format!("/v1/events?ticket={t}")).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    drop(res);
    let p = assert_problem(get(&app, &format!("/v1/events?ticket={t}")).await, 401, "unauthorized").await;
    assert!(p["detail"].as_str().unwrap().contains("already used"), "{p}");
    let p = assert_problem(get(&app, "/v1/events?ticket=not-a-ticket").await, 401, "unauthorized").await;
    assert!(p["detail"].as_str().unwrap().contains("ticket"), "{p}");
}

#[actix_web::test]
async fn a_path_bound_ticket_follows_its_job_to_the_end_and_nothing_else() {
    let app = spawn_app().await;
    let id = run_job(&app, cheap_job()).await;
    let path = format!("/v1/jobs/{id}/events");
    let t = ticket(&app, Role::Operator, Some(&path)).await;
    // Refused on another path, and spent by that refusal.
    let p = assert_problem(get(&app, &format!("/v1/events?ticket={t}")).await, 401, "unauthorized").await;
    assert!(p["detail"].as_str().unwrap().contains("another path"), "{p}");
    assert_problem(get(&app, &format!("{path}?ticket={t}")).await, 401, "unauthorized").await;

    let t = ticket(&app, Role::Operator, Some(&path)).await;
    let res = get(&app, &format!("{path}?ticket={t}")).await;
    assert_eq!(res.status(), 200);
    let events = read_sse(res).await;
    assert_eq!(events.last().map(|e| e.0.as_str()), Some("end"), "{events:?}");
    // Another subject's ticket sees the job as absent: the ticket is the subject's.
    let other = app.token_for("someone-else", Role::Operator);
    let t = ticket_with(&app, &other, Some(&path)).await;
    assert_problem(get(&app, &format!("{path}?ticket={t}")).await, 404, "job_not_found").await;

    // Only stream routes can be named, and only they take a ticket.
    let res = app.post("/v1/tickets", Role::Viewer).json(&json!({"path": format!("/v1/jobs/{id}")})).send().await.unwrap();
    assert_problem(res, 400, "invalid_request").await;
    let t = ticket(&app, Role::Operator, None).await;
    assert_problem(get(&app, &format!("/v1/jobs/{id}?ticket={t}")).await, 401, "unauthorized").await;
    let res = app.client.delete(app.url(&format!("/v1/jobs/{id}?ticket={t}"))).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
}

#[actix_web::test]
async fn an_expired_ticket_is_refused() {
    let app = spawn_app_with(|s| s.ticket_ttl = Duration::from_secs(1)).await;
    let t = ticket(&app, Role::Viewer, None).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let p = assert_problem(get(&app, &format!("/v1/events?ticket={t}")).await, 401, "unauthorized").await;
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
}

#[actix_web::test]
async fn a_ticket_grants_no_more_than_its_token() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ticket-ws");
    run_container(&mut cleanup, &name, "sleep 300", &[]);
    // A viewer's ticket on an operator route: 403, as the viewer's token would get.
    let t = ticket(&app, Role::Viewer, None).await;
    let res = crate::ws::handshake_get(&app, &format!("/v1/containers/{name}/attach?ticket={t}")).send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;
    // A ticket is no bearer token.
    let t = ticket(&app, Role::Admin, None).await;
    let res = app.client.get(app.url("/v1/events")).bearer_auth(&t).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
    let res = app.client.get(app.url("/v1/jobs")).bearer_auth(&t).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
    // Nor a metrics credential.
    let res = app.client.get(app.url(&format!("/metrics?ticket={t}"))).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
    // Without a token, no ticket.
    let res = app.client.post(app.url("/v1/tickets")).json(&json!({})).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
    let res = app.post("/v1/tickets", Role::Viewer).json(&json!({"paths": "/v1/events"})).send().await.unwrap();
    assert_problem(res, 400, "invalid_request").await;
}

#[actix_web::test]
async fn an_operator_ticket_opens_an_exec_websocket() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ticket-exec");
    run_container(&mut cleanup, &name, "sleep 300", &[]);
    let res = app
        .post(&format!("/v1/containers/{name}/exec"), Role::Operator)
        .json(&json!({"cmd": ["echo", "via ticket"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/exec/{id}/ws");
    let t = ticket(&app, Role::Operator, Some(&path)).await;
    let url = format!("ws://127.0.0.1:{}{path}?ticket={t}", app.port);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("handshake with a ticket");
    let mut stdout = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        match msg {
            tokio_tungstenite::tungstenite::Message::Binary(b) if b.first() == Some(&1) => stdout.extend_from_slice(&b[1..]),
            tokio_tungstenite::tungstenite::Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(String::from_utf8_lossy(&stdout), "via ticket\n");
    let again = tokio_tungstenite::connect_async(url.as_str()).await;
    assert!(again.is_err(), "a used ticket opens no second session");
}

#[actix_web::test]
async fn one_subject_holds_at_most_64_unused_tickets() {
    let app = spawn_app().await;
    let token = app.token_for(&unique("hoarder"), Role::Viewer);
    for _ in 0..64 {
        ticket_with(&app, &token, None).await;
    }
    let res = app.client.post(app.url("/v1/tickets")).bearer_auth(&token).json(&json!({})).send().await.unwrap();
    assert!(res.headers().get("retry-after").is_some(), "Retry-After");
    assert_problem(res, 429, "too_many_tickets").await;
    ticket(&app, Role::Viewer, None).await;
}

/// The real binary, logging at debug level: the ticket appears in no log line and in no
/// audit record, used or refused.
#[actix_web::test]
async fn tickets_are_never_logged_nor_audited() {
    let data_dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("berth.log");
    let env = [("RUST_LOG", "debug".to_string())];
    let mut berth = crate::jobs_queue::Berth::spawn_with(data_dir.path(), log.clone(), &env);
    let client = reqwest::Client::new();
    berth.wait_healthy(&client).await;
    let jwt = crate::helpers::test_settings(data_dir.path()).jwt;
    let admin = berth::auth::mint_token(&jwt, "test-admin", &[Role::Admin], Duration::from_secs(600)).unwrap();

    let issue = client.post(berth.url("/v1/tickets")).bearer_auth(&admin).json(&json!({"path": "/v1/events"}));
    let t = issue.send().await.unwrap().json::<Value>().await.unwrap()["ticket"].as_str().unwrap().to_string();
    let res = client.get(berth.url(&format!("/v1/events?ticket={t}"))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    drop(res);
    let res = client.get(berth.url(&format!("/v1/events?ticket={t}"))).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let audit = client.get(berth.url("/v1/audit?limit=1000")).bearer_auth(&admin).send().await.unwrap();
    let audit = audit.text().await.unwrap();
    assert!(audit.contains("/v1/tickets") && audit.contains("denied"), "the issue and the refusal are audited: {audit}");
    assert!(!audit.contains(&t), "the ticket is in no audit record: {audit}");
    berth.terminate(Duration::from_secs(20));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("request served") && text.contains("/v1/events"), "the log was captured: {text}");
    assert!(!text.contains(&t), "the ticket is in no log line");
}
