//! The run policy beyond roles: reserved options, the image allow-list (run, pull, push),
//! and default limits for containers that set none.

use berth::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{BASE_IMAGE, Cleanup, assert_problem, docker, spawn_app, spawn_app_with, unique};

#[actix_web::test]
async fn reserved_options_need_admin_and_nothing_is_queued() {
    let app = spawn_app().await;
    let name = unique("policy-reserved");
    for (option, value) in [
        ("cap_add", json!(["SYS_ADMIN"])),
        ("devices", json!(["/dev/kmsg"])),
        ("security_opt", json!(["seccomp=unconfined"])),
        ("pid_mode", json!("host")),
        ("ipc_mode", json!("host")),
        ("privileged", json!(true)),
        ("network", json!("host")),
        ("binds", json!(["/etc:/host-etc:ro"])),
    ] {
        let mut body = json!({"image": BASE_IMAGE, "name": name, "cmd": ["true"]});
        body[option] = value;
        let res = app.post("/v1/containers", Role::Operator).json(&body).send().await.unwrap();
        let p = assert_problem(res, 403, "policy_violation").await;
        assert!(p["detail"].as_str().unwrap().contains(option), "names `{option}`: {p}");
    }
    // A non-reserved IPC mode is fine for an operator (validated, not refused).
    let body = json!({"image": BASE_IMAGE, "cmd": ["true"], "ipc_mode": "bogus"});
    let res = app.post("/v1/containers", Role::Operator).json(&body).send().await.unwrap();
    assert_problem(res, 400, "invalid_request").await;
    let page: Value = app.get("/v1/jobs", Role::Operator).send().await.unwrap().json().await.unwrap();
    assert!(page["items"].as_array().unwrap().is_empty(), "nothing queued: {page}");
}

#[actix_web::test]
async fn the_image_allow_list_applies_to_run_pull_and_push() {
    let app = spawn_app_with(|s| {
        s.policy.allowed_images = vec!["berth-test/*".into(), "127.0.0.1:5000/allowed/*".into()];
    })
    .await;
    for (path, body) in [
        ("/v1/containers", json!({"image": "127.0.0.1:5000/other/app:1", "cmd": ["true"]})),
        ("/v1/images/pull", json!({"image": "127.0.0.1:5000/other/app:1"})),
        ("/v1/images/push", json!({"image": "127.0.0.1:5000/other/app:1"})),
        ("/v1/containers", json!({"image": "busybox", "cmd": ["true"]})),
    ] {
        // Admins too: the allow-list is about supply, not privilege.
        let res = app.post(path, Role::Admin).json(&body).send().await.unwrap();
        let p = assert_problem(res, 403, "policy_violation").await;
        assert!(p["detail"].as_str().unwrap().contains("BERTH_ALLOWED_IMAGES"), "{p}");
    }
    // An allowed image runs.
    let mut cleanup = Cleanup::default();
    let name = unique("policy-allowed");
    cleanup.container(&name);
    let res = app
        .post("/v1/containers", Role::Operator)
        .json(&json!({"image": BASE_IMAGE, "name": name, "cmd": ["true"], "detach": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "{job}");
}

#[actix_web::test]
async fn containers_that_set_no_limits_get_the_defaults() {
    let app = spawn_app_with(|s| {
        s.policy.default_memory_bytes = Some(64 * 1024 * 1024);
        s.policy.default_nano_cpus = Some(500_000_000);
    })
    .await;
    let mut cleanup = Cleanup::default();
    let (dflt, own) = (unique("policy-default"), unique("policy-own"));
    cleanup.container(&dflt).container(&own);
    let run = |name: &str, extra: Value| {
        let mut body = json!({"image": BASE_IMAGE, "name": name, "cmd": ["sleep", "30"]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        app.post("/v1/containers", Role::Operator).json(&body).send()
    };
    let a: Value = run(&dflt, json!({})).await.unwrap().json().await.unwrap();
    assert_eq!(a["request"]["memory_bytes"], 64 * 1024 * 1024, "the job shows the applied default: {a}");
    let b: Value = run(&own, json!({"memory_bytes": 32 * 1024 * 1024})).await.unwrap().json().await.unwrap();
    for j in [&a, &b] {
        let j = app.wait_for_job(j["id"].as_str().unwrap(), Role::Operator).await;
        assert_eq!(j["state"], "succeeded", "{j}");
    }
    assert_eq!(docker(&["inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}", &dflt]), "67108864 500000000");
    assert_eq!(docker(&["inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}", &own]), "33554432 500000000");
}

/// A shell in a container with power over the host is a shell on the host: an operator may
/// not exec into, or attach to, what only an admin could create.
#[actix_web::test]
async fn exec_and_attach_into_a_host_powered_container_need_admin() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("policy-hostbind");
    cleanup.container(&name);
    let res = app
        .post("/v1/containers", Role::Admin)
        .json(&json!({"image": BASE_IMAGE, "name": name, "cmd": ["sleep", "60"], "binds": ["/tmp:/host-tmp:ro"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Admin).await;
    assert_eq!(job["state"], "succeeded", "{job}");

    let exec = json!({"cmd": ["sh", "-c", "ls /host-tmp"]});
    let res = app.post(&format!("/v1/containers/{name}/exec"), Role::Operator).json(&exec).send().await.unwrap();
    let p = assert_problem(res, 403, "policy_violation").await;
    assert!(p["detail"].as_str().unwrap().contains("binds"), "{p}");
    let res = crate::ws::handshake_get(&app, &format!("/v1/containers/{name}/attach"))
        .bearer_auth(app.token(Role::Operator))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "policy_violation").await;
    // The admin may.
    let res = app.post(&format!("/v1/containers/{name}/exec"), Role::Admin).json(&exec).send().await.unwrap();
    assert_eq!(res.status(), 201);
}

#[actix_web::test]
async fn tagging_into_an_allowed_name_is_checked_and_missing_networks_are_not_missing_images() {
    let app = spawn_app_with(|s| s.policy.allowed_images = vec!["berth-test/*".into()]).await;
    let res = app
        .post("/v1/images/tag", Role::Operator)
        .json(&json!({"source": BASE_IMAGE, "target": "evil/busybox:1"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "policy_violation").await;

    let app = spawn_app().await;
    let name = unique("policy-nonet");
    let mut cleanup = Cleanup::default();
    cleanup.container(&name);
    // An operator's run names a network they may not use (it does not exist): 404 at submit.
    let body = json!({"image": BASE_IMAGE, "name": name, "cmd": ["true"], "network": format!("{name}-net")});
    let res = app.post("/v1/containers", Role::Operator).json(&body).send().await.unwrap();
    let p = assert_problem(res, 404, "not_found").await;
    assert!(p["detail"].as_str().unwrap().contains("network"), "{p}");
    // An admin's is not checked at submit: the engine's answer fails the job.
    let res = app.post("/v1/containers", Role::Admin).json(&body).send().await.unwrap();
    let job: Value = res.json().await.unwrap();
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Admin).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_ne!(job["error"]["code"], "image_not_found", "the network is missing, not the image: {job}");
    assert!(job["error"]["message"].as_str().unwrap().contains("network"), "{job}");
}
