//! Berth: an authenticated HTTP/JSON control plane for the Docker Engine.

pub mod api;
pub mod audit;
pub mod auth;
pub mod config;
pub mod docker;
pub mod domain;
pub mod engine_events;
pub mod error;
pub mod jobs;
pub mod metrics;
pub mod sessions;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
