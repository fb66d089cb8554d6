//! Moving orders between states. Every transition is a conditional UPDATE (`WHERE status = <from>`), so of two
//! concurrent attempts exactly one wins, recorded as an `order_event` in the same transaction; the cached response
//! is invalidated on every instance afterwards.

use sqlx::AnyConnection;

use crate::coupons;
use crate::db::Bounded;
use crate::db::{now_ms, retry_transient};
use crate::flash_sale::store::{self as flash_store, PurchaseRow};

use crate::error::AppError;
use crate::orders::store;
use crate::orders::OrderStatus;
use crate::state::App;

/// Who moved an order.
pub enum Actor {
    User(i64),
    Admin(i64),
    Timeout,
    /// WeChat Pay said so (a notification, a query, a refund's outcome).
    Payment,
    /// Completed after `orders.auto_complete_days` without the buyer confirming.
    AutoComplete,
}

impl Actor {
    fn label(&self) -> String {
        match self {
            Actor::User(id) => format!("user:{id}"),
            Actor::Admin(id) => format!("admin:{id}"),
            Actor::Timeout => "system:timeout".to_owned(),
            Actor::Payment => "system:payment".to_owned(),
            Actor::AutoComplete => "system:auto_complete".to_owned(),
        }
    }
}

/// Moves order `id` from its current state to `to`; 409 `invalid_order_state` if the machine does not allow it.
pub async fn transition(
    conn: &mut AnyConnection,
    id: i64,
    current: OrderStatus,
    to: OrderStatus,
    actor: &Actor,
    shipping: Option<(&str, &str)>,
) -> Result<(), AppError> {
    if !current.can_become(to) {
        return Err(invalid(current, to));
    }
    let now = now_ms();
    if !store::set_status(conn, id, current.as_str(), to.as_str(), shipping, now).await? {
        return Err(AppError::conflict("invalid_order_state", "the order changed meanwhile; reload it"));
    }
    store::insert_event(conn, id, Some(current.as_str()), to.as_str(), &actor.label(), now).await?;
    let (order_no, user_id, total_fen) = store::summary(conn, id).await?;
    let data = serde_json::json!({
        "order_id": id, "order_no": order_no, "user_id": user_id, "total_fen": total_fen,
        "from": current.as_str(), "to": to.as_str(), "actor": actor.label(),
    });
    // Back from `refunding` (a partial or failed refund) is not a new payment or shipment.
    let kind = if current == OrderStatus::Refunding {
        "order.refund_ended".to_owned()
    } else {
        format!("order.{}", to.as_str())
    };
    crate::events::record(conn, crate::events::Event::new("order", id, kind, data)).await?;
    metrics::counter!("order_transitions_total", "to" => to.as_str()).increment(1);
    Ok(())
}

/// The order and its status; 404 `order_not_found` when it does not exist or, with `owner`, is someone else's.
async fn current(
    conn: &mut AnyConnection,
    id: i64,
    owner: Option<i64>,
) -> Result<(store::OrderRow, OrderStatus), AppError> {
    let order = store::find_order(conn, id).await?.filter(|o| owner.is_none_or(|u| u == o.user_id));
    let order = order.ok_or(AppError::not_found("order"))?;
    let status = OrderStatus::parse(&order.status)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("order {id} has an unknown status {}", order.status)))?;
    Ok((order, status))
}

fn invalid(from: OrderStatus, to: OrderStatus) -> AppError {
    AppError::conflict(
        "invalid_order_state",
        format!("an order that is {} cannot become {}", from.as_str(), to.as_str()),
    )
}

/// Cancels an unpaid order and returns its stock. `owner`: only that user's order (others' are 404).
pub async fn cancel(app: &App, id: i64, owner: Option<i64>, actor: Actor) -> Result<(), AppError> {
    let released = retry_transient(|| async {
        let mut tx = app.db.begin_write().await?;
        let released = cancel_in(&mut tx, id, owner, &actor).await?;
        tx.commit().bounded().await?;
        Ok(released)
    })
    .await?;
    cancelled(app, id, &actor, released).await;
    Ok(())
}

/// The cancellation itself, inside the caller's transaction: the transition, the coupon's and the stock's
/// return. A flash-sale order's units go back to the sale (the purchase is returned, for [`cancelled`] to tell
/// the gate), or to the SKU when the sale's leftover has gone back there already.
pub async fn cancel_in(
    conn: &mut AnyConnection,
    id: i64,
    owner: Option<i64>,
    actor: &Actor,
) -> Result<Option<PurchaseRow>, AppError> {
    let (order, status) = current(conn, id, owner).await?;
    transition(conn, id, status, OrderStatus::Cancelled, actor, None).await?;
    return_goods(conn, &order, now_ms()).await
}

/// Gives an order's coupon and stock back (a cancellation, or a full refund before shipping), inside the caller's
/// transaction. A flash-sale order's units go back to the sale (the purchase is returned, for [`cancelled`] to tell
/// the gate), or to the SKU when the sale's leftover has gone back there already.
pub async fn return_goods(
    conn: &mut AnyConnection,
    order: &store::OrderRow,
    now: i64,
) -> Result<Option<PurchaseRow>, AppError> {
    let id = order.id;
    coupons::store::give_back(conn, id).await?;
    if let Some(sale_id) = order.flash_sale_id {
        let released = flash_store::release_for_order(conn, id, now).await?;
        if flash_store::lock_unreturned(conn, sale_id, now).await? {
            return Ok(released);
        }
    }
    for item in store::items_of(conn, id).await? {
        store::return_stock(conn, item.sku_id, item.quantity, now).await?;
    }
    Ok(None)
}

/// After a committed cancellation: the cache everywhere, the flash sale's gate, the counters.
pub async fn cancelled(app: &App, id: i64, actor: &Actor, released: Option<PurchaseRow>) {
    if let Some(purchase) = released {
        // Reconciliation repairs a failure here: the database already says the units are free.
        if let Err(error) = app.flash_gate.release(&app.db, &purchase).await {
            tracing::warn!(%error, purchase_id = purchase.id, "could not return a cancelled order's units to the flash sale");
        }
        app.sold_out.clear(crate::soldout::Kind::FlashSale, purchase.sale_id);
    }
    crate::orders::changed(app, id).await;
    let by = if matches!(actor, Actor::Timeout) { "timeout" } else { "request" };
    metrics::counter!("orders_cancelled_total", "by" => by).increment(1);
}

/// Ships a paid order with its carrier and tracking number (each 1 to 64 characters); the shipping information
/// is queued for upload to WeChat (mandatory for mini-program shops using WeChat Pay) in the same transaction.
pub async fn ship(app: &App, id: i64, admin_id: i64, carrier: &str, tracking_no: &str) -> Result<(), AppError> {
    let (carrier, tracking_no) = (carrier.trim(), tracking_no.trim());
    let mut fields = Vec::new();
    crate::domain::check_human_text("carrier", carrier, 64, true, &mut fields);
    crate::domain::check_human_text("tracking_no", tracking_no, 64, true, &mut fields);
    if !fields.is_empty() {
        return Err(AppError::Validation(fields));
    }
    retry_transient(|| async {
        let mut tx = app.db.begin_write().await?;
        let (_, status) = current(&mut tx, id, None).await?;
        let shipping = Some((carrier, tracking_no));
        transition(&mut tx, id, status, OrderStatus::Shipped, &Actor::Admin(admin_id), shipping).await?;
        store::set_shipped(&mut tx, app.db.dialect, id, now_ms()).await?;
        tx.commit().bounded().await?;
        Ok(())
    })
    .await?;
    crate::orders::changed(app, id).await;
    Ok(())
}

/// The buyer confirms receipt: `shipped → completed`.
pub async fn confirm_receipt(app: &App, user_id: i64, id: i64) -> Result<(), AppError> {
    retry_transient(|| async {
        let mut tx = app.db.begin_write().await?;
        let (_, status) = current(&mut tx, id, Some(user_id)).await?;
        transition(&mut tx, id, status, OrderStatus::Completed, &Actor::User(user_id), None).await?;
        store::set_completed_at(&mut tx, id, now_ms()).await?;
        tx.commit().bounded().await?;
        Ok(())
    })
    .await?;
    crate::orders::changed(app, id).await;
    Ok(())
}

/// Completes orders shipped more than `orders.auto_complete_days` ago. Each is the conditional transition
/// `shipped → completed`, so two instances never complete one twice; returns how many this call completed.
pub async fn auto_complete(app: &App) -> Result<usize, AppError> {
    let cutoff = now_ms() - app.config.orders.auto_complete_days as i64 * 86_400_000;
    let ids = store::shipped_before(&app.db.pool, cutoff, 200).await?;
    let mut done = 0;
    for id in ids {
        let mut tx = app.db.begin_write().await?;
        let moved =
            transition(&mut tx, id, OrderStatus::Shipped, OrderStatus::Completed, &Actor::AutoComplete, None).await;
        match moved {
            Ok(()) => {
                store::set_completed_at(&mut tx, id, now_ms()).await?;
                tx.commit().bounded().await?;
                crate::orders::changed(app, id).await;
                done += 1;
            }
            // Confirmed or refunded meanwhile (here or on another instance).
            Err(AppError::Conflict { .. }) => tx.rollback().bounded().await?,
            Err(error) => return Err(error),
        }
    }
    Ok(done)
}

/// Any legal transition without side effects on stock (payments will drive `paid`; tests use it).
pub async fn advance(app: &App, id: i64, to: OrderStatus, actor: Actor) -> Result<(), AppError> {
    retry_transient(|| async {
        let mut tx = app.db.begin_write().await?;
        let (_, status) = current(&mut tx, id, None).await?;
        transition(&mut tx, id, status, to, &actor, None).await?;
        tx.commit().bounded().await?;
        Ok(())
    })
    .await?;
    crate::orders::changed(app, id).await;
    Ok(())
}
