//! Teams for jobs: a team's jobs are its members' (list, get, events, cancel, delete,
//! `/v1/events`), absent (404) to other teams and to tokens without a team, reachable by
//! admins (`?team=`); runs and builds are stamped `berth.team`, `berth.owner`, `berth.job`.

use std::time::Duration;

use berth::auth::{Role, mint_team_token};
use serde_json::{Value, json};

use crate::helpers::{BASE_IMAGE, Cleanup, TestApp, assert_problem, docker, spawn_app, unique};
use crate::jobs::{LiveSse, cheap_job, submit_with, tar_of};

fn team_token(app: &TestApp, sub: &str, role: Role, team: &str) -> String {
    mint_team_token(&app.settings.jwt, sub, &[role], Some(team), Duration::from_secs(3600)).unwrap()
}

/// A unique team name.
fn team(what: &str) -> String {
    format!("{what}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

async fn send(app: &TestApp, method: reqwest::Method, path: &str, token: &str) -> reqwest::Response {
    app.client.request(method, app.url(path)).bearer_auth(token).send().await.unwrap()
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    let res = send(app, reqwest::Method::GET, path, token).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

async fn wait_ended(app: &TestApp, id: &str, token: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let job = get_json(app, &format!("/v1/jobs/{id}"), token).await;
        if !["queued", "running"].contains(&job["state"].as_str().unwrap()) {
            return job;
        }
        assert!(std::time::Instant::now() < deadline, "job {id} still running: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_string()).collect()
}

#[actix_web::test]
async fn a_teams_jobs_are_its_members_and_absent_to_other_teams() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let (ta, tb) = (team("ta"), team("tb"));
    let (a1, a2, a3, b) = (unique("a1"), unique("a2"), unique("a3"), unique("b"));
    let a1_op = team_token(&app, &a1, Role::Operator, &ta);
    let a2_view = team_token(&app, &a2, Role::Viewer, &ta);
    let a3_op = team_token(&app, &a3, Role::Operator, &ta);
    let b_op = team_token(&app, &b, Role::Operator, &tb);
    let nt_op = app.token_for(&unique("noteam"), Role::Operator);
    let admin = app.token_for(&unique("admin"), Role::Admin);

    let job = submit_with(&app, &a1_op, "/v1/containers", &cheap_job()).await;
    assert_eq!(job["team"], ta.as_str(), "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    wait_ended(&app, &id, &a1_op).await;
    let path = format!("/v1/jobs/{id}");

    // Another member of A sees it: get, list (with `owner=` any subject of the team), events.
    assert_eq!(get_json(&app, &path, &a2_view).await["owner"], a1.as_str());
    assert!(ids(&get_json(&app, "/v1/jobs", &a2_view).await).contains(&id));
    assert_eq!(ids(&get_json(&app, &format!("/v1/jobs?owner={a1}"), &a2_view).await), [id.clone()]);
    assert!(ids(&get_json(&app, &format!("/v1/jobs?team={ta}"), &a2_view).await).contains(&id));
    assert_eq!(send(&app, reqwest::Method::GET, &format!("{path}/events"), &a2_view).await.status(), 200);

    // Team B and a token without a team: as if it did not exist.
    for token in [&b_op, &nt_op] {
        for (m, p) in [
            (reqwest::Method::GET, path.clone()),
            (reqwest::Method::GET, format!("{path}/events")),
            (reqwest::Method::POST, format!("{path}/cancel")),
            (reqwest::Method::DELETE, path.clone()),
        ] {
            assert_problem(send(&app, m.clone(), &p, token).await, 404, "job_not_found").await;
        }
        assert!(!ids(&get_json(&app, "/v1/jobs", token).await).contains(&id));
        assert!(!ids(&get_json(&app, &format!("/v1/jobs?owner={a1}&limit=1000"), &b_op).await).contains(&id));
        assert_problem(send(&app, reqwest::Method::GET, &format!("/v1/jobs?team={ta}"), token).await, 403, "forbidden").await;
    }
    // B's own list holds only B's jobs.
    let bjob = submit_with(&app, &b_op, "/v1/containers", &cheap_job()).await["id"].as_str().unwrap().to_string();
    let page = get_json(&app, "/v1/jobs", &b_op).await;
    assert_eq!(ids(&page), [bjob.clone()], "{page}");
    assert_problem(send(&app, reqwest::Method::GET, &format!("/v1/jobs/{bjob}"), &a1_op).await, 404, "job_not_found").await;

    // Admin reaches both, and filters by team.
    assert_eq!(get_json(&app, &path, &admin).await["team"], ta.as_str());
    let page = get_json(&app, &format!("/v1/jobs?team={ta}&limit=1000"), &admin).await;
    assert!(ids(&page).contains(&id) && !ids(&page).contains(&bjob), "{page}");
    assert!(page["items"].as_array().unwrap().iter().all(|j| j["team"] == ta.as_str()), "{page}");
    assert_problem(send(&app, reqwest::Method::GET, "/v1/jobs?team=Not%20A%20Team", &admin).await, 400, "invalid_request").await;

    // An operator of A cancels another member's running job; a viewer of A may not delete.
    let name = unique("team-cancel");
    cleanup.container(&name);
    let long = json!({"image": BASE_IMAGE, "name": name, "cmd": ["sleep", "60"], "detach": false});
    let running = submit_with(&app, &a1_op, "/v1/containers", &long).await["id"].as_str().unwrap().to_string();
    assert_problem(send(&app, reqwest::Method::POST, &format!("/v1/jobs/{running}/cancel"), &b_op).await, 404, "job_not_found").await;
    let res = send(&app, reqwest::Method::POST, &format!("/v1/jobs/{running}/cancel"), &a3_op).await;
    assert_eq!(res.status(), 200);
    assert_eq!(wait_ended(&app, &running, &a3_op).await["state"], "canceled");
    assert_problem(send(&app, reqwest::Method::DELETE, &path, &a2_view).await, 403, "forbidden").await;
    assert_eq!(send(&app, reqwest::Method::DELETE, &path, &a3_op).await.status(), 204);
    assert_eq!(send(&app, reqwest::Method::DELETE, &format!("/v1/jobs/{bjob}"), &admin).await.status(), 204);
}

#[actix_web::test]
async fn the_state_feed_of_one_team_carries_nothing_of_another() {
    let app = spawn_app().await;
    let (ta, tb) = (team("fa"), team("fb"));
    let (a1, a2, b) = (unique("fa1"), unique("fa2"), unique("fb"));
    let a1_op = team_token(&app, &a1, Role::Operator, &ta);
    let b_op = team_token(&app, &b, Role::Operator, &tb);
    let open = |token: String| app.client.get(app.url("/v1/events")).bearer_auth(token).send();
    let mut sse_a2 = LiveSse::new(open(team_token(&app, &a2, Role::Viewer, &ta)).await.unwrap());
    let mut sse_b = LiveSse::new(open(b_op.clone()).await.unwrap());
    let mut sse_nt = LiveSse::new(open(app.token_for(&unique("fnt"), Role::Viewer)).await.unwrap());

    let ended = |id: String| move |(e, _, d): &(String, Option<String>, Value)| e == "state" && d["job_id"] == id.as_str() && d["state"] == "failed";
    let job_a = submit_with(&app, &a1_op, "/v1/containers", &cheap_job()).await["id"].as_str().unwrap().to_string();
    // Another member of A follows A's job.
    let got = sse_a2.until(Duration::from_secs(30), ended(job_a.clone())).await;
    assert!(got.iter().any(|(_, _, d)| d["job_id"] == job_a.as_str() && d["owner"] == a1.as_str() && d["state"] == "queued"), "{got:?}");
    // B's feed (and a no-team token's) shows B's job and nothing of A's, which came first.
    let job_b = submit_with(&app, &b_op, "/v1/containers", &cheap_job()).await["id"].as_str().unwrap().to_string();
    let got_b = sse_b.until(Duration::from_secs(30), ended(job_b.clone())).await;
    assert!(got_b.iter().all(|(_, _, d)| d["job_id"] == job_b.as_str()), "only B's jobs: {got_b:?}");
    // A viewer without a team owns no job: another subject's jobs (of either kind) never reach it.
    submit_with(&app, &app.token_for(&unique("fnt2"), Role::Operator), "/v1/containers", &cheap_job()).await;
    let heard = tokio::time::timeout(Duration::from_secs(3), sse_nt.until(Duration::from_secs(60), |_| true)).await;
    assert!(heard.is_err(), "a no-team viewer sees no one else's jobs: {heard:?}");
}

#[actix_web::test]
async fn runs_and_builds_are_stamped_with_team_owner_and_job() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let (ta, a1) = (team("st"), unique("st-owner"));
    let tok = team_token(&app, &a1, Role::Operator, &ta);
    let label = |kind: &str, obj: &str, key: &str| {
        docker(&[kind, "inspect", "-f", &format!("{{{{index .Config.Labels \"{key}\"}}}}"), obj])
    };

    let name = unique("stamp-run");
    cleanup.container(&name);
    let body = json!({"image": BASE_IMAGE, "name": name, "cmd": ["true"], "detach": false, "labels": {"app": "x"}});
    let id = submit_with(&app, &tok, "/v1/containers", &body).await["id"].as_str().unwrap().to_string();
    let job = wait_ended(&app, &id, &tok).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(label("container", &name, "berth.team"), ta);
    assert_eq!(label("container", &name, "berth.owner"), a1);
    assert_eq!(label("container", &name, "berth.job"), id);
    assert_eq!(label("container", &name, "app"), "x");

    let tag = format!("{}:1", unique("stamp-build"));
    cleanup.image(&tag);
    let ctx = tar_of(&[("Dockerfile", format!("FROM {BASE_IMAGE}\nLABEL app=y\n").as_bytes())]);
    let res = app
        .client
        .post(app.url("/v1/images/build"))
        .bearer_auth(&tok)
        .query(&[("tag", tag.as_str())])
        .header("content-type", "application/x-tar")
        .body(ctx)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    let bid = job["id"].as_str().unwrap().to_string();
    assert!(job["request"]["labels"].get("berth.team").is_none(), "stamped at execution, not stored: {job}");
    let job = wait_ended(&app, &bid, &tok).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(label("image", &tag, "berth.team"), ta);
    assert_eq!(label("image", &tag, "berth.owner"), a1);
    assert_eq!(label("image", &tag, "berth.job"), bid);
    assert_eq!(label("image", &tag, "app"), "y");
}

#[actix_web::test]
async fn audit_records_carry_the_callers_team() {
    let app = spawn_app().await;
    let (ta, a1) = (team("au"), unique("au-owner"));
    let tok = team_token(&app, &a1, Role::Operator, &ta);
    let id = submit_with(&app, &tok, "/v1/containers", &cheap_job()).await["id"].as_str().unwrap().to_string();
    let nt = unique("au-noteam");
    submit_with(&app, &app.token_for(&nt, Role::Operator), "/v1/containers", &cheap_job()).await;
    let admin = app.token_for(&unique("au-admin"), Role::Admin);
    let recs = get_json(&app, &format!("/v1/audit?subject={a1}"), &admin).await;
    let rec = recs["items"].as_array().unwrap().iter().find(|r| r["job_id"] == id.as_str()).cloned();
    let rec = rec.unwrap_or_else(|| panic!("the submit is audited: {recs}"));
    assert_eq!(rec["team"], ta.as_str(), "{rec}");
    let recs = get_json(&app, &format!("/v1/audit?subject={nt}"), &admin).await;
    assert!(recs["items"].as_array().unwrap().iter().all(|r| r["team"] == "default"), "{recs}");
    assert!(!recs["items"].as_array().unwrap().is_empty(), "{recs}");
}
