//! Volumes, networks and prune plans against the real engine: lifecycles, 409 in use,
//! team scoping, a run that mounts its team's volume and joins its team's network, and
//! dry-run prunes that list what a real prune then removes.

use std::time::Duration;

use berth::auth::{Role, mint_team_token};
use serde_json::{Value, json};

use crate::helpers::{BASE_IMAGE, Cleanup, TestApp, assert_problem, docker, docker_quiet, spawn_app, unique};
use crate::jobs::{image_exists, submit_with};

/// Removes the volumes and networks a test made, when it ends.
#[derive(Default)]
struct Objects {
    volumes: Vec<String>,
    networks: Vec<String>,
}

impl Drop for Objects {
    fn drop(&mut self) {
        for n in &self.networks {
            docker_quiet(&["network", "rm", n]);
        }
        for v in &self.volumes {
            docker_quiet(&["volume", "rm", "-f", v]);
        }
    }
}

fn tok(app: &TestApp, sub: &str, role: Role, team: &str) -> String {
    mint_team_token(&app.settings.jwt, sub, &[role], Some(team), Duration::from_secs(3600)).unwrap()
}

async fn send(app: &TestApp, method: reqwest::Method, path: &str, t: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = app.client.request(method, app.url(path)).bearer_auth(t);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

async fn status(app: &TestApp, method: reqwest::Method, path: &str, t: &str, body: Option<Value>) -> u16 {
    send(app, method, path, t, body).await.status().as_u16()
}

fn volume_exists(name: &str) -> bool {
    std::process::Command::new("docker").args(["volume", "inspect", name]).output().unwrap().status.success()
}

fn network_exists(name: &str) -> bool {
    std::process::Command::new("docker").args(["network", "inspect", name]).output().unwrap().status.success()
}

use reqwest::Method as M;

#[actix_web::test]
async fn volumes_and_networks_are_the_teams_own() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let mut objects = Objects::default();
    let u = unique("objs");
    let (team_a, team_b) = (format!("a{}", &u[u.len() - 8..]), format!("b{}", &u[u.len() - 8..]));
    let a = tok(&app, "alice", Role::Operator, &team_a);
    let b = tok(&app, "bob", Role::Operator, &team_b);
    let admin = app.token(Role::Admin);
    let (vol, net) = (format!("{u}-vol"), format!("{u}-net"));
    objects.volumes.push(vol.clone());
    objects.networks.push(net.clone());

    // Volumes: made with the team's labels; a taken name is 409; another team sees nothing.
    let res = send(&app, M::POST, "/v1/volumes", &a, Some(json!({"name": vol, "labels": {"app": "x"}}))).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["location"], format!("/v1/volumes/{vol}").as_str());
    let v: Value = res.json().await.unwrap();
    assert_eq!((v["labels"]["berth.team"].as_str(), v["labels"]["app"].as_str()), (Some(team_a.as_str()), Some("x")));
    assert_eq!(v["driver"], "local");
    assert_eq!(docker(&["volume", "inspect", "-f", "{{index .Labels \"berth.team\"}}", &vol]), team_a);
    assert_problem(send(&app, M::POST, "/v1/volumes", &b, Some(json!({"name": vol}))).await, 409, "conflict").await;
    assert_problem(send(&app, M::GET, &format!("/v1/volumes/{vol}"), &b, None).await, 404, "not_found").await;
    assert_problem(send(&app, M::DELETE, &format!("/v1/volumes/{vol}"), &b, None).await, 404, "not_found").await;
    let listed = |list: Vec<Value>| list.iter().any(|v| v["name"] == vol.as_str());
    assert!(!listed(send(&app, M::GET, "/v1/volumes", &b, None).await.json().await.unwrap()));
    let mine: Vec<Value> = send(&app, M::GET, &format!("/v1/volumes?name={vol}"), &a, None).await.json().await.unwrap();
    assert!(listed(mine.clone()) && mine[0]["in_use"] == false, "{mine:?}");
    let res = send(&app, M::POST, "/v1/volumes", &a, Some(json!({"name": format!("{u}-x"), "labels": {"berth.team": "b"}}))).await;
    assert_problem(res, 400, "invalid_request").await;

    // Driver options that bind a host path are host power: the admin's only.
    let bind = json!({"name": format!("{u}-bind"), "driver_opts": {"type": "none", "o": "bind", "device": "/etc"}});
    let p = assert_problem(send(&app, M::POST, "/v1/volumes", &a, Some(bind.clone())).await, 403, "policy_violation").await;
    assert!(p["detail"].as_str().unwrap().contains("device=/etc"), "{p}");
    assert!(!volume_exists(&format!("{u}-bind")));
    objects.volumes.push(format!("{u}-bind"));
    assert_eq!(status(&app, M::POST, "/v1/volumes", &admin, Some(bind)).await, 201);
    let tmpfs = json!({"name": format!("{u}-tmp"), "driver_opts": {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}});
    objects.volumes.push(format!("{u}-tmp"));
    assert_eq!(status(&app, M::POST, "/v1/volumes", &a, Some(tmpfs)).await, 201);

    // Networks: the same rule.
    let res = send(&app, M::POST, "/v1/networks", &a, Some(json!({"name": net}))).await;
    assert_eq!(res.status(), 201);
    let n: Value = res.json().await.unwrap();
    let net_id = n["id"].as_str().unwrap().to_string();
    assert_eq!((n["labels"]["berth.team"].as_str(), n["driver"].as_str()), (Some(team_a.as_str()), Some("bridge")));
    assert_problem(send(&app, M::POST, "/v1/networks", &a, Some(json!({"name": net}))).await, 409, "conflict").await;
    assert_problem(send(&app, M::GET, &format!("/v1/networks/{net}"), &b, None).await, 404, "not_found").await;
    assert_problem(send(&app, M::GET, &format!("/v1/networks/{}", &net_id[..12]), &b, None).await, 404, "not_found").await;
    assert_eq!(status(&app, M::GET, &format!("/v1/networks/{}", &net_id[..12]), &a, None).await, 200);
    let theirs: Vec<Value> = send(&app, M::GET, "/v1/networks", &b, None).await.json().await.unwrap();
    assert!(theirs.iter().all(|n| n["name"] != net.as_str()));
    assert!(theirs.iter().any(|n| n["name"] == "bridge" && n["predefined"] == true), "the predefined networks are everyone's to read");
    for t in [&a, &admin] {
        assert_problem(send(&app, M::DELETE, "/v1/networks/bridge", t, None).await, 403, "forbidden").await;
    }

    // A run of team A mounts A's volume and joins A's network.
    let name = format!("{u}-run");
    cleanup.container(&name);
    let run = json!({"image": BASE_IMAGE, "name": name, "cmd": ["sh", "-c", "echo hi > /data/x && sleep 300"],
                     "volumes": [format!("{vol}:/data")], "network": net});
    let job = submit_with(&app, &a, "/v1/containers", &run).await;
    let job = app.wait_for_job_as(job["id"].as_str().unwrap(), &a).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(docker(&["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", &name]), vol);
    assert_eq!(docker(&["inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}", &name]), net);
    // Team B may neither join A's network nor mount A's volume.
    let other = json!({"image": BASE_IMAGE, "cmd": ["true"], "network": net});
    assert_problem(send(&app, M::POST, "/v1/containers", &b, Some(other)).await, 404, "not_found").await;
    let other = json!({"image": BASE_IMAGE, "cmd": ["true"], "volumes": [format!("{vol}:/data")]});
    assert_problem(send(&app, M::POST, "/v1/containers", &b, Some(other)).await, 403, "policy_violation").await;

    // In use: 409 for both.
    assert_problem(send(&app, M::DELETE, &format!("/v1/volumes/{vol}"), &a, None).await, 409, "conflict").await;
    assert_problem(send(&app, M::DELETE, &format!("/v1/networks/{net}"), &a, None).await, 409, "conflict").await;
    let n: Value = send(&app, M::GET, &format!("/v1/networks/{net}"), &a, None).await.json().await.unwrap();
    assert_eq!((n["in_use"].as_bool(), n["container_count"].as_u64()), (Some(true), Some(1)), "{n}");
    let v: Value = send(&app, M::GET, &format!("/v1/volumes/{vol}"), &a, None).await.json().await.unwrap();
    assert_eq!(v["in_use"], true);

    // Connect and disconnect a team-A container; team B cannot.
    let side = format!("{u}-side");
    crate::helpers::run_container(&mut cleanup, &side, "sleep 300", &[&format!("berth.team={team_a}")]);
    let body = json!({"container": side});
    assert_problem(send(&app, M::POST, &format!("/v1/networks/{net}/connect"), &b, Some(body.clone())).await, 404, "not_found").await;
    assert_eq!(status(&app, M::POST, &format!("/v1/networks/{net}/connect"), &a, Some(body.clone())).await, 204);
    assert!(docker(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", &side]).contains(&net));
    assert_problem(send(&app, M::POST, &format!("/v1/networks/{net}/connect"), &a, Some(body.clone())).await, 409, "conflict").await;
    assert_eq!(status(&app, M::POST, &format!("/v1/networks/{net}/disconnect"), &a, Some(body)).await, 204);
    assert!(!docker(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", &side]).contains(&net));

    // Once the run is gone, both go.
    docker(&["rm", "-f", &name]);
    assert_eq!(status(&app, M::DELETE, &format!("/v1/volumes/{vol}"), &a, None).await, 204);
    assert_eq!(status(&app, M::DELETE, &format!("/v1/networks/{net}"), &a, None).await, 204);
    assert!(!volume_exists(&vol) && !network_exists(&net));
}

/// Submit a prune as admin and wait for its end; the job.
async fn prune(app: &TestApp, path: &str, body: Value) -> Value {
    let job = submit_with(app, &app.token(Role::Admin), path, &body).await;
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Admin).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    job
}

fn deleted(job: &Value) -> Vec<String> {
    job["result"]["deleted"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

#[actix_web::test]
async fn a_dry_run_lists_what_the_prune_then_removes() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let mut objects = Objects::default();
    let u = unique("plan");
    let label = format!("berth-test.plan={u}");
    let filters = json!({"label": [label]});

    // An image no container uses (then one that does): `containers` counts them.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), format!("FROM {BASE_IMAGE}\nLABEL berth-test.plan={u}\n")).unwrap();
    let tag = format!("{u}:1");
    cleanup.image(&tag);
    let id = docker(&["build", "-q", "-t", &tag, dir.path().to_str().unwrap()]);
    let listed: Vec<Value> = app.get(&format!("/v1/images?label={label}"), Role::Viewer).send().await.unwrap().json().await.unwrap();
    assert_eq!((listed.len(), listed[0]["containers"].as_i64()), (1, Some(0)), "{listed:?}");
    let c = format!("{u}-c");
    cleanup.container(&c);
    docker(&["create", "--name", &c, &tag]);
    let listed: Vec<Value> = app.get(&format!("/v1/images?label={label}"), Role::Viewer).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed[0]["containers"], 1);
    let plan = prune(&app, "/v1/images/prune", json!({"all": true, "dry_run": true, "filters": filters})).await;
    assert!(deleted(&plan).is_empty(), "a container uses it: {plan}");
    docker(&["rm", &c]);

    let plan = prune(&app, "/v1/images/prune", json!({"all": true, "dry_run": true, "filters": filters})).await;
    assert_eq!(plan["result"]["dry_run"], true);
    assert_eq!(deleted(&plan), [id.clone()], "{plan}");
    assert!(plan["result"]["untagged"].as_array().unwrap().contains(&json!(format!("{tag}"))), "{plan}");
    assert!(image_exists(&tag), "the dry run removed nothing");
    let real = prune(&app, "/v1/images/prune", json!({"all": true, "filters": filters})).await;
    assert_eq!(real["result"]["dry_run"], false);
    assert!(deleted(&real).contains(&id), "{real}");
    assert!(!image_exists(&id), "the real prune removed it");

    // A volume and a network nobody uses.
    let (vol, net) = (format!("{u}-vol"), format!("{u}-net"));
    objects.volumes.push(vol.clone());
    objects.networks.push(net.clone());
    let admin = app.token(Role::Admin);
    let labels = json!({"berth-test.plan": u});
    assert_eq!(status(&app, M::POST, "/v1/volumes", &admin, Some(json!({"name": vol, "labels": labels}))).await, 201);
    assert_eq!(status(&app, M::POST, "/v1/networks", &admin, Some(json!({"name": net, "labels": labels}))).await, 201);
    for (path, name, exists) in
        [("/v1/volumes/prune", &vol, volume_exists as fn(&str) -> bool), ("/v1/networks/prune", &net, network_exists)]
    {
        let plan = prune(&app, path, json!({"dry_run": true, "filters": filters})).await;
        assert_eq!(deleted(&plan), [name.clone()], "{path}: {plan}");
        assert!(exists(name), "{path}: the dry run removed nothing");
        let excluded = prune(&app, path, json!({"dry_run": true, "filters": {"label": [label, "!berth-test.plan"]}})).await;
        assert!(deleted(&excluded).is_empty(), "{path}: `!key` excludes: {excluded}");
        let real = prune(&app, path, json!({"filters": filters})).await;
        assert_eq!(deleted(&real), [name.clone()], "{path}: {real}");
        assert!(!exists(name), "{path}: the real prune removed it");
    }

    // The build cache plans too; a volume prune takes no `until`.
    let plan = prune(&app, "/v1/build-cache/prune", json!({"dry_run": true, "all": true})).await;
    assert_eq!(plan["result"]["dry_run"], true, "{plan}");
    let res = send(&app, M::POST, "/v1/volumes/prune", &admin, Some(json!({"filters": {"until": "1h"}}))).await;
    assert_problem(res, 400, "invalid_request").await;
    let res = send(&app, M::POST, "/v1/volumes/prune", &app.token(Role::Operator), Some(json!({}))).await;
    assert_eq!(res.status(), 403);
}
