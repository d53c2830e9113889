//! Interactive sessions over WebSocket against the real engine: attach (`docker attach`),
//! exec (`docker exec -it`), their framing, control messages, refusals and limits.

use std::time::{Duration, Instant};

use berth::auth::Role;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::helpers::{
    BASE_IMAGE, Cleanup, TestApp, assert_problem, docker, run_container, spawn_app, spawn_app_with, unique,
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Open a WebSocket on `path` with a bearer token of `role`; the socket and the 101's
/// `x-berth-tty` header.
async fn connect(app: &TestApp, path: &str, role: Role) -> (Ws, String) {
    let mut req = format!("ws://127.0.0.1:{}{}", app.port, path).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {}", app.token(role)).parse().unwrap());
    connect_req(req).await
}

async fn connect_req(req: tokio_tungstenite::tungstenite::handshake::client::Request) -> (Ws, String) {
    let (ws, res) = match connect_async(req).await {
        Ok(ok) => ok,
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            panic!(
                "upgrade refused: {} {}",
                res.status(),
                String::from_utf8_lossy(res.body().as_deref().unwrap_or_default())
            )
        }
        Err(e) => panic!("upgrade failed: {e}"),
    };
    assert_eq!(res.status(), 101);
    let tty = res.headers().get("x-berth-tty").map(|v| v.to_str().unwrap().to_string()).expect("x-berth-tty header");
    (ws, tty)
}

/// A plain HTTP request carrying a WebSocket handshake: what is refused before the
/// upgrade answers as a problem.
pub(crate) fn handshake_get(app: &TestApp, path: &str) -> reqwest::RequestBuilder {
    app.client
        .get(app.url(path))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
}

/// Everything a session sent so far.
#[derive(Debug, Default)]
struct Transcript {
    /// Output of a TTY session (raw frames).
    tty: Vec<u8>,
    /// Output of a session without a TTY, by the stream byte.
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    controls: Vec<Value>,
    close: Option<(u16, String)>,
    ended: bool,
}

impl Transcript {
    fn tty_text(&self) -> String {
        String::from_utf8_lossy(&self.tty).into_owned()
    }
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    fn control(&self, kind: &str) -> Option<&Value> {
        self.controls.iter().find(|c| c["type"] == kind)
    }
}

/// Read frames until `done` holds; panics when the session ends first or after 20 s.
async fn read_until(ws: &mut Ws, t: &mut Transcript, tty: bool, what: &str, done: impl Fn(&Transcript) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(t) {
        assert!(!t.ended, "the session ended before {what}: {t:?}");
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next()).await.unwrap_or_else(|_| panic!("{what} within 20 s: {t:?}"));
        match msg {
            None | Some(Err(_)) => t.ended = true,
            Some(Ok(Message::Binary(b))) if tty => t.tty.extend_from_slice(&b),
            Some(Ok(Message::Binary(b))) => match b.first() {
                Some(1) => t.stdout.extend_from_slice(&b[1..]),
                Some(2) => t.stderr.extend_from_slice(&b[1..]),
                other => panic!("a binary frame without a TTY starts with 1 or 2, not {other:?}"),
            },
            Some(Ok(Message::Text(s))) => t
                .controls
                .push(serde_json::from_str(&s).unwrap_or_else(|e| panic!("control message is JSON ({e}): {s}"))),
            Some(Ok(Message::Close(frame))) => {
                t.close =
                    Some(frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new())));
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Read until the server's close frame; its (code, reason).
async fn read_to_close(ws: &mut Ws, t: &mut Transcript, tty: bool) -> (u16, String) {
    read_until(ws, t, tty, "the server's close", |t| t.close.is_some()).await;
    t.close.clone().unwrap()
}

async fn send_bytes(ws: &mut Ws, bytes: &[u8]) {
    ws.send(Message::Binary(bytes.to_vec().into())).await.expect("send stdin");
}

async fn send_control(ws: &mut Ws, msg: Value) {
    ws.send(Message::Text(msg.to_string().into())).await.expect("send control message");
}

/// Create an exec instance as `role`; its id.
async fn create_exec(app: &TestApp, container: &str, body: Value, role: Role) -> String {
    let res = app.post(&format!("/v1/containers/{container}/exec"), role).json(&body).send().await.unwrap();
    let status = res.status();
    let location = res.headers().get("location").map(|v| v.to_str().unwrap().to_string());
    let v: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().expect("exec id").to_string();
    assert_eq!(location.as_deref(), Some(format!("/v1/exec/{id}/ws").as_str()));
    id
}

fn inspect_field(name: &str, format: &str) -> String {
    docker(&["container", "inspect", "-f", format, name])
}

/// Wait until the docker CLI sees the container stopped; its exit code.
async fn wait_stopped(name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while inspect_field(name, "{{.State.Running}}") == "true" {
        assert!(Instant::now() < deadline, "{name} still running after 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    inspect_field(name, "{{.State.ExitCode}}")
}

#[actix_web::test]
async fn run_it_then_attach_type_interrupt_and_exit() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ws-it");
    cleanup.container(&name);
    let res = app
        .post("/v1/containers", Role::Operator)
        .json(
            &json!({"image": BASE_IMAGE, "name": name, "cmd": ["sh"], "tty": true, "open_stdin": true, "detach": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    let job = app.wait_for_job(job["id"].as_str().unwrap(), Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    // As `docker run -dit`: a TTY, stdin kept open, nothing attached yet.
    assert_eq!(
        inspect_field(&name, "{{.Config.Tty}} {{.Config.OpenStdin}} {{.Config.AttachStdin}}"),
        "true true false"
    );
    assert_eq!(inspect_field(&name, "{{.State.Running}}"), "true");

    let (mut ws, tty) = connect(&app, &format!("/v1/containers/{name}/attach?cols=100&rows=30"), Role::Operator).await;
    assert_eq!(tty, "true");
    let mut t = Transcript::default();
    send_bytes(&mut ws, b"echo hi\n").await;
    // The TTY echoes the line (`echo hi\r\n`), then the output follows on its own line.
    read_until(&mut ws, &mut t, true, "`hi` back", |t| t.tty_text().contains("\nhi\r\n")).await;

    // Ctrl-C is a byte for the TTY: the shell's foreground `sleep` gets SIGINT, as in a terminal.
    send_bytes(&mut ws, b"sleep 60\n").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    send_bytes(&mut ws, &[0x03]).await;
    send_bytes(&mut ws, b"echo after-$((20+1))\n").await;
    read_until(&mut ws, &mut t, true, "the shell back after Ctrl-C", |t| t.tty_text().contains("after-21")).await;
    assert!(started.elapsed() < Duration::from_secs(15), "Ctrl-C interrupted the sleep");

    send_bytes(&mut ws, b"exit 3\n").await;
    let (code, _) = read_to_close(&mut ws, &mut t, true).await;
    assert_eq!(t.control("exit"), Some(&json!({"type": "exit", "exit_code": 3})), "{t:?}");
    assert_eq!(code, 1000);
    assert_eq!(wait_stopped(&name).await, "3");
}

#[actix_web::test]
async fn attach_without_tty_tells_stdout_from_stderr_replays_logs_and_detaches() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ws-attach");
    cleanup.container(&name);
    docker(&[
        "run",
        "-d",
        "-i",
        "--name",
        &name,
        BASE_IMAGE,
        "sh",
        "-c",
        r#"echo ready; while read l; do echo "o:$l"; echo "e:$l" >&2; done"#,
    ]);

    // `logs=true` replays what came before the attach.
    let (mut ws, tty) = connect(&app, &format!("/v1/containers/{name}/attach?logs=true"), Role::Operator).await;
    assert_eq!(tty, "false");
    let mut t = Transcript::default();
    read_until(&mut ws, &mut t, false, "the replayed `ready`", |t| t.stdout_text().contains("ready\n")).await;
    send_bytes(&mut ws, b"x1\n").await;
    read_until(&mut ws, &mut t, false, "o:x1 and e:x1", |t| {
        t.stdout_text().contains("o:x1\n") && t.stderr_text().contains("e:x1\n")
    })
    .await;
    assert!(!t.stdout_text().contains("e:x1") && !t.stderr_text().contains("o:x1"), "streams apart: {t:?}");

    // Without a TTY, resize is refused with an error message; the session goes on.
    send_control(&mut ws, json!({"type": "resize", "cols": 80, "rows": 24})).await;
    read_until(&mut ws, &mut t, false, "an error message", |t| t.control("error").is_some()).await;
    assert_eq!(t.control("error").unwrap()["code"], "invalid_request", "{t:?}");
    send_control(&mut ws, json!({"type": "bogus"})).await;
    send_bytes(&mut ws, b"x2\n").await;
    read_until(&mut ws, &mut t, false, "o:x2", |t| t.stdout_text().contains("o:x2\n")).await;

    // Closing the socket detaches: the container goes on.
    ws.close(None).await.unwrap();
    let (code, _) = read_to_close(&mut ws, &mut t, false).await;
    assert_eq!(code, 1000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(inspect_field(&name, "{{.State.Running}}"), "true", "detached, not stopped");

    // Attached again without `logs`: only new output; the container's end ends the session.
    let (mut ws, _) = connect(&app, &format!("/v1/containers/{name}/attach"), Role::Operator).await;
    let mut t = Transcript::default();
    send_bytes(&mut ws, b"x3\n").await;
    read_until(&mut ws, &mut t, false, "o:x3", |t| t.stdout_text().contains("o:x3\n")).await;
    assert!(!t.stdout_text().contains("ready"), "no replay without logs=true: {t:?}");
    docker(&["kill", &name]);
    let (code, _) = read_to_close(&mut ws, &mut t, false).await;
    assert_eq!(code, 1000);
    assert_eq!(t.control("exit"), Some(&json!({"type": "exit", "exit_code": 137})), "{t:?}");
}

#[actix_web::test]
async fn exec_reports_the_exit_code_and_tells_the_streams_apart() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ws-exec");
    run_container(&mut cleanup, &name, "sleep 300", &[]);

    let id = create_exec(&app, &name, json!({"cmd": ["sh", "-c", "exit 5"]}), Role::Operator).await;
    let (mut ws, tty) = connect(&app, &format!("/v1/exec/{id}/ws"), Role::Operator).await;
    assert_eq!(tty, "false");
    let mut t = Transcript::default();
    let (code, _) = read_to_close(&mut ws, &mut t, false).await;
    assert_eq!(t.controls, vec![json!({"type": "exit", "exit_code": 5})], "{t:?}");
    assert_eq!(code, 1000);
    // An exec instance starts once.
    let res =
        handshake_get(&app, &format!("/v1/exec/{id}/ws")).bearer_auth(app.token(Role::Operator)).send().await.unwrap();
    assert_problem(res, 404, "not_found").await;

    let body = json!({"cmd": ["sh", "-c", "echo out; echo err >&2; echo \"$GREETING from $(pwd) as $(id -u)\""],
        "env": ["GREETING=hello"], "workdir": "/tmp", "user": "65534"});
    let id = create_exec(&app, &name, body, Role::Operator).await;
    let (mut ws, _) = connect(&app, &format!("/v1/exec/{id}/ws"), Role::Operator).await;
    let mut t = Transcript::default();
    read_to_close(&mut ws, &mut t, false).await;
    assert_eq!(t.stdout_text(), "out\nhello from /tmp as 65534\n", "{t:?}");
    assert_eq!(t.stderr_text(), "err\n", "{t:?}");
    assert_eq!(t.control("exit").unwrap()["exit_code"], 0);

    // stdin, then EOF with close_stdin: `cat` ends.
    let id = create_exec(&app, &name, json!({"cmd": ["cat"]}), Role::Operator).await;
    let (mut ws, _) = connect(&app, &format!("/v1/exec/{id}/ws"), Role::Operator).await;
    let mut t = Transcript::default();
    send_bytes(&mut ws, b"line one\n").await;
    read_until(&mut ws, &mut t, false, "cat's echo", |t| t.stdout_text() == "line one\n").await;
    send_control(&mut ws, json!({"type": "close_stdin"})).await;
    read_to_close(&mut ws, &mut t, false).await;
    assert_eq!(t.control("exit").unwrap()["exit_code"], 0, "{t:?}");
}

#[actix_web::test]
async fn exec_with_a_tty_takes_resize_messages() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ws-tty");
    run_container(&mut cleanup, &name, "sleep 300", &[]);

    let id = create_exec(&app, &name, json!({"cmd": ["sh"], "tty": true}), Role::Operator).await;
    let (mut ws, tty) = connect(&app, &format!("/v1/exec/{id}/ws?cols=77&rows=21"), Role::Operator).await;
    assert_eq!(tty, "true");
    let mut t = Transcript::default();
    send_bytes(&mut ws, b"stty size\n").await;
    read_until(&mut ws, &mut t, true, "the initial size", |t| t.tty_text().contains("\n21 77")).await;
    send_control(&mut ws, json!({"type": "resize", "cols": 101, "rows": 33})).await;
    send_bytes(&mut ws, b"stty size\n").await;
    read_until(&mut ws, &mut t, true, "the new size", |t| t.tty_text().contains("\n33 101")).await;
    assert!(t.control("error").is_none(), "{t:?}");
    send_bytes(&mut ws, b"exit 7\n").await;
    let (code, _) = read_to_close(&mut ws, &mut t, true).await;
    assert_eq!(t.control("exit"), Some(&json!({"type": "exit", "exit_code": 7})), "{t:?}");
    assert_eq!(code, 1000);
}

#[actix_web::test]
async fn refusals_come_before_the_upgrade_as_problems() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let running = unique("ws-running");
    run_container(&mut cleanup, &running, "sleep 300", &[]);
    let stopped = unique("ws-stopped");
    cleanup.container(&stopped);
    docker(&["create", "--name", &stopped, BASE_IMAGE, "true"]);
    let attach = format!("/v1/containers/{running}/attach");

    let res = handshake_get(&app, &attach).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
    let res = handshake_get(&app, &format!("{attach}?access_token=not-a-token")).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
    let res = handshake_get(&app, &attach).bearer_auth(app.token(Role::Viewer)).send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;
    let res = handshake_get(&app, "/v1/containers/berth-test-no-such-container/attach")
        .bearer_auth(app.token(Role::Operator))
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 404, "container_not_found").await;
    assert!(p["detail"].as_str().unwrap().contains("berth-test-no-such-container"), "{p}");
    let res = handshake_get(&app, &format!("/v1/containers/{stopped}/attach"))
        .bearer_auth(app.token(Role::Operator))
        .send()
        .await
        .unwrap();
    assert_problem(res, 409, "conflict").await;
    let res = handshake_get(&app, &format!("/v1/exec/{}/ws", "0".repeat(64)))
        .bearer_auth(app.token(Role::Operator))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
    let res =
        handshake_get(&app, "/v1/exec/not..an-id/ws").bearer_auth(app.token(Role::Operator)).send().await.unwrap();
    assert_problem(res, 400, "invalid_request").await;
    // Not a WebSocket handshake at all.
    let res = app.get(&attach, Role::Operator).send().await.unwrap();
    assert_problem(res, 400, "invalid_request").await;
    let res =
        handshake_get(&app, &format!("{attach}?cols=80")).bearer_auth(app.token(Role::Operator)).send().await.unwrap();
    assert_problem(res, 400, "invalid_request").await;

    // Exec: viewer, policy, missing or stopped container, bad body.
    let exec = format!("/v1/containers/{running}/exec");
    let res = app.post(&exec, Role::Viewer).json(&json!({"cmd": ["sh"]})).send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;
    let res = app.post(&exec, Role::Operator).json(&json!({"cmd": ["sh"], "privileged": true})).send().await.unwrap();
    let p = assert_problem(res, 403, "policy_violation").await;
    assert!(p["detail"].as_str().unwrap().contains("privileged"), "{p}");
    let res = app
        .post("/v1/containers/berth-test-no-such-container/exec", Role::Operator)
        .json(&json!({"cmd": ["sh"]}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "container_not_found").await;
    let res = app
        .post(&format!("/v1/containers/{stopped}/exec"), Role::Operator)
        .json(&json!({"cmd": ["sh"]}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 409, "conflict").await;
    for body in [json!({"cmd": []}), json!({"cmd": ["sh"], "workdir": "tmp"}), json!({"cmd": ["sh"], "detach": true})] {
        let res = app.post(&exec, Role::Operator).json(&body).send().await.unwrap();
        assert_problem(res, 400, "invalid_request").await;
    }

    // An admin may run a privileged exec; only its creator (or an admin) may start it.
    let id = create_exec(&app, &running, json!({"cmd": ["sh", "-c", "exit 0"], "privileged": true}), Role::Admin).await;
    let res =
        handshake_get(&app, &format!("/v1/exec/{id}/ws")).bearer_auth(app.token(Role::Operator)).send().await.unwrap();
    assert_problem(res, 404, "not_found").await;
    let (mut ws, _) = connect(&app, &format!("/v1/exec/{id}/ws"), Role::Admin).await;
    let mut t = Transcript::default();
    let (code, _) = read_to_close(&mut ws, &mut t, false).await;
    // 0 where the engine may grant every capability; a nested engine without them
    // reports the runtime's refusal on stdout and 126.
    assert!(t.control("exit").is_some_and(|e| e["exit_code"].is_i64()), "{t:?}");
    assert_eq!(code, 1000);
}

#[actix_web::test]
async fn access_token_in_the_query_authenticates() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("ws-token");
    run_container(&mut cleanup, &name, "sleep 300", &[]);
    let id = create_exec(&app, &name, json!({"cmd": ["echo", "via query token"]}), Role::Operator).await;
    let url = format!("ws://127.0.0.1:{}/v1/exec/{id}/ws?access_token={}", app.port, app.token(Role::Operator));
    let (mut ws, _) = connect_req(url.into_client_request().unwrap()).await;
    let mut t = Transcript::default();
    read_to_close(&mut ws, &mut t, false).await;
    assert_eq!(t.stdout_text(), "via query token\n");
}

#[actix_web::test]
async fn sessions_beyond_the_limit_are_429_until_one_ends() {
    let app = spawn_app_with(|s| s.ws_max_sessions = 1).await;
    let mut cleanup = Cleanup::default();
    let name = unique("ws-limit");
    run_container(&mut cleanup, &name, "sleep 300", &[]);
    let attach = format!("/v1/containers/{name}/attach");

    let (mut first, _) = connect(&app, &attach, Role::Operator).await;
    let res = handshake_get(&app, &attach).bearer_auth(app.token(Role::Operator)).send().await.unwrap();
    assert!(res.headers().get("retry-after").is_some(), "Retry-After");
    let p = assert_problem(res, 429, "too_many_sessions").await;
    assert!(p["detail"].as_str().unwrap().contains("BERTH_WS_MAX_SESSIONS"), "{p}");

    // The slot comes back when the first session ends.
    first.close(None).await.unwrap();
    read_to_close(&mut first, &mut Transcript::default(), false).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let res = handshake_get(&app, &attach).bearer_auth(app.token(Role::Operator)).send().await.unwrap();
        if res.status() == 101 {
            break;
        }
        assert_eq!(res.status(), 429);
        assert!(Instant::now() < deadline, "the slot was not released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn an_idle_session_is_closed_by_the_server() {
    let app = spawn_app_with(|s| s.ws_idle_timeout = Duration::from_secs(1)).await;
    let mut cleanup = Cleanup::default();
    let name = unique("ws-idle");
    run_container(&mut cleanup, &name, "sleep 300", &[]);
    let id = create_exec(&app, &name, json!({"cmd": ["cat"]}), Role::Operator).await;
    let (mut ws, _) = connect(&app, &format!("/v1/exec/{id}/ws"), Role::Operator).await;
    let mut t = Transcript::default();

    // Traffic keeps it open past the timeout...
    for i in 0..10 {
        send_bytes(&mut ws, format!("{i}\n").as_bytes()).await;
        read_until(&mut ws, &mut t, false, "cat's echo", |t| t.stdout_text().contains(&format!("{i}\n"))).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(t.close.is_none(), "still open after 2.5 s of traffic: {t:?}");
    // ...silence closes it.
    let quiet = Instant::now();
    let (code, reason) = read_to_close(&mut ws, &mut t, false).await;
    assert_eq!(code, 1001, "{reason}");
    assert!(reason.contains("idle"), "{reason}");
    assert!(quiet.elapsed() < Duration::from_secs(5), "closed after {:?}", quiet.elapsed());
}

#[actix_web::test]
async fn a_session_ends_with_an_error_when_the_engine_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = crate::faults::EngineProxy::start(dir.path());
    let host = proxy.host();
    let app = spawn_app_with(|s| s.docker_host = Some(host)).await;
    let mut cleanup = Cleanup::default();
    let name = unique("ws-gone");
    run_container(&mut cleanup, &name, "sleep 300", &[]);
    let id = create_exec(&app, &name, json!({"cmd": ["cat"]}), Role::Operator).await;
    let (mut ws, _) = connect(&app, &format!("/v1/exec/{id}/ws"), Role::Operator).await;
    let mut t = Transcript::default();
    send_bytes(&mut ws, b"before\n").await;
    read_until(&mut ws, &mut t, false, "cat's echo", |t| t.stdout_text() == "before\n").await;

    proxy.cut();
    let (code, _) = read_to_close(&mut ws, &mut t, false).await;
    assert_eq!(code, 1011, "{t:?}");
    assert_eq!(t.control("error").map(|e| e["code"].clone()), Some(json!("docker_unavailable")), "{t:?}");
    assert!(t.control("exit").is_none(), "{t:?}");
    proxy.restore();
}

#[actix_web::test]
async fn exec_and_attach_on_another_host_over_mutual_tls() {
    let _b = crate::fleet_jobs::ENGINE_B.read().await;
    let app = crate::fleet_jobs::fleet_app().await;
    let b = crate::fleet_jobs::on_b;
    let name = unique("ws-on-b");
    let mut made = crate::fleet_jobs::Made::default();
    made.containers.push(name.clone());
    let run = json!({"image": crate::helpers::BASE_IMAGE, "name": name, "cmd": ["sh", "-c", "while true; do echo tick; sleep 1; done"], "host": "b"});
    let job = crate::jobs::submit(&app, "/v1/containers", &run, Role::Operator).await;
    assert_eq!(app.wait_for_job(job["id"].as_str().unwrap(), Role::Operator).await["state"], "succeeded");
    // The exec instance is made on B; its session finds it there without `?host=`.
    let res = app.post(&format!("/v1/containers/{name}/exec?host=b"), Role::Operator).json(&json!({"cmd": ["hostname"]})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let (mut ws, _) = connect(&app, &format!("/v1/exec/{id}/ws"), Role::Operator).await;
    let mut t = Transcript::default();
    read_to_close(&mut ws, &mut t, false).await;
    let on_b = String::from_utf8(b(&["inspect", "-f", "{{.Config.Hostname}}", &name]).stdout).unwrap();
    assert_eq!(t.stdout_text().trim(), on_b.trim(), "ran in B's container: {t:?}");
    assert_eq!(t.control("exit").unwrap()["exit_code"], 0);
    // Not on A: the container is B's only.
    let res = app.post(&format!("/v1/containers/{name}/exec"), Role::Operator).json(&json!({"cmd": ["true"]})).send().await.unwrap();
    assert_problem(res, 404, "container_not_found").await;
    // Attach to B's container over TLS: its output arrives.
    let (mut ws, _) = connect(&app, &format!("/v1/containers/{name}/attach?host=b"), Role::Operator).await;
    let mut t = Transcript::default();
    read_until(&mut ws, &mut t, false, "B's container's output", |t| t.stdout_text().contains("tick")).await;
}
