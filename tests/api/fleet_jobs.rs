//! Jobs on a fleet of two real engines: A (the local engine, unix socket) and B (engine B
//! of `scripts/test-env.sh`, its own dockerd in its own network namespace, over tcp with
//! mutual TLS). A job runs on the host it names, each host has its own queues, and a
//! host that goes down takes only its own routes and jobs with it.

use std::process::Command;
use std::time::{Duration, Instant};

use berth::auth::{Role, mint_team_token};
use serde_json::{Value, json};

use crate::helpers::{BASE_IMAGE, REGISTRY, TestApp, assert_problem, spawn_app_with, unique};
use crate::jobs::submit;

const B_SOCK: &str = "unix:///tmp/berth-test-env/engine-b/docker.sock";
const B_TLS: &str = "/tmp/berth-test-env/engine-b/tls";
const B_URL: &str = "tcp://10.213.0.2:2376";

/// Engine B is shared by the tests of this binary: those that use it hold this for
/// reading, the one that stops and restarts it for writing.
pub static ENGINE_B: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn socket() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// `docker -H B ...`.
pub(crate) fn on_b(args: &[&str]) -> std::process::Output {
    Command::new("docker").arg("-H").arg(B_SOCK).args(args).output().unwrap()
}

/// Removes what a test made on each engine, even when it fails.
#[derive(Default)]
pub(crate) struct Made {
    pub(crate) containers: Vec<String>,
    images: Vec<String>,
}

impl Drop for Made {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
            let _ = on_b(&["rm", "-f", c]);
        }
        for i in &self.images {
            let _ = Command::new("docker").args(["rmi", "-f", i]).output();
            let _ = on_b(&["rmi", "-f", i]);
        }
    }
}

/// An app with hosts `a` (the local engine) and `b` (engine B over mutual TLS, one run
/// at a time), and `blue-b` (engine B over its socket, team `blue` only).
pub(crate) async fn fleet_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("engines.toml");
    let tls = format!("ca = \"{B_TLS}/ca.pem\"\ncert = \"{B_TLS}/client.pem\"\nkey = \"{B_TLS}/client-key.pem\"\n");
    std::fs::write(
        &file,
        format!(
            "[[engine]]\nname = \"a\"\nurl = \"{}\"\n\n\
             [[engine]]\nname = \"b\"\nurl = \"{B_URL}\"\n{tls}concurrency = {{ run = 1 }}\n\n\
             [[engine]]\nname = \"blue-b\"\nurl = \"{B_SOCK}\"\nteams = [\"blue\"]\n",
            socket()
        ),
    )
    .unwrap();
    let app = spawn_app_with(move |s| s.engines_file = Some(file)).await;
    std::mem::forget(dir); // the file is read at start; the temp dir is tiny
    app
}

fn names(list: &[Value]) -> Vec<String> {
    list.iter().flat_map(|c| c["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().trim_start_matches('/').to_string())).collect()
}

#[actix_web::test]
async fn a_job_runs_on_the_host_it_names_and_each_host_has_its_own_queue() {
    let _b = ENGINE_B.read().await;
    let app = fleet_app().await;
    let mut made = Made::default();
    let name = unique("fleet-run");
    made.containers.push(name.clone());

    // A run on B (by the body's `host`): on B's engine only, and the job says so.
    let run = json!({"image": BASE_IMAGE, "name": name, "cmd": ["sleep", "300"], "host": "b"});
    let job = submit(&app, "/v1/containers", &run, Role::Operator).await;
    assert_eq!(job["host"], "b", "{job}");
    assert!(job["request"].get("host").is_none(), "the host is the job's, not its request's: {job}");
    let done = app.wait_for_job(job["id"].as_str().unwrap(), Role::Operator).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let on_engine_b = on_b(&["inspect", "-f", "{{.State.Running}}", &name]);
    assert_eq!(String::from_utf8_lossy(&on_engine_b.stdout).trim(), "true", "running on B (docker -H B)");
    let on_engine_a = Command::new("docker").args(["inspect", &name]).output().unwrap();
    assert!(!on_engine_a.status.success(), "absent from A's engine");
    let list_b: Vec<Value> = app.get("/v1/containers?host=b", Role::Viewer).send().await.unwrap().json().await.unwrap();
    let list_a: Vec<Value> = app.get("/v1/containers", Role::Viewer).send().await.unwrap().json().await.unwrap();
    assert!(names(&list_b).contains(&name) && !names(&list_a).contains(&name), "listed under ?host=b only");
    // Jobs are filtered by host; their state events name it.
    let jobs_on = |host: &str| {
        let (client, url, t) = (app.client.clone(), app.url(&format!("/v1/jobs?host={host}&kind=run")), app.token(Role::Operator));
        async move { client.get(url).bearer_auth(t).send().await.unwrap().json::<Value>().await.unwrap()["items"].as_array().unwrap().clone() }
    };
    let id = job["id"].clone();
    assert!(jobs_on("b").await.iter().any(|j| j["id"] == id));
    assert!(!jobs_on("a").await.iter().any(|j| j["id"] == id));
    let events = app.job_events(id.as_str().unwrap(), Role::Operator).await;
    let states: Vec<&Value> = events.iter().filter(|(e, _, _)| e == "state" || e == "end").map(|(_, _, d)| d).collect();
    assert!(!states.is_empty() && states.iter().all(|d| d["host"] == "b"), "{states:?}");
    assert_problem(app.get("/v1/jobs?host=nowhere", Role::Viewer).send().await.unwrap(), 404, "host_not_found").await;
    // The audit log and the metrics name the host.
    let audit: Value = app.get(&format!("/v1/audit?job_id={}", id.as_str().unwrap()), Role::Admin).send().await.unwrap().json().await.unwrap();
    assert!(audit["items"].as_array().unwrap().iter().any(|r| r["action"] == "POST /v1/containers" && r["host"] == "b"), "{audit:?}");
    let metrics = app.get("/metrics", Role::Admin).send().await.unwrap().text().await.unwrap();
    let finished = metrics.lines().find(|l| l.starts_with("berth_jobs_finished_total{") && l.contains("kind=\"run\"") && l.contains("host=\"b\""));
    assert!(finished.is_some_and(|l| !l.ends_with(" 0")), "a run finished on b is counted on b");
    assert!(metrics.lines().any(|l| l.starts_with("berth_engine_request_duration_seconds_count{") && l.contains("host=\"b\"")), "engine calls by host");

    // `?host=` works for jobs as well; two different hosts in body and query are refused.
    let both = json!({"image": BASE_IMAGE, "cmd": ["true"], "host": "a"});
    let p = assert_problem(app.post("/v1/containers?host=b", Role::Operator).json(&both).send().await.unwrap(), 400, "invalid_request").await;
    assert!(p["detail"].as_str().unwrap().contains("name one host"), "{p}");
    let p = assert_problem(app.post("/v1/images/pull", Role::Operator).json(&json!({"image": BASE_IMAGE, "host": "nowhere"})).send().await.unwrap(), 404, "host_not_found").await;
    assert_eq!(p["host"], "nowhere", "{p}");
    // A host given to another team is absent for jobs too; the team it is given uses it.
    let team = |t: &str| mint_team_token(&app.settings.jwt, "fleet-test", &[Role::Operator], Some(t), Duration::from_secs(600)).unwrap();
    let pull_on_blue = json!({"image": BASE_IMAGE, "host": "blue-b"});
    let res = app.client.post(app.url("/v1/images/pull")).bearer_auth(team("green")).json(&pull_on_blue).send().await.unwrap();
    assert_problem(res, 404, "host_not_found").await;
    let res = app.client.post(app.url("/v1/images/pull?host=blue-b")).bearer_auth(team("green")).json(&json!({"image": BASE_IMAGE})).send().await.unwrap();
    assert_problem(res, 404, "host_not_found").await;
    let res = app.client.post(app.url("/v1/images/pull")).bearer_auth(team("blue")).json(&pull_on_blue).send().await.unwrap();
    assert_eq!(res.status(), 202);
    let blue_job: Value = res.json().await.unwrap();
    assert_eq!(blue_job["host"], "blue-b");
    let _ = app.wait_for_job_as(blue_job["id"].as_str().unwrap(), &team("blue")).await;

    // A flood on B (one run at a time there) does not delay a job on A.
    let slow = |i: usize| json!({"image": BASE_IMAGE, "cmd": ["sleep", "5"], "detach": false, "auto_remove": true, "labels": {"fleet.flood": format!("{name}-{i}")}, "host": "b"});
    let mut flood = Vec::new();
    for i in 0..4 {
        flood.push(submit(&app, "/v1/containers", &slow(i), Role::Operator).await["id"].as_str().unwrap().to_string());
    }
    let started = Instant::now();
    let quick = submit(&app, "/v1/containers", &json!({"image": BASE_IMAGE, "cmd": ["true"], "auto_remove": true}), Role::Operator).await;
    assert_eq!(quick["host"], "a", "the default host: {quick}");
    let quick = app.wait_for_job(quick["id"].as_str().unwrap(), Role::Operator).await;
    let took = started.elapsed();
    assert_eq!(quick["state"], "succeeded", "{quick}");
    assert!(took < Duration::from_secs(4), "A's job waited {took:?} behind B's flood");
    let get = |id: String| {
        let (client, url, t) = (app.client.clone(), app.url(&format!("/v1/jobs/{id}")), app.token(Role::Operator));
        async move { client.get(url).bearer_auth(t).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let mut running = 0;
    for id in &flood {
        let j = get(id.clone()).await;
        running += (j["state"] == "running") as usize;
        assert!(["queued", "running"].contains(&j["state"].as_str().unwrap()), "B's flood is still under way: {j}");
    }
    assert_eq!(running, 1, "B runs one at a time (its `concurrency.run`)");
    // Cancel acts on B's jobs: the running one's container on B stops.
    for id in &flood {
        let res = app.post(&format!("/v1/jobs/{id}/cancel"), Role::Operator).send().await.unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }
    for id in &flood {
        assert_eq!(app.wait_for_job(id, Role::Operator).await["state"], "canceled");
    }
    let left = on_b(&["ps", "-q", "--filter", &format!("label=fleet.flood={name}-0")]);
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty(), "the canceled run's container is gone from B");
}

#[actix_web::test]
async fn a_build_on_a_is_pushed_and_then_pulled_and_run_on_b() {
    let _b = ENGINE_B.read().await;
    let app = fleet_app().await;
    let mut made = Made::default();
    let repo = format!("{REGISTRY}/{}", unique("fleet-build"));
    let tag = format!("{repo}:1");
    made.images.push(tag.clone());
    let ctx = crate::jobs::tar_of(&[("Dockerfile", format!("FROM {BASE_IMAGE}\nRUN echo built-on-a > /where\n").as_bytes())]);
    let res = app
        .post(&format!("/v1/images/build?host=a&tag={tag}"), Role::Operator)
        .header("content-type", "application/x-tar")
        .body(ctx)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let build: Value = res.json().await.unwrap();
    assert_eq!(build["host"], "a");
    assert_eq!(app.wait_for_job(build["id"].as_str().unwrap(), Role::Operator).await["state"], "succeeded");
    assert!(!on_b(&["image", "inspect", &tag]).status.success(), "built on A, not on B");
    let push = submit(&app, "/v1/images/push", &json!({"image": tag, "host": "a"}), Role::Operator).await;
    assert_eq!(app.wait_for_job(push["id"].as_str().unwrap(), Role::Operator).await["state"], "succeeded");
    let pull = submit(&app, "/v1/images/pull?host=b", &json!({"image": tag}), Role::Operator).await;
    assert_eq!(pull["host"], "b");
    let pulled = app.wait_for_job(pull["id"].as_str().unwrap(), Role::Operator).await;
    assert_eq!(pulled["state"], "succeeded", "{pulled}");
    assert!(on_b(&["image", "inspect", &tag]).status.success(), "B has it now");
    let name = unique("fleet-built");
    made.containers.push(name.clone());
    let run = json!({"image": tag, "name": name, "cmd": ["cat", "/where"], "detach": false, "pull": "never", "host": "b"});
    let job = submit(&app, "/v1/containers", &run, Role::Operator).await;
    let done = app.wait_for_job(job["id"].as_str().unwrap(), Role::Operator).await;
    assert_eq!((done["state"].as_str(), done["result"]["exit_code"].as_i64()), (Some("succeeded"), Some(0)), "{done}");
    let events = app.job_events(job["id"].as_str().unwrap(), Role::Operator).await;
    assert!(events.iter().any(|(e, _, d)| e == "log" && d["text"].as_str().unwrap_or("").contains("built-on-a")), "{events:?}");
    assert!(on_b(&["inspect", &name]).status.success(), "the run's container is on B");
}

/// Stop engine B for real (its dockerd), then bring it back with the test-env script.
struct EngineBStopped;

impl EngineBStopped {
    fn stop() -> Self {
        let pid = std::fs::read_to_string("/tmp/berth-test-env/engine-b/pid").expect("engine B's pid file");
        let out = Command::new("kill").arg(pid.trim()).output().unwrap();
        assert!(out.status.success(), "stopping engine B: {}", String::from_utf8_lossy(&out.stderr));
        // Gone when its process is: it stops answering a little before it exits.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Command::new("kill").args(["-0", pid.trim()]).output().unwrap().status.success() {
            assert!(Instant::now() < deadline, "engine B did not stop");
            std::thread::sleep(Duration::from_millis(200));
        }
        EngineBStopped
    }
}

impl Drop for EngineBStopped {
    fn drop(&mut self) {
        let root = env!("CARGO_MANIFEST_DIR");
        let out = Command::new("bash").arg(format!("{root}/scripts/test-env.sh")).output().unwrap();
        assert!(out.status.success(), "restarting engine B: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[actix_web::test]
async fn with_b_down_a_keeps_serving_and_b_recovers_without_a_restart() {
    let _b = ENGINE_B.write().await;
    let app = fleet_app().await;
    let mut made = Made::default();
    assert_eq!(app.get("/v1/containers?host=b", Role::Viewer).send().await.unwrap().status(), 200, "B answers at first");
    // A job on A runs across B's outage.
    let name = unique("fleet-outage");
    made.containers.push(name.clone());
    let long = json!({"image": BASE_IMAGE, "name": name, "cmd": ["sh", "-c", "sleep 4; echo survived"], "detach": false});
    let job_a = submit(&app, "/v1/containers", &long, Role::Operator).await;

    let stopped = EngineBStopped::stop();
    let p = assert_problem(app.get("/v1/containers?host=b", Role::Viewer).send().await.unwrap(), 503, "docker_unavailable").await;
    assert_eq!(p["host"], "b", "the problem names the host: {p}");
    assert!(p["detail"].as_str().unwrap().contains("10.213.0.2"), "{p}");
    assert_eq!(app.get("/v1/containers?host=a", Role::Viewer).send().await.unwrap().status(), 200, "A keeps serving");
    let hosts: Vec<Value> = app.get("/v1/hosts", Role::Viewer).send().await.unwrap().json().await.unwrap();
    let health = |h: &str| hosts.iter().find(|x| x["name"] == h).unwrap()["healthy"].clone();
    assert_eq!((health("a"), health("b")), (json!(true), json!(false)), "{hosts:?}");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "ready: the default host answers");
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["host:b"], "unavailable", "{ready}");
    // A job for B while it is down fails with the engine's reason, naming B; A's finishes.
    let pull_b = submit(&app, "/v1/images/pull", &json!({"image": BASE_IMAGE, "host": "b"}), Role::Operator).await;
    let failed = app.wait_for_job(pull_b["id"].as_str().unwrap(), Role::Operator).await;
    assert_eq!((failed["state"].as_str(), failed["error"]["code"].as_str()), (Some("failed"), Some("docker_unavailable")), "{failed}");
    let done_a = app.wait_for_job(job_a["id"].as_str().unwrap(), Role::Operator).await;
    assert_eq!(done_a["state"], "succeeded", "A's job ran through B's outage: {done_a}");
    let events = app.job_events(job_a["id"].as_str().unwrap(), Role::Operator).await;
    assert!(events.iter().any(|(e, _, d)| e == "log" && d["text"].as_str().unwrap_or("").contains("survived")));

    // B comes back; Berth reconnects by itself.
    drop(stopped);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = app.get("/v1/containers?host=b", Role::Viewer).send().await.unwrap();
        if res.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "B did not recover: {}", res.text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let after = unique("fleet-after");
    made.containers.push(after.clone());
    let run = json!({"image": BASE_IMAGE, "name": after, "cmd": ["true"], "pull": "never", "host": "b"});
    let job = submit(&app, "/v1/containers", &run, Role::Operator).await;
    let done = app.wait_for_job(job["id"].as_str().unwrap(), Role::Operator).await;
    assert_eq!(done["state"], "succeeded", "B's jobs run again: {done}");
    assert!(on_b(&["inspect", &after]).status.success(), "on B's engine");
}
