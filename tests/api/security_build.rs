//! Attacks through builds, from an operator token, against the real engine (issue 9,
//! findings 4, 5 and 8): the engine fetching into the host's own network (`ADD <url>`,
//! `remote=`), images around the allow-list (build tags, `FROM`, a tag with another
//! image's digest), and stalled uploads holding every upload slot.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth::auth::Role;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{BASE_IMAGE, Cleanup, REGISTRY, TestApp, assert_problem, docker, spawn_app, spawn_app_with, unique};
use crate::jobs::{image_exists, log_texts, tar_of};
use crate::jobs_registry::{PushedManifests, build_local};

/// An HTTP server on host loopback that only the host can reach: it answers every request
/// with `body` and counts them.
struct LoopbackServer {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl LoopbackServer {
    /// On a thread of its own, so a test blocked in the docker CLI does not stall it.
    fn start(body: String, content_type: &'static str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes());
            }
        });
        Self { port, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn post_build(app: &TestApp, token: &str, query: &[(&str, &str)], body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url("/v1/images/build"))
        .bearer_auth(token)
        .query(query)
        .header("content-type", "application/x-tar")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn dockerfile_tar(dockerfile: &str) -> Vec<u8> {
    tar_of(&[("Dockerfile", dockerfile.as_bytes())])
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Assert a 403 `policy_violation` whose detail names `what`.
async fn assert_refused(res: reqwest::Response, what: &str, case: &str) -> Value {
    let p = assert_problem(res, 403, "policy_violation").await;
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains(what), "{case}: the refusal names `{what}`: {detail}");
    p
}

/// No job was made (an admin sees every job).
async fn assert_no_jobs(app: &TestApp) {
    let page: Value = app.get("/v1/jobs", Role::Admin).send().await.unwrap().json().await.unwrap();
    assert!(page["items"].as_array().unwrap().is_empty(), "nothing was queued: {page}");
}

/// The machine's host name when it resolves to a loopback address (`/etc/hosts`).
async fn loopback_hostname() -> Option<String> {
    let out = std::process::Command::new("hostname").output().ok()?;
    let name = String::from_utf8(out.stdout).ok()?.trim().to_ascii_lowercase();
    let addrs: Vec<_> = tokio::net::lookup_host((name.as_str(), 80)).await.ok()?.collect();
    (!name.is_empty() && name != "localhost" && !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())).then_some(name)
}

#[actix_web::test]
async fn add_urls_into_the_host_network_are_refused_for_operators() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let secret = format!("loopback-only-{}", unique("secret"));
    let server = LoopbackServer::start(secret.clone(), "text/plain");
    let port = server.port;
    let operator = app.token(Role::Operator);

    let mut cases: Vec<(&str, String, String)> = vec![
        ("literal", format!("ADD http://127.0.0.1:{port}/secret /s"), format!("127.0.0.1:{port}")),
        ("decimal", format!("ADD http://2130706433:{port}/secret /s"), format!("2130706433:{port}")),
        ("hex", format!("ADD http://0x7f000001:{port}/secret /s"), format!("0x7f000001:{port}")),
        ("short", format!("ADD http://127.1:{port}/secret /s"), format!("127.1:{port}")),
        ("localhost", format!("ADD http://LocalHost:{port}/secret /s"), format!("localhost:{port}")),
        ("mapped v6 in JSON, with a flag", format!("ADD --chown=1:1 [\"http://[::ffff:127.0.0.1]:{port}/secret\", \"/s\"]"), format!("[::ffff:127.0.0.1]:{port}")),
        ("continued", format!("ADD \\\n    http://127.0.0.1:{port}/secret \\\n    /s"), format!("127.0.0.1:{port}")),
        ("second source", format!("ADD http://93.184.216.34/x http://127.0.0.1:{port}/secret /d/"), format!("127.0.0.1:{port}")),
        ("trigger", format!("ONBUILD ADD http://127.0.0.1:{port}/secret /s"), format!("127.0.0.1:{port}")),
        ("metadata", "ADD http://169.254.169.254/latest/meta-data/ /m".into(), "169.254.169.254".into()),
        ("private", "ADD http://10.0.0.1/x /x".into(), "10.0.0.1".into()),
        ("variable host", "ARG H=127.0.0.1\nADD http://${H}/x /x".into(), "http://${H}/x".into()),
    ];
    if let Some(name) = loopback_hostname().await {
        cases.push(("a name for loopback", format!("ADD http://{name}:{port}/secret /s"), format!("{name}:{port}")));
    }
    for (case, line, named) in &cases {
        let u = unique("ssrf");
        let dockerfile = format!("FROM {BASE_IMAGE}\n{line}\nRUN cat /s || true\nLABEL berth.test={u}\n");
        let res = post_build(&app, &operator, &[("tag", &format!("{u}:1"))], dockerfile_tar(&dockerfile)).await;
        assert_refused(res, named, case).await;
        assert!(!image_exists(&format!("{u}:1")), "{case}");
    }
    // The context's compression does not hide it, nor a Dockerfile named by `dockerfile`.
    let line = format!("FROM {BASE_IMAGE}\nADD http://127.0.0.1:{port}/secret /s\n");
    let res = post_build(&app, &operator, &[], gzip(&dockerfile_tar(&line))).await;
    assert_refused(res, &format!("127.0.0.1:{port}"), "gzip").await;
    let ctx = tar_of(&[("Dockerfile", format!("FROM {BASE_IMAGE}\n").as_bytes()), ("build/ssrf.Dockerfile", line.as_bytes())]);
    let res = post_build(&app, &operator, &[("dockerfile", "build/ssrf.Dockerfile")], ctx).await;
    assert_refused(res, &format!("127.0.0.1:{port}"), "dockerfile=").await;
    assert_eq!(server.hits(), 0, "the engine never fetched from host loopback");
    assert_no_jobs(&app).await;

    // The attack is real: an admin may, and the engine reaches host loopback.
    let u = unique("ssrf-admin");
    let tag = format!("{u}:1");
    cleanup.image(&tag);
    let dockerfile = format!("FROM {BASE_IMAGE}\nADD http://127.0.0.1:{port}/secret /s\nRUN cat /s\nLABEL berth.test={u}\n");
    let res = post_build(&app, &app.token(Role::Admin), &[("tag", &tag)], dockerfile_tar(&dockerfile)).await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    let job: Value = res.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    let job = app.wait_for_job(id, Role::Admin).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    cleanup.image(job["result"]["image_id"].as_str().unwrap());
    let logs = log_texts(&app.job_events(id, Role::Admin).await, "build");
    assert!(logs.iter().any(|l| l.contains(&secret)), "the loopback secret reached the build: {logs:?}");
    assert!(server.hits() > 0);
}

#[actix_web::test]
async fn remote_builds_fetch_only_from_listed_hosts() {
    let u = unique("remote");
    let tag = format!("{u}:1");
    let mut cleanup = Cleanup::default();
    cleanup.image(&tag);
    let server = LoopbackServer::start(format!("FROM {BASE_IMAGE}\nLABEL berth.test={u}\n"), "text/plain");
    let remote = format!("http://127.0.0.1:{}/Dockerfile", server.port);
    let named = format!("127.0.0.1:{}", server.port);

    let app = spawn_app().await;
    for role in [Role::Operator, Role::Admin] {
        let res = app.post("/v1/images/build", role).query(&[("tag", tag.as_str()), ("remote", &remote)]).send().await.unwrap();
        let p = assert_refused(res, &named, "unlisted").await;
        assert!(p["detail"].as_str().unwrap().contains("BERTH_BUILD_REMOTE_ALLOW"), "{p}");
    }
    assert_eq!(server.hits(), 0, "nothing was fetched");
    assert_no_jobs(&app).await;

    // Listed, the same build runs.
    let app = spawn_app_with(|s| s.policy.build_remote_allow = vec![named.clone()]).await;
    let res = app.post("/v1/images/build", Role::Operator).query(&[("tag", tag.as_str()), ("remote", &remote)]).send().await.unwrap();
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    let job: Value = res.json().await.unwrap();
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    cleanup.image(job["result"]["image_id"].as_str().unwrap());
    assert!(server.hits() > 0 && image_exists(&tag));
}

#[actix_web::test]
async fn build_tags_and_pulled_images_are_held_to_the_allow_list() {
    let app = spawn_app_with(|s| s.policy.allowed_images = vec!["berth-test/*".into()]).await;
    let mut cleanup = Cleanup::default();
    let operator = app.token(Role::Operator);

    // Tagging into a name outside the list is refused; building into it was not.
    let outside = format!("{}:1", unique("outside"));
    cleanup.image(&outside);
    let res = app.post("/v1/images/tag", Role::Operator).json(&json!({"source": BASE_IMAGE, "target": outside})).send().await.unwrap();
    assert_refused(res, &outside, "tag").await;
    let res = post_build(&app, &operator, &[("tag", &outside)], dockerfile_tar(&format!("FROM {BASE_IMAGE}\n"))).await;
    assert_refused(res, &outside, "build tag").await;
    let allowed = format!("berth-test/{}:1", unique("allowed"));
    let res = post_build(&app, &operator, &[("tag", &allowed), ("tag", &outside)], dockerfile_tar(&format!("FROM {BASE_IMAGE}\n"))).await;
    assert_refused(res, &outside, "a second tag").await;
    assert!(!image_exists(&outside), "nothing was tagged {outside}");

    // An image outside the list, present on the engine: a build must not pull it in.
    let base = format!("{}:1", unique("base"));
    cleanup.image(&base);
    docker(&["tag", BASE_IMAGE, &base]);
    let cases: Vec<(&str, String, Vec<(&str, String)>, String)> = vec![
        ("FROM", format!("FROM {base}\n"), vec![], base.clone()),
        ("platform and stage", format!("FROM --platform=linux/amd64 {base} AS b\nFROM b\n"), vec![], base.clone()),
        ("ARG default", format!("ARG BASE={base}\nFROM ${{BASE}}\n"), vec![], base.clone()),
        ("buildarg", format!("ARG BASE={BASE_IMAGE}\nFROM $BASE\n"), vec![("buildarg", format!("BASE={base}"))], base.clone()),
        ("undeclared", "FROM ${NOPE}\n".into(), vec![("buildarg", format!("NOPE={base}"))], "${NOPE}".into()),
        ("later stage", format!("FROM {BASE_IMAGE}\nFROM {base}\n"), vec![], base.clone()),
        ("COPY --from", format!("FROM {BASE_IMAGE}\nCOPY --from={base} /bin/true /t\n"), vec![], base.clone()),
    ];
    for (case, dockerfile, extra, named) in cases {
        let mut q = vec![("tag", allowed.clone())];
        q.extend(extra);
        let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = post_build(&app, &operator, &q, dockerfile_tar(&dockerfile)).await;
        assert_refused(res, &named, case).await;
    }
    assert!(!image_exists(&allowed));
    assert_no_jobs(&app).await;

    // Stages and allowed images build.
    cleanup.image(&allowed);
    let dockerfile = format!("ARG BASE={BASE_IMAGE}\nFROM $BASE AS first\nFROM first\nCOPY --from=first /bin/busybox /t\n");
    let res = post_build(&app, &operator, &[("tag", &allowed)], dockerfile_tar(&dockerfile)).await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    let job: Value = res.json().await.unwrap();
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    cleanup.image(job["result"]["image_id"].as_str().unwrap());
}

#[actix_web::test]
async fn a_tag_pinned_pattern_does_not_admit_another_images_digest() {
    let mut cleanup = Cleanup::default();
    let mut pushed = PushedManifests::default();
    let u = unique("digest");
    let repo = format!("{REGISTRY}/{u}/app");
    let (good, evil) = (format!("{repo}:1.0"), format!("{repo}:evil"));
    build_local(&mut cleanup, &good, &format!("good-{u}"));
    let evil_id = build_local(&mut cleanup, &evil, &format!("evil-{u}"));
    for r in [&good, &evil] {
        docker(&["push", r]);
    }
    let digest_of = |r: &str| docker(&["image", "inspect", "-f", "{{index .RepoDigests 0}}", r]).split_once('@').unwrap().1.to_string();
    let evil_digest = digest_of(&evil);
    pushed.add(REGISTRY, &format!("{u}/app"), &digest_of(&good), false);
    pushed.add(REGISTRY, &format!("{u}/app"), &evil_digest, false);

    let app = spawn_app_with(|s| s.policy.allowed_images = vec![good.clone()]).await;
    // The engine resolves `repo:1.0@digest` by the digest: the evil image.
    let smuggled = format!("{good}@{evil_digest}");
    assert_eq!(docker(&["image", "inspect", "-f", "{{.Id}}", &smuggled]), evil_id, "the engine reads the digest");
    let name = unique("digest-run");
    cleanup.container(&name);
    let res = app
        .post("/v1/containers", Role::Operator)
        .json(&json!({"image": smuggled, "name": name, "cmd": ["cat", "/berth-test-id"]}))
        .send()
        .await
        .unwrap();
    assert_refused(res, &smuggled, "run").await;
    let res = app.post("/v1/images/pull", Role::Operator).json(&json!({"image": smuggled})).send().await.unwrap();
    assert_refused(res, &smuggled, "pull").await;
    assert_no_jobs(&app).await;
    let made = docker(&["ps", "-a", "-q", "--filter", &format!("name=^/{name}$")]);
    assert!(made.is_empty(), "no container ran the smuggled image");

    // The pinned tag itself is allowed.
    let res = app
        .post("/v1/containers", Role::Operator)
        .json(&json!({"image": good, "name": name, "cmd": ["true"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    let job: Value = res.json().await.unwrap();
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "{job}");
}

/// Open a build upload that announces 64 MiB, sends 2 bytes and stalls.
async fn stalled_upload(app: &TestApp, token: &str) -> tokio::net::TcpStream {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = format!(
        "POST /v1/images/build?tag=berth-test-stalled:1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-tar\r\nContent-Length: {}\r\n\r\nab",
        64 * 1024 * 1024
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn
}

/// What the server sends on a connection within `wait`: its status line, `closed` if it
/// closed the connection, `None` if nothing came.
async fn answer(conn: &mut tokio::net::TcpStream, wait: Duration) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(wait, conn.read(&mut buf)).await {
        Err(_) => None,
        Ok(Ok(0)) | Ok(Err(_)) => Some("closed".into()),
        Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string()),
    }
}

fn spooled(app: &TestApp) -> usize {
    std::fs::read_dir(app.data_dir.path().join("contexts")).unwrap().count()
}

#[actix_web::test]
async fn stalled_uploads_hold_only_their_callers_slots_and_are_cut_off() {
    let idle = Duration::from_secs(3);
    let app = spawn_app_with(|s| s.bounds.upload_idle_timeout = idle).await;
    let mut cleanup = Cleanup::default();
    let attacker = app.token(Role::Operator);
    assert_eq!((app.settings.max_uploads, app.settings.bounds.max_uploads_per_subject), (4, 2), "the defaults");

    // Four stalled uploads, as many as there are upload slots in all.
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(stalled_upload(&app, &attacker).await);
    }
    let opened = Instant::now();
    let mut stalled = Vec::new();
    let mut refused = 0;
    for mut conn in conns {
        match answer(&mut conn, Duration::from_millis(700)).await {
            None => stalled.push(conn),
            Some(status) => {
                assert!(status.contains(" 429 "), "beyond the caller's slots: {status}");
                refused += 1;
            }
        }
    }
    assert_eq!((stalled.len(), refused), (2, 2), "the caller holds BERTH_MAX_UPLOADS_PER_SUBJECT uploads, no more");
    assert_eq!(spooled(&app), 2, "two uploads are being spooled");
    let res = post_build(&app, &attacker, &[], dockerfile_tar(&format!("FROM {BASE_IMAGE}\n"))).await;
    assert!(res.headers().contains_key("retry-after"));
    let p = assert_problem(res, 429, "queue_full").await;
    assert!(p["detail"].as_str().unwrap().contains("BERTH_MAX_UPLOADS_PER_SUBJECT"), "{p}");

    // Someone else still uploads and builds meanwhile.
    let other = app.token_for("other-operator", Role::Operator);
    let u = unique("build-while-stalled");
    let tag = format!("{u}:1");
    cleanup.image(&tag);
    let res = post_build(&app, &other, &[("tag", &tag)], dockerfile_tar(&format!("FROM {BASE_IMAGE}\nLABEL berth.test={u}\n"))).await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    assert!(opened.elapsed() < idle, "the other build was accepted while the stalled uploads held their slots");
    let job: Value = res.json().await.unwrap();

    // The stalled uploads end within the idle timeout (with margin), their files removed.
    for mut conn in stalled {
        let status = answer(&mut conn, idle + Duration::from_secs(5)).await;
        let status = status.expect("the stalled upload is cut off");
        assert!(status.contains(" 408 "), "cut off with 408 request_timeout: {status}");
    }
    assert!(opened.elapsed() < idle + Duration::from_secs(5), "{:?}", opened.elapsed());
    let id = job["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let job = loop {
        let res = app.client.get(app.url(&format!("/v1/jobs/{id}"))).bearer_auth(&other).send().await.unwrap();
        let job: Value = res.json().await.unwrap();
        if !["queued", "running"].contains(&job["state"].as_str().unwrap()) {
            break job;
        }
        assert!(Instant::now() < deadline, "{job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job["state"], "succeeded", "{job}");
    cleanup.image(job["result"]["image_id"].as_str().unwrap());
    assert_eq!(spooled(&app), 0, "no spooled context is left");

    // The slots are free again.
    let conn = stalled_upload(&app, &attacker).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while spooled(&app) == 0 {
        assert!(Instant::now() < deadline, "a new upload of the same caller is accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(conn);
}
