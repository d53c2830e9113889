//! Parsed, validated request types: what handlers turn raw input into before it goes
//! to the engine or the queue.

pub mod image_ref;
pub mod names;

pub use image_ref::{ImageRef, RefError, validate_reference_or_id};
