//! What the catalog API returns.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Money;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Category {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub name: String,
    pub icon_url: String,
    pub sort_order: i64,
}

/// A product as listed: enough for a product card.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductSummary {
    pub id: i64,
    pub category_id: i64,
    pub title: String,
    pub subtitle: String,
    /// The main image, when the product has one.
    pub image_url: Option<String>,
    /// The lowest price among its SKUs on sale; `null` when none is on sale.
    #[schema(value_type = Option<i64>)]
    pub price_fen: Option<Money>,
    /// Whether any SKU has stock.
    pub in_stock: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Sku {
    pub id: i64,
    pub title: String,
    #[schema(value_type = i64)]
    pub price_fen: Money,
    pub stock: i64,
    /// Sale attributes, e.g. `{"颜色": "红", "尺码": "L"}`.
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductDetail {
    pub id: i64,
    pub category_id: i64,
    pub title: String,
    pub subtitle: String,
    pub description: String,
    pub image_urls: Vec<String>,
    #[schema(value_type = Option<i64>)]
    pub price_fen: Option<Money>,
    pub skus: Vec<Sku>,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryList {
    pub items: Vec<Category>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<ProductSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}
