//! Load-test data for benchmarks: `wxshop seed-demo --users N --orders M`. Users with WeChat-like openids (and
//! one default address each) and
//! historical orders (paid, shipped, completed or cancelled, never pending, so the timeout sweep leaves them
//! alone and stock is untouched) spread over the last 180 days, with 1 to 3 catalog lines each.
//!
//! Fast: explicit ids and multi-row INSERTs of 1,000 rows, one transaction per batch; on MySQL, from 200,000
//! orders, shop_order's secondary indexes are dropped first and built again at the end (the same definitions).

use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::{Any, QueryBuilder, Row};

use crate::db::Bounded;
use crate::db::{now_ms, Db};

const BATCH: usize = 1_000;
const DAY_MS: i64 = 24 * 3600 * 1000;

pub struct Seeded {
    /// The new users' ids are `first_user_id..first_user_id + users`; each has one default address, with ids
    /// `first_address_id..` in the same order.
    pub first_user_id: i64,
    pub first_address_id: i64,
    pub users: usize,
    pub orders: usize,
    pub items: usize,
}

/// Seeds `users` users and `orders` orders (round-robin over the new users). Refused when orders exist already.
pub async fn seed_load_test_data(db: &Db, app_id: &str, users: usize, orders: usize) -> anyhow::Result<Seeded> {
    seed_load_test_data_deferring(db, app_id, users, orders, DEFER_INDEXES_FROM).await
}

/// [`seed_load_test_data`], building shop_order's secondary indexes after the rows (MySQL) from `defer_from`
/// orders on.
pub async fn seed_load_test_data_deferring(
    db: &Db,
    app_id: &str,
    users: usize,
    orders: usize,
    defer_from: usize,
) -> anyhow::Result<Seeded> {
    let existing: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM shop_order").fetch_one(&db.pool).bounded().await?.try_get("n")?;
    if existing > 0 && orders > 0 {
        anyhow::bail!("the database already has {existing} orders; seed load-test data into a fresh database");
    }
    if users == 0 && orders > 0 {
        anyhow::bail!("orders need users: give --users too");
    }
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_124);
    let skus: Vec<(i64, i64, String, String, i64)> = sqlx::query(
        "SELECT s.id, s.product_id, p.title, s.title AS sku_title, s.price_fen FROM sku s JOIN product p ON p.id = s.product_id",
    )
    .fetch_all(&db.pool)
    .bounded().await?
    .iter()
    .map(|r| Ok((r.try_get("id")?, r.try_get("product_id")?, r.try_get("title")?, r.try_get("sku_title")?, r.try_get("price_fen")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    if skus.is_empty() && orders > 0 {
        anyhow::bail!("the catalog is empty: seed it first (`wxshop seed-demo` without options)");
    }
    let now = now_ms();
    let first_user = next_id(db, "app_user").await?;
    let first_address = next_id(db, "address").await?;
    for start in (0..users).step_by(BATCH) {
        let end = (start + BATCH).min(users);
        let mut sql = QueryBuilder::<Any>::new(
            "INSERT INTO app_user (id, app_id, openid, nickname, status, created_at, updated_at, last_login_at) ",
        );
        sql.push_values(start..end, |mut row, i| {
            row.push_bind(first_user + i as i64)
                .push_bind(app_id.to_owned())
                .push_bind(format!("seed-openid-{:010}", first_user + i as i64))
                .push_bind(format!("用户{i}"))
                .push_bind("active")
                .push_bind(now)
                .push_bind(now)
                .push_bind(now);
        });
        let mut tx = db.begin_write().await?;
        sql.build().execute(&mut *tx).bounded().await?;
        let mut sql = QueryBuilder::<Any>::new(
            "INSERT INTO address (id, user_id, recipient, phone, province, city, district, detail, is_default, \
             created_at, updated_at) ",
        );
        sql.push_values(start..end, |mut row, i| {
            row.push_bind(first_address + i as i64)
                .push_bind(first_user + i as i64)
                .push_bind(format!("用户{i}"))
                .push_bind("13800000000")
                .push_bind("浙江省")
                .push_bind("杭州市")
                .push_bind("西湖区")
                .push_bind("文三路 1 号")
                .push_bind(1_i64)
                .push_bind(now)
                .push_bind(now);
        });
        sql.build().execute(&mut *tx).bounded().await?;
        tx.commit().bounded().await?;
    }

    let address =
        json!({"id": 0, "recipient": "测试用户", "phone": "13800000000", "province": "浙江省", "city": "杭州市",
                         "district": "西湖区", "detail": "文三路 1 号", "is_default": true})
        .to_string();
    let statuses = ["completed", "completed", "shipped", "paid", "cancelled"];
    let first_order = next_id(db, "shop_order").await?;
    // A large seed on MySQL: shop_order's secondary indexes are built after the rows, by one sort each, instead of
    // millions of random B-tree inserts (5M orders: most of an hour with them in place on a small buffer pool).
    let deferred = if db.dialect == crate::db::Dialect::MySql && orders >= defer_from {
        drop_secondary_indexes(db).await?
    } else {
        Vec::new()
    };
    // The rows, in an async block so that the indexes are built again whatever happens to them.
    let inserted = async {
        let mut items_total = 0;
        for start in (0..orders).step_by(BATCH) {
            let end = (start + BATCH).min(orders);
            let mut order_rows = Vec::with_capacity(end - start);
            let mut item_rows = Vec::new();
            for i in start..end {
                let id = first_order + i as i64;
                let user_id = first_user + (i % users) as i64;
                let created_at = now - rng.random_range(0..180 * DAY_MS);
                let mut total = 0;
                for _ in 0..rng.random_range(1..=3) {
                    let (sku_id, product_id, title, sku_title, price) = &skus[rng.random_range(0..skus.len())];
                    let quantity: i64 = rng.random_range(1..=3);
                    total += price * quantity;
                    item_rows.push((id, *sku_id, *product_id, title.clone(), sku_title.clone(), *price, quantity));
                }
                let status = statuses[rng.random_range(0..statuses.len())];
                order_rows.push((id, format!("S{:021}", id), user_id, status, total, created_at));
            }
            items_total += item_rows.len();
            let mut tx = db.begin_write().await?;
            let mut sql = QueryBuilder::<Any>::new(
                "INSERT INTO shop_order (id, order_no, user_id, status, total_fen, address, remark, pay_deadline, created_at, updated_at) ",
            );
            sql.push_values(&order_rows, |mut row, (id, order_no, user_id, status, total, created_at)| {
                row.push_bind(*id)
                    .push_bind(order_no.clone())
                    .push_bind(*user_id)
                    .push_bind(*status)
                    .push_bind(*total)
                    .push_bind(address.clone())
                    .push_bind("")
                    .push_bind(created_at + 30 * 60 * 1000)
                    .push_bind(*created_at)
                    .push_bind(*created_at);
            });
            sql.build().execute(&mut *tx).bounded().await?;
            let mut sql = QueryBuilder::<Any>::new(
                "INSERT INTO order_item (order_id, sku_id, product_id, title, sku_title, price_fen, quantity) ",
            );
            sql.push_values(&item_rows, |mut row, (order_id, sku_id, product_id, title, sku_title, price, quantity)| {
                row.push_bind(*order_id)
                    .push_bind(*sku_id)
                    .push_bind(*product_id)
                    .push_bind(title.clone())
                    .push_bind(sku_title.clone())
                    .push_bind(*price)
                    .push_bind(*quantity);
            });
            sql.build().execute(&mut *tx).bounded().await?;
            let mut sql =
                QueryBuilder::<Any>::new("INSERT INTO order_event (order_id, from_status, to_status, actor, created_at) ");
            sql.push_values(&order_rows, |mut row, (id, _, _, status, _, created_at)| {
                row.push_bind(*id)
                    .push_bind(None::<String>)
                    .push_bind(*status)
                    .push_bind("system:seed")
                    .push_bind(*created_at);
            });
            sql.build().execute(&mut *tx).bounded().await?;
            tx.commit().bounded().await?;
        }
        Ok::<usize, anyhow::Error>(items_total)
    }
    .await;
    if !deferred.is_empty() {
        let adds: Vec<String> =
            deferred.iter().map(|(name, columns)| format!("ADD INDEX {name} ({columns})")).collect();
        let mut conn = db.unbounded_connection().await?;
        sqlx::query(&format!("ALTER TABLE shop_order {}", adds.join(", "))).execute(&mut *conn).await?;
        conn.detach();
        tracing::info!(indexes = deferred.len(), elapsed_ms = started.elapsed().as_millis() as u64, "indexes built");
    }
    let items_total = inserted?;
    tracing::info!(
        users,
        orders,
        items = items_total,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "load-test data seeded"
    );
    Ok(Seeded { first_user_id: first_user, first_address_id: first_address, users, orders, items: items_total })
}

/// From this many orders, a MySQL seed builds shop_order's secondary indexes after the rows.
pub const DEFER_INDEXES_FROM: usize = 200_000;

/// Drops shop_order's non-unique secondary indexes and returns them (name, column list) to be built again.
async fn drop_secondary_indexes(db: &Db) -> anyhow::Result<Vec<(String, String)>> {
    let rows = sqlx::query(
        "SELECT INDEX_NAME AS name, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX SEPARATOR ', ') AS columns \
         FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'shop_order' \
         AND NON_UNIQUE = 1 GROUP BY INDEX_NAME ORDER BY INDEX_NAME",
    )
    .fetch_all(&db.pool)
    .await?;
    let indexes: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            // GROUP_CONCAT comes back as a BLOB through the Any driver.
            let columns: Vec<u8> = r.try_get("columns")?;
            Ok((r.try_get("name")?, String::from_utf8(columns)?))
        })
        .collect::<anyhow::Result<_>>()?;
    if !indexes.is_empty() {
        let drops: Vec<String> = indexes.iter().map(|(name, _)| format!("DROP INDEX {name}")).collect();
        let mut conn = db.unbounded_connection().await?;
        sqlx::query(&format!("ALTER TABLE shop_order {}", drops.join(", "))).execute(&mut *conn).await?;
        conn.detach();
    }
    Ok(indexes)
}

async fn next_id(db: &Db, table: &str) -> anyhow::Result<i64> {
    let row =
        sqlx::query(&format!("SELECT COALESCE(MAX(id), 0) AS m FROM {table}")).fetch_one(&db.pool).bounded().await?;
    Ok(row.try_get::<i64, _>("m")? + 1)
}

/// `user_id token address_id` (or, with `orders`, `user_id token order_id…` with up to 10 of the user's orders)
/// for the first `count` users with an address: load-generator input, signed with the configured key.
pub async fn dev_tokens(
    db: &Db,
    auth: &crate::config::AuthConfig,
    count: usize,
    orders: bool,
) -> anyhow::Result<Vec<String>> {
    let rows =
        sqlx::query("SELECT user_id, MIN(id) AS address_id FROM address GROUP BY user_id ORDER BY user_id LIMIT ?")
            .bind(count as i64)
            .fetch_all(&db.pool)
            .bounded()
            .await?;
    let users: Vec<(i64, i64)> = rows
        .iter()
        .map(|r| Ok((r.try_get("user_id")?, r.try_get("address_id")?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let mut owned: std::collections::HashMap<i64, Vec<i64>> = std::collections::HashMap::new();
    if orders {
        let (first, last) = (users.first().map_or(0, |u| u.0), users.last().map_or(0, |u| u.0));
        // Ten per user, picked by the database (a user of a 5M-order history has hundreds).
        let mut scan = db.unbounded_connection().await?;
        let rows = sqlx::query(
            "SELECT user_id, id FROM (SELECT user_id, id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY id) AS n \
             FROM shop_order WHERE user_id BETWEEN ? AND ?) t WHERE n <= 10 ORDER BY user_id, id",
        )
        .bind(first)
        .bind(last)
        // Not bounded by the request deadline: a command-line scan of every order (5M: longer than a request).
        .fetch_all(&mut *scan)
        .await?;
        scan.detach();
        for row in rows {
            let ids = owned.entry(row.try_get("user_id")?).or_default();
            if ids.len() < 10 {
                ids.push(row.try_get("id")?);
            }
        }
    }
    let keys = crate::auth::tokens::TokenKeys::new(auth);
    let now = crate::auth::tokens::now_secs();
    let mut lines = Vec::with_capacity(users.len());
    for (user_id, address_id) in users {
        let token = keys.issue(user_id, crate::auth::USER_AUDIENCE, 0, None, now)?.token;
        if orders {
            let ids = owned.get(&user_id).map(Vec::as_slice).unwrap_or_default();
            if !ids.is_empty() {
                let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
                lines.push(format!("{user_id} {token} {}", ids.join(" ")));
            }
        } else {
            lines.push(format!("{user_id} {token} {address_id}"));
        }
    }
    Ok(lines)
}
