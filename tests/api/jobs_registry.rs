//! Push and pull jobs through the loopback registries (plain on :5000, htpasswd on :5001).

use berth::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{BASE_IMAGE, Cleanup, REGISTRY, TestApp, docker, docker_quiet, spawn_app, unique};
use crate::jobs::{Events, assert_sequenced_and_ended, image_exists, submit};

const AUTH_REGISTRY: &str = "127.0.0.1:5001";
const AUTH_USER: &str = "berth";
const AUTH_PASSWORD: &str = "s3cret-registry-pw";

/// Deletes pushed manifests from the registry when the test ends (the registry allows it).
#[derive(Default)]
pub(crate) struct PushedManifests(Vec<(String, String, String, bool)>);

impl PushedManifests {
    pub(crate) fn add(&mut self, registry: &str, repo: &str, digest: &str, auth: bool) {
        self.0.push((registry.into(), repo.into(), digest.into(), auth));
    }
}

impl Drop for PushedManifests {
    fn drop(&mut self) {
        for (registry, repo, digest, auth) in &self.0 {
            let url = format!("http://{registry}/v2/{repo}/manifests/{digest}");
            let mut args = vec!["-s", "-o", "/dev/null", "-X", "DELETE"];
            let creds = format!("{AUTH_USER}:{AUTH_PASSWORD}");
            if *auth {
                args.extend(["-u", creds.as_str()]);
            }
            args.push(&url);
            let _ = std::process::Command::new("curl").args(&args).output();
        }
    }
}

/// `docker build -t reference` of an image with a layer of its own; its id.
pub(crate) fn build_local(cleanup: &mut Cleanup, reference: &str, u: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {BASE_IMAGE}\nRUN echo {u} > /berth-test-id\nLABEL berth.test={u}\n"),
    )
    .unwrap();
    cleanup.image(reference);
    let id = docker(&["build", "-q", "-t", reference, dir.path().to_str().unwrap()]);
    assert!(id.starts_with("sha256:"), "{id}");
    cleanup.image(&id);
    id
}

async fn finished(app: &TestApp, path: &str, body: Value) -> (Value, Events) {
    let id = submit(app, path, &body, Role::Operator).await["id"].as_str().unwrap().to_string();
    let job = app.wait_for_job(&id, Role::Operator).await;
    let events = app.job_events(&id, Role::Operator).await;
    (job, events)
}

fn is_digest(s: &Value) -> bool {
    s.as_str().is_some_and(|d| d.starts_with("sha256:") && d.len() == 71 && d[7..].bytes().all(|b| b.is_ascii_hexdigit()))
}

fn of_kind<'a>(events: &'a Events, kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|(e, _, _)| e == kind).map(|(_, _, d)| d).collect()
}

#[actix_web::test]
async fn push_then_pull_through_the_registry() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let mut manifests = PushedManifests::default();
    let u = unique("push");
    let repo = format!("{u}/app");
    let reference = format!("{REGISTRY}/{repo}:1");
    let id = build_local(&mut cleanup, &reference, &u);

    let (job, events) = finished(&app, "/v1/images/push", json!({"image": reference})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["kind"], "push");
    let digest = job["result"]["digest"].as_str().unwrap_or_else(|| panic!("a digest: {job}")).to_string();
    assert!(is_digest(&job["result"]["digest"]), "{digest}");
    manifests.add(REGISTRY, &repo, &digest, false);
    assert_sequenced_and_ended(&events, "succeeded");
    let layers = of_kind(&events, "layer");
    assert!(!layers.is_empty(), "layer events: {events:?}");
    for l in &layers {
        let lid = l["id"].as_str().unwrap();
        assert!(lid.len() >= 12 && lid.bytes().all(|b| b.is_ascii_hexdigit()), "layer id: {l}");
        assert!(!l["status"].as_str().unwrap().is_empty(), "{l}");
    }
    assert!(
        layers.iter().any(|l| l["status"] == "Pushed"),
        "the image's own layer was pushed: {layers:?}"
    );
    let progress = of_kind(&events, "progress");
    assert!(!progress.is_empty(), "progress events: {events:?}");
    assert!(progress.iter().all(|p| p["phase"] == "pushing"), "{progress:?}");
    let last = progress.last().unwrap();
    assert!(last["layers_total"].as_u64().unwrap() >= 2, "base layer and own layer: {last}");
    assert_eq!(last["layers_done"], last["layers_total"], "{last}");
    assert_eq!(job["progress"]["phase"], "done");
    let repo_digests = docker(&["image", "inspect", "-f", "{{json .RepoDigests}}", &reference]);
    assert!(repo_digests.contains(&format!("{REGISTRY}/{repo}@{digest}")), "{repo_digests}");

    // Gone locally, then pulled back.
    docker(&["rmi", &reference]);
    assert!(!image_exists(&reference));
    let (job, events) = finished(&app, "/v1/images/pull", json!({"image": reference})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["kind"], "pull");
    assert_eq!(job["result"]["image_id"], id.as_str(), "the same image: {job}");
    assert_eq!(job["result"]["digest"], digest.as_str(), "{job}");
    assert!(image_exists(&reference));
    assert_eq!(docker(&["image", "inspect", "-f", "{{.Id}}", &reference]), id);
    assert_sequenced_and_ended(&events, "succeeded");
    assert!(!of_kind(&events, "progress").is_empty(), "{events:?}");
    let layers = of_kind(&events, "layer");
    assert!(layers.iter().all(|l| l["id"].as_str().is_some_and(|s| s.len() >= 12)), "{layers:?}");

    // Pull by digest as well.
    let by_digest = format!("{REGISTRY}/{repo}@{digest}");
    let (job, _) = finished(&app, "/v1/images/pull", json!({"image": by_digest})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["image_id"], id.as_str());
    assert_eq!(job["result"]["digest"], digest.as_str());
}

#[actix_web::test]
async fn pull_of_a_missing_image_fails_with_image_not_found() {
    let app = spawn_app().await;
    let u = unique("pull-missing");
    let reference = format!("{REGISTRY}/{u}/nope:1");
    let (job, events) = finished(&app, "/v1/images/pull", json!({"image": reference})).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "image_not_found", "{job}");
    assert!(job["error"]["message"].as_str().unwrap().contains("not found"), "Docker's message: {job}");
    assert_sequenced_and_ended(&events, "failed");
    let errs = of_kind(&events, "error");
    assert_eq!(errs.len(), 1, "{events:?}");
    assert_eq!(errs[0]["code"], "image_not_found");
    assert!(!image_exists(&reference));

    // Pushing an image that is not on the engine fails the same way.
    let (job, _) = finished(&app, "/v1/images/push", json!({"image": reference})).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "image_not_found", "{job}");
}

#[actix_web::test]
async fn the_auth_registry_needs_credentials_and_never_shows_them() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let mut manifests = PushedManifests::default();
    let u = unique("auth");
    let repo = format!("{u}/app");
    let reference = format!("{AUTH_REGISTRY}/{repo}:1");
    let id = build_local(&mut cleanup, &reference, &u);
    let creds = json!({"username": AUTH_USER, "password": AUTH_PASSWORD});
    let mut job_ids = Vec::new();

    // Without credentials, and with a wrong password: refused, with a code of its own.
    for (what, body) in [
        ("no credentials", json!({"image": reference})),
        ("wrong password", json!({"image": reference, "credentials": {"username": AUTH_USER, "password": "wrong-pw"}})),
    ] {
        let (job, events) = finished(&app, "/v1/images/push", body).await;
        assert_eq!(job["state"], "failed", "{what}: {job}");
        assert_eq!(job["error"]["code"], "registry_auth_failed", "{what}: {job}");
        assert!(job["error"]["message"].as_str().unwrap().contains(AUTH_REGISTRY), "{what}: names the registry: {job}");
        assert_sequenced_and_ended(&events, "failed");
        job_ids.push(job["id"].as_str().unwrap().to_string());
    }

    let (job, events) = finished(&app, "/v1/images/push", json!({"image": reference, "credentials": creds})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let digest = job["result"]["digest"].as_str().unwrap().to_string();
    assert!(is_digest(&job["result"]["digest"]));
    manifests.add(AUTH_REGISTRY, &repo, &digest, true);
    assert!(job["request"].get("credentials").is_none(), "the request is stored without credentials: {job}");
    assert_eq!(job["request"]["image"], reference.as_str());
    assert!(!of_kind(&events, "layer").is_empty());
    job_ids.push(job["id"].as_str().unwrap().to_string());

    docker(&["rmi", &reference]);
    let (job, _) = finished(&app, "/v1/images/pull", json!({"image": reference})).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "registry_auth_failed", "{job}");
    job_ids.push(job["id"].as_str().unwrap().to_string());
    let (job, _) = finished(&app, "/v1/images/pull", json!({"image": reference, "credentials": creds})).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["digest"], digest.as_str());
    assert_eq!(job["result"]["image_id"], id.as_str());
    job_ids.push(job["id"].as_str().unwrap().to_string());
    assert!(image_exists(&reference));

    // The password appears in no job, no event and no list.
    for jid in &job_ids {
        let text = app.get(&format!("/v1/jobs/{jid}"), Role::Operator).send().await.unwrap().text().await.unwrap();
        assert!(!text.contains(AUTH_PASSWORD) && !text.contains("wrong-pw"), "job {jid}: {text}");
        let res = app.get(&format!("/v1/jobs/{jid}/events"), Role::Operator).send().await.unwrap();
        let text = res.text().await.unwrap();
        assert!(!text.contains(AUTH_PASSWORD) && !text.contains("wrong-pw"), "events of {jid}: {text}");
    }
    let text = app.get("/v1/jobs", Role::Admin).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains(AUTH_PASSWORD) && !text.contains("wrong-pw"), "{text}");
    docker_quiet(&["rmi", &reference]);
}
