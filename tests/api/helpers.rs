//! The test harness: the real application on port 0, a temp data dir, a test key, and
//! the real Docker engine (prepared by `scripts/test-env.sh`).

use std::process::Command;
use std::time::Duration;

use berth::auth::{Role, mint_token};
use berth::config::{JwtKey, Settings};
use berth::startup::Application;
use secrecy::SecretString;
use serde_json::Value;

/// The locally imported base image (see scripts/test-env.sh).
pub const BASE_IMAGE: &str = "berth-test/busybox:latest";
/// The plain loopback registry.
pub const REGISTRY: &str = "127.0.0.1:5000";
pub const TEST_SECRET: &str = "berth-test-secret-0123456789abcdef";

pub struct TestApp {
    pub address: String,
    pub port: u16,
    /// Stops the app as SIGTERM would (graceful: jobs get the grace period).
    pub handle: berth::startup::AppHandle,
    pub client: reqwest::Client,
    pub settings: Settings,
    pub data_dir: tempfile::TempDir,
}

pub fn test_settings(data_dir: &std::path::Path) -> Settings {
    let mut s = Settings::with_key(JwtKey::Secret(SecretString::from(TEST_SECRET)));
    s.listen = "127.0.0.1:0".into();
    s.data_dir = data_dir.to_path_buf();
    s.docker_host = std::env::var("DOCKER_HOST").ok();
    s
}

/// Start the application with the default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Start the application after `customize` adjusted its settings.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(data_dir.path());
    customize(&mut settings);
    start(settings, data_dir).await
}

pub async fn start(settings: Settings, data_dir: tempfile::TempDir) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        berth::telemetry::init(berth::config::LogFormat::Pretty);
    }
    let app = Application::build(settings.clone()).await.expect("application builds");
    let port = app.port();
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        handle,
        client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        settings,
        data_dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A token for subject `test-<role>` with that role.
    pub fn token(&self, role: Role) -> String {
        self.token_for(&format!("test-{role}"), role)
    }

    pub fn token_for(&self, sub: &str, role: Role) -> String {
        mint_token(&self.settings.jwt, sub, &[role], Duration::from_secs(3600)).unwrap()
    }

    pub fn get(&self, path: &str, role: Role) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(self.token(role))
    }
    pub fn post(&self, path: &str, role: Role) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(self.token(role))
    }
    pub fn delete(&self, path: &str, role: Role) -> reqwest::RequestBuilder {
        self.client.delete(self.url(path)).bearer_auth(self.token(role))
    }

    /// Poll a job (as `test-<role>`) until it ends; its final record. Panics after 120 s.
    pub async fn wait_for_job(&self, id: &str, role: Role) -> Value {
        self.wait_for_job_as(id, &self.token(role)).await
    }

    /// Poll a job with `token` until it ends; its final record. Panics after 120 s.
    pub async fn wait_for_job_as(&self, id: &str, token: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let res = self.client.get(self.url(&format!("/v1/jobs/{id}"))).bearer_auth(token).send().await.unwrap();
            assert_eq!(res.status(), 200, "job {id} readable");
            let job: Value = res.json().await.unwrap();
            let state = job["state"].as_str().unwrap().to_string();
            if !["queued", "running"].contains(&state.as_str()) {
                return job;
            }
            assert!(std::time::Instant::now() < deadline, "job {id} still {state} after 120 s: {job}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A job's whole event stream (replayed and followed until `end`).
    pub async fn job_events(&self, id: &str, role: Role) -> Vec<(String, Option<String>, Value)> {
        let res = self.get(&format!("/v1/jobs/{id}/events"), role).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        read_sse(res).await
    }
}

/// Assert a problem+json response with this status and code; returns the body.
pub async fn assert_problem(res: reqwest::Response, status: u16, code: &str) -> Value {
    let got = res.status().as_u16();
    let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let header_id = res.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_string());
    let body = res.text().await.unwrap();
    assert_eq!(got, status, "status; body: {body}");
    assert_eq!(ct, "application/problem+json", "content type; body: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("problem is JSON ({e}): {body}"));
    assert_eq!(v["code"], code, "code; body: {body}");
    assert_eq!(v["status"], status, "status member; body: {body}");
    for key in ["type", "title", "detail", "request_id"] {
        assert!(v[key].as_str().is_some_and(|s| !s.is_empty()), "`{key}` present; body: {body}");
    }
    assert_eq!(header_id.as_deref(), v["request_id"].as_str(), "x-request-id header equals request_id");
    v
}

/// A name unique to this test run: `berth-test-<what>-<random>`.
pub fn unique(what: &str) -> String {
    format!("berth-test-{what}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// Run the docker CLI against the same engine; panics on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker CLI runs");
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Run the docker CLI and ignore failure (cleanup).
pub fn docker_quiet(args: &[&str]) {
    let _ = Command::new("docker").args(args).output();
}

/// Removes the containers and images a test made, even when it fails.
#[derive(Default)]
pub struct Cleanup {
    pub containers: Vec<String>,
    pub images: Vec<String>,
}

impl Cleanup {
    pub fn container(&mut self, name: &str) -> &mut Self {
        self.containers.push(name.to_string());
        self
    }
    pub fn image(&mut self, reference: &str) -> &mut Self {
        self.images.push(reference.to_string());
        self
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            docker_quiet(&["rm", "-f", "-v", c]);
        }
        for i in &self.images {
            docker_quiet(&["rmi", "-f", i]);
        }
    }
}

/// Start a detached busybox container named `name` running `cmd` (via `sh -c`).
pub fn run_container(cleanup: &mut Cleanup, name: &str, cmd: &str, labels: &[&str]) -> String {
    cleanup.container(name);
    let mut args = vec!["run", "-d", "--name", name];
    for l in labels {
        args.push("--label");
        args.push(l);
    }
    args.extend([BASE_IMAGE, "sh", "-c", cmd]);
    docker(&args)
}

/// Read a whole SSE response (until the server closes it) into (event, id, data) triples.
pub async fn read_sse(res: reqwest::Response) -> Vec<(String, Option<String>, Value)> {
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;
    let mut out = Vec::new();
    let mut stream = res.bytes_stream().eventsource();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .expect("SSE event within 60 s")
    {
        let ev = ev.expect("well-formed SSE");
        let data = serde_json::from_str(&ev.data).unwrap_or(Value::String(ev.data.clone()));
        let id = (!ev.id.is_empty()).then(|| ev.id.clone());
        out.push((ev.event, id, data));
    }
    out
}
