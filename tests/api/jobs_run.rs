//! `run` jobs (`POST /v1/containers`), the run policy, and the prune jobs, against the real engine.

use berth::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{BASE_IMAGE, Cleanup, REGISTRY, assert_problem, docker, run_container, spawn_app, unique};
use crate::jobs::{assert_sequenced_and_ended, attached, container_exists, image_exists, log_texts, run_job, submit, submit_with};

fn inspect(name: &str, format: &str) -> String {
    docker(&["container", "inspect", "-f", format, name])
}

#[actix_web::test]
async fn detached_run_starts_the_container_and_ends() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("run-detached");
    cleanup.container(&name);
    let body = json!({
        "image": BASE_IMAGE, "name": name, "cmd": ["sleep", "30"],
        "labels": {"test.berth": name, "test.role": "detached"},
        "env": ["BERTH_TEST=1"],
    });
    let job = submit(&app, "/v1/containers", &body, Role::Operator).await;
    assert_eq!(job["kind"], "run");
    assert_eq!(job["request"]["name"], name.as_str());
    let id = job["id"].as_str().unwrap();
    let job = app.wait_for_job(id, Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let cid = job["result"]["container_id"].as_str().unwrap();
    assert_eq!(cid.len(), 64, "{job}");
    assert!(job["result"].get("exit_code").is_none(), "a detached run has no exit code: {job}");
    assert_eq!(inspect(&name, "{{.Id}}"), cid);
    assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
    assert_eq!(inspect(&name, "{{index .Config.Labels \"test.role\"}}"), "detached");
    assert!(inspect(&name, "{{json .Config.Env}}").contains("BERTH_TEST=1"));
    assert_eq!(inspect(&name, "{{json .Config.Cmd}}"), r#"["sleep","30"]"#);
    let events = app.job_events(id, Role::Operator).await;
    assert_sequenced_and_ended(&events, "succeeded");
}

#[actix_web::test]
async fn attached_run_streams_stdout_and_stderr_and_reports_the_exit_code() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("run-attached");
    let id = run_job(&app, attached(&mut cleanup, &name, "echo out; echo err >&2; exit 7")).await;
    let job = app.wait_for_job(&id, Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "the job succeeds whatever the exit code: {job}");
    assert_eq!(job["result"]["exit_code"], 7, "{job}");
    let cid = job["result"]["container_id"].as_str().unwrap();
    assert_eq!(inspect(&name, "{{.Id}}"), cid);
    assert_eq!(inspect(&name, "{{.State.Status}}"), "exited");
    let events = app.job_events(&id, Role::Operator).await;
    assert_sequenced_and_ended(&events, "succeeded");
    let out: Vec<String> = log_texts(&events, "stdout").into_iter().filter(|t| !t.starts_with("[berth]")).collect();
    assert_eq!(out, ["out"], "{events:?}");
    assert_eq!(log_texts(&events, "stderr"), ["err"], "{events:?}");
    let (_, _, result) = events.iter().find(|(e, _, _)| e == "result").unwrap();
    assert_eq!(result["exit_code"], 7);
}

#[actix_web::test]
async fn attached_run_with_auto_remove_leaves_no_container() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("run-rm");
    let mut body = attached(&mut cleanup, &name, "echo bye");
    body["auto_remove"] = json!(true);
    let id = run_job(&app, body).await;
    let job = app.wait_for_job(&id, Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["exit_code"], 0);
    let events = app.job_events(&id, Role::Operator).await;
    assert!(log_texts(&events, "stdout").contains(&"bye".to_string()), "{events:?}");
    assert!(!container_exists(&name), "auto_remove removed the container");
}

#[actix_web::test]
async fn pull_never_with_a_missing_image_fails_with_image_not_found() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("run-never");
    cleanup.container(&name);
    let image = format!("{REGISTRY}/{name}/absent:1");
    let id = run_job(&app, json!({"image": image, "name": name, "pull": "never"})).await;
    let job = app.wait_for_job(&id, Role::Operator).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "image_not_found", "{job}");
    assert!(job["error"]["message"].as_str().unwrap().contains(&image), "{job}");
    assert!(!container_exists(&name));
    assert!(!image_exists(&image), "nothing was pulled");

    // `missing` (the default) tries the registry, which does not have it either.
    let id = run_job(&app, json!({"image": image, "name": name})).await;
    let job = app.wait_for_job(&id, Role::Operator).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "image_not_found", "{job}");
    assert!(!container_exists(&name));
}

#[actix_web::test]
async fn the_run_policy_reserves_host_power_to_admins() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let me = unique("policy");
    let token = app.token_for(&me, Role::Operator);
    let name = unique("run-policy");
    cleanup.container(&name);
    let base = json!({"image": BASE_IMAGE, "name": name, "cmd": ["sleep", "30"]});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (option, body) in [
        ("privileged", with("privileged", json!(true))),
        ("binds", with("binds", json!(["/etc:/host-etc:ro"]))),
        ("volumes", with("volumes", json!(["/var/run/docker.sock:/sock"]))),
        ("network", with("network", json!("host"))),
    ] {
        let res = app.client.post(app.url("/v1/containers")).bearer_auth(&token).json(&body).send().await.unwrap();
        let p = assert_problem(res, 403, "policy_violation").await;
        assert!(p["detail"].as_str().unwrap().contains(option), "{option}: {p}");
    }
    // Nothing was queued for this owner, and no container made.
    let res = app.client.get(app.url("/v1/jobs")).bearer_auth(&token).send().await.unwrap();
    let page: Value = res.json().await.unwrap();
    assert!(page["items"].as_array().unwrap().is_empty(), "{page}");
    let res = app.get(&format!("/v1/jobs?owner={me}"), Role::Admin).send().await.unwrap();
    let page: Value = res.json().await.unwrap();
    assert!(page["items"].as_array().unwrap().is_empty(), "{page}");
    assert!(!container_exists(&name));

    // A viewer may not run at all.
    let res = app.post("/v1/containers", Role::Viewer).json(&base).send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;

    // An admin may run privileged: the request is accepted and the engine gets the flag.
    // (Whether the runtime can start a privileged container depends on where the engine
    // runs; an engine inside an unprivileged container refuses it at start.)
    let job = submit(&app, "/v1/containers", &with("privileged", json!(true)), Role::Admin).await;
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Admin).await;
    assert!(job["result"]["container_id"].is_string(), "the container was created: {job}");
    match job["state"].as_str().unwrap() {
        "succeeded" => {
            assert_eq!(inspect(&name, "{{.HostConfig.Privileged}}"), "true", "{job}");
            assert_eq!(inspect(&name, "{{.State.Running}}"), "true");
        }
        _ => {
            assert_eq!(job["state"], "failed", "{job}");
            assert_eq!(job["error"]["code"], "docker_error", "the runtime's refusal, not the policy's: {job}");
            // A container that could not start is removed by Berth, not left behind.
            assert!(!container_exists(&name), "the unstartable container is cleaned up");
        }
    }
    // And bind-mount a host directory.
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::write(host_dir.path().join("hello.txt"), format!("from-host-{me}\n")).unwrap();
    let bound = unique("run-binds");
    let mut body = attached(&mut cleanup, &bound, "cat /data/hello.txt");
    body["binds"] = json!([format!("{}:/data:ro", host_dir.path().display())]);
    let job = submit(&app, "/v1/containers", &body, Role::Admin).await;
    let id = job["id"].as_str().unwrap().to_string();
    let job = app.wait_for_job(&id, Role::Admin).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["exit_code"], 0, "{job}");
    let events = app.job_events(&id, Role::Admin).await;
    assert!(log_texts(&events, "stdout").contains(&format!("from-host-{me}")), "{events:?}");
    // An ordinary operator run still works for the same owner.
    let other = unique("run-policy-ok");
    let job = submit_with(&app, &token, "/v1/containers", &attached(&mut cleanup, &other, "true")).await;
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Admin).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(inspect(&other, "{{.HostConfig.Privileged}}"), "false");
}

#[actix_web::test]
async fn prune_containers_removes_only_matching_stopped_containers() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let u = unique("prune-ctr");
    let label = format!("berth.test={u}");
    let (s1, s2, running, unlabelled) =
        (format!("{u}-s1"), format!("{u}-s2"), format!("{u}-running"), format!("{u}-unlabelled"));
    let id1 = run_container(&mut cleanup, &s1, "true", &[&label]);
    let id2 = run_container(&mut cleanup, &s2, "exit 3", &[&label]);
    let running_id = run_container(&mut cleanup, &running, "sleep 60", &[&label]);
    let unlabelled_id = run_container(&mut cleanup, &unlabelled, "true", &[]);
    docker(&["wait", &s1, &s2, &unlabelled]);

    let res = app.post("/v1/containers/prune", Role::Operator).json(&json!({"filters": {"label": [label]}})).send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;
    let res = app.post("/v1/containers/prune", Role::Admin).json(&json!({"filters": {"label": ["=x"]}})).send().await.unwrap();
    assert_eq!(res.status(), 400, "a malformed label filter is refused");

    let job = submit(&app, "/v1/containers/prune", &json!({"filters": {"label": [label]}}), Role::Admin).await;
    assert_eq!(job["kind"], "prune_containers");
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Admin).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let mut deleted: Vec<String> =
        job["result"]["deleted"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    deleted.sort();
    let mut expected = vec![id1, id2];
    expected.sort();
    assert_eq!(deleted, expected, "exactly the stopped labelled ones: {job}");
    assert!(job["result"]["space_reclaimed"].is_i64() || job["result"]["space_reclaimed"].is_u64(), "{job}");
    assert!(!container_exists(&s1) && !container_exists(&s2));
    assert_eq!(inspect(&running, "{{.Id}}"), running_id, "a running one stays");
    assert_eq!(inspect(&unlabelled, "{{.Id}}"), unlabelled_id, "an unlabelled one stays");
}

#[actix_web::test]
async fn prune_images_all_removes_only_the_labelled_unused_image() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let u = unique("prune-img");
    let label = format!("berth.test={u}");
    // Two labelled images: one unused, one used by a (stopped) container.
    let build = |cleanup: &mut Cleanup, tag: &str, extra: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), format!("FROM {BASE_IMAGE}\nLABEL {label} berth.which={extra}\n")).unwrap();
        cleanup.image(tag);
        let id = docker(&["build", "-q", "-t", tag, dir.path().to_str().unwrap()]);
        cleanup.image(&id);
        id
    };
    let (unused, used) = (format!("{u}-unused:1"), format!("{u}-used:1"));
    let unused_id = build(&mut cleanup, &unused, "unused");
    let used_id = build(&mut cleanup, &used, "used");
    let holder = format!("{u}-holder");
    cleanup.container(&holder);
    docker(&["create", "--name", &holder, &used, "true"]);

    let body = json!({"all": true, "filters": {"label": [label]}});
    let res = app.post("/v1/images/prune", Role::Operator).json(&body).send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;

    // Without `all`, only dangling images go: ours are tagged, so nothing of ours.
    let job = submit(&app, "/v1/images/prune", &json!({"filters": {"label": [label]}}), Role::Admin).await;
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Admin).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["deleted"], json!([]), "{job}");
    assert!(image_exists(&unused));

    let job = submit(&app, "/v1/images/prune", &body, Role::Admin).await;
    assert_eq!(job["kind"], "prune_images");
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Admin).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let deleted: Vec<&str> = job["result"]["deleted"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(deleted.contains(&unused_id.as_str()), "the unused labelled image: {job}");
    assert!(!deleted.contains(&used_id.as_str()), "not the one in use: {job}");
    let untagged: Vec<&str> = job["result"]["untagged"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(untagged.contains(&unused.as_str()), "its tag is listed as untagged: {job}");
    assert!(job["result"]["space_reclaimed"].as_i64().unwrap() >= 0);
    assert!(!image_exists(&unused));
    assert!(!image_exists(&unused_id));
    assert!(image_exists(&used), "an image a container uses stays");
    assert!(image_exists(BASE_IMAGE), "the base image (no label) stays");
}

#[actix_web::test]
async fn attached_output_arrives_exactly_once() {
    // The container starts right after the attach: its first lines must come once, not
    // also from a replay of the log.
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let mut ids = Vec::new();
    for i in 0..8 {
        let name = unique(&format!("run-once{i}"));
        ids.push(run_job(&app, attached(&mut cleanup, &name, &format!("echo first-{i}; echo second-{i}; echo third-{i} >&2"))).await);
    }
    for (i, id) in ids.iter().enumerate() {
        let job = app.wait_for_job(id, Role::Operator).await;
        assert_eq!(job["state"], "succeeded", "{job}");
        let events = app.job_events(id, Role::Operator).await;
        let out: Vec<String> = log_texts(&events, "stdout").into_iter().filter(|t| !t.starts_with("[berth]")).collect();
        assert_eq!(out, [format!("first-{i}"), format!("second-{i}")], "run {i}: {events:?}");
        assert_eq!(log_texts(&events, "stderr"), [format!("third-{i}")], "run {i}: {events:?}");
    }
}

#[actix_web::test]
async fn a_line_written_in_pieces_is_one_log_event() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("run-pieces");
    let script = "printf 'par'; sleep 0.3; printf 'tial\\n'; printf 'err' >&2; sleep 0.2; printf 'or\\n' >&2; printf 'no-newline'";
    let id = run_job(&app, attached(&mut cleanup, &name, script)).await;
    let job = app.wait_for_job(&id, Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let events = app.job_events(&id, Role::Operator).await;
    let stdout: Vec<String> = log_texts(&events, "stdout").into_iter().filter(|t| !t.starts_with("[berth]")).collect();
    assert_eq!(stdout, ["partial", "no-newline"]);
    assert_eq!(log_texts(&events, "stderr"), ["error"]);
}
