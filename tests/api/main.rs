//! Integration tests against the real application, the real Docker engine and a real
//! registry. Run `scripts/test-env.sh` first (the README's test command does).

mod helpers;
mod hosts;
mod fleet_jobs;

mod audit;
mod auth;
mod cli;
mod conditional;
mod container_stats;
mod containers;
mod cors;
mod credentials;
mod errors;
mod faults;
mod images;
mod jobs;
mod jobs_build;
mod engine_build;
mod engine_objects;
mod engine_events;
mod jobs_queue;
mod jobs_registry;
mod jobs_run;
mod layers;
mod metrics;
mod openapi;
mod policy;
mod roles;
mod roles_teams;
mod security;
mod security_host;
mod security_expose;
mod security_build;
mod snapshots;
mod system;
mod tickets;
mod teams_containers;
mod teams_images;
mod ws;
mod teams_jobs;
mod watch;
mod replicas;
