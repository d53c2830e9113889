//! The engines Berth drives (`GET /v1/hosts`), from `BERTH_ENGINES_FILE` or, without
//! it, one engine `local`; `?host=` answers `host_not_found` for a name it does not know.

use std::time::Duration;

use berth::auth::{Role, mint_team_token};
use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, spawn_app, spawn_app_with, test_settings};

fn socket() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

async fn hosts(app: &TestApp, token: &str) -> Vec<Value> {
    let res = app.client.get(app.url("/v1/hosts")).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[actix_web::test]
async fn without_a_file_there_is_one_host_local() {
    let app = spawn_app().await;
    let list = hosts(&app, &app.token(Role::Viewer)).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let h = &list[0];
    assert_eq!((h["name"].as_str(), h["default"].as_bool(), h["healthy"].as_bool()), (Some("local"), Some(true), Some(true)), "{h}");
    assert_eq!(h["url"], socket().as_str());
    let version = std::process::Command::new("docker").args(["version", "-f", "{{.Server.APIVersion}}"]).output().unwrap();
    assert_eq!(h["engine"]["api_version"], String::from_utf8_lossy(&version.stdout).trim(), "{h}");
    assert!(h["last_ping"].is_string() && h["error"].is_null(), "{h}");
    let one: Value = app.get("/v1/hosts/local", Role::Viewer).send().await.unwrap().json().await.unwrap();
    assert_eq!(one["name"], "local");
    assert_problem(app.get("/v1/hosts/elsewhere", Role::Viewer).send().await.unwrap(), 404, "host_not_found").await;
    // `?host=` on an engine route: the default is served, an unknown name is 404.
    assert_eq!(app.get("/v1/containers?host=local", Role::Viewer).send().await.unwrap().status(), 200);
    let p = assert_problem(app.get("/v1/containers?host=elsewhere", Role::Viewer).send().await.unwrap(), 404, "host_not_found").await;
    assert!(p["detail"].as_str().unwrap().contains("elsewhere"), "{p}");
    // Not before authentication: no token, 401 whatever the host.
    let res = app.client.get(app.url("/v1/containers?host=elsewhere")).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

#[actix_web::test]
async fn a_file_names_the_engines_and_gives_some_to_teams() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("engines.toml");
    let missing = dir.path().join("no-engine.sock");
    std::fs::write(
        &file,
        format!(
            "[[engine]]\nname = \"a\"\nurl = \"{}\"\nlabels = {{ zone = \"1\" }}\n\n\
             [[engine]]\nname = \"blue-only\"\nurl = \"{}\"\nteams = [\"blue\"]\n\n\
             [[engine]]\nname = \"down\"\nurl = \"unix://{}\"\n",
            socket(),
            socket(),
            missing.display()
        ),
    )
    .unwrap();
    let f = file.clone();
    let app = spawn_app_with(move |s| s.engines_file = Some(f)).await;
    let tok = |role, team: Option<&str>| mint_team_token(&app.settings.jwt, "hosts-test", &[role], team, Duration::from_secs(600)).unwrap();

    let list = hosts(&app, &tok(Role::Viewer, None)).await;
    let names: Vec<&str> = list.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "down"], "a team-limited engine is hidden from other teams: {list:?}");
    assert_eq!((list[0]["default"].as_bool(), list[0]["healthy"].as_bool()), (Some(true), Some(true)));
    assert_eq!(list[0]["labels"]["zone"], "1");
    let down = &list[1];
    assert_eq!((down["healthy"].as_bool(), down["default"].as_bool()), (Some(false), Some(false)), "{down}");
    assert!(down["engine"].is_null() && down["last_ping"].is_null(), "{down}");
    assert!(down["error"].as_str().unwrap().contains("no-engine.sock"), "the error names the socket: {down}");
    let viewer = tok(Role::Viewer, None);
    let res = app.client.get(app.url("/v1/hosts/blue-only")).bearer_auth(&viewer).send().await.unwrap();
    assert_problem(res, 404, "host_not_found").await;

    let blue = hosts(&app, &tok(Role::Viewer, Some("blue"))).await;
    assert!(blue.iter().any(|h| h["name"] == "blue-only" && h["healthy"] == true && h["teams"].is_null()), "{blue:?}");
    let all = hosts(&app, &tok(Role::Admin, None)).await;
    assert_eq!(all.len(), 3);
    assert_eq!(all[1]["teams"], serde_json::json!(["blue"]), "admins see who is given each engine");

    // Ready on the default host; the others reported.
    let ready: Value = app.client.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!((ready["status"].as_str(), ready["checks"]["host:down"].as_str()), (Some("ok"), Some("unavailable")), "{ready}");
    assert_eq!(ready["checks"]["host:blue-only"], "ok");
    // A host that is down answers 503 naming it; the others keep serving.
    let res = app.client.get(app.url("/v1/containers?host=down")).bearer_auth(&viewer).send().await.unwrap();
    let p = assert_problem(res, 503, "docker_unavailable").await;
    assert_eq!(p["host"], "down", "{p}");
    let res = app.client.get(app.url("/v1/containers?host=a")).bearer_auth(&viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.client.get(app.url("/v1/containers")).bearer_auth(&viewer).send().await.unwrap().status(), 200);
    let res = app.client.get(app.url("/v1/containers?host=blue-only")).bearer_auth(&viewer).send().await.unwrap();
    let p = assert_problem(res, 404, "host_not_found").await;
    assert_eq!(p["host"], "blue-only");
}

#[actix_web::test]
async fn a_bad_engines_file_stops_the_start_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("engines.toml");
    std::fs::write(&file, "[[engine]]\nname = \"a\"\nurl = \"tcp://10.0.0.1:2376\"\nca = \"ca.pem\"\n").unwrap();
    let mut settings = test_settings(dir.path());
    settings.engines_file = Some(file);
    let err = berth::startup::Application::build(settings).await.err().expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("BERTH_ENGINES_FILE") && msg.contains("all three"), "{msg}");
}

/// Engine B of `scripts/test-env.sh`: its own dockerd in its own network namespace.
const ENGINE_B_TLS: &str = "/tmp/berth-test-env/engine-b/tls";
const ENGINE_B_URL: &str = "tcp://10.213.0.2:2376";

#[actix_web::test]
async fn a_second_engine_over_mutual_tls() {
    let _b = crate::fleet_jobs::ENGINE_B.read().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("engines.toml");
    let tls = format!("ca = \"{ENGINE_B_TLS}/ca.pem\"\ncert = \"{ENGINE_B_TLS}/client.pem\"\nkey = \"{ENGINE_B_TLS}/client-key.pem\"\n");
    std::fs::write(
        &file,
        format!(
            "[[engine]]\nname = \"a\"\nurl = \"{}\"\n\n[[engine]]\nname = \"b\"\nurl = \"{ENGINE_B_URL}\"\n{tls}\n\
             [[engine]]\nname = \"b-plain\"\nurl = \"{ENGINE_B_URL}\"\n",
            socket()
        ),
    )
    .unwrap();
    let f = file.clone();
    let app = spawn_app_with(move |s| s.engines_file = Some(f)).await;
    let list = hosts(&app, &app.token(Role::Viewer)).await;
    let by = |name: &str| list.iter().find(|h| h["name"] == name).unwrap().clone();
    let (a, b, plain) = (by("a"), by("b"), by("b-plain"));
    assert_eq!((a["healthy"].as_bool(), b["healthy"].as_bool()), (Some(true), Some(true)), "{list:?}");
    assert_eq!(b["url"], ENGINE_B_URL);
    assert_eq!(b["engine"]["negotiated_api_version"], "1.41", "{b}");
    // B is another engine than A: a container made on B only counts there.
    let name = crate::helpers::unique("host-b");
    let b_sock = "unix:///tmp/berth-test-env/engine-b/docker.sock";
    /// Removes the test's container from engine B, even when the test fails.
    struct OnB(String, &'static str);
    impl Drop for OnB {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker").args(["-H", self.1, "rm", "-f", &self.0]).output();
        }
    }
    let _guard = OnB(name.clone(), b_sock);
    let out = std::process::Command::new("docker").args(["-H", b_sock, "create", "--name", &name, crate::helpers::BASE_IMAGE]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list = hosts(&app, &app.token(Role::Viewer)).await;
    let count = |h: &str| list.iter().find(|x| x["name"] == h).unwrap()["engine"]["containers_stopped"].as_i64().unwrap();
    let b_cli = String::from_utf8(
        std::process::Command::new("docker").args(["-H", b_sock, "ps", "-aq", "--filter", "status=created", "--filter", "status=exited"]).output().unwrap().stdout,
    )
    .unwrap();
    assert_eq!(count("b") as usize, b_cli.lines().count(), "B's count is B's own");
    let _ = std::process::Command::new("docker").args(["-H", b_sock, "rm", "-f", &name]).output();
    // The engine routes act on the host they name: B's container is B's only.
    let started_at = chrono::Utc::now().timestamp();
    let out = std::process::Command::new("docker").args(["-H", b_sock, "run", "-d", "--name", &name, crate::helpers::BASE_IMAGE, "sleep", "300"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names = |list: Vec<Value>| list.iter().flat_map(|c| c["names"].as_array().unwrap().clone()).collect::<Vec<_>>();
    let on_b: Vec<Value> = app.get("/v1/containers?host=b", Role::Viewer).send().await.unwrap().json().await.unwrap();
    let on_a: Vec<Value> = app.get("/v1/containers", Role::Viewer).send().await.unwrap().json().await.unwrap();
    assert!(names(on_b).contains(&serde_json::json!(name)), "listed under ?host=b");
    assert!(!names(on_a).contains(&serde_json::json!(name)), "not on the default host");
    assert_problem(app.get(&format!("/v1/containers/{name}"), Role::Viewer).send().await.unwrap(), 404, "container_not_found").await;
    let doc: Value = app.get(&format!("/v1/containers/{name}?host=b"), Role::Viewer).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["State"]["Running"], true);
    let res = app.post(&format!("/v1/containers/{name}/kill?host=b"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let res = app.delete(&format!("/v1/containers/{name}?host=b"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let gone = std::process::Command::new("docker").args(["-H", b_sock, "inspect", &name]).output().unwrap();
    assert!(!gone.status.success(), "removed from B by Berth");
    // Engine events follow the host: B's container's events are B's stream's only.
    let (since, until) = (started_at - 1, chrono::Utc::now().timestamp() + 1);
    let events = |host: &'static str| {
        let (client, url, t) = (app.client.clone(), app.url(&format!("/v1/engine/events?type=container&since={since}&until={until}{host}")), app.token(Role::Admin));
        async move { crate::helpers::read_sse(client.get(url).bearer_auth(t).send().await.unwrap()).await }
    };
    let ours = |evs: &Vec<(String, Option<String>, Value)>| evs.iter().filter(|(e, _, d)| e == "engine" && d["name"] == name.as_str()).count();
    let on_b = events("&host=b").await;
    assert!(ours(&on_b) >= 2, "create and start (and more) on B: {on_b:?}");
    assert_eq!(ours(&events("").await), 0, "none on the default host");

    // Without the TLS files the same port does not answer Berth: TLS is really spoken.
    assert_eq!(plain["healthy"], false, "{plain}");
    assert!(plain["error"].is_string(), "{plain}");
}

#[actix_web::test]
async fn a_default_host_given_to_one_team_is_absent_to_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("engines.toml");
    std::fs::write(&file, format!("[[engine]]\nname = \"blue-only\"\nurl = \"{}\"\nteams = [\"blue\"]\n", socket())).unwrap();
    let f = file.clone();
    let app = spawn_app_with(move |s| s.engines_file = Some(f)).await;
    let tok = |team: &str| mint_team_token(&app.settings.jwt, "hosts-test", &[Role::Viewer], Some(team), Duration::from_secs(600)).unwrap();
    let get = |path: &'static str, t: String| {
        let (client, url) = (app.client.clone(), app.url(path));
        async move { client.get(url).bearer_auth(t).send().await.unwrap() }
    };
    for path in ["/v1/containers", "/v1/volumes", "/v1/system"] {
        let p = assert_problem(get(path, tok("green")).await, 404, "host_not_found").await;
        assert_eq!(p["host"], "blue-only", "{path}: {p}");
        assert_eq!(get(path, tok("blue")).await.status(), 200, "{path}");
    }
    assert_eq!(get("/v1/jobs", tok("green")).await.status(), 200, "jobs are not an engine's");
    assert!(hosts(&app, &tok("green")).await.is_empty());
}
