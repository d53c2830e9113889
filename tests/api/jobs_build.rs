//! `POST /v1/images/build` jobs against the real engine.

use berth::auth::Role;
use serde_json::Value;

use crate::helpers::{BASE_IMAGE, Cleanup, TestApp, assert_problem, docker, spawn_app, unique};
use crate::jobs::{assert_sequenced_and_ended, image_exists, log_texts, tar_of};

/// POST a build context with this content type and query; the response.
async fn post_build(app: &TestApp, query: &[(&str, &str)], content_type: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut req = app.post("/v1/images/build", Role::Operator).query(query);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.body(body).send().await.unwrap()
}

/// Build, expecting 202 with `Location`; the job.
async fn build(app: &TestApp, query: &[(&str, &str)], content_type: &str, body: Vec<u8>) -> Value {
    let res = post_build(app, query, Some(content_type), body).await;
    let status = res.status();
    let location = res.headers().get("location").map(|v| v.to_str().unwrap().to_string());
    let text = res.text().await.unwrap();
    assert_eq!(status, 202, "{text}");
    let job: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(location, Some(format!("/v1/jobs/{}", job["id"].as_str().unwrap())));
    assert_eq!(job["kind"], "build");
    job
}

fn dockerfile_tar(dockerfile: &str) -> Vec<u8> {
    tar_of(&[("Dockerfile", dockerfile.as_bytes())])
}

fn label_of(reference: &str, key: &str) -> String {
    docker(&["image", "inspect", "-f", &format!("{{{{index .Config.Labels \"{key}\"}}}}"), reference])
}

/// No spooled contexts are left behind once the jobs ended.
fn assert_no_spool(app: &TestApp) {
    let dir = app.data_dir.path().join("contexts");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "spooled contexts left in {}: {left:?}", dir.display());
}

#[actix_web::test]
async fn build_from_a_tar_tags_the_image_and_streams_its_output() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let u = unique("build-tar");
    let (t1, t2) = (format!("{u}:1"), format!("{u}:2"));
    cleanup.image(&t1).image(&t2);
    let ctx = dockerfile_tar(&format!("FROM {BASE_IMAGE}\nRUN echo built-{u}\nLABEL berth.test={u}\n"));
    let size = ctx.len();
    let job = build(&app, &[("tag", &t1), ("tag", &t2)], "application/x-tar", ctx).await;
    assert_eq!(job["request"]["tags"], serde_json::json!([t1, t2]));
    assert_eq!(job["request"]["context_format"], "tar");
    assert_eq!(job["request"]["context_bytes"], size);
    let id = job["id"].as_str().unwrap();

    let job = app.wait_for_job(id, Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let image_id = job["result"]["image_id"].as_str().unwrap().to_string();
    cleanup.image(&image_id);
    assert!(image_id.starts_with("sha256:") && image_id.len() == 71, "{image_id}");
    assert_eq!(job["result"]["tags"], serde_json::json!([t1, t2]));
    assert!(job["error"].is_null());
    for t in [&t1, &t2] {
        assert_eq!(docker(&["image", "inspect", "-f", "{{.Id}}", t]), image_id, "{t} names the built image");
    }
    assert_eq!(label_of(&t1, "berth.test"), u);

    let events = app.job_events(id, Role::Operator).await;
    assert_sequenced_and_ended(&events, "succeeded");
    let build_lines = log_texts(&events, "build");
    assert!(build_lines.contains(&format!("built-{u}")), "the RUN output is a build log line: {build_lines:?}");
    assert!(build_lines.iter().all(|l| !l.trim().is_empty()), "no blank lines: {build_lines:?}");
    let (_, _, result) = events.iter().find(|(e, _, _)| e == "result").expect("a result event");
    assert_eq!(result["image_id"], image_id.as_str());
    assert_no_spool(&app);
}

#[actix_web::test]
async fn build_from_a_gzip_context() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let u = unique("build-gz");
    let tag = format!("{u}:1");
    cleanup.image(&tag);
    let tar = tar_of(&[
        ("Dockerfile", format!("FROM {BASE_IMAGE}\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt\nLABEL berth.test={u}\n").as_bytes()),
        ("hello.txt", format!("gz-{u}\n").as_bytes()),
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let body = gz.finish().unwrap();
    assert_eq!(&body[..2], &[0x1f, 0x8b]);
    let job = build(&app, &[("tag", &tag)], "application/gzip", body).await;
    assert_eq!(job["request"]["context_format"], "gzip");
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    cleanup.image(job["result"]["image_id"].as_str().unwrap());
    assert_eq!(job["result"]["tags"], serde_json::json!([tag]));
    assert_eq!(label_of(&tag, "berth.test"), u);
    let events = app.job_events(job["id"].as_str().unwrap(), Role::Operator).await;
    assert!(log_texts(&events, "build").contains(&format!("gz-{u}")), "the file from the context: {events:?}");
}

#[actix_web::test]
async fn a_failing_run_step_fails_the_job_and_keeps_its_output() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let u = unique("build-fail");
    let tag = format!("{u}:1");
    cleanup.image(&tag);
    // The RUN comes right after FROM, so a failure leaves no intermediate image behind.
    let ctx = dockerfile_tar(&format!("FROM {BASE_IMAGE}\nRUN sh -c 'echo boom-{u}; exit 3'\nLABEL berth.test={u}\n"));
    let job = build(&app, &[("tag", &tag)], "application/x-tar", ctx).await;
    let id = job["id"].as_str().unwrap();
    let job = app.wait_for_job(id, Role::Operator).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "docker_error", "{job}");
    let msg = job["error"]["message"].as_str().unwrap();
    assert!(msg.contains("non-zero code: 3"), "Docker's message is kept: {msg}");
    assert!(job["result"].is_null(), "{job}");
    assert!(!image_exists(&tag), "nothing was tagged");

    let events = app.job_events(id, Role::Operator).await;
    assert_sequenced_and_ended(&events, "failed");
    assert!(log_texts(&events, "build").contains(&format!("boom-{u}")), "the failing step's output is kept: {events:?}");
    let (_, _, err) = events.iter().find(|(e, _, _)| e == "error").expect("an error event");
    assert_eq!(err["code"], "docker_error");
    assert_eq!(err["message"], msg);
    assert_no_spool(&app);
}

#[actix_web::test]
async fn a_garbage_context_fails_with_a_clear_message() {
    let app = spawn_app().await;
    let u = unique("build-garbage");
    // Not a tar: pseudo-random bytes (no NUL blocks, no valid header checksum).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let body: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8 | 1
        })
        .collect();
    let job = build(&app, &[("tag", &format!("{u}:1"))], "application/x-tar", body).await;
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Operator).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "docker_error", "{job}");
    let msg = job["error"]["message"].as_str().unwrap().to_ascii_lowercase();
    assert!(msg.contains("tar"), "the message says the context is not a tar (Docker: invalid tar header): {msg}");
    assert!(!image_exists(&format!("{u}:1")));
    assert_no_spool(&app);
}

#[actix_web::test]
async fn build_refuses_bad_bodies_before_queueing() {
    let app = spawn_app().await;
    let u = unique("build-bad");
    let tag = format!("{u}:1");
    let q = [("tag", tag.as_str())];
    let ctx = dockerfile_tar(&format!("FROM {BASE_IMAGE}\n"));

    let res = post_build(&app, &q, Some("text/plain"), ctx.clone()).await;
    let p = assert_problem(res, 415, "unsupported_media_type").await;
    assert!(p["detail"].as_str().unwrap().contains("application/x-tar"), "{p}");
    let res = post_build(&app, &q, Some("application/json"), b"{}".to_vec()).await;
    assert_problem(res, 415, "unsupported_media_type").await;
    // No body, no content type, no remote.
    let res = post_build(&app, &q, None, Vec::new()).await;
    let status = res.status().as_u16();
    assert!([400, 415].contains(&status), "{status}");
    assert_problem(res, status, if status == 400 { "invalid_request" } else { "unsupported_media_type" }).await;
    // A tar content type but nothing in it.
    let res = post_build(&app, &q, Some("application/x-tar"), Vec::new()).await;
    assert_problem(res, 400, "invalid_request").await;
    // Both a body and remote.
    let res = post_build(&app, &[("tag", &tag), ("remote", "https://example.invalid/ctx.tar")], Some("application/x-tar"), ctx.clone()).await;
    assert_problem(res, 400, "invalid_request").await;
    // Bad options.
    for q in [[("tag", "UPPER:1")], [("buildarg", "novalue")], [("label", "=x")]] {
        let res = post_build(&app, &q, Some("application/x-tar"), ctx.clone()).await;
        let status = res.status().as_u16();
        assert_eq!(status, 400, "{q:?}");
        let body: Value = res.json().await.unwrap();
        assert!(["invalid_request", "invalid_reference"].contains(&body["code"].as_str().unwrap()), "{body}");
    }
    // A viewer may not build.
    let res = app
        .post("/v1/images/build", Role::Viewer)
        .query(&q)
        .header("content-type", "application/x-tar")
        .body(ctx)
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "forbidden").await;

    // None of it made a job or left a spooled context.
    let res = app.get("/v1/jobs", Role::Admin).send().await.unwrap();
    let page: Value = res.json().await.unwrap();
    assert!(page["items"].as_array().unwrap().is_empty(), "{page}");
    assert_no_spool(&app);
}

#[actix_web::test]
async fn build_args_and_labels_reach_the_image() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let u = unique("build-args");
    let tag = format!("{u}:1");
    cleanup.image(&tag);
    let ctx = dockerfile_tar(&format!("FROM {BASE_IMAGE}\nARG GREETING=unset\nRUN echo \"greeting=$GREETING\"\n"));
    let greeting = format!("hello {u}");
    let job = build(
        &app,
        &[
            ("tag", tag.as_str()),
            ("buildarg", &format!("GREETING={greeting}")),
            ("label", &format!("test.berth={u}")),
            ("label", "test.extra=a=b c"),
            ("nocache", "true"),
        ],
        "application/x-tar",
        ctx,
    )
    .await;
    // The value reaches the build, never a job view (it may be a secret).
    assert_eq!(job["request"]["build_args"]["GREETING"], "<redacted>");
    assert!(!job.to_string().contains(&greeting), "{job}");
    assert_eq!(job["request"]["labels"]["test.extra"], "a=b c");
    assert_eq!(job["request"]["nocache"], true);
    let id = job["id"].as_str().unwrap();
    let job = app.wait_for_job(id, Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    cleanup.image(job["result"]["image_id"].as_str().unwrap());
    assert_eq!(label_of(&tag, "test.berth"), u);
    assert_eq!(label_of(&tag, "test.extra"), "a=b c");
    let events = app.job_events(id, Role::Operator).await;
    assert!(log_texts(&events, "build").contains(&format!("greeting={greeting}")), "the build arg reached RUN: {events:?}");
}

/// Containers and images carrying the label `berth.test=<u>` (a build's intermediates inherit it).
fn labelled(kind: &str, u: &str) -> Vec<String> {
    let filter = format!("label=berth.test={u}");
    let out = match kind {
        "container" => docker(&["ps", "-a", "-q", "--no-trunc", "--filter", &filter]),
        _ => docker(&["images", "-a", "-q", "--no-trunc", "--filter", &filter]),
    };
    out.lines().map(String::from).collect()
}

#[actix_web::test]
async fn cancel_stops_a_running_build() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let u = unique("build-cancel");
    let tag = format!("{u}:1");
    cleanup.image(&tag);
    // The LABEL comes first so the RUN step's container carries it and can be found.
    let ctx = dockerfile_tar(&format!("FROM {BASE_IMAGE}\nLABEL berth.test={u}\nRUN echo sleeping-{u}; sleep 30\n"));
    let job = build(&app, &[("tag", &tag)], "application/x-tar", ctx).await;
    let id = job["id"].as_str().unwrap().to_string();
    // Wait until the RUN step runs (its output arrived).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let events = crate::jobs::events_so_far(&app, &id).await;
        if log_texts(&events, "build").contains(&format!("sleeping-{u}")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the RUN step did not start: {events:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let t = std::time::Instant::now();
    let res = app.post(&format!("/v1/jobs/{id}/cancel"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["state"], "canceled", "{job}");
    assert!(t.elapsed() < std::time::Duration::from_secs(10), "{:?}", t.elapsed());
    let events = app.job_events(&id, Role::Operator).await;
    assert_sequenced_and_ended(&events, "canceled");
    assert_no_spool(&app);
    // The engine stops the build: its RUN container does not keep running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let running: Vec<String> = labelled("container", &u)
            .into_iter()
            // A container the engine removes meanwhile is not running either.
            .filter(|c| {
                std::process::Command::new("docker")
                    .args(["container", "inspect", "-f", "{{.State.Running}}", c])
                    .output()
                    .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "true")
            })
            .collect();
        if running.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the build's RUN container still runs: {running:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(!image_exists(&tag));
    for c in labelled("container", &u) {
        cleanup.container(&c);
    }
    for i in labelled("image", &u) {
        cleanup.image(&i);
    }
}

/// An upload cut short leaves no spooled context behind, and one left by a crash is swept
/// at start-up.
#[actix_web::test]
async fn cut_uploads_and_stray_contexts_leave_nothing_on_disk() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let token = app.token(Role::Operator);
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = format!(
        "POST /v1/images/build?tag=berth-test-cut:1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        64 * 1024 * 1024
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&vec![0u8; 2 * 1024 * 1024]).await.unwrap();
    let contexts = app.data_dir.path().join("contexts");
    // The upload is being spooled…
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_dir(&contexts).unwrap().count() == 0 {
        assert!(std::time::Instant::now() < deadline, "the upload reaches the spool");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // …and the client goes away.
    drop(conn);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_dir(&contexts).unwrap().count() > 0 {
        assert!(std::time::Instant::now() < deadline, "the cut upload's file is removed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let page: Value = app.get("/v1/jobs", Role::Operator).send().await.unwrap().json().await.unwrap();
    assert!(page["items"].as_array().unwrap().is_empty(), "no job: {page}");

    // A stray context (a crash mid-upload) is swept when the service starts.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("contexts")).unwrap();
    let stray = dir.path().join("contexts").join("stray.ctx");
    std::fs::write(&stray, b"left by a crash").unwrap();
    let settings = crate::helpers::test_settings(dir.path());
    let _app2 = crate::helpers::start(settings, dir).await;
    assert!(!stray.exists(), "swept at start-up");
}
