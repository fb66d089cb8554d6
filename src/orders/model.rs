//! What the order API returns.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::addresses::service::Address;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderItem {
    pub sku_id: i64,
    pub product_id: i64,
    pub title: String,
    pub sku_title: String,
    /// The price paid, fixed when the order was made.
    pub price_fen: i64,
    pub quantity: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Order {
    pub id: i64,
    pub order_no: String,
    /// `pending_payment`, `paid`, `shipped`, `completed`, `cancelled`, `refunding` or `refunded`.
    pub status: String,
    /// What is to be paid: the items' total less `discount_fen`.
    pub total_fen: i64,
    /// Taken off by the coupon.
    pub discount_fen: i64,
    pub coupon_id: Option<i64>,
    /// Set when the order came from a flash sale (at the sale's price).
    pub flash_sale_id: Option<i64>,
    pub items: Vec<OrderItem>,

    /// The address as it was when the order was made.
    pub address: Address,
    pub remark: String,
    pub created_at: String,
    /// Unpaid by then, the order is cancelled.
    pub pay_deadline: String,
    pub carrier: Option<String>,
    pub tracking_no: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderSummary {
    pub id: i64,
    pub order_no: String,
    pub status: String,
    pub total_fen: i64,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<OrderSummary>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderEvent {
    pub from_status: Option<String>,
    pub to_status: String,
    /// `user:<id>`, `admin:<id>` or `system:timeout`.
    pub actor: String,
    pub at: String,
}

/// The back office's view: the order, its owner and its history.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminOrder {
    #[serde(flatten)]
    pub order: Order,
    pub user_id: i64,
    pub events: Vec<OrderEvent>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminOrderSummary {
    pub id: i64,
    pub order_no: String,
    pub user_id: i64,
    pub status: String,
    pub total_fen: i64,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminOrderPage {
    pub items: Vec<AdminOrderSummary>,
    pub next_cursor: Option<String>,
}
