//! Wiring: settings -> state -> HTTP server.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{ErrorHandlers, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::api;
use crate::auth::JwtVerifier;
use crate::config::Settings;
use crate::docker::{DockerEngine, Engine};
use crate::domain::credentials::CredentialStore;
use crate::jobs::Jobs;
use crate::store::SqliteStore;
use crate::api::problem::{handlers, problem_safety_net};
use crate::state::AppState;

/// The documented routes, and the OpenAPI document they make up.
fn documented_routes() -> (
    App<
        impl actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = ServiceResponse<impl actix_web::body::MessageBody>,
            Error = actix_web::Error,
            InitError = (),
        >,
    >,
    utoipa::openapi::OpenApi,
) {
    let (app, spec) = App::new()
        .into_utoipa_app()
        .openapi(api::ApiDoc::openapi())
        .service(api::system::healthz)
        .service(api::system::readyz)
        .service(api::system::metrics)
        .service(api::problems::list_problem_types)
        .service(api::problems::get_problem_type)
        .service(api::v1_scope())
        .split_for_parts();
    (app, api::openapi::finish(spec))
}

/// The routes as each HTTP worker serves them: the documented ones, without building
/// the OpenAPI document again (that is done once, by [`openapi`]).
fn served_routes() -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .service(api::system::healthz)
        .service(api::system::readyz)
        .service(api::system::metrics)
        .service(api::problems::list_problem_types)
        .service(api::problems::get_problem_type)
        .service(api::v1_served())
}

/// The OpenAPI document as served: the committed `openapi/openapi.json`, embedded at build
/// time. A test (`tests/api/openapi.rs`) keeps it equal to what the handlers generate
/// ([`openapi`]), so the service need not build it at start (that touched every schema's
/// code and allocated several MiB).
const COMMITTED_SPEC: &str = include_str!("../openapi/openapi.json");

/// The OpenAPI document as served, serialized once.
struct Spec(web::Bytes);

/// `GET /openapi.json`, with an `ETag` (and `304` for a matching `If-None-Match`).
async fn serve_spec(req: actix_web::HttpRequest, spec: web::Data<Spec>) -> HttpResponse {
    api::etag::bytes(&req, spec.0.clone(), "application/json")
}

/// The OpenAPI document, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().1
}

/// What the store gives the rest: jobs, the audit log, and with several replicas their
/// notices and the shared stream tickets.
struct Stores {
    jobs: Arc<dyn crate::store::JobStore>,
    audit: Arc<dyn crate::store::AuditLog>,
    notices: Option<tokio::sync::mpsc::UnboundedReceiver<crate::store::Notice>>,
    tickets: Option<Arc<dyn crate::store::TicketLedger>>,
}

/// The job store and audit log the settings name: PostgreSQL (`BERTH_DATABASE_URL`, with
/// this replica's lease and the other replicas' notices), else SQLite in the data dir.
async fn open_store(settings: &Settings) -> anyhow::Result<Stores> {
    let Some(url) = &settings.database_url else {
        let store = Arc::new(
            SqliteStore::open(&settings.data_dir)
                .with_context(|| format!("opening the job store in {}", settings.data_dir.display()))?,
        );
        return Ok(Stores { jobs: store.clone(), audit: store, notices: None, tickets: None });
    };
    let id = settings.replica_id.clone().unwrap_or_else(crate::store::postgres::replica_name);
    let url = secrecy::ExposeSecret::expose_secret(url);
    let store = crate::store::PostgresStore::connect_as(url, settings.database_pool, &id, settings.lease_ttl)
        .await
        .context("connecting to BERTH_DATABASE_URL (PostgreSQL)")?;
    let store = Arc::new(store);
    tracing::info!(replica = %id, lease_ttl_s = settings.lease_ttl.as_secs_f64(), "job store: PostgreSQL, as one of several replicas");
    let notices = store.spawn_replication();
    Ok(Stores { jobs: store.clone(), audit: store.clone(), notices: Some(notices), tickets: Some(store) })
}

/// Give the allocator's free pages back once the HTTP workers have built their apps:
/// start-up (the OpenAPI document, the workers' route tables) allocates a few MiB that
/// are free afterwards, and glibc keeps freed pages of its per-thread arenas until asked.
fn release_startup_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    actix_web::rt::spawn(async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        // SAFETY: malloc_trim only returns free memory to the OS; it takes no pointers.
        unsafe { libc::malloc_trim(0) };
    });
}

/// Fewer malloc arenas than glibc's default (8 per core): each thread that allocates
/// would otherwise get its own, and keep its freed pages. Call before any thread starts.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets a tunable of the allocator; no thread has allocated yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

pub struct Application {
    port: u16,
    server: Server,
    jobs: Arc<Jobs>,
    grace: std::time::Duration,
}

/// Stops a running application: no new requests or jobs, running jobs get the grace
/// period, then are interrupted.
#[derive(Clone)]
pub struct AppHandle {
    server: actix_web::dev::ServerHandle,
    jobs: Arc<Jobs>,
    grace: std::time::Duration,
}

impl AppHandle {
    pub async fn stop(&self) {
        tracing::info!(grace_s = self.grace.as_secs(), "shutting down");
        let server = self.server.clone();
        let http = tokio::spawn(async move { server.stop(true).await });
        self.jobs.shutdown(self.grace).await;
        let _ = http.await;
    }
}

impl Application {
    /// Bind (port 0 picks a free one) and wire everything; the server runs once awaited.
    pub async fn build(mut settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(&settings.listen)
            .with_context(|| format!("binding BERTH_LISTEN {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating BERTH_DATA_DIR {}", settings.data_dir.display()))?;
        let verifier = web::Data::new(JwtVerifier::new(&settings.jwt)?);
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let entries = match &settings.engines_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading BERTH_ENGINES_FILE {}", path.display()))?;
                let base = path.parent().unwrap_or(std::path::Path::new("."));
                crate::docker::fleet::parse_engines(&text, base)
                    .map_err(|e| anyhow::anyhow!("BERTH_ENGINES_FILE {}: {e}", path.display()))?
            }
            None => crate::docker::fleet::Fleet::local(settings.docker_host.clone()),
        };
        let fleet = Arc::new(crate::docker::fleet::Fleet::new(entries, |e| {
            DockerEngine::new(Some(e.url.clone())).with_name(&e.name).with_tls(e.tls()).with_metrics(metrics.clone())
        }));
        let engine: Arc<Engine> = fleet.default_host().engine.clone();
        if let Err(e) = engine.ping().await {
            tracing::warn!(error = %e, "the Docker engine does not answer yet; serving 503 docker_unavailable until it does");
        }
        find_own_container(&mut settings, &*engine).await;
        let credentials = match &settings.registry_auth_file {
            Some(path) => CredentialStore::load(path)?,
            None => CredentialStore::default(),
        };
        let Stores { jobs: store, audit, notices, tickets } = open_store(&settings).await?;
        let tickets = web::Data::new(match tickets {
            Some(ledger) => crate::auth::Tickets::shared(settings.ticket_ttl, ledger),
            None => crate::auth::Tickets::new(settings.ticket_ttl),
        });
        let auditor = web::Data::new(crate::audit::Auditor::new(audit));
        auditor.clone().into_inner().spawn_retention(settings.audit_retention);
        let jobs = Jobs::new(&settings, store, fleet.clone(), credentials, metrics.clone())?;
        if let Some(notices) = notices {
            jobs.follow_replicas(notices);
        }
        let event_hubs: std::collections::HashMap<String, _> = fleet
            .hosts()
            .iter()
            .map(|h| (h.entry.name.clone(), crate::engine_events::EventHub::new(h.engine.clone(), metrics.clone())))
            .collect();
        let engine_events = event_hubs[&fleet.default_host().entry.name].clone();
        let event_hubs = Arc::new(event_hubs);
        let metrics = web::Data::from(metrics);
        jobs.start().await.context("recovering the job queue")?;
        let settings = Arc::new(settings);
        let sessions = Arc::new(crate::sessions::Sessions::new(&settings));
        let state = web::Data::new(AppState { settings: settings.clone(), engine, fleet, jobs: jobs.clone(), sessions, engine_events, event_hubs });
        let spec: serde_json::Value = serde_json::from_str(COMMITTED_SPEC).context("reading the embedded OpenAPI document")?;
        let spec_json = web::Bytes::from(serde_json::to_vec(&spec).context("serializing the OpenAPI document")?);
        let routes = web::Data::new(handlers::RouteTable::from_json(&spec));
        let json_limit = settings.json_limit;
        let cors_origins = settings.cors_origins.clone();

        let server = HttpServer::new(move || {
            served_routes()
                .app_data(state.clone())
                .app_data(verifier.clone())
                .app_data(tickets.clone())
                .app_data(metrics.clone())
                .app_data(routes.clone())
                .app_data(web::Data::new(Spec(spec_json.clone())))
                .app_data(auditor.clone())
                .app_data(web::JsonConfig::default().limit(json_limit).error_handler(handlers::json_error))
                .app_data(web::QueryConfig::default().error_handler(handlers::query_error))
                .app_data(web::PathConfig::default().error_handler(handlers::path_error))
                .service(SwaggerUi::new("/swagger-ui/{_:.*}").config(utoipa_swagger_ui::Config::new(["/openapi.json"])))
                .route("/openapi.json", web::get().to(serve_spec))
                .route(
                    "/swagger-ui",
                    web::get().to(|| async {
                        HttpResponse::MovedPermanently().insert_header((header::LOCATION, "/swagger-ui/")).finish()
                    }),
                )
                .configure(api::ui::configure)
                .default_service(web::to(handlers::not_found))
                .wrap(ErrorHandlers::new().default_handler(problem_safety_net))
                .wrap(from_fn(crate::api::compress::gzip_json))
                .wrap(from_fn(crate::audit::audit_requests))
                .wrap(from_fn(crate::api::problem::refuse_oversized))
                .wrap(crate::api::cors::cors(&cors_origins))
                .wrap(from_fn(crate::telemetry::request_span))
        })
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(5)
        .run();
        release_startup_memory();
        Ok(Self { port, server, jobs, grace: settings.shutdown_grace })
    }

    /// A handle that stops the application as SIGTERM does (tests use it).
    pub fn handle(&self) -> AppHandle {
        AppHandle { server: self.server.handle(), jobs: self.jobs.clone(), grace: self.grace }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serve until SIGTERM or SIGINT, then shut down gracefully: no new requests or jobs,
    /// running jobs get the grace period, and only then does this return.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.handle();
        let signaled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = signaled.clone();
        let stopper = tokio::spawn(async move {
            wait_for_signal().await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            handle.stop().await;
        });
        let served = self.server.await.context("running the HTTP server");
        if signaled.load(std::sync::atomic::Ordering::SeqCst) {
            // Stopped by the signal: the job shutdown goes on in `stopper`; wait for it.
            let _ = stopper.await;
        } else {
            // Stopped otherwise (a handle, or a failure): jobs still end cleanly.
            stopper.abort();
            self.jobs.shutdown(self.grace).await;
        }
        served
    }
}

/// Berth's own container (`BERTH_SELF_CONTAINER`, else the container id found in
/// `/proc/self`, when the engine knows it), by full id in `settings.self_container`, and
/// the volumes mounted at (or around) its data dir added to the protected volumes. When
/// the engine does not answer, the reference is kept as given and the volumes stay
/// unknown (said in the log).
async fn find_own_container(settings: &mut Settings, engine: &Engine) {
    let configured = settings.self_container.clone();
    let found = || {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        own_container_id(&read("/proc/self/cgroup"), &read("/proc/self/mountinfo"))
    };
    let Some(reference) = configured.clone().or_else(found) else { return };
    match engine.inspect_container(&reference).await {
        Ok(doc) => {
            let id = doc["Id"].as_str().unwrap_or(&reference).to_string();
            let volumes = data_volumes(&doc, &settings.data_dir);
            tracing::info!(container = %id, protected_volumes = ?volumes, "Berth runs in this container: nobody stops, removes, execs into or attaches to it through Berth");
            settings.policy.protected_volumes.extend(volumes);
            settings.self_container = Some(id);
        }
        Err(e) if configured.is_some() || e.is_unavailable() => {
            tracing::warn!(container = %reference, error = %e, "could not inspect Berth's own container: it is refused by this reference, and the volumes holding Berth's data are not known");
            settings.self_container = Some(reference);
        }
        // An id in our cgroup that this engine does not know: we run somewhere else.
        Err(_) => {}
    }
}

/// The 64-hex id of the container this process runs in: from a cgroup path
/// (`/docker/<id>`, `docker-<id>.scope`), else from a mount source under
/// `/containers/<id>/` (`/etc/hostname` and friends, which cgroup v2 with a private
/// namespace leaves as the only trace).
fn own_container_id(cgroup: &str, mountinfo: &str) -> Option<String> {
    let hex64 = |s: &str| s.len() >= 64 && s.as_bytes()[..64].iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    let in_cgroup = cgroup.lines().flat_map(|l| l.split(['/', '-', '.', ':'])).find(|t| t.len() == 64 && hex64(t));
    let in_mounts = || {
        mountinfo.split("/containers/").skip(1).find(|rest| hex64(rest) && rest.as_bytes().get(64) == Some(&b'/'))
    };
    in_cgroup.or_else(in_mounts).map(|t| t[..64].to_string())
}

/// The named volumes of a container's inspect document mounted at, above or inside
/// `data_dir`: those holding Berth's data.
fn data_volumes(doc: &serde_json::Value, data_dir: &std::path::Path) -> Vec<String> {
    let data_dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let mounts = doc["Mounts"].as_array().into_iter().flatten();
    let volumes = mounts.filter(|m| m["Type"] == "volume");
    let covering = volumes.filter(|m| {
        let dest = std::path::Path::new(m["Destination"].as_str().unwrap_or(""));
        dest.is_absolute() && (data_dir.starts_with(dest) || dest.starts_with(&data_dir))
    });
    covering.filter_map(|m| m["Name"].as_str().map(String::from)).collect()
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";

    #[test]
    fn finds_the_container_it_runs_in() {
        let v1 = format!("12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n");
        assert_eq!(own_container_id(&v1, "").as_deref(), Some(ID));
        let systemd = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(own_container_id(&systemd, "").as_deref(), Some(ID));
        // cgroup v2 with a private namespace: only the mounts tell.
        let layer = "a".repeat(64);
        let mountinfo = format!(
            "100 90 0:50 / / rw - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/{layer}/diff\n\
             120 100 8:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw - ext4 /dev/sda1 rw\n"
        );
        assert_eq!(own_container_id("0::/\n", &mountinfo).as_deref(), Some(ID));
        assert_eq!(own_container_id("0::/\n", &format!("lowerdir=/var/lib/docker/overlay2/{layer}/diff")), None);
        assert_eq!(own_container_id("4:memory:/process_api/34581980cf79c68c7959376d9184a565\n", ""), None);
    }

    #[test]
    fn the_volumes_at_the_data_dir_are_berths() {
        let doc = serde_json::json!({"Mounts": [
            {"Type": "volume", "Name": "berth-data", "Destination": "/data"},
            {"Type": "volume", "Name": "cache", "Destination": "/cache"},
            {"Type": "volume", "Name": "var", "Destination": "/var"},
            {"Type": "bind", "Source": "/run/docker.sock", "Destination": "/var/run/docker.sock"},
            {"Type": "volume", "Name": "spool", "Destination": "/data/contexts"},
        ]});
        assert_eq!(data_volumes(&doc, std::path::Path::new("/data")), ["berth-data", "spool"]);
        assert_eq!(data_volumes(&doc, std::path::Path::new("/var/lib/berth")), ["var"]);
    }
}
