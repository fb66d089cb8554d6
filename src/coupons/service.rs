//! Coupon rules: creating and stopping campaigns, claiming (quota and per-user limit decided under the campaign's
//! row lock), listing, and the checks an order makes before it spends a coupon.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::coupons::store::{self, CampaignRow, CouponRow, NewCampaign};
use crate::db::Bounded;
use crate::db::{now_ms, retry_transient, rfc3339};
use crate::domain::{check_window, cut_page, id_page, time_field, Page};
use crate::error::{AppError, FieldError};
use crate::soldout::Kind;
use crate::state::App;

const DAY_MS: i64 = 24 * 3600 * 1_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaign {
    /// 1 to 64 characters, e.g. "满100减10".
    pub title: String,
    pub discount_fen: i64,
    /// The order total (before the discount) must reach this.
    pub min_spend_fen: i64,
    /// How many coupons can be claimed in all.
    pub total: i64,
    pub per_user_limit: i64,
    /// RFC 3339.
    pub starts_at: String,
    pub ends_at: String,
    /// A claimed coupon can be used for this many days.
    pub valid_days: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Campaign {
    pub id: i64,
    pub title: String,
    pub discount_fen: i64,
    pub min_spend_fen: i64,
    pub total: i64,
    pub issued: i64,
    pub remaining: i64,
    pub per_user_limit: i64,
    pub starts_at: String,
    pub ends_at: String,
    pub valid_days: i64,
    /// `upcoming`, `active`, `exhausted`, `ended` or `stopped`.
    pub status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Coupon {
    pub id: i64,
    pub campaign_id: i64,
    pub title: String,
    pub discount_fen: i64,
    pub min_spend_fen: i64,
    /// `unused`, `used` or `expired`.
    pub status: String,
    /// The order that used it.
    pub order_id: Option<i64>,
    pub valid_from: String,
    pub valid_until: String,
    pub claimed_at: String,
}

fn campaign(row: CampaignRow, now: i64) -> Campaign {
    let status = if row.stopped_at.is_some() {
        "stopped"
    } else if now >= row.ends_at {
        "ended"
    } else if now < row.starts_at {
        "upcoming"
    } else if row.issued >= row.total {
        "exhausted"
    } else {
        "active"
    };
    Campaign {
        id: row.id,
        title: row.title,
        discount_fen: row.discount_fen,
        min_spend_fen: row.min_spend_fen,
        total: row.total,
        issued: row.issued,
        remaining: row.total - row.issued,
        per_user_limit: row.per_user_limit,
        starts_at: rfc3339(row.starts_at),
        ends_at: rfc3339(row.ends_at),
        valid_days: row.valid_days,
        status: status.into(),
    }
}

fn coupon(row: CouponRow, now: i64) -> Coupon {
    let status = if row.status == "unused" && row.valid_until <= now { "expired".into() } else { row.status };
    Coupon {
        id: row.id,
        campaign_id: row.campaign_id,
        title: row.title,
        discount_fen: row.discount_fen,
        min_spend_fen: row.min_spend_fen,
        status,
        order_id: row.order_id,
        valid_from: rfc3339(row.valid_from),
        valid_until: rfc3339(row.valid_until),
        claimed_at: rfc3339(row.claimed_at),
    }
}

pub async fn create_campaign(app: &App, input: CreateCampaign) -> Result<Campaign, AppError> {
    let title = input.title.trim();
    let mut fields = Vec::new();
    crate::domain::check_human_text("title", title, 64, true, &mut fields);
    if !(1..=100_000_000).contains(&input.discount_fen) {
        fields.push(FieldError::new("discount_fen", "1 to 100000000"));
    }
    if !(0..=100_000_000).contains(&input.min_spend_fen) {
        fields.push(FieldError::new("min_spend_fen", "0 to 100000000"));
    } else if input.discount_fen > input.min_spend_fen {
        // An order must always cost more than its discount; a no-threshold coupon sets min_spend_fen = discount_fen.
        fields.push(FieldError::new("discount_fen", "must not exceed min_spend_fen"));
    }
    if !(1..=10_000_000).contains(&input.total) {
        fields.push(FieldError::new("total", "1 to 10000000"));
    }
    if !(1..=100).contains(&input.per_user_limit) {
        fields.push(FieldError::new("per_user_limit", "1 to 100"));
    }
    if !(1..=366).contains(&input.valid_days) {
        fields.push(FieldError::new("valid_days", "1 to 366"));
    }
    let starts_at = time_field("starts_at", &input.starts_at, &mut fields);
    let ends_at = time_field("ends_at", &input.ends_at, &mut fields);
    let now = now_ms();
    check_window(starts_at, ends_at, now, &mut fields);
    let (starts_at, ends_at) = match (starts_at, ends_at) {
        (Some(starts_at), Some(ends_at)) if fields.is_empty() => (starts_at, ends_at),
        _ => return Err(AppError::Validation(fields)),
    };
    let new = NewCampaign {
        title,
        discount_fen: input.discount_fen,
        min_spend_fen: input.min_spend_fen,
        total: input.total,
        per_user_limit: input.per_user_limit,
        starts_at,
        ends_at,
        valid_days: input.valid_days,
    };
    let mut tx = app.db.begin_write().await?;
    let id = store::insert_campaign(&mut tx, &new, now).await?;
    let row = store::find_campaign(&mut tx, app.db.dialect, id, false).await?.ok_or(AppError::not_found("campaign"))?;
    tx.commit().bounded().await?;
    Ok(campaign(row, now))
}

/// Campaigns, newest first: all of them (`live_only = false`, back office) or those not ended or stopped.
pub async fn list_campaigns(
    app: &App,
    live_only: bool,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<Page<Campaign>, AppError> {
    let (limit, before) = id_page(limit, cursor)?;
    let now = now_ms();
    let rows = store::list_campaigns(&app.db.pool, live_only.then_some(now), before, limit).await?;
    let (rows, next_cursor) = cut_page(rows, limit, |r| vec![r.id]);
    Ok(Page { items: rows.into_iter().map(|r| campaign(r, now)).collect(), next_cursor })
}

pub async fn stop_campaign(app: &App, id: i64) -> Result<Campaign, AppError> {
    let now = now_ms();
    let mut tx = app.db.begin_write().await?;
    let row = store::find_campaign(&mut tx, app.db.dialect, id, true).await?.ok_or(AppError::not_found("campaign"))?;
    if row.stopped_at.is_some() {
        return Err(AppError::conflict("campaign_stopped", "the campaign is stopped already"));
    }
    store::stop_campaign(&mut tx, id, now).await?;
    let row = store::find_campaign(&mut tx, app.db.dialect, id, false).await?.ok_or(AppError::not_found("campaign"))?;
    tx.commit().bounded().await?;
    Ok(campaign(row, now))
}

/// Claims one coupon: 409 `exhausted`, `limit_reached`, `not_started` or `ended`.
pub async fn claim(app: &App, user_id: i64, campaign_id: i64) -> Result<Coupon, AppError> {
    if app.sold_out.is_sold_out(Kind::CouponCampaign, campaign_id) {
        metrics::counter!("coupon_claims_total", "outcome" => "exhausted_fast").increment(1);
        return Err(exhausted());
    }
    let result = retry_transient(|| async {
        let now = now_ms();
        let mut tx = app.db.begin_write().await?;
        // The campaign row stays locked until commit: claims on one campaign are decided one at a time.
        let row = store::find_campaign(&mut tx, app.db.dialect, campaign_id, true)
            .await?
            .ok_or(AppError::not_found("campaign"))?;
        if row.stopped_at.is_some() || now >= row.ends_at {
            return Err(AppError::conflict("ended", "the campaign has ended"));
        }
        if now < row.starts_at {
            return Err(AppError::conflict("not_started", format!("claims open at {}", rfc3339(row.starts_at))));
        }
        if row.issued >= row.total {
            return Err(exhausted());
        }
        if store::count_claimed(&mut tx, campaign_id, user_id).await? >= row.per_user_limit {
            return Err(AppError::conflict(
                "limit_reached",
                format!("at most {} coupons of this campaign per user", row.per_user_limit),
            ));
        }
        if !store::take_from_quota(&mut tx, campaign_id, now).await? {
            return Err(exhausted());
        }
        let coupon_row = store::insert_coupon(&mut tx, &row, user_id, now + row.valid_days * DAY_MS, now).await?;
        tx.commit().bounded().await?;
        Ok(coupon(coupon_row, now))
    })
    .await;
    let outcome = match &result {
        Ok(_) => "claimed",
        Err(AppError::Conflict { code: "exhausted", .. }) => {
            app.sold_out.mark(Kind::CouponCampaign, campaign_id);
            "exhausted"
        }
        Err(AppError::Conflict { code, .. }) => code,
        Err(_) => "error",
    };
    metrics::counter!("coupon_claims_total", "outcome" => outcome).increment(1);
    result
}

fn exhausted() -> AppError {
    AppError::conflict("exhausted", "all coupons of this campaign have been claimed")
}

pub async fn my_coupons(
    app: &App,
    user_id: i64,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<Page<Coupon>, AppError> {
    let (limit, before) = id_page(limit, cursor)?;
    let rows = store::list_for_user(&app.db.pool, user_id, before, limit).await?;
    let (rows, next_cursor) = cut_page(rows, limit, |r| vec![r.id]);
    let now = now_ms();
    Ok(Page { items: rows.into_iter().map(|r| coupon(r, now)).collect(), next_cursor })
}

/// What a coupon takes off an order of `items_total`, if the user may use it now: 422 `coupon_not_found`
/// (missing or someone else's), 409 `coupon_used`, `coupon_expired`, `coupon_not_yet_valid`, 422
/// `min_spend_not_met`. The caller spends it with [`store::mark_used`] in the order's transaction.
pub async fn discount_for(
    conn: &mut sqlx::AnyConnection,
    user_id: i64,
    coupon_id: i64,
    items_total: i64,
    now: i64,
) -> Result<i64, AppError> {
    let coupon = store::find_owned(conn, user_id, coupon_id).await?.ok_or(AppError::not_found("coupon"))?;
    if coupon.status != "unused" {
        return Err(AppError::conflict("coupon_used", "this coupon has been used"));
    }
    if coupon.valid_until <= now {
        return Err(AppError::conflict("coupon_expired", "this coupon has expired"));
    }
    if coupon.valid_from > now {
        return Err(AppError::conflict("coupon_not_yet_valid", "this coupon is not valid yet"));
    }
    if items_total < coupon.min_spend_fen {
        return Err(AppError::validation(
            "coupon_id",
            format!("the order must reach {} fen for this coupon", coupon.min_spend_fen),
        )
        .with_code("min_spend_not_met"));
    }
    Ok(coupon.discount_fen.min(items_total))
}
