use serde_json::Value;

use crate::helpers::spawn_app;

/// The committed spec must equal the generated one: refresh it with
/// `cargo run -q -- openapi > openapi/openapi.json`.
#[test]
fn committed_spec_is_current() {
    let generated: Value = serde_json::from_str(&berth::startup::openapi().to_pretty_json().unwrap()).unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("openapi/openapi.json exists"))
        .expect("committed spec is JSON");
    assert!(
        generated == committed,
        "openapi/openapi.json is stale: run `cargo run -q -- openapi > openapi/openapi.json`"
    );
}

#[actix_web::test]
async fn spec_is_served_and_documents_every_route() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let spec: Value = res.json().await.unwrap();
    assert_eq!(spec["info"]["title"], "Berth");
    let paths = spec["paths"].as_object().unwrap();
    for (path, method) in [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/v1/system", "get"),
        ("/v1/images", "get"),
        ("/v1/images/{reference}", "get"),
        ("/v1/images/{reference}", "delete"),
        ("/v1/images/tag", "post"),
        ("/v1/containers", "get"),
        ("/v1/containers/{id}", "get"),
        ("/v1/containers/{id}", "delete"),
        ("/v1/containers/{id}/start", "post"),
        ("/v1/containers/{id}/stop", "post"),
        ("/v1/containers/{id}/restart", "post"),
        ("/v1/containers/{id}/kill", "post"),
        ("/v1/containers/{id}/logs", "get"),
        ("/v1/containers/{id}/attach", "get"),
        ("/v1/containers/{id}/exec", "post"),
        ("/v1/exec/{id}/ws", "get"),
    ] {
        let op = &paths.get(path).unwrap_or_else(|| panic!("{path} documented"))[method];
        assert!(op.is_object(), "{method} {path} documented");
        if path.starts_with("/v1/") {
            assert!(op["security"].to_string().contains("bearer"), "{method} {path} needs bearer");
            assert!(op["responses"]["401"].is_object(), "{method} {path} documents 401");
        }
    }
    assert_eq!(spec["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert!(spec["components"]["schemas"]["Problem"].is_object());
    let logs = &paths["/v1/containers/{id}/logs"]["get"]["responses"]["200"]["content"];
    assert!(logs.get("text/event-stream").is_some(), "logs documented as an event stream");
    for (path, method) in [("/v1/containers/{id}/attach", "get"), ("/v1/exec/{id}/ws", "get")] {
        let op = &paths[path][method];
        assert!(op["responses"]["101"].is_object(), "{path}: 101 documented");
        for status in ["403", "404", "429"] {
            assert!(op["responses"][status].is_object(), "{path}: {status} documented");
        }
        let description = op["description"].as_str().unwrap_or_default();
        for needle in ["first byte", "\"type\":\"resize\"", "\"type\":\"exit\"", "1001"] {
            assert!(description.contains(needle), "{path}: the framing is described ({needle})");
        }
    }
    assert!(spec["components"]["schemas"]["ClientControl"].is_object());
    assert!(spec["components"]["schemas"]["ServerControl"].is_object());

    // Swagger UI is served, and the bare path redirects to it.
    let res = app.client.get(app.url("/swagger-ui/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("swagger"), "swagger UI page");
    let res = app.client.get(app.url("/swagger-ui")).send().await.unwrap();
    assert_eq!(res.status(), 301);
    assert_eq!(res.headers()["location"], "/swagger-ui/");
}


/// What every operation must document, so clients (and the fuzzer) meet no surprise:
/// 401 on `/v1`, 415 where a JSON body is taken, the problem schema on every error.
#[test]
fn every_operation_documents_its_failures() {
    let spec: Value = serde_json::from_str(&berth::startup::openapi().to_json().unwrap()).unwrap();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            if path.starts_with("/v1/") {
                assert!(responses.contains_key("401"), "{method} {path} documents 401");
            }
            if op["requestBody"]["content"].get("application/json").is_some() {
                assert!(responses.contains_key("415"), "{method} {path} takes JSON: documents 415");
                assert!(responses.contains_key("400"), "{method} {path} takes JSON: documents 400");
            }
            for (status, r) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let problem = &r["content"]["application/problem+json"]["schema"]["$ref"];
                    let is_health = path == "/readyz";
                    assert!(
                        is_health || problem == "#/components/schemas/Problem",
                        "{method} {path} {status} is a problem document: {r}"
                    );
                }
            }
        }
    }
}
