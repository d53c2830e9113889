//! Prometheus metrics at `/metrics`: OpenMetrics text, or the Prometheus text format
//! (0.0.4) when asked ([`Format`]).
//!
//! Families (`berth_` prefix unless said): HTTP requests and latency by route pattern;
//! jobs by kind and state (now, and finished since start), the queue depth, job
//! durations by kind; open event streams and WebSocket sessions; engine call latency and
//! errors by operation; and the process (`process_*`, read from `/proc/self` at each
//! scrape, as Prometheus' client libraries name them).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route pattern (`/v1/jobs/{id}`), never the raw path.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub kind: String,
    pub state: String,
    /// The engine the job runs on.
    pub host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
    pub host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The engine operation (`list_images`, `pull`, …): a method of the engine adapter.
    pub operation: String,
    /// The engine called (a host name of the fleet).
    pub host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EngineErrorLabels {
    pub operation: String,
    /// The error's code (`docker_unavailable`, `docker_error`, `container_not_found`, …).
    pub code: String,
    pub host: String,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    /// Jobs now, by kind and state (set from the store at each scrape).
    pub jobs: Family<JobLabels, Gauge>,
    pub jobs_finished: Family<JobLabels, Counter>,
    /// The queue depth: jobs waiting (set from the store at each scrape).
    pub jobs_queued: Gauge,
    pub jobs_running: Gauge,
    /// From a job's start to its end, by kind.
    pub job_duration: Family<KindLabels, Histogram>,
    /// Event streams (SSE: `/v1/events`, job events, log follows) open now.
    pub sse_streams: Gauge,
    /// Interactive WebSocket sessions (attach, exec) open now.
    pub ws_sessions: Gauge,
    pub engine_duration: Family<OperationLabels, Histogram>,
    pub engine_errors: Family<EngineErrorLabels, Counter>,
    /// Upstream engine event streams (`GET /events`) open now: 0 or 1.
    pub engine_event_upstreams: Gauge,
    /// Subscribers of the engine event hub (`GET /v1/engine/events` streams) now.
    pub engine_event_subscribers: Gauge,
    /// Jobs this replica claimed, by host and kind.
    pub job_claims: Family<KindLabels, Counter>,
    /// Running jobs of dead replicas (or of the process before a restart) this one ended.
    pub jobs_adopted: Counter,
    /// Times this replica's lease lapsed (several replicas only).
    pub lease_losses: Counter,
    /// Seconds left on this replica's lease (set at each scrape; several replicas only).
    pub lease_seconds_left: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// From another replica's commit of a job event to this replica's reading of its
    /// notification.
    pub notification_lag: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector));
        let registry = root.sub_registry_with_prefix("berth");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let jobs = Family::<JobLabels, Gauge>::default();
        let jobs_finished = Family::<JobLabels, Counter>::default();
        let jobs_queued = Gauge::default();
        let jobs_running = Gauge::default();
        // 0.1 s to about 3.6 h.
        let job_duration =
            Family::<KindLabels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.1, 2.0, 18)));
        let sse_streams = Gauge::default();
        let ws_sessions = Gauge::default();
        // 0.5 ms to about 33 s.
        let engine_duration = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 17))
        });
        let engine_errors = Family::<EngineErrorLabels, Counter>::default();
        let engine_event_upstreams = Gauge::default();
        let engine_event_subscribers = Gauge::default();
        let job_claims = Family::<KindLabels, Counter>::default();
        let jobs_adopted = Counter::default();
        let lease_losses = Counter::default();
        let lease_seconds_left = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        // 0.1 ms to about 6.5 s.
        let notification_lag = Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        registry.register("job_claims", "Jobs this replica claimed from the queue, by host and kind", job_claims.clone());
        registry.register("jobs_adopted", "Running jobs of a dead replica (or of the process before a restart) this one ended", jobs_adopted.clone());
        registry.register("replica_lease_lost", "Times this replica's lease lapsed (several replicas on PostgreSQL)", lease_losses.clone());
        registry.register("replica_lease_seconds_left", "Seconds left on this replica's lease (several replicas on PostgreSQL)", lease_seconds_left.clone());
        registry.register(
            "store_notification_lag_seconds",
            "From another replica's commit of a job event to this replica's reading of its notification",
            notification_lag.clone(),
        );
        registry.register("http_requests", "HTTP requests served", http_requests.clone());
        registry.register("http_request_duration_seconds", "Time to the response head", http_duration.clone());
        registry.register("jobs", "Jobs in the store now, by kind and state", jobs.clone());
        registry.register("jobs_finished", "Jobs that reached a final state", jobs_finished.clone());
        registry.register("jobs_queued", "Jobs waiting in the queue (the queue depth)", jobs_queued.clone());
        registry.register("jobs_running", "Jobs running now", jobs_running.clone());
        registry.register("job_duration_seconds", "Time from a job's start to its end", job_duration.clone());
        registry.register("sse_streams_open", "Event streams (SSE) open now", sse_streams.clone());
        registry.register("websocket_sessions_open", "Interactive WebSocket sessions (attach, exec) open now", ws_sessions.clone());
        registry.register(
            "engine_request_duration_seconds",
            "Time of each Docker engine call, to its answer (for streams: until the stream starts)",
            engine_duration.clone(),
        );
        registry.register("engine_errors", "Docker engine calls that failed, by operation and error code", engine_errors.clone());
        registry.register("engine_event_upstreams", "Engine event streams (GET /events) Berth holds open now", engine_event_upstreams.clone());
        registry.register("engine_event_subscribers", "Engine event subscribers (GET /v1/engine/events) now", engine_event_subscribers.clone());
        Self {
            registry: root,
            http_requests,
            http_duration,
            jobs,
            jobs_finished,
            jobs_queued,
            jobs_running,
            job_duration,
            sse_streams,
            ws_sessions,
            engine_duration,
            engine_errors,
            job_claims,
            jobs_adopted,
            lease_losses,
            lease_seconds_left,
            notification_lag,
            engine_event_upstreams,
            engine_event_subscribers,
        }
    }
}

/// The text formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
    /// `text/plain; version=0.0.4`: the Prometheus text format.
    Prometheus,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        // Label values from a fixed set: a client inventing methods must not grow the registry.
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
            _ => "OTHER",
        };
        self.http_requests.get_or_create(&HttpLabels { method: method.into(), route: route.into(), status }).inc();
        self.http_duration
            .get_or_create(&RouteLabels { method: method.into(), route: route.into() })
            .observe(seconds);
    }

    /// One engine call: its time, and its error code when it failed.
    pub fn observe_engine(&self, host: &str, operation: &str, seconds: f64, error: Option<&str>) {
        let labels = OperationLabels { operation: operation.into(), host: host.into() };
        self.engine_duration.get_or_create(&labels).observe(seconds);
        if let Some(code) = error {
            self.engine_errors.get_or_create(&EngineErrorLabels { operation: operation.into(), code: code.into(), host: host.into() }).inc();
        }
    }

    pub fn encode(&self, format: Format) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        match format {
            Format::OpenMetrics => out,
            Format::Prometheus => to_prometheus_text(&out),
        }
    }
}

/// OpenMetrics text as the Prometheus text format 0.0.4: no `# EOF` or `# UNIT`, and a
/// counter's `# HELP`/`# TYPE` name its samples' `_total` name.
fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            help = Some(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.rsplit_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "gauge" | "histogram" | "summary" => (name.to_string(), kind),
                _ => (name.to_string(), "untyped"),
            };
            if let Some(h) = help.take() {
                let text = h.strip_prefix("# HELP ").and_then(|r| r.split_once(' ')).map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `process_*` from `/proc/self`, read at each scrape.
#[derive(Debug)]
struct ProcessCollector;

/// Facts about this process; `None` where `/proc` does not tell.
#[derive(Debug, Default)]
struct ProcessFacts {
    resident_bytes: Option<i64>,
    virtual_bytes: Option<i64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
    cpu_seconds: Option<f64>,
    start_time_seconds: Option<i64>,
    threads: Option<i64>,
}

impl ProcessFacts {
    fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kb = |key: &str| {
            status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        };
        let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as i64);
        let mut facts = Self {
            resident_bytes: kb("VmRSS:").map(|k| k * 1024),
            virtual_bytes: kb("VmSize:").map(|k| k * 1024),
            threads: kb("Threads:"),
            open_fds,
            max_fds: max_fds(),
            ..Self::default()
        };
        // /proc/self/stat: fields after the `(comm)`; utime, stime are 14th and 15th,
        // starttime the 22nd (clock ticks; since boot).
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        if let Some((_, after)) = stat.rsplit_once(')') {
            let fields: Vec<&str> = after.split_whitespace().collect();
            let num = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok());
            // SAFETY: sysconf has no preconditions.
            let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
            if ticks > 0.0 {
                if let (Some(u), Some(s)) = (num(14), num(15)) {
                    facts.cpu_seconds = Some((u + s) / ticks);
                }
                let boot = std::fs::read_to_string("/proc/stat")
                    .ok()
                    .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<f64>().ok()));
                if let (Some(start), Some(boot)) = (num(22), boot) {
                    facts.start_time_seconds = Some((boot + start / ticks) as i64);
                }
            }
        }
        facts
    }
}

fn max_fds() -> Option<i64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as i64)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: Option<i64>) -> Result<(), std::fmt::Error> {
    if let Some(v) = value {
        let g = ConstGauge::new(v);
        g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
    }
    Ok(())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let f = ProcessFacts::read();
        gauge(&mut encoder, "process_resident_memory_bytes", "Resident memory size in bytes.", f.resident_bytes)?;
        gauge(&mut encoder, "process_virtual_memory_bytes", "Virtual memory size in bytes.", f.virtual_bytes)?;
        gauge(&mut encoder, "process_open_fds", "Open file descriptors.", f.open_fds)?;
        gauge(&mut encoder, "process_max_fds", "The most file descriptors the process may open.", f.max_fds)?;
        gauge(&mut encoder, "process_threads", "OS threads.", f.threads)?;
        gauge(&mut encoder, "process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds.", f.start_time_seconds)?;
        if let Some(v) = f.cpu_seconds {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor("process_cpu_seconds", "User and system CPU time spent, in seconds.", None, c.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_carry_every_family() {
        let m = Metrics::default();
        m.observe_request("GET", "/v1/jobs", 200, 0.01);
        m.observe_engine("local", "ping", 0.001, Some("docker_unavailable"));
        let om = m.encode(Format::OpenMetrics);
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# TYPE berth_http_requests counter\n"), "{om}");
        assert!(om.contains("berth_http_requests_total{method=\"GET\",route=\"/v1/jobs\",status=\"200\"} 1"), "{om}");
        assert!(om.contains("process_resident_memory_bytes "), "{om}");
        assert!(om.contains("# TYPE process_cpu_seconds counter"), "{om}");
        let text = m.encode(Format::Prometheus);
        assert!(!text.contains("# EOF"), "{text}");
        assert!(text.contains("# HELP berth_http_requests_total HTTP requests served.\n# TYPE berth_http_requests_total counter\n"), "{text}");
        assert!(text.contains("# TYPE berth_engine_errors_total counter"), "{text}");
        assert!(text.contains("# TYPE berth_http_request_duration_seconds histogram"), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
    }

    #[test]
    fn process_facts_come_from_proc() {
        let f = ProcessFacts::read();
        assert!(f.resident_bytes.unwrap() > 1024 * 1024, "{f:?}");
        assert!(f.open_fds.unwrap() >= 3, "{f:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let start = f.start_time_seconds.unwrap();
        assert!(start <= now + 1 && start > now - 86400 * 365, "{f:?}");
    }
}
