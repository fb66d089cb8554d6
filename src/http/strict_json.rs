//! Strict reading of JSON request bodies, the same for every route:
//!
//! - a key given twice in one object is refused (serde_json's `Value` would keep the last one silently, and a
//!   derived struct only notices for its own fields, not inside maps such as SKU attributes);
//! - where a struct is expected, only a JSON object is accepted: serde's derived structs also take the positional
//!   form (`[null, null]` for `{"nickname": null, "avatar_url": null}`), which no client means and the OpenAPI
//!   document does not describe.
//!
//! - a whole number written as a float (`2.0`) is an integer, as JSON Schema's `integer` says.
//!
//! The body is read into a [`Value`] with the duplicate check, then deserialized through [`Strict`], a thin
//! deserializer over that value that refuses anything but an object for a struct, at every depth.

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::{Map, Value};

/// A JSON value read with no duplicate keys in any object.
pub struct Unique(pub Value);

impl<'de> de::Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let Unique(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// A deserializer over a JSON value that accepts only an object where a struct is expected.
pub struct Strict(pub Value);

impl<'de> Deserializer<'de> for Strict {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(items) => {
                let len = items.len();
                let mut seq = StrictSeq(items.into_iter());
                let value = visitor.visit_seq(&mut seq)?;
                match seq.0.len() {
                    0 => Ok(value),
                    _ => Err(de::Error::invalid_length(len, &"fewer elements in array")),
                }
            }
            Value::Object(map) => visitor.visit_map(StrictMap { entries: map.into_iter(), value: None }),
            // JSON Schema's `integer` includes `2.0`; so does ours.
            Value::Number(n) if n.as_f64().is_some_and(integral) && !n.is_i64() && !n.is_u64() => {
                visitor.visit_i64(n.as_f64().unwrap_or_default() as i64)
            }
            other => other.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(visitor),
            other => Err(de::Error::invalid_type(unexpected(&other), &"a JSON object")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit unit_struct seq
        tuple tuple_struct map identifier ignored_any
    }
}

impl IntoDeserializer<'_, serde_json::Error> for Strict {
    type Deserializer = Strict;

    fn into_deserializer(self) -> Strict {
        self
    }
}

/// A float that is a whole number an `i64` holds exactly.
fn integral(f: f64) -> bool {
    f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0
}

fn unexpected(value: &Value) -> de::Unexpected<'_> {
    match value {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("number"),
        Value::String(s) => de::Unexpected::Str(s),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

struct StrictSeq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for StrictSeq {
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Self::Error> {
        self.0.next().map(|v| seed.deserialize(Strict(v))).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct StrictMap {
    entries: serde_json::map::IntoIter,
    value: Option<Value>,
}

impl<'de> MapAccess<'de> for StrictMap {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(Value::String(key)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        let value = self.value.take().ok_or_else(|| de::Error::custom("value without a key"))?;
        seed.deserialize(Strict(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Line {
        sku_id: i64,
        quantity: u32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        name: Option<String>,
        lines: Vec<Line>,
        #[serde(default)]
        tags: Map<String, Value>,
    }

    fn read(json: &str) -> Result<Body, serde_json::Error> {
        let Unique(value) = serde_json::from_str(json)?;
        Body::deserialize(Strict(value))
    }

    #[test]
    fn objects_are_read_as_usual() {
        let body = read(r#"{"name": null, "lines": [{"sku_id": 1, "quantity": 2}], "tags": {"a": [1, {"b": 2}]}}"#);
        assert_eq!(body.unwrap().lines, vec![Line { sku_id: 1, quantity: 2 }]);
    }

    #[test]
    fn positional_forms_are_refused_at_every_depth() {
        assert!(read(r#"[null, []]"#).unwrap_err().to_string().contains("a JSON object"));
        assert!(read(r#"{"lines": [[1, 2]]}"#).unwrap_err().to_string().contains("a JSON object"));
    }

    #[test]
    fn duplicate_keys_are_refused_anywhere() {
        assert!(read(r#"{"lines": [], "lines": []}"#).unwrap_err().to_string().contains("duplicate key `lines`"));
        let nested = read(r#"{"lines": [], "tags": {"a": 1, "a": 2}}"#).unwrap_err();
        assert!(nested.to_string().contains("duplicate key `a`"), "{nested}");
    }

    #[test]
    fn whole_floats_are_integers() {
        assert_eq!(read(r#"{"lines": [{"sku_id": 1.0, "quantity": 2e0}]}"#).unwrap().lines[0].quantity, 2);
        assert!(read(r#"{"lines": [{"sku_id": 1.5, "quantity": 2}]}"#).is_err());
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        assert!(read(r#"{"lines": [{"sku_id": 1, "quantity": -1}]}"#).is_err());
        assert!(read(r#"{"lines": [{"sku_id": 1, "quantity": 4294967296}]}"#).is_err());
    }
}
