//! Load generator for a running Berth: many concurrent clients mixing lists, job
//! submissions and SSE subscribers. Prints errors (anything but 2xx and 429), p50/p99
//! latency per request kind next to `/healthz` measured in the same run, and throughput.
//! Run it through `scripts/bench/load.sh`, which starts the service and reports its peak RSS.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    url: String,
    #[arg(long)]
    token: String,
    /// Concurrent request clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Concurrent SSE subscribers (each follows jobs to their end, again and again).
    #[arg(long, default_value_t = 16)]
    subscribers: usize,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Label value put on every container made, for cleanup.
    #[arg(long)]
    label: String,
    /// Image for runs (must be on the engine).
    #[arg(long, default_value = "berth-test/busybox:latest")]
    image: String,
}

#[derive(Default)]
struct Stats {
    lat: std::collections::BTreeMap<&'static str, Vec<f64>>,
    errors: Vec<String>,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let stats = Arc::new(Mutex::new(Stats::default()));
    let throttled = Arc::new(AtomicU64::new(0));
    let sse_events = Arc::new(AtomicU64::new(0));
    let recent_jobs: Arc<Mutex<Vec<String>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(args.seconds);

    let mut tasks = Vec::new();
    for worker in 0..args.clients {
        let (args, client, stats, throttled, recent) =
            (args.clone(), client.clone(), stats.clone(), throttled.clone(), recent_jobs.clone());
        tasks.push(tokio::spawn(async move {
            let mut n: u64 = worker as u64;
            while Instant::now() < deadline {
                n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let pick = (n >> 33) % 100;
                let (kind, req) = match pick {
                    0..=9 => ("healthz", client.get(format!("{}/healthz", args.url))),
                    10..=34 => ("list_images", client.get(format!("{}/v1/images", args.url)).bearer_auth(&args.token)),
                    35..=54 => ("list_containers", client.get(format!("{}/v1/containers?all=true", args.url)).bearer_auth(&args.token)),
                    55..=79 => ("list_jobs", client.get(format!("{}/v1/jobs?limit=20", args.url)).bearer_auth(&args.token)),
                    _ => (
                        "submit_run",
                        client
                            .post(format!("{}/v1/containers", args.url))
                            .bearer_auth(&args.token)
                            .json(&json!({"image": args.image, "cmd": ["true"], "pull": "never", "detach": false,
                                          "auto_remove": true, "labels": {"berth.load": args.label}})),
                    ),
                };
                let t = Instant::now();
                let res = req.send().await;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                match res {
                    Ok(r) if r.status().as_u16() == 429 => {
                        throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) if r.status().is_success() => {
                        if kind == "submit_run" {
                            if let Ok(job) = r.json::<Value>().await {
                                if let Some(id) = job["id"].as_str() {
                                    let mut rj = recent.lock().await;
                                    rj.push(id.to_string());
                                    if rj.len() > 64 {
                                        rj.remove(0);
                                    }
                                }
                            }
                        } else {
                            let _ = r.bytes().await;
                        }
                        stats.lock().await.lat.entry(kind).or_default().push(ms);
                    }
                    Ok(r) => {
                        let s = r.status();
                        let body = r.text().await.unwrap_or_default();
                        stats.lock().await.errors.push(format!("{kind}: {s} {}", &body[..body.len().min(200)]));
                    }
                    Err(e) => stats.lock().await.errors.push(format!("{kind}: {e}")),
                }
            }
        }));
    }
    for _ in 0..args.subscribers {
        let (args, client, stats, recent, sse_events) =
            (args.clone(), client.clone(), stats.clone(), recent_jobs.clone(), sse_events.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let id = recent.lock().await.last().cloned();
                let Some(id) = id else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let res = client.get(format!("{}/v1/jobs/{id}/events", args.url)).bearer_auth(&args.token).send().await;
                match res {
                    Ok(r) if r.status().is_success() => {
                        let mut body = r.bytes_stream();
                        let mut buf = Vec::new();
                        while let Ok(Some(Ok(chunk))) =
                            tokio::time::timeout(deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(5), body.next()).await
                        {
                            buf.extend_from_slice(&chunk);
                            let text = String::from_utf8_lossy(&buf);
                            if text.contains("event: end") {
                                break;
                            }
                        }
                        sse_events.fetch_add(String::from_utf8_lossy(&buf).matches("\nevent: ").count() as u64 + 1, Ordering::Relaxed);
                    }
                    Ok(r) => stats.lock().await.errors.push(format!("sse: {}", r.status())),
                    Err(e) => stats.lock().await.errors.push(format!("sse: {e}")),
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut stats = stats.lock().await;
    let total: usize = stats.lat.values().map(|v| v.len()).sum();
    let mut healthz = stats.lat.get("healthz").cloned().unwrap_or_default();
    let base_p50 = pct(&mut healthz, 0.5);
    println!("clients: {} request + {} SSE, {} s", args.clients, args.subscribers, args.seconds);
    println!("requests ok: {total} ({:.0}/s), throttled (429): {}, SSE events read: {}",
        total as f64 / args.seconds as f64, throttled.load(Ordering::Relaxed), sse_events.load(Ordering::Relaxed));
    println!("{:<16} {:>8} {:>9} {:>9} {:>12}", "kind", "count", "p50 ms", "p99 ms", "p50/healthz");
    for (kind, v) in stats.lat.iter_mut() {
        let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
        println!("{kind:<16} {:>8} {p50:>9.2} {p99:>9.2} {:>12.1}", v.len(), p50 / base_p50);
    }
    println!("errors (besides 429): {}", stats.errors.len());
    for e in stats.errors.iter().take(10) {
        println!("  {e}");
    }
    if !stats.errors.is_empty() {
        std::process::exit(1);
    }
}
