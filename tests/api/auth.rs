//! Authentication (401 `unauthorized`) and authorization (403 `forbidden`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth::auth::Role;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{BASE_IMAGE, Cleanup, TEST_SECRET, assert_problem, run_container, spawn_app, spawn_app_with, unique};

const ISSUER: &str = "https://issuer.berth.test";
const AUDIENCE: &str = "berth-api";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Valid claims for `sub` with the viewer role; tests then break one thing.
fn claims(sub: &str) -> Value {
    let now = now();
    json!({ "sub": sub, "roles": ["viewer"], "iat": now, "nbf": now, "exp": now + 600 })
}

fn sign_with(alg: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret.as_bytes()).unwrap()).unwrap()
}

fn sign(claims: &Value) -> String {
    sign_with(Algorithm::HS256, TEST_SECRET, claims)
}

/// GET /v1/images with this raw `Authorization` header (or none).
async fn images_with(app: &crate::helpers::TestApp, authorization: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url("/v1/images"));
    if let Some(h) = authorization {
        req = req.header("authorization", h);
    }
    req.send().await.unwrap()
}

async fn assert_rejected(app: &crate::helpers::TestApp, token: &str, why: &str) -> Value {
    let res = images_with(app, Some(&format!("Bearer {token}"))).await;
    let www = res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    let problem = assert_problem(res, 401, "unauthorized").await;
    assert_eq!(www.as_deref(), Some("Bearer"), "{why}: WWW-Authenticate on 401");
    problem
}

#[actix_web::test]
async fn a_valid_token_is_accepted_as_header_and_lower_case_scheme() {
    let app = spawn_app().await;
    let token = sign(&claims("alice"));
    let res = images_with(&app, Some(&format!("Bearer {token}"))).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let res = images_with(&app, Some(&format!("bearer {token}"))).await;
    assert_eq!(res.status(), 200);
}

#[actix_web::test]
async fn missing_or_malformed_authorization_is_401() {
    let app = spawn_app().await;
    for path in ["/v1/images", "/v1/containers", "/v1/system", "/v1/containers/x/logs", "/v1/does-not-exist"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        let www = res.headers().get("www-authenticate").cloned();
        let p = assert_problem(res, 401, "unauthorized").await;
        assert!(p["detail"].as_str().unwrap().contains("Bearer"), "{path}: {p}");
        assert_eq!(www.unwrap(), "Bearer", "{path}");
    }
    let res = app.client.post(app.url("/v1/containers/x/start")).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
    let res = app.client.delete(app.url("/v1/images/busybox")).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;

    let token = sign(&claims("alice"));
    for header in [
        "Basic x".to_string(),
        "Basic YWxpY2U6c2VjcmV0".to_string(),
        "Bearer".to_string(),
        "Bearer ".to_string(),
        "Bearer garbage".to_string(),
        "Bearer a.b.c".to_string(),
        "Bearer ....".to_string(),
        format!("Token {token}"),
        token.clone(),
        format!("Bearer {token}x"),
        format!("Bearer {}", &token[..token.len() - 4]),
    ] {
        let res = images_with(&app, Some(&header)).await;
        assert_problem(res, 401, "unauthorized").await;
    }
}

#[actix_web::test]
async fn a_token_signed_with_another_secret_is_401() {
    let app = spawn_app().await;
    let token = sign_with(Algorithm::HS256, "some-other-secret-0123456789abcdef", &claims("mallory"));
    let p = assert_rejected(&app, &token, "other secret").await;
    assert!(p["detail"].as_str().unwrap().contains("signature"), "{p}");

    // A token with its claims swapped for an admin's, keeping the original signature.
    let good = sign(&claims("mallory"));
    let parts: Vec<&str> = good.split('.').collect();
    let mut forged = claims("mallory");
    forged["roles"] = json!(["admin"]);
    let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(forged.to_string()), parts[2]);
    assert_rejected(&app, &forged, "tampered claims").await;
}

#[actix_web::test]
async fn expired_and_not_yet_valid_tokens_are_401() {
    let app = spawn_app().await;
    let mut c = claims("alice");
    c["exp"] = json!(now() - 60);
    c["nbf"] = json!(now() - 120);
    c["iat"] = json!(now() - 120);
    let p = assert_rejected(&app, &sign(&c), "expired").await;
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");

    let mut c = claims("alice");
    c["nbf"] = json!(now() + 600);
    let p = assert_rejected(&app, &sign(&c), "nbf in the future").await;
    assert!(p["detail"].as_str().unwrap().contains("nbf"), "{p}");

    // Within the 5 s leeway, both are still accepted (clock skew).
    let mut c = claims("alice");
    c["exp"] = json!(now() - 1);
    c["nbf"] = json!(now() + 2);
    let res = images_with(&app, Some(&format!("Bearer {}", sign(&c)))).await;
    assert_eq!(res.status(), 200, "leeway: {}", res.text().await.unwrap());
}

#[actix_web::test]
async fn alg_none_and_other_algorithms_are_401() {
    let app = spawn_app().await;
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let mut c = claims("mallory");
    c["roles"] = json!(["admin"]);
    let body = URL_SAFE_NO_PAD.encode(c.to_string());
    assert_rejected(&app, &format!("{header}.{body}."), "alg none").await;
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"None","typ":"JWT"}"#);
    assert_rejected(&app, &format!("{header}.{body}."), "alg None").await;

    // The same secret, but HS512 / HS384: only the configured HS256 is accepted.
    for alg in [Algorithm::HS512, Algorithm::HS384] {
        let p = assert_rejected(&app, &sign_with(alg, TEST_SECRET, &claims("alice")), "other alg").await;
        assert!(p["detail"].as_str().unwrap().contains("algorithm"), "{alg:?}: {p}");
    }
}

#[actix_web::test]
async fn a_token_without_exp_or_sub_is_401() {
    let app = spawn_app().await;
    let mut c = claims("alice");
    c.as_object_mut().unwrap().remove("exp");
    assert_rejected(&app, &sign(&c), "no exp").await;
    let mut c = claims("alice");
    c.as_object_mut().unwrap().remove("sub");
    assert_rejected(&app, &sign(&c), "no sub").await;
    // exp of the wrong type
    let mut c = claims("alice");
    c["exp"] = json!("tomorrow");
    assert_rejected(&app, &sign(&c), "exp is a string").await;
}

#[actix_web::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let app = spawn_app_with(|s| {
        s.jwt.issuer = Some(ISSUER.into());
        s.jwt.audience = Some(AUDIENCE.into());
    })
    .await;

    // The harness mints with the configured iss/aud: accepted.
    let res = app.get("/v1/images", Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // A hand-built token with the right iss and aud (aud as an array too): accepted.
    for aud in [json!(AUDIENCE), json!(["someone-else", AUDIENCE])] {
        let mut c = claims("alice");
        c["iss"] = json!(ISSUER);
        c["aud"] = aud.clone();
        let res = images_with(&app, Some(&format!("Bearer {}", sign(&c)))).await;
        assert_eq!(res.status(), 200, "aud {aud}: {}", res.text().await.unwrap());
    }

    let mut c = claims("alice");
    c["iss"] = json!("https://evil.example");
    c["aud"] = json!(AUDIENCE);
    let p = assert_rejected(&app, &sign(&c), "wrong iss").await;
    assert!(p["detail"].as_str().unwrap().contains("iss"), "{p}");

    let mut c = claims("alice");
    c["iss"] = json!(ISSUER);
    c["aud"] = json!("another-service");
    let p = assert_rejected(&app, &sign(&c), "wrong aud").await;
    assert!(p["detail"].as_str().unwrap().contains("aud"), "{p}");

    // A configured issuer/audience must be present, not merely not contradicted.
    let mut c = claims("alice");
    c["aud"] = json!(AUDIENCE);
    let p = assert_rejected(&app, &sign(&c), "no iss").await;
    assert!(p["detail"].as_str().unwrap().contains("required claim"), "{p}");
    let mut c = claims("alice");
    c["iss"] = json!(ISSUER);
    assert_rejected(&app, &sign(&c), "no aud").await;
}

#[actix_web::test]
async fn without_configured_issuer_and_audience_any_are_accepted() {
    let app = spawn_app().await;
    let mut c = claims("alice");
    c["iss"] = json!("https://whoever.example");
    c["aud"] = json!("whatever");
    let res = images_with(&app, Some(&format!("Bearer {}", sign(&c)))).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

#[actix_web::test]
async fn roles_are_enforced_with_403() {
    let app = spawn_app().await;
    // A viewer on operator routes.
    let res = app.post("/v1/containers/x/start", Role::Viewer).send().await.unwrap();
    let p = assert_problem(res, 403, "forbidden").await;
    assert!(p["detail"].as_str().unwrap().contains("operator"), "{p}");
    for path in ["/v1/containers/x/stop", "/v1/containers/x/restart", "/v1/containers/x/kill"] {
        let res = app.post(path, Role::Viewer).send().await.unwrap();
        assert_problem(res, 403, "forbidden").await;
    }
    let res = app.delete("/v1/containers/x", Role::Viewer).send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;
    let res = app.delete("/v1/images/busybox", Role::Viewer).send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;

    // A valid token with no known role may not even read.
    for roles in [json!([]), json!(["superuser", "root"]), json!(["Admin"])] {
        let mut c = claims("nobody");
        c["roles"] = roles.clone();
        let res = images_with(&app, Some(&format!("Bearer {}", sign(&c)))).await;
        let p = assert_problem(res, 403, "forbidden").await;
        assert!(p["detail"].as_str().unwrap().contains("no known role"), "{roles}: {p}");
    }
    let mut c = claims("nobody");
    c.as_object_mut().unwrap().remove("roles");
    let res = images_with(&app, Some(&format!("Bearer {}", sign(&c)))).await;
    assert_problem(res, 403, "forbidden").await;

    // Unknown roles next to a known one: the known one counts.
    let mut c = claims("carol");
    c["roles"] = json!(["superuser", "viewer"]);
    let res = images_with(&app, Some(&format!("Bearer {}", sign(&c)))).await;
    assert_eq!(res.status(), 200);
}

#[actix_web::test]
async fn roles_are_ordered_admin_and_operator_include_lower_roles() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("auth-roles");
    run_container(&mut cleanup, &name, "sleep 30", &[]);

    for role in [Role::Viewer, Role::Operator, Role::Admin] {
        let res = app.get(&format!("/v1/containers/{name}"), role).send().await.unwrap();
        assert_eq!(res.status(), 200, "{role} may inspect");
    }
    // Operator and admin may act; start on a running container is a no-op 204.
    for role in [Role::Operator, Role::Admin] {
        let res = app.post(&format!("/v1/containers/{name}/start"), role).send().await.unwrap();
        assert_eq!(res.status(), 204, "{role} may start: {}", res.text().await.unwrap());
    }
    // The highest of several roles counts.
    let mut c = claims("dave");
    c["roles"] = json!(["viewer", "admin"]);
    let res = app
        .client
        .post(app.url(&format!("/v1/containers/{name}/start")))
        .bearer_auth(sign(&c))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = app.delete(&format!("/v1/containers/{name}?force=true"), Role::Admin).send().await.unwrap();
    assert_eq!(res.status(), 204, "admin may remove");
}

#[actix_web::test]
async fn authorization_is_decided_before_the_body_is_read() {
    let app = spawn_app().await;
    // Invalid JSON from a viewer: 403, not 400.
    let res = app
        .post("/v1/images/tag", Role::Viewer)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "forbidden").await;
    // Wrong content type from a viewer: 403, not 415.
    let res = app.post("/v1/images/tag", Role::Viewer).header("content-type", "text/plain").body("x").send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;
    // No token at all: 401, whatever the body.
    let res = app
        .client
        .post(app.url("/v1/images/tag"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "unauthorized").await;
    // And an operator gets the body validated.
    let res = app
        .post("/v1/images/tag", Role::Operator)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "invalid_request").await;
    // A bad query from a viewer on an operator route: still 403.
    let res = app.post("/v1/containers/x/stop?timeout=abc", Role::Viewer).send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;
}

#[actix_web::test]
async fn access_token_query_works_on_event_streams_only() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("auth-qs");
    run_container(&mut cleanup, &name, "echo hello-from-qs", &[]);
    crate::helpers::docker(&["wait", &name]);
    let token = app.token(Role::Viewer);

    let res = app.client.get(app.url(&format!("/v1/containers/{name}/logs?access_token={token}"))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = crate::helpers::read_sse(res).await;
    assert!(
        events.iter().any(|(e, _, d)| e == "log" && d["text"].as_str().unwrap_or("").contains("hello-from-qs")),
        "{events:?}"
    );

    // A bad query token on logs is still rejected.
    let res = app.client.get(app.url(&format!("/v1/containers/{name}/logs?access_token=garbage"))).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;

    // Not on ordinary JSON routes.
    for path in ["/v1/images", "/v1/containers", &format!("/v1/containers/{name}"), &format!("/v1/images/{BASE_IMAGE}")] {
        let res = app.client.get(app.url(&format!("{path}?access_token={token}"))).send().await.unwrap();
        assert_problem(res, 401, "unauthorized").await;
    }
    // Nor for acting on a container.
    let res = app
        .client
        .post(app.url(&format!("/v1/containers/{name}/start?access_token={}", app.token(Role::Admin))))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "unauthorized").await;

    // Nor on routes that merely look like a stream's path: a container named `logs` or
    // `events`, or another method on the logs path.
    let admin = app.token(Role::Admin);
    for path in ["/v1/containers/logs", "/v1/containers/events", "/v1/containers/x/y/logs"] {
        let res = app.client.get(app.url(&format!("{path}?access_token={admin}"))).send().await.unwrap();
        assert_problem(res, 401, "unauthorized").await;
    }
    let res = app.client.delete(app.url(&format!("/v1/containers/logs?force=true&access_token={admin}"))).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
    let res = app.client.post(app.url(&format!("/v1/containers/{name}/logs?access_token={admin}"))).send().await.unwrap();
    assert_problem(res, 401, "unauthorized").await;
}

/// Long-lived streams end when the token that opened them expires.
#[actix_web::test]
async fn event_streams_end_when_their_token_expires() {
    use futures_util::StreamExt;
    let app = crate::helpers::spawn_app().await;
    let token = berth::auth::mint_token(&app.settings.jwt, "short-lived", &[Role::Viewer], std::time::Duration::from_secs(2))
        .unwrap();
    let started = std::time::Instant::now();
    let res = app.client.get(app.url("/v1/events")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ended with its token");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "not before the token expired");
}

/// RS256 and ES256 with a public key file (test-only keys in tests/keys): the configured
/// algorithm verifies; HS256 signed with the public key's bytes (the classic confusion
/// attack) and the other asymmetric algorithm are refused.
#[actix_web::test]
async fn public_key_tokens_rs256_and_es256() {
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
    let claims = json!({"sub": "pk-user", "roles": ["viewer"], "exp": jsonwebtoken::get_current_timestamp() + 600});
    for (alg, public, private) in [
        (Algorithm::RS256, "rs256-public.pem", "rs256-private.pem"),
        (Algorithm::ES256, "es256-public.pem", "es256-private.pem"),
    ] {
        let public_path = format!("{keys}/{public}");
        let settings = berth::config::Settings::from_lookup(|k| match k {
            "BERTH_JWT_PUBLIC_KEY_FILE" => Some(public_path.clone()),
            _ => None,
        })
        .unwrap();
        let berth::config::JwtKey::PublicKey { algorithm, .. } = &settings.jwt.key else { panic!("a public key") };
        assert_eq!(*algorithm, alg, "the algorithm follows the key");
        let key = settings.jwt.key.clone();
        let app = spawn_app_with(|s| s.jwt.key = key).await;

        let pem = std::fs::read(format!("{keys}/{private}")).unwrap();
        let signing = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
            _ => EncodingKey::from_ec_pem(&pem).unwrap(),
        };
        let good = jsonwebtoken::encode(&Header::new(alg), &claims, &signing).unwrap();
        let res = app.client.get(app.url("/v1/jobs")).bearer_auth(&good).send().await.unwrap();
        assert_eq!(res.status(), 200, "{alg:?} token accepted");

        // Key confusion: HS256 keyed with the public key's PEM.
        let public_pem = std::fs::read(&public_path).unwrap();
        let confused = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&public_pem).unwrap())
            .unwrap();
        let res = app.client.get(app.url("/v1/jobs")).bearer_auth(&confused).send().await.unwrap();
        assert_problem(res, 401, "unauthorized").await;
        // A token of the other asymmetric kind.
        let (other_alg, other_private) = match alg {
            Algorithm::RS256 => (Algorithm::ES256, "es256-private.pem"),
            _ => (Algorithm::RS256, "rs256-private.pem"),
        };
        let other_pem = std::fs::read(format!("{keys}/{other_private}")).unwrap();
        let other_key = match other_alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&other_pem).unwrap(),
            _ => EncodingKey::from_ec_pem(&other_pem).unwrap(),
        };
        let other = jsonwebtoken::encode(&Header::new(other_alg), &claims, &other_key).unwrap();
        let res = app.client.get(app.url("/v1/jobs")).bearer_auth(&other).send().await.unwrap();
        assert_problem(res, 401, "unauthorized").await;
    }
}
