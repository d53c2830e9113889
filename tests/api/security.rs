//! Attacks from the lowest tokens, performed against the real engine: each one was
//! possible before its fix and is refused now (issue 9).

use std::time::Duration;

use berth::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{BASE_IMAGE, Cleanup, TEST_SECRET, assert_problem, docker, spawn_app, spawn_app_with, unique};

/// Write a row into the job store behind the API's back, as someone who mounted
/// Berth's data volume into a container could.
fn plant_row(data_dir: &std::path::Path, id: &str, kind: &str, state: &str, request: &Value, spool: Option<&str>) {
    let conn = rusqlite::Connection::open(data_dir.join("berth.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute(
        "INSERT INTO jobs (id, kind, state, owner, created_at, request, progress, spool, authority, seal)
         VALUES (?1, ?2, ?3, 'test-operator', '2026-12-01T00:00:00.000Z', ?4,
                 '{\"phase\":\"queued\",\"current\":null,\"total\":null,\"percent\":null,\"layers_done\":0,\"layers_total\":0,\"message\":null}',
                 ?5, 'admin', 'c0ffee')",
        rusqlite::params![id, kind, state, request.to_string(), spool],
    )
    .unwrap();
    conn.execute("INSERT INTO job_events (job_id, seq, event, data) VALUES (?1, 1, 'state', '{\"state\":\"queued\"}')", [id])
        .unwrap();
}

#[actix_web::test]
async fn a_job_row_planted_in_the_data_dir_is_never_run() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("planted");
    cleanup.container(&name);
    // A queued run with the host's root mounted, claiming admin authority; its id sorts
    // before any the service makes, so the next claim takes it first.
    let forged = json!({"image": BASE_IMAGE, "name": name, "cmd": ["sh", "-c", "ls /host"], "binds": ["/:/host"], "privileged": true});
    plant_row(app.data_dir.path(), "00000000000000000000PLANTED", "run", "queued", &forged, None);
    // Any run wakes the run dispatcher.
    let res = app.post("/v1/containers", Role::Operator).json(&json!({"image": BASE_IMAGE, "cmd": ["true"], "auto_remove": true})).send().await.unwrap();
    assert_eq!(res.status(), 202);
    let job = app.wait_for_job("00000000000000000000PLANTED", Role::Admin).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "forbidden", "{job}");
    assert!(job["error"]["message"].as_str().unwrap().contains("seal"), "{job}");
    let made = docker(&["ps", "-a", "-q", "--filter", &format!("name=^/{name}$")]);
    assert!(made.is_empty(), "the planted run created no container");
}

#[actix_web::test]
async fn a_planted_spool_path_deletes_nothing_outside_the_spool_dir() {
    let app = spawn_app().await;
    let victim = tempfile::NamedTempFile::new().unwrap();
    let path = victim.path().to_str().unwrap().to_string();
    plant_row(app.data_dir.path(), "00000000000000000000SPOOLED", "build", "succeeded", &json!({"tags": []}), Some(&path));
    let res = app.delete("/v1/jobs/00000000000000000000SPOOLED", Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert!(victim.path().exists(), "DELETE /v1/jobs/{{id}} left {path} alone");
}

#[actix_web::test]
async fn a_token_valid_until_the_end_of_time_does_not_crash_a_worker() {
    let app = spawn_app().await;
    let claims = json!({"sub": "forever", "roles": ["viewer"], "exp": u64::MAX - 10, "iat": 0});
    let key = jsonwebtoken::EncodingKey::from_secret(TEST_SECRET.as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let res = app.client.get(app.url("/v1/events")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200, "the stream opens");
    drop(res);
    // The same worker still serves.
    for _ in 0..4 {
        let res = app.client.get(app.url("/v1/jobs")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
}

#[actix_web::test]
async fn error_bodies_never_echo_a_numeric_password() {
    let app = spawn_app().await;
    let body = json!({"image": "127.0.0.1:5001/x:1", "credentials": {"username": "u", "password": 934712}});
    let res = app.post("/v1/images/pull", Role::Operator).json(&body).send().await.unwrap();
    let problem = assert_problem(res, 400, "invalid_request").await;
    assert!(!problem.to_string().contains("934712"), "{problem}");
    let body = json!({"image": BASE_IMAGE, "pull": "hunter2-as-enum"});
    let res = app.post("/v1/containers", Role::Operator).json(&body).send().await.unwrap();
    let problem = assert_problem(res, 400, "invalid_request").await;
    assert!(!problem.to_string().contains("hunter2"), "{problem}");
}

#[actix_web::test]
async fn job_views_never_show_environment_values() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("env-view");
    cleanup.container(&name);
    let body = json!({"image": BASE_IMAGE, "name": name, "cmd": ["true"], "env": ["DB_PASSWORD=s3cr3t-value"]});
    let res = app.post("/v1/containers", Role::Operator).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let done = app.wait_for_job(&id, Role::Operator).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let list: Value = app.get("/v1/jobs", Role::Operator).send().await.unwrap().json().await.unwrap();
    for view in [&job, &done, &list] {
        assert!(!view.to_string().contains("s3cr3t-value"), "{view}");
    }
    assert_eq!(done["request"]["env"], json!(["DB_PASSWORD=<redacted>"]));
    // The value did reach the container.
    let env = docker(&["inspect", "-f", "{{json .Config.Env}}", &name]);
    assert!(env.contains("DB_PASSWORD=s3cr3t-value"), "{env}");
}

#[actix_web::test]
async fn an_exact_64_kib_line_without_newline_ends_the_run_cleanly() {
    let app = spawn_app().await;
    let name = unique("line64k");
    let mut cleanup = Cleanup::default();
    cleanup.container(&name);
    let cmd = "head -c 65536 /dev/zero | tr '\\0' a; sleep 1";
    let body = json!({"image": BASE_IMAGE, "name": name, "cmd": ["sh", "-c", cmd], "detach": false, "auto_remove": true});
    let res = app.post("/v1/containers", Role::Operator).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let job = app.wait_for_job(&id, Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["exit_code"], 0);
    let left = docker(&["ps", "-a", "-q", "--filter", &format!("name=^/{name}$")]);
    assert!(left.is_empty(), "auto_remove removed the container");
}

#[actix_web::test]
async fn a_job_request_over_the_bound_is_413_and_queues_nothing() {
    let app = spawn_app_with(|s| s.bounds.job_request_max = 16 * 1024).await;
    let big = "x".repeat(20 * 1024);
    let body = json!({"image": BASE_IMAGE, "cmd": ["true"], "env": [format!("BIG={big}")]});
    let res = app.post("/v1/containers", Role::Operator).json(&body).send().await.unwrap();
    let problem = assert_problem(res, 413, "payload_too_large").await;
    assert!(problem["detail"].as_str().unwrap().contains("BERTH_JOB_REQUEST_MAX"), "{problem}");
    let list: Value = app.get("/v1/jobs", Role::Operator).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
}

#[actix_web::test]
async fn log_bytes_per_job_are_bounded() {
    let app = spawn_app_with(|s| s.bounds.job_log_bytes_max = 4096).await;
    let name = unique("logbytes");
    let mut cleanup = Cleanup::default();
    cleanup.container(&name);
    // 200 lines of 100 bytes: 20 000 bytes of output, well under the event cap.
    let cmd = "i=0; while [ $i -lt 200 ]; do head -c 99 /dev/zero | tr '\\0' b; echo; i=$((i+1)); done";
    let body = json!({"image": BASE_IMAGE, "name": name, "cmd": ["sh", "-c", cmd], "detach": false, "auto_remove": true});
    let res = app.post("/v1/containers", Role::Operator).json(&body).send().await.unwrap();
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let job = app.wait_for_job(&id, Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let events = app.job_events(&id, Role::Operator).await;
    let logs: Vec<&Value> = events.iter().filter(|(e, _, _)| e == "log").map(|(_, _, d)| d).collect();
    let output = logs.iter().filter(|d| d["truncated"].is_null() && !d["text"].as_str().unwrap().starts_with("[berth]"));
    let stored: usize = output.map(|d| d["text"].as_str().unwrap().len()).sum();
    assert!(stored <= 4096 && stored > 3000, "{stored} bytes of log kept");
    let notice = logs.iter().find(|d| d["truncated"] == true).expect("a truncation notice");
    assert!(notice["text"].as_str().unwrap().contains("BERTH_JOB_LOG_BYTES_MAX"), "{notice}");
}
