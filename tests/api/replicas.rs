//! Several replicas on one PostgreSQL store, against the real engine: a job followed live
//! and resumed through the replica that does not run it, 200 jobs run once each within
//! the per-kind limit across replicas, the queue bound and idempotency keys held across
//! them, a cancel crossing replicas, and a replica killed with SIGKILL whose jobs the
//! survivor ends and whose queue it runs.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::auth::Role;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{BASE_IMAGE, TEST_SECRET, TestApp, assert_problem, docker, docker_quiet, read_sse, spawn_app_with, unique};
use crate::jobs::{assert_sequenced_and_ended, get_job, log_texts, states, submit, wait_until};

use berth::store::postgres::ScratchDb as TestDb;

/// A replica on `db`, in this process, named `name`.
async fn replica(db: &TestDb, name: &str, run_limit: usize, capacity: usize) -> TestApp {
    let (url, name) = (db.url.clone(), name.to_string());
    spawn_app_with(move |s| {
        s.database_url = Some(SecretString::from(url));
        s.replica_id = Some(name);
        s.lease_ttl = Duration::from_secs(2);
        s.concurrency.run = run_limit;
        s.queue_capacity = capacity;
    })
    .await
}

/// Removes the containers carrying a test's label, even when it fails.
struct Labelled(String);

impl Drop for Labelled {
    fn drop(&mut self) {
        let ids = Command::new("docker").args(["ps", "-aq", "--filter", &format!("label=test.berth={}", self.0)]).output();
        if let Ok(out) = ids {
            let ids = String::from_utf8_lossy(&out.stdout);
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                docker_quiet(&[&["rm", "-f", "-v"][..], &ids].concat());
            }
        }
    }
}

fn run_body(label: &str, script: &str, detach: bool) -> Value {
    json!({"image": BASE_IMAGE, "cmd": ["sh", "-c", script], "detach": detach, "labels": {"test.berth": label}})
}

fn ended(job: &Value) -> bool {
    !["queued", "running"].contains(&job["state"].as_str().unwrap())
}

#[actix_web::test]
async fn a_job_on_one_replica_is_followed_live_and_resumed_on_the_other() {
    let db = TestDb::new().await;
    let (name_a, name_b) = (unique("replica-a"), unique("replica-b"));
    let a = replica(&db, &name_a, 8, 100).await;
    let b = replica(&db, &name_b, 8, 100).await;
    let label = unique("follow");
    let _cleanup = Labelled(label.clone());
    // B's state feed, open before the job exists.
    let feed = b.get("/v1/events", Role::Operator).send().await.unwrap();
    assert_eq!(feed.status(), 200);
    let mut feed = crate::jobs::LiveSse::new(feed);

    let script = "for i in 1 2 3 4 5 6; do echo line$i; sleep 0.3; done";
    let job = submit(&a, "/v1/containers", &run_body(&label, script, false), Role::Operator).await;
    let id = job["id"].as_str().unwrap().to_string();
    let running = wait_until(&a, &id, Duration::from_secs(30), "running", |j| j["state"] == "running").await;
    let runner = running["replica"].as_str().expect("a claimed job names its replica").to_string();
    assert!([&name_a, &name_b].contains(&&runner), "{running}");
    // Follow it live through the replica that does not run it.
    let (runs, follows) = if runner == name_a { (&a, &b) } else { (&b, &a) };
    let res = follows.get(&format!("/v1/jobs/{id}/events"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let events = read_sse(res).await;
    assert_sequenced_and_ended(&events, "succeeded");
    let lines: Vec<String> = log_texts(&events, "stdout").into_iter().filter(|t| !t.starts_with("[berth]")).collect();
    assert_eq!(lines, ["line1", "line2", "line3", "line4", "line5", "line6"], "every line, live, through the other replica");
    assert_eq!(states(&events), ["queued", "running", "succeeded"]);
    // Resume on the follower from the middle: exactly the rest.
    let res = follows.get(&format!("/v1/jobs/{id}/events"), Role::Operator).header("Last-Event-ID", "3").send().await.unwrap();
    let rest = read_sse(res).await;
    let ids = |evs: &[(String, Option<String>, Value)]| evs.iter().map(|(e, i, d)| (e.clone(), i.clone(), d.clone())).collect::<Vec<_>>();
    assert_eq!(ids(&rest), ids(&events[3..]), "Last-Event-ID: 3 resumes at 4 on the other replica");
    // Both read the same record.
    assert_eq!(get_job(runs, &id).await, get_job(follows, &id).await);
    // B's /v1/events saw the job's state changes, wherever it ran.
    let seen = feed
        .until(Duration::from_secs(10), |(e, _, d)| e == "state" && d["job_id"] == id.as_str() && d["state"] == "succeeded")
        .await;
    let states_seen: Vec<&str> = seen.iter().filter(|(_, _, d)| d["job_id"] == id.as_str()).map(|(_, _, d)| d["state"].as_str().unwrap()).collect();
    assert!(states_seen.ends_with(&["running", "succeeded"]), "{states_seen:?}");
    // Readiness names the store and the replica; metrics show the lease, claims and lag.
    let ready: Value = reqwest::get(follows.url("/readyz")).await.unwrap().json().await.unwrap();
    assert_eq!(ready["checks"]["store_backend"], "postgres", "{ready}");
    assert_ne!(ready["checks"]["replica"], runner.as_str(), "{ready}");
    let scrape = |app: &TestApp| {
        let req = app.get("/metrics", Role::Admin);
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let value = |text: &str, family: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(family))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    let follower = scrape(follows).await;
    assert!(value(&follower, "berth_store_notification_lag_seconds_count") >= 6.0, "one per event it read");
    assert!(value(&follower, "berth_replica_lease_seconds_left") > 0.0);
    let claims = scrape(runs).await;
    assert!(value(&claims, "berth_job_claims_total{") >= 1.0, "the runner counted its claim");
}

/// 200 jobs submitted alternately to two replicas sharing a run limit of 3: each runs once
/// (one container each, one `running` event each), and never more than 3 at once in all.
#[actix_web::test]
async fn two_hundred_jobs_run_once_each_within_the_limit_across_replicas() {
    const JOBS: usize = 200;
    const LIMIT: usize = 3;
    let db = TestDb::new().await;
    let (name_a, name_b) = (unique("replica-a"), unique("replica-b"));
    let a = replica(&db, &name_a, LIMIT, 1000).await;
    let b = replica(&db, &name_b, LIMIT, 1000).await;
    let label = unique("many");
    let _cleanup = Labelled(label.clone());
    let mut ids = Vec::new();
    for i in 0..JOBS {
        let to = if i % 2 == 0 { &a } else { &b };
        let job = submit(to, "/v1/containers", &run_body(&label, "sleep 0.2", false), Role::Operator).await;
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    let mut jobs = Vec::new();
    for id in &ids {
        let app = if jobs.len() % 2 == 0 { &a } else { &b };
        jobs.push(wait_until(app, id, Duration::from_secs(300), "ended", ended).await);
    }
    let mut by_replica: HashMap<String, usize> = HashMap::new();
    let mut containers = HashSet::new();
    for job in &jobs {
        assert_eq!(job["state"], "succeeded", "{job}");
        *by_replica.entry(job["replica"].as_str().unwrap().to_string()).or_default() += 1;
        assert!(containers.insert(job["result"]["container_id"].as_str().unwrap().to_string()), "one container per job: {job}");
    }
    assert!(by_replica.keys().all(|r| *r == name_a || *r == name_b), "{by_replica:?}");
    // At the engine: exactly one container per job, labelled with its job.
    let on_engine = docker(&["ps", "-aq", "--no-trunc", "--filter", &format!("label=test.berth={label}")]);
    let on_engine: HashSet<String> = on_engine.split_whitespace().map(String::from).collect();
    assert_eq!(on_engine, containers, "the engine holds exactly the jobs' containers");
    // In the record: one `running` each.
    for id in ids.iter().step_by(10) {
        let events = a.job_events(id, Role::Operator).await;
        assert_eq!(states(&events).iter().filter(|s| *s == "running").count(), 1, "{id} ran once: {events:?}");
    }
    // Never more than LIMIT at once: the most overlapping [started_at, finished_at).
    let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    let mut edges: Vec<(chrono::DateTime<chrono::FixedOffset>, i32)> = Vec::new();
    for job in &jobs {
        edges.push((time(&job["started_at"]), 1));
        edges.push((time(&job["finished_at"]), -1));
    }
    edges.sort(); // at one instant, ends (-1) before starts (+1)
    let (mut now, mut most) = (0, 0);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    assert!(most <= LIMIT as i32, "at most {LIMIT} ran at once across both replicas; saw {most}");
    assert!(most >= 2, "the limit was reached at all (jobs overlapped): {most}");
    eprintln!("200 jobs: by replica {by_replica:?}, most at once {most}");
}

#[actix_web::test]
async fn the_queue_bound_idempotency_keys_and_cancels_hold_across_replicas() {
    let db = TestDb::new().await;
    let a = replica(&db, &unique("replica-a"), 1, 2).await;
    let b = replica(&db, &unique("replica-b"), 1, 2).await;
    let label = unique("bound");
    let _cleanup = Labelled(label.clone());
    // One runs (the limit is 1 in all), two wait: the queue (2) is full for both replicas.
    let long = submit(&a, "/v1/containers", &run_body(&label, "sleep 300", false), Role::Operator).await;
    let long = long["id"].as_str().unwrap().to_string();
    let running = wait_until(&b, &long, Duration::from_secs(30), "running", |j| j["state"] == "running").await;
    let q1 = submit(&b, "/v1/containers", &run_body(&label, "true", false), Role::Operator).await;
    let q2 = submit(&a, "/v1/containers", &run_body(&label, "true", false), Role::Operator).await;
    let full = b.post("/v1/containers", Role::Operator).json(&run_body(&label, "true", false)).send().await.unwrap();
    assert!(full.headers().contains_key("retry-after"));
    assert_problem(full, 429, "queue_full").await;
    let full = a.post("/v1/containers", Role::Operator).json(&run_body(&label, "true", false)).send().await.unwrap();
    assert_problem(full, 429, "queue_full").await;

    // The queued ones end at once when canceled, from either replica.
    for (job, via) in [(&q1, &a), (&q2, &b)] {
        let id = job["id"].as_str().unwrap();
        let res = via.post(&format!("/v1/jobs/{id}/cancel"), Role::Operator).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<Value>().await.unwrap()["state"], "canceled");
    }
    // An Idempotency-Key made on A answers the same job on B; another body is refused.
    let key = unique("key");
    let body = run_body(&label, "true", false);
    let first = a.post("/v1/containers", Role::Operator).header("Idempotency-Key", &key).json(&body).send().await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = b.post("/v1/containers", Role::Operator).header("Idempotency-Key", &key).json(&body).send().await.unwrap();
    assert_eq!(again.status(), 200, "the job made on the other replica");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    let other = run_body(&label, "echo other", false);
    let reused = b.post("/v1/containers", Role::Operator).header("Idempotency-Key", &key).json(&other).send().await.unwrap();
    assert_problem(reused, 422, "idempotency_key_reused").await;

    // Cancel the running job through the replica that does not run it.
    let runner = running["replica"].as_str().unwrap();
    let other_replica = if a.settings.replica_id.as_deref() == Some(runner) { &b } else { &a };
    let started = Instant::now();
    let res = other_replica.post(&format!("/v1/jobs/{long}/cancel"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let job = wait_until(&a, &long, Duration::from_secs(15), "ended", ended).await;
    assert_eq!(job["state"], "canceled", "{job}");
    assert!(started.elapsed() < Duration::from_secs(15), "the cancel crossed replicas in {:?}", started.elapsed());
    // The keyed job runs now that the slot is free.
    let keyed = wait_until(&b, first["id"].as_str().unwrap(), Duration::from_secs(60), "ended", ended).await;
    assert_eq!(keyed["state"], "succeeded", "{keyed}");
}

/// A Berth replica in a process of its own (so it can be killed), on `db`.
struct Process {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Process {
    fn start(db: &TestDb, name: &str) -> Self {
        let data = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("serve")
            .env("BERTH_JWT_SECRET", TEST_SECRET)
            .env("BERTH_LISTEN", format!("127.0.0.1:{port}"))
            .env("BERTH_DATA_DIR", data.path())
            .env("BERTH_DATABASE_URL", &db.url)
            .env("BERTH_REPLICA_ID", name)
            .env("BERTH_LEASE_TTL", "2s")
            .env("BERTH_CONCURRENCY_RUN", "2")
            .env("BERTH_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ok(host) = std::env::var("DOCKER_HOST") {
            cmd.env("DOCKER_HOST", host);
        }
        let child = cmd.spawn().expect("berth starts");
        Process { child, url: format!("http://127.0.0.1:{port}"), _data: data }
    }

    async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{}/readyz", self.url)).await.map(|r| r.status() != 200).unwrap_or(true) {
            assert!(Instant::now() < deadline, "replica at {} not ready in 30 s", self.url);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Replica A is killed with SIGKILL while it runs two attached runs and two more wait:
/// within the lease, B ends A's two `interrupted` (naming A) and stops their containers,
/// and runs the two that waited, each once. A restarted touches none of them.
#[actix_web::test]
async fn a_killed_replica_s_jobs_end_interrupted_and_its_queue_runs_on_the_survivor() {
    let db = TestDb::new().await;
    let name_a = unique("replica-a");
    let label = unique("killed");
    let _cleanup = Labelled(label.clone());
    let mut a = Process::start(&db, &name_a);
    a.ready().await;
    let client = reqwest::Client::new();
    let token = berth::auth::mint_token(&crate::helpers::test_settings(std::path::Path::new(".")).jwt, "test-operator", &[Role::Operator], Duration::from_secs(3600)).unwrap();
    let submit_a = |body: Value| {
        let (client, token, url) = (client.clone(), token.clone(), a.url.clone());
        async move {
            let res = client.post(format!("{url}/v1/containers")).bearer_auth(token).json(&body).send().await.unwrap();
            assert_eq!(res.status(), 202);
            res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
        }
    };
    // Two long runs (A's limit is 2) and two short ones that wait for a slot.
    let long = [submit_a(run_body(&label, "sleep 300", false)).await, submit_a(run_body(&label, "sleep 300", false)).await];
    let short = [submit_a(run_body(&label, "echo done", false)).await, submit_a(run_body(&label, "echo done", false)).await];

    let name_b = unique("replica-b");
    let b = replica(&db, &name_b, 2, 100).await;
    for id in &long {
        let job = wait_until(&b, id, Duration::from_secs(30), "running on A with its container", |j| {
            j["state"] == "running" && j["result"]["container_id"].is_string()
        })
        .await;
        assert_eq!(job["replica"], name_a.as_str(), "B started after A claimed them: {job}");
    }
    for id in &short {
        assert_eq!(get_job(&b, id).await["state"], "queued", "the limit of 2 holds across replicas");
    }
    let killed = Instant::now();
    a.kill();

    let mut interrupted = Vec::new();
    for id in &long {
        interrupted.push(wait_until(&b, id, Duration::from_secs(20), "ended", ended).await);
    }
    let took = killed.elapsed();
    eprintln!("a dead replica's jobs were interrupted {took:?} after SIGKILL (BERTH_LEASE_TTL=2s)");
    assert!(took < Duration::from_secs(6), "within the lease (2 s) and a sweep (0.5 s), with room: {took:?}");
    for job in interrupted {
        assert_eq!(job["state"], "interrupted", "{job}");
        assert_eq!(job["error"]["code"], "interrupted");
        let message = job["error"]["message"].as_str().unwrap();
        assert!(message.contains(&name_a), "the error names the dead replica: {message}");
        assert_eq!(job["replica"], name_b.as_str(), "B took it over: {job}");
        let cid = job["result"]["container_id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        while docker(&["inspect", "-f", "{{.State.Running}}", &cid]) == "true" {
            assert!(Instant::now() < deadline, "the interrupted run's container {cid} was not stopped");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for id in &short {
        let job = wait_until(&b, id, Duration::from_secs(60), "ended", ended).await;
        assert_eq!(job["state"], "succeeded", "{job}");
        assert_eq!(job["replica"], name_b.as_str(), "A's queued job ran on B: {job}");
        let events = b.job_events(id, Role::Operator).await;
        assert_eq!(states(&events), ["queued", "running", "succeeded"], "ran once");
        assert_eq!(log_texts(&events, "stdout").iter().filter(|t| *t == "done").count(), 1);
    }
    // Nothing is lost or run twice; A restarted (the next generation of its name) leaves
    // every one of them alone.
    let mut before = Vec::new();
    for id in long.iter().chain(&short) {
        before.push((get_job(&b, id).await, b.job_events(id, Role::Operator).await));
    }
    let a2 = Process::start(&db, &name_a);
    a2.ready().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (id, (job, events)) in long.iter().chain(&short).zip(before) {
        assert_eq!(get_job(&b, id).await, job, "A restarted changed nothing");
        assert_eq!(b.job_events(id, Role::Operator).await, events);
    }
    let listed = b.get("/v1/jobs?limit=100", Role::Operator).send().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 4, "no job lost, none made twice: {listed}");
}

/// Exec instances are in the memory of the replica that created them: another replica
/// answers 404 and says where it lives; the one that made it still starts it. Stream
/// tickets are in the shared store: any replica redeems one, once.
#[actix_web::test]
async fn exec_instances_are_their_replica_s_and_tickets_the_fleet_s() {
    let db = TestDb::new().await;
    let a = replica(&db, &unique("replica-a"), 8, 100).await;
    let b = replica(&db, &unique("replica-b"), 8, 100).await;
    let mut cleanup = crate::helpers::Cleanup::default();
    let name = unique("exec-replicas");
    crate::helpers::run_container(&mut cleanup, &name, "sleep 60", &[]);
    let res = a.post(&format!("/v1/containers/{name}/exec"), Role::Operator).json(&json!({"cmd": ["true"]})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let on_b = crate::ws::handshake_get(&b, &format!("/v1/exec/{id}/ws")).bearer_auth(b.token(Role::Operator)).send().await.unwrap();
    let problem = assert_problem(on_b, 404, "not_found").await;
    assert!(problem["detail"].as_str().unwrap().contains("same replica"), "{problem}");
    let on_a = crate::ws::handshake_get(&a, &format!("/v1/exec/{id}/ws")).bearer_auth(a.token(Role::Operator)).send().await.unwrap();
    assert_eq!(on_a.status(), 101, "the replica that made it starts it");

    // Stream tickets, unlike exec instances, are the fleet's: issued by A, spent on B, once.
    let res = a.post("/v1/tickets", Role::Viewer).json(&json!({"path": "/v1/events"})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let ticket = res.json::<Value>().await.unwrap()["ticket"].as_str().unwrap().to_string();
    let on_b = b.client.get(b.url(&format!("/v1/events?ticket={ticket}"))).send().await.unwrap();
    assert_eq!(on_b.status(), 200, "a ticket from A opens a stream on B");
    drop(on_b);
    let again = a.client.get(a.url(&format!("/v1/events?ticket={ticket}"))).send().await.unwrap();
    assert_problem(again, 401, "unauthorized").await;
}
