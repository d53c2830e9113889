//! Berth's own HTTP to the engine, beside bollard's, on the same transport and the
//! negotiated API version; plain `unix://` and `tcp://` hosts only (TLS hosts go through
//! bollard). Three kinds of request need it:
//!
//! - `GET /system/df`, whose bollard model is the newer engines' shape (`ImageUsage`, …)
//!   and reads nothing of API 1.41's (`Images`, `LayersSize`, …): [`get_json`];
//! - the push stream, whose bollard model drops fields we need (a layer's `id`, the
//!   pushed `aux.Digest`): [`post_json_stream`]; and answers whose shape bollard's
//!   models (written for a newer API) do not read, such as API 1.41's `/system/df`:
//!   [`get_json`];
//! - attach and exec start, "hijacked" connections: the engine answers `101 UPGRADED` and
//!   the HTTP connection becomes a bidirectional byte stream, read exactly as the engine
//!   writes it (see [`super::stdio`]): [`hijack`].

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, Empty, Full};
use hyper::StatusCode;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, UPGRADE};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio_util::codec::{FramedRead, LinesCodec};

use super::{EngineError, ObjectKind};

type Result<T> = std::result::Result<T, EngineError>;

/// Whether Berth's own requests can reach this host.
pub fn supported(host: &str) -> bool {
    host.starts_with("unix://") || (host.starts_with("tcp://") && std::env::var_os("DOCKER_TLS_VERIFY").is_none())
}

/// The `message` of an engine's JSON error answer.
fn json_message(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
}

/// Send `method path_and_query` (already versioned) with no body; the engine's answer,
/// a non-success status already mapped like any engine error.
async fn send(
    host: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, String)],
    kind: ObjectKind,
) -> Result<hyper::Response<hyper::body::Incoming>> {
    let unavailable = |e: &dyn std::fmt::Display| EngineError::Unavailable(e.to_string());
    let mut builder = hyper::Request::builder().method(method);
    for (k, v) in headers {
        builder = builder.header(*k, v);
    }
    let response = if let Some(path) = host.strip_prefix("unix://") {
        let uri: hyper::Uri = hyperlocal::Uri::new(path, path_and_query).into();
        let req = builder.uri(uri).body(Empty::<Bytes>::new()).map_err(|e| EngineError::Docker(e.to_string()))?;
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(hyperlocal::UnixConnector);
        client.request(req).await.map_err(|e| unavailable(&e))?
    } else {
        let authority = host.trim_start_matches("tcp://").trim_end_matches('/');
        let uri: hyper::Uri = format!("http://{authority}{path_and_query}").parse().map_err(|e| unavailable(&e))?;
        let req = builder.uri(uri).body(Empty::<Bytes>::new()).map_err(|e| EngineError::Docker(e.to_string()))?;
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        client.request(req).await.map_err(|e| unavailable(&e))?
    };
    let status = response.status();
    if !status.is_success() {
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let message = json_message(&body).unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Err(EngineError::from_status(status.as_u16(), kind, message));
    }
    Ok(response)
}

/// GET `path_and_query` (already versioned): the engine's JSON answer as it wrote it
/// (for answers whose shape bollard's models, written for a newer API, do not read).
pub async fn get_json(host: &str, path_and_query: &str, kind: ObjectKind) -> Result<Value> {
    let response = send(host, "GET", path_and_query, &[], kind).await?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| EngineError::Unavailable(format!("the engine connection broke: {e}")))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| EngineError::Docker(format!("bad engine JSON: {e}")))
}

/// POST `path_and_query` (already versioned) and stream the newline-delimited JSON reply.
pub async fn post_json_stream(
    host: &str,
    path_and_query: &str,
    headers: &[(&str, String)],
    kind: ObjectKind,
) -> Result<impl Stream<Item = Result<Value>> + Send + 'static + use<>> {
    let response = send(host, "POST", path_and_query, headers, kind).await?;
    let body = response.into_body().into_data_stream().map(|r| r.map_err(std::io::Error::other));
    let lines = FramedRead::new(tokio_util::io::StreamReader::new(body), LinesCodec::new_with_max_length(1 << 20));
    Ok(lines.filter_map(|line| async move {
        match line {
            Err(e) => Some(Err(EngineError::Unavailable(format!("the engine connection broke: {e}")))),
            Ok(l) if l.trim().is_empty() => None,
            Ok(l) => Some(serde_json::from_str::<Value>(&l).map_err(|e| EngineError::Docker(format!("bad engine JSON: {e}")))),
        }
    }))
}

/// POST `path_and_query` (already versioned) asking for `Upgrade: tcp`; the upgraded
/// connection. An answer other than 101 is mapped like any engine error.
pub async fn hijack(
    host: &str,
    path_and_query: &str,
    body: String,
    kind: ObjectKind,
) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
    let req = hyper::Request::builder()
        .method("POST")
        .uri(path_and_query)
        .header(HOST, "docker")
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, "tcp")
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| EngineError::Docker(e.to_string()))?;
    let upgraded = if let Some(path) = host.strip_prefix("unix://") {
        let stream = tokio::net::UnixStream::connect(path).await.map_err(|e| EngineError::unavailable(path, &e))?;
        upgrade_over(TokioIo::new(stream), req, kind).await?
    } else {
        let authority = host.trim_start_matches("tcp://").trim_end_matches('/');
        let stream =
            tokio::net::TcpStream::connect(authority).await.map_err(|e| EngineError::unavailable(authority, &e))?;
        let _ = stream.set_nodelay(true);
        upgrade_over(TokioIo::new(stream), req, kind).await?
    };
    Ok(TokioIo::new(upgraded))
}

async fn upgrade_over<T>(io: T, req: hyper::Request<Full<Bytes>>, kind: ObjectKind) -> Result<hyper::upgrade::Upgraded>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| EngineError::unavailable("engine handshake", &e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "engine connection ended");
        }
    });
    let response = sender.send_request(req).await.map_err(|e| EngineError::unavailable("engine request", &e))?;
    let status = response.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        if status.as_u16() < 300 {
            return Err(EngineError::Docker(format!(
                "the engine answered {status} instead of upgrading the connection"
            )));
        }
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let message = json_message(&body).unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        return Err(EngineError::from_status(status.as_u16(), kind, message));
    }
    hyper::upgrade::on(response).await.map_err(|e| EngineError::unavailable("engine upgrade", &e))
}
