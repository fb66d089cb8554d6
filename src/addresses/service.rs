//! Address rules: validated fields, at most 20 per user, exactly one default, owner-only (others' are 404).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::addresses::store::{self, AddressRow};
use crate::db::now_ms;
use crate::db::Bounded;
use crate::error::{AppError, FieldError};
use crate::state::App;

pub const MAX_ADDRESSES: i64 = 20;

/// What `shop_order.address` holds (VARCHAR(1024) on MySQL): the JSON snapshot of the address an order ships to.
/// Addresses validated here always fit (about 820 characters at worst, every character escaped); an older row
/// that does not is refused before any write instead of failing the insert.
pub const SNAPSHOT_MAX_CHARS: usize = 1_024;

/// The JSON snapshot of `address` stored with an order; a 422 on `address_id` when it does not fit its column.
pub fn snapshot(address: Address) -> Result<String, AppError> {
    let json = serde_json::to_string(&address).map_err(anyhow::Error::from)?;
    if json.chars().count() > SNAPSHOT_MAX_CHARS {
        return Err(AppError::validation("address_id", "this address is too long to ship to; edit it first"));
    }
    Ok(json)
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Address {
    pub id: i64,
    pub recipient: String,
    pub phone: String,
    pub province: String,
    pub city: String,
    pub district: String,
    pub detail: String,
    pub is_default: bool,
}

impl From<AddressRow> for Address {
    fn from(r: AddressRow) -> Self {
        Address {
            id: r.id,
            recipient: r.recipient,
            phone: r.phone,
            province: r.province,
            city: r.city,
            district: r.district,
            detail: r.detail,
            is_default: r.is_default,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AddressList {
    pub items: Vec<Address>,
}

/// A new address; on PATCH every field is optional.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressInput {
    pub recipient: Option<String>,
    pub phone: Option<String>,
    pub province: Option<String>,
    pub city: Option<String>,
    pub district: Option<String>,
    pub detail: Option<String>,
    pub is_default: Option<bool>,
}

fn validate(a: &AddressRow) -> Result<(), AppError> {
    let mut fields = Vec::new();
    for (name, value, max, required) in [
        ("recipient", &a.recipient, 32, true),
        ("province", &a.province, 32, true),
        ("city", &a.city, 32, true),
        ("district", &a.district, 32, false),
        ("detail", &a.detail, 200, true),
    ] {
        crate::domain::check_human_text(name, value.trim(), max, required, &mut fields);
    }
    let phone_ok =
        (5..=20).contains(&a.phone.len()) && a.phone.chars().all(|c| c.is_ascii_digit() || "+- ".contains(c));
    if !phone_ok {
        fields.push(FieldError::new("phone", "must be a phone number of 5 to 20 digits"));
    }
    if fields.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(fields))
    }
}

fn apply(row: &mut AddressRow, input: AddressInput) {
    let trim = |s: String| s.trim().to_owned();
    if let Some(v) = input.recipient {
        row.recipient = trim(v);
    }
    if let Some(v) = input.phone {
        row.phone = trim(v);
    }
    if let Some(v) = input.province {
        row.province = trim(v);
    }
    if let Some(v) = input.city {
        row.city = trim(v);
    }
    if let Some(v) = input.district {
        row.district = trim(v);
    }
    if let Some(v) = input.detail {
        row.detail = trim(v);
    }
    if let Some(v) = input.is_default {
        row.is_default = v;
    }
}

pub async fn list(app: &App, user_id: i64) -> Result<AddressList, AppError> {
    Ok(AddressList { items: store::list(&app.db.pool, user_id).await?.into_iter().map(Address::from).collect() })
}

pub async fn create(app: &App, user_id: i64, input: AddressInput) -> Result<Address, AppError> {
    let mut row = AddressRow {
        id: 0,
        user_id,
        recipient: String::new(),
        phone: String::new(),
        province: String::new(),
        city: String::new(),
        district: String::new(),
        detail: String::new(),
        is_default: false,
    };
    apply(&mut row, input);
    validate(&row)?;
    let mut tx = app.db.begin_write().await?;
    let existing = store::count(&mut tx, user_id).await?;
    if existing >= MAX_ADDRESSES {
        return Err(AppError::conflict("address_limit_reached", format!("at most {MAX_ADDRESSES} addresses")));
    }
    row.is_default = row.is_default || existing == 0;
    let id = store::insert(&mut tx, &row, now_ms()).await?;
    if row.is_default {
        store::clear_default(&mut tx, user_id, id).await?;
    }
    let saved = store::find_owned(&mut tx, user_id, id).await?.ok_or(AppError::not_found("address"))?;
    tx.commit().bounded().await?;
    Ok(saved.into())
}

pub async fn update(app: &App, user_id: i64, id: i64, input: AddressInput) -> Result<Address, AppError> {
    let mut tx = app.db.begin_write().await?;
    let mut row = store::find_owned(&mut tx, user_id, id).await?.ok_or(AppError::not_found("address"))?;
    let was_default = row.is_default;
    apply(&mut row, input);
    validate(&row)?;
    store::update(&mut tx, &row, now_ms()).await?;
    if row.is_default {
        store::clear_default(&mut tx, user_id, id).await?;
    } else if was_default {
        store::ensure_default(&mut tx, user_id).await?;
    }
    let saved = store::find_owned(&mut tx, user_id, id).await?.ok_or(AppError::not_found("address"))?;
    tx.commit().bounded().await?;
    Ok(saved.into())
}

pub async fn delete(app: &App, user_id: i64, id: i64) -> Result<(), AppError> {
    let mut tx = app.db.begin_write().await?;
    if !store::delete(&mut tx, user_id, id).await? {
        return Err(AppError::not_found("address"));
    }
    store::ensure_default(&mut tx, user_id).await?;
    tx.commit().bounded().await?;
    Ok(())
}
