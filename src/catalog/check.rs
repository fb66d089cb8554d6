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

    /// SKU attributes (`{"规格": "100g"}`): at most [`MAX_ATTRIBUTES`] entries, each key 1 to 32 characters of
    /// human text, each value a string of at most 64 characters (empty allowed), a number or a boolean. Stored as
    /// JSON text, so the stored form stays under [`MAX_ATTRIBUTES_BYTES`], far below the TEXT column's 64 KiB.
    pub fn attributes(&mut self, field: &str, attributes: Option<&Map<String, Value>>) {
        let Some(attributes) = attributes else { return };
        if attributes.len() > MAX_ATTRIBUTES {
            return self.fail(field, &format!("at most {MAX_ATTRIBUTES} attributes"));
        }
        for (key, value) in attributes {
            let name = format!("{field}.{key}");
            crate::domain::check_human_text(&name, key, 32, true, &mut self.0);
            match value {
                Value::String(text) => crate::domain::check_human_text(&name, text, 64, false, &mut self.0),
                Value::Number(_) | Value::Bool(_) => {}
                _ => self.fail(&name, "must be a string, a number or a boolean"),
            }
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

/// Attributes per SKU, at most.
pub const MAX_ATTRIBUTES: usize = 10;
/// The stored form of a SKU's attributes, at most: 10 × (32 + 64 characters of up to 4 bytes, plus quotes) fits.
pub const MAX_ATTRIBUTES_BYTES: usize = 4_096;

/// 10 million yuan: far above any real price, far below overflow.
pub const MAX_PRICE_FEN: i64 = 1_000_000_000;
pub const MAX_STOCK: i64 = 100_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_accepted_attributes_fit_their_stored_bound() {
        // 4-byte characters everywhere: the worst case of the limits.
        let attributes: Map<String, Value> =
            (0..MAX_ATTRIBUTES).map(|i| (format!("{i}{}", "😀".repeat(31)), Value::String("😀".repeat(64)))).collect();
        let mut check = Check::default();
        check.attributes("attributes", Some(&attributes));
        assert!(check.0.is_empty(), "{:?}", check.0);
        assert!(Value::Object(attributes).to_string().len() <= MAX_ATTRIBUTES_BYTES);
        let nested: Map<String, Value> = [("a".to_owned(), serde_json::json!({"b": 1}))].into_iter().collect();
        let mut check = Check::default();
        check.attributes("attributes", Some(&nested));
        assert_eq!(check.0.len(), 1, "only strings, numbers and booleans");
    }
}
