//! The staff app's files as the api serves them (CONTRACT §6): embedded,
//! with a strict policy; screens are `index.html`, missing files are 404.
#![allow(clippy::unwrap_used)]

use sqlx::PgPool;
use tickiti_testkit::TestApp;

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn the_app_is_served_with_a_strict_policy(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let get = |path: &str| app.client.get(app.url(path)).send();

    let index = get("/").await.unwrap();
    assert_eq!(index.status(), 200);
    let csp = index.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("connect-src 'self' ws://"), "{csp}");
    assert!(!csp.contains("unsafe-"), "{csp}");
    assert!(
        index.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(index.headers()["cache-control"], "no-cache");
    let etag = index.headers()["etag"].to_str().unwrap().to_owned();
    let page = index.text().await.unwrap();
    assert!(page.contains("<div id=\"app\">"), "{page}");

    // A screen of the app is the same page, routed in the browser.
    let screen = get("/tickets/0190a5c8-0000-7000-8000-000000000000")
        .await
        .unwrap();
    assert_eq!(screen.status(), 200);
    assert_eq!(screen.text().await.unwrap(), page);

    let script = get("/vendor/preact.module.js").await.unwrap();
    assert_eq!(script.status(), 200);
    let kind = script.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.contains("javascript"), "{kind}");
    let favicon = get("/favicon.svg").await.unwrap();
    assert_eq!(favicon.status(), 200);
    assert!(
        favicon.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("image/svg+xml")
    );

    // Unchanged since the last load: 304, no body.
    let again = app
        .client
        .get(app.url("/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // A missing file is a 404 problem, not the page; so is an unknown API route.
    for path in ["/nope.js", "/vendor/missing.module.js", "/api/v1/nope"] {
        let reply = tickiti_testkit::Reply::read(get(path).await.unwrap()).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json"),
            "{path}"
        );
        assert_eq!(reply.code(), "ROUTE_NOT_FOUND", "{path}");
    }
    // Only reading goes to the app: a POST to a screen's path is the API's refusal.
    let post = app.client.post(app.url("/tickets")).send().await.unwrap();
    assert_eq!(post.status(), 404);
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn the_api_reference_is_served_with_its_viewer_and_no_cdn(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let get = |path: &str| app.client.get(app.url(path)).send();

    let docs = get("/api/docs").await.unwrap();
    assert_eq!(docs.status(), 200);
    let csp = docs.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!csp.contains("unsafe-"), "{csp}");
    let page = docs.text().await.unwrap();
    assert!(page.contains("/api/v1/openapi.json"), "{page}");
    // Everything the page loads comes from this origin.
    assert!(!page.contains("https://"), "{page}");
    for asset in [
        "/vendor/swagger-ui/swagger-ui-bundle.js",
        "/vendor/swagger-ui/swagger-ui.css",
        "/docs/docs.js",
    ] {
        assert!(page.contains(asset), "{asset} in {page}");
        assert_eq!(get(asset).await.unwrap().status(), 200, "{asset}");
    }
    // The document it renders is public, like the page.
    let spec = get("/api/v1/openapi.json").await.unwrap();
    assert_eq!(spec.status(), 200);
    let spec: serde_json::Value = spec.json().await.unwrap();
    assert_eq!(spec["info"]["title"], "Tickiti API", "{}", spec["info"]);
    assert_eq!(spec["info"]["license"]["name"], "AGPL-3.0-or-later");
    for scheme in ["bearer", "session"] {
        assert!(
            spec["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
}

/// The OpenAPI document as a snapshot (insta): any change to the API's
/// routes, schemas or limits shows as a reviewed diff in
/// `tests/snapshots/`. After an intended change: `cargo insta review`, or
/// `INSTA_UPDATE=always cargo nextest run -p tickiti-api -E 'test(openapi_document)'`.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn the_openapi_document_changes_only_on_purpose(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let spec: serde_json::Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    insta::assert_json_snapshot!("openapi", spec, {
        // The crate's version moves with every release, not with the API.
        ".info.version" => "[version]"
    });
}
