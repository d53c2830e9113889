//! Faults: the engine going away (behind a proxy we can cut, in front of the real engine)
//! and the job store refusing writes. The service stays up, answers clear 503s, and
//! recovers by itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth::auth::Role;
use serde_json::{Value, json};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::helpers::{BASE_IMAGE, Cleanup, assert_problem, spawn_app_with, unique};

/// A unix-socket proxy to the real engine that can be cut (every connection dropped, new
/// ones refused) and restored.
pub(crate) struct EngineProxy {
    path: PathBuf,
    cut: Arc<watch::Sender<bool>>,
}

impl EngineProxy {
    pub(crate) fn start(dir: &Path) -> Self {
        let path = dir.join("engine.sock");
        let listener = UnixListener::bind(&path).expect("bind proxy socket");
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let mut cut = rx.clone();
                if *cut.borrow() {
                    drop(client);
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(upstream) = UnixStream::connect("/var/run/docker.sock").await else { return };
                    let (mut a, mut b) = (client, upstream);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Self { path, cut: Arc::new(tx) }
    }

    pub(crate) fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }
    pub(crate) fn cut(&self) {
        self.cut.send_replace(true);
    }
    pub(crate) fn restore(&self) {
        self.cut.send_replace(false);
    }
}

async fn ready_status(app: &crate::helpers::TestApp) -> u16 {
    app.client.get(app.url("/readyz")).send().await.unwrap().status().as_u16()
}

#[actix_web::test]
async fn engine_going_away_fails_running_jobs_and_recovers_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = EngineProxy::start(dir.path());
    let host = proxy.host();
    let app = spawn_app_with(|s| s.docker_host = Some(host)).await;
    let mut cleanup = Cleanup::default();
    let name = unique("fault-run");
    cleanup.container(&name);
    assert_eq!(ready_status(&app).await, 200);

    // An attached run holds a live engine stream.
    let res = app
        .post("/v1/containers", Role::Operator)
        .json(&json!({"image": BASE_IMAGE, "name": name, "cmd": ["sh", "-c", "echo started; sleep 60"], "detach": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let j: Value = app.get(&format!("/v1/jobs/{id}"), Role::Operator).send().await.unwrap().json().await.unwrap();
        if j["progress"]["phase"] == "running" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "run never started: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    proxy.cut();
    let job = app.wait_for_job(&id, Role::Operator).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "docker_unavailable", "{job}");

    assert_eq!(ready_status(&app).await, 503);
    let res = app.get("/v1/images", Role::Viewer).send().await.unwrap();
    assert_problem(res, 503, "docker_unavailable").await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200, "the service stays up");

    proxy.restore();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ready_status(&app).await != 200 {
        assert!(std::time::Instant::now() < deadline, "readyz recovers by itself");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let res = app.get("/v1/images", Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200, "synchronous routes recover");
}

#[actix_web::test]
async fn a_store_that_refuses_writes_is_503_and_nothing_is_lost() {
    let app = spawn_app_with(|_| {}).await;
    // Let the dispatchers finish their first look at the queue.
    assert_eq!(ready_status(&app).await, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let db = app.data_dir.path().join("berth.db");
    // Another process holding the write lock: every write of Berth's times out.
    let locker = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        std::thread::sleep(Duration::from_secs(8));
        conn.execute_batch("ROLLBACK").unwrap();
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let res = app
        .post("/v1/images/pull", Role::Operator)
        .json(&json!({"image": "127.0.0.1:5000/berth-test/never-pulled:1"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(res, 503, "store_unavailable").await;
    assert!(problem["detail"].as_str().unwrap().contains("nothing was changed"), "{problem}");
    assert_eq!(ready_status(&app).await, 503, "readiness reports the store");
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);

    locker.join().unwrap();
    assert_eq!(ready_status(&app).await, 200, "recovers once the store is writable");
    let page: Value = app.get("/v1/jobs", Role::Operator).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 0, "the refused request made no job");
}
