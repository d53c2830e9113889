//! Job request bodies. What a job stores as its `request` is the same shape with the
//! credentials removed.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ImageRef;
use super::credentials::RegistryCredentials;
use crate::error::ApiError;

/// Pull an image (`docker pull`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// Reference; the tag defaults to `latest`.
    #[schema(example = "127.0.0.1:5000/team/app:1.2")]
    pub image: String,
    /// `os[/arch[/variant]]`, e.g. `linux/amd64`.
    pub platform: Option<String>,
    /// For this pull only; else the server's credentials for the registry, if any.
    #[serde(default, skip_serializing)]
    pub credentials: Option<RegistryCredentials>,
}

/// Push an image (`docker push`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// Reference with a registry host; the tag defaults to `latest`.
    #[schema(example = "127.0.0.1:5000/team/app:1.2")]
    pub image: String,
    #[serde(default, skip_serializing)]
    pub credentials: Option<RegistryCredentials>,
}

/// Prune filters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneFilters {
    /// Only objects with these labels: `key`, `key=value`, or `!key`/`key!=value` to exclude.
    #[serde(default)]
    pub label: Vec<String>,
    /// Only objects created before: Unix seconds, RFC 3339, or a Go duration (`24h`).
    pub until: Option<String>,
}

/// Remove unused images (`docker image prune`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneImagesRequest {
    /// `false` (default): dangling images only; `true`: every image no container uses (`-a`).
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub filters: PruneFilters,
}

/// Remove stopped containers (`docker container prune`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneContainersRequest {
    #[serde(default)]
    pub filters: PruneFilters,
}

impl PruneFilters {
    pub fn validate(&self) -> Result<(), ApiError> {
        for l in &self.label {
            super::names::validate_label_filter(l)?;
        }
        if let Some(u) = &self.until {
            let ok = !u.is_empty() && u.len() <= 64 && u.bytes().all(|b| b.is_ascii_alphanumeric() || b"-:.+".contains(&b));
            if !ok {
                return Err(ApiError::invalid("`filters.until` must be Unix seconds, an RFC 3339 time or a duration like 24h"));
            }
        }
        Ok(())
    }
}

/// Build options, from the query string of `POST /v1/images/build`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct BuildQuery {
    /// Name and tag for the image (repeatable).
    #[serde(default)]
    pub tag: Vec<String>,
    /// Path of the Dockerfile inside the context (default `Dockerfile`).
    pub dockerfile: Option<String>,
    /// Build stage to stop at (multi-stage builds).
    pub target: Option<String>,
    /// Build argument `KEY=VALUE` (repeatable).
    #[serde(default)]
    pub buildarg: Vec<String>,
    /// Label `KEY=VALUE` for the image (repeatable).
    #[serde(default)]
    pub label: Vec<String>,
    /// Do not use the build cache.
    #[serde(default, deserialize_with = "crate::api::de_bool_opt")]
    #[param(value_type = Option<bool>)]
    #[schema(value_type = Option<bool>)]
    pub nocache: Option<bool>,
    /// Always try to pull newer base images.
    #[serde(default, deserialize_with = "crate::api::de_bool_opt")]
    #[param(value_type = Option<bool>)]
    #[schema(value_type = Option<bool>)]
    pub pull: Option<bool>,
    /// A git repository or tar URL to build from, with no body.
    pub remote: Option<String>,
    /// The bearer token is never accepted here (not an event stream).
    #[serde(default, skip_serializing)]
    #[param(ignore)]
    #[schema(ignore)]
    pub access_token: Option<String>,
}

/// A validated build: what the job stores and runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BuildParams {
    pub tags: Vec<String>,
    pub dockerfile: Option<String>,
    pub target: Option<String>,
    pub build_args: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    pub nocache: bool,
    pub pull: bool,
    pub remote: Option<String>,
    /// Size of the uploaded context, in bytes.
    pub context_bytes: Option<u64>,
    /// `tar` or `gzip`.
    pub context_format: Option<String>,
}

fn key_value(field: &str, s: &str) -> Result<(String, String), ApiError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && k.len() <= 256 && !k.chars().any(|c| c.is_control() || c.is_whitespace()) => {
            if v.len() > 64 * 1024 || v.contains('\0') {
                return Err(ApiError::invalid(format!("`{field}` value of `{k}` is too long or contains NUL")));
            }
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(ApiError::invalid(format!("`{field}` must be KEY=VALUE, got `{}`", s.escape_debug()))),
    }
}

impl BuildQuery {
    pub fn validate(&self) -> Result<BuildParams, ApiError> {
        let mut tags = Vec::new();
        for t in &self.tag {
            let r = ImageRef::parse(t)?;
            if r.digest.is_some() {
                return Err(ApiError::new(crate::error::ErrorCode::InvalidReference, "A build tag cannot carry a digest."));
            }
            tags.push(format!("{}:{}", r.repository(), r.tag_or_latest()));
        }
        for (field, v) in [("dockerfile", &self.dockerfile), ("target", &self.target)] {
            if let Some(v) = v {
                if v.is_empty() || v.len() > 1024 || v.chars().any(char::is_control) {
                    return Err(ApiError::invalid(format!("`{field}` must be 1-1024 printable characters")));
                }
            }
        }
        if let Some(r) = &self.remote {
            let ok = (r.starts_with("https://") || r.starts_with("http://") || r.starts_with("git@") || r.starts_with("git://"))
                && r.len() <= 2048
                && !r.chars().any(|c| c.is_control() || c.is_whitespace());
            if !ok {
                return Err(ApiError::invalid("`remote` must be an http(s) or git URL"));
            }
        }
        Ok(BuildParams {
            tags,
            dockerfile: self.dockerfile.clone(),
            target: self.target.clone(),
            build_args: self.buildarg.iter().map(|s| key_value("buildarg", s)).collect::<Result<_, _>>()?,
            labels: self.label.iter().map(|s| key_value("label", s)).collect::<Result<_, _>>()?,
            nocache: self.nocache.unwrap_or(false),
            pull: self.pull.unwrap_or(false),
            remote: self.remote.clone(),
            context_bytes: None,
            context_format: None,
        })
    }
}
