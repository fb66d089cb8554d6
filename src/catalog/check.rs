//! Validation of back-office catalog input: every field checked against its column's limits before any write,
//! the same way on both backends.

use serde_json::{Map, Value};

use crate::error::{AppError, FieldError};

#[derive(Default)]
pub struct Check(pub Vec<FieldError>);

impl Check {
    pub fn text(&mut self, field: &str, value: Option<&str>, max: usize, required: bool) {
        if let Some(v) = value {
            crate::domain::check_human_text(field, v.trim(), max, required, &mut self.0);
        }
    }

    pub fn url(&mut self, field: &str, value: Option<&str>) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            let ok = v.len() <= 512 && url::Url::parse(v).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !ok {
                self.fail(field, "must be an http(s) URL of at most 512 characters");
            }
        }
    }

    pub fn one_of(&mut self, field: &str, value: Option<&str>, allowed: &[&str]) {
        if let Some(v) = value {
            if !allowed.contains(&v) {
                self.fail(field, &format!("must be one of {}", allowed.join(", ")));
            }
        }
    }

    pub fn range(&mut self, field: &str, value: Option<i64>, min: i64, max: i64) {
        if let Some(v) = value {
            if v < min || v > max {
                self.fail(field, &format!("must be between {min} and {max}"));
            }
        }
    }

    pub fn sku(&mut self, prefix: &str, title: Option<&str>, price: Option<i64>, stock: Option<i64>) {
        self.text(&format!("{prefix}title"), title, 128, true);
        self.range(&format!("{prefix}price_fen"), price, 0, MAX_PRICE_FEN);
        self.range(&format!("{prefix}stock"), stock, 0, MAX_STOCK);
    }

    /// SKU attributes (`{"规格": "100g"}`): stored as JSON text, so the stored form is bounded
    /// ([`MAX_ATTRIBUTES_BYTES`], far below the TEXT column's 64 KiB), keys are 1 to 64 characters of human text
    /// and string values at most 256.
    pub fn attributes(&mut self, field: &str, attributes: Option<&Map<String, Value>>) {
        let Some(attributes) = attributes else { return };
        if Value::Object(attributes.clone()).to_string().len() > MAX_ATTRIBUTES_BYTES {
            return self.fail(field, &format!("at most {MAX_ATTRIBUTES_BYTES} bytes as JSON"));
        }
        for (key, value) in attributes {
            crate::domain::check_human_text(&format!("{field}.{key}"), key, 64, true, &mut self.0);
            self.json_text(&format!("{field}.{key}"), value);
        }
    }

    fn json_text(&mut self, field: &str, value: &Value) {
        match value {
            Value::String(text) => crate::domain::check_human_text(field, text, 256, false, &mut self.0),
            Value::Array(items) => items.iter().for_each(|v| self.json_text(field, v)),
            Value::Object(map) => map.iter().for_each(|(k, v)| {
                crate::domain::check_human_text(field, k, 64, true, &mut self.0);
                self.json_text(field, v);
            }),
            _ => {}
        }
    }

    pub fn fail(&mut self, field: &str, message: &str) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn done(self) -> Result<(), AppError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(self.0))
        }
    }
}

/// 10 million yuan: far above any real price, far below overflow.
/// The stored form of a SKU's attributes, at most.
pub const MAX_ATTRIBUTES_BYTES: usize = 4_096;

pub const MAX_PRICE_FEN: i64 = 1_000_000_000;
pub const MAX_STOCK: i64 = 100_000_000;
