//! Back-office payments: payments, anomalies, refunds (approve, reject), reconciliation.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::{AdminUser, Role};
use crate::db::rfc3339;
use crate::domain::{cut_page, Cursor, PageLimit};
use crate::error::{AppError, ErrorBody};
use crate::http::extract::{AppJson, AppPath, AppQuery};
use crate::payments::model::PaymentState;
use crate::payments::reconcile::{self, ReconciliationRun};
use crate::payments::refunds::{self, Refund, RefundStatus};
use crate::payments::store;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_list_payments))
        .routes(routes!(admin_list_anomalies))
        .routes(routes!(admin_list_refunds))
        .routes(routes!(admin_approve_refund))
        .routes(routes!(admin_reject_refund))
        .routes(routes!(admin_reconcile, admin_list_reconciliations))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PaymentQuery {
    /// Only payments in this state.
    pub status: Option<PaymentState>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RefundQuery {
    /// Only refunds in this status.
    pub status: Option<RefundStatus>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

fn page(limit: Option<i64>, cursor: Option<&str>) -> Result<(PageLimit, Option<i64>), AppError> {
    let limit = PageLimit::parse(limit)?;
    let before = match cursor.filter(|c| !c.is_empty()) {
        Some(c) => Some(Cursor::parse(c, 1)?.keys()[0]),
        None => None,
    };
    Ok((limit, before))
}

/// A payment as the back office sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminPayment {
    pub order_id: i64,
    pub out_trade_no: String,
    pub state: PaymentState,
    pub amount_fen: i64,
    pub transaction_id: Option<String>,
    pub prepay_id: Option<String>,
    pub paid_at: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminPaymentPage {
    pub items: Vec<AdminPayment>,
    pub next_cursor: Option<String>,
}

/// Payments, newest first.
#[utoipa::path(get, path = "/admin/api/v1/payments", tag = "admin", security(("bearer" = [])),
    params(PaymentQuery), responses((status = 200, body = AdminPaymentPage)))]
pub async fn admin_list_payments(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppQuery(q): AppQuery<PaymentQuery>,
) -> Result<Json<AdminPaymentPage>, AppError> {
    let (limit, before) = page(q.limit, q.cursor.as_deref())?;
    let rows = store::list(&state.db.pool, q.status.map(|s| s.as_str()), before, i64::from(limit.get()) + 1).await?;
    let (rows, next_cursor) = cut_page(rows, limit.get(), |p| vec![p.order_id]);
    let items = rows
        .into_iter()
        .map(|p| AdminPayment {
            order_id: p.order_id,
            out_trade_no: p.out_trade_no,
            state: PaymentState::parse(&p.state),
            amount_fen: p.amount_fen,
            transaction_id: p.transaction_id,
            prepay_id: p.prepay_id,
            paid_at: p.paid_at.map(rfc3339),
            created_at: rfc3339(p.created_at),
        })
        .collect();
    Ok(Json(AdminPaymentPage { items, next_cursor }))
}

/// A payment or refund that disagreed with our records and was not applied.
#[derive(Debug, Serialize, ToSchema)]
pub struct Anomaly {
    pub id: i64,
    pub out_trade_no: String,
    /// `amount_mismatch`, `currency_mismatch`, `mchid_mismatch`, `appid_mismatch`, `unknown_order`,
    /// `bill_mismatch`, `unknown_refund`, `refund_amount_mismatch`.
    pub kind: String,
    /// `notify`, `query`, `poller`, `reconcile`.
    pub source: String,
    pub detail: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnomalyPage {
    pub items: Vec<Anomaly>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnomalyQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Payment anomalies, newest first.
#[utoipa::path(get, path = "/admin/api/v1/payments/anomalies", tag = "admin", security(("bearer" = [])),
    params(AnomalyQuery), responses((status = 200, body = AnomalyPage)))]
pub async fn admin_list_anomalies(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppQuery(q): AppQuery<AnomalyQuery>,
) -> Result<Json<AnomalyPage>, AppError> {
    let (limit, before) = page(q.limit, q.cursor.as_deref())?;
    let rows = store::anomalies(&state.db.pool, before, i64::from(limit.get()) + 1).await?;
    let (rows, next_cursor) = cut_page(rows, limit.get(), |a| vec![a.id]);
    let items = rows
        .into_iter()
        .map(|a| Anomaly {
            id: a.id,
            out_trade_no: a.out_trade_no,
            kind: a.kind,
            source: a.source,
            detail: a.detail,
            created_at: rfc3339(a.created_at),
        })
        .collect();
    Ok(Json(AnomalyPage { items, next_cursor }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefundPage {
    pub items: Vec<Refund>,
    pub next_cursor: Option<String>,
}

/// Refunds and refund requests, newest first.
#[utoipa::path(get, path = "/admin/api/v1/refunds", tag = "admin", security(("bearer" = [])),
    params(RefundQuery), responses((status = 200, body = RefundPage)))]
pub async fn admin_list_refunds(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppQuery(q): AppQuery<RefundQuery>,
) -> Result<Json<RefundPage>, AppError> {
    let (limit, before) = page(q.limit, q.cursor.as_deref())?;
    let rows = refunds::list(&state, q.status.map(|s| s.as_str()), before, i64::from(limit.get()) + 1).await?;
    let (rows, next_cursor) = cut_page(rows, limit.get(), |r| vec![r.id]);
    Ok(Json(RefundPage { items: rows.into_iter().map(|r| r.view()).collect(), next_cursor }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRefund {
    /// Refund this much (at most what was asked); default: what was asked.
    pub amount_fen: Option<i64>,
    /// A note for the buyer (at most 200 characters).
    pub note: Option<String>,
}

/// Approves a refund request: the money goes back through WeChat Pay (the order is `refunding` until it settles).
#[utoipa::path(post, path = "/admin/api/v1/refunds/{id}/approve", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = ApproveRefund,
    responses(
        (status = 200, body = Refund),
        (status = 404, body = ErrorBody, description = "`refund_not_found`"),
        (status = 409, body = ErrorBody, description = "`invalid_refund_state`: not requested; `invalid_order_state`"),
    ))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id, refund_id = id))]
pub async fn admin_approve_refund(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(body): AppJson<ApproveRefund>,
) -> Result<Json<Refund>, AppError> {
    admin.require(Role::Operator)?;
    let note = body.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
    if let Some(note) = note {
        let mut fields = Vec::new();
        crate::domain::check_human_text("note", note, 200, false, &mut fields);
        if !fields.is_empty() {
            return Err(AppError::Validation(fields));
        }
    }
    Ok(Json(refunds::approve(&state, admin.id, id, body.amount_fen, note).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectRefund {
    /// Why (1 to 200 characters), shown to the buyer.
    pub reason: String,
}

/// Rejects a refund request.
#[utoipa::path(post, path = "/admin/api/v1/refunds/{id}/reject", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = RejectRefund,
    responses(
        (status = 200, body = Refund),
        (status = 404, body = ErrorBody, description = "`refund_not_found`"),
        (status = 409, body = ErrorBody, description = "`invalid_refund_state`: not requested"),
    ))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id, refund_id = id))]
pub async fn admin_reject_refund(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(body): AppJson<RejectRefund>,
) -> Result<Json<Refund>, AppError> {
    admin.require(Role::Operator)?;
    Ok(Json(refunds::reject(&state, id, &body.reason).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reconcile {
    /// The bill's day, `YYYY-MM-DD` (Beijing time), not in the future.
    pub date: String,
}

/// Reconciles one day's trade bill with our payments and refunds now; the report is stored and returned.
#[utoipa::path(post, path = "/admin/api/v1/payments/reconcile", tag = "admin", security(("bearer" = [])),
    request_body = Reconcile, responses((status = 200, body = ReconciliationRun)))]
#[tracing::instrument(skip_all, fields(admin_id = admin.id))]
pub async fn admin_reconcile(
    State(state): State<AppState>,
    admin: AdminUser,
    AppJson(body): AppJson<Reconcile>,
) -> Result<Json<ReconciliationRun>, AppError> {
    admin.require(Role::Operator)?;
    Ok(Json(reconcile::run(&state, &body.date).await?))
}

/// Stored reconciliation reports, newest first (the last 30).
#[utoipa::path(get, path = "/admin/api/v1/payments/reconcile", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<ReconciliationRun>)))]
pub async fn admin_list_reconciliations(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<Vec<ReconciliationRun>>, AppError> {
    Ok(Json(reconcile::runs(&state, 30).await?))
}
