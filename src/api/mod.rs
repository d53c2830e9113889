//! The HTTP edge: handlers, one file per resource, what they share (`problem`, `extract`,
//! `submit`, `sse`, `upload`, `responses`), the problem type pages (`problems`) and the
//! OpenAPI document they make up (`openapi`).
//!
//! It may import its peers at the edge (`auth`, `audit`, `sessions`, `telemetry`), the
//! shared `state`, and everything below: `jobs` (the store only through `jobs`),
//! `docker`, `config`, `domain` and `error`. Never `startup`, which builds on it; and
//! nothing below it imports it.

pub mod audit;
pub mod containers;
pub mod engine_events;
pub mod compress;
pub mod cors;
pub mod etag;
pub mod extract;
pub mod hosts;
pub mod images;
pub mod interactive;
pub mod jobs;
pub mod networks;
pub mod openapi;
pub mod problem;
pub mod problems;
pub mod prune;
pub mod responses;
pub mod scope;
pub mod sse;
pub mod stats;
pub mod streams;
pub mod submit;
pub mod system;
pub mod tickets;
pub mod ui;
pub mod upload;
pub mod volumes;

pub use openapi::{ApiDoc, v1_scope, v1_served};
