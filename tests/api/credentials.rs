//! Server-side registry credentials (a docker `config.json`), request credentials
//! overriding them, and the password never showing: not in job records, events, error
//! bodies, the audit log, nor any log line of the real binary (at debug level).

use std::time::Duration;

use base64::Engine as _;
use berth::auth::{Role, mint_token};
use serde_json::{Value, json};

use crate::helpers::{Cleanup, docker, docker_quiet, unique};
use crate::jobs_queue::Berth;
use crate::jobs_registry::{PushedManifests, build_local};

const AUTH_REGISTRY: &str = "127.0.0.1:5001";
const AUTH_USER: &str = "berth";
const AUTH_PASSWORD: &str = "s3cret-registry-pw";
const WRONG: &str = "wr0ng-pw-berth-test";

#[actix_web::test]
async fn configured_credentials_are_used_and_no_password_is_ever_shown() {
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{AUTH_USER}:{AUTH_PASSWORD}"));
    let config = dir.path().join("config.json");
    std::fs::write(&config, json!({"auths": {AUTH_REGISTRY: {"auth": auth}}}).to_string()).unwrap();
    let log = dir.path().join("berth.log");
    let mut berth = Berth::spawn_with(
        &dir.path().join("data"),
        log.clone(),
        &[("BERTH_REGISTRY_AUTH_FILE", config.display().to_string()), ("RUST_LOG", "debug".into())],
    );
    let client = reqwest::Client::new();
    berth.wait_healthy(&client).await;
    let jwt = crate::helpers::test_settings(dir.path()).jwt;
    let operator = mint_token(&jwt, "creds-operator", &[Role::Operator], Duration::from_secs(600)).unwrap();
    let admin = mint_token(&jwt, "creds-admin", &[Role::Admin], Duration::from_secs(600)).unwrap();

    let mut cleanup = Cleanup::default();
    let mut manifests = PushedManifests::default();
    let u = unique("creds-file");
    let repo = format!("{u}/app");
    let reference = format!("{AUTH_REGISTRY}/{repo}:1");
    build_local(&mut cleanup, &reference, &u);

    let run = |path: &'static str, body: Value| {
        let (client, url, token) = (client.clone(), berth.url(path), operator.clone());
        async move {
            let res = client.post(url).bearer_auth(&token).json(&body).send().await.unwrap();
            assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
            res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
        }
    };
    let wait = |id: String| {
        let (client, base, token) = (client.clone(), berth.url(""), operator.clone());
        async move {
            for _ in 0..600 {
                let job: Value =
                    client.get(format!("{base}/v1/jobs/{id}")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
                if !["queued", "running"].contains(&job["state"].as_str().unwrap()) {
                    return job;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("job {id} did not end");
        }
    };

    // No credentials in the request: the server's, for this registry host.
    let push = wait(run("/v1/images/push", json!({"image": reference})).await).await;
    assert_eq!(push["state"], "succeeded", "{push}");
    manifests.add(AUTH_REGISTRY, &repo, push["result"]["digest"].as_str().unwrap(), true);
    docker(&["rmi", &reference]);
    let pull = wait(run("/v1/images/pull", json!({"image": reference})).await).await;
    assert_eq!(pull["state"], "succeeded", "{pull}");
    assert_eq!(pull["result"]["digest"], push["result"]["digest"]);

    // Request credentials override the server's: a wrong password fails, clearly.
    let bad = wait(
        run("/v1/images/pull", json!({"image": reference, "credentials": {"username": AUTH_USER, "password": WRONG}})).await,
    )
    .await;
    assert_eq!(bad["state"], "failed", "{bad}");
    assert_eq!(bad["error"]["code"], "registry_auth_failed", "{bad}");

    // A password in the wrong place of a body: 400, and the problem does not echo it.
    let res = client
        .post(berth.url("/v1/images/pull"))
        .bearer_auth(&operator)
        .json(&json!({"image": reference, "credentials": format!("{AUTH_USER}:{WRONG}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body = res.text().await.unwrap();
    assert!(!body.contains(WRONG), "the error body does not echo the secret: {body}");

    // Nothing the API shows holds either password.
    let mut shown = String::new();
    for path in ["/v1/jobs?limit=1000".to_string(), "/v1/audit?limit=1000".to_string()] {
        shown += &client.get(berth.url(&path)).bearer_auth(&admin).send().await.unwrap().text().await.unwrap();
    }
    for id in [&push["id"], &pull["id"], &bad["id"]] {
        let id = id.as_str().unwrap();
        shown += &client.get(berth.url(&format!("/v1/jobs/{id}"))).bearer_auth(&admin).send().await.unwrap().text().await.unwrap();
        shown +=
            &client.get(berth.url(&format!("/v1/jobs/{id}/events"))).bearer_auth(&admin).send().await.unwrap().text().await.unwrap();
    }
    assert!(shown.contains(&reference), "the searched text is the real output");
    assert!(shown.contains("\"action\":\"POST /v1/images/pull\""), "the audit log recorded the pulls");
    for secret in [AUTH_PASSWORD, WRONG, auth.as_str()] {
        assert!(!shown.contains(secret), "`{secret}` shown by the API");
    }

    // Nor any log line, at debug level.
    berth.kill();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("berth::audit"), "the log has audit lines");
    for secret in [AUTH_PASSWORD, WRONG, auth.as_str(), operator.as_str()] {
        assert!(!text.contains(secret), "a secret reached the log");
    }
    docker_quiet(&["rmi", &reference]);
}
