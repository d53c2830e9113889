//! CORS for a portal on another origin: preflights answered before authentication for
//! listed origins, the headers a portal needs, nothing for other origins.

use berth::auth::Role;

use crate::helpers::{spawn_app, spawn_app_with};

const PORTAL: &str = "http://portal.example:3000";

async fn preflight(app: &crate::helpers::TestApp, origin: &str, path: &str, method: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, app.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header("Access-Control-Request-Headers", "authorization, content-type, idempotency-key")
        .send()
        .await
        .unwrap()
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers().get(name).map(|v| v.to_str().unwrap().to_ascii_lowercase()).unwrap_or_default()
}

#[actix_web::test]
async fn a_listed_origin_gets_its_preflight_answered_before_auth() {
    let app = spawn_app_with(|s| s.cors_origins = vec![PORTAL.into()]).await;
    let res = preflight(&app, PORTAL, "/v1/containers", "POST").await;
    assert!(res.status().is_success(), "preflight without a token: {}", res.status());
    assert_eq!(header(&res, "access-control-allow-origin"), PORTAL);
    let allowed = header(&res, "access-control-allow-headers");
    for h in ["authorization", "content-type", "idempotency-key"] {
        assert!(allowed.contains(h), "{h} in {allowed}");
    }
    assert!(header(&res, "access-control-allow-methods").contains("post"));
    assert!(header(&res, "vary").contains("origin"));
    // The real request: answered with the origin, and the headers a portal reads exposed.
    let res = app.get("/v1/jobs", Role::Viewer).header("Origin", PORTAL).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "access-control-allow-origin"), PORTAL);
    let exposed = header(&res, "access-control-expose-headers");
    for h in ["location", "retry-after", "x-request-id"] {
        assert!(exposed.contains(h), "{h} in {exposed}");
    }
    // A problem answer carries them too, so the page can read why.
    let res = app.client.get(app.url("/v1/jobs")).header("Origin", PORTAL).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(header(&res, "access-control-allow-origin"), PORTAL);
}

#[actix_web::test]
async fn an_unlisted_origin_gets_no_cors_headers() {
    let app = spawn_app_with(|s| s.cors_origins = vec![PORTAL.into()]).await;
    let res = preflight(&app, "http://evil.example", "/v1/containers", "POST").await;
    assert_eq!(header(&res, "access-control-allow-origin"), "", "no allow-origin for an unlisted origin");
    let res = app.get("/v1/jobs", Role::Viewer).header("Origin", "http://evil.example").send().await.unwrap();
    assert_eq!(res.status(), 200, "judged by its token, as any request");
    assert_eq!(header(&res, "access-control-allow-origin"), "");
    // Without BERTH_CORS_ORIGINS nobody gets CORS headers.
    let closed = spawn_app().await;
    let res = preflight(&closed, PORTAL, "/v1/containers", "POST").await;
    assert_eq!(header(&res, "access-control-allow-origin"), "");
}

#[actix_web::test]
async fn a_wildcard_admits_any_origin_without_credentials() {
    let app = spawn_app_with(|s| s.cors_origins = vec!["*".into()]).await;
    let res = preflight(&app, "http://anywhere.example", "/v1/images/pull", "POST").await;
    assert!(res.status().is_success());
    assert_eq!(header(&res, "access-control-allow-origin"), "*");
    assert_eq!(header(&res, "access-control-allow-credentials"), "", "bearer tokens need no credentials mode");
}
