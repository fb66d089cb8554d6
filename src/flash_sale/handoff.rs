//! From a won decision to an order, in the background of every instance.
//!
//! Embedded: the `queued` rows of `flash_purchase` are the queue. Scale-out: each sale's Redis stream, read by the
//! consumer group `orders`; an entry is acknowledged only after its order is committed, and entries a dead
//! instance left unacknowledged are taken over after `flash_sale.claim_idle_ms`. Making the order is idempotent
//! per purchase id (the purchase row is inserted if missing and moved `queued → created` under its row lock), so
//! an entry processed twice still makes one order.

use std::time::{Duration, Instant};

use crate::addresses::service::Address;
use crate::addresses::store as address_store;
use crate::db::Bounded;
use crate::db::{now_ms, retry_transient};
use crate::error::AppError;
use crate::flash_sale::gate::Gate;
use crate::flash_sale::reconcile;
use crate::flash_sale::store::{self, PurchaseRow};
use crate::orders::store::{self as order_store, ItemRow, NewOrder};
use crate::orders::OrderStatus;
use crate::state::{App, AppState};

const BATCH: usize = 100;

/// What became of one won purchase.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Created(i64),
    Failed(&'static str),
    /// Made (or failed) before: by another instance, or before a crash.
    AlreadyDone,
}

/// Runs until `shutdown` fires: hands off won purchases, and reconciles every `reconcile_interval_secs`.
pub async fn run(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let consumer = format!("wxshop-{}", uuid::Uuid::new_v4().simple());
    let poll = Duration::from_millis(state.config.flash_sale.worker_poll_ms);
    let reconcile_every = Duration::from_secs(state.config.flash_sale.reconcile_interval_secs);
    // Reconcile at start-up: primes Redis with every running sale and repairs whatever a crash left.
    let mut last_reconcile: Option<Instant> = None;
    loop {
        if last_reconcile.is_none_or(|at| at.elapsed() >= reconcile_every) {
            last_reconcile = Some(Instant::now());
            match reconcile::all(&state).await {
                Ok(reports) => {
                    for report in reports.iter().filter(|r| r.changed()) {
                        tracing::warn!(?report, "flash-sale reconciliation fixed a disagreement");
                    }
                }
                Err(error) => tracing::warn!(%error, "flash-sale reconciliation failed; retrying later"),
            }
        }
        state.heartbeats.beat("flash_sale.handoff");
        let worked = match pass(&state, &consumer).await {
            Ok(n) => n,
            Err(error) => {
                tracing::warn!(%error, "flash-sale hand-off failed; retrying");
                0
            }
        };
        if worked == 0 {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = state.flash_wake.notified() => {}
                _ = shutdown.changed() => return,
            }
        } else if *shutdown.borrow() {
            return;
        }
    }
}

/// One pass over the queue; how many purchases it handled. A purchase whose order cannot be made does not hold
/// up the others: it is retried with backoff and, after `flash_sale.max_attempts`, parked ([`attempt_failed`]).
pub async fn pass(app: &App, consumer: &str) -> Result<usize, AppError> {
    match &app.flash_gate {
        Gate::Local(_) => {
            let queued = store::queued(&app.db.pool, now_ms(), BATCH as i64).await?;
            // Only what moved counts: when nothing could even be recorded (the database is sick), the worker
            // pauses for its poll interval instead of spinning.
            let mut handled = 0;
            for purchase in &queued {
                match materialize(app, purchase).await {
                    Ok(_) => handled += 1,
                    Err(error) => {
                        if attempt_failed(app, purchase, &error).await.recorded() {
                            handled += 1;
                        }
                    }
                }
            }
            Ok(handled)
        }
        Gate::Redis(gate) => {
            let mut handled = 0;
            let claim_idle = app.config.flash_sale.claim_idle_ms;
            for sale in store::working_sales(&app.db.pool, now_ms()).await? {
                for queued in gate.next_batch(sale.id, consumer, claim_idle, BATCH).await? {
                    let (entry, purchase_id) = (queued.entry, queued.purchase_id);
                    match gate.decided(sale.id, &purchase_id).await? {
                        Some(d) => {
                            let purchase = PurchaseRow {
                                id: purchase_id,
                                sale_id: sale.id,
                                user_id: d.user_id,
                                quantity: d.quantity,
                                address_id: d.address_id,
                                idem_key: d.key,
                                status: "queued".into(),
                                order_id: None,
                                reason: None,
                                decided_at: d.decided_at,
                            };
                            // Backing off after a failure: left unacknowledged, taken again after claim_idle_ms.
                            // Only a redelivered entry can have failed before; a fresh one costs no lookup.
                            if queued.redelivered && store::retry_at(&app.db.pool, &purchase.id).await? > now_ms() {
                                continue;
                            }
                            if let Err(error) = materialize(app, &purchase).await {
                                if !attempt_failed(app, &purchase, &error).await.finished() {
                                    // Not acknowledged: retried, here or by another instance.
                                    continue;
                                }
                            }
                        }
                        None => tracing::error!(purchase_id, "a queued flash-sale purchase has no decision record"),
                    }
                    gate.ack(sale.id, &entry).await?;
                    handled += 1;
                }
            }
            Ok(handled)
        }
    }
}

/// Why a purchase was parked after its order failed `flash_sale.max_attempts` times (`reason` of the purchase).
pub const PARKED_REASON: &str = "order_failed";

/// What became of a failed attempt.
enum AttemptFailed {
    /// Counted; the next attempt is due after the backoff.
    Retrying,
    /// Parked as failed, or done meanwhile: no further attempt.
    Finished,
    /// Not even the failure could be recorded (the database is sick): tried again later, uncounted.
    Unrecorded,
}

impl AttemptFailed {
    fn finished(&self) -> bool {
        matches!(self, AttemptFailed::Finished)
    }

    fn recorded(&self) -> bool {
        !matches!(self, AttemptFailed::Unrecorded)
    }
}

/// Records a failed attempt at `purchase`: the next one is due after a backoff (`retry_base_ms`, doubling, at most
/// five minutes); after `max_attempts` the purchase is parked as failed with [`PARKED_REASON`] and its units go
/// back to the sale.
async fn attempt_failed(app: &App, purchase: &PurchaseRow, error: &AppError) -> AttemptFailed {
    let config = &app.config.flash_sale;
    let max = config.max_attempts as i64;
    let base = config.retry_base_ms as i64;
    let recorded = retry_transient(|| async {
        let now = now_ms();
        let mut tx = app.db.begin_write().await?;
        store::insert_purchase(&mut tx, app.db.dialect, purchase, true).await?;
        let backoff = |attempts: i64| now + (base << (attempts - 1).clamp(0, 20)).min(300_000);
        let Some(attempts) = store::count_attempt(&mut tx, &purchase.id, backoff).await? else {
            return Ok(None);
        };
        let parked = attempts >= max && store::mark_failed(&mut tx, &purchase.id, PARKED_REASON, now).await?;
        tx.commit().bounded().await?;
        Ok(Some((attempts, parked)))
    })
    .await;
    match recorded {
        Ok(None) => AttemptFailed::Finished,
        Ok(Some((attempts, false))) => {
            tracing::warn!(purchase_id = purchase.id, attempts, max_attempts = max, %error, "could not make a flash-sale order; retrying later");
            metrics::counter!("flash_sale_handoff_retries_total").increment(1);
            AttemptFailed::Retrying
        }
        Ok(Some((attempts, true))) => {
            tracing::error!(purchase_id = purchase.id, attempts, %error, "a flash-sale order failed every attempt; the purchase is parked as failed and its units go back to the sale");
            metrics::counter!("flash_sale_handoff_parked_total").increment(1);
            metrics::counter!("flash_sale_orders_total", "outcome" => PARKED_REASON).increment(1);
            if let Err(error) = app.flash_gate.release(&app.db, purchase).await {
                tracing::warn!(%error, purchase_id = purchase.id, "could not return a parked purchase's units to the gate");
            }
            app.sold_out.clear(crate::soldout::Kind::FlashSale, purchase.sale_id);
            AttemptFailed::Finished
        }
        Err(record_error) => {
            tracing::warn!(purchase_id = purchase.id, %error, %record_error, "could not make a flash-sale order nor record the attempt; retrying");
            AttemptFailed::Unrecorded
        }
    }
}

/// Makes the order for one won purchase at the sale's price, or records why it cannot (the units go back to the
/// sale). Safe to call any number of times for one purchase.
pub async fn materialize(app: &App, purchase: &PurchaseRow) -> Result<Outcome, AppError> {
    let dialect = app.db.dialect;
    let (outcome, failed) = retry_transient(|| async {
        let now = now_ms();
        let mut tx = app.db.begin_write().await?;
        // The sale row first (MySQL: X lock until commit): a leftover return cannot run between the check and the
        // commit, and concurrent hand-offs queue here instead of deadlocking on the purchase's foreign-key check.
        let open = store::lock_unreturned(&mut tx, purchase.sale_id, now).await?;
        store::insert_purchase(&mut tx, dialect, purchase, true).await?;
        let Some(row) = store::find_purchase(&mut tx, &purchase.id, Some(dialect)).await? else {
            // Another purchase holds this user's Idempotency-Key (only after Redis lost data): not an order.
            return Ok((Outcome::Failed("duplicate_key"), Some(purchase.clone())));
        };
        if row.status != "queued" {
            return Ok((Outcome::AlreadyDone, None));
        }
        let sale = store::find_sale(&mut tx, row.sale_id)
            .await?
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("purchase {} has no sale", row.id)))?;
        let address = address_store::find_owned(&mut tx, row.user_id, row.address_id).await?;
        let sku = order_store::skus_for_order(&mut tx, &[sale.sku_id]).await?.into_iter().find(|s| s.purchasable);
        let snapshot = address.map(|a| crate::addresses::service::snapshot(Address::from(a)));
        let failure = match (&snapshot, &sku) {
            _ if !open => Some("sale_closed"),
            (None, _) => Some("address_not_found"),
            (Some(Err(_)), _) => Some("address_invalid"),
            (_, None) => Some("sku_unavailable"),
            _ => None,
        };
        if let Some(reason) = failure {
            store::mark_failed(&mut tx, &row.id, reason, now).await?;
            tx.commit().bounded().await?;
            return Ok((Outcome::Failed(reason), Some(row)));
        }
        let (Some(Ok(address)), Some(sku)) = (snapshot, sku) else { unreachable!("checked above") };
        let total = sale.price_fen * row.quantity;
        let status = OrderStatus::PendingPayment.as_str();
        let mut new = NewOrder {
            order_no: order_store::order_number(now),
            user_id: row.user_id,
            status,
            total_fen: total,
            address: &address,
            remark: "",
            pay_deadline: now + app.config.orders.payment_timeout_secs as i64 * 1_000,
            flash_sale_id: Some(sale.id),
            coupon_id: None,
            discount_fen: 0,
        };
        let order_id = order_store::insert_order(&mut tx, &mut new, now).await?;
        let item = ItemRow {
            sku_id: sku.sku_id,
            product_id: sku.product_id,
            title: sku.title,
            sku_title: sku.sku_title,
            price_fen: sale.price_fen,
            quantity: row.quantity,
        };
        let items = [item];
        order_store::insert_items(&mut tx, order_id, &items).await?;
        order_store::insert_event(&mut tx, order_id, None, status, "system:flash_sale", now).await?;
        crate::events::record(&mut tx, order_store::order_created(order_id, &new, &items)).await?;
        store::mark_created(&mut tx, &row.id, order_id, now).await?;
        tx.commit().bounded().await?;
        Ok((Outcome::Created(order_id), None))
    })
    .await?;
    if let Some(row) = failed {
        // The database says these units are free again; tell the gate (reconciliation catches a failure here).
        if let Err(error) = app.flash_gate.release(&app.db, &row).await {
            tracing::warn!(%error, purchase_id = row.id, "could not return a failed purchase's units to the gate");
        }
        app.sold_out.clear(crate::soldout::Kind::FlashSale, row.sale_id);
    }
    match &outcome {
        Outcome::Created(order_id) => {
            crate::orders::changed(app, *order_id).await;
            metrics::counter!("orders_created_total").increment(1);
            metrics::counter!("flash_sale_orders_total", "outcome" => "created").increment(1);
        }
        Outcome::Failed(reason) => {
            tracing::info!(purchase_id = purchase.id, reason, "flash-sale purchase failed");
            metrics::counter!("flash_sale_orders_total", "outcome" => *reason).increment(1);
        }
        Outcome::AlreadyDone => {}
    }
    Ok(outcome)
}
