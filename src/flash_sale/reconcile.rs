//! Bringing the gate back into agreement with the database, which is the truth: after a crash between two
//! steps, a lost Redis, or anything else. Runs at start-up, every `flash_sale.reconcile_interval_secs` on every
//! instance (each step is idempotent, so instances running it at once do no harm), and on demand from the back
//! office. Also returns a closed sale's unsold units to the SKU once no order from it can still be cancelled.

use std::collections::HashSet;

use serde::Serialize;
use utoipa::ToSchema;

use crate::db::now_ms;
use crate::db::Bounded;
use crate::error::AppError;
use crate::flash_sale::gate::Gate;
use crate::flash_sale::store::{self, SaleRow};
use crate::state::App;

/// What one reconciliation of one sale found and fixed.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ReconcileReport {
    pub flash_sale_id: i64,
    /// Redis had no keys for the sale: rebuilt from the database.
    pub rebuilt: bool,
    /// Purchases the database holds units for that Redis did not count.
    pub adopted: i64,
    /// Purchases whose order failed or was cancelled that Redis still counted.
    pub released: i64,
    /// Won decisions that were neither in the database nor on their way there: handed off again.
    pub requeued: i64,
    /// Remaining stock corrected (0 or 1).
    pub stock_fixed: i64,
    /// Buyers whose count was corrected.
    pub buyer_counts_fixed: i64,
    /// Units returned to the SKU's ordinary stock after the sale closed.
    pub returned_to_sku: i64,
}

impl ReconcileReport {
    pub fn changed(&self) -> bool {
        self.rebuilt
            || self.adopted + self.released + self.requeued + self.stock_fixed + self.buyer_counts_fixed > 0
            || self.returned_to_sku > 0
    }
}

/// Every sale that may still need it.
pub async fn all(app: &App) -> Result<Vec<ReconcileReport>, AppError> {
    let mut reports = Vec::new();
    for sale in store::working_sales(&app.db.pool, now_ms()).await? {
        reports.push(sale_now(app, &sale).await?);
    }
    Ok(reports)
}

pub async fn sale_now(app: &App, sale: &SaleRow) -> Result<ReconcileReport, AppError> {
    let mut report = ReconcileReport { flash_sale_id: sale.id, ..ReconcileReport::default() };
    match &app.flash_gate {
        Gate::Local(_) => {
            // In process the gate is rebuilt from the database outright.
            let before = app.flash_gate.remaining(&app.db, std::slice::from_ref(sale)).await?;
            app.flash_gate.prime(&app.db, sale).await?;
            let after = app.flash_gate.remaining(&app.db, std::slice::from_ref(sale)).await?;
            report.stock_fixed = i64::from(before != after);
        }
        Gate::Redis(gate) => {
            report.rebuilt = gate.init(&app.db, sale).await?;
            // Read what is on its way before reading the database: a purchase that completes in between is then
            // in the database, and one that is in neither has truly been dropped.
            let queued: HashSet<String> = gate.queued_ids(sale.id).await?.into_iter().collect();
            let decided = gate.all_decided(sale.id).await?;
            let purchases = store::purchases_of(&app.db.pool, sale.id).await?;
            let in_db: HashSet<&str> = purchases.iter().map(|p| p.id.as_str()).collect();
            for purchase in &purchases {
                if gate.settle(purchase, purchase.holds()).await? == 1 {
                    if purchase.holds() {
                        report.adopted += 1;
                    } else {
                        report.released += 1;
                    }
                }
            }
            let grace = app.config.flash_sale.claim_idle_ms as i64;
            let now = now_ms();
            for (purchase_id, d) in decided {
                let dropped = d.state == "held"
                    && !in_db.contains(purchase_id.as_str())
                    && !queued.contains(&purchase_id)
                    && now - d.decided_at > grace;
                if dropped {
                    gate.requeue(sale.id, &purchase_id).await?;
                    report.requeued += 1;
                }
            }
            let (stock_fixed, buyers_fixed) = gate.recount(sale.id).await?;
            report.stock_fixed = stock_fixed;
            report.buyer_counts_fixed = buyers_fixed;
        }
    }
    // Orders are made within moments of a win (or taken over after claim_idle_ms) and cancelled for non-payment
    // by their deadline: after both, no unit can come back to the sale.
    let settled_at = sale.closes_at()
        + app.config.orders.payment_timeout_secs as i64 * 1_000
        + 2 * app.config.flash_sale.claim_idle_ms as i64;
    if sale.stock_returned_at.is_none() && now_ms() > settled_at {
        report.returned_to_sku = return_leftover(app, sale).await?;
    }
    if report.changed() {
        metrics::counter!("flash_sale_reconcile_fixes_total").increment(1);
    }
    Ok(report)
}

/// Once a closed sale's orders can no longer be cancelled for non-payment, its unsold units go back to the SKU.
async fn return_leftover(app: &App, sale: &SaleRow) -> Result<i64, AppError> {
    let now = now_ms();
    let mut tx = app.db.begin_write().await?;
    if !store::mark_stock_returned(&mut tx, sale.id, now).await? {
        return Ok(0);
    }
    let leftover = (sale.stock - store::held_units(&mut tx, sale.id).await?).max(0);
    if leftover > 0 {
        crate::orders::store::return_stock(&mut tx, sale.sku_id, leftover, now).await?;
    }
    tx.commit().bounded().await?;
    tracing::info!(flash_sale_id = sale.id, leftover, "returned a closed flash sale's unsold units to its SKU");
    Ok(leftover)
}
