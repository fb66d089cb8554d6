//! Identifiers compare byte for byte on both backends: keys, openids, hashes and numbers that differ only in
//! case are different values (MySQL/MariaDB's default collation would fold them together).

use serde_json::json;
use wxshop::db::{now_ms, Dialect};
use wxshop::users::store::{upsert_wechat_user, WechatIdentity};

use crate::helpers::{backends, spawn_app};

#[tokio::test]
async fn idempotency_keys_differing_in_case_are_two_orders() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let user = app.login("case-keys").await;
        let address_id = app.address_id(&user.access_token).await;
        let body = json!({"items": [{"sku_id": 1, "quantity": 1}], "address_id": address_id});
        let (first, _, a) = app.post_keyed("/api/v1/orders", &body, &user.access_token, "Key-1").await;
        let (second, _, b) = app.post_keyed("/api/v1/orders", &body, &user.access_token, "key-1").await;
        assert_eq!((first, second), (201, 201), "{a} {b}");
        assert_ne!(a["id"], b["id"], "two keys, two orders ({})", backend.name());
        let (replay, _, c) = app.post_keyed("/api/v1/orders", &body, &user.access_token, "key-1").await;
        assert_eq!((replay, &c["id"]), (201, &b["id"]), "the same key is still a replay");
    }
}

#[tokio::test]
async fn openids_differing_in_case_are_two_users() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (db, now) = (&app.state.db, now_ms());
        let login = |openid: &'static str| WechatIdentity {
            app_id: "wx-case",
            openid,
            unionid: None,
            sealed_session_key: "sealed",
        };
        let (upper, created_upper) = upsert_wechat_user(db, &login("oCaseAbC"), now).await.unwrap();
        let (lower, created_lower) = upsert_wechat_user(db, &login("ocaseabc"), now).await.unwrap();
        assert!(created_upper && created_lower, "two new users ({})", backend.name());
        assert_ne!(upper.id, lower.id);
        let (again, created) = upsert_wechat_user(db, &login("ocaseabc"), now).await.unwrap();
        assert_eq!((again.id, created), (lower.id, false));
    }
}

/// Every identifier column is declared binary on MySQL/MariaDB (SQLite compares TEXT bytewise by default).
#[tokio::test]
async fn identifier_columns_have_binary_collations() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        if app.state.db.dialect != Dialect::MySql {
            continue;
        }
        for (table, column) in [
            ("app_user", "openid"),
            ("app_user", "unionid"),
            ("app_user", "app_id"),
            ("refresh_token", "token_hash"),
            ("revocation", "revoked_key"),
            ("shop_order", "order_no"),
            ("idempotency_key", "idem_key"),
            ("idempotency_key", "request_hash"),
            ("flash_purchase", "id"),
            ("flash_purchase", "idem_key"),
        ] {
            let sql = format!(
                "SELECT CASE WHEN collation_name LIKE '%\\_bin' THEN 1 ELSE 0 END AS n FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = '{table}' AND column_name = '{column}'"
            );
            assert_eq!(app.scalar(&sql).await, 1, "{table}.{column} compares byte for byte");
        }
    }
}
