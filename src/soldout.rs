//! "Sold out" remembered in process for a short while (`flash_sale.sold_out_recheck_ms`): once a flash sale or a
//! coupon campaign has nothing left, the rest of the burst is answered from memory without Redis or the database.
//! The flag expires on its own, so units that come back (a cancelled order) are seen again within that time on
//! every instance; the instance that takes the unit back clears its flag at once.

use std::time::Duration;

/// What can sell out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    FlashSale,
    CouponCampaign,
}

#[derive(Clone)]
pub struct SoldOut(moka::sync::Cache<(Kind, i64), ()>);

impl SoldOut {
    pub fn new(recheck: Duration) -> SoldOut {
        SoldOut(moka::sync::Cache::builder().max_capacity(10_000).time_to_live(recheck).build())
    }

    pub fn is_sold_out(&self, kind: Kind, id: i64) -> bool {
        self.0.contains_key(&(kind, id))
    }

    pub fn mark(&self, kind: Kind, id: i64) {
        self.0.insert((kind, id), ());
    }

    pub fn clear(&self, kind: Kind, id: i64) {
        self.0.invalidate(&(kind, id));
    }
}
