//! `/metrics` for Prometheus: the scrape token (`BERTH_METRICS_TOKEN_FILE`) that opens
//! nothing else, OpenMetrics or Prometheus text by `Accept`, every family after real
//! traffic, and `promtool check metrics` on the answer.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth::auth::Role;
use futures_util::StreamExt;
use secrecy::SecretString;

use crate::helpers::{Cleanup, TestApp, assert_problem, run_container, spawn_app, spawn_app_with, unique};
use crate::jobs::{LiveSse, attached, run_job};

const SCRAPE: &str = "berth-test-scrape-token-0123456789";
/// What Prometheus 2.x sends.
const PROMETHEUS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

async fn scrape(app: &TestApp, accept: Option<&str>) -> (String, String) {
    let mut req = app.client.get(app.url("/metrics")).bearer_auth(SCRAPE);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    (ct, res.text().await.unwrap())
}

/// The value of the first sample whose line starts with `series` and holds every one of
/// `labels`; panics when there is none.
fn sample(text: &str, series: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let name = l.split(['{', ' ']).next().unwrap();
            name == series && labels.iter().all(|x| l.contains(x))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} {labels:?} in:\n{text}"))
}

#[actix_web::test]
async fn the_scrape_token_opens_metrics_and_nothing_else() {
    let app = spawn_app_with(|s| s.metrics_token = Some(SecretString::from(SCRAPE))).await;
    let (ct, _) = scrape(&app, None).await;
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    for path in ["/v1/jobs", "/v1/images", "/v1/system"] {
        let res = app.client.get(app.url(path)).bearer_auth(SCRAPE).send().await.unwrap();
        assert_problem(res, 401, "unauthorized").await;
    }
    let res = app.client.get(app.url(&format!("/v1/events?access_token={SCRAPE}"))).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
    let res = app.client.post(app.url("/v1/tickets")).bearer_auth(SCRAPE).json(&serde_json::json!({})).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
    let res = app.client.get(app.url("/metrics")).bearer_auth("berth-test-scrape-token-0123456788").send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
    // Admins still scrape; other roles do not.
    assert_eq!(app.get("/metrics", Role::Admin).send().await.unwrap().status(), 200);
    assert_problem(app.get("/metrics", Role::Operator).send().await.unwrap(), 403, "forbidden").await;
}

#[actix_web::test]
async fn the_format_follows_accept() {
    let app = spawn_app_with(|s| s.metrics_token = Some(SecretString::from(SCRAPE))).await;
    for (accept, open) in [
        (Some(PROMETHEUS_ACCEPT), true),
        (Some("*/*"), true),
        (None, true),
        (Some("application/openmetrics-text"), true),
        (Some("text/plain"), false),
        (Some("text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.5"), false),
        (Some("text/*"), false),
    ] {
        let (ct, text) = scrape(&app, accept).await;
        if open {
            assert!(ct.starts_with("application/openmetrics-text; version=1.0.0"), "{accept:?}: {ct}");
            assert!(text.ends_with("# EOF\n"), "{accept:?}");
        } else {
            assert!(ct.starts_with("text/plain; version=0.0.4"), "{accept:?}: {ct}");
            assert!(!text.contains("# EOF"), "{accept:?}");
            assert!(text.contains("# TYPE berth_http_requests_total counter"), "{text}");
        }
    }
}

/// Pipe `text` through `promtool check metrics`: its exit status and what it said.
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (scripts/test-env.sh installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[actix_web::test]
async fn every_family_after_traffic_and_promtool_accepts_it() {
    let app = spawn_app_with(|s| s.metrics_token = Some(SecretString::from(SCRAPE))).await;
    let mut cleanup = Cleanup::default();
    // A job that runs and succeeds, an engine call that fails, a list.
    let name = unique("metrics-run");
    let id = run_job(&app, attached(&mut cleanup, &name, "echo hi")).await;
    assert_eq!(app.wait_for_job(&id, Role::Operator).await["state"], "succeeded");
    let res = app.get("/v1/containers/berth-test-metrics-absent", Role::Viewer).send().await.unwrap();
    assert_problem(res, 404, "container_not_found").await;
    assert_eq!(app.get("/v1/images", Role::Viewer).send().await.unwrap().status(), 200);
    // An event stream and a WebSocket session, open while scraping.
    let res = app.get("/v1/events", Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let stream = LiveSse::new(res);
    let sleeper = unique("metrics-ws");
    run_container(&mut cleanup, &sleeper, "sleep 300", &[]);
    let url = format!("ws://127.0.0.1:{}/v1/containers/{sleeper}/attach?access_token={}", app.port, app.token(Role::Operator));
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("attach");

    let (ct, text) = scrape(&app, Some("text/plain")).await;
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let (ok, said) = promtool(&text);
    assert!(ok && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");

    let images = |t: &str| sample(t, "berth_http_requests_total", &[r#"route="/v1/images""#, r#"status="200""#]);
    assert_eq!(images(&text), 1.0);
    assert!(sample(&text, "berth_http_request_duration_seconds_count", &[r#"route="/v1/images""#]) >= 1.0);
    assert_eq!(sample(&text, "berth_jobs", &[r#"kind="run""#, r#"state="succeeded""#]), 1.0);
    assert_eq!(sample(&text, "berth_jobs", &[r#"kind="build""#, r#"state="queued""#]), 0.0, "every pair, zero included");
    assert_eq!(sample(&text, "berth_jobs_finished_total", &[r#"kind="run""#, r#"state="succeeded""#]), 1.0);
    assert_eq!(sample(&text, "berth_jobs_queued", &[]), 0.0);
    assert_eq!(sample(&text, "berth_jobs_running", &[]), 0.0);
    assert_eq!(sample(&text, "berth_job_duration_seconds_count", &[r#"kind="run""#]), 1.0);
    let took = sample(&text, "berth_job_duration_seconds_sum", &[r#"kind="run""#]);
    assert!(took > 0.0 && took < 120.0, "{took}");
    assert_eq!(sample(&text, "berth_sse_streams_open", &[]), 1.0);
    assert_eq!(sample(&text, "berth_websocket_sessions_open", &[]), 1.0);
    assert!(sample(&text, "berth_engine_request_duration_seconds_count", &[r#"operation="list_images""#]) >= 1.0);
    assert!(sample(&text, "berth_engine_request_duration_seconds_count", &[r#"operation="create_container""#]) >= 1.0);
    let failed = sample(&text, "berth_engine_errors_total", &[r#"code="container_not_found""#]);
    assert!(failed >= 1.0, "{failed}");
    assert!(sample(&text, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(sample(&text, "process_open_fds", &[]) >= 3.0);
    assert!(sample(&text, "process_max_fds", &[]) >= sample(&text, "process_open_fds", &[]));
    assert!(sample(&text, "process_cpu_seconds_total", &[]) > 0.0);
    assert!(sample(&text, "process_start_time_seconds", &[]) > 1.6e9);

    // Traffic counts: one more list is one more request; a closed session is gone (an
    // event stream's slot comes back at its next write, up to 10 s on: not waited for).
    assert_eq!(app.get("/v1/images", Role::Viewer).send().await.unwrap().status(), 200);
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.ok().flatten() {}
    drop(stream);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (_, text) = scrape(&app, Some(PROMETHEUS_ACCEPT)).await;
        let closed = sample(&text, "berth_websocket_sessions_open", &[]) == 0.0;
        if closed || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(images(&text), 2.0);
    assert_eq!(sample(&text, "berth_websocket_sessions_open", &[]), 0.0);
    assert!(text.ends_with("# EOF\n"), "Prometheus' own Accept gets OpenMetrics");
}

#[actix_web::test]
async fn metrics_stay_public_with_berth_metrics_public() {
    let app = spawn_app_with(|s| s.metrics_public = true).await;
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let default = spawn_app().await;
    let res = default.client.get(default.url("/metrics")).bearer_auth(SCRAPE).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
}
