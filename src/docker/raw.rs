//! A raw JSON-stream request to the engine, for the one call whose bollard model drops
//! fields we need: bollard's push messages carry no layer `id` and no `aux.Digest`.
//! Same transport and negotiated API version as the bollard client; plain `unix://`
//! and `tcp://` hosts only (TLS hosts fall back to bollard).

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio_util::codec::{FramedRead, LinesCodec};

use super::{EngineError, ObjectKind};

/// Whether `raw_post_stream` can reach this host.
pub fn supported(host: &str) -> bool {
    host.starts_with("unix://") || (host.starts_with("tcp://") && std::env::var_os("DOCKER_TLS_VERIFY").is_none())
}

/// POST `path_and_query` (already versioned) and stream the newline-delimited JSON reply.
pub async fn raw_post_stream(
    host: &str,
    path_and_query: &str,
    headers: &[(&str, String)],
    kind: ObjectKind,
) -> Result<impl Stream<Item = Result<Value, EngineError>> + Send + 'static + use<>, EngineError> {
    let unavailable = |e: &dyn std::fmt::Display| EngineError::Unavailable(e.to_string());
    let mut builder = hyper::Request::builder().method("POST");
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
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        return Err(match status.as_u16() {
            404 => EngineError::NotFound { kind, message },
            409 => EngineError::Conflict(message),
            400 => EngineError::BadRequest(message),
            _ => EngineError::Docker(message),
        });
    }
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
