//! The queue itself: cancel, the queue bound, the log cap, and restarts (graceful and kill -9).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::auth::{Role, mint_token};
use serde_json::{Value, json};

use crate::helpers::{Cleanup, TEST_SECRET, TestApp, assert_problem, docker, read_sse, spawn_app, spawn_app_with, start, unique};
use crate::jobs::{
    assert_sequenced_and_ended, attached, cheap_job, container_exists, get_job, log_texts, run_job, states,
    wait_container_started, wait_until,
};

fn container_state(name: &str) -> String {
    docker(&["container", "inspect", "-f", "{{.State.Status}}", name])
}

async fn cancel(app: &TestApp, id: &str, role: Role) -> reqwest::Response {
    app.post(&format!("/v1/jobs/{id}/cancel"), role).send().await.unwrap()
}

#[actix_web::test]
async fn cancel_ends_a_queued_job_at_once_and_stops_a_running_one() {
    let app = spawn_app_with(|s| s.concurrency.run = 1).await;
    let mut cleanup = Cleanup::default();
    let (busy, waiting) = (unique("cancel-busy"), unique("cancel-queued"));
    let busy_id = run_job(&app, attached(&mut cleanup, &busy, "sleep 30")).await;
    wait_container_started(&app, &busy_id).await;
    let queued_id = run_job(&app, attached(&mut cleanup, &waiting, "echo should-not-run")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get_job(&app, &queued_id).await["state"], "queued", "one run at a time");

    // Who may cancel.
    assert_problem(cancel(&app, &queued_id, Role::Viewer).await, 403, "forbidden").await;
    let stranger = app.token_for(&unique("stranger"), Role::Operator);
    let res = app.client.post(app.url(&format!("/v1/jobs/{queued_id}/cancel"))).bearer_auth(&stranger).send().await.unwrap();
    assert_problem(res, 404, "job_not_found").await;

    // A queued job ends at once.
    let t = Instant::now();
    let res = cancel(&app, &queued_id, Role::Operator).await;
    assert_eq!(res.status(), 200);
    let job: Value = res.json().await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(job["state"], "canceled", "{job}");
    assert!(job["started_at"].is_null(), "it never started: {job}");
    assert!(job["finished_at"].is_string(), "{job}");
    assert!(job["error"].is_null(), "{job}");
    let events = app.job_events(&queued_id, Role::Operator).await;
    assert_sequenced_and_ended(&events, "canceled");
    assert_eq!(states(&events), ["queued", "canceled"]);
    assert_problem(cancel(&app, &queued_id, Role::Operator).await, 409, "conflict").await;

    // A running one stops its container within seconds.
    let t = Instant::now();
    let res = cancel(&app, &busy_id, Role::Operator).await;
    assert_eq!(res.status(), 200);
    let job: Value = res.json().await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(job["state"], "canceled", "the answer is the job after the cancel: {job}");
    assert!(job["started_at"].is_string());
    assert_eq!(container_state(&busy), "exited", "the container was stopped");
    let events = app.job_events(&busy_id, Role::Operator).await;
    assert_sequenced_and_ended(&events, "canceled");
    assert_eq!(states(&events), ["queued", "running", "canceled"]);
    assert_problem(cancel(&app, &busy_id, Role::Operator).await, 409, "conflict").await;

    // The freed slot does not run the canceled job.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get_job(&app, &queued_id).await["state"], "canceled");
    assert!(!container_exists(&waiting), "the canceled job made no container");
}

#[actix_web::test]
async fn admin_cancels_a_running_auto_remove_run_and_its_container_goes() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("cancel-rm");
    let mut body = attached(&mut cleanup, &name, "echo started; sleep 30");
    body["auto_remove"] = json!(true);
    let id = run_job(&app, body).await;
    wait_container_started(&app, &id).await;
    assert!(container_exists(&name));
    let t = Instant::now();
    let res = cancel(&app, &id, Role::Admin).await;
    assert_eq!(res.status(), 200, "admin cancels another owner's job");
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["state"], "canceled", "{job}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(!container_exists(&name), "auto_remove: the stopped container is removed");
    let events = app.job_events(&id, Role::Operator).await;
    assert_sequenced_and_ended(&events, "canceled");
    assert!(log_texts(&events, "stdout").contains(&"started".to_string()), "output before the cancel is kept");
}

#[actix_web::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let app = spawn_app_with(|s| {
        s.queue_capacity = 1;
        s.concurrency.run = 1;
    })
    .await;
    let mut cleanup = Cleanup::default();
    let busy = unique("full-busy");
    let busy_id = run_job(&app, attached(&mut cleanup, &busy, "sleep 30")).await;
    wait_until(&app, &busy_id, Duration::from_secs(30), "running", |j| j["state"] == "running").await;
    let queued_id = run_job(&app, cheap_job()).await;

    let res = app.post("/v1/containers", Role::Operator).json(&cheap_job()).send().await.unwrap();
    let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    assert_problem(res, 429, "queue_full").await;
    let retry = retry.expect("a Retry-After header");
    assert!(retry.parse::<u64>().is_ok_and(|s| s > 0), "Retry-After is seconds: {retry}");
    // Every kind shares the bound, the build route included.
    let res = app.post("/v1/images/pull", Role::Operator).json(&json!({"image": "127.0.0.1:5000/x/y:1"})).send().await.unwrap();
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 429, "queue_full").await;
    let res = app
        .post("/v1/images/build", Role::Operator)
        .header("content-type", "application/x-tar")
        .body(crate::jobs::tar_of(&[("Dockerfile", b"FROM scratch\n")]))
        .send()
        .await
        .unwrap();
    assert_problem(res, 429, "queue_full").await;
    assert_eq!(std::fs::read_dir(app.data_dir.path().join("contexts")).unwrap().count(), 0, "no context spooled");

    // Room again once the queued job is gone.
    assert_eq!(cancel(&app, &queued_id, Role::Operator).await.status(), 200);
    let again = run_job(&app, cheap_job()).await;
    assert_eq!(cancel(&app, &again, Role::Operator).await.status(), 200);
    assert_eq!(cancel(&app, &busy_id, Role::Operator).await.status(), 200);
    let page: Value = app.get("/v1/jobs", Role::Operator).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 3, "the refused requests made no job: {page}");
}

#[actix_web::test]
async fn log_events_are_capped_with_one_notice() {
    let app = spawn_app_with(|s| s.job_log_events_max = 5).await;
    let mut cleanup = Cleanup::default();
    let name = unique("log-cap");
    let script = "i=1; while [ $i -le 20 ]; do echo line-$i; i=$((i+1)); done";
    let id = run_job(&app, attached(&mut cleanup, &name, script)).await;
    let job = app.wait_for_job(&id, Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["exit_code"], 0);
    let dropped = job["result"]["log_events_dropped"].as_u64().unwrap_or_else(|| panic!("{job}"));
    assert!(dropped > 0, "{job}");
    assert_eq!(dropped, 15, "20 lines, 5 stored: {job}");

    let events = app.job_events(&id, Role::Operator).await;
    assert_sequenced_and_ended(&events, "succeeded");
    let logs: Vec<&Value> = events.iter().filter(|(e, _, _)| e == "log").map(|(_, _, d)| d).collect();
    let output: Vec<&str> = logs
        .iter()
        .map(|d| d["text"].as_str().unwrap())
        .filter(|t| t.starts_with("line-"))
        .collect();
    assert_eq!(output, ["line-1", "line-2", "line-3", "line-4", "line-5"], "{logs:?}");
    let notices: Vec<&&Value> = logs.iter().filter(|d| d["text"].as_str().unwrap().contains("truncated")).collect();
    assert_eq!(notices.len(), 1, "one notice: {logs:?}");
    assert_eq!(notices[0]["truncated"], true);
    let others = logs.len() - output.len() - notices.len();
    assert!(others <= 1, "only Berth's own `created` line besides: {logs:?}");
}

// ---- restarts ------------------------------------------------------------------------------

#[actix_web::test]
async fn graceful_stop_interrupts_running_jobs_and_queued_ones_run_after_a_restart() {
    let app = spawn_app_with(|s| {
        s.shutdown_grace = Duration::from_secs(1);
        s.concurrency.run = 1;
    })
    .await;
    let mut cleanup = Cleanup::default();
    let (busy, after) = (unique("restart-busy"), unique("restart-after"));
    let busy_id = run_job(&app, attached(&mut cleanup, &busy, "sleep 30")).await;
    wait_container_started(&app, &busy_id).await;
    let after_id = run_job(&app, attached(&mut cleanup, &after, "echo after-restart")).await;
    assert_eq!(get_job(&app, &after_id).await["state"], "queued");

    let t = Instant::now();
    app.handle.stop().await;
    assert!(t.elapsed() < Duration::from_secs(20), "stop took {:?}", t.elapsed());
    let old = app.url("/healthz");
    assert!(app.client.get(&old).send().await.is_err(), "the old server is gone");
    let TestApp { settings, data_dir, .. } = app;

    let app = start(settings, data_dir).await;
    let job = get_job(&app, &busy_id).await;
    assert_eq!(job["state"], "interrupted", "{job}");
    assert_eq!(job["error"]["code"], "interrupted", "{job}");
    assert!(job["finished_at"].is_string(), "{job}");
    let events = app.job_events(&busy_id, Role::Operator).await;
    assert_sequenced_and_ended(&events, "interrupted");
    assert_eq!(states(&events), ["queued", "running", "interrupted"]);
    let (_, _, err) = events.iter().find(|(e, _, _)| e == "error").expect("an error event");
    assert_eq!(err["code"], "interrupted");
    assert_ne!(container_state(&busy), "running", "the interrupted run's container was stopped");

    let job = app.wait_for_job(&after_id, Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "the queued job ran on the new app: {job}");
    assert_eq!(job["result"]["exit_code"], 0);
    let events = app.job_events(&after_id, Role::Operator).await;
    assert!(log_texts(&events, "stdout").contains(&"after-restart".to_string()), "{events:?}");
}

/// The real binary as a child process; killed (SIGKILL) when dropped.
pub(crate) struct Berth {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Berth {
    pub(crate) fn spawn(data_dir: &std::path::Path, log: std::path::PathBuf) -> Self {
        Self::spawn_with(data_dir, log, &[])
    }

    pub(crate) fn spawn_with(data_dir: &std::path::Path, log: std::path::PathBuf, env: &[(&str, String)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("BERTH_JWT_SECRET", TEST_SECRET)
            .env("BERTH_DATA_DIR", data_dir)
            .env("BERTH_LISTEN", format!("127.0.0.1:{port}"))
            .env("BERTH_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("the berth binary starts");
        Self { child, port, log }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) async fn wait_healthy(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(res) = client.get(self.url("/healthz")).send().await {
                if res.status() == 200 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("berth exited ({status}): {}", std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "berth not healthy: {}", std::fs::read_to_string(&self.log).unwrap_or_default());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, as an orchestrator stops a service; the exit status.
    pub(crate) fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "berth did not exit within {within:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A data dir and a log dir for runs of the real binary, an operator token it accepts,
/// and a client.
fn binary_fixture() -> (tempfile::TempDir, tempfile::TempDir, String, reqwest::Client) {
    let data_dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let jwt = crate::helpers::test_settings(data_dir.path()).jwt;
    let token = mint_token(&jwt, "test-operator", &[Role::Operator], Duration::from_secs(3600)).unwrap();
    (data_dir, logs, token, reqwest::Client::new())
}

#[actix_web::test]
async fn after_kill_9_a_running_job_is_interrupted() {
    let (data_dir, logs, token, client) = binary_fixture();
    let mut cleanup = Cleanup::default();
    let name = unique("kill9");

    let mut first = Berth::spawn(data_dir.path(), logs.path().join("first.log"));
    first.wait_healthy(&client).await;
    let res = client
        .post(first.url("/v1/containers"))
        .bearer_auth(&token)
        .json(&attached(&mut cleanup, &name, "sleep 60"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let get = |base: String| {
        let (client, token, id) = (client.clone(), token.clone(), id.clone());
        async move {
            let res = client.get(format!("{base}/v1/jobs/{id}")).bearer_auth(&token).send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job = get(first.url("")).await;
        if job["state"] == "running" && job["progress"]["phase"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "not running: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(container_state(&name), "running");

    first.kill();
    assert!(client.get(first.url("/healthz")).send().await.is_err(), "the first process is gone");

    let mut second = Berth::spawn(data_dir.path(), logs.path().join("second.log"));
    second.wait_healthy(&client).await;
    let job = get(second.url("")).await;
    assert_eq!(job["state"], "interrupted", "{job}");
    assert_eq!(job["error"]["code"], "interrupted", "{job}");
    assert!(job["finished_at"].is_string(), "{job}");
    let res = client.get(second.url(&format!("/v1/jobs/{id}/events"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let events = read_sse(res).await;
    assert_sequenced_and_ended(&events, "interrupted");
    assert_eq!(states(&events), ["queued", "running", "interrupted"]);
    // The attached run's container lived for its job only: the new process stops it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while container_state(&name) == "running" {
        assert!(Instant::now() < deadline, "the orphaned container of the interrupted run is stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The log is JSON lines, as configured.
    let log = std::fs::read_to_string(logs.path().join("second.log")).unwrap();
    let first_line = log.lines().next().unwrap_or_default();
    assert!(serde_json::from_str::<Value>(first_line).is_ok(), "JSON log lines: {log}");
    second.kill();
}

#[actix_web::test]
async fn cancel_while_the_container_is_being_created_leaves_no_container() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    // Sweep the cancel across the steps between the claim and the start (image check,
    // create, attach, start): none may leave a container behind.
    for (round, delay_ms) in [0u64, 10, 30, 60].into_iter().enumerate() {
        let name = unique(&format!("cancel-create{round}"));
        // Ends at SIGTERM, so a cancel after the start is quick too.
        let mut body = attached(&mut cleanup, &name, "trap 'exit 0' TERM; sleep 30 & wait");
        body["auto_remove"] = json!(true);
        let id = run_job(&app, body).await;
        let res = app.get(&format!("/v1/jobs/{id}/events"), Role::Operator).send().await.unwrap();
        let mut live = crate::jobs::LiveSse::new(res);
        live.until(Duration::from_secs(30), |(e, _, d)| e == "state" && d["state"] == "running").await;
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let res = cancel(&app, &id, Role::Operator).await;
        assert_eq!(res.status(), 200);
        let job: Value = res.json().await.unwrap();
        assert_eq!(job["state"], "canceled", "{job}");
        // Whatever step the cancel hit, an auto_remove run leaves nothing behind.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(!container_exists(&name), "round {round}: the canceled run's container is gone");
    }
}

#[actix_web::test]
async fn sigterm_gives_running_jobs_the_grace_period_then_interrupts_them() {
    let (data_dir, logs, token, client) = binary_fixture();
    let mut cleanup = Cleanup::default();
    let name = unique("sigterm");
    let env = [("BERTH_SHUTDOWN_GRACE", "1s".to_string())];
    let mut first = Berth::spawn_with(data_dir.path(), logs.path().join("first.log"), &env);
    first.wait_healthy(&client).await;
    let mut body = attached(&mut cleanup, &name, "sleep 60");
    body["auto_remove"] = json!(true);
    let res = client.post(first.url("/v1/containers")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(container_exists(&name) && container_state(&name) == "running") {
        assert!(Instant::now() < deadline, "the run never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    let status = first.terminate(Duration::from_secs(20));
    assert!(status.success(), "a clean exit: {status}");
    assert!(t.elapsed() >= Duration::from_millis(900), "the grace period was given: {:?}", t.elapsed());

    let mut second = Berth::spawn(data_dir.path(), logs.path().join("second.log"));
    second.wait_healthy(&client).await;
    let job: Value =
        client.get(second.url(&format!("/v1/jobs/{id}"))).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(job["state"], "interrupted", "{job}");
    assert!(job["error"]["message"].as_str().unwrap().contains("shut down"), "marked by the graceful path: {job}");
    assert!(!container_exists(&name), "the auto_remove run's container went with it");
    second.kill();
}
