//! Registry traffic: pull and push, as streams of progress messages. An error item in a
//! 200 stream is an `Err` item.

use bollard::auth::DockerCredentials;
use bollard::query_parameters as qp;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::Value;

use super::{DockerEngine, EngineError, ObjectKind, ProgressMessage, Result};
use crate::domain::credentials::RegistryAuth;

impl DockerEngine {
    pub(super) async fn pull(
        &self,
        repository: &str,
        tag: &str,
        platform: Option<&str>,
        auth: Option<&RegistryAuth>,
    ) -> Result<BoxStream<'static, Result<ProgressMessage>>> {
        let d = self.docker().await?;
        let opts = qp::CreateImageOptions {
            from_image: Some(repository.to_string()),
            tag: Some(tag.to_string()),
            platform: platform.unwrap_or_default().to_string(),
            ..Default::default()
        };
        let stream = d.create_image(Some(opts), None, auth.map(to_bollard));
        let repository = repository.to_string();
        Ok(stream
            .map(move |item| match item {
                Ok(i) => Ok(progress_message(i.id, i.status, i.progress_detail)),
                Err(e) => Err(registry_error(&repository, EngineError::from_bollard(ObjectKind::Image, e))),
            })
            .boxed())
    }

    pub(super) async fn push(
        &self,
        repository: &str,
        tag: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<BoxStream<'static, Result<ProgressMessage>>> {
        let d = self.docker().await?;
        if self.speaks_raw() {
            // bollard's push model drops the layer ids and the digest: read the raw stream.
            let query: String = form_urlencoded::Serializer::new(String::new()).append_pair("tag", tag).finish();
            let path = Self::versioned(&d, &format!("/images/{repository}/push?{query}"));
            let headers = [("X-Registry-Auth", registry_auth_header(auth))];
            let stream = super::raw::post_json_stream(self.host(), &path, &headers, ObjectKind::Image)
                .await
                .map_err(|e| registry_error(repository, self.forget_if_unavailable(e)))?;
            let repository = repository.to_string();
            return Ok(stream.map(move |item| item.and_then(progress_from_json).map_err(|e| registry_error(&repository, e))).boxed());
        }
        let opts = qp::PushImageOptions { tag: Some(tag.to_string()), platform: None };
        let stream = d.push_image(repository, Some(opts), auth.map(to_bollard));
        let repository = repository.to_string();
        Ok(stream
            .map(move |item| match item {
                Ok(i) => Ok(progress_message(None, i.status, i.progress_detail)),
                Err(e) => Err(registry_error(&repository, EngineError::from_bollard(ObjectKind::Image, e))),
            })
            .boxed())
    }
}

/// The engine reports a registry's refusals as text ("no basic auth credentials",
/// "unauthorized", "manifest unknown"): here they get codes of their own, so a portal
/// can tell a wrong password from a missing image.
fn registry_error(repository: &str, e: EngineError) -> EngineError {
    if e.is_unavailable() || matches!(e, EngineError::RegistryRefused(_) | EngineError::NotFound { .. }) {
        return e;
    }
    let msg = e.to_string();
    let lower = msg.to_ascii_lowercase();
    let host = crate::domain::ImageRef::parse(repository).map(|r| r.registry_host().to_string()).unwrap_or_default();
    if ["unauthorized", "authentication required", "denied", "no basic auth credentials"].iter().any(|p| lower.contains(p)) {
        return EngineError::RegistryRefused(format!("The registry {host} refused the credentials (or gave none): {msg}"));
    }
    if ["not found", "manifest unknown", "no such image"].iter().any(|p| lower.contains(p)) {
        return EngineError::NotFound { kind: ObjectKind::Image, message: msg };
    }
    e
}

pub(super) fn to_bollard(auth: &RegistryAuth) -> DockerCredentials {
    DockerCredentials {
        username: auth.username.clone(),
        password: auth.password.clone(),
        identitytoken: auth.identity_token.clone(),
        serveraddress: auth.server.clone(),
        ..Default::default()
    }
}

fn progress_message(
    id: Option<String>,
    status: Option<String>,
    detail: Option<bollard::models::ProgressDetail>,
) -> ProgressMessage {
    let (current, total) = detail.map(|d| (d.current, d.total)).unwrap_or((None, None));
    ProgressMessage { id, status, current, total, digest: None }
}

/// A message of the engine's JSON progress stream; an `error` item is an error.
fn progress_from_json(v: Value) -> Result<ProgressMessage> {
    if let Some(err) = v.get("errorDetail").and_then(|e| e.get("message")).or_else(|| v.get("error")) {
        return Err(EngineError::Docker(err.as_str().unwrap_or("error").to_string()));
    }
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
    let detail = v.get("progressDetail");
    let n = |k: &str| detail.and_then(|d| d.get(k)).and_then(|x| x.as_i64());
    Ok(ProgressMessage {
        id: s("id"),
        status: s("status"),
        current: n("current"),
        total: n("total"),
        digest: v.get("aux").and_then(|a| a.get("Digest")).and_then(|d| d.as_str()).map(String::from),
    })
}

/// `X-Registry-Auth`: base64url of the JSON credentials (`{}` when none).
fn registry_auth_header(auth: Option<&RegistryAuth>) -> String {
    use base64::Engine as _;
    let json = match auth {
        Some(a) => serde_json::json!({
            "username": a.username, "password": a.password,
            "identitytoken": a.identity_token, "serveraddress": a.server,
        }),
        None => serde_json::json!({}),
    };
    base64::engine::general_purpose::URL_SAFE.encode(json.to_string())
}
