//! Walk every `/v1` operation of the live spec: 401 without a token, 403 for every role
//! below the one the operation's `bearer` scope names, and not 401/403 for that role.

use berth::auth::Role;
use serde_json::Value;

use crate::helpers::{assert_problem, spawn_app};

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "berth-role-matrix-x" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

fn role_of(op: &Value) -> Option<Role> {
    op["security"].as_array()?.iter().find_map(|req| {
        let scopes = req.get("bearer")?.as_array()?;
        scopes.first().and_then(|s| s.as_str()).and_then(Role::parse)
    })
}

#[actix_web::test]
async fn every_v1_operation_enforces_its_role() {
    let app = spawn_app().await;
    let spec: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let role = role_of(op).unwrap_or_else(|| panic!("{method} {path} names its role as the bearer scope"));
            let url = app.url(&concrete(path));
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let send = |token: Option<String>| {
                let mut rb = app.client.request(m.clone(), &url).header("content-type", "application/json").body("{}");
                if let Some(t) = token {
                    rb = rb.bearer_auth(t);
                }
                rb.send()
            };
            let res = send(None).await.unwrap();
            assert_problem(res, 401, "unauthorized").await;
            for lower in [Role::Viewer, Role::Operator, Role::Admin].into_iter().filter(|r| *r < role) {
                let res = send(Some(app.token(lower))).await.unwrap();
                let status = res.status().as_u16();
                assert_eq!(status, 403, "{method} {path} as {lower} (needs {role})");
                assert_problem(res, 403, "forbidden").await;
            }
            // The role itself gets past authorization (whatever the engine then says).
            if m != reqwest::Method::POST || !path.ends_with("/prune") {
                let res = send(Some(app.token(role))).await.unwrap();
                let status = res.status().as_u16();
                assert!(status != 401 && status != 403, "{method} {path} as {role}: {status}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "walked {checked} operations");
}
