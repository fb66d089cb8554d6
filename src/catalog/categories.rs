//! Back-office category management. Every change invalidates the cached category list, so the mini-program sees
//! it on its next request.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::catalog::check::Check;
use crate::catalog::service::CATEGORIES_CACHE_KEY;
use crate::catalog::store::{self, NewCategory, SetValue};
use crate::db::{now_ms, Bounded};
use crate::error::AppError;
use crate::state::App;

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminCategory {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub name: String,
    pub icon_url: String,
    pub sort_order: i64,
    /// `active` or `delisted`.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminCategoryList {
    pub items: Vec<AdminCategory>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCategory {
    pub name: String,
    pub icon_url: Option<String>,
    pub sort_order: Option<i64>,
    pub parent_id: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCategory {
    pub name: Option<String>,
    pub icon_url: Option<String>,
    pub sort_order: Option<i64>,
    /// `active` or `delisted`.
    pub status: Option<String>,
}

pub async fn list_categories(app: &App) -> Result<AdminCategoryList, AppError> {
    let rows = store::list_all_categories(&app.db.pool).await?;
    let items = rows
        .into_iter()
        .map(|(c, status)| AdminCategory {
            id: c.id,
            parent_id: c.parent_id,
            name: c.name,
            icon_url: c.icon_url,
            sort_order: c.sort_order,
            status,
        })
        .collect();
    Ok(AdminCategoryList { items })
}

async fn find_category(app: &App, id: i64) -> Result<AdminCategory, AppError> {
    list_categories(app).await?.items.into_iter().find(|c| c.id == id).ok_or(AppError::not_found("category"))
}

pub async fn create_category(app: &App, input: CreateCategory) -> Result<AdminCategory, AppError> {
    let mut check = Check::default();
    check.text("name", Some(&input.name), 64, true);
    check.url("icon_url", input.icon_url.as_deref());
    check.range("sort_order", input.sort_order, -1_000_000, 1_000_000);
    check.done()?;
    // A reference to a row that does not exist is a 404 naming it, as for ids in the path.
    if let Some(parent) = input.parent_id {
        if !store::category_exists(&app.db.pool, parent).await? {
            return Err(AppError::not_found("category"));
        }
    }
    let mut tx = app.db.begin_write().await?;
    let new = NewCategory {
        parent_id: input.parent_id,
        name: input.name.trim(),
        icon_url: input.icon_url.as_deref().unwrap_or(""),
        sort_order: input.sort_order.unwrap_or(0),
    };
    let id = store::insert_category(&mut tx, &new, now_ms()).await?;
    tx.commit().bounded().await?;
    app.cache.invalidate(CATEGORIES_CACHE_KEY).await;
    find_category(app, id).await
}

pub async fn update_category(app: &App, id: i64, input: UpdateCategory) -> Result<AdminCategory, AppError> {
    let mut check = Check::default();
    check.text("name", input.name.as_deref(), 64, true);
    check.url("icon_url", input.icon_url.as_deref());
    check.one_of("status", input.status.as_deref(), &["active", "delisted"]);
    check.range("sort_order", input.sort_order, -1_000_000, 1_000_000);
    check.done()?;
    let mut changes = Vec::new();
    if let Some(v) = input.name {
        changes.push(("name", SetValue::Text(v.trim().to_owned())));
    }
    if let Some(v) = input.icon_url {
        changes.push(("icon_url", SetValue::Text(v)));
    }
    if let Some(v) = input.sort_order {
        changes.push(("sort_order", SetValue::Int(v)));
    }
    if let Some(v) = input.status {
        changes.push(("status", SetValue::Text(v)));
    }
    if !store::update_row(&app.db.pool, "category", id, changes, now_ms()).await? {
        return Err(AppError::not_found("category"));
    }
    app.cache.invalidate(CATEGORIES_CACHE_KEY).await;
    find_category(app, id).await
}
