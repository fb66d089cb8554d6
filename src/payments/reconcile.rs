//! Reconciliation: a day's trade bill from WeChat Pay (SHA-1 checked) against our payments and refunds. Every
//! difference is fixed through the same idempotent functions (a signed query first: the bill itself is not
//! signed) or reported; the report is stored.

use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use crate::db::{now_ms, rfc3339, Bounded};
use crate::error::AppError;
use crate::payments::client::PayError;
use crate::payments::{refunds, service, store};
use crate::state::App;

/// What a reconciliation found and did.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, ToSchema)]
pub struct Report {
    pub bill_date: String,
    /// `done`, `no_statement` (no trades that day) or `failed`.
    pub status: String,
    pub payments_in_bill: usize,
    pub refunds_in_bill: usize,
    /// Paid at WeChat, pending here: now paid (after a signed query).
    pub fixed_paid: Vec<String>,
    /// Paid at WeChat for a cancelled order: refunded automatically.
    pub refunded_after_cancel: Vec<String>,
    /// The bill's amount differs from ours (reported as anomalies).
    pub amount_mismatches: Vec<String>,
    /// In the bill, unknown here (reported as anomalies).
    pub unknown_in_bill: Vec<String>,
    /// Paid here that day, absent from the bill (queried again).
    pub missing_in_bill: Vec<String>,
    /// Refunds the bill shows that were not settled here: settled after a query.
    pub refunds_settled: Vec<String>,
    pub error: Option<String>,
}

/// A stored report.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationRun {
    pub id: i64,
    pub created_at: String,
    #[serde(flatten)]
    pub report: Report,
}

/// Fen from a yuan string like `12.30`, without floating point.
fn fen(yuan: &str) -> Option<i64> {
    let (whole, frac) = yuan.split_once('.').unwrap_or((yuan, "0"));
    let frac = format!("{frac:0<2}");
    if frac.len() != 2 || !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(whole.parse::<i64>().ok()? * 100 + frac.parse::<i64>().ok()?)
}

struct BillRow {
    out_trade_no: String,
    state: String,
    order_fen: Option<i64>,
    out_refund_no: String,
}

fn parse(text: &str) -> Vec<BillRow> {
    let mut rows = Vec::new();
    for line in text.lines().skip(1) {
        if line.starts_with("总交易单数") {
            break;
        }
        let fields: Vec<&str> = line.split(',').map(|f| f.trim().trim_start_matches('`')).collect();
        if fields.len() < 25 {
            continue;
        }
        rows.push(BillRow {
            out_trade_no: fields[6].to_owned(),
            state: fields[9].to_owned(),
            order_fen: fen(fields[24]),
            out_refund_no: fields[15].to_owned(),
        });
    }
    rows
}

/// Milliseconds of midnight (Beijing time) starting `date` (`YYYY-MM-DD`).
fn day_start(date: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(date, &format).ok()?;
    let offset = time::UtcOffset::from_hms(8, 0, 0).ok()?;
    Some(day.midnight().assume_offset(offset).unix_timestamp() * 1000)
}

/// Reconciles `date` (`YYYY-MM-DD`, Beijing time) and stores the report.
pub async fn run(app: &App, date: &str) -> Result<ReconciliationRun, AppError> {
    let start = day_start(date).ok_or_else(|| AppError::validation("date", "must be a date like 2026-12-01"))?;
    if start > now_ms() {
        return Err(AppError::validation("date", "must not be in the future"));
    }
    let mut report = Report { bill_date: date.to_owned(), status: "done".into(), ..Report::default() };
    match app.pay.client.trade_bill(date).await {
        Ok(text) => compare(app, &parse(&text), start, &mut report).await?,
        Err(error) if error.code() == Some("NO_STATEMENT_EXIST") => {
            report.status = "no_statement".into();
            compare(app, &[], start, &mut report).await?;
        }
        Err(error) => {
            report.status = "failed".into();
            report.error = Some(match &error {
                PayError::Rejected { code, .. } if code == "STATEMENT_CREATING" => {
                    "the bill is still being made (retry after 10:30 Beijing time)".into()
                }
                other => other.to_string(),
            });
        }
    }
    let json = serde_json::to_string(&report).map_err(anyhow::Error::from)?;
    let now = now_ms();
    let mut conn = app.db.pool.acquire().await?;
    let id = crate::db::insert_returning_id(
        &mut conn,
        sqlx::query("INSERT INTO reconciliation_run (bill_date, status, report, created_at) VALUES (?, ?, ?, ?)")
            .bind(date.to_owned())
            .bind(report.status.clone())
            .bind(json)
            .bind(now),
    )
    .await?;
    if report.status == "failed" {
        metrics::counter!("pay_reconciliation_failed_total").increment(1);
    }
    Ok(ReconciliationRun { id, created_at: rfc3339(now), report })
}

async fn compare(app: &App, bill: &[BillRow], start: i64, report: &mut Report) -> Result<(), AppError> {
    let mut in_bill = std::collections::HashSet::new();
    for row in bill {
        if row.state == "REFUND" {
            report.refunds_in_bill += 1;
            if let Ok(info) = app.pay.client.query_refund(&row.out_refund_no).await {
                if refunds::apply_refund(app, &info, "reconcile", None).await? {
                    report.refunds_settled.push(row.out_refund_no.clone());
                }
            }
            continue;
        }
        report.payments_in_bill += 1;
        in_bill.insert(row.out_trade_no.clone());
        let mut conn = app.db.pool.acquire().await?;
        let payment = store::find_by_out_trade_no(&mut conn, &row.out_trade_no).await?;
        let Some(payment) = payment else {
            let detail = "in the trade bill, unknown here";
            store::insert_anomaly(&mut conn, &row.out_trade_no, "unknown_order", "reconcile", detail, now_ms()).await?;
            report.unknown_in_bill.push(row.out_trade_no.clone());
            continue;
        };
        if row.order_fen != Some(payment.amount_fen) {
            let detail = format!("bill {:?} fen, ours {}", row.order_fen, payment.amount_fen);
            store::insert_anomaly(&mut conn, &row.out_trade_no, "bill_mismatch", "reconcile", &detail, now_ms())
                .await?;
            metrics::counter!("pay_anomalies_total", "kind" => "bill_mismatch").increment(1);
            report.amount_mismatches.push(row.out_trade_no.clone());
            continue;
        }
        drop(conn);
        if payment.state == "pending" || payment.state == "closed" {
            match service::query_and_apply(app, &row.out_trade_no, "reconcile").await {
                Ok(service::Applied::Paid) => report.fixed_paid.push(row.out_trade_no.clone()),
                Ok(service::Applied::RefundAfterCancel) => report.refunded_after_cancel.push(row.out_trade_no.clone()),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, out_trade_no = row.out_trade_no, "reconciliation query failed"),
            }
        }
    }
    for payment in store::paid_between(&app.db.pool, start, start + 86_400_000).await? {
        if !in_bill.contains(&payment.out_trade_no) {
            report.missing_in_bill.push(payment.out_trade_no);
        }
    }
    Ok(())
}

/// The daily run: yesterday's bill (Beijing time), once it is due (10:30) and not yet reconciled.
pub async fn daily(app: &App) {
    let offset = time::UtcOffset::from_hms(8, 0, 0).expect("valid");
    let now = time::OffsetDateTime::now_utc().to_offset(offset);
    if (now.hour(), now.minute()) < (10, 30) {
        return;
    }
    let yesterday = (now.date() - time::Duration::days(1)).to_string();
    // Done, or failed less than 30 minutes ago (WeChat: retry a bill still being made half an hour later).
    let done = sqlx::query(
        "SELECT COUNT(*) AS n FROM reconciliation_run WHERE bill_date = ? AND (status <> 'failed' OR created_at > ?)",
    )
    .bind(yesterday.clone())
    .bind(now_ms() - 30 * 60_000)
    .fetch_one(&app.db.pool)
    .bounded()
    .await
    .and_then(|r| r.try_get::<i64, _>("n"));
    match done {
        Ok(0) => match run(app, &yesterday).await {
            Ok(run) => tracing::info!(date = yesterday, status = run.report.status, "daily reconciliation"),
            Err(error) => tracing::warn!(%error, "daily reconciliation failed"),
        },
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "could not check the daily reconciliation"),
    }
}

/// Stored reports, newest first.
pub async fn runs(app: &App, limit: i64) -> Result<Vec<ReconciliationRun>, AppError> {
    let rows = sqlx::query("SELECT id, report, created_at FROM reconciliation_run ORDER BY id DESC LIMIT ?")
        .bind(limit)
        .fetch_all(&app.db.pool)
        .bounded()
        .await?;
    let mut runs = Vec::new();
    for row in rows {
        let report: Report =
            serde_json::from_str(&crate::db::get_text(&row, "report")?).map_err(anyhow::Error::from)?;
        runs.push(ReconciliationRun {
            id: row.try_get("id")?,
            created_at: rfc3339(row.try_get("created_at")?),
            report,
        });
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_strings_become_fen_without_floats() {
        assert_eq!(fen("0.01"), Some(1));
        assert_eq!(fen("12.3"), Some(1230));
        assert_eq!(fen("100"), Some(10000));
        assert_eq!(fen("1.234"), None);
        assert_eq!(fen("-1.00"), None);
    }

    #[test]
    fn bill_rows_are_read_up_to_the_summary() {
        let text = "header\n`2026-12-01 10:00:00,`wx1,`1230000109,`0,`,`4200001,`2026120110000012345678,`oX,`JSAPI,`SUCCESS,`OTHERS,`CNY,`12.30,`0.00,`0,`0,`0.00,`0.00,`,`,`t,`,`0.00000,`0.60%,`12.30,`0.00,`\n总交易单数,x\n`1,`12.30\n";
        let rows = parse(text);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].out_trade_no, "2026120110000012345678");
        assert_eq!(rows[0].state, "SUCCESS");
        assert_eq!(rows[0].order_fen, Some(1230));
        assert_eq!(day_start("2026-12-01"), Some(1_796_054_400_000));
    }
}
