//! Snapshots of the contract (insta): every error code's problem body and the generated
//! OpenAPI document, so that any change to either shows as a diff in review. After an
//! intended change: `INSTA_UPDATE=always cargo test --test api snapshots::` (or
//! `cargo insta review`), then read the diff of `tests/api/snapshots/`.

use berth::api::problem::{ApiError, Problem};
use berth::error::ErrorCode;

/// The problem document of each code, in catalogue order.
#[test]
fn every_error_code_problem_body() {
    let problems: Vec<Problem> = ErrorCode::ALL
        .iter()
        .map(|&code| {
            let problem = ApiError::new(code, "detail text").problem();
            // Empty outside a request; a request's id would differ on every run.
            Problem { request_id: "[request_id]".into(), ..problem }
        })
        .collect();
    assert_eq!(problems.len(), ErrorCode::ALL.len());
    insta::assert_json_snapshot!("error_problems", problems);
}

#[test]
fn generated_openapi_document() {
    insta::assert_json_snapshot!("openapi", berth::startup::openapi());
}
