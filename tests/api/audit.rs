//! `GET /v1/audit`: every mutating request and every refused one, queryable by admins.

use berth::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

async fn audit(app: &crate::helpers::TestApp, query: &str) -> Value {
    let res = app.get(&format!("/v1/audit{query}"), Role::Admin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[actix_web::test]
async fn mutating_and_refused_requests_are_recorded_and_queryable() {
    let app = spawn_app().await;
    // A job made (success, with its job id), a refusal for want of a role, one for want of a
    // token, a rejected body, and reads (not recorded).
    let res = app
        .post("/v1/images/pull", Role::Operator)
        .header("x-request-id", "audit-test-pull-1")
        .json(&json!({"image": "127.0.0.1:5000/berth-test/audit-never:1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    let res = app.post("/v1/containers/some-ctr/stop", Role::Viewer).send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;
    let res = app.client.delete(app.url("/v1/containers/other-ctr")).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
    let res = app.post("/v1/images/tag", Role::Operator).json(&json!({"source": "UPPER", "target": "x"})).send().await.unwrap();
    assert_problem(res, 400, "invalid_reference").await;
    app.get("/v1/images", Role::Viewer).send().await.unwrap();

    let page = audit(&app, "").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "reads are not recorded: {page}");
    let (rejected, unauth, denied, pull) = (&items[0], &items[1], &items[2], &items[3]);
    assert_eq!(pull["subject"], "test-operator");
    assert_eq!(pull["role"], "operator");
    assert_eq!(pull["action"], "POST /v1/images/pull");
    assert_eq!(pull["target"], "image=127.0.0.1:5000/berth-test/audit-never:1");
    assert_eq!(pull["outcome"], "success");
    assert_eq!(pull["status"], 202);
    assert_eq!(pull["job_id"], job["id"]);
    assert_eq!(pull["client"], "127.0.0.1");
    assert_eq!(pull["request_id"], "audit-test-pull-1");
    assert!(chrono::DateTime::parse_from_rfc3339(pull["at"].as_str().unwrap()).is_ok());

    assert_eq!(denied["subject"], "test-viewer");
    assert_eq!((denied["outcome"].as_str(), denied["status"].as_u64(), denied["code"].as_str()), (Some("denied"), Some(403), Some("forbidden")));
    assert_eq!(denied["action"], "POST /v1/containers/{id}/stop");
    assert_eq!(denied["target"], "id=some-ctr");
    assert!(unauth["subject"].is_null(), "no valid token, no subject: {unauth}");
    assert_eq!((unauth["outcome"].as_str(), unauth["code"].as_str()), (Some("denied"), Some("unauthorized")));
    assert_eq!((rejected["outcome"].as_str(), rejected["code"].as_str()), (Some("rejected"), Some("invalid_reference")));

    // Filters and cursor pages.
    let denied_only = audit(&app, "?outcome=denied").await;
    assert_eq!(denied_only["items"].as_array().unwrap().len(), 2);
    let mine = audit(&app, "?subject=test-viewer").await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    let by_job = audit(&app, &format!("?job_id={}", job["id"].as_str().unwrap())).await;
    assert_eq!(by_job["items"][0]["action"], "POST /v1/images/pull");
    let first = audit(&app, "?limit=3").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let cursor = first["next_cursor"].as_str().expect("a next page").to_string();
    let second = audit(&app, &format!("?limit=3&cursor={cursor}")).await;
    // Four records in all (the audit reads are GETs, not recorded): 3 + 1, oldest last.
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["action"], "POST /v1/images/pull");
    assert!(second["next_cursor"].is_null());

    // Admins only; bad filters are 400.
    let res = app.get("/v1/audit", Role::Operator).send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;
    for q in ["?limit=0", "?limit=5000", "?outcome=maybe", "?cursor=..%2F"] {
        let res = app.get(&format!("/v1/audit{q}"), Role::Admin).send().await.unwrap();
        assert_problem(res, 400, "invalid_request").await;
    }
}

#[actix_web::test]
async fn an_anonymous_flood_is_counted_not_stored_one_by_one() {
    let app = spawn_app().await;
    for _ in 0..50 {
        let res = app.client.delete(app.url("/v1/containers/flood")).send().await.unwrap();
        assert_eq!(res.status(), 401);
    }
    // A token-holder's refusals are always stored.
    for _ in 0..40 {
        let res = app.post("/v1/containers/flood/stop", Role::Viewer).send().await.unwrap();
        assert_eq!(res.status(), 403);
    }
    let page = audit(&app, "?outcome=denied&limit=1000").await;
    let items = page["items"].as_array().unwrap();
    let anonymous = items.iter().filter(|r| r["subject"].is_null()).count();
    let viewer = items.iter().filter(|r| r["subject"] == "test-viewer").count();
    assert_eq!(anonymous, 30, "anonymous refusals stored up to the per-minute budget");
    assert_eq!(viewer, 40);
}
