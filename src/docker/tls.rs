//! Berth's own transport to a `tcp://` engine over mutual TLS, handed to bollard as a
//! custom transport. bollard's `connect_with_ssl` opens a new connection (TCP and TLS
//! handshakes) for every call and leaves Nagle's algorithm on, so each small request
//! waited for a delayed ACK: about 40 ms a call. This one keeps idle connections for
//! reuse and sets `TCP_NODELAY`, as the unix-socket transport effectively has.

use std::sync::Arc;
use std::time::Duration;

use bollard::{BollardRequest, ClientVersion, Docker};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::fleet::TlsFiles;

/// How long an idle connection to an engine is kept for the next call.
const IDLE: Duration = Duration::from_secs(30);

fn read_err(what: &str, path: &std::path::Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

/// The client configuration of `tls`: the engine's CA only (not the system's roots: an
/// engine's certificate comes from its own CA), and the client certificate and key.
fn client_config(tls: &TlsFiles) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(&tls.ca).map_err(|e| read_err("reading the CA", &tls.ca, e))?;
    for ca in cas {
        roots.add(ca.map_err(|e| read_err("parsing the CA", &tls.ca, e))?).map_err(|e| read_err("adding the CA", &tls.ca, e))?;
    }
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| read_err("reading the certificate", &tls.cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err("parsing the certificate", &tls.cert, e))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| read_err("reading the key", &tls.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("the client certificate and key: {e}"))
}

/// A bollard client for `host` (`tcp://ADDR:PORT`) over mutual TLS with `tls`.
pub fn connect(host: &str, tls: &TlsFiles, timeout_secs: u64, version: &ClientVersion) -> Result<Docker, String> {
    let config = client_config(tls)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_only().enable_http1().wrap_connector(http);
    let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(IDLE).build(https);
    let transport = move |req: BollardRequest| {
        let client = client.clone();
        async move { client.request(req).await.map_err(bollard::errors::Error::from) }
    };
    let addr = format!("https://{}", host.trim_start_matches("tcp://").trim_start_matches("https://"));
    Docker::connect_with_custom_transport(transport, Some(addr), timeout_secs, version).map_err(|e| e.to_string())
}
