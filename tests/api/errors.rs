//! Every failure is an RFC 9457 problem with a stable `code`, and never a 5xx for a bad request.

use berth::auth::Role;
use serde_json::json;

use crate::helpers::{BASE_IMAGE, assert_problem, spawn_app, spawn_app_with};

#[actix_web::test]
async fn unknown_routes_are_404_not_found() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/nope")).send().await.unwrap();
    let p = assert_problem(res, 404, "not_found").await;
    assert!(p["detail"].as_str().unwrap().contains("/nope"), "{p}");
    assert_eq!(p["type"], "/problems/not_found");
    assert_eq!(p["title"], "Not found");

    // Under /v1 (with a token: without one, the answer is 401 and reveals nothing).
    let res = app.get("/v1/nope", Role::Admin).send().await.unwrap();
    assert_problem(res, 404, "not_found").await;
    let res = app.post("/v1/containers/x/explode", Role::Admin).send().await.unwrap();
    assert_problem(res, 404, "not_found").await;
    let res = app.client.get(app.url("/v1/nope")).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
}

#[actix_web::test]
async fn wrong_method_on_a_known_path_is_405() {
    let app = spawn_app().await;
    let token = app.token(Role::Admin);
    for (method, path) in [
        (reqwest::Method::PUT, "/v1/images"),
        (reqwest::Method::DELETE, "/v1/images"),
        (reqwest::Method::PATCH, "/v1/containers"),
        (reqwest::Method::GET, "/v1/containers/x/start"),
        (reqwest::Method::PUT, "/v1/containers/x"),
        (reqwest::Method::PUT, "/v1/system"),
    ] {
        let res = app.client.request(method.clone(), app.url(path)).bearer_auth(&token).send().await.unwrap();
        let allow = res.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
        let p = assert_problem(res, 405, "method_not_allowed").await;
        assert!(p["detail"].as_str().unwrap().contains(method.as_str()), "{method} {path}: {p}");
        assert!(allow.is_some(), "{method} {path}: an Allow header");
    }
    // Unauthenticated routes too.
    let res = app.client.post(app.url("/healthz")).send().await.unwrap();
    assert_problem(res, 405, "method_not_allowed").await;
}

#[actix_web::test]
async fn bad_json_bodies_are_400_invalid_request() {
    let app = spawn_app().await;
    for body in [
        "{not json".to_string(),
        "".to_string(),
        "[]".to_string(),
        "null".to_string(),
        json!({ "source": BASE_IMAGE }).to_string(),
        json!({ "source": 1, "target": "x" }).to_string(),
        // Unknown fields are refused, not ignored.
        json!({ "source": BASE_IMAGE, "target": "berth-test-x/y:1", "force": true }).to_string(),
    ] {
        let res = app
            .post("/v1/images/tag", Role::Operator)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let p = assert_problem(res, 400, "invalid_request").await;
        assert!(!p["detail"].as_str().unwrap().is_empty(), "{body}: {p}");
    }
    let res = app
        .post("/v1/images/tag", Role::Operator)
        .json(&json!({ "source": BASE_IMAGE, "target": "berth-test-x/y:1", "force": true }))
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 400, "invalid_request").await;
    assert!(p["detail"].as_str().unwrap().contains("force"), "names the unknown field: {p}");
}

#[actix_web::test]
async fn wrong_content_type_is_415() {
    let app = spawn_app().await;
    let body = json!({ "source": BASE_IMAGE, "target": "berth-test-x/y:1" }).to_string();
    for ct in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("application/xml"), None] {
        let mut req = app.post("/v1/images/tag", Role::Operator).body(body.clone());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let res = req.send().await.unwrap();
        assert_problem(res, 415, "unsupported_media_type").await;
    }
}

#[actix_web::test]
async fn json_bodies_over_the_limit_are_413() {
    let app = spawn_app_with(|s| s.json_limit = 1024).await;
    let big = json!({ "source": BASE_IMAGE, "target": format!("berth-test-x/{}:1", "a".repeat(4096)) }).to_string();
    assert!(big.len() > 4096);
    let res = app
        .post("/v1/images/tag", Role::Operator)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 413, "payload_too_large").await;
    assert!(p["detail"].as_str().unwrap().contains("1024"), "{p}");

    // Without a Content-Length (chunked), the limit holds as well.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big.as_bytes().chunks(512).map(|c| Ok(c.to_vec())).collect();
    let res = app
        .post("/v1/images/tag", Role::Operator)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_problem(res, 413, "payload_too_large").await;

    // Under the limit, the body is read (and here refused for its content, not its size).
    let res = app
        .post("/v1/images/tag", Role::Operator)
        .json(&json!({ "source": BASE_IMAGE, "target": "Not-Valid" }))
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "invalid_reference").await;
}

#[actix_web::test]
async fn bad_query_strings_are_400() {
    let app = spawn_app().await;
    for path in [
        "/v1/images?all=maybe",
        "/v1/images?dangling=yes",
        "/v1/containers?all=maybe",
        "/v1/containers?status=sleeping",
        "/v1/containers?label=",
        "/v1/containers?label=%3Dvalue",
        "/v1/containers?name=",
        "/v1/images?label=a%0Ab",
        "/v1/images?reference=",
        "/v1/containers/x/logs?tail=ten",
        "/v1/containers/x/logs?since=yesterday",
        "/v1/containers/x/logs?follow=maybe",
    ] {
        let res = app.get(path, Role::Viewer).send().await.unwrap();
        assert_problem(res, 400, "invalid_request").await;
    }
    for path in ["/v1/containers/x/stop?timeout=abc", "/v1/containers/x/stop?timeout=-1", "/v1/containers/x/stop?timeout=3601", "/v1/containers/x/restart?timeout=99999", "/v1/containers/x/kill?signal=kill%3Brm", "/v1/containers/x/kill?signal=SIG%20KILL"] {
        let res = app.post(path, Role::Operator).send().await.unwrap();
        assert_problem(res, 400, "invalid_request").await;
    }
    let res = app.delete("/v1/containers/x?force=perhaps", Role::Operator).send().await.unwrap();
    assert_problem(res, 400, "invalid_request").await;
    let res = app.delete("/v1/images/busybox?noprune=perhaps", Role::Operator).send().await.unwrap();
    assert_problem(res, 400, "invalid_request").await;
}

#[actix_web::test]
async fn invalid_image_references_are_400_invalid_reference() {
    let app = spawn_app().await;
    for reference in [
        "UPPER",
        "Busybox:latest",
        "a..b",
        "team..app/x",
        "..%2Fetc%2Fpasswd",
        "app%0A",
        "app%00",
        "app%07",
        "a%20b",
        "a%09b",
        "app:",
        "app:-tag",
        "app:tag:tag",
        "-app",
        "app@sha256:xyz",
        "sha256:zz",
        "reg:99999999/app",
    ] {
        let res = app.get(&format!("/v1/images/{reference}"), Role::Viewer).send().await.unwrap();
        let p = assert_problem(res, 400, "invalid_reference").await;
        assert_eq!(p["title"], "Invalid image reference", "{reference}");
        let res = app.delete(&format!("/v1/images/{reference}"), Role::Operator).send().await.unwrap();
        assert_problem(res, 400, "invalid_reference").await;
    }
    // Too long.
    let long = format!("a{}", "b".repeat(600));
    let res = app.get(&format!("/v1/images/{long}"), Role::Viewer).send().await.unwrap();
    assert_problem(res, 400, "invalid_reference").await;

    // In the tag body, for the source and for the target.
    for (source, target) in [
        ("UPPER", "berth-test-x/y:1"),
        ("a b", "berth-test-x/y:1"),
        ("app\n", "berth-test-x/y:1"),
        (BASE_IMAGE, "Berth-test/y:1"),
        (BASE_IMAGE, "berth-test/y:1 "),
        (BASE_IMAGE, "../y"),
        (BASE_IMAGE, "y:bad:tag"),
        (BASE_IMAGE, ""),
    ] {
        let res = app
            .post("/v1/images/tag", Role::Operator)
            .json(&json!({ "source": source, "target": target }))
            .send()
            .await
            .unwrap();
        assert_problem(res, 400, "invalid_reference").await;
    }
    // A digest is no tag target.
    let res = app
        .post("/v1/images/tag", Role::Operator)
        .json(&json!({ "source": BASE_IMAGE, "target": format!("berth-test-x/y@sha256:{}", "a".repeat(64)) }))
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "invalid_reference").await;
}

#[actix_web::test]
async fn invalid_container_ids_are_400_invalid_request() {
    let app = spawn_app().await;
    for id in ["..%2Fx", "a%20b", "-web", "a%0Ab", "%2E%2Ehidden", "x%3By", &"x".repeat(129)] {
        let res = app.get(&format!("/v1/containers/{id}"), Role::Viewer).send().await.unwrap();
        let p = assert_problem(res, 400, "invalid_request").await;
        assert!(p["detail"].as_str().unwrap().contains("container id or name"), "{id}: {p}");
        let res = app.get(&format!("/v1/containers/{id}/logs"), Role::Viewer).send().await.unwrap();
        assert_problem(res, 400, "invalid_request").await;
        for action in ["start", "stop", "restart", "kill"] {
            let res = app.post(&format!("/v1/containers/{id}/{action}"), Role::Operator).send().await.unwrap();
            assert_problem(res, 400, "invalid_request").await;
        }
        let res = app.delete(&format!("/v1/containers/{id}"), Role::Operator).send().await.unwrap();
        assert_problem(res, 400, "invalid_request").await;
    }
}

#[actix_web::test]
async fn request_ids_are_echoed_when_sane_and_replaced_otherwise() {
    let app = spawn_app().await;
    // Sane: echoed on success and in a problem.
    let res = app.get("/v1/system", Role::Viewer).header("x-request-id", "trace-abc_123.4:5").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "trace-abc_123.4:5");
    let res = app.get("/v1/containers/berth-test-no-such-container", Role::Viewer).header("x-request-id", "req-42").send().await.unwrap();
    let p = assert_problem(res, 404, "container_not_found").await;
    assert_eq!(p["request_id"], "req-42");
    // On a 401 too (the problem is made outside the handler).
    let res = app.client.get(app.url("/v1/images")).header("x-request-id", "req-unauth").send().await.unwrap();
    let p = assert_problem(res, 401, "unauthorized").await;
    assert_eq!(p["request_id"], "req-unauth");
    let res = app.client.get(app.url("/nope")).header("x-request-id", "req-404").send().await.unwrap();
    let p = assert_problem(res, 404, "not_found").await;
    assert_eq!(p["request_id"], "req-404");

    // Insane: too long, or with characters that could forge log lines; replaced by a UUID.
    for bad in ["x".repeat(65), "a b".to_string(), "a\"b".to_string(), "a/b".to_string(), "<script>".to_string()] {
        let res = app.client.get(app.url("/nope")).header("x-request-id", bad.as_str()).send().await.unwrap();
        let p = assert_problem(res, 404, "not_found").await;
        let id = p["request_id"].as_str().unwrap();
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{bad:?} replaced by a UUID, got {id}");
    }
    // None given: a fresh one per request.
    let a = app.client.get(app.url("/healthz")).send().await.unwrap().headers()["x-request-id"].clone();
    let b = app.client.get(app.url("/healthz")).send().await.unwrap().headers()["x-request-id"].clone();
    assert_ne!(a, b);
    assert!(uuid::Uuid::parse_str(a.to_str().unwrap()).is_ok());
    // Exactly 64 sane characters are kept.
    let max = "r".repeat(64);
    let res = app.client.get(app.url("/healthz")).header("x-request-id", max.as_str()).send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], max.as_str());
}

#[actix_web::test]
async fn overlong_paths_and_query_strings_are_414_and_big_headers_are_refused() {
    let app = spawn_app().await;
    let long_query = format!("/v1/images?reference={}", "a".repeat(9000));
    let res = app.get(&long_query, Role::Viewer).send().await.unwrap();
    let p = assert_problem(res, 414, "uri_too_long").await;
    assert!(p["detail"].as_str().unwrap().contains("8192"), "{p}");
    let long_path = format!("/v1/images/{}", "a/".repeat(2100));
    let res = app.get(&long_path, Role::Viewer).send().await.unwrap();
    assert_problem(res, 414, "uri_too_long").await;
    // Just under the limits is served.
    let res = app.get(&format!("/v1/images?label={}", "a".repeat(1000)), Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // Headers are bounded too: 16 KiB in all.
    let res = app.get("/v1/images", Role::Viewer).header("x-big", "b".repeat(20 * 1024)).send().await.unwrap();
    assert_problem(res, 431, "headers_too_large").await;
    // And the service is still up.
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
}

/// Input the engine would answer with a 500 (or that would store a secret) is refused
/// first, with a precise 400.
#[actix_web::test]
async fn engine_hostile_input_is_400_before_the_engine() {
    let app = spawn_app().await;
    for q in ["reference=%5B", "reference=a%5Cb", "reference=%5Dx%5B"] {
        let res = app.get(&format!("/v1/images?{q}"), Role::Viewer).send().await.unwrap();
        assert_problem(res, 400, "invalid_request").await;
    }
    // A glob the engine takes is fine.
    let res = app.get("/v1/images?reference=berth-test/*", Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);
    for until in ["yesterday", "1d", "-5h"] {
        let res = app
            .post("/v1/containers/prune", Role::Admin)
            .json(&json!({"filters": {"label": ["berth.test=never"], "until": until}}))
            .send()
            .await
            .unwrap();
        assert_problem(res, 400, "invalid_request").await;
    }
    // Credentials in a remote URL would be stored with the job.
    let res = app
        .post("/v1/images/build?remote=https://user:s3cr3t@example.invalid/repo.git", Role::Operator)
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 400, "invalid_request").await;
    assert!(!p.to_string().contains("s3cr3t"), "{p}");
    // A malformed build arg is named by its key only.
    let res = app
        .post("/v1/images/build?remote=https://example.invalid/r.git&buildarg=TOKEN%20x=s3cr3t", Role::Operator)
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 400, "invalid_request").await;
    assert!(!p.to_string().contains("s3cr3t"), "{p}");
    // A duration beyond any date is clamped, not an overflow.
    let name = crate::helpers::unique("since-overflow");
    let mut cleanup = crate::helpers::Cleanup::default();
    crate::helpers::run_container(&mut cleanup, &name, "echo hi", &[]);
    let res = app.get(&format!("/v1/containers/{name}/logs?since=9223372036854775807s"), Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

/// A problem's `type` is a page Berth serves itself, unauthenticated: one per code of
/// the catalogue (title, status, what it means, what to do), an index of them all, and a
/// 404 problem for a code that does not exist.
#[actix_web::test]
async fn problem_types_are_pages_berth_serves() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/v1/jobs/01JNOSUCHJOB00000000000000")).send().await.unwrap();
    let p = assert_problem(res, 401, "unauthorized").await;
    let page_url = app.url(p["type"].as_str().unwrap());
    let res = app.client.get(&page_url).send().await.unwrap();
    assert_eq!(res.status(), 200, "{page_url}");
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(html.contains("<h1>Authentication required</h1>") && html.contains("<strong>401</strong>"), "{html}");
    assert!(html.contains("What it means") && html.contains("What to do"), "{html}");
    assert!(html.contains("<code>Authorization: Bearer &lt;JWT&gt;</code>"), "code spans, escaped: {html}");

    let res = app.client.get(app.url("/problems")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let index = res.text().await.unwrap();
    for code in berth::error::ErrorCode::ALL {
        assert!(index.contains(&format!("href=\"/problems/{code}\"")), "the index links {code}");
        let res = app.client.get(app.url(&format!("/problems/{code}"))).send().await.unwrap();
        assert_eq!(res.status(), 200, "{code}");
        let html = res.text().await.unwrap();
        assert!(html.contains(&format!("<code>{code}</code>")) && html.contains(&code.status().to_string()), "{code}");
    }

    let res = app.client.get(app.url("/problems/no_such_code")).send().await.unwrap();
    let p = assert_problem(res, 404, "not_found").await;
    assert!(p["detail"].as_str().unwrap().contains("no_such_code"), "{p}");
    let res = app.client.post(app.url("/problems/not_found")).send().await.unwrap();
    assert_problem(res, 405, "method_not_allowed").await;
}
