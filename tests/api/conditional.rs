//! HTTP conventions: `ETag` / `If-None-Match` -> 304 on a job, a job page and the
//! OpenAPI document and the console's files; gzip for large JSON answers when asked, never for event streams.

use std::io::Read;
use std::time::Duration;

use berth::auth::Role;

use crate::helpers::{Cleanup, TestApp, spawn_app, unique};
use crate::jobs::{LiveSse, attached, cheap_job, run_job, submit_with, wait_container_started};

/// GET `path` with `token` and these extra headers.
async fn get(app: &TestApp, path: &str, token: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.client.get(app.url(path)).bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn etag(res: &reqwest::Response) -> String {
    res.headers().get("etag").expect("an ETag").to_str().unwrap().to_string()
}

/// Asserts a 304 that names `tag` and has no body.
async fn assert_not_modified(res: reqwest::Response, tag: &str) {
    assert_eq!(res.status(), 304);
    assert_eq!(etag(&res), tag);
    assert!(res.bytes().await.unwrap().is_empty(), "a 304 has no body");
}

#[actix_web::test]
async fn a_job_is_304_until_its_state_changes() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("etag-run");
    let id = run_job(&app, attached(&mut cleanup, &name, "sleep 300")).await;
    wait_container_started(&app, &id).await;
    let token = app.token(Role::Operator);
    let path = format!("/v1/jobs/{id}");
    let res = get(&app, &path, &token, &[]).await;
    assert_eq!(res.status(), 200);
    let running = etag(&res);
    assert!(running.starts_with('"') && running.len() == 34, "a strong tag: {running}");
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["state"], "running");
    assert_not_modified(get(&app, &path, &token, &[("if-none-match", &running)]).await, &running).await;
    let list = format!("\"nope\", W/{running}");
    assert_not_modified(get(&app, &path, &token, &[("if-none-match", &list)]).await, &running).await;
    assert_eq!(get(&app, &path, &token, &[("if-none-match", "\"nope\"")]).await.status(), 200);

    let res = app.post(&format!("/v1/jobs/{id}/cancel"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 200);
    app.wait_for_job(&id, Role::Operator).await;
    let res = get(&app, &path, &token, &[("if-none-match", &running)]).await;
    assert_eq!(res.status(), 200, "the state changed: a new representation");
    let canceled = etag(&res);
    assert_ne!(canceled, running);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["state"], "canceled");
    assert_not_modified(get(&app, &path, &token, &[("if-none-match", &canceled)]).await, &canceled).await;
}

#[actix_web::test]
async fn a_job_page_and_the_spec_are_304_until_they_change() {
    let app = spawn_app().await;
    let token = app.token_for(&unique("etag-list"), Role::Operator);
    let first = submit_with(&app, &token, "/v1/containers", &cheap_job()).await;
    app.wait_for_job_as(first["id"].as_str().unwrap(), &token).await;
    let res = get(&app, "/v1/jobs?limit=10", &token, &[]).await;
    let page = etag(&res);
    assert_not_modified(get(&app, "/v1/jobs?limit=10", &token, &[("if-none-match", &page)]).await, &page).await;
    let second = submit_with(&app, &token, "/v1/containers", &cheap_job()).await;
    app.wait_for_job_as(second["id"].as_str().unwrap(), &token).await;
    let res = get(&app, "/v1/jobs?limit=10", &token, &[("if-none-match", &page)]).await;
    assert_eq!(res.status(), 200, "a new job: a new page");
    assert_ne!(etag(&res), page);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["items"].as_array().unwrap().len(), 2);

    let res = app.client.get(app.url("/openapi.json")).send().await.unwrap();
    let spec = etag(&res);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["info"]["title"], "Berth");
    for matching in [spec.clone(), format!("W/{spec}"), "*".into(), format!("\"x\",{spec}")] {
        let res = app.client.get(app.url("/openapi.json")).header("if-none-match", &matching).send().await.unwrap();
        assert_not_modified(res, &spec).await;
    }
    let res = app.client.get(app.url("/openapi.json")).header("if-none-match", "\"other\"").send().await.unwrap();
    assert_eq!(res.status(), 200);
    // The Swagger UI still finds the document.
    let res = app.client.get(app.url("/swagger-ui/swagger-initializer.js")).send().await.unwrap();
    assert!(res.text().await.unwrap().contains("/openapi.json"));
}

#[actix_web::test]
async fn console_files_are_304_by_the_same_rules_as_the_api() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/ui/app.js")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/javascript");
    let tag = etag(&res);
    assert!(!res.bytes().await.unwrap().is_empty());
    // A gzip proxy weakens the tag; browsers send lists: both still match.
    for matching in [tag.clone(), format!("W/{tag}"), "*".into(), format!("\"x\", {tag}")] {
        let res = app.client.get(app.url("/ui/app.js")).header("if-none-match", &matching).send().await.unwrap();
        assert_not_modified(res, &tag).await;
    }
    let res = app.client.get(app.url("/ui/app.js")).header("if-none-match", "\"other\"").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let page = etag(&app.client.get(app.url("/ui/")).send().await.unwrap());
    assert_ne!(page, tag, "each file has its own tag");
    let res = app.client.get(app.url("/ui/nope.js")).send().await.unwrap();
    crate::helpers::assert_problem(res, 404, "not_found").await;
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("a gzip body");
    out
}

#[actix_web::test]
async fn large_json_lists_are_gzipped_when_asked() {
    let app = spawn_app().await;
    let token = app.token_for(&unique("gzip"), Role::Operator);
    let mut last = String::new();
    for _ in 0..4 {
        let job = submit_with(&app, &token, "/v1/containers", &cheap_job()).await;
        last = job["id"].as_str().unwrap().to_string();
        app.wait_for_job_as(&last, &token).await;
    }
    let plain = get(&app, "/v1/jobs", &token, &[]).await;
    assert!(plain.headers().get("content-encoding").is_none(), "not asked: not compressed");
    assert!(plain.headers()["vary"].to_str().unwrap().to_lowercase().contains("accept-encoding"));
    let strong = etag(&plain);
    let plain = plain.bytes().await.unwrap();
    assert!(plain.len() as u64 >= berth::api::compress::MIN_BYTES, "{} bytes", plain.len());

    let res = get(&app, "/v1/jobs", &token, &[("accept-encoding", "gzip, deflate, br")]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-encoding"], "gzip");
    assert_eq!(etag(&res), format!("W/{strong}"), "the compressed representation's tag is weak");
    let zipped = res.bytes().await.unwrap();
    assert!(zipped.len() < plain.len(), "{} < {}", zipped.len(), plain.len());
    assert_eq!(gunzip(&zipped), plain.to_vec(), "decodes to the same JSON");
    let res = get(&app, "/v1/jobs", &token, &[("accept-encoding", "gzip"), ("if-none-match", &format!("W/{strong}"))]).await;
    assert_eq!(res.status(), 304);
    // Refused by q=0, and small answers: as they are.
    let res = get(&app, "/v1/jobs", &token, &[("accept-encoding", "gzip;q=0, identity")]).await;
    assert!(res.headers().get("content-encoding").is_none());
    let res = get(&app, &format!("/v1/jobs/{last}"), &token, &[("accept-encoding", "gzip")]).await;
    assert!(res.headers().get("content-encoding").is_none(), "a small answer is sent as it is");
    assert!((res.bytes().await.unwrap().len() as u64) < berth::api::compress::MIN_BYTES);
    // The OpenAPI document too.
    let res = app.client.get(app.url("/openapi.json")).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let spec: serde_json::Value = serde_json::from_slice(&gunzip(&res.bytes().await.unwrap())).unwrap();
    assert_eq!(spec["info"]["title"], "Berth");
}

#[actix_web::test]
async fn event_streams_are_never_compressed_and_stay_live() {
    let app = spawn_app().await;
    let token = app.token_for(&unique("gzip-sse"), Role::Operator);
    let res = get(&app, "/v1/events", &token, &[("accept-encoding", "gzip")]).await;
    assert_eq!(res.status(), 200);
    let coding = res.headers().get("content-encoding").map(|v| v.to_str().unwrap().to_string());
    assert!(coding.is_none() || coding.as_deref() == Some("identity"), "an event stream is sent as it is: {coding:?}");
    let mut stream = LiveSse::new(res);
    let job = submit_with(&app, &token, "/v1/containers", &cheap_job()).await;
    let id = job["id"].as_str().unwrap();
    let seen = stream.until(Duration::from_secs(20), |e| e.0 == "state" && e.2["job_id"] == id).await;
    assert!(seen.iter().any(|e| e.2["job_id"] == id), "the job's state arrived live: {seen:?}");
}
