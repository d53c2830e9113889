//! Integration tests against the real application, the real Docker engine and a real
//! registry. Run `scripts/test-env.sh` first (the README's test command does).

mod helpers;

mod auth;
mod containers;
mod errors;
mod faults;
mod images;
mod openapi;
mod roles;
mod system;
mod ws;
