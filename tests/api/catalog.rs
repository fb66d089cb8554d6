//! The catalog read API on the seeded demo catalog.

use std::collections::HashSet;

use serde_json::Value;

use std::time::Duration;

use wxshop::catalog::service::product_cache_key;

use crate::helpers::{backends, scale_out_backend, spawn_app, spawn_app_with, Backend, TestApp};

/// Walks every page of `path` (which has no cursor yet) and returns the items in order.
async fn walk(app: &TestApp, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let separator = if path.contains('?') { '&' } else { '?' };
    for _ in 0..1_000 {
        let page_path = match &cursor {
            Some(c) => format!("{path}{separator}cursor={c}"),
            None => path.to_owned(),
        };
        let (status, body) = app.get_json(&page_path).await;
        assert_eq!(status, 200, "{page_path}: {body}");
        items.extend(body["items"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
    panic!("pagination of {path} did not end");
}

fn ids(items: &[Value]) -> Vec<i64> {
    items.iter().map(|i| i["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn categories_are_listed_in_display_order() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (status, body) = app.get_json("/api/v1/categories").await;
        assert_eq!(status, 200);
        let items = body["items"].as_array().unwrap();
        assert_eq!(items.len(), 5);
        let orders: Vec<i64> = items.iter().map(|c| c["sort_order"].as_i64().unwrap()).collect();
        assert!(orders.windows(2).all(|w| w[0] <= w[1]), "{orders:?}");
        assert_eq!(items[0]["name"], "茶饮");
    }
}

#[tokio::test]
async fn walking_all_cursors_returns_every_product_exactly_once_in_order() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (_, everything) = app.get_json("/api/v1/products?limit=100").await;
        let expected = ids(everything["items"].as_array().unwrap());
        assert_eq!(expected.len(), 30, "the demo catalog has 30 products");
        assert!(everything["next_cursor"].is_null());

        for limit in [1, 7, 10, 29, 30] {
            let walked = ids(&walk(&app, &format!("/api/v1/products?limit={limit}")).await);
            assert_eq!(walked, expected, "limit {limit}");
        }
        // Newest first, no duplicates.
        assert!(expected.windows(2).all(|w| w[0] > w[1]));
        assert_eq!(expected.iter().collect::<HashSet<_>>().len(), expected.len());

        // The default page size is 20.
        let (_, first) = app.get_json("/api/v1/products").await;
        assert_eq!(first["items"].as_array().unwrap().len(), 20);
        assert!(first["next_cursor"].is_string());
    }
}

#[tokio::test]
async fn filters_by_category_and_title_across_pages() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (_, categories) = app.get_json("/api/v1/categories").await;
        let mut seen = HashSet::new();
        for category in categories["items"].as_array().unwrap() {
            let id = category["id"].as_i64().unwrap();
            let items = walk(&app, &format!("/api/v1/products?category_id={id}&limit=4")).await;
            assert_eq!(items.len(), 6, "category {id}");
            assert!(items.iter().all(|p| p["category_id"].as_i64() == Some(id)));
            seen.extend(ids(&items));
        }
        assert_eq!(seen.len(), 30);

        // A title search returns exactly the titles containing the text, computed here from the full list.
        let (_, all) = app.get_json("/api/v1/products?limit=100").await;
        let all = all["items"].as_array().unwrap();
        let with_tea: Vec<i64> = all
            .iter()
            .filter(|p| p["title"].as_str().unwrap().contains('茶'))
            .map(|p| p["id"].as_i64().unwrap())
            .collect();
        assert!(!with_tea.is_empty());
        let found = ids(&walk(&app, "/api/v1/products?q=%E8%8C%B6&limit=2").await);
        assert_eq!(found, with_tea);

        // LIKE wildcards in the search text are literal.
        let (_, none) = app.get_json("/api/v1/products?q=%25").await;
        assert_eq!(none["items"].as_array().unwrap().len(), 0, "`%` must not match everything");
        let (_, none) = app.get_json("/api/v1/products?q=_").await;
        assert_eq!(none["items"].as_array().unwrap().len(), 0, "`_` must not match everything");

        // An unknown category is an empty list.
        let (status, body) = app.get_json("/api/v1/products?category_id=999999").await;
        assert_eq!(status, 200);
        assert_eq!(body["items"].as_array().unwrap().len(), 0);
        assert!(body["next_cursor"].is_null());
    }
}

#[tokio::test]
async fn product_detail_has_skus_with_prices_in_fen() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (_, list) = app.get_json("/api/v1/products?limit=100").await;
        for summary in list["items"].as_array().unwrap() {
            let id = summary["id"].as_i64().unwrap();
            let (status, product) = app.get_json(&format!("/api/v1/products/{id}")).await;
            assert_eq!(status, 200, "{product}");
            assert_eq!(product["title"], summary["title"]);
            let skus = product["skus"].as_array().unwrap();
            assert!(!skus.is_empty());
            for sku in skus {
                assert!(sku["id"].is_i64() && sku["title"].is_string() && sku["attributes"].is_object(), "{sku}");
                assert!(sku["price_fen"].as_i64().unwrap() > 0, "money is integer fen: {sku}");
                assert!(sku["stock"].as_i64().unwrap() >= 0);
            }
            let min_price = skus.iter().map(|s| s["price_fen"].as_i64().unwrap()).min();
            assert_eq!(product["price_fen"].as_i64(), min_price);
            assert_eq!(summary["price_fen"].as_i64(), min_price);
            assert_eq!(summary["image_url"], product["image_urls"][0]);
            assert!(product["created_at"].as_str().unwrap().ends_with('Z'));
        }
    }
}

#[tokio::test]
async fn unknown_product_is_404_product_not_found() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        for id in ["0", "999999", "-1", "9223372036854775807"] {
            let (status, body) = app.get_json(&format!("/api/v1/products/{id}")).await;
            assert_eq!(status, 404, "{id}");
            assert_eq!(body["code"], "product_not_found");
            assert!(body["message"].is_string());
        }
    }
}

#[tokio::test]
async fn bad_parameters_are_400_invalid_parameter() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        for path in [
            "/api/v1/products/abc",
            "/api/v1/products/1.5",
            "/api/v1/products/99999999999999999999",
            "/api/v1/products?limit=abc",
            "/api/v1/products?category_id=tea",
            "/api/v1/products?cursor=not-a-cursor",
            "/api/v1/products?cursor=djE6YWJj",
        ] {
            let (status, body) = app.get_json(path).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert_eq!(body["code"], "invalid_parameter", "{path}");
        }
    }
}

#[tokio::test]
async fn out_of_range_values_are_422_naming_the_fields() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        for (path, fields) in [
            ("/api/v1/products?limit=0", vec!["limit"]),
            ("/api/v1/products?limit=101", vec!["limit"]),
            ("/api/v1/products?limit=-3", vec!["limit"]),
            ("/api/v1/products?category_id=0", vec!["category_id"]),
        ] {
            let (status, body) = app.get_json(path).await;
            assert_eq!(status, 422, "{path}: {body}");
            assert_eq!(body["code"], "validation_failed");
            let named: Vec<&str> =
                body["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
            assert_eq!(named, fields, "{path}");
        }
        let long = "茶".repeat(65);
        let (status, body) = app.get_json(&format!("/api/v1/products?limit=1000&q={long}")).await;
        assert_eq!(status, 422);
        let named: Vec<&str> =
            body["fields"].as_array().unwrap().iter().map(|f| f["field"].as_str().unwrap()).collect();
        assert_eq!(named, ["limit", "q"]);
    }
}

/// `wxshop serve` on MariaDB + Redis serves the same catalog as the embedded default.
#[tokio::test]
async fn both_backends_serve_the_same_catalog() {
    let Some(scale_out) = scale_out_backend() else {
        eprintln!("no scale-out backend configured; nothing to compare");
        return;
    };
    let embedded = spawn_app(&Backend::Embedded).await;
    let scaled = spawn_app(&scale_out).await;
    let strip_times = |mut v: Value| {
        if let Some(o) = v.as_object_mut() {
            o.remove("created_at");
            o.remove("updated_at");
        }
        v
    };
    assert_eq!(embedded.get_json("/api/v1/categories").await, scaled.get_json("/api/v1/categories").await);
    let a = walk(&embedded, "/api/v1/products?limit=8").await;
    let b = walk(&scaled, "/api/v1/products?limit=8").await;
    assert_eq!(a, b);
    for id in ids(&a) {
        let (_, x) = embedded.get_json(&format!("/api/v1/products/{id}")).await;
        let (_, y) = scaled.get_json(&format!("/api/v1/products/{id}")).await;
        assert_eq!(strip_times(x), strip_times(y), "product {id}");
    }
}

async fn rename_product(app: &TestApp, id: i64, title: &str) {
    sqlx::query("UPDATE product SET title = ? WHERE id = ?")
        .bind(title)
        .bind(id)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
}

async fn title_of(app: &TestApp, id: i64) -> String {
    let (status, body) = app.get_json(&format!("/api/v1/products/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["title"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn product_detail_is_cached_until_ttl_or_invalidation() {
    for backend in backends() {
        let app = spawn_app_with(&backend, |c| c.cache.catalog_ttl_secs = 1).await;
        let original = title_of(&app, 3).await;
        rename_product(&app, 3, "改名之后").await;
        assert_eq!(title_of(&app, 3).await, original, "served from the cache");
        if let Some(redis) = &app.state.redis {
            let mut conn = redis.conn();
            let ttl: i64 =
                redis::cmd("PTTL").arg(redis.key(&product_cache_key(3))).query_async(&mut conn).await.unwrap();
            assert!((1..=1_100).contains(&ttl), "cached in Redis under the test prefix with the TTL, got {ttl}");
        }
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        assert_eq!(title_of(&app, 3).await, "改名之后", "expired after the TTL (+10% jitter at most)");

        // Invalidation makes a change visible at once.
        rename_product(&app, 3, "再次改名").await;
        assert_eq!(title_of(&app, 3).await, "改名之后");
        app.state.cache.invalidate(&product_cache_key(3)).await;
        assert_eq!(title_of(&app, 3).await, "再次改名");
    }
}

#[tokio::test]
async fn a_zero_ttl_turns_the_catalog_cache_off() {
    for backend in backends() {
        let app = spawn_app_with(&backend, |c| c.cache.catalog_ttl_secs = 0).await;
        title_of(&app, 5).await;
        rename_product(&app, 5, "立即可见").await;
        assert_eq!(title_of(&app, 5).await, "立即可见");
    }
}

/// In scale-out the cache lives in Redis: an invalidation through one instance holds on every instance.
#[tokio::test]
async fn invalidation_holds_across_instances_sharing_redis() {
    let Some(scale_out) = scale_out_backend() else {
        return;
    };
    let a = spawn_app(&scale_out).await;
    let b = a.spawn_peer().await;
    let original = title_of(&a, 7).await;
    assert_eq!(title_of(&b, 7).await, original);
    rename_product(&a, 7, "跨实例").await;
    assert_eq!(title_of(&b, 7).await, original, "B reads the shared cache entry");
    a.state.cache.invalidate(&product_cache_key(7)).await;
    assert_eq!(title_of(&b, 7).await, "跨实例");
}

/// A failing Redis degrades the cache to a miss; catalog reads keep working from the database.
#[tokio::test]
async fn catalog_reads_survive_a_redis_outage() {
    let Some(Backend::ScaleOut { server_url, .. }) = scale_out_backend() else {
        return;
    };
    let dead_redis = format!("redis://{}", crate::helpers::closed_port_address());
    let backend = Backend::ScaleOut { server_url, redis_url: None };
    let app = spawn_app_with(&backend, |c| c.redis_url = Some(wxshop::config::DsnUrl::new(dead_redis))).await;
    let (status, body) = app.get_json("/api/v1/products/3").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app.get_json("/api/v1/categories").await;
    assert_eq!(status, 200);
}
