use berth::auth::Role;
use serde_json::Value;

use crate::helpers::{assert_problem, spawn_app, spawn_app_with};

#[actix_web::test]
async fn healthz_and_readyz_answer_without_a_token() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["docker"], "ok");
}

#[actix_web::test]
async fn health_routes_answer_head_as_load_balancers_probe() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let res = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "HEAD {path}");
        assert!(res.bytes().await.unwrap().is_empty(), "HEAD {path} has no body");
    }
}

#[actix_web::test]
async fn event_streams_tell_proxies_not_to_buffer_and_clients_when_to_retry() {
    let app = spawn_app().await;
    let res = app.get("/v1/events", berth::auth::Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-accel-buffering"], "no");
    let mut body = res.bytes_stream();
    use futures_util::StreamExt;
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), body.next()).await.unwrap().unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("retry: "), "{first:?}");
}

#[actix_web::test]
async fn system_reports_engine_and_negotiated_version() {
    let app = spawn_app().await;
    let res = app.get("/v1/system", Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["service"]["name"], "berth");
    assert_eq!(body["service"]["version"], env!("CARGO_PKG_VERSION"));
    let engine_api = body["engine"]["api_version"].as_str().unwrap();
    let negotiated = body["engine"]["negotiated_api_version"].as_str().unwrap();
    let parse = |v: &str| -> (u32, u32) {
        let (a, b) = v.split_once('.').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    };
    // Never newer than what the engine speaks.
    assert!(parse(negotiated) <= parse(engine_api), "{negotiated} <= {engine_api}");
    assert!(body["engine"]["images"].as_i64().unwrap() >= 1);
    assert!(!body["engine"]["os"].as_str().unwrap().is_empty());
}

#[actix_web::test]
async fn engine_unreachable_is_503_and_the_service_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("missing.sock");
    let app = spawn_app_with(|s| s.docker_host = Some(format!("unix://{}", sock.display()))).await;

    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_ne!(body["checks"]["docker"], "ok");

    for path in ["/v1/system", "/v1/images", "/v1/containers", "/v1/containers/x", "/v1/images/busybox"] {
        let res = app.get(path, Role::Viewer).send().await.unwrap();
        let problem = assert_problem(res, 503, "docker_unavailable").await;
        assert!(problem["detail"].as_str().unwrap().contains("does not answer"), "{problem}");
    }
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200, "alive while the engine is away");

    // A TCP engine address that refuses connections behaves the same.
    let app = spawn_app_with(|s| s.docker_host = Some("tcp://127.0.0.1:1".into())).await;
    let res = app.get("/v1/images", Role::Viewer).send().await.unwrap();
    assert_problem(res, 503, "docker_unavailable").await;
}

#[actix_web::test]
async fn metrics_need_admin_unless_public_and_keep_labels_bounded() {
    let app = spawn_app().await;
    app.get("/v1/images", Role::Viewer).send().await.unwrap();
    for m in ["FOO1", "FOO2", "BREW"] {
        let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
        app.client.request(method, app.url("/v1/images")).send().await.unwrap();
    }
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
    let res = app.get("/metrics", Role::Operator).send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;
    let res = app.get("/metrics", Role::Admin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = res.text().await.unwrap();
    assert!(text.contains(r#"berth_http_requests_total{method="GET",route="/v1/images",status="200"} 1"#), "{text}");
    assert!(text.contains(r#"method="OTHER""#), "invented methods fold into OTHER: {text}");
    assert!(!text.contains("FOO1") && !text.contains("BREW"), "{text}");
    assert!(text.contains("berth_jobs_queued") && text.contains("berth_jobs_running"), "{text}");

    let public = spawn_app_with(|s| s.metrics_public = true).await;
    let res = public.client.get(public.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}
