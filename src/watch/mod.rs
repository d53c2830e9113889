//! `berth watch`: follow a job's events (or every visible job's state changes) from a
//! Berth server, the way `docker pull` shows progress: bars on a terminal, plain lines
//! otherwise. A dropped connection is resumed with `Last-Event-ID`.
//!
//! Exit codes (the contract): 0 the job succeeded; 1 it failed, was canceled or
//! interrupted; 2 usage, auth or connection errors (the message on stderr).

mod client;
mod render;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use berth::domain::job::{JobState, LayerEvent, Progress};
use eventsource_stream::{Event, Eventsource};
use futures_util::StreamExt;
use serde_json::Value;

use client::{Client, Failure, Opened};
use render::{Bars, Plain, Render};

const FAILED: u8 = 1;
const USAGE: u8 = 2;

#[derive(clap::Args)]
pub struct WatchArgs {
    /// The job to follow.
    #[arg(required_unless_present = "events", conflicts_with = "events")]
    job_id: Option<String>,
    /// Instead: print the state changes of every job the token may see, until interrupted.
    #[arg(long)]
    events: bool,
    /// Berth's base URL.
    #[arg(long, env = "BERTH_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A bearer token (e.g. from `berth token`).
    #[arg(long, env = "BERTH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Plain lines even on a terminal (the default when stdout is not one).
    #[arg(long)]
    plain: bool,
    /// Reconnects in a row, without an event in between, before giving up (exit 2).
    #[arg(long, default_value_t = 5)]
    retries: u32,
}

pub fn run(args: WatchArgs) -> ExitCode {
    let code = match prepare(&args) {
        Ok(client) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
            rt.block_on(watch(&args, &client))
        }
        Err(e) => Err(e),
    };
    ExitCode::from(code.unwrap_or_else(|e| {
        eprintln!("berth watch: {e}");
        USAGE
    }))
}

fn prepare(args: &WatchArgs) -> Result<Client, String> {
    let token = args.token.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let token = token.ok_or("no token: pass --token or set BERTH_TOKEN (e.g. from `berth token`)")?;
    if let Some(id) = &args.job_id
        && !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!("`{id}` is not a job id"));
    }
    Client::new(&args.url, token)
}

async fn watch(args: &WatchArgs, client: &Client) -> Result<u8, String> {
    let Some(id) = &args.job_id else {
        follow(client, "/v1/events", false, args.retries, &mut Feed).await?;
        return Ok(0);
    };
    let render: Box<dyn Render> =
        if args.plain || !std::io::stdout().is_terminal() { Box::new(Plain::default()) } else { Box::new(Bars::new()) };
    let mut sink = JobSink { id: id.clone(), render };
    match follow(client, &format!("/v1/jobs/{id}/events"), true, args.retries, &mut sink).await? {
        Some(code) => Ok(code),
        // Resumed past `end`: the record says how it ended.
        None => {
            let job = client.json(&format!("/v1/jobs/{id}")).await.map_err(|f| match f {
                Failure::Fatal(m) | Failure::Transient(m) => m,
            })?;
            let state = job["state"].as_str().and_then(JobState::parse).ok_or("the job record has no state")?;
            Ok(sink.end(state))
        }
    }
}

/// What the stream's events do; `Some(code)` ends the watch.
trait Sink {
    fn event(&mut self, ev: &Event) -> Option<u8>;
    fn note(&mut self, text: &str);
}

/// Read `path` to its end, reconnecting (with `Last-Event-ID` when `resume`) after a
/// drop, at most `retries` times in a row. `Ok(Some(code))` from the sink, `Ok(None)` when
/// the server said `204` (nothing after the last event), `Err` to exit 2.
async fn follow(client: &Client, path: &str, resume: bool, retries: u32, sink: &mut dyn Sink) -> Result<Option<u8>, String> {
    let mut last: Option<u64> = None;
    let mut failures = 0u32;
    let mut connected = false;
    loop {
        let why = match client.open(path, last.filter(|_| resume)).await {
            Ok(Opened::Over) => return Ok(None),
            Ok(Opened::Stream(res)) => {
                connected = true;
                let mut events = res.bytes_stream().eventsource();
                loop {
                    match events.next().await {
                        Some(Ok(ev)) => {
                            let seq = ev.id.parse::<u64>().ok();
                            // A replay never repeats what was shown; guard anyway.
                            if resume && seq.is_some() && seq <= last {
                                continue;
                            }
                            last = seq.or(last);
                            failures = 0;
                            if let Some(code) = sink.event(&ev) {
                                return Ok(Some(code));
                            }
                        }
                        Some(Err(e)) => break format!("the stream broke: {}", client::chain(&e)),
                        None => break "the server closed the stream".to_string(),
                    }
                }
            }
            Err(Failure::Fatal(m)) => return Err(m),
            // Never connected: the URL or the server is wrong, not the network for a moment.
            Err(Failure::Transient(m)) if !connected => return Err(m),
            Err(Failure::Transient(m)) => m,
        };
        failures += 1;
        if failures > retries {
            return Err(format!("{why}; gave up after {retries} reconnects"));
        }
        let wait = Duration::from_millis(250 << failures.min(5));
        let at = last.map(|n| format!(" after event {n}")).unwrap_or_default();
        sink.note(&format!("{why}; resuming{at} in {} ms ({failures}/{retries})", wait.as_millis()));
        tokio::time::sleep(wait).await;
    }
}

/// One job's events, shown by a [`Render`].
struct JobSink {
    id: String,
    render: Box<dyn Render>,
}

impl JobSink {
    fn end(&mut self, state: JobState) -> u8 {
        self.render.finish(&self.id, state);
        if state == JobState::Succeeded { 0 } else { FAILED }
    }
}

fn parse<T: serde::de::DeserializeOwned>(data: &str) -> Option<T> {
    serde_json::from_str(data).ok()
}

fn state_of(data: &str) -> Option<JobState> {
    parse::<Value>(data)?.get("state")?.as_str().and_then(JobState::parse)
}

impl Sink for JobSink {
    fn event(&mut self, ev: &Event) -> Option<u8> {
        let r = &mut self.render;
        match ev.event.as_str() {
            "state" => state_of(&ev.data).into_iter().for_each(|s| r.state(s)),
            "progress" => parse::<Progress>(&ev.data).into_iter().for_each(|p| r.progress(&p)),
            "layer" => parse::<LayerEvent>(&ev.data).into_iter().for_each(|l| r.layer(&l)),
            "log" => {
                let v: Value = parse(&ev.data).unwrap_or_default();
                let text = v["text"].as_str().unwrap_or_default();
                r.line(text.strip_suffix('\n').unwrap_or(text));
            }
            "error" => {
                let v: Value = parse(&ev.data).unwrap_or_default();
                r.line(&format!("error: {}: {}", v["code"].as_str().unwrap_or("?"), v["message"].as_str().unwrap_or_default()));
            }
            "end" => return Some(self.end(state_of(&ev.data).unwrap_or(JobState::Failed))),
            // `result`, build `step`s and whatever comes later: as they are.
            other => r.line(&format!("{other}: {}", ev.data)),
        }
        None
    }

    fn note(&mut self, text: &str) {
        self.render.note(text);
    }
}

/// `/v1/events`: one line per state change, `JOB_ID KIND OWNER STATE`.
struct Feed;

impl Sink for Feed {
    fn event(&mut self, ev: &Event) -> Option<u8> {
        let v: Value = parse(&ev.data).unwrap_or_default();
        let s = |k: &str| v[k].as_str().unwrap_or("-").to_string();
        match ev.event.as_str() {
            "state" => println!("{} {} {} {}", s("job_id"), s("kind"), s("owner"), s("state")),
            "lagged" => self.note(&format!("missed {} state changes (re-list GET /v1/jobs)", v["missed"])),
            _ => {}
        }
        None
    }

    fn note(&mut self, text: &str) {
        eprintln!("berth watch: {text}");
    }
}
