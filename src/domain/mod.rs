//! Parsed, validated types: what handlers turn raw input into before it goes to the
//! engine or the queue, and the job model. This layer imports only `crate::error` (the
//! code table) and, for the run policy's configuration, nothing else of ours: never
//! HTTP, the store or the engine.

pub mod credentials;
pub mod exec;
pub mod identity;
pub mod image_ref;
pub mod job;
pub mod names;
pub mod policy;
pub mod rejection;
pub mod requests;
pub mod run;

pub use image_ref::{ImageRef, RefError, validate_reference_or_id};
pub use rejection::Rejection;

/// `true`/`false`/`1`/`0` in a query string.
pub fn de_bool_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let s: Option<String> = serde::Deserialize::deserialize(d)?;
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some("true") | Some("1") => Ok(Some(true)),
        Some("false") | Some("0") => Ok(Some(false)),
        Some(other) => Err(serde::de::Error::custom(format!("expected true or false, got `{other}`"))),
    }
}
