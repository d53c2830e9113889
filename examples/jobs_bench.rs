//! Job store benchmark: two running Berths, one on SQLite and one on PostgreSQL, measured
//! in one run, side by side, with the HTTP floor (`GET /healthz`) measured in the same run.
//!
//! 1. Fill, in rounds: each store in turn (the first alternates) gets `--chunk` pull
//!    submits through the API from `--clients` concurrent clients, each answered 202, then
//!    waits until its queue drained (the jobs fail at once: the servers' engine is absent),
//!    until each holds `--jobs`. Never both stores under load at once (two cores), and both
//!    see the machine's conditions of the whole run alike. Jobs accepted per second over
//!    the whole fill, the first 10k and the last 10k (counting each store's own submit
//!    time only), and the submit latency. 429 is retried (and counted); anything else is
//!    an error.
//! 2. Floor, each round before a store's turn: `GET /healthz` with `--clients` concurrent
//!    clients for `--floor-seconds` (requests per second: the most any route does here).
//! 3. Reads, both stores filled: `GET /v1/jobs?limit=100`, `GET /v1/jobs/{id}` (a random
//!    job of that store) and `GET /healthz`, one request at a time, interleaved request by
//!    request between the two servers (which goes first alternates), `--reads` of each.
//!
//! Prints a table: figure, SQLite, PostgreSQL, PostgreSQL/SQLite, healthz floor.
//! Run it through `scripts/bench/jobs.sh`, which starts both services and cleans up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Parser)]
struct Args {
    /// The Berth on SQLite.
    #[arg(long)]
    sqlite: String,
    /// The Berth on PostgreSQL.
    #[arg(long)]
    postgres: String,
    /// An admin token valid on both.
    #[arg(long)]
    token: String,
    /// Jobs to submit to each store.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Concurrent submit clients (and healthz floor clients).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Requests of each read route to each server.
    #[arg(long, default_value_t = 2000)]
    reads: usize,
    /// Unmeasured requests of each read route to each server first.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// Jobs submitted to one store in a round, before the other store's turn.
    #[arg(long, default_value_t = 5000)]
    chunk: usize,
    /// Seconds of the concurrent healthz floor on each server, each round.
    #[arg(long, default_value_t = 1)]
    floor_seconds: u64,
    /// The image each pull job names (never pulled: the engine is absent).
    #[arg(long, default_value = "127.0.0.1:5000/bench/x:1")]
    image: String,
    /// Seconds to wait for the queue to drain after a fill.
    #[arg(long, default_value_t = 900)]
    drain_timeout: u64,
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
    eprintln!("jobs_bench: {msg}");
    std::process::exit(1);
}

/// `GET /healthz` with `clients` concurrent clients for `secs`: requests per second.
async fn healthz_rate(client: &reqwest::Client, url: &str, clients: usize, secs: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, done) = (client.clone(), format!("{url}/healthz"), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => fail(format!("GET {url}: {}", r.status())),
                    Err(e) => fail(format!("GET {url}: {e}")),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// One store's fill so far.
#[derive(Default)]
struct Fill {
    ids: Vec<String>,
    /// When each job was accepted, in seconds of this store's own submit time (the
    /// rounds spent on the other store, and the drains, left out), in order.
    accepted_at: Vec<f64>,
    /// Submit latency (ms) of each accepted job (the last try when 429 came first).
    latency: Vec<f64>,
    /// Seconds spent submitting to this store.
    submit_secs: f64,
    throttled: u64,
    /// Seconds spent waiting for the queue to drain after each round, summed.
    drain_secs: f64,
    /// healthz/s with `--clients` clients, one figure a round.
    floor: Vec<f64>,
}

impl Fill {
    /// Jobs per second from accepted job `from` (0-based, exclusive start) to `to`.
    fn rate(&self, from: usize, to: usize) -> f64 {
        let t0 = if from == 0 { 0.0 } else { self.accepted_at[from - 1] };
        (to - from) as f64 / (self.accepted_at[to - 1] - t0)
    }
}

/// Submit `count` pull jobs to `url` with `args.clients` clients, then wait until the
/// store has neither queued nor running jobs; add the figures to `fill`.
async fn fill_round(client: &reqwest::Client, args: &Args, name: &str, url: &str, count: usize, fill: &mut Fill) {
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let throttled = Arc::new(AtomicU64::new(0));
    let results: Arc<Mutex<Vec<(f64, f64, String)>>> = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let start = Instant::now();
    let body = serde_json::to_vec(&json!({"image": args.image})).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (client, next, accepted, throttled, results, body) =
            (client.clone(), next.clone(), accepted.clone(), throttled.clone(), results.clone(), body.clone());
        let (endpoint, token) = (format!("{url}/v1/images/pull"), args.token.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                loop {
                    let t = Instant::now();
                    let res = client
                        .post(&endpoint)
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    match res {
                        Ok(r) if r.status().as_u16() == 202 => {
                            let loc = r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                            let _ = r.bytes().await;
                            let Some(id) = loc.strip_prefix("/v1/jobs/") else { fail(format!("202 without a job Location: `{loc}`")) };
                            accepted.fetch_add(1, Ordering::Relaxed);
                            mine.push((start.elapsed().as_secs_f64(), ms, id.to_string()));
                            break;
                        }
                        Ok(r) if r.status().as_u16() == 429 => {
                            throttled.fetch_add(1, Ordering::Relaxed);
                            let _ = r.bytes().await;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Ok(r) => {
                            let s = r.status();
                            let text = r.text().await.unwrap_or_default();
                            fail(format!("POST {endpoint}: {s} {}", &text[..text.len().min(300)]));
                        }
                        Err(e) => fail(format!("POST {endpoint}: {e}")),
                    }
                }
            }
            results.lock().await.extend(mine);
        }));
    }
    // Progress on stderr every 10 s.
    let progress = {
        let (accepted, name) = (accepted.clone(), name.to_string());
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let n = accepted.load(Ordering::Relaxed);
                eprintln!("jobs_bench:   {name}: {n}/{count} accepted ({:.0}/s over the last 10 s)", (n - last) as f64 / 10.0);
                last = n;
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    progress.abort();
    let secs = start.elapsed().as_secs_f64();
    let mut rows = std::mem::take(&mut *results.lock().await);
    rows.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());

    // Wait for the workers to have run (failed) every job: the next round, and the reads,
    // find a still store. Cheaply first: jobs of one kind are claimed oldest first, so
    // while the newest is not over, others wait too (a lookup by id each 100 ms); then
    // the lists of queued and running jobs must be empty.
    let drain_start = Instant::now();
    let newest = rows.iter().map(|r| r.2.as_str()).max().unwrap_or_default().to_string();
    let deadline = drain_start + Duration::from_secs(args.drain_timeout);
    let too_long = || {
        fail(format!(
            "{name}: jobs still queued or running {} s after the round (--drain-timeout, DRAIN_TIMEOUT)",
            args.drain_timeout
        ))
    };
    loop {
        let (_, body) = timed_get(client, &format!("{url}/v1/jobs/{newest}"), Some(&args.token)).await;
        let job: Value = serde_json::from_slice(&body).unwrap_or_else(|e| fail(format!("{name}: job {newest}: {e}")));
        if !matches!(job["state"].as_str(), Some("queued" | "running")) {
            break;
        }
        if Instant::now() > deadline {
            too_long();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let mut busy = false;
        for state in ["queued", "running"] {
            let (_, body) = timed_get(client, &format!("{url}/v1/jobs?state={state}&limit=1"), Some(&args.token)).await;
            let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| fail(format!("{name}: list {state}: {e}")));
            busy |= v["items"].as_array().is_some_and(|a| !a.is_empty());
        }
        if !busy {
            break;
        }
        if Instant::now() > deadline {
            too_long();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let drain = drain_start.elapsed().as_secs_f64();
    eprintln!(
        "jobs_bench:   {name}: {} accepted in {secs:.1} s ({:.0}/s); queue drained {drain:.1} s later; {} stored",
        rows.len(),
        rows.len() as f64 / secs,
        fill.ids.len() + rows.len()
    );
    let base = fill.submit_secs;
    for (at, ms, id) in rows {
        fill.accepted_at.push(base + at);
        fill.latency.push(ms);
        fill.ids.push(id);
    }
    fill.submit_secs += secs;
    fill.drain_secs += drain;
    fill.throttled += throttled.load(Ordering::Relaxed);
}

/// One GET, timed (ms); the body read whole; anything but 200 ends the run.
async fn timed_get(client: &reqwest::Client, url: &str, token: Option<&str>) -> (f64, bytes::Bytes) {
    let t = Instant::now();
    let mut req = client.get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let r = req.send().await.unwrap_or_else(|e| fail(format!("GET {url}: {e}")));
    let status = r.status();
    let body = r.bytes().await.unwrap_or_else(|e| fail(format!("GET {url}: {e}")));
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if status.as_u16() != 200 {
        fail(format!("GET {url}: {status} {}", String::from_utf8_lossy(&body[..body.len().min(300)])));
    }
    (ms, body)
}

#[derive(Default)]
struct Reads {
    healthz: Vec<f64>,
    list: Vec<f64>,
    get: Vec<f64>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if args.jobs == 0 || args.reads == 0 || args.clients == 0 {
        fail("--jobs, --reads and --clients must be at least 1");
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients * 2)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let servers = [("SQLite", args.sqlite.trim_end_matches('/').to_string()), ("PostgreSQL", args.postgres.trim_end_matches('/').to_string())];
    // Each server is on the store it is named for (`/readyz` says which; it answers 503
    // here, the engine being absent, but the store must be `ok`).
    for ((name, url), backend) in servers.iter().zip(["sqlite", "postgres"]) {
        let r = client.get(format!("{url}/readyz")).send().await.unwrap_or_else(|e| fail(format!("{name}: readyz: {e}")));
        let v: Value = r.json().await.unwrap_or_else(|e| fail(format!("{name}: readyz: {e}")));
        if v["checks"]["store_backend"] != backend || v["checks"]["store"] != "ok" {
            fail(format!("{name}: {url}/readyz says {v}: not a working {backend} store"));
        }
    }
    let wall = Instant::now();

    // 1 and 2. Rounds: each store in turn (which goes first alternates) gets its floor
    // (healthz/s) and then `--chunk` submits, and its queue drains.
    let mut fills: [Fill; 2] = Default::default();
    let chunk = args.chunk.max(1);
    let rounds = args.jobs.div_ceil(chunk);
    for round in 0..rounds {
        let count = chunk.min(args.jobs - round * chunk);
        eprintln!("jobs_bench: round {}/{rounds}: {count} jobs to each store", round + 1);
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for s in order {
            let (name, url) = &servers[s];
            let rate = healthz_rate(&client, url, args.clients, args.floor_seconds).await;
            fills[s].floor.push(rate);
            fill_round(&client, &args, name, url, count, &mut fills[s]).await;
        }
    }
    let floor_rate: Vec<f64> = fills.iter().map(|f| f.floor.iter().sum::<f64>() / f.floor.len() as f64).collect();

    // 3. Reads, interleaved request by request.
    let mut reads: [Reads; 2] = Default::default();
    for (s, (name, url)) in servers.iter().enumerate() {
        let (_, body) = timed_get(&client, &format!("{url}/v1/jobs?limit=100"), Some(&args.token)).await;
        let page: Value = serde_json::from_slice(&body).unwrap_or_else(|e| fail(format!("{name}: list: {e}")));
        let n = page["items"].as_array().map_or(0, |a| a.len());
        if n != 100.min(args.jobs) {
            fail(format!("{name}: GET /v1/jobs?limit=100 listed {n} jobs"));
        }
        let newest = page["items"][0]["id"].as_str().unwrap_or_default();
        if fills[s].ids.last().map(String::as_str) != Some(newest) && !fills[s].ids.iter().rev().take(args.clients).any(|i| i == newest) {
            fail(format!("{name}: the newest job listed, {newest}, is not one of the last submitted"));
        }
        let (_, body) = timed_get(&client, &format!("{url}/v1/jobs/{}", fills[s].ids[0]), Some(&args.token)).await;
        let job: Value = serde_json::from_slice(&body).unwrap_or_else(|e| fail(format!("{name}: get: {e}")));
        if job["state"] != "failed" {
            fail(format!("{name}: job {} is {} (expected failed: the engine is absent)", fills[s].ids[0], job["state"]));
        }
    }
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..args.warmup + args.reads {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let pick = (rng >> 33) as usize;
        let order: [usize; 2] = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        let measured = i >= args.warmup;
        for s in order {
            let url = &servers[s].1;
            let ids = &fills[s].ids;
            let (h, _) = timed_get(&client, &format!("{url}/healthz"), None).await;
            let (l, _) = timed_get(&client, &format!("{url}/v1/jobs?limit=100"), Some(&args.token)).await;
            let (g, _) = timed_get(&client, &format!("{url}/v1/jobs/{}", ids[pick % ids.len()]), Some(&args.token)).await;
            if measured {
                reads[s].healthz.push(h);
                reads[s].list.push(l);
                reads[s].get.push(g);
            }
        }
    }
    eprintln!("jobs_bench: done in {:.1} s", wall.elapsed().as_secs_f64());

    // The table.
    let n = args.jobs;
    let k = 10_000.min(n);
    let both_healthz: Vec<f64> = reads[0].healthz.iter().chain(&reads[1].healthz).copied().collect();
    let (h50, h99) = (pct(&both_healthz, 0.5), pct(&both_healthz, 0.99));
    let floor_mean = (floor_rate[0] + floor_rate[1]) / 2.0;
    println!(
        "jobs_bench: {n} jobs per store ({} concurrent submit clients), {} reads per route per store interleaved, one client",
        args.clients, args.reads
    );
    println!("{:<44} {:>11} {:>11} {:>10} {:>14}", "figure", "SQLite", "PostgreSQL", "PG/SQLite", "healthz floor");
    let row = |figure: String, a: f64, b: f64, floor: String| {
        println!("{figure:<44} {a:>11.2} {b:>11.2} {:>9.2}x {floor:>14}", b / a);
    };
    row(format!("submit jobs/s, whole fill ({n})"), fills[0].rate(0, n), fills[1].rate(0, n), format!("{floor_mean:.0}/s"));
    row(format!("submit jobs/s, first {k}"), fills[0].rate(0, k), fills[1].rate(0, k), format!("{floor_mean:.0}/s"));
    row(format!("submit jobs/s, last {k}"), fills[0].rate(n - k, n), fills[1].rate(n - k, n), format!("{floor_mean:.0}/s"));
    row("submit p50 ms (under the fill)".into(), pct(&fills[0].latency, 0.5), pct(&fills[1].latency, 0.5), "-".into());
    row("submit p99 ms (under the fill)".into(), pct(&fills[0].latency, 0.99), pct(&fills[1].latency, 0.99), "-".into());
    row(format!("GET /v1/jobs?limit=100 p50 ms ({n} jobs)"), pct(&reads[0].list, 0.5), pct(&reads[1].list, 0.5), format!("{h50:.3} ms"));
    row(format!("GET /v1/jobs?limit=100 p99 ms ({n} jobs)"), pct(&reads[0].list, 0.99), pct(&reads[1].list, 0.99), format!("{h99:.3} ms"));
    row(format!("GET /v1/jobs/{{id}} p50 ms ({n} jobs)"), pct(&reads[0].get, 0.5), pct(&reads[1].get, 0.5), format!("{h50:.3} ms"));
    row(format!("GET /v1/jobs/{{id}} p99 ms ({n} jobs)"), pct(&reads[0].get, 0.99), pct(&reads[1].get, 0.99), format!("{h99:.3} ms"));
    row("GET /healthz p50 ms (each server)".into(), pct(&reads[0].healthz, 0.5), pct(&reads[1].healthz, 0.5), "-".into());
    row("GET /healthz p99 ms (each server)".into(), pct(&reads[0].healthz, 0.99), pct(&reads[1].healthz, 0.99), "-".into());
    row(format!("GET /healthz req/s ({} clients, mean of rounds)", args.clients), floor_rate[0], floor_rate[1], "-".into());
    row("submitting, s (sum of the rounds)".into(), fills[0].submit_secs, fills[1].submit_secs, "-".into());
    row("queue drain after the rounds, s (sum)".into(), fills[0].drain_secs, fills[1].drain_secs, "-".into());
    println!(
        "{rounds} rounds of {} jobs per store; 429 retried: SQLite {}, PostgreSQL {}. Floor: throughput rows the mean healthz/s of both servers \
         ({} clients, {} s before each round); latency rows healthz p50/p99 of both servers, interleaved with the reads.",
        chunk.min(args.jobs), fills[0].throttled, fills[1].throttled, args.clients, args.floor_seconds
    );
}
