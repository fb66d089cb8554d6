//! The OpenAPI document covers every route of the router, and the docs UI is served from the binary.

use std::path::Path;

use crate::helpers::{spawn_app, Backend};

#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = spawn_app(&Backend::Embedded).await;
    let (status, spec) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"), "OpenAPI 3.1: {}", spec["openapi"]);
    let paths = spec["paths"].as_object().unwrap();
    for expected in
        ["/healthz", "/readyz", "/openapi.json", "/api/v1/categories", "/api/v1/products", "/api/v1/products/{id}"]
    {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path.replace("{id}", "1");
        for method in item.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app.client.request(method.clone(), app.url(&concrete)).send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            assert!(
                status != 405 && !body.contains("route_not_found"),
                "{method} {path} is documented but not routed ({status})"
            );
            assert!(status < 500, "{method} {path}: {status} {body}");
            operations += 1;
        }
    }
    assert!(operations >= 7);
}

/// Routes reach the router only through `utoipa_axum::routes!` (which documents them): a plain axum `.route(...)`
/// anywhere in the application code would add an undocumented route, so it fails this test. The exceptions speak
/// other parties' protocols, not ours: `src/simulator/` (WeChat's API under `/__simulator`, dev mode only) and
/// `src/uploads/files.rs` (the embedded bucket, S3's POST-policy protocol under `/files`).
#[test]
fn no_route_bypasses_the_openapi_router() {
    let mut offenders = Vec::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    visit(&src, &mut |file, text| {
        // The embedded bucket (`/files`) speaks S3's protocol, not ours, like the simulators.
        if file.starts_with(src.join("simulator")) || file == src.join("uploads").join("files.rs") {
            return;
        }
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if code.contains(".route(")
                || code.contains(".route_service(")
                || code.contains(".nest(")
                || code.contains(".nest_service(")
            {
                offenders.push(format!("{}:{}: {}", file.display(), n + 1, code));
            }
        }
    });
    assert!(offenders.is_empty(), "routes added outside `routes!`:\n{}", offenders.join("\n"));
}

fn visit(dir: &Path, f: &mut dyn FnMut(&Path, &str)) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            visit(&path, f);
        } else if path.extension().is_some_and(|e| e == "rs") {
            f(&path, &std::fs::read_to_string(&path).unwrap());
        }
    }
}

#[tokio::test]
async fn docs_ui_is_served_from_the_binary() {
    let app = spawn_app(&Backend::Embedded).await;
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let script = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(script.status(), 200);
    assert!(script.bytes().await.unwrap().len() > 100_000, "the UI bundle is built in");
    let config = app.get("/docs/swagger-initializer.js").await.text().await.unwrap();
    assert!(config.contains("/openapi.json"), "{config}");
}

/// Every status the shared machinery can answer is documented, and the shared limits are schema constraints
/// (the fuzz stage, scripts/fuzz.sh, checks the rest against the running server).
#[tokio::test]
async fn the_document_lists_shared_errors_and_limits() {
    let app = spawn_app(&Backend::Embedded).await;
    let (_, spec) = app.get_json("/openapi.json").await;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let has = |status: &str| responses.contains_key(status);
            assert!(has("503"), "{method} {path}: 503");
            if operation["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert!(has("401"), "{method} {path}: 401");
            }
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(has(status), "{method} {path}: {status}");
                }
            }
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                match parameter["name"].as_str().unwrap() {
                    "limit" => assert_eq!(
                        (parameter["schema"]["minimum"].as_i64(), parameter["schema"]["maximum"].as_i64()),
                        (Some(1), Some(100)),
                        "{method} {path}"
                    ),
                    "cursor" => assert!(parameter["schema"]["pattern"].is_string(), "{method} {path}"),
                    "Idempotency-Key" => {
                        assert_eq!(parameter["schema"]["maxLength"], 255, "{method} {path}");
                        assert_eq!(parameter["required"], true, "{method} {path}");
                    }
                    _ => {}
                }
            }
        }
    }
    let order = &spec["components"]["schemas"]["CreateOrder"];
    assert_eq!(order["oneOf"].as_array().map(Vec::len), Some(2), "either items or from_cart: {order}");
    let address = &spec["components"]["schemas"]["NewAddress"];
    assert_eq!(address["properties"]["recipient"]["maxLength"], 32, "{address}");
}
