//! Parsed, validated request types: what handlers turn raw input into before it goes
//! to the engine or the queue.

pub mod image_ref;
pub mod credentials;
pub mod exec;
pub mod names;
pub mod policy;
pub mod requests;
pub mod run;

pub use image_ref::{ImageRef, RefError, validate_reference_or_id};
