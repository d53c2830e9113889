//! Teams and images, volumes and prune: `BERTH_TEAM_IMAGES` holds a non-admin's build
//! tags, tag targets, pushes and removals to their own team's names; named volumes are
//! mounted by the submitter's team; prune with `filters.team` touches only that team's
//! labelled objects.

use std::time::Duration;

use berth::auth::{Role, mint_team_token};
use serde_json::{Value, json};

use crate::helpers::{BASE_IMAGE, Cleanup, REGISTRY, TestApp, assert_problem, docker, docker_quiet, spawn_app, spawn_app_with, unique};
use crate::jobs::tar_of;

fn team_token(app: &TestApp, sub: &str, role: Role, team: Option<&str>) -> String {
    mint_team_token(&app.settings.jwt, sub, &[role], team, Duration::from_secs(3600)).unwrap()
}

async fn post(app: &TestApp, token: &str, path: &str, body: &Value) -> reqwest::Response {
    app.client.post(app.url(path)).bearer_auth(token).json(body).send().await.unwrap()
}

async fn delete(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.client.delete(app.url(path)).bearer_auth(token).send().await.unwrap()
}

/// A 403 `policy_violation` naming the reference and the variable.
async fn refused(res: reqwest::Response, reference: &str) {
    let p = assert_problem(res, 403, "policy_violation").await;
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains(reference) && detail.contains("BERTH_TEAM_IMAGES"), "{p}");
}

fn image_exists(reference: &str) -> bool {
    std::process::Command::new("docker").args(["image", "inspect", reference]).output().unwrap().status.success()
}

#[actix_web::test]
async fn team_images_hold_build_tags_tag_targets_pushes_and_removals() {
    let app = spawn_app_with(|s| s.policy.team_images = vec![format!("{REGISTRY}/{{team}}/*")]).await;
    let (a, b) = (unique("team-a"), unique("team-b"));
    let op_a = team_token(&app, "alice", Role::Operator, Some(&a));
    let op_b = team_token(&app, "bob", Role::Operator, Some(&b));
    let no_team = team_token(&app, "carol", Role::Operator, None);
    let admin = team_token(&app, "root", Role::Admin, Some(&b));
    let mut cleanup = Cleanup::default();
    let built = format!("{REGISTRY}/{a}/app:1");
    let theirs = format!("{REGISTRY}/{b}/app:1");
    cleanup.image(&built).image(&theirs);

    // Build tags.
    let ctx = tar_of(&[("Dockerfile", format!("FROM {BASE_IMAGE}\nLABEL berth-test-unique={a}\n").as_bytes())]);
    let build = |token: &str, tag: &str| {
        app.client
            .post(app.url("/v1/images/build"))
            .bearer_auth(token)
            .query(&[("tag", tag)])
            .header("content-type", "application/x-tar")
            .body(ctx.clone())
            .send()
    };
    refused(build(&op_b, &built).await.unwrap(), &built).await;
    refused(build(&no_team, &built).await.unwrap(), &built).await;
    let res = build(&op_a, &built).await.unwrap();
    assert_eq!(res.status(), 202, "the team's own name");
    let job: Value = res.json().await.unwrap();
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Admin).await;
    assert_eq!(job["state"], "succeeded", "{job}");

    // Tag targets: B may not give an image A's name; an admin names anything.
    let second = format!("{REGISTRY}/{a}/app:2");
    cleanup.image(&second);
    refused(post(&app, &op_b, "/v1/images/tag", &json!({"source": built, "target": second})).await, &second).await;
    refused(post(&app, &op_a, "/v1/images/tag", &json!({"source": built, "target": "evil/app:1"})).await, "evil/app:1").await;
    assert_eq!(post(&app, &op_a, "/v1/images/tag", &json!({"source": built, "target": second})).await.status(), 201);
    assert_eq!(post(&app, &admin, "/v1/images/tag", &json!({"source": built, "target": theirs})).await.status(), 201);

    // Pushes are refused before any job is made.
    refused(post(&app, &op_b, "/v1/images/push", &json!({"image": built})).await, &built).await;
    let res = post(&app, &op_a, "/v1/images/push", &json!({"image": second})).await;
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Admin).await;
    assert_eq!(job["state"], "succeeded", "{job}");

    // Removal by name.
    refused(delete(&app, &op_b, &format!("/v1/images/{second}")).await, &second).await;
    refused(delete(&app, &no_team, &format!("/v1/images/{second}")).await, &second).await;
    assert_eq!(delete(&app, &op_a, &format!("/v1/images/{second}")).await.status(), 200);
    assert!(!image_exists(&second) && image_exists(&built));

    // Removal by id (and id prefix): every tag must be the team's; B's tag holds it.
    let id = docker(&["image", "inspect", "-f", "{{.Id}}", &built]);
    let prefix = id.trim_start_matches("sha256:")[..12].to_string();
    for given in [&id, &prefix] {
        refused(delete(&app, &op_a, &format!("/v1/images/{given}")).await, &theirs).await;
        refused(delete(&app, &op_b, &format!("/v1/images/{given}")).await, &built).await;
    }
    assert!(image_exists(&built) && image_exists(&theirs), "nothing removed");
    // The admin is not held to it; with B's tag gone, A removes the image by its id prefix.
    assert_eq!(delete(&app, &admin, &format!("/v1/images/{theirs}")).await.status(), 200);
    assert_eq!(delete(&app, &op_a, &format!("/v1/images/{prefix}")).await.status(), 200);
    assert!(!image_exists(&built));
}

#[actix_web::test]
async fn without_team_images_names_are_free_as_before() {
    let app = spawn_app().await;
    let op = team_token(&app, "alice", Role::Operator, Some("blue"));
    let mut cleanup = Cleanup::default();
    let target = format!("{}:1", unique("free"));
    cleanup.image(&target);
    assert_eq!(post(&app, &op, "/v1/images/tag", &json!({"source": BASE_IMAGE, "target": target})).await.status(), 201);
    assert_eq!(delete(&app, &op, &format!("/v1/images/{target}")).await.status(), 200);
}

#[actix_web::test]
async fn a_member_of_b_cannot_mount_a_volume_of_a() {
    let app = spawn_app().await;
    let (a, b) = (unique("vol-a"), unique("vol-b"));
    let volume = unique("team-volume");
    docker(&["volume", "create", "--label", &format!("berth.team={a}"), &volume]);
    struct Gone(String);
    impl Drop for Gone {
        fn drop(&mut self) {
            docker_quiet(&["volume", "rm", "-f", &self.0]);
        }
    }
    let mut cleanup = Cleanup::default();
    let name = unique("team-volume-run");
    cleanup.container(&name);
    let _gone = Gone(volume.clone());
    let body = json!({"image": BASE_IMAGE, "name": name, "cmd": ["true"], "volumes": [format!("{volume}:/data")]});
    for token in [team_token(&app, "bob", Role::Operator, Some(&b)), team_token(&app, "carol", Role::Operator, None)] {
        let p = assert_problem(post(&app, &token, "/v1/containers", &body).await, 403, "policy_violation").await;
        assert!(p["detail"].as_str().unwrap().contains(&volume), "{p}");
    }
    let res = post(&app, &team_token(&app, "alice", Role::Operator, Some(&a)), "/v1/containers", &body).await;
    assert_eq!(res.status(), 202, "a member of A mounts A's volume");
    let job: Value = res.json().await.unwrap();
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Admin).await;
    assert_eq!(job["state"], "succeeded", "checked again before the create, with the job's team: {job}");
}

#[actix_web::test]
async fn prune_with_team_touches_only_that_teams_labelled_objects() {
    let app = spawn_app().await;
    let (a, b) = (unique("prune-a"), unique("prune-b"));
    // Both carry the test's own label too, and the prune filters by it: nothing else on
    // the engine is at risk even if the team filter were ignored.
    let mark = unique("prune-mark");
    let mut cleanup = Cleanup::default();
    let (mine, other) = (unique("prune-mine"), unique("prune-other"));
    cleanup.container(&mine).container(&other);
    for (name, team) in [(&mine, &a), (&other, &b)] {
        let labels = [format!("berth.team={team}"), format!("berth-test-mark={mark}")];
        docker(&["create", "--name", name, "--label", &labels[0], "--label", &labels[1], BASE_IMAGE, "true"]);
    }
    let admin = team_token(&app, "root", Role::Admin, None);
    let filters = json!({"label": [format!("berth-test-mark={mark}")], "team": a});
    let op = team_token(&app, "alice", Role::Operator, Some(&a));
    assert_problem(post(&app, &op, "/v1/containers/prune", &json!({"filters": filters})).await, 403, "forbidden").await;
    let bad = json!({"filters": {"label": [format!("berth-test-mark={mark}")], "team": "Not A Team"}});
    assert_problem(post(&app, &admin, "/v1/containers/prune", &bad).await, 400, "invalid_request").await;
    assert_problem(post(&app, &admin, "/v1/images/prune", &bad).await, 400, "invalid_request").await;

    let res = post(&app, &admin, "/v1/containers/prune", &json!({"filters": filters})).await;
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Admin).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let deleted: Vec<String> = serde_json::from_value(job["result"]["deleted"].clone()).unwrap();
    let exists = |n: &str| std::process::Command::new("docker").args(["container", "inspect", n]).output().unwrap().status.success();
    assert!(!exists(&mine), "team A's stopped container is pruned");
    assert!(exists(&other), "team B's is not");
    assert_eq!(deleted.len(), 1, "{job}");
}
