//! The measurer behind `scripts/bench/suite.sh` (issue 15's benchmark suite): figures, not
//! pass/fail. Each subcommand measures one part against a running Berth (and, where there
//! is one, the baseline a user would otherwise use: the engine over its own socket, asked
//! alternately in the same run), writes its progress to stderr and one JSON object, its
//! figures, as the last line on stdout. The script starts and stops the Berths, prepares
//! the engine objects, and prints the table.
//!
//! - `ready`: exec Berth again and again; time from exec to its first 200 of `/readyz`.
//! - `lists`: `GET /v1/containers?all=true`, `GET /v1/images`, `GET /v1/containers/{id}`
//!   through Berth next to `/containers/json?all=1`, `/images/json`, `/containers/{id}/json`
//!   on the engine socket, alternating request by request (which goes first alternates).
//! - `mixed`: N requests (lists, inspects, job lists and gets) from C concurrent clients;
//!   Berth's RSS before, at its peak (VmHWM) and after.
//! - `sse`: S subscribers to one attached run job that prints 10,000 lines: every event to
//!   every subscriber?, delivery lag (receive time minus the first subscriber's receive time
//!   of the same event), Berth's peak RSS.
//! - `follow`: F concurrent `logs?follow=true` on one running container: Berth's sockets
//!   connected to the engine socket, and its RSS.
//!
//! One HTTP/1.1 stack for both sides (hyper 1; keep-alive, TCP_NODELAY, no
//! Accept-Encoding, so Berth answers uncompressed, as the engine does).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Berth's address, `127.0.0.1:PORT`.
    #[arg(long)]
    addr: String,
    /// An admin token.
    #[arg(long, env = "BENCH_TOKEN", default_value = "")]
    token: String,
    /// The engine's unix socket.
    #[arg(long, default_value = "/var/run/docker.sock")]
    engine_sock: String,
    /// Berth's process id (for /proc figures).
    #[arg(long, default_value_t = 0)]
    pid: u32,
    /// The label value (`bench.suite=`) of the objects the script made.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Time from exec to the first 200 of /readyz, `runs` times (Berth's env is inherited).
    Ready {
        #[arg(long)]
        bin: String,
        #[arg(long)]
        addr: String,
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Where each start's output goes (appended).
        #[arg(long, default_value = "/dev/null")]
        log: String,
        #[arg(long, default_value = "/var/run/docker.sock")]
        engine_sock: String,
    },
    /// Lists and inspect through Berth next to the engine, alternately.
    Lists {
        #[command(flatten)]
        c: Common,
        #[arg(long, default_value_t = 300)]
        n: usize,
        #[arg(long, default_value_t = 30)]
        warmup: usize,
    },
    /// Concurrent mixed requests; Berth's RSS before, peak, after.
    Mixed {
        #[command(flatten)]
        c: Common,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Run jobs to submit (and wait for) first, so that there are jobs to get.
        #[arg(long, default_value_t = 20)]
        seed_jobs: usize,
        #[arg(long, default_value = "berth-test/busybox:latest")]
        image: String,
    },
    /// SSE fan-out of one chatty attached run job.
    Sse {
        #[command(flatten)]
        c: Common,
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        #[arg(long, default_value_t = 10_000)]
        lines: usize,
        #[arg(long, default_value = "berth-test/busybox:latest")]
        image: String,
        /// Subscribers connecting at once.
        #[arg(long, default_value_t = 128)]
        connect_concurrency: usize,
        /// Seconds the whole fan-out may take after the job is released.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
    },
    /// Concurrent `logs?follow=true` on one running container.
    Follow {
        #[command(flatten)]
        c: Common,
        #[arg(long)]
        container: String,
        #[arg(long, default_value_t = 200)]
        followers: usize,
    },
}

// ---------------------------------------------------------------------------------------
// helpers

type HttpClient = Client<HttpConnector, Empty<Bytes>>;
type UnixClient = Client<hyperlocal::UnixConnector, Empty<Bytes>>;

fn tcp_client() -> HttpClient {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build(conn)
}

fn unix_client() -> UnixClient {
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build(hyperlocal::UnixConnector)
}

struct Answer {
    status: u16,
    body: Bytes,
    ms: f64,
    encoding: Option<String>,
}

async fn berth_get(client: &HttpClient, addr: &str, token: &str, path: &str) -> Result<Answer, String> {
    let req = Request::get(format!("http://{addr}{path}"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    let res = client.request(req).await.map_err(|e| format!("GET {path}: {e:?}"))?;
    let status = res.status().as_u16();
    let encoding = res.headers().get("content-encoding").and_then(|v| v.to_str().ok()).map(String::from);
    let body = res.into_body().collect().await.map_err(|e| format!("GET {path}: {e}"))?.to_bytes();
    Ok(Answer { status, body, ms: t.elapsed().as_secs_f64() * 1000.0, encoding })
}

async fn engine_get(client: &UnixClient, sock: &str, path: &str) -> Result<Answer, String> {
    let uri: hyper::Uri = hyperlocal::Uri::new(sock, path).into();
    let req = Request::get(uri).body(Empty::new()).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let res = client.request(req).await.map_err(|e| format!("engine GET {path}: {e:?}"))?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.map_err(|e| format!("engine GET {path}: {e}"))?.to_bytes();
    Ok(Answer { status, body, ms: t.elapsed().as_secs_f64() * 1000.0, encoding: None })
}

/// A JSON POST to Berth (one connection each: rare).
async fn berth_post(addr: &str, token: &str, path: &str, body: &Value) -> Result<(u16, Value), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::post(path)
        .header(HOST, addr)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| format!("POST {path}: {e}"))?;
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

async fn berth_json(client: &HttpClient, addr: &str, token: &str, path: &str) -> Result<Value, String> {
    let a = berth_get(client, addr, token, path).await?;
    if a.status != 200 {
        return Err(format!("GET {path}: {} {}", a.status, String::from_utf8_lossy(&a.body[..a.body.len().min(300)])));
    }
    serde_json::from_slice(&a.body).map_err(|e| format!("GET {path}: {e}"))
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench_suite: {msg}");
    std::process::exit(1);
}

fn log(msg: impl std::fmt::Display) {
    eprintln!("bench_suite: {msg}");
}

/// `/proc/PID/status` figures in KiB (VmRSS, VmHWM, RssAnon, RssFile, RssShmem).
fn proc_status(pid: u32) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let kib = v.trim().strip_suffix(" kB")?.trim().parse().ok()?;
            Some((k.to_string(), kib))
        })
        .collect()
}

fn mib(pid: u32, key: &str) -> f64 {
    proc_status(pid).get(key).copied().unwrap_or(0) as f64 / 1024.0
}

/// CPU seconds (user + system) of a process or thread, from its `stat` file.
fn stat_cpu(path: &str) -> f64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// CPU seconds of each thread name of a process, summed.
fn threads_cpu(pid: u32) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in dir.flatten() {
            let p = e.path();
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default().trim().to_string();
            // Numbered pools (`tokio-runtime-w`, `actix-rt|system:0|arbiter:1`) by their name.
            *out.entry(comm).or_insert(0.0) += stat_cpu(&p.join("stat").to_string_lossy());
        }
    }
    out
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// The engine's API version prefix (`/v1.41`).
async fn engine_prefix(unix: &UnixClient, sock: &str) -> String {
    let a = engine_get(unix, sock, "/version").await.unwrap_or_else(|e| fail(e));
    let v: Value = serde_json::from_slice(&a.body).unwrap_or_else(|e| fail(format!("engine /version: {e}")));
    format!("/v{}", v["ApiVersion"].as_str().unwrap_or_else(|| fail("engine /version without ApiVersion")))
}

/// Ids of the containers labelled `bench.suite=<label>`, asked of the engine.
async fn labelled_containers(unix: &UnixClient, sock: &str, prefix: &str, label: &str) -> Vec<String> {
    let filters = percent_encode(&json!({"label": [format!("bench.suite={label}")]}).to_string());
    let a = engine_get(unix, sock, &format!("{prefix}/containers/json?all=1&filters={filters}")).await.unwrap_or_else(|e| fail(e));
    let v: Value = serde_json::from_slice(&a.body).unwrap_or_else(|e| fail(e));
    v.as_array().map(|a| a.iter().filter_map(|c| c["Id"].as_str().map(String::from)).collect()).unwrap_or_default()
}

/// Berth's socket inodes (from /proc/PID/fd) that are connected to the engine socket
/// (the accepting side of each, in `ss -xan`, is bound to the socket's path), and all its
/// sockets.
fn engine_connections(pid: u32, engine_sock: &str) -> (usize, usize) {
    let mut mine = HashSet::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            if let Ok(target) = std::fs::read_link(e.path()) {
                let t = target.to_string_lossy();
                if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                    mine.insert(inode.to_string());
                }
            }
        }
    }
    let canon = |p: &str| std::fs::canonicalize(p).map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| p.to_string());
    let engine = canon(engine_sock);
    let out = std::process::Command::new("ss").args(["-xanH"]).output().unwrap_or_else(|e| fail(format!("ss: {e}")));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut n = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Netid State Recv-Q Send-Q Local Inode Peer PeerInode
        if f.len() < 8 || f[1] != "ESTAB" || f[4] == "*" {
            continue;
        }
        if canon(f[4]) == engine && mine.contains(f[7]) {
            n += 1;
        }
    }
    (n, mine.len())
}

// ---------------------------------------------------------------------------------------
// ready

async fn ready(bin: String, addr: String, runs: usize, log_path: String, engine_sock: String) -> Value {
    use std::process::{Command, Stdio};
    let mut times = Vec::new();
    let mut listen_times = Vec::new();
    for run in 0..runs {
        let logf = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap_or_else(|e| fail(e));
        let t0 = Instant::now();
        let mut child = Command::new(&bin)
            .arg("serve")
            .stdout(Stdio::from(logf.try_clone().unwrap()))
            .stderr(Stdio::from(logf))
            .spawn()
            .unwrap_or_else(|e| fail(format!("exec {bin}: {e}")));
        let mut listening = None;
        let deadline = t0 + Duration::from_secs(20);
        let ms = loop {
            if Instant::now() > deadline {
                let _ = child.kill();
                fail(format!("run {run}: no 200 from /readyz within 20 s"));
            }
            let Ok(stream) = TcpStream::connect(&addr).await else {
                tokio::time::sleep(Duration::from_micros(500)).await;
                continue;
            };
            listening.get_or_insert_with(|| t0.elapsed().as_secs_f64() * 1000.0);
            let _ = stream.set_nodelay(true);
            let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else { continue };
            tokio::spawn(conn);
            let req = Request::get("/readyz").header(HOST, addr.as_str()).body(Empty::<Bytes>::new()).unwrap();
            match sender.send_request(req).await {
                Ok(res) if res.status() == 200 => break t0.elapsed().as_secs_f64() * 1000.0,
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        };
        times.push(ms);
        listen_times.push(listening.unwrap_or(ms));
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = child.wait();
        log(format!("ready run {}: listening after {:.1} ms, /readyz 200 after {ms:.1} ms", run + 1, listening.unwrap_or(ms)));
    }
    // Baseline figure: a fresh connection's first 200 of the engine's /_ping.
    let mut ping = Vec::new();
    for _ in 0..runs {
        let unix = unix_client();
        let a = engine_get(&unix, &engine_sock, "/_ping").await.unwrap_or_else(|e| fail(e));
        if a.status == 200 {
            ping.push(a.ms);
        }
    }
    json!({
        "runs": runs, "ready_ms": times, "median_ms": pct(&times, 0.5), "min_ms": pct(&times, 0.0), "max_ms": pct(&times, 1.0),
        "listen_median_ms": pct(&listen_times, 0.5), "engine_ping_median_ms": pct(&ping, 0.5),
    })
}

// ---------------------------------------------------------------------------------------
// lists

async fn lists(c: Common, n: usize, warmup: usize) -> Value {
    let (tcp, unix) = (tcp_client(), unix_client());
    let prefix = engine_prefix(&unix, &c.engine_sock).await;
    let ids = labelled_containers(&unix, &c.engine_sock, &prefix, &c.label).await;
    let Some(inspect_id) = ids.first().cloned() else { fail(format!("no container labelled bench.suite={}", c.label)) };
    let kinds: Vec<(&str, String, String)> = vec![
        ("list_containers", "/v1/containers?all=true".into(), format!("{prefix}/containers/json?all=1")),
        ("list_images", "/v1/images".into(), format!("{prefix}/images/json")),
        ("inspect_container", format!("/v1/containers/{inspect_id}"), format!("{prefix}/containers/{inspect_id}/json")),
        ("floor", "/healthz".into(), "/_ping".into()),
    ];
    let mut times: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    let mut info: BTreeMap<String, Value> = BTreeMap::new();
    for i in 0..warmup + n {
        for (kind, bpath, epath) in &kinds {
            let berth_first = i % 2 == 0;
            for side in if berth_first { ["berth", "engine"] } else { ["engine", "berth"] } {
                let a = if side == "berth" {
                    berth_get(&tcp, &c.addr, &c.token, bpath).await
                } else {
                    engine_get(&unix, &c.engine_sock, epath).await
                }
                .unwrap_or_else(|e| fail(e));
                if a.status != 200 {
                    fail(format!("{side} {kind}: {} {}", a.status, String::from_utf8_lossy(&a.body[..a.body.len().min(300)])));
                }
                if i >= warmup {
                    times.entry((kind, side)).or_default().push(a.ms);
                }
                if i == warmup {
                    let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
                    let count = v.as_array().map(|a| a.len());
                    info.insert(format!("{kind}.{side}.bytes"), json!(a.body.len()));
                    info.insert(format!("{kind}.{side}.count"), json!(count));
                    info.insert(format!("{kind}.{side}.content_encoding"), json!(a.encoding));
                }
            }
        }
        // The engine on a new connection per request (what bollard does on a unix socket).
        let fresh = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(hyperlocal::UnixConnector);
        let a = engine_get(&fresh, &c.engine_sock, &kinds[2].2).await.unwrap_or_else(|e| fail(e));
        if i >= warmup {
            times.entry(("inspect_container", "engine_fresh")).or_default().push(a.ms);
        }
        if i == warmup {
            log(format!("lists: warm-up of {warmup} done, measuring {n} of each, alternately"));
        }
    }
    let mut out = serde_json::Map::new();
    for (kind, _, _) in &kinds {
        let b = &times[&(*kind, "berth")];
        let e = &times[&(*kind, "engine")];
        out.insert(
            kind.to_string(),
            json!({
                "n": b.len(),
                "berth_p50": pct(b, 0.5), "berth_p90": pct(b, 0.9),
                "engine_p50": pct(e, 0.5), "engine_p90": pct(e, 0.9),
                "ratio_p50": pct(b, 0.5) / pct(e, 0.5),
            }),
        );
    }
    let fresh = &times[&("inspect_container", "engine_fresh")];
    out.insert("inspect_engine_fresh_conn".into(), json!({"p50": pct(fresh, 0.5), "p90": pct(fresh, 0.9)}));
    out.insert("info".into(), json!(info));
    out.insert("engine_api".into(), json!(prefix));
    out.insert("labelled_containers".into(), json!(ids.len()));
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------
// mixed

async fn wait_jobs_over(tcp: &HttpClient, c: &Common, ids: &[String], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for id in ids {
        loop {
            let j = berth_json(tcp, &c.addr, &c.token, &format!("/v1/jobs/{id}")).await.unwrap_or_else(|e| fail(e));
            if matches!(j["state"].as_str(), Some("succeeded" | "failed" | "canceled" | "interrupted")) {
                break;
            }
            if Instant::now() > deadline {
                fail(format!("job {id} still {} after {timeout:?}", j["state"]));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn mixed(c: Common, clients: usize, requests: usize, seed_jobs: usize, image: String) -> Value {
    let (tcp, unix) = (tcp_client(), unix_client());
    let prefix = engine_prefix(&unix, &c.engine_sock).await;
    let containers = labelled_containers(&unix, &c.engine_sock, &prefix, &c.label).await;
    if containers.is_empty() {
        fail(format!("no container labelled bench.suite={}", c.label));
    }
    let rss_start = mib(c.pid, "VmRSS");
    // Jobs to get: a few quick runs, waited for.
    let mut seeded = Vec::new();
    for _ in 0..seed_jobs {
        let body = json!({"image": image, "cmd": ["true"], "pull": "never", "detach": false, "auto_remove": true,
                          "labels": {"bench.suite": c.label}});
        let (status, v) = berth_post(&c.addr, &c.token, "/v1/containers", &body).await.unwrap_or_else(|e| fail(e));
        if status != 202 {
            fail(format!("submit run: {status} {v}"));
        }
        seeded.push(v["id"].as_str().unwrap_or_default().to_string());
    }
    wait_jobs_over(&tcp, &c, &seeded, Duration::from_secs(120)).await;
    let page = berth_json(&tcp, &c.addr, &c.token, "/v1/jobs?limit=100").await.unwrap_or_else(|e| fail(e));
    let jobs: Vec<String> = page["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|j| j["id"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    let jobs = if jobs.is_empty() { seeded.clone() } else { jobs };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = mib(c.pid, "VmRSS");
    let hwm_before = mib(c.pid, "VmHWM");
    let next = Arc::new(AtomicUsize::new(0));
    let (containers, jobs) = (Arc::new(containers), Arc::new(jobs));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, tcp, c, containers, jobs) = (next.clone(), tcp.clone(), c.clone(), containers.clone(), jobs.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
            let mut errors = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let (kind, path) = match i % 5 {
                    0 => ("list_containers", "/v1/containers?all=true".to_string()),
                    1 => ("list_images", "/v1/images".to_string()),
                    2 => ("inspect_container", format!("/v1/containers/{}", containers[i % containers.len()])),
                    3 => ("list_jobs", "/v1/jobs?limit=20".to_string()),
                    _ => ("get_job", format!("/v1/jobs/{}", jobs[i % jobs.len()])),
                };
                match berth_get(&tcp, &c.addr, &c.token, &path).await {
                    Ok(a) if a.status == 200 => lat.entry(kind).or_default().push(a.ms),
                    Ok(a) => errors.push(format!("{kind}: {} {}", a.status, String::from_utf8_lossy(&a.body[..a.body.len().min(200)]))),
                    Err(e) => errors.push(e),
                }
            }
            (lat, errors)
        }));
    }
    let mut lat: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut errors = Vec::new();
    for t in tasks {
        let (l, e) = t.await.unwrap();
        for (k, v) in l {
            lat.entry(k).or_default().extend(v);
        }
        errors.extend(e);
    }
    let wall = t0.elapsed().as_secs_f64();
    let rss_end = mib(c.pid, "VmRSS");
    let hwm = mib(c.pid, "VmHWM");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = mib(c.pid, "VmRSS");
    let st = proc_status(c.pid);
    let ok: usize = lat.values().map(Vec::len).sum();
    let per_kind: BTreeMap<&str, Value> =
        lat.iter().map(|(k, v)| (*k, json!({"n": v.len(), "p50": pct(v, 0.5), "p99": pct(v, 0.99)}))).collect();
    for e in errors.iter().take(5) {
        log(format!("mixed error: {e}"));
    }
    json!({
        "clients": clients, "requests": requests, "ok": ok, "errors": errors.len(), "wall_s": wall, "per_s": ok as f64 / wall,
        "seeded_jobs": seeded.len(), "jobs_to_get": jobs.len(), "containers": containers.len(),
        "rss_start_mib": rss_start, "rss_before_mib": rss_before, "hwm_before_mib": hwm_before,
        "rss_end_mib": rss_end, "rss_after_mib": rss_after, "peak_mib": hwm,
        "rss_anon_after_mib": *st.get("RssAnon").unwrap_or(&0) as f64 / 1024.0,
        "rss_file_after_mib": *st.get("RssFile").unwrap_or(&0) as f64 / 1024.0,
        "per_kind": per_kind,
    })
}

// ---------------------------------------------------------------------------------------
// sse

/// Lag histogram: bucket i holds lags up to 1.02^i µs (2 % steps), bucket 0 lag 0.
const BUCKETS: usize = 1200;
fn bucket(us: f64) -> usize {
    if us < 1.0 { 0 } else { ((us.ln() / 1.02f64.ln()) as usize + 1).min(BUCKETS - 1) }
}
fn bucket_upper_ms(i: usize) -> f64 {
    if i == 0 { 0.0 } else { 1.02f64.powi(i as i32) / 1000.0 }
}
fn hist_pct(h: &[u64], p: f64) -> f64 {
    let total: u64 = h.iter().sum();
    if total == 0 {
        return f64::NAN;
    }
    let want = ((total as f64) * p).ceil().max(1.0) as u64;
    let mut acc = 0;
    for (i, n) in h.iter().enumerate() {
        acc += n;
        if acc >= want {
            return bucket_upper_ms(i);
        }
    }
    bucket_upper_ms(BUCKETS - 1)
}

#[derive(Default)]
struct SubResult {
    ok_connect: bool,
    error: Option<String>,
    events: u64,
    logs: u64,
    lines: u64,
    gaps: u64,
    last_id: u64,
    saw_end: bool,
    hist: Vec<u64>,
    connected_at: f64,
    done_at: f64,
}

struct Shared {
    base: Instant,
    /// First receive time (ns since base, +1) of each event id.
    first: Vec<AtomicU64>,
    connected: AtomicUsize,
    /// Receive time of the first log event by anyone.
    first_log_ns: AtomicU64,
}

async fn subscriber(addr: String, token: String, job: String, shared: Arc<Shared>, permit: tokio::sync::OwnedSemaphorePermit) -> SubResult {
    let mut r = SubResult { hist: vec![0; BUCKETS], ..Default::default() };
    let mut permit = Some(permit);
    let stream = match TcpStream::connect(&addr).await {
        Ok(s) => s,
        Err(e) => {
            r.error = Some(format!("connect: {e}"));
            return r;
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
        Ok(x) => x,
        Err(e) => {
            r.error = Some(format!("handshake: {e}"));
            return r;
        }
    };
    tokio::spawn(conn);
    let req = Request::get(format!("/v1/jobs/{job}/events"))
        .header(HOST, addr.as_str())
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(ACCEPT, "text/event-stream")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => {
            r.error = Some(format!("request: {e}"));
            return r;
        }
    };
    if res.status() != 200 {
        let status = res.status();
        let body = res.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        r.error = Some(format!("status {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)])));
        return r;
    }
    let mut body = res.into_body();
    let mut line = Vec::with_capacity(256);
    let (mut cur_id, mut cur_event_log, mut cur_event_end, mut cur_line) = (0u64, false, false, false);
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                r.error = Some(format!("body: {e}"));
                break;
            }
        };
        let Some(data) = frame.data_ref() else { continue };
        let now_ns = shared.base.elapsed().as_nanos() as u64 + 1;
        for &b in data.iter() {
            if b != b'\n' {
                line.push(b);
                continue;
            }
            if line.is_empty() {
                // Dispatch.
                if cur_id > 0 {
                    r.events += 1;
                    if cur_id != r.last_id + 1 {
                        r.gaps += 1;
                    }
                    r.last_id = cur_id;
                    if let Some(slot) = shared.first.get(cur_id as usize) {
                        let lag_ns = match slot.compare_exchange(0, now_ns, Ordering::AcqRel, Ordering::Acquire) {
                            Ok(_) => 0,
                            Err(first) => now_ns.saturating_sub(first),
                        };
                        r.hist[bucket(lag_ns as f64 / 1000.0)] += 1;
                    }
                    if cur_event_log {
                        r.logs += 1;
                        let _ = shared.first_log_ns.compare_exchange(0, now_ns, Ordering::AcqRel, Ordering::Acquire);
                    }
                    if cur_line {
                        r.lines += 1;
                    }
                    if permit.is_some() {
                        permit = None;
                        r.ok_connect = true;
                        r.connected_at = now_ns as f64 / 1e9;
                        shared.connected.fetch_add(1, Ordering::AcqRel);
                    }
                    if cur_event_end {
                        r.saw_end = true;
                    }
                }
                cur_id = 0;
                cur_event_log = false;
                cur_event_end = false;
                cur_line = false;
                continue;
            }
            if let Some(v) = line.strip_prefix(b"id: ") {
                cur_id = std::str::from_utf8(v).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            } else if let Some(v) = line.strip_prefix(b"event: ") {
                cur_event_log = v == b"log";
                cur_event_end = v == b"end";
            } else if line.starts_with(b"data: ") && cur_event_log {
                cur_line = line.windows(13).any(|w| w == b"\"text\":\"line ");
            }
            line.clear();
        }
        if r.saw_end {
            break;
        }
    }
    r.done_at = shared.base.elapsed().as_secs_f64();
    r
}

async fn job_state(tcp: &HttpClient, c: &Common, id: &str) -> Value {
    berth_json(tcp, &c.addr, &c.token, &format!("/v1/jobs/{id}")).await.unwrap_or_else(|e| fail(e))
}

async fn sse(c: Common, subscribers: usize, lines: usize, image: String, connect_concurrency: usize, timeout: u64) -> Value {
    let tcp = tcp_client();
    let labels = json!({"bench.suite": c.label});
    // A blocker holds the only run slot (BERTH_CONCURRENCY_RUN=1), so the chatty job stays
    // queued until every subscriber is connected; cancelling it releases the chatty one.
    let blocker_body = json!({"image": image, "cmd": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"], "pull": "never",
                              "detach": false, "auto_remove": true, "labels": labels});
    let (status, blocker) = berth_post(&c.addr, &c.token, "/v1/containers", &blocker_body).await.unwrap_or_else(|e| fail(e));
    if status != 202 {
        fail(format!("submit blocker: {status} {blocker}"));
    }
    let blocker = blocker["id"].as_str().unwrap_or_default().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while job_state(&tcp, &c, &blocker).await["state"] != "running" {
        if Instant::now() > deadline {
            fail("the blocker job did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let script = format!("i=0; while [ $i -lt {lines} ]; do echo line $i; i=$((i+1)); done");
    let body = json!({"image": image, "cmd": ["sh", "-c", script], "pull": "never", "detach": false, "auto_remove": true,
                      "labels": labels});
    let (status, job) = berth_post(&c.addr, &c.token, "/v1/containers", &body).await.unwrap_or_else(|e| fail(e));
    if status != 202 {
        fail(format!("submit the chatty job: {status} {job}"));
    }
    let job = job["id"].as_str().unwrap_or_default().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = job_state(&tcp, &c, &job).await;
    if st["state"] != "queued" {
        fail(format!("the chatty job is {} (BERTH_CONCURRENCY_RUN=1 expected)", st["state"]));
    }
    let rss_idle = mib(c.pid, "VmRSS");
    let shared = Arc::new(Shared {
        base: Instant::now(),
        first: (0..lines + 1024).map(|_| AtomicU64::new(0)).collect(),
        connected: AtomicUsize::new(0),
        first_log_ns: AtomicU64::new(0),
    });
    let sem = Arc::new(tokio::sync::Semaphore::new(connect_concurrency));
    let mut tasks = Vec::with_capacity(subscribers);
    let t_connect = Instant::now();
    for _ in 0..subscribers {
        let permit = sem.clone().acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(subscriber(c.addr.clone(), c.token.clone(), job.clone(), shared.clone(), permit)));
    }
    // Every subscriber that connected has its first event (the replayed `queued`).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = shared.connected.load(Ordering::Acquire);
        let finished = tasks.iter().filter(|t| t.is_finished()).count();
        if n + finished >= subscribers || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_s = t_connect.elapsed().as_secs_f64();
    let connected = shared.connected.load(Ordering::Acquire);
    let rss_connected = mib(c.pid, "VmRSS");
    log(format!("sse: {connected}/{subscribers} subscribers connected in {connect_s:.1} s; Berth RSS {rss_connected:.1} MiB; releasing the job"));
    let released = shared.base.elapsed().as_secs_f64();
    let (berth_cpu0, self_cpu0, threads0) = (stat_cpu(&format!("/proc/{}/stat", c.pid)), stat_cpu("/proc/self/stat"), threads_cpu(c.pid));
    let (status, v) = berth_post(&c.addr, &c.token, &format!("/v1/jobs/{blocker}/cancel"), &json!({})).await.unwrap_or_else(|e| fail(e));
    if status != 200 {
        fail(format!("cancel blocker: {status} {v}"));
    }
    let mut results = Vec::with_capacity(subscribers);
    let overall = tokio::time::Instant::now() + Duration::from_secs(timeout);
    for t in tasks {
        match tokio::time::timeout_at(overall, t).await {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => results.push(SubResult { error: Some(format!("task: {e}")), ..Default::default() }),
            Err(_) => results.push(SubResult { error: Some("timed out".into()), ..Default::default() }),
        }
    }
    let (berth_cpu, self_cpu) = (stat_cpu(&format!("/proc/{}/stat", c.pid)) - berth_cpu0, stat_cpu("/proc/self/stat") - self_cpu0);
    let mut threads: Vec<(String, f64)> =
        threads_cpu(c.pid).into_iter().map(|(k, v)| { let d = v - threads0.get(&k).copied().unwrap_or(0.0); (k, d) }).collect();
    threads.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
    threads.truncate(5);
    let peak = mib(c.pid, "VmHWM");
    let rss_end = mib(c.pid, "VmRSS");
    let jobdoc = job_state(&tcp, &c, &job).await;
    let end_id = results.iter().map(|r| r.last_id).max().unwrap_or(0);
    let complete = results.iter().filter(|r| r.saw_end && r.last_id == end_id && r.gaps == 0 && r.events == end_id).count();
    let all_lines = results.iter().filter(|r| r.lines as usize == lines).count();
    let mut hist = vec![0u64; BUCKETS];
    for r in &results {
        for (i, n) in r.hist.iter().enumerate() {
            hist[i] += n;
        }
    }
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for r in &results {
        if let Some(e) = &r.error {
            *errors.entry(e.chars().take(120).collect()).or_default() += 1;
        }
    }
    let first_log = shared.first_log_ns.load(Ordering::Acquire) as f64 / 1e9;
    let last_done = results.iter().map(|r| r.done_at).fold(0.0, f64::max);
    let delivered: u64 = results.iter().map(|r| r.events).sum();
    let max_logs = results.iter().map(|r| r.logs).max().unwrap_or(0);
    json!({
        "subscribers": subscribers, "connected": connected, "connect_s": connect_s,
        "job": job, "job_state": jobdoc["state"], "job_result": jobdoc["result"],
        "job_started_at": jobdoc["started_at"], "job_finished_at": jobdoc["finished_at"],
        "end_id": end_id, "complete": complete, "all_lines": all_lines, "lines": lines, "log_events_per_subscriber": max_logs,
        "events_delivered": delivered,
        "lag_p50_ms": hist_pct(&hist, 0.5), "lag_p90_ms": hist_pct(&hist, 0.9), "lag_p99_ms": hist_pct(&hist, 0.99),
        "lag_max_ms": hist_pct(&hist, 1.0),
        "released_to_first_log_s": first_log - released, "first_log_to_all_done_s": last_done - first_log,
        "rss_idle_mib": rss_idle, "rss_connected_mib": rss_connected, "peak_mib": peak, "rss_end_mib": rss_end,
        "berth_cpu_s": berth_cpu, "measurer_cpu_s": self_cpu, "berth_threads_cpu_s": threads,
        "errors": errors,
    })
}

// ---------------------------------------------------------------------------------------
// follow

async fn follow(c: Common, container: String, followers: usize) -> Value {
    let (before, _) = engine_connections(c.pid, &c.engine_sock);
    let rss_before = mib(c.pid, "VmRSS");
    let got = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..followers {
        let (addr, token, container, got) = (c.addr.clone(), c.token.clone(), container.clone(), got.clone());
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&addr).await.map_err(|e| format!("connect: {e}"))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = Request::get(format!("/v1/containers/{container}/logs?follow=true&tail=1"))
                .header(HOST, addr.as_str())
                .header(AUTHORIZATION, format!("Bearer {token}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
            if res.status() != 200 {
                return Err(format!("status {}", res.status()));
            }
            let mut body = res.into_body();
            let mut logs = 0;
            let mut counted = false;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| e.to_string())?;
                if let Some(d) = frame.data_ref() {
                    logs += d.windows(11).filter(|w| w == b"event: log\n").count();
                    // The tail line and one live line.
                    if logs >= 2 && !counted {
                        counted = true;
                        got.fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
            Err::<(), String>("the log stream ended".into())
        }));
    }
    let t0 = Instant::now();
    while got.load(Ordering::Acquire) < followers && t0.elapsed() < Duration::from_secs(60) {
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let live = got.load(Ordering::Acquire);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (during, sockets) = engine_connections(c.pid, &c.engine_sock);
    let rss = mib(c.pid, "VmRSS");
    let peak = mib(c.pid, "VmHWM");
    log(format!("follow: {live}/{followers} followers live; Berth holds {during} engine connections, {sockets} sockets; RSS {rss:.1} MiB"));
    let mut errors = BTreeMap::new();
    for t in &tasks {
        if t.is_finished() {
            *errors.entry("ended early".to_string()).or_insert(0usize) += 1;
        }
    }
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            *errors.entry(e).or_insert(0usize) += 1;
        }
    }
    // Followers gone: the engine connections should go too (a stream notices at its next write).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (after, _) = engine_connections(c.pid, &c.engine_sock);
    json!({
        "followers": followers, "live": live, "engine_conns_before": before, "engine_conns_during": during,
        "engine_conns_after": after, "sockets_during": sockets, "rss_before_mib": rss_before, "rss_mib": rss,
        "peak_mib": peak, "errors": errors,
    })
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let out = rt.block_on(async move {
        match cli.cmd {
            Cmd::Ready { bin, addr, runs, log, engine_sock } => ready(bin, addr, runs, log, engine_sock).await,
            Cmd::Lists { c, n, warmup } => lists(c, n, warmup).await,
            Cmd::Mixed { c, clients, requests, seed_jobs, image } => mixed(c, clients, requests, seed_jobs, image).await,
            Cmd::Sse { c, subscribers, lines, image, connect_concurrency, timeout } => {
                sse(c, subscribers, lines, image, connect_concurrency, timeout).await
            }
            Cmd::Follow { c, container, followers } => follow(c, container, followers).await,
        }
    });
    println!("{out}");
}
