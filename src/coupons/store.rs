//! SQL for coupon campaigns and coupons.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::db::Bounded;
use crate::db::{insert_returning_id, newest_first, Dialect};

pub struct CampaignRow {
    pub id: i64,
    pub title: String,
    pub discount_fen: i64,
    pub min_spend_fen: i64,
    pub total: i64,
    pub issued: i64,
    pub per_user_limit: i64,
    pub starts_at: i64,
    pub ends_at: i64,
    pub valid_days: i64,
    pub stopped_at: Option<i64>,
    pub created_at: i64,
}

const CAMPAIGN_COLUMNS: &str = "id, title, discount_fen, min_spend_fen, total, issued, per_user_limit, starts_at, \
                                ends_at, valid_days, stopped_at, created_at";

fn campaign_row(r: &AnyRow) -> Result<CampaignRow, sqlx::Error> {
    Ok(CampaignRow {
        id: r.try_get("id")?,
        title: r.try_get("title")?,
        discount_fen: r.try_get("discount_fen")?,
        min_spend_fen: r.try_get("min_spend_fen")?,
        total: r.try_get("total")?,
        issued: r.try_get("issued")?,
        per_user_limit: r.try_get("per_user_limit")?,
        starts_at: r.try_get("starts_at")?,
        ends_at: r.try_get("ends_at")?,
        valid_days: r.try_get("valid_days")?,
        stopped_at: r.try_get("stopped_at")?,
        created_at: r.try_get("created_at")?,
    })
}

pub struct NewCampaign<'a> {
    pub title: &'a str,
    pub discount_fen: i64,
    pub min_spend_fen: i64,
    pub total: i64,
    pub per_user_limit: i64,
    pub starts_at: i64,
    pub ends_at: i64,
    pub valid_days: i64,
}

pub async fn insert_campaign(conn: &mut AnyConnection, c: &NewCampaign<'_>, now: i64) -> Result<i64, sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO coupon_campaign (title, discount_fen, min_spend_fen, total, issued, per_user_limit, starts_at, \
         ends_at, valid_days, created_at, updated_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)",
    )
    .bind(c.title.to_owned())
    .bind(c.discount_fen)
    .bind(c.min_spend_fen)
    .bind(c.total)
    .bind(c.per_user_limit)
    .bind(c.starts_at)
    .bind(c.ends_at)
    .bind(c.valid_days)
    .bind(now)
    .bind(now);
    insert_returning_id(conn, query).await
}

/// The campaign; `lock`: FOR UPDATE (MySQL), so claims on one campaign run one at a time.
pub async fn find_campaign(
    conn: &mut AnyConnection,
    dialect: Dialect,
    id: i64,
    lock: bool,
) -> Result<Option<CampaignRow>, sqlx::Error> {
    let lock = if lock { dialect.for_update() } else { "" };
    let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM coupon_campaign WHERE id = ?{lock}");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).bounded().await?;
    row.as_ref().map(campaign_row).transpose()
}

/// Campaigns newest first, after the cursor id; `live_at`: only those claimable or upcoming at that time.
pub async fn list_campaigns(
    pool: &AnyPool,
    live_at: Option<i64>,
    before_id: Option<i64>,
    limit: u32,
) -> Result<Vec<CampaignRow>, sqlx::Error> {
    let select = format!("SELECT {CAMPAIGN_COLUMNS} FROM coupon_campaign");
    let live = live_at.map(|now| ("ends_at > ? AND stopped_at IS NULL", now));
    let rows = newest_first(pool, &select, live, before_id, limit).await?;
    rows.iter().map(campaign_row).collect()
}

pub async fn stop_campaign(conn: &mut AnyConnection, id: i64, now: i64) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE coupon_campaign SET stopped_at = ?, updated_at = ? WHERE id = ? AND stopped_at IS NULL")
            .bind(now)
            .bind(now)
            .bind(id)
            .execute(conn)
            .bounded()
            .await?;
    Ok(done.rows_affected() == 1)
}

/// One more coupon issued, unless the quota is used up.
pub async fn take_from_quota(conn: &mut AnyConnection, id: i64, now: i64) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE coupon_campaign SET issued = issued + 1, updated_at = ? WHERE id = ? AND issued < total")
            .bind(now)
            .bind(id)
            .execute(conn)
            .bounded()
            .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn count_claimed(conn: &mut AnyConnection, campaign_id: i64, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM coupon WHERE coupon_campaign_id = ? AND user_id = ?")
        .bind(campaign_id)
        .bind(user_id)
        .fetch_one(conn)
        .bounded()
        .await?
        .try_get("n")
}

pub struct CouponRow {
    pub id: i64,
    pub campaign_id: i64,
    pub user_id: i64,
    pub title: String,
    pub discount_fen: i64,
    pub min_spend_fen: i64,
    pub status: String,
    pub order_id: Option<i64>,
    pub valid_from: i64,
    pub valid_until: i64,
    pub claimed_at: i64,
}

const COUPON_COLUMNS: &str = "id, coupon_campaign_id, user_id, title, discount_fen, min_spend_fen, status, order_id, \
                              valid_from, valid_until, claimed_at";

fn coupon_row(r: &AnyRow) -> Result<CouponRow, sqlx::Error> {
    Ok(CouponRow {
        id: r.try_get("id")?,
        campaign_id: r.try_get("coupon_campaign_id")?,
        user_id: r.try_get("user_id")?,
        title: r.try_get("title")?,
        discount_fen: r.try_get("discount_fen")?,
        min_spend_fen: r.try_get("min_spend_fen")?,
        status: r.try_get("status")?,
        order_id: r.try_get("order_id")?,
        valid_from: r.try_get("valid_from")?,
        valid_until: r.try_get("valid_until")?,
        claimed_at: r.try_get("claimed_at")?,
    })
}

pub async fn insert_coupon(
    conn: &mut AnyConnection,
    campaign: &CampaignRow,
    user_id: i64,
    valid_until: i64,
    now: i64,
) -> Result<CouponRow, sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO coupon (coupon_campaign_id, user_id, title, discount_fen, min_spend_fen, status, valid_from, \
         valid_until, claimed_at) VALUES (?, ?, ?, ?, ?, 'unused', ?, ?, ?)",
    )
    .bind(campaign.id)
    .bind(user_id)
    .bind(campaign.title.clone())
    .bind(campaign.discount_fen)
    .bind(campaign.min_spend_fen)
    .bind(now)
    .bind(valid_until)
    .bind(now);
    let id = insert_returning_id(&mut *conn, query).await?;
    let data = serde_json::json!({
        "coupon_id": id, "campaign_id": campaign.id, "user_id": user_id, "discount_fen": campaign.discount_fen,
    });
    crate::events::record(conn, crate::events::Event::new("coupon", id, "coupon.claimed", data)).await?;
    Ok(CouponRow {
        id,
        campaign_id: campaign.id,
        user_id,
        title: campaign.title.clone(),
        discount_fen: campaign.discount_fen,
        min_spend_fen: campaign.min_spend_fen,
        status: "unused".into(),
        order_id: None,
        valid_from: now,
        valid_until,
        claimed_at: now,
    })
}

/// The user's coupon (another user's is `None`).
pub async fn find_owned(conn: &mut AnyConnection, user_id: i64, id: i64) -> Result<Option<CouponRow>, sqlx::Error> {
    let sql = format!("SELECT {COUPON_COLUMNS} FROM coupon WHERE id = ? AND user_id = ?");
    let row = sqlx::query(&sql).bind(id).bind(user_id).fetch_optional(conn).bounded().await?;
    row.as_ref().map(coupon_row).transpose()
}

/// The user's coupons, newest first, after the cursor id.
pub async fn list_for_user(
    pool: &AnyPool,
    user_id: i64,
    before_id: Option<i64>,
    limit: u32,
) -> Result<Vec<CouponRow>, sqlx::Error> {
    let mut sql = format!("SELECT {COUPON_COLUMNS} FROM coupon WHERE user_id = ?");
    if before_id.is_some() {
        sql.push_str(" AND id < ?");
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    let mut query = sqlx::query(&sql).bind(user_id);
    if let Some(id) = before_id {
        query = query.bind(id);
    }
    let rows = query.bind(limit as i64 + 1).fetch_all(pool).bounded().await?;
    rows.iter().map(coupon_row).collect()
}

/// Spends the coupon on `order_id`: only one order can, however many try at once.
pub async fn mark_used(
    conn: &mut AnyConnection,
    id: i64,
    user_id: i64,
    order_id: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE coupon SET status = 'used', order_id = ?, used_at = ? \
         WHERE id = ? AND user_id = ? AND status = 'unused' AND valid_from <= ? AND valid_until > ?",
    )
    .bind(order_id)
    .bind(now)
    .bind(id)
    .bind(user_id)
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .bounded()
    .await?;
    let used = done.rows_affected() == 1;
    if used {
        let data = serde_json::json!({ "coupon_id": id, "user_id": user_id, "order_id": order_id });
        crate::events::record(conn, crate::events::Event::new("coupon", id, "coupon.used", data)).await?;
    }
    Ok(used)
}

/// A cancelled order's coupon becomes usable again (until its own expiry).
pub async fn give_back(conn: &mut AnyConnection, order_id: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE coupon SET status = 'unused', order_id = NULL, used_at = NULL WHERE order_id = ? AND status = 'used'",
    )
    .bind(order_id)
    .execute(conn)
    .bounded()
    .await?;
    Ok(done.rows_affected())
}
