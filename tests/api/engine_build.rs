//! Build steps with cache hits, image history, and `FROM` images in the htpasswd
//! registry, against the real engine.

use base64::Engine as _;
use berth::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{BASE_IMAGE, Cleanup, TestApp, assert_problem, docker, docker_quiet, spawn_app, spawn_app_with, unique};
use crate::jobs::{Events, image_exists, submit, tar_of};
use crate::jobs_registry::{PushedManifests, build_local};

const AUTH_REGISTRY: &str = "127.0.0.1:5001";
const AUTH_USER: &str = "berth";
const AUTH_PASSWORD: &str = "s3cret-registry-pw";

/// Build `ctx` tagged `tag` (with extra headers); the ended job and its events.
async fn build(app: &TestApp, tag: &str, ctx: Vec<u8>, headers: &[(&str, String)]) -> (Value, Events) {
    let mut req = app.post("/v1/images/build", Role::Operator).query(&[("tag", tag)]).header("content-type", "application/x-tar");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let res = req.body(ctx).send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 202, "{text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["id"].as_str().unwrap().to_string();
    let job = app.wait_for_job(&id, Role::Operator).await;
    let events = app.job_events(&id, Role::Operator).await;
    (job, events)
}

/// `(index, total, instruction, cached)` of every `step` event, in order.
fn steps(events: &Events) -> Vec<(u64, u64, String, Option<bool>)> {
    events
        .iter()
        .filter(|(e, _, _)| e == "step")
        .map(|(_, _, d)| {
            (d["index"].as_u64().unwrap(), d["total"].as_u64().unwrap(), d["instruction"].as_str().unwrap().to_string(), d["cached"].as_bool())
        })
        .collect()
}

fn context(u: &str, second: &str) -> Vec<u8> {
    let dockerfile = format!(
        "FROM {BASE_IMAGE}\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\nRUN cat /a.txt /b.txt > /both.txt\nLABEL berth.test={u}\n"
    );
    tar_of(&[("Dockerfile", dockerfile.as_bytes()), ("a.txt", u.as_bytes()), ("b.txt", second.as_bytes())])
}

#[actix_web::test]
async fn steps_report_the_cache_and_history_lists_the_layers() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let u = unique("steps");
    let tag = format!("{u}:1");
    cleanup.image(&tag);

    // Cold: every step after FROM ran.
    let (job, events) = build(&app, &tag, context(&u, "one"), &[]).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    cleanup.image(job["result"]["image_id"].as_str().unwrap());
    let cold = steps(&events);
    let names: Vec<&str> = cold.iter().map(|s| s.2.split(' ').next().unwrap()).collect();
    assert_eq!(names, ["FROM", "COPY", "COPY", "RUN", "LABEL"], "{cold:?}");
    assert!(cold.iter().enumerate().all(|(i, s)| s.0 == i as u64 + 1 && s.1 == 5), "{cold:?}");
    assert_eq!(cold[0].3, None, "FROM is not a cache result");
    assert!(cold[1..].iter().all(|s| s.3 == Some(false)), "{cold:?}");
    assert_eq!((job["result"]["steps"].as_u64(), job["result"]["cache_hits"].as_u64()), (Some(5), Some(0)), "{job}");
    let step_progress: Vec<u64> =
        events.iter().filter(|(e, _, _)| e == "progress").filter_map(|(_, _, d)| d["step"].as_u64()).collect();
    assert!(step_progress.contains(&5) && events.iter().any(|(e, _, d)| e == "progress" && d["steps_total"] == 5), "progress says step n of 5");

    // Unchanged: every step cached.
    let (job, events) = build(&app, &tag, context(&u, "one"), &[]).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let warm = steps(&events);
    assert_eq!(warm.len(), 5);
    assert!(warm[1..].iter().all(|s| s.3 == Some(true)), "{warm:?}");
    assert_eq!((job["result"]["steps"].as_u64(), job["result"]["cache_hits"].as_u64()), (Some(5), Some(4)), "{job}");

    // The second COPY changed: cached before it, run from it on.
    let (job, events) = build(&app, &tag, context(&u, "two"), &[]).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let image_id = job["result"]["image_id"].as_str().unwrap().to_string();
    cleanup.image(&image_id);
    let cached: Vec<Option<bool>> = steps(&events).iter().map(|s| s.3).collect();
    assert_eq!(cached, [None, Some(true), Some(false), Some(false), Some(false)]);
    assert_eq!(job["result"]["cache_hits"], 1);

    // History: newest first, by tag (with `:`) or by id, and the same as the engine's.
    let res = app.get(&format!("/v1/image-history/{tag}"), Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let layers: Vec<Value> = res.json().await.unwrap();
    let engine = docker(&["history", "-q", "--no-trunc", &tag]);
    assert_eq!(layers.len(), engine.lines().count(), "{layers:?}");
    assert_eq!(layers[0]["id"], image_id.as_str());
    assert!(layers[0]["tags"].as_array().unwrap().contains(&json!(tag)), "{:?}", layers[0]);
    assert!(layers[0]["created_by"].as_str().unwrap().contains("LABEL"), "{:?}", layers[0]);
    assert_eq!(layers[0]["empty_layer"], true);
    let run = layers.iter().find(|l| l["created_by"].as_str().unwrap().contains("cat /a.txt /b.txt")).expect("the RUN step");
    assert_eq!(run["empty_layer"], false, "{run}");
    assert!(run["size"].as_i64().unwrap() > 0, "{run}");
    assert!(layers.iter().any(|l| l["created_by"].as_str().unwrap().contains("COPY")), "{layers:?}");
    let by_id: Vec<Value> =
        app.get(&format!("/v1/image-history/{image_id}"), Role::Viewer).send().await.unwrap().json().await.unwrap();
    assert_eq!(by_id, layers);
    let res = app.get(&format!("/v1/image-history/{u}:missing"), Role::Viewer).send().await.unwrap();
    assert_problem(res, 404, "image_not_found").await;
}

/// The base image, pushed to the htpasswd registry and gone from the engine.
async fn private_base(app: &TestApp, cleanup: &mut Cleanup, manifests: &mut PushedManifests, u: &str) -> String {
    let repo = format!("{u}/base");
    let reference = format!("{AUTH_REGISTRY}/{repo}:1");
    build_local(cleanup, &reference, u);
    let body = json!({"image": reference, "credentials": {"username": AUTH_USER, "password": AUTH_PASSWORD}});
    let id = submit(app, "/v1/images/push", &body, Role::Operator).await["id"].as_str().unwrap().to_string();
    let push = app.wait_for_job(&id, Role::Operator).await;
    assert_eq!(push["state"], "succeeded", "{push}");
    manifests.add(AUTH_REGISTRY, &repo, push["result"]["digest"].as_str().unwrap(), true);
    docker(&["rmi", &reference]);
    reference
}

#[actix_web::test]
async fn from_a_private_registry_needs_its_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{AUTH_USER}:{AUTH_PASSWORD}"));
    let config = dir.path().join("config.json");
    std::fs::write(&config, json!({"auths": {AUTH_REGISTRY: {"auth": pair}}}).to_string()).unwrap();
    let plain = spawn_app().await;
    let configured = spawn_app_with(|s| s.registry_auth_file = Some(config.clone())).await;
    let mut cleanup = Cleanup::default();
    let mut manifests = PushedManifests::default();
    let u = unique("from-auth");
    let base = private_base(&plain, &mut cleanup, &mut manifests, &u).await;
    let ctx = || tar_of(&[("Dockerfile", format!("FROM {base}\nRUN cat /berth-test-id\n").as_bytes())]);
    let tag = format!("{u}-app:1");
    cleanup.image(&tag);

    // No credentials anywhere: the registry's refusal, with its own code.
    let (job, _) = build(&plain, &tag, ctx(), &[]).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "registry_auth_failed", "{job}");
    assert!(!image_exists(&base));

    // A wrong password in the request's `X-Registry-Config`: refused too.
    let header = |password: &str| {
        let cfg = json!({AUTH_REGISTRY: {"username": AUTH_USER, "password": password}});
        ("x-registry-config", base64::engine::general_purpose::STANDARD.encode(cfg.to_string()))
    };
    let (job, _) = build(&plain, &tag, ctx(), &[header("wr0ng-pw")]).await;
    assert_eq!(job["error"]["code"], "registry_auth_failed", "{job}");

    // The request's credentials.
    let (job, events) = build(&plain, &tag, ctx(), &[header(AUTH_PASSWORD)]).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(events.iter().all(|(_, _, d)| !d.to_string().contains(AUTH_PASSWORD)), "no event shows the password");
    assert!(image_exists(&base) && image_exists(&tag));
    docker(&["rmi", &tag, &base]);

    // The server's configured credentials.
    let (job, _) = build(&configured, &tag, ctx(), &[]).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(image_exists(&base));
    docker_quiet(&["rmi", &tag, &base]);

    // A header that is not the engine's format: 400 before anything is read.
    let res = plain
        .post("/v1/images/build", Role::Operator)
        .header("content-type", "application/x-tar")
        .header("x-registry-config", "%%not-base64")
        .body(ctx())
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "invalid_request").await;
}
