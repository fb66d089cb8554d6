//! What the validators accept, written into the OpenAPI document's request schemas: lengths, ranges, patterns
//! and which fields are required, so a client generated from the document refuses what the server refuses and
//! never sends a schema-valid request the server rejects (the fuzz stage in `scripts/fuzz.sh` checks both).
//!
//! The limits are the validators' own constants where they have one. A rule JSON Schema cannot state (an end
//! after a start, a discount within its threshold, a referenced row that exists) stays a 422 or 404 and is
//! listed in `schemathesis.toml`.

use serde_json::{json, Value};

use crate::catalog::check::{MAX_PRICE_FEN, MAX_STOCK};
use crate::domain::{human_text_pattern, optional_text_pattern};

/// A flash price, at most (`flash_sale::service::check`).
const MAX_FLASH_PRICE_FEN: i64 = 100_000_000;
/// An http(s) URL the validators' `url::Url::parse` accepts, at most 512 characters.
const URL_PATTERN: &str = "^https?://[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:[0-9]{1,4})?(/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?$";
/// A login or phone-button code: visible ASCII.
const CODE_PATTERN: &str = "^[\\x21-\\x7E]{1,128}$";
/// 5 to 20 of digits, `+`, `-` and inner spaces.
const PHONE_PATTERN: &str = "^[0-9+\\-][0-9+\\- ]{3,18}[0-9+\\-]$";

fn text(max: usize) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": human_text_pattern()})
}

fn optional_text(max: usize) -> Value {
    json!({"type": "string", "maxLength": max, "pattern": optional_text_pattern()})
}

fn int(min: i64, max: i64) -> Value {
    json!({"type": "integer", "format": "int64", "minimum": min, "maximum": max})
}

fn id() -> Value {
    int(1, i64::MAX)
}

fn url() -> Value {
    json!({"type": "string", "maxLength": 512, "pattern": URL_PATTERN})
}

/// A flag's settable fields (`flags::service::check` holds the same limits).
fn flag_fields() -> serde_json::Map<String, Value> {
    let reason = json!({"anyOf": [{"type": "string", "maxLength": 255}, {"type": "null"}]});
    json!({
        "description": {"type": "string", "maxLength": 500}, "enabled": {"type": "boolean"},
        "rollout_percent": int(0, 100), "stickiness": {"type": "string", "minLength": 1, "maxLength": 64},
        "group_id": {"type": "string", "minLength": 1, "maxLength": 64},
        "rules": {"type": "array", "maxItems": 50, "items": {"$ref": "#/components/schemas/Rule"}},
        "variants": {"type": "array", "maxItems": 20, "items": {"$ref": "#/components/schemas/Variant"}},
        "client_visible": {"type": "boolean"}, "reason": reason,
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}

fn flag() -> Value {
    let mut fields = flag_fields();
    fields.insert("key".into(), json!({"type": "string", "pattern": "^[a-z0-9._-]{1,64}$"}));
    Value::Object(fields)
}

fn flag_change() -> Value {
    Value::Object(flag_fields())
}

/// An upload's id: 32 lowercase hex digits.
fn upload_id() -> Value {
    json!({"type": "string", "pattern": "^[0-9a-f]{32}$"})
}

fn one_of(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}

fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

/// SKU attributes: at most 10 entries, each key 1 to 32 characters of text, each value a string of up to 64
/// characters, a number or a boolean; the stored form then stays under `MAX_ATTRIBUTES_BYTES` whatever the text.
fn attributes() -> Value {
    json!({
        "type": "object", "maxProperties": crate::catalog::check::MAX_ATTRIBUTES,
        "propertyNames": {"minLength": 1, "maxLength": 32, "pattern": human_text_pattern()},
        "additionalProperties": {"anyOf": [optional_text(64), {"type": "number"}, {"type": "boolean"}]},
    })
}

/// `schema name → (properties, required)`: the documented form of each request body.
fn request_schemas() -> Vec<(&'static str, Value, &'static [&'static str])> {
    // On PATCH every field is optional (and may be null: unchanged), but one that is given must be valid, as on
    // POST. A new address needs its required fields non-null; `district` and `is_default` may be null (default).
    let address = |new: bool| {
        let maybe_null = |schema: Value| if new { json!({"anyOf": [schema, {"type": "null"}]}) } else { schema };
        json!({
            "recipient": text(32), "phone": {"type": "string", "pattern": PHONE_PATTERN},
            "province": text(32), "city": text(32), "district": maybe_null(optional_text(32)), "detail": text(200),
            "is_default": maybe_null(json!({"type": "boolean"})),
        })
    };
    let sku = json!({
        "title": text(128), "price_fen": int(0, MAX_PRICE_FEN), "stock": int(0, MAX_STOCK), "attributes": attributes(),
    });
    vec![
        ("NewAddress", address(true), &["recipient", "phone", "province", "city", "detail"]),
        ("AddressInput", address(false), &[]),
        ("UpdateProfile", json!({"nickname": text(32), "avatar_upload_id": upload_id()}), &[]),
        ("CreateFlag", flag(), &["key"]),
        ("UpdateFlag", flag_change(), &[]),
        (
            "Rule",
            json!({
                "id": {"type": "string", "minLength": 1, "maxLength": 64},
                "constraints": {"type": "array", "maxItems": 20, "items": {"$ref": "#/components/schemas/Constraint"}},
                "serve": {"type": "boolean"}, "rollout_percent": {"anyOf": [int(0, 100), {"type": "null"}]},
            }),
            &["id"],
        ),
        (
            "Constraint",
            json!({
                "attribute": {"type": "string", "minLength": 1, "maxLength": 64},
                "operator": {"$ref": "#/components/schemas/Operator"},
                "values": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {"type": "string", "maxLength": 256}},
                "inverted": {"type": "boolean"}, "case_insensitive": {"type": "boolean"},
            }),
            &["attribute", "operator", "values"],
        ),
        (
            "Variant",
            json!({
                "name": {"type": "string", "minLength": 1, "maxLength": 64}, "weight": int(1, 100_000), "value": {},
            }),
            &["name", "weight"],
        ),
        ("KillFlag", json!({"reason": {"anyOf": [{"type": "string", "maxLength": 255}, {"type": "null"}]}}), &[]),
        (
            "RevertFlag",
            json!({"version": id(), "reason": {"anyOf": [{"type": "string", "maxLength": 255}, {"type": "null"}]}}),
            &["version"],
        ),
        (
            "OfrepRequest",
            json!({"context": {"anyOf": [{
            "type": "object", "maxProperties": 20, "propertyNames": {"maxLength": 64},
            "additionalProperties": {"anyOf": [{"type": "string", "maxLength": 256}, {"type": "number"}, {"type": "boolean"}]},
        }, {"type": "null"}]}}),
            &[],
        ),
        (
            "CreateUpload",
            json!({
                "purpose": one_of(&["avatar", "review_photo", "product_image"]),
                "content_type": one_of(&["image/jpeg", "image/png", "image/webp"]),
                "size": int(1, 10 * 1024 * 1024),
                "method": one_of(&["POST", "PUT"]),
            }),
            &["purpose", "content_type", "size"],
        ),
        ("WechatLogin", json!({"code": {"type": "string", "pattern": CODE_PATTERN}}), &["code"]),
        ("BindPhone", json!({"code": {"type": "string", "pattern": CODE_PATTERN}}), &["code"]),
        ("SetQuantity", json!({"quantity": int(0, crate::cart::service::MAX_QUANTITY)}), &["quantity"]),
        (
            "LineInput",
            json!({"sku_id": id(), "quantity": int(1, crate::orders::create::MAX_QUANTITY)}),
            &["sku_id", "quantity"],
        ),
        (
            "Purchase",
            json!({"quantity": int(1, crate::flash_sale::service::MAX_PER_USER), "address_id": id()}),
            &["quantity", "address_id"],
        ),
        ("ShipOrder", json!({"carrier": text(64), "tracking_no": text(64)}), &["carrier", "tracking_no"]),
        (
            "CreateCategory",
            json!({"name": text(64), "icon_url": url(), "sort_order": int(-1_000_000, 1_000_000), "parent_id": id()}),
            &["name"],
        ),
        (
            "UpdateCategory",
            json!({"name": text(64), "icon_url": url(), "sort_order": int(-1_000_000, 1_000_000),
                   "status": one_of(&["active", "delisted"])}),
            &[],
        ),
        ("CreateSku", sku.clone(), &["title", "price_fen", "stock"]),
        (
            "UpdateSku",
            json!({"title": text(128), "price_fen": int(0, MAX_PRICE_FEN), "attributes": attributes(),
                   "status": one_of(&["active", "delisted"])}),
            &[],
        ),
        (
            "CreateProduct",
            json!({
                "category_id": id(), "title": text(128), "subtitle": optional_text(256),
                "description": optional_text(10_000),
                "image_upload_ids": {"type": "array", "maxItems": 20, "items": upload_id()},
                "skus": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"$ref": "#/components/schemas/CreateSku"}},
            }),
            &["category_id", "title", "skus"],
        ),
        (
            "UpdateProduct",
            json!({
                "category_id": id(), "title": text(128), "subtitle": optional_text(256),
                "description": optional_text(10_000),
                "image_upload_ids": {"type": "array", "maxItems": 20, "items": upload_id()},
                "status": one_of(&["on_sale", "delisted"]),
            }),
            &[],
        ),
        (
            "CreateCampaign",
            json!({
                "title": text(64), "discount_fen": int(1, 100_000_000), "min_spend_fen": int(0, 100_000_000),
                "total": int(1, 10_000_000), "per_user_limit": int(1, 100), "valid_days": int(1, 366),
                "starts_at": time(), "ends_at": time(),
            }),
            &[
                "title",
                "discount_fen",
                "min_spend_fen",
                "total",
                "per_user_limit",
                "valid_days",
                "starts_at",
                "ends_at",
            ],
        ),
        (
            "CreateFlashSale",
            json!({
                "sku_id": id(), "price_fen": int(1, MAX_FLASH_PRICE_FEN),
                "stock": int(1, crate::flash_sale::service::MAX_STOCK),
                "per_user_limit": int(1, crate::flash_sale::service::MAX_PER_USER),
                "starts_at": time(), "ends_at": time(),
            }),
            &["sku_id", "price_fen", "stock", "per_user_limit", "starts_at", "ends_at"],
        ),
        (
            "UpdateFlashSale",
            json!({
                "price_fen": int(1, MAX_FLASH_PRICE_FEN), "stock": int(1, crate::flash_sale::service::MAX_STOCK),
                "per_user_limit": int(1, crate::flash_sale::service::MAX_PER_USER),
                "starts_at": time(), "ends_at": time(),
            }),
            &[],
        ),
    ]
}

/// Bodies with exactly one of two forms.
fn alternatives() -> Vec<(&'static str, Value)> {
    let order_common = json!({
        "address_id": id(), "remark": optional_text(200), "coupon_id": id(),
    });
    let with = |extra: Value| {
        let mut properties = order_common.clone();
        properties.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        properties
    };
    vec![
        (
            "CreateOrder",
            json!({"oneOf": [
                {"type": "object", "additionalProperties": false, "required": ["items", "address_id"],
                 "properties": with(json!({"items": {"type": "array", "minItems": 1,
                     "maxItems": crate::orders::create::MAX_LINES, "items": {"$ref": "#/components/schemas/LineInput"}},
                     "from_cart": {"const": false}}))},
                {"type": "object", "additionalProperties": false, "required": ["from_cart", "address_id"],
                 "properties": with(json!({"from_cart": {"const": true}}))},
            ], "description": "Either `items`, or `\"from_cart\": true` (the cart's lines)."}),
        ),
        (
            "ChangeStock",
            json!({"oneOf": [
                {"type": "object", "additionalProperties": false, "required": ["set", "reason"],
                 "properties": {"set": int(0, MAX_STOCK), "reason": text(255)}},
                {"type": "object", "additionalProperties": false, "required": ["delta", "reason"],
                 "properties": {"delta": int(-MAX_STOCK, MAX_STOCK), "reason": text(255)}},
            ], "description": "Exactly one of `set` (the new stock) or `delta` (added; negative removes), and why."}),
        ),
    ]
}

/// Writes the constraints into `document` (the rendered OpenAPI JSON).
pub fn constrain(document: &mut Value) {
    let Some(schemas) = document.pointer_mut("/components/schemas").and_then(Value::as_object_mut) else { return };
    for (name, constraints, required) in request_schemas() {
        // Every request body refuses unknown fields (`deny_unknown_fields`); a schema made here says so too.
        let schema = schemas
            .entry(name)
            .or_insert_with(|| json!({"type": "object", "properties": {}, "additionalProperties": false}));
        let properties = schema["properties"].as_object_mut().expect("request schemas are objects");
        for (field, constraint) in constraints.as_object().expect("an object").clone() {
            let existing = properties.entry(field.clone()).or_insert_with(|| json!({}));
            merge(existing, constraint);
        }
        if !required.is_empty() {
            schema["required"] = json!(required);
        }
    }
    for (name, schema) in alternatives() {
        schemas.insert(name.to_owned(), schema);
    }
    // A new address needs its fields; a change (PATCH) does not.
    let new_address = json!({"$ref": "#/components/schemas/NewAddress"});
    if let Some(body) =
        document.pointer_mut("/paths/~1api~1v1~1addresses/post/requestBody/content/application~1json/schema")
    {
        *body = new_address;
    }
}

/// Adds `constraint`'s keywords to a property schema, keeping its description; a nullable property
/// (`"type": ["string", "null"]`) stays nullable.
fn merge(property: &mut Value, constraint: Value) {
    let nullable = property["type"].as_array().is_some_and(|t| t.iter().any(|t| t == "null"))
        || property["oneOf"].as_array().is_some_and(|o| o.iter().any(|s| s["type"] == "null"));
    let description = property.get("description").cloned();
    *property = constraint;
    if let Some(description) = description {
        property["description"] = description;
    }
    if nullable {
        let inner = property.take();
        *property = json!({"anyOf": [inner, {"type": "null"}]});
    }
}
