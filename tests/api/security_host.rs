//! Host power and host resources, attacked from the lowest tokens against the real engine
//! (issue 9, findings 2, 3 and 11): each was possible before its fix and is refused now.

use berth::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{BASE_IMAGE, Cleanup, TestApp, assert_problem, docker, docker_quiet, spawn_app, spawn_app_with, unique};
use crate::ws::handshake_get;

/// Removes the volumes a test made. Declare it before the test's [`Cleanup`]: locals drop
/// in reverse order, so the containers using them go first.
#[derive(Default)]
struct Volumes(Vec<String>);

impl Volumes {
    /// `docker volume create` with these extra arguments; its name.
    fn create(&mut self, what: &str, args: &[&str]) -> String {
        let name = unique(what);
        self.0.push(name.clone());
        docker(&[&["volume", "create"], args, &[name.as_str()]].concat());
        name
    }

    /// A volume the engine will create itself (a run that mounts it), removed at the end.
    fn expect(&mut self, what: &str) -> String {
        let name = unique(what);
        self.0.push(name.clone());
        name
    }
}

impl Drop for Volumes {
    fn drop(&mut self) {
        for v in &self.0 {
            docker_quiet(&["volume", "rm", "-f", v]);
        }
    }
}

/// `docker run -d <args> busybox sleep 600`, named `name`, removed at the end.
fn sleeper(cleanup: &mut Cleanup, name: &str, args: &[&str]) {
    cleanup.container(name);
    docker(&[&["run", "-d", "--name", name], args, &[BASE_IMAGE, "sleep", "600"]].concat());
}

/// Exec and attach on `container` with `token`: both answer `status` with `code`; the
/// exec refusal's detail.
async fn exec_and_attach(app: &TestApp, token: &str, container: &str, status: u16, code: &str) -> String {
    let exec = json!({"cmd": ["sh", "-c", "ls -l /var/run/docker.sock; id"]});
    let url = app.url(&format!("/v1/containers/{container}/exec"));
    let res = app.client.post(url).bearer_auth(token).json(&exec).send().await.unwrap();
    let p = assert_problem(res, status, code).await;
    let res = handshake_get(app, &format!("/v1/containers/{container}/attach")).bearer_auth(token).send().await.unwrap();
    assert_problem(res, status, code).await;
    p["detail"].as_str().unwrap().to_string()
}

async fn submit_run(app: &TestApp, role: Role, body: &Value) -> reqwest::Response {
    app.post("/v1/containers", role).json(body).send().await.unwrap()
}

/// The jobs a subject owns, as an admin sees them.
async fn jobs_of(app: &TestApp, owner: &str) -> Vec<Value> {
    let page: Value = app.get(&format!("/v1/jobs?owner={owner}"), Role::Admin).send().await.unwrap().json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

/// Finding 3: a container made `--volumes-from` one that mounts the Docker socket has no
/// `Binds` of its own, but the socket is in its `.Mounts`; an operator got a shell there.
#[actix_web::test]
async fn exec_and_attach_refuse_the_socket_reached_through_volumes_from() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let (holder, borrower) = (unique("sock-holder"), unique("sock-borrower"));
    sleeper(&mut cleanup, &holder, &["-v", "/var/run/docker.sock:/var/run/docker.sock"]);
    sleeper(&mut cleanup, &borrower, &["--volumes-from", &holder]);
    // The attack's ground: no binds of its own, the socket all the same.
    assert_eq!(docker(&["inspect", "-f", "{{json .HostConfig.Binds}}", &borrower]), "null");
    assert!(docker(&["inspect", "-f", "{{json .Mounts}}", &borrower]).contains("/var/run/docker.sock"));

    let operator = app.token(Role::Operator);
    let detail = exec_and_attach(&app, &operator, &borrower, 403, "policy_violation").await;
    assert!(detail.contains("`binds`") && detail.contains("`volumes_from`"), "{detail}");
    // An admin still may.
    let exec = json!({"cmd": ["true"]});
    let res = app.post(&format!("/v1/containers/{borrower}/exec"), Role::Admin).json(&exec).send().await.unwrap();
    assert_eq!(res.status(), 201);
}

/// Finding 3: namespace modes and device rules the old list did not know.
#[actix_web::test]
async fn exec_and_attach_refuse_host_namespaces_and_device_rules() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let operator = app.token(Role::Operator);
    for (option, flag) in [
        ("uts_mode", "--uts=host"),
        ("userns_mode", "--userns=host"),
        ("device_cgroup_rules", "--device-cgroup-rule=c 1:3 rmw"),
    ] {
        let name = unique("hostns");
        sleeper(&mut cleanup, &name, &[flag]);
        let detail = exec_and_attach(&app, &operator, &name, 403, "policy_violation").await;
        assert!(detail.contains(&format!("`{option}`")), "{flag}: {detail}");
    }
    // The engine's own defaults are no power: a plain container and a private cgroup
    // namespace stay reachable.
    for args in [&[][..], &["--cgroupns=private"][..]] {
        let name = unique("plain");
        sleeper(&mut cleanup, &name, args);
        let res = app.post(&format!("/v1/containers/{name}/exec"), Role::Operator).json(&json!({"cmd": ["true"]})).send().await.unwrap();
        assert_eq!(res.status(), 201, "{args:?}: {}", res.text().await.unwrap());
    }
}

/// Finding 3: a `local` volume created with `type=none,o=bind,device=/…` is a host bind
/// in disguise: `.Mounts` calls it a volume.
#[actix_web::test]
async fn a_volume_whose_driver_options_bind_a_host_path_is_host_power() {
    let mut volumes = Volumes::default();
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::write(host_dir.path().join("secret"), "host file").unwrap();
    let device = format!("device={}", host_dir.path().display());
    let bound = volumes.create("bindvol", &["-o", "type=none", "-o", "o=bind", "-o", &device, "--label", "berth.team=default"]);
    let allowed = bound.clone();
    let app = spawn_app_with(|s| s.policy.allowed_volumes = vec![allowed]).await;
    let mut cleanup = Cleanup::default();
    let name = unique("bindvol-user");
    sleeper(&mut cleanup, &name, &["-v", &format!("{bound}:/data")]);
    assert!(docker(&["exec", &name, "cat", "/data/secret"]).contains("host file"), "the volume is the host directory");

    let operator = app.token(Role::Operator);
    let detail = exec_and_attach(&app, &operator, &name, 403, "policy_violation").await;
    assert!(detail.contains("`volumes`"), "{detail}");
    // Running with it is refused too, allow-list and team label notwithstanding.
    let body = json!({"image": BASE_IMAGE, "cmd": ["cat", "/data/secret"], "volumes": [format!("{bound}:/data")]});
    let p = assert_problem(submit_run(&app, Role::Operator, &body).await, 403, "policy_violation").await;
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.starts_with("`volumes` is reserved to the admin role") && detail.contains(&bound), "{p}");
    assert!(jobs_of(&app, "test-operator").await.is_empty(), "nothing queued");
}

/// Finding 2: any named volume could be mounted by any operator.
#[actix_web::test]
async fn named_volumes_need_the_allow_list_or_the_callers_team() {
    let mut volumes = Volumes::default();
    let foreign = volumes.create("foreign", &[]);
    let other_team = volumes.create("blue", &["--label", "berth.team=blue"]);
    let own_team = volumes.create("default", &["--label", "berth.team=default"]);
    let shared = volumes.expect("shared");
    let app = spawn_app_with(|s| s.policy.allowed_volumes = vec!["berth-test-shared-*".into()]).await;
    let mut cleanup = Cleanup::default();
    let run = |volume: &str| json!({"image": BASE_IMAGE, "cmd": ["true"], "volumes": [format!("{volume}:/data")]});

    for refused in [&foreign, &other_team] {
        let p = assert_problem(submit_run(&app, Role::Operator, &run(refused)).await, 403, "policy_violation").await;
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("`{refused}`")) && detail.contains("BERTH_ALLOWED_VOLUMES"), "{p}");
    }
    assert!(jobs_of(&app, "test-operator").await.is_empty(), "nothing queued");

    // The caller's team's volume, and one the allow-list names (the engine creates it).
    for allowed in [&own_team, &shared] {
        let name = unique("volume-ok");
        cleanup.container(&name);
        let mut body = run(allowed);
        body["name"] = json!(name);
        let res = submit_run(&app, Role::Operator, &body).await;
        assert_eq!(res.status(), 202, "{allowed}");
        let job: Value = res.json().await.unwrap();
        let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Operator).await;
        assert_eq!(job["state"], "succeeded", "{job}");
    }
    // Anonymous volumes stay allowed; an admin mounts any volume.
    let res = submit_run(&app, Role::Operator, &json!({"image": BASE_IMAGE, "cmd": ["true"], "volumes": ["/scratch"], "auto_remove": true})).await;
    assert_eq!(res.status(), 202);
    let name = unique("volume-admin");
    cleanup.container(&name);
    let mut body = run(&foreign);
    body["name"] = json!(name);
    assert_eq!(submit_run(&app, Role::Admin, &body).await.status(), 202);
}

/// Finding 2: the rule holds when the job runs, not only when it was submitted: a volume
/// that changed hands while the job waited in the queue is not mounted.
#[actix_web::test]
async fn the_named_volume_rule_is_checked_again_before_the_create() {
    let mut volumes = Volumes::default();
    let volume = volumes.create("requeued", &["--label", "berth.team=default"]);
    let app = spawn_app_with(|s| s.concurrency.run = 1).await;
    let mut cleanup = Cleanup::default();
    let (blocker, late) = (unique("blocker"), unique("late-volume"));
    cleanup.container(&blocker).container(&late);
    let body = json!({"image": BASE_IMAGE, "name": blocker, "cmd": ["sleep", "3"], "detach": false});
    let first: Value = submit_run(&app, Role::Operator, &body).await.json().await.unwrap();
    let body = json!({"image": BASE_IMAGE, "name": late, "cmd": ["true"], "volumes": [format!("{volume}:/data")]});
    let res = submit_run(&app, Role::Operator, &body).await;
    assert_eq!(res.status(), 202, "the team's volume at submit");
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["state"], "queued", "waits behind the blocker: {job}");
    // Meanwhile the volume is replaced by one of nobody's.
    docker(&["volume", "rm", &volume]);
    docker(&["volume", "create", &volume]);
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Operator).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "policy_violation", "{job}");
    assert!(job["error"]["message"].as_str().unwrap().contains(&volume), "{job}");
    assert!(docker(&["ps", "-a", "-q", "--filter", &format!("name=^/{late}$")]).is_empty(), "no container made");
    let first = app.wait_for_job(first["id"].as_str().unwrap(), Role::Operator).await;
    assert_eq!(first["state"], "succeeded", "{first}");
}

/// Finding 2: the volume holding Berth's data dir, found in Berth's own container at
/// start, is mounted by nobody, and a container that mounts it is no place for an
/// operator's shell.
#[actix_web::test]
async fn berths_data_volume_is_mounted_by_nobody() {
    let mut volumes = Volumes::default();
    let data = volumes.create("berth-data", &["--label", "berth.team=default"]);
    let mut cleanup = Cleanup::default();
    let own = unique("berth-self");
    cleanup.container(&own);
    let app = spawn_app_with(|s| {
        // Berth "runs" in a container that mounts `data` at its data dir.
        let mount = format!("{data}:{}", s.data_dir.display());
        docker(&["run", "-d", "--name", &own, "-v", &mount, BASE_IMAGE, "sleep", "600"]);
        s.self_container = Some(own.clone());
    })
    .await;
    for (role, field) in [(Role::Operator, "volumes"), (Role::Admin, "volumes"), (Role::Admin, "binds")] {
        let mut body = json!({"image": BASE_IMAGE, "cmd": ["ls", "/stolen"]});
        body[field] = json!([format!("{data}:/stolen")]);
        let p = assert_problem(submit_run(&app, role, &body).await, 403, "policy_violation").await;
        assert!(p["detail"].as_str().unwrap().contains("Berth's own data"), "{role} {field}: {p}");
    }
    // Another container mounting it (made on the host): no operator shell there.
    let beside = unique("beside-data");
    sleeper(&mut cleanup, &beside, &["-v", &format!("{data}:/stolen")]);
    let detail = exec_and_attach(&app, &app.token(Role::Operator), &beside, 403, "policy_violation").await;
    assert!(detail.contains(&data) && detail.contains("Berth's own data"), "{detail}");
}

/// Berth's own container: nobody, admin included, stops, kills, removes, execs into or
/// attaches to it through Berth.
#[actix_web::test]
async fn berths_own_container_is_out_of_reach() {
    let mut cleanup = Cleanup::default();
    let own = unique("berth-self");
    sleeper(&mut cleanup, &own, &[]);
    let id = docker(&["inspect", "-f", "{{.Id}}", &own]);
    let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &own]);
    let given = own.clone();
    let app = spawn_app_with(|s| s.self_container = Some(given)).await;
    let admin = app.token(Role::Admin);
    for target in [own.as_str(), &id, &id[..12]] {
        for (method, path) in [
            ("POST", format!("/v1/containers/{target}/stop")),
            ("POST", format!("/v1/containers/{target}/restart")),
            ("POST", format!("/v1/containers/{target}/kill")),
            ("DELETE", format!("/v1/containers/{target}?force=true")),
        ] {
            let req = match method {
                "POST" => app.client.post(app.url(&path)),
                _ => app.client.delete(app.url(&path)),
            };
            let p = assert_problem(req.bearer_auth(&admin).send().await.unwrap(), 403, "forbidden").await;
            assert!(p["detail"].as_str().unwrap().contains("Berth's own container"), "{path}: {p}");
        }
        let detail = exec_and_attach(&app, &admin, target, 403, "forbidden").await;
        assert!(detail.contains("Berth's own container"), "{detail}");
    }
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}} {{.State.StartedAt}}", &own]), format!("true {started}"));
    // Other containers are managed as before.
    let other = unique("not-self");
    sleeper(&mut cleanup, &other, &[]);
    let res = app.client.post(app.url(&format!("/v1/containers/{other}/kill"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), 204);
}

/// Finding 11: a non-admin's memory and CPU stay within the maxima (and get them when
/// they ask for none); an admin's are not bounded.
#[actix_web::test]
async fn memory_and_cpu_maxima_hold_for_operators() {
    let app = spawn_app_with(|s| {
        s.policy.max_memory_bytes = Some(64 * 1024 * 1024);
        s.policy.max_nano_cpus = Some(500_000_000);
    })
    .await;
    let mut cleanup = Cleanup::default();
    for (field, value, bound) in [
        ("memory_bytes", json!(1024_i64 * 1024 * 1024), "67108864 (BERTH_MAX_MEMORY_BYTES)"),
        ("nano_cpus", json!(4_000_000_000_i64), "500000000 (BERTH_MAX_NANO_CPUS)"),
    ] {
        let mut body = json!({"image": BASE_IMAGE, "cmd": ["true"]});
        body[field] = value;
        let p = assert_problem(submit_run(&app, Role::Operator, &body).await, 400, "invalid_request").await;
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(&format!("`{field}`")) && detail.contains(bound), "{p}");
        let name = unique("bounds-admin");
        cleanup.container(&name);
        body["name"] = json!(name);
        assert_eq!(submit_run(&app, Role::Admin, &body).await.status(), 202, "admin may ask {field}");
    }
    assert!(jobs_of(&app, "test-operator").await.is_empty(), "nothing queued");
    // An operator who asks for nothing gets the maxima.
    let name = unique("bounds-none");
    cleanup.container(&name);
    let res = submit_run(&app, Role::Operator, &json!({"image": BASE_IMAGE, "name": name, "cmd": ["true"]})).await;
    let job: Value = res.json().await.unwrap();
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(docker(&["inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}", &name]), "67108864 500000000");
}

/// Finding 11: no pids limit meant a fork bomb took the host's process table.
#[actix_web::test]
async fn every_container_gets_a_pids_limit_and_operators_stay_within_it() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let (dflt, own) = (unique("pids-default"), unique("pids-own"));
    cleanup.container(&dflt).container(&own);
    for (name, extra) in [(&dflt, json!(null)), (&own, json!(64))] {
        let mut body = json!({"image": BASE_IMAGE, "name": name, "cmd": ["sleep", "30"]});
        if !extra.is_null() {
            body["pids_limit"] = extra;
        }
        let res = submit_run(&app, Role::Operator, &body).await;
        assert_eq!(res.status(), 202);
        let job: Value = res.json().await.unwrap();
        let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Operator).await;
        assert_eq!(job["state"], "succeeded", "{job}");
    }
    assert_eq!(docker(&["inspect", "-f", "{{.HostConfig.PidsLimit}}", &dflt]), "4096");
    assert_eq!(docker(&["inspect", "-f", "{{.HostConfig.PidsLimit}}", &own]), "64");
    // More than the default, or none at all, is beyond an operator.
    for asked in [json!(100_000), json!(-1)] {
        let body = json!({"image": BASE_IMAGE, "cmd": ["true"], "pids_limit": asked});
        let p = assert_problem(submit_run(&app, Role::Operator, &body).await, 400, "invalid_request").await;
        assert!(p["detail"].as_str().unwrap().contains("`pids_limit` must be at most 4096"), "{p}");
    }
    // The limit holds inside: a burst of processes beyond it fails to fork.
    let burst = "for i in $(seq 1 100); do sleep 5 & done; echo all forked";
    let out = std::process::Command::new("docker").args(["exec", &own, "sh", "-c", burst]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && stderr.contains("can't fork"), "{stdout} / {stderr}");
}

/// Finding 11: publishing a host port below 1024 is host power.
#[actix_web::test]
async fn privileged_host_ports_need_admin() {
    let app = spawn_app().await;
    for ports in [json!(["80:80"]), json!(["127.0.0.1:443:8443/tcp"]), json!(["8080:80", "22:22"])] {
        let body = json!({"image": BASE_IMAGE, "cmd": ["true"], "ports": ports});
        let p = assert_problem(submit_run(&app, Role::Operator, &body).await, 403, "policy_violation").await;
        assert!(p["detail"].as_str().unwrap().starts_with("`ports` is reserved to the admin role"), "{p}");
    }
    assert!(jobs_of(&app, "test-operator").await.is_empty(), "nothing queued");
}
