//! The job engine against the real engine: the job API (list, filters, owners, paging,
//! delete, idempotency) and the job event streams (replay, live follow, `/v1/events`).
//! Shared helpers for the `jobs_*` modules live here too.

use std::pin::Pin;
use std::time::{Duration, Instant};

use berth::auth::Role;
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};

use crate::helpers::{BASE_IMAGE, Cleanup, REGISTRY, TestApp, assert_problem, read_sse, spawn_app, unique};

pub type Events = Vec<(String, Option<String>, Value)>;

// ---- helpers shared by the job tests -------------------------------------------------------

/// POST a JSON job request with this token; asserts `202` with `Location` and returns the job.
pub async fn submit_with(app: &TestApp, token: &str, path: &str, body: &Value) -> Value {
    let res = app.client.post(app.url(path)).bearer_auth(token).json(body).send().await.unwrap();
    let status = res.status();
    let location = res.headers().get("location").map(|v| v.to_str().unwrap().to_string());
    let text = res.text().await.unwrap();
    assert_eq!(status, 202, "POST {path} {body}: {text}");
    let job: Value = serde_json::from_str(&text).unwrap();
    let id = job["id"].as_str().expect("job id");
    assert_eq!(location.as_deref(), Some(format!("/v1/jobs/{id}").as_str()), "Location names the job");
    assert_eq!(job["state"], "queued", "{job}");
    job
}

/// POST a JSON job request as `test-<role>`.
pub async fn submit(app: &TestApp, path: &str, body: &Value, role: Role) -> Value {
    submit_with(app, &app.token(role), path, body).await
}

/// Queue a `run` job as `test-operator`; its id.
pub async fn run_job(app: &TestApp, body: Value) -> String {
    submit(app, "/v1/containers", &body, Role::Operator).await["id"].as_str().unwrap().to_string()
}

/// An attached run of `sh -c <script>` in a container named `name` (registered for cleanup).
pub fn attached(cleanup: &mut Cleanup, name: &str, script: &str) -> Value {
    cleanup.container(name);
    json!({"image": BASE_IMAGE, "name": name, "cmd": ["sh", "-c", script], "detach": false})
}

/// A job that touches nothing: a run of a missing image with `pull: never`; it fails at once.
pub fn cheap_job() -> Value {
    json!({"image": format!("{REGISTRY}/{}/absent:1", unique("none")), "pull": "never"})
}

pub async fn get_job_as(app: &TestApp, id: &str, token: &str) -> Value {
    let res = app.client.get(app.url(&format!("/v1/jobs/{id}"))).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), 200, "job {id} readable");
    res.json().await.unwrap()
}

pub async fn get_job(app: &TestApp, id: &str) -> Value {
    get_job_as(app, id, &app.token(Role::Operator)).await
}

/// Poll the job (as `test-operator`) until `pred` holds; panics after `max`.
pub async fn wait_until(app: &TestApp, id: &str, max: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + max;
    loop {
        let job = get_job(app, id).await;
        if pred(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id}: not {what} after {max:?}: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until an attached run's container has started (the job's phase is `running`).
pub async fn wait_container_started(app: &TestApp, id: &str) -> Value {
    wait_until(app, id, Duration::from_secs(30), "running its container", |j| {
        j["state"] == "running" && j["progress"]["phase"] == "running"
    })
    .await
}

/// The events stored so far (replayed without following): `?since=0`, read until idle.
pub async fn events_so_far(app: &TestApp, id: &str) -> Events {
    let res = app.get(&format!("/v1/jobs/{id}/events"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut sse = LiveSse::new(res);
    let mut out = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(300), sse.inner.next()).await {
        out.push(ev);
    }
    out
}

/// The texts of the `log` events of one stream.
pub fn log_texts(events: &Events, stream: &str) -> Vec<String> {
    events
        .iter()
        .filter(|(e, _, d)| e == "log" && d["stream"] == stream)
        .map(|(_, _, d)| d["text"].as_str().unwrap().to_string())
        .collect()
}

/// Every event has an id counting 1..n; exactly one `end`, last, with `state`.
pub fn assert_sequenced_and_ended(events: &Events, end_state: &str) {
    for (i, (event, id, _)) in events.iter().enumerate() {
        assert_eq!(id.as_deref(), Some((i + 1).to_string().as_str()), "event {i} ({event}) id: {events:?}");
    }
    let (last, _, data) = events.last().expect("at least the end event");
    assert_eq!(last, "end", "{events:?}");
    assert_eq!(data["state"], end_state, "{events:?}");
    assert_eq!(events.iter().filter(|(e, _, _)| e == "end").count(), 1, "{events:?}");
    assert_eq!(events[0].0, "state", "{events:?}");
    assert_eq!(events[0].2["state"], "queued", "the first event is the queued state: {events:?}");
}

/// The `state` values in order.
pub fn states(events: &Events) -> Vec<String> {
    events.iter().filter(|(e, _, _)| e == "state").map(|(_, _, d)| d["state"].as_str().unwrap().to_string()).collect()
}

pub fn container_exists(name: &str) -> bool {
    std::process::Command::new("docker").args(["container", "inspect", name]).output().unwrap().status.success()
}

pub fn image_exists(reference: &str) -> bool {
    std::process::Command::new("docker").args(["image", "inspect", reference]).output().unwrap().status.success()
}

/// A tar holding these files.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A live SSE stream read event by event, with timeouts.
pub struct LiveSse {
    inner: Pin<Box<dyn Stream<Item = (String, Option<String>, Value)> + Send>>,
}

impl LiveSse {
    pub fn new(res: reqwest::Response) -> Self {
        use eventsource_stream::Eventsource;
        let inner = res.bytes_stream().eventsource().map(|ev| {
            let ev = ev.expect("well-formed SSE");
            let data = serde_json::from_str(&ev.data).unwrap_or(Value::String(ev.data.clone()));
            (ev.event, (!ev.id.is_empty()).then(|| ev.id.clone()), data)
        });
        Self { inner: Box::pin(inner) }
    }

    /// The next event; `None` when the server closed the stream. Panics after `max`.
    pub async fn next(&mut self, max: Duration) -> Option<(String, Option<String>, Value)> {
        tokio::time::timeout(max, self.inner.next()).await.expect("an SSE event in time")
    }

    /// Read until `pred` holds for an event (included); everything read. Panics after `max`.
    pub async fn until(&mut self, max: Duration, pred: impl Fn(&(String, Option<String>, Value)) -> bool) -> Events {
        let deadline = tokio::time::Instant::now() + max;
        let mut out = Vec::new();
        loop {
            let ev = tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .unwrap_or_else(|_| panic!("no matching SSE event within {max:?}; got {out:?}"))
                .unwrap_or_else(|| panic!("stream closed before a matching event; got {out:?}"));
            let hit = pred(&ev);
            out.push(ev);
            if hit {
                return out;
            }
        }
    }
}

async fn list_page(app: &TestApp, token: &str, query: &str) -> Value {
    let res = app.client.get(app.url(&format!("/v1/jobs{query}"))).bearer_auth(token).send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 200, "GET /v1/jobs{query}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_string()).collect()
}

// ---- the job API ---------------------------------------------------------------------------

#[actix_web::test]
async fn list_is_newest_first_filters_and_pages_with_a_cursor() {
    let app = spawn_app().await;
    let me = unique("owner");
    let token = app.token_for(&me, Role::Operator);
    let mut made = Vec::new();
    for _ in 0..3 {
        let job = submit_with(&app, &token, "/v1/containers", &cheap_job()).await;
        assert_eq!(job["owner"], me.as_str());
        assert_eq!(job["kind"], "run");
        made.push(job["id"].as_str().unwrap().to_string());
    }
    for id in &made {
        let job = app.wait_for_job(id, Role::Admin).await;
        assert_eq!(job["state"], "failed", "{job}");
        assert_eq!(job["error"]["code"], "image_not_found", "{job}");
    }
    // Ids sort by creation; the list is newest first.
    let mut sorted = made.clone();
    sorted.sort();
    assert_eq!(sorted, made, "ids are sortable by creation");
    let newest_first: Vec<String> = made.iter().rev().cloned().collect();
    let page = list_page(&app, &token, "").await;
    assert_eq!(ids(&page), newest_first);
    assert!(page["next_cursor"].is_null(), "{page}");
    let first = &page["items"][0];
    for key in ["created_at", "started_at", "finished_at"] {
        let t = first[key].as_str().unwrap_or_else(|| panic!("{key}: {first}"));
        assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{key} is RFC 3339: {t}");
    }
    assert_eq!(first["progress"]["phase"], "done", "{first}");

    // Filters.
    assert_eq!(ids(&list_page(&app, &token, "?state=failed&kind=run").await), newest_first);
    assert!(ids(&list_page(&app, &token, "?state=succeeded").await).is_empty());
    assert!(ids(&list_page(&app, &token, "?kind=pull").await).is_empty());
    assert_eq!(ids(&list_page(&app, &token, &format!("?owner={me}")).await), newest_first, "naming oneself is fine");

    // Cursor pagination, one at a time.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let q = match &cursor {
            Some(c) => format!("?limit=1&cursor={c}"),
            None => "?limit=1".to_string(),
        };
        let page = list_page(&app, &token, &q).await;
        let got = ids(&page);
        assert!(got.len() <= 1, "{page}");
        seen.extend(got);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, newest_first, "the pages together are the whole list, in order");
    let page = list_page(&app, &token, "?limit=2").await;
    assert_eq!(ids(&page), newest_first[..2].to_vec());
    let page = list_page(&app, &token, &format!("?limit=2&cursor={}", page["next_cursor"].as_str().unwrap())).await;
    assert_eq!(ids(&page), newest_first[2..].to_vec());
    assert!(page["next_cursor"].is_null(), "the last page has no cursor: {page}");

    // Bad queries are 400s.
    for q in ["?limit=0", "?limit=5000", "?limit=-1", "?state=done", "?kind=compile", "?cursor=not-a-cursor!"] {
        let res = app.client.get(app.url(&format!("/v1/jobs{q}"))).bearer_auth(&token).send().await.unwrap();
        assert_problem(res, 400, "invalid_request").await;
    }
}

#[actix_web::test]
async fn owners_see_only_their_jobs_and_admins_see_all() {
    let app = spawn_app().await;
    let (a, b) = (unique("owner-a"), unique("owner-b"));
    let (ta, tb) = (app.token_for(&a, Role::Operator), app.token_for(&b, Role::Operator));
    let ja = submit_with(&app, &ta, "/v1/containers", &cheap_job()).await["id"].as_str().unwrap().to_string();
    let jb = submit_with(&app, &tb, "/v1/containers", &cheap_job()).await["id"].as_str().unwrap().to_string();
    app.wait_for_job(&ja, Role::Admin).await;
    app.wait_for_job(&jb, Role::Admin).await;

    assert_eq!(ids(&list_page(&app, &ta, "").await), vec![ja.clone()]);
    assert_eq!(ids(&list_page(&app, &tb, "").await), vec![jb.clone()]);
    // A viewer with A's subject sees A's jobs too (ownership is by subject).
    assert_eq!(ids(&list_page(&app, &app.token_for(&a, Role::Viewer), "").await), vec![ja.clone()]);
    let admin = app.token(Role::Admin);
    assert_eq!(ids(&list_page(&app, &admin, "").await), vec![jb.clone(), ja.clone()]);
    assert_eq!(ids(&list_page(&app, &admin, &format!("?owner={a}")).await), vec![ja.clone()]);

    let res = app.client.get(app.url(&format!("/v1/jobs?owner={b}"))).bearer_auth(&ta).send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;

    // Another owner's job is not found, whatever the route.
    let res = app.client.get(app.url(&format!("/v1/jobs/{jb}"))).bearer_auth(&ta).send().await.unwrap();
    assert_problem(res, 404, "job_not_found").await;
    let res = app.client.get(app.url(&format!("/v1/jobs/{jb}/events"))).bearer_auth(&ta).send().await.unwrap();
    assert_problem(res, 404, "job_not_found").await;
    let res = app.client.delete(app.url(&format!("/v1/jobs/{jb}"))).bearer_auth(&ta).send().await.unwrap();
    assert_problem(res, 404, "job_not_found").await;
    assert_eq!(get_job_as(&app, &jb, &admin).await["owner"], b.as_str(), "admin reads any job");
    let res = app.client.get(app.url("/v1/jobs/NOSUCHJOB0000000000000000")).bearer_auth(&ta).send().await.unwrap();
    assert_problem(res, 404, "job_not_found").await;
}

#[actix_web::test]
async fn delete_forgets_a_finished_job_and_refuses_a_running_one() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let id = run_job(&app, cheap_job()).await;
    assert_eq!(app.wait_for_job(&id, Role::Operator).await["state"], "failed");
    let res = app.delete(&format!("/v1/jobs/{id}"), Role::Viewer).send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;
    let res = app.delete(&format!("/v1/jobs/{id}"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let res = app.get(&format!("/v1/jobs/{id}"), Role::Operator).send().await.unwrap();
    assert_problem(res, 404, "job_not_found").await;
    let res = app.get(&format!("/v1/jobs/{id}/events"), Role::Operator).send().await.unwrap();
    assert_problem(res, 404, "job_not_found").await;
    let res = app.delete(&format!("/v1/jobs/{id}"), Role::Operator).send().await.unwrap();
    assert_problem(res, 404, "job_not_found").await;
    assert!(ids(&list_page(&app, &app.token(Role::Operator), "").await).is_empty());

    let name = unique("del-running");
    let running = run_job(&app, attached(&mut cleanup, &name, "sleep 30")).await;
    wait_until(&app, &running, Duration::from_secs(30), "running", |j| j["state"] == "running").await;
    let res = app.delete(&format!("/v1/jobs/{running}"), Role::Operator).send().await.unwrap();
    assert_problem(res, 409, "conflict").await;
    let res = app.post(&format!("/v1/jobs/{running}/cancel"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.wait_for_job(&running, Role::Operator).await["state"], "canceled");
    let res = app.delete(&format!("/v1/jobs/{running}"), Role::Admin).send().await.unwrap();
    assert_eq!(res.status(), 204, "admin deletes any finished job");
}

#[actix_web::test]
async fn idempotency_key_returns_the_same_job_per_owner() {
    let app = spawn_app().await;
    let key = unique("key");
    let body = cheap_job();
    let post = |token: String| {
        app.client
            .post(app.url("/v1/containers"))
            .bearer_auth(token)
            .header("Idempotency-Key", key.clone())
            .json(&body)
            .send()
    };
    let first = post(app.token(Role::Operator)).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(first["idempotency_key"], key.as_str());
    app.wait_for_job(&id, Role::Operator).await;

    let again = post(app.token(Role::Operator)).await.unwrap();
    assert_eq!(again.status(), 200, "the same key answers the job made before");
    assert_eq!(again.headers()["location"].to_str().unwrap(), format!("/v1/jobs/{id}"));
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["state"], "failed", "as it is now: {again}");

    let other = post(app.token_for(&unique("other"), Role::Operator)).await.unwrap();
    assert_eq!(other.status(), 202, "another owner's key is another job");
    let other: Value = other.json().await.unwrap();
    assert_ne!(other["id"], id.as_str());

    // Only one job was made for the first owner.
    assert_eq!(ids(&list_page(&app, &app.token(Role::Operator), "").await), vec![id.clone()]);
    let res = app
        .client
        .post(app.url("/v1/containers"))
        .bearer_auth(app.token(Role::Operator))
        .header("Idempotency-Key", "has space")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "invalid_request").await;
}

// ---- event streams -------------------------------------------------------------------------

#[actix_web::test]
async fn events_replay_after_last_event_id_or_since() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("sse-replay");
    let id = run_job(&app, attached(&mut cleanup, &name, "echo one; echo two; echo three")).await;
    let job = app.wait_for_job(&id, Role::Operator).await;
    assert_eq!(job["state"], "succeeded", "{job}");

    let all = app.job_events(&id, Role::Operator).await;
    assert_sequenced_and_ended(&all, "succeeded");
    assert_eq!(states(&all), ["queued", "running", "succeeded"]);
    assert_eq!(log_texts(&all, "stdout").iter().filter(|t| !t.starts_with("[berth]")).collect::<Vec<_>>(), ["one", "two", "three"]);
    let (_, _, result) = all.iter().find(|(e, _, _)| e == "result").expect("a result event");
    assert_eq!(result, &job["result"]);
    assert!(all.len() > 4, "{all:?}");

    let res = app.get(&format!("/v1/jobs/{id}/events"), Role::Operator).header("Last-Event-ID", "3").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let tail = read_sse(res).await;
    assert_eq!(tail, all[3..].to_vec(), "Last-Event-ID: 3 replays from 4");
    let res = app.get(&format!("/v1/jobs/{id}/events?since=3"), Role::Operator).send().await.unwrap();
    assert_eq!(read_sse(res).await, all[3..].to_vec(), "?since=3 as well");
    // The header wins over the query.
    let res = app
        .get(&format!("/v1/jobs/{id}/events?since=1"), Role::Operator)
        .header("Last-Event-ID", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(read_sse(res).await, all[3..].to_vec());
    // From just before the end: the `end` event, then the stream closes.
    let n = all.len();
    let res = app.get(&format!("/v1/jobs/{id}/events"), Role::Operator).header("Last-Event-ID", (n - 1).to_string()).send().await.unwrap();
    assert_eq!(read_sse(res).await, all[n - 1..].to_vec());
    // A client that saw `end` and reconnects (EventSource does) gets 204, which tells
    // EventSource to stop reconnecting, not an idle stream held open forever.
    for after in [n, n + 5] {
        let res =
            app.get(&format!("/v1/jobs/{id}/events"), Role::Operator).header("Last-Event-ID", after.to_string()).send().await.unwrap();
        assert_eq!(res.status(), 204, "Last-Event-ID: {after} of {n}: nothing more");
        assert!(res.bytes().await.unwrap().is_empty());
    }

    let res = app.get(&format!("/v1/jobs/{id}/events"), Role::Operator).header("Last-Event-ID", "x").send().await.unwrap();
    assert_problem(res, 400, "invalid_request").await;
    // Beyond any id the store can hold: a 400, not a store failure.
    let res = app
        .get(&format!("/v1/jobs/{id}/events"), Role::Operator)
        .header("Last-Event-ID", "9223372036854775808")
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "invalid_request").await;
    let res = app.get(&format!("/v1/jobs/{id}/events?since=18446744073709551615"), Role::Operator).send().await.unwrap();
    assert_problem(res, 400, "invalid_request").await;

    // ?access_token= instead of the header, on the event stream only.
    let token = app.token_for("test-operator", Role::Viewer);
    let res = app.client.get(app.url(&format!("/v1/jobs/{id}/events?access_token={token}"))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(read_sse(res).await, all);
    let res = app.client.get(app.url(&format!("/v1/jobs/{id}?access_token={token}"))).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
    let res = app.client.get(app.url(&format!("/v1/jobs/{id}/events?access_token=nope"))).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
}

#[actix_web::test]
async fn events_follow_a_running_job_live() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("sse-live");
    let id = run_job(&app, attached(&mut cleanup, &name, "echo first; sleep 2; echo second")).await;
    let res = app.get(&format!("/v1/jobs/{id}/events"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let before = get_job(&app, &id).await;
    assert!(["queued", "running"].contains(&before["state"].as_str().unwrap()), "subscribed before the end: {before}");
    let mut live = LiveSse::new(res);
    let head = live.until(Duration::from_secs(30), |(e, _, d)| e == "log" && d["text"] == "first").await;
    assert_eq!(states(&head), ["queued", "running"]);
    let now = get_job(&app, &id).await;
    assert_eq!(now["state"], "running", "the job still runs while its output streams: {now}");
    let mut all = head;
    while let Some(ev) = live.next(Duration::from_secs(30)).await {
        all.push(ev);
    }
    assert_sequenced_and_ended(&all, "succeeded");
    assert_eq!(states(&all), ["queued", "running", "succeeded"]);
    assert!(log_texts(&all, "stdout").contains(&"second".to_string()), "{all:?}");
    assert_eq!(all, app.job_events(&id, Role::Operator).await, "live and replay agree");
}

#[actix_web::test]
async fn global_events_show_own_jobs_and_admins_see_all() {
    let app = spawn_app().await;
    let (a, b) = (unique("ev-a"), unique("ev-b"));
    let (ta, tb) = (app.token_for(&a, Role::Operator), app.token_for(&b, Role::Operator));
    let open = |token: String| app.client.get(app.url("/v1/events")).bearer_auth(token).send();
    let res_a = open(ta.clone()).await.unwrap();
    assert_eq!(res_a.status(), 200);
    assert!(res_a.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut sse_a = LiveSse::new(res_a);
    let mut sse_b = LiveSse::new(open(tb.clone()).await.unwrap());
    let mut sse_admin = LiveSse::new(open(app.token_for(&unique("ev-admin"), Role::Admin)).await.unwrap());
    // A viewer by query token (EventSource).
    let res_v = app
        .client
        .get(app.url(&format!("/v1/events?access_token={}", app.token_for(&a, Role::Viewer))))
        .send()
        .await
        .unwrap();
    assert_eq!(res_v.status(), 200);
    let mut sse_v = LiveSse::new(res_v);

    let job_a = submit_with(&app, &ta, "/v1/containers", &cheap_job()).await["id"].as_str().unwrap().to_string();
    let ended = |id: String| move |(e, _, d): &(String, Option<String>, Value)| e == "state" && d["job_id"] == id.as_str() && d["state"] == "failed";
    let got_a = sse_a.until(Duration::from_secs(30), ended(job_a.clone())).await;
    let mine: Vec<&Value> = got_a.iter().map(|(_, _, d)| d).filter(|d| d["job_id"] == job_a.as_str()).collect();
    assert_eq!(mine.iter().map(|d| d["state"].as_str().unwrap()).collect::<Vec<_>>(), ["queued", "running", "failed"], "{got_a:?}");
    for d in &mine {
        assert_eq!(d["kind"], "run");
        assert_eq!(d["owner"], a.as_str());
    }
    assert!(got_a.iter().all(|(e, id, _)| e == "state" && id.is_some()), "{got_a:?}");
    let got_admin = sse_admin.until(Duration::from_secs(30), ended(job_a.clone())).await;
    assert!(got_admin.iter().any(|(_, _, d)| d["job_id"] == job_a.as_str() && d["state"] == "queued"), "{got_admin:?}");
    sse_v.until(Duration::from_secs(30), ended(job_a.clone())).await;

    // B sees its own job, and nothing of A's, which came before it.
    let job_b = submit_with(&app, &tb, "/v1/containers", &cheap_job()).await["id"].as_str().unwrap().to_string();
    let got_b = sse_b.until(Duration::from_secs(30), ended(job_b.clone())).await;
    assert!(got_b.iter().all(|(_, _, d)| d["owner"] == b.as_str()), "only B's jobs: {got_b:?}");
    assert!(!got_b.iter().any(|(_, _, d)| d["job_id"] == job_a.as_str()), "{got_b:?}");
    // And A does not see B's.
    sse_admin.until(Duration::from_secs(30), ended(job_b.clone())).await;
    let job_a2 = submit_with(&app, &ta, "/v1/containers", &cheap_job()).await["id"].as_str().unwrap().to_string();
    let got_a = sse_a.until(Duration::from_secs(30), ended(job_a2.clone())).await;
    assert!(got_a.iter().all(|(_, _, d)| d["owner"] == a.as_str()), "only A's jobs: {got_a:?}");
}

#[actix_web::test]
async fn an_idempotency_key_reused_with_another_body_is_422_and_makes_nothing() {
    let app = spawn_app().await;
    let key = unique("key");
    let post = |body: Value| {
        app.client
            .post(app.url("/v1/containers"))
            .bearer_auth(app.token(Role::Operator))
            .header("Idempotency-Key", key.clone())
            .json(&body)
            .send()
    };
    let body = cheap_job();
    let first = post(body.clone()).await.unwrap();
    assert_eq!(first.status(), 202);
    let id = first.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let mut other = body.clone();
    other["cmd"] = serde_json::json!(["echo", "something else"]);
    let problem = assert_problem(post(other).await.unwrap(), 422, "idempotency_key_reused").await;
    assert!(problem["detail"].as_str().unwrap().contains(&id), "{problem}");
    assert_eq!(post(body).await.unwrap().status(), 200, "the same body still answers the job made before");
    assert_eq!(ids(&list_page(&app, &app.token(Role::Operator), "").await), vec![id]);
}
