//! `berth watch`: the real binary against a live Berth and the real engine and registry,
//! read by its output and exit code (0 succeeded, 1 failed, 2 usage or connection errors).

use std::process::{Output, Stdio};

use berth::auth::Role;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

use crate::helpers::{BASE_IMAGE, Cleanup, REGISTRY, TestApp, docker, spawn_app, unique};

fn berth_watch(url: &str, token: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.arg("watch").env("BERTH_URL", url).env("BERTH_TOKEN", token).kill_on_drop(true);
    c
}

async fn watch(url: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let out: Output = tokio::time::timeout(std::time::Duration::from_secs(120), berth_watch(url, token).args(args).output())
        .await
        .expect("berth watch ends within 120 s")
        .expect("berth runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    (out.status.code().expect("an exit code, not a signal"), stdout, stderr)
}

async fn submit(app: &TestApp, path: &str, body: &Value) -> String {
    let res = app.post(path, Role::Operator).json(body).send().await.unwrap();
    assert_eq!(res.status(), 202);
    res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
}

/// An image with a layer of its own (3 MB of random bytes) in the loopback registry and
/// not in the engine, so that a pull downloads it.
fn image_only_in_the_registry(cleanup: &mut Cleanup) -> String {
    let reference = format!("{REGISTRY}/{}:1", unique("watch"));
    let dir = tempfile::tempdir().unwrap();
    let blob: Vec<u8> = (0..3_000_000).map(|_| rand_byte()).collect();
    std::fs::write(dir.path().join("blob"), blob).unwrap();
    std::fs::write(dir.path().join("Dockerfile"), format!("FROM {BASE_IMAGE}\nCOPY blob /blob\n")).unwrap();
    cleanup.image(&reference);
    docker(&["build", "-q", "-t", &reference, dir.path().to_str().unwrap()]);
    docker(&["push", "-q", &reference]);
    docker(&["rmi", &reference]);
    reference
}

fn rand_byte() -> u8 {
    uuid::Uuid::new_v4().as_bytes()[0]
}

#[actix_web::test]
async fn a_pull_shows_its_layers_to_100_percent_and_exits_0() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let image = image_only_in_the_registry(&mut cleanup);
    let id = submit(&app, "/v1/images/pull", &json!({"image": image})).await;
    let (code, out, err) = watch(&app.address, &app.token(Role::Operator), &[&id]).await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(!out.contains('\x1b'), "no escape codes when stdout is not a terminal:\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.iter().any(|l| l.ends_with(": Pull complete")), "a layer completes:\n{out}");
    assert!(lines.iter().any(|l| l.contains(": Downloading ") && l.contains("MiB")), "layer bytes:\n{out}");
    assert!(lines.iter().any(|l| l.starts_with("progress: pulling 100% ") && l.contains("(2/2 layers)")), "overall 100%:\n{out}");
    assert_eq!(lines.first(), Some(&"state: queued"), "{out}");
    assert_eq!(lines.last().copied(), Some(format!("job {id}: succeeded").as_str()), "{out}");
}

#[actix_web::test]
async fn a_failed_job_exits_1_with_its_error() {
    let app = spawn_app().await;
    let missing = format!("{REGISTRY}/{}:1", unique("watch-missing"));
    let id = submit(&app, "/v1/images/pull", &json!({"image": missing})).await;
    let (code, out, err) = watch(&app.address, &app.token(Role::Operator), &[&id]).await;
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.lines().any(|l| l.starts_with("error: image_not_found: ")), "{out}");
    assert_eq!(out.lines().last(), Some(format!("job {id}: failed").as_str()), "{out}");
    // Watching it again after the end: the whole record replayed, the same exit code.
    let (code, again, _) = watch(&app.address, &app.token(Role::Operator), &[&id]).await;
    assert_eq!((code, again.as_str()), (1, out.as_str()));
}

#[actix_web::test]
async fn usage_auth_and_connection_errors_exit_2_with_the_reason() {
    let app = spawn_app().await;
    let id = submit(&app, "/v1/containers", &json!({"image": BASE_IMAGE, "cmd": ["true"], "detach": false})).await;
    let mut cleanup = Cleanup::default();
    let job = app.wait_for_job(&id, Role::Operator).await;
    cleanup.container(job["result"]["container_id"].as_str().unwrap());

    let (code, out, err) = watch(&app.address, "not-a-jwt", &[&id]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("401") && err.contains("(unauthorized)"), "the problem's status and code: {err}");
    assert!(out.is_empty(), "{out}");

    let (code, _, err) = watch(&app.address, &app.token(Role::Operator), &["01NOSUCHJOB"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("404") && err.contains("(job_not_found)"), "{err}");

    let (code, _, err) = watch(&app.address, "", &[&id]).await;
    assert_eq!(code, 2);
    assert!(err.contains("BERTH_TOKEN"), "{err}");

    let (code, _, err) = watch(&app.address, &app.token(Role::Operator), &[]).await;
    assert_eq!(code, 2, "no job id is a usage error");
    assert!(err.contains("JOB_ID"), "{err}");

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let (code, _, err) = watch(&format!("http://{closed}"), &app.token(Role::Operator), &[&id]).await;
    assert_eq!(code, 2);
    assert!(err.contains("Connection refused"), "{err}");

    // The same job through a good token: 0, so the codes above are the errors' own.
    let (code, _, _) = watch(&app.address, &app.token(Role::Operator), &[&id]).await;
    assert_eq!(code, 0);
}

/// A TCP proxy to `upstream` that cuts its first connection once `cut_at` has come
/// down it, in the middle of that event; later connections pass whole. Counts connections
/// and keeps the head of the last request.
async fn cutting_proxy(upstream: String, cut_at: &'static str) -> (String, tokio::sync::watch::Receiver<(usize, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let (count_tx, count_rx) = tokio::sync::watch::channel((0usize, String::new()));
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut client, _)) = listener.accept().await {
            n += 1;
            let mut server = TcpStream::connect(&upstream).await.unwrap();
            let mut head = vec![0u8; 8192];
            let got = client.read(&mut head).await.unwrap();
            server.write_all(&head[..got]).await.unwrap();
            count_tx.send_replace((n, String::from_utf8_lossy(&head[..got]).to_lowercase()));
            if n > 1 {
                tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                continue;
            }
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
                let (mut seen, mut buf) = (Vec::new(), vec![0u8; 4096]);
                loop {
                    let Ok(got) = sr.read(&mut buf).await else { return };
                    if got == 0 {
                        return;
                    }
                    let start = seen.len();
                    seen.extend_from_slice(&buf[..got]);
                    if let Some(at) = find(&seen, cut_at.as_bytes()) {
                        // Half of that event's line, then the connection is gone.
                        let upto = (at + 3).saturating_sub(start).min(got);
                        let _ = cw.write_all(&buf[..upto]).await;
                        return;
                    }
                    if cw.write_all(&buf[..got]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, count_rx)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[actix_web::test]
async fn a_dropped_connection_resumes_with_last_event_id_losing_and_repeating_nothing() {
    let app = spawn_app().await;
    let (proxy, connections) = cutting_proxy(format!("127.0.0.1:{}", app.port), "line-12\"").await;
    let script = "for i in $(seq 1 30); do echo line-$i; sleep 0.05; done";
    let id = submit(&app, "/v1/containers", &json!({"image": BASE_IMAGE, "cmd": ["sh", "-c", script], "detach": false})).await;
    let (code, out, err) = watch(&proxy, &app.token(Role::Operator), &[&id]).await;
    let mut cleanup = Cleanup::default();
    let job = app.wait_for_job(&id, Role::Operator).await;
    cleanup.container(job["result"]["container_id"].as_str().unwrap());

    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let (count, resumed_with) = connections.borrow().clone();
    assert_eq!(count, 2, "one cut, one resume: {err}");
    let at = err.split("resuming after event ").nth(1).and_then(|r| r.split_whitespace().next());
    let at = at.unwrap_or_else(|| panic!("the resume is told on stderr: {err}"));
    assert!(resumed_with.contains(&format!("\r\nlast-event-id: {at}\r\n")), "resumed after event {at}: {resumed_with}");
    for i in 1..=30 {
        let line = format!("line-{i}");
        assert_eq!(out.lines().filter(|l| *l == line).count(), 1, "{line} exactly once:\n{out}");
    }
    for state in ["queued", "running", "succeeded"] {
        assert_eq!(out.lines().filter(|l| *l == format!("state: {state}")).count(), 1, "{state} once:\n{out}");
    }
}

#[actix_web::test]
async fn events_prints_every_visible_jobs_state_changes() {
    let app = spawn_app().await;
    let mut child = berth_watch(&app.address, &app.token(Role::Operator))
        .arg("--events")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The feed is live only: give it a moment to subscribe before the job exists.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let id = submit(&app, "/v1/containers", &json!({"image": BASE_IMAGE, "cmd": ["true"], "detach": false})).await;
    let mut seen = Vec::new();
    let want = format!("{id} run test-operator succeeded");
    while !seen.contains(&want) {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line()).await;
        seen.push(line.expect("a state change within 60 s").unwrap().expect("the feed goes on"));
    }
    let mut cleanup = Cleanup::default();
    let job = app.wait_for_job(&id, Role::Operator).await;
    cleanup.container(job["result"]["container_id"].as_str().unwrap());
    let mine: Vec<_> = seen.iter().filter(|l| l.starts_with(&id)).collect();
    assert_eq!(mine.first().map(|l| l.as_str()), Some(format!("{id} run test-operator queued").as_str()), "{seen:?}");
    assert!(mine.contains(&&format!("{id} run test-operator running")), "{seen:?}");
    assert!(child.try_wait().unwrap().is_none(), "--events goes on until interrupted");
    child.kill().await.unwrap();
}
