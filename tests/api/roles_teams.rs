//! The role matrix's team dimension: every `/v1` operation of the live spec is sent by a
//! member of the object's own team, by a member of another team (both with the role the
//! operation names) and by an admin, naming team A's objects.
//!
//! Judged here: the team-image operations (`BERTH_TEAM_IMAGES`): another team's names
//! answer 403 `policy_violation`, the own team and admin get past it; every other
//! operation gets past authorization for all three.
//! Containers and jobs by id are team A's real ones: another team gets 404
//! `container_not_found`/`job_not_found`, the own team and admin get past it.

use std::time::Duration;

use berth::auth::{Role, mint_team_token};
use serde_json::{Value, json};

use crate::helpers::{BASE_IMAGE, Cleanup, REGISTRY, assert_problem, docker, spawn_app_with, unique};

/// Containers and jobs by id are scoped by team: another team's answer 404.
const SCOPED_BY_ID: bool = true;

fn role_of(op: &Value) -> Option<Role> {
    op["security"].as_array()?.iter().find_map(|req| {
        let scopes = req.get("bearer")?.as_array()?;
        scopes.first().and_then(|s| s.as_str()).and_then(Role::parse)
    })
}

/// Whether `BERTH_TEAM_IMAGES` judges this operation (the name in its path or body).
fn team_image_op(method: &str, path: &str) -> bool {
    matches!(
        (method, path),
        ("delete", "/v1/images/{reference}") | ("post", "/v1/images/tag") | ("post", "/v1/images/push") | ("post", "/v1/images/build")
    )
}

#[actix_web::test]
async fn every_v1_operation_is_judged_by_team() {
    let app = spawn_app_with(|s| s.policy.team_images = vec![format!("{REGISTRY}/{{team}}/*")]).await;
    let (a, b) = (unique("matrix-a"), unique("matrix-b"));
    let token = |sub: &str, role: Role, team: Option<&str>| {
        mint_team_token(&app.settings.jwt, sub, &[role], team, Duration::from_secs(3600)).unwrap()
    };
    // Team A's image name (an extra tag of the base image: removing it by name untags only).
    let mut cleanup = Cleanup::default();
    let named = format!("{REGISTRY}/{a}/matrix:1");
    cleanup.image(&named);
    docker(&["tag", BASE_IMAGE, &named]);
    // Team A's container and job, made through Berth.
    let name = unique("matrix-box");
    cleanup.container(&name);
    let run = json!({"image": BASE_IMAGE, "name": name, "cmd": ["sleep", "60"]});
    let res = app.client.post(app.url("/v1/containers")).bearer_auth(token("alice", Role::Operator, Some(&a))).json(&run).send().await.unwrap();
    assert_eq!(res.status(), 202);
    let job_id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let container_id = loop {
        let res = app.client.get(app.url(&format!("/v1/jobs/{job_id}"))).bearer_auth(token("alice", Role::Viewer, Some(&a))).send().await.unwrap();
        let job: Value = res.json().await.unwrap();
        if let Some(id) = job["result"]["container_id"].as_str().filter(|_| job["state"] == "succeeded") {
            break id.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "A's run: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let spec: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut judged = (0, 0);
    for (path, item) in spec["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let role = role_of(op).unwrap_or_else(|| panic!("{method} {path} names its role"));
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let concrete: String = path
                .split('/')
                .map(|seg| match seg {
                    "{reference}" => named.as_str(),
                    "{id}" if path.starts_with("/v1/containers/") => container_id.as_str(),
                    "{id}" if path.starts_with("/v1/jobs/") => job_id.as_str(),
                    s if s.starts_with('{') => "berth-role-matrix-x",
                    s => s,
                })
                .collect::<Vec<_>>()
                .join("/");
            let (content_type, body) = match path.as_str() {
                "/v1/images/tag" => ("application/json", json!({"source": BASE_IMAGE, "target": named}).to_string()),
                "/v1/images/push" => ("application/json", json!({"image": named}).to_string()),
                "/v1/images/build" => ("application/x-tar", String::new()),
                _ => ("application/json", "{}".to_string()),
            };
            let send = |t: String| {
                let mut rb = app.client.request(m.clone(), app.url(&concrete)).bearer_auth(t).header("content-type", content_type);
                if path == "/v1/images/build" {
                    rb = rb.query(&[("tag", named.as_str())]);
                }
                rb.body(body.clone()).send()
            };
            // Never sent, not even once: an admin's prune with an empty filter would prune
            // the whole shared engine (every stopped container, unused volume and
            // network). The role matrix covers who may prune.
            if m == reqwest::Method::POST && path.ends_with("/prune") {
                continue;
            }
            let other = send(token("bob", role, Some(&b))).await.unwrap();
            if team_image_op(method, path) {
                let p = assert_problem(other, 403, "policy_violation").await;
                assert!(p["detail"].as_str().unwrap().contains(&named), "{method} {path}: {p}");
                judged.0 += 1;
            } else {
                let status = other.status().as_u16();
                assert!(status != 401 && status != 403, "{method} {path} as another team's {role}: {status}");
                if SCOPED_BY_ID && (path.starts_with("/v1/containers/{") || path.starts_with("/v1/jobs/{")) {
                    // 404 as if absent; or 400 when the input is refused before any lookup
                    // (a WebSocket route without a handshake, an exec without `cmd`).
                    assert!(status == 404 || status == 400, "{method} {path} as another team: {status}");
                }
                judged.1 += 1;
            }
            // The own team (another member) and admin get past authorization and the
            // team-image rule. The image's removal comes last: the admin's asks again.
            // A's container and job stay for the operations after this one.
            if m == reqwest::Method::DELETE && (path == "/v1/containers/{id}" || path == "/v1/jobs/{id}") {
                continue;
            }
            for (who, t) in [("own team", token("alice2", role, Some(&a))), ("admin", token("root", Role::Admin, Some(&b)))] {
                let res = send(t).await.unwrap();
                let status = res.status().as_u16();
                // Not read: streams (events, logs) stay open.
                assert!(status != 401 && status != 403, "{method} {path} as {who}: {status}");
            }
        }
    }
    assert_eq!(judged.0, 4, "the four team-image operations");
    assert!(judged.1 >= 20, "walked {} other operations", judged.1);
}
