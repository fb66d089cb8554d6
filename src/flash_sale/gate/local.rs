//! The embedded gate: the decision in process under the sale's lock; a won purchase is written to
//! `flash_purchase` as `queued` before it counts, and that table is the hand-off queue.

use std::collections::HashMap;
use std::sync::Arc;

use super::{new_purchase_id, Attempt, Decision};
use crate::db::Db;
use crate::error::AppError;
use crate::flash_sale::store::{self, PurchaseRow};

/// A sale's state in process (embedded).
struct LocalSale {
    remaining: i64,
    limit: i64,
    starts_at: i64,
    closes_at: i64,
    bought: HashMap<i64, i64>,
    /// (user, Idempotency-Key) → (purchase id, quantity, address id).
    keys: HashMap<(i64, String), (String, i64, i64)>,
}

type Slot = Arc<tokio::sync::Mutex<Option<LocalSale>>>;

#[derive(Default)]
pub struct LocalGate {
    sales: std::sync::Mutex<HashMap<i64, Slot>>,
}

impl LocalGate {
    fn slot(&self, sale_id: i64) -> Slot {
        let mut sales = self.sales.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sales.entry(sale_id).or_default().clone()
    }

    async fn load(db: &Db, sale_id: i64) -> Result<Option<LocalSale>, AppError> {
        let mut conn = db.pool.acquire().await?;
        let Some(sale) = store::find_sale(&mut conn, sale_id).await? else { return Ok(None) };
        drop(conn);
        let mut state = LocalSale {
            remaining: sale.stock,
            limit: sale.per_user_limit,
            starts_at: sale.starts_at,
            closes_at: sale.closes_at(),
            bought: HashMap::new(),
            keys: HashMap::new(),
        };
        for p in store::purchases_of(&db.pool, sale_id).await? {
            if p.holds() {
                state.remaining -= p.quantity;
                *state.bought.entry(p.user_id).or_default() += p.quantity;
            }
            state.keys.insert((p.user_id, p.idem_key), (p.id, p.quantity, p.address_id));
        }
        Ok(Some(state))
    }

    pub(super) async fn reload(&self, db: &Db, sale_id: i64) -> Result<(), AppError> {
        let slot = self.slot(sale_id);
        let mut state = slot.lock().await;
        *state = Self::load(db, sale_id).await?;
        Ok(())
    }

    pub(super) async fn remaining(&self, db: &Db, sale_id: i64) -> Result<Option<i64>, AppError> {
        let slot = self.slot(sale_id);
        let mut state = slot.lock().await;
        if state.is_none() {
            *state = Self::load(db, sale_id).await?;
        }
        Ok(state.as_ref().map(|s| s.remaining.max(0)))
    }

    pub(super) async fn decide(&self, db: &Db, a: &Attempt<'_>) -> Result<Decision, AppError> {
        let slot = self.slot(a.sale_id);
        // Decisions on one sale run one at a time, each including its write to the database.
        let mut state = slot.lock().await;
        if state.is_none() {
            *state = Self::load(db, a.sale_id).await?;
        }
        let Some(sale) = state.as_mut() else { return Ok(Decision::Unknown) };
        if let Some((purchase_id, quantity, address_id)) = sale.keys.get(&(a.user_id, a.key.to_owned())) {
            return Ok(Decision::Replay {
                purchase_id: purchase_id.clone(),
                quantity: *quantity,
                address_id: *address_id,
            });
        }
        if a.now >= sale.closes_at {
            return Ok(Decision::Ended);
        }
        if a.now < sale.starts_at {
            return Ok(Decision::NotStarted);
        }
        if sale.remaining <= 0 {
            return Ok(Decision::SoldOut { remaining: 0 });
        }
        let bought = sale.bought.get(&a.user_id).copied().unwrap_or(0);
        if bought + a.quantity > sale.limit {
            return Ok(Decision::LimitReached);
        }
        if sale.remaining < a.quantity {
            return Ok(Decision::SoldOut { remaining: sale.remaining });
        }
        let purchase = PurchaseRow {
            id: new_purchase_id(a.sale_id),
            sale_id: a.sale_id,
            user_id: a.user_id,
            quantity: a.quantity,
            address_id: a.address_id,
            idem_key: a.key.to_owned(),
            status: "queued".into(),
            order_id: None,
            reason: None,
            decided_at: a.now,
        };
        // Durable before it counts: if this write fails, nothing was decided.
        let mut conn = db.pool.acquire().await?;
        store::insert_purchase(&mut conn, db.dialect, &purchase, false).await?;
        sale.remaining -= a.quantity;
        *sale.bought.entry(a.user_id).or_default() += a.quantity;
        sale.keys.insert((a.user_id, a.key.to_owned()), (purchase.id.clone(), a.quantity, a.address_id));
        Ok(Decision::Won { purchase_id: purchase.id, remaining: sale.remaining })
    }
}
