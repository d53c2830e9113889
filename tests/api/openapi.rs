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
    // What is served (the committed document, embedded) is what the handlers generate.
    assert_eq!(spec, serde_json::to_value(berth::startup::openapi()).unwrap(), "served = generated");
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

/// Every operation of a document.
fn operations(spec: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((method.clone(), path.clone(), op));
        }
    }
    ops
}

/// What client generators and linters need (openapi-generator, Redocly, openapi-python-client,
/// openapi-typescript): scripts/clients.sh runs them; this says why they pass.
#[test]
fn the_spec_is_what_generators_need() {
    let spec: Value = serde_json::from_str(&berth::startup::openapi().to_json().unwrap()).unwrap();
    assert_eq!(spec["info"]["license"]["identifier"], "Apache-2.0", "openapi-generator needs info.license.identifier");
    assert!(spec["servers"].as_array().is_some_and(|s| !s.is_empty() && s[0]["url"].is_string()), "servers");

    let mut ids = std::collections::BTreeSet::new();
    for (method, path, op) in operations(&spec) {
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has an operationId"));
        assert!(
            id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') && id.starts_with(|c: char| c.is_ascii_lowercase()),
            "{method} {path}: operationId `{id}` is snake_case"
        );
        assert!(ids.insert(id.to_string()), "operationId `{id}` is unique");
        let summary = op["summary"].as_str().unwrap_or_default();
        assert!(!summary.is_empty() && !summary.contains('\n'), "{method} {path}: a one-line summary, not {summary:?}");
        let description = op["description"].as_str().unwrap_or_default();
        assert!(description.len() > summary.len() / 2 && description != summary, "{method} {path} has a description");

        // Unauthenticated routes say so (`security: []`); /metrics is either.
        let security = &op["security"];
        match path.as_str() {
            "/metrics" => assert!(security.as_array().is_some_and(|s| s.contains(&serde_json::json!({}))), "{security}"),
            p if p.starts_with("/v1/") => assert!(security.to_string().contains("bearer"), "{method} {path} needs bearer"),
            _ => assert_eq!(security, &serde_json::json!([]), "{method} {path} is unauthenticated: security: []"),
        }

        for (status, response) in op["responses"].as_object().unwrap() {
            // Streams are typed: their schema is the union of the event payloads.
            if let Some(stream) = response["content"].get("text/event-stream") {
                let name = stream["schema"]["$ref"].as_str().unwrap_or_else(|| panic!("{path}: stream schema is a $ref: {stream}"));
                let schema = &spec["components"]["schemas"][name.trim_start_matches("#/components/schemas/")];
                let members = schema["oneOf"].as_array().unwrap_or_else(|| panic!("{path}: {name} is a oneOf"));
                assert!(members.iter().filter(|m| m["$ref"].is_string()).count() >= 2, "{path}: {name} references its payloads");
                let text = response["description"].as_str().unwrap();
                for needle in ["event:", "id:", "data:", "retry:"] {
                    assert!(text.contains(needle), "{path}: the SSE framing is described ({needle})");
                }
            }
            if status == "101" {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/WebSocketMessage", "{path}: 101 names the message schema");
            }
            // Each example shows the status of its own answer.
            let Ok(code) = status.parse::<u64>() else { continue };
            for (media, content) in response["content"].as_object().into_iter().flatten() {
                let mut examples: Vec<&Value> = content["examples"].as_object().into_iter().flatten().map(|(_, e)| &e["value"]).collect();
                examples.extend(content.get("example"));
                if media == "application/problem+json" {
                    assert!(!examples.is_empty(), "{method} {path} {status}: a problem answer has its example");
                }
                for example in examples {
                    if let Some(shown) = example.get("status") {
                        assert_eq!(shown.as_u64(), Some(code), "{method} {path} {status}: example shows {example}");
                        let code_name = example["code"].as_str().unwrap();
                        assert_eq!(example["type"], format!("/problems/{code_name}"), "{method} {path} {status}");
                    }
                }
            }
        }
    }

    let schemas = spec["components"]["schemas"].as_object().unwrap();
    // Every timestamp says so.
    for (name, schema) in schemas {
        for (field, prop) in schema["properties"].as_object().into_iter().flatten() {
            if field == "at" || field == "created" || field.ends_with("_at") {
                assert_eq!(prop["format"], "date-time", "{name}.{field} is a date-time");
            }
        }
    }
    // Filters are typed as the enums they take.
    let params = spec["paths"]["/v1/jobs"]["get"]["parameters"].as_array().unwrap();
    for (param, enum_name) in [("state", "JobState"), ("kind", "JobKind")] {
        let p = params.iter().find(|p| p["name"] == param).unwrap();
        assert_eq!(p["schema"]["$ref"], format!("#/components/schemas/{enum_name}"), "?{param}= is a {enum_name}");
    }
    // No schema sits unreferenced (the stream, WebSocket and problem schemas included).
    let text = spec.to_string();
    for name in schemas.keys() {
        assert!(text.contains(&format!("\"#/components/schemas/{name}\"")), "schema {name} is referenced");
    }
    assert!(schemas["WebSocketMessage"].to_string().contains("ClientControl"));
    assert!(schemas["WebSocketMessage"].to_string().contains("ServerControl"));
}
