//! Teams and containers: another team's container is absent (404 as if it did not
//! exist, left out of lists), its own team and admin reach it; unmanaged containers
//! follow `BERTH_UNMANAGED`; callers cannot set `berth.*` labels.
//!
//! The team containers are made with the docker CLI carrying the labels Berth stamps
//! (`berth.team`, `berth.owner`): the scope rule reads only the labels.

use std::time::Duration;

use berth::auth::{Role, mint_team_token};
use berth::domain::scope::Unmanaged;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::*;
use crate::jobs::tar_of;
use crate::ws::handshake_get;

fn tok(app: &TestApp, sub: &str, role: Role, team: Option<&str>) -> String {
    mint_team_token(&app.settings.jwt, sub, &[role], team, Duration::from_secs(3600)).unwrap()
}

async fn get(app: &TestApp, path: &str, t: &str) -> reqwest::Response {
    app.client.get(app.url(path)).bearer_auth(t).send().await.unwrap()
}
async fn post(app: &TestApp, path: &str, t: &str) -> reqwest::Response {
    app.client.post(app.url(path)).bearer_auth(t).send().await.unwrap()
}

/// The names of the containers `t` lists with `query`.
async fn listed(app: &TestApp, query: &str, t: &str) -> Vec<String> {
    let res = get(app, &format!("/v1/containers?all=1&{query}"), t).await;
    assert_eq!(res.status(), 200);
    let list: Vec<Value> = res.json().await.unwrap();
    list.iter().flat_map(|c| c["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string())).collect()
}

async fn exec(app: &TestApp, name: &str, t: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/containers/{name}/exec")))
        .bearer_auth(t)
        .json(&json!({"cmd": ["true"]}))
        .send()
        .await
        .unwrap()
}

/// Every container route, as `t`, answers 404 `container_not_found` for `name`, in the
/// words of an absent container.
async fn all_absent(app: &TestApp, name: &str, t: &str) {
    let missing = unique("no-such");
    let res = get(app, &format!("/v1/containers/{missing}"), t).await;
    let absent = assert_problem(res, 404, "container_not_found").await["detail"].as_str().unwrap().replace(&missing, "X");
    let res = get(app, &format!("/v1/containers/{name}"), t).await;
    let p = assert_problem(res, 404, "container_not_found").await;
    assert_eq!(p["detail"].as_str().unwrap().replace(name, "X"), absent, "same words as an absent one");
    assert_problem(get(app, &format!("/v1/containers/{name}/logs"), t).await, 404, "container_not_found").await;
    for action in ["start", "stop", "restart", "kill"] {
        let res = post(app, &format!("/v1/containers/{name}/{action}"), t).await;
        assert_problem(res, 404, "container_not_found").await;
    }
    let res = app.client.delete(app.url(&format!("/v1/containers/{name}?force=1"))).bearer_auth(t).send().await.unwrap();
    assert_problem(res, 404, "container_not_found").await;
    assert_problem(exec(app, name, t).await, 404, "container_not_found").await;
    let res = handshake_get(app, &format!("/v1/containers/{name}/attach")).bearer_auth(t).send().await.unwrap();
    assert_problem(res, 404, "container_not_found").await;
}

#[actix_web::test]
async fn another_teams_container_is_absent_and_its_own_team_and_admin_reach_it() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("team-a-ctr");
    let id = run_container(&mut cleanup, &name, "echo hello-a; sleep 300", &["berth.team=team-a", "berth.owner=alice"]);
    let alice = tok(&app, "alice", Role::Operator, Some("team-a"));
    let amy = tok(&app, "amy", Role::Operator, Some("team-a"));
    let bob = tok(&app, "bob", Role::Operator, Some("team-b"));
    let nobody = tok(&app, "nobody", Role::Operator, None);
    let admin = tok(&app, "root", Role::Admin, None);

    // Team B and a token without a team: as if it did not exist, by name and by id.
    for t in [&bob, &nobody] {
        assert!(!listed(&app, &format!("name={name}"), t).await.contains(&name));
        all_absent(&app, &name, t).await;
        all_absent(&app, &id, t).await;
    }

    // Another member of team A reads and acts.
    assert!(listed(&app, &format!("name={name}"), &amy).await.contains(&name));
    let res = get(&app, &format!("/v1/containers/{name}"), &amy).await;
    assert_eq!(res.status(), 200);
    let res = get(&app, &format!("/v1/containers/{name}/logs"), &amy).await;
    assert_eq!(res.status(), 200);
    assert!(read_sse(res).await.iter().any(|(e, _, d)| e == "log" && d["text"].as_str().unwrap().contains("hello-a")));
    let res = exec(&app, &name, &amy).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    // Alice's exec instance is hers: Bob cannot start it.
    let res = exec(&app, &name, &alice).await;
    let exec_id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let res = handshake_get(&app, &format!("/v1/exec/{exec_id}/ws")).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let mut req = format!("ws://127.0.0.1:{}/v1/containers/{name}/attach", app.port).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {amy}").parse().unwrap());
    let (ws, res) = tokio_tungstenite::connect_async(req).await.expect("team A attaches");
    assert_eq!(res.status(), 101);
    drop(ws);
    assert_eq!(post(&app, &format!("/v1/containers/{name}/restart?timeout=0"), &amy).await.status(), 204);

    // Admin reaches it, and filters by team.
    assert!(listed(&app, &format!("name={name}"), &admin).await.contains(&name));
    assert!(listed(&app, &format!("name={name}&team=team-a"), &admin).await.contains(&name));
    assert!(!listed(&app, &format!("name={name}&team=team-b"), &admin).await.contains(&name));
    assert_problem(get(&app, "/v1/containers?team=Not%20A%20Team", &admin).await, 400, "invalid_request").await;
    assert_eq!(get(&app, &format!("/v1/containers/{name}"), &admin).await.status(), 200);
    assert_eq!(post(&app, &format!("/v1/containers/{name}/stop?timeout=0"), &admin).await.status(), 204);

    // Alice removes it.
    let res = app.client.delete(app.url(&format!("/v1/containers/{name}?force=1"))).bearer_auth(&alice).send().await.unwrap();
    assert_eq!(res.status(), 204);
}

#[actix_web::test]
async fn unmanaged_containers_are_team_defaults() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("unmanaged-default");
    run_container(&mut cleanup, &name, "sleep 300", &[]);
    let nobody = tok(&app, "nobody", Role::Operator, None);
    let defaults = tok(&app, "dee", Role::Operator, Some("default"));
    let alice = tok(&app, "alice", Role::Operator, Some("team-a"));

    for t in [&nobody, &defaults] {
        assert!(listed(&app, &format!("name={name}"), t).await.contains(&name));
        assert_eq!(get(&app, &format!("/v1/containers/{name}"), t).await.status(), 200);
        assert_eq!(post(&app, &format!("/v1/containers/{name}/restart?timeout=0"), t).await.status(), 204);
    }
    assert!(!listed(&app, &format!("name={name}"), &alice).await.contains(&name));
    all_absent(&app, &name, &alice).await;
}

#[actix_web::test]
async fn unmanaged_admin_makes_them_admin_only() {
    let app = spawn_app_with(|s| s.unmanaged = Unmanaged::Admin).await;
    let mut cleanup = Cleanup::default();
    let name = unique("unmanaged-admin");
    run_container(&mut cleanup, &name, "sleep 300", &[]);
    let nobody = tok(&app, "nobody", Role::Operator, None);
    let admin = tok(&app, "root", Role::Admin, Some("team-a"));

    assert!(!listed(&app, &format!("name={name}"), &nobody).await.contains(&name));
    all_absent(&app, &name, &nobody).await;
    assert!(listed(&app, &format!("name={name}"), &admin).await.contains(&name));
    assert_eq!(post(&app, &format!("/v1/containers/{name}/restart?timeout=0"), &admin).await.status(), 204);
}

#[actix_web::test]
async fn unmanaged_read_lets_everyone_read_and_only_admin_act() {
    let app = spawn_app_with(|s| s.unmanaged = Unmanaged::Read).await;
    let mut cleanup = Cleanup::default();
    let name = unique("unmanaged-read");
    run_container(&mut cleanup, &name, "echo hello-u; sleep 300", &[]);
    let admin = tok(&app, "root", Role::Admin, None);

    for t in [tok(&app, "nobody", Role::Operator, None), tok(&app, "alice", Role::Operator, Some("team-a"))] {
        assert!(listed(&app, &format!("name={name}"), &t).await.contains(&name));
        assert_eq!(get(&app, &format!("/v1/containers/{name}"), &t).await.status(), 200);
        assert_eq!(get(&app, &format!("/v1/containers/{name}/logs"), &t).await.status(), 200);
        for action in ["start", "stop", "restart", "kill"] {
            assert_problem(post(&app, &format!("/v1/containers/{name}/{action}"), &t).await, 403, "forbidden").await;
        }
        let res = app.client.delete(app.url(&format!("/v1/containers/{name}?force=1"))).bearer_auth(&t).send().await.unwrap();
        assert_problem(res, 403, "forbidden").await;
        assert_problem(exec(&app, &name, &t).await, 403, "forbidden").await;
        let res = handshake_get(&app, &format!("/v1/containers/{name}/attach")).bearer_auth(&t).send().await.unwrap();
        assert_problem(res, 403, "forbidden").await;
    }
    assert_eq!(post(&app, &format!("/v1/containers/{name}/restart?timeout=0"), &admin).await.status(), 204);
}

#[actix_web::test]
async fn callers_cannot_set_berth_labels() {
    let app = spawn_app().await;
    let alice = tok(&app, "alice", Role::Operator, Some("team-a"));
    let name = unique("forged");
    for labels in [json!({"berth.team": "team-b"}), json!({"ok": "1", "berth.owner": "bob"}), json!({"berth.job": "x"})] {
        let body = json!({"image": BASE_IMAGE, "name": name, "cmd": ["true"], "labels": labels});
        let res = app.client.post(app.url("/v1/containers")).bearer_auth(&alice).json(&body).send().await.unwrap();
        let p = assert_problem(res, 400, "invalid_request").await;
        assert!(p["detail"].as_str().unwrap().contains("berth."), "{p}");
    }
    assert!(!docker_ok(&["inspect", &name]), "nothing was run");
    let ctx = tar_of(&[("Dockerfile", format!("FROM {BASE_IMAGE}\n").as_bytes())]);
    let res = app
        .client
        .post(app.url("/v1/images/build"))
        .bearer_auth(&alice)
        .query(&[("tag", format!("{name}:1").as_str()), ("label", "berth.team=team-b")])
        .header("content-type", "application/x-tar")
        .body(ctx)
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 400, "invalid_request").await;
    assert!(p["detail"].as_str().unwrap().contains("berth.team"), "{p}");
}

fn docker_ok(args: &[&str]) -> bool {
    std::process::Command::new("docker").args(args).output().map(|o| o.status.success()).unwrap_or(false)
}
