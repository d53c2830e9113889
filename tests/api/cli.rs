//! The binary's commands: `serve` refuses to start without a key (and says how to set
//! one), `token` prints a token the service accepts, `openapi` prints the spec, `migrate`
//! refuses what it cannot copy.

use std::process::Command;

use crate::helpers::{TEST_SECRET, spawn_app};

fn berth() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.env_remove("BERTH_JWT_SECRET").env_remove("BERTH_JWT_PUBLIC_KEY_FILE");
    c
}

#[test]
fn serve_refuses_to_start_without_a_key() {
    let out = berth().arg("serve").env("BERTH_LISTEN", "127.0.0.1:0").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BERTH_JWT_SECRET") && err.contains("BERTH_JWT_PUBLIC_KEY_FILE"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[actix_web::test]
async fn token_prints_a_token_the_service_accepts() {
    let app = spawn_app().await;
    let out = berth()
        .args(["token", "--sub", "cli-user", "--role", "operator", "--ttl", "10m"])
        .env("BERTH_JWT_SECRET", TEST_SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let res = app.client.get(app.url("/v1/jobs")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // The role is the one asked for: operator, not admin.
    let res = app.client.get(app.url("/v1/audit")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 403);

    let out = berth().args(["token", "--sub", "x", "--role", "root"]).env("BERTH_JWT_SECRET", TEST_SECRET).output().unwrap();
    assert!(!out.status.success(), "an unknown role is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("viewer, operator or admin"));
}

#[test]
fn openapi_prints_the_committed_spec() {
    let out = berth().arg("openapi").output().unwrap();
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json")).unwrap())
            .unwrap();
    assert_eq!(printed, committed);
}

/// `migrate` refuses a `--to` that is not PostgreSQL's, and a data dir without a store
/// (naming where it looked), with exit code 1 and before touching any database.
#[test]
fn migrate_refuses_a_url_that_is_not_postgres_and_a_missing_store() {
    let out = berth().args(["migrate", "--to", "not-a-url"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("berth: `not-a-url` is not a PostgreSQL URL") && err.contains("postgres://"), "{err}");

    let out = berth()
        .args(["migrate", "--to", "postgres://berth@127.0.0.1:55432/postgres", "--data-dir", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no SQLite store at /nonexistent/berth.db"), "{err}");
    assert!(!err.contains("panicked") && out.stdout.is_empty(), "{err}");
}
