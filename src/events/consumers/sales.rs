//! Sales statistics per day (Beijing time) and SKU, from `order.paid` (orders, units, GMV = price × quantity) and
//! `refund.succeeded` (refunds; the amount split over the order's lines in proportion to their value, the remainder
//! on the last line, so the per-SKU amounts add up to the refund exactly).

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::db::{Bounded, Dialect};
use crate::error::AppError;
use crate::events::consumers::data_i64;
use crate::events::envelope::CloudEvent;
use crate::state::App;

/// One day's sales of one SKU.
#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq, Eq)]
pub struct SalesRow {
    /// `YYYY-MM-DD`, Beijing time.
    pub day: String,
    pub sku_id: i64,
    /// Paid orders containing the SKU.
    pub orders: i64,
    pub units: i64,
    /// Price × quantity of the paid lines, in fen.
    pub gmv_fen: i64,
    /// Successful refunds touching the SKU.
    pub refunds: i64,
    /// The SKU's share of those refunds, in fen.
    pub refund_fen: i64,
}

/// The Beijing date of an epoch-ms time.
pub fn day_of(ms: i64) -> String {
    crate::db::rfc3339_beijing(ms / 1000)[..10].to_owned()
}

/// An order's lines: (sku_id, quantity, price_fen), in SKU order.
pub async fn lines(conn: &mut AnyConnection, order_id: i64) -> Result<Vec<(i64, i64, i64)>, sqlx::Error> {
    let rows = sqlx::query("SELECT sku_id, quantity, price_fen FROM order_item WHERE order_id = ? ORDER BY sku_id, id")
        .bind(order_id)
        .fetch_all(conn)
        .bounded()
        .await?;
    rows.iter().map(|r| Ok((r.try_get("sku_id")?, r.try_get("quantity")?, r.try_get("price_fen")?))).collect()
}

/// `amount` split over `values` in proportion, the rounding remainder on the last share.
pub fn split(amount: i64, values: &[i64]) -> Vec<i64> {
    let total: i64 = values.iter().sum();
    if total <= 0 || values.is_empty() {
        return vec![0; values.len()];
    }
    let mut shares: Vec<i64> = values.iter().map(|v| amount * v / total).collect();
    let given: i64 = shares.iter().sum();
    if let Some(last) = shares.last_mut() {
        *last += amount - given;
    }
    shares
}

async fn add(conn: &mut AnyConnection, dialect: Dialect, row: &SalesRow) -> Result<(), sqlx::Error> {
    let columns = ["orders", "units", "gmv_fen", "refunds", "refund_fen"];
    let sql = format!(
        "INSERT INTO sales_daily (day, sku_id, orders, units, gmv_fen, refunds, refund_fen) VALUES (?, ?, ?, ?, ?, ?, ?){}",
        dialect.upsert_add("day, sku_id", &columns)
    );
    sqlx::query(&sql)
        .bind(row.day.clone())
        .bind(row.sku_id)
        .bind(row.orders)
        .bind(row.units)
        .bind(row.gmv_fen)
        .bind(row.refunds)
        .bind(row.refund_fen)
        .execute(conn)
        .bounded()
        .await?;
    Ok(())
}

pub async fn apply(app: &App, conn: &mut AnyConnection, event: &CloudEvent) -> Result<(), AppError> {
    let day = day_of(event.time_ms());
    let order_id = data_i64(event, "order_id")?;
    let lines = lines(conn, order_id).await?;
    match event.kind() {
        "order.paid" => {
            for (sku_id, quantity, price_fen) in lines {
                let row = SalesRow {
                    day: day.clone(),
                    sku_id,
                    orders: 1,
                    units: quantity,
                    gmv_fen: price_fen * quantity,
                    ..SalesRow::default()
                };
                add(conn, app.db.dialect, &row).await?;
            }
        }
        "refund.succeeded" if event.data.get("kind").and_then(|k| k.as_str()) == Some("request") => {
            let amount = data_i64(event, "amount_fen")?;
            let values: Vec<i64> = lines.iter().map(|(_, q, p)| q * p).collect();
            for ((sku_id, _, _), share) in lines.iter().zip(split(amount, &values)) {
                let row = SalesRow {
                    day: day.clone(),
                    sku_id: *sku_id,
                    refunds: 1,
                    refund_fen: share,
                    ..SalesRow::default()
                };
                add(conn, app.db.dialect, &row).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The statistics between two days (inclusive; `None` is unbounded), by day then SKU.
pub async fn between(app: &App, from: Option<&str>, to: Option<&str>) -> Result<Vec<SalesRow>, AppError> {
    let rows = sqlx::query(
        "SELECT day, sku_id, orders, units, gmv_fen, refunds, refund_fen FROM sales_daily \
         WHERE day >= ? AND day <= ? ORDER BY day, sku_id LIMIT 10000",
    )
    .bind(from.unwrap_or("0000-00-00").to_owned())
    .bind(to.unwrap_or("9999-99-99").to_owned())
    .fetch_all(&app.db.pool)
    .bounded()
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SalesRow {
                day: crate::db::get_text(r, "day")?,
                sku_id: r.try_get("sku_id")?,
                orders: r.try_get("orders")?,
                units: r.try_get("units")?,
                gmv_fen: r.try_get("gmv_fen")?,
                refunds: r.try_get("refunds")?,
                refund_fen: r.try_get("refund_fen")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(AppError::from)
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn a_refund_splits_in_proportion_and_adds_up() {
        assert_eq!(split(100, &[200, 100, 100]), vec![50, 25, 25]);
        assert_eq!(split(100, &[1, 1, 1]), vec![33, 33, 34]);
        assert_eq!(split(7, &[3]), vec![7]);
        assert_eq!(split(5, &[0, 0]), vec![0, 0]);
    }
}
