//! Extractors whose rejections are [`AppError`], so malformed input gets our error format:
//! malformed JSON → 400 `invalid_json`; a JSON value of the wrong shape → 422 `validation_failed` naming the field;
//! bad query or path parameters → 400 `invalid_parameter`. An empty `cursor=` is the first page on every list.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{AppError, FieldError};
use crate::http::strict_json::{Strict, Unique};

/// A JSON request body.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(&req) {
            return Err(AppError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| match rejection {
            BytesRejection::FailedToBufferBody(e) if is_length_limit(&e) => AppError::PayloadTooLarge,
            other => AppError::InvalidJson(other.body_text()),
        })?;
        parse_json(&bytes).map(AppJson)
    }
}

/// Parses a JSON body strictly ([`strict_json`]): syntax errors are `invalid_json`; shape errors (a wrong type, an
/// array where an object belongs, a key given twice) name the offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    from_json_value(parse_json_value(bytes)?)
}

/// Reads a JSON body as a value, refusing duplicate keys in any object (for a caller that looks at the value before
/// reading it as its type with [`from_json_value`]).
pub fn parse_json_value(bytes: &[u8]) -> Result<serde_json::Value, AppError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let Unique(value) = serde_path_to_error::deserialize(&mut deserializer).map_err(shape_error)?;
    deserializer.end().map_err(|e| AppError::InvalidJson(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Reads an already-parsed JSON value as `T` strictly, with the same field-naming errors as [`parse_json`].
pub fn from_json_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, AppError> {
    serde_path_to_error::deserialize(Strict(value)).map_err(shape_error)
}

fn shape_error(e: serde_path_to_error::Error<serde_json::Error>) -> AppError {
    let field = e.path().to_string();
    let inner = e.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            let message = inner.to_string();
            // serde reports an unknown (or repeated) field at its parent; name the field itself.
            let unknown = ["unknown field `", "duplicate key `"]
                .iter()
                .find_map(|prefix| message.strip_prefix(prefix))
                .and_then(|rest| rest.split('`').next());
            let field = match (unknown, field.as_str()) {
                (Some(name), ".") => name.to_owned(),
                (Some(name), parent) if parent.ends_with(name) => parent.to_owned(),
                (Some(name), parent) => format!("{parent}.{name}"),
                (None, ".") => "body".to_owned(),
                (None, _) => field,
            };
            AppError::Validation(vec![FieldError::new(field, message)])
        }
        _ => AppError::InvalidJson(format!("malformed JSON: {inner}")),
    }
}

fn is_json_content_type(req: &Request) -> bool {
    let Some(value) = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn is_length_limit(error: &axum::extract::rejection::FailedToBufferBody) -> bool {
    matches!(error, axum::extract::rejection::FailedToBufferBody::LengthLimitError(_))
}

/// Query-string parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = without_empty_cursor(parts.uri.query().unwrap_or_default());
        serde_urlencoded_query::<T>(&query).map(AppQuery)
    }
}

/// The query string without empty `cursor=` pairs: an empty cursor means the first page, as an absent one does.
fn without_empty_cursor(query: &str) -> std::borrow::Cow<'_, str> {
    if !query.split('&').any(|pair| pair == "cursor" || pair == "cursor=") {
        return query.into();
    }
    query.split('&').filter(|pair| *pair != "cursor" && *pair != "cursor=").collect::<Vec<_>>().join("&").into()
}

fn serde_urlencoded_query<T: DeserializeOwned>(query: &str) -> Result<T, AppError> {
    let uri: axum::http::Uri =
        format!("/?{query}").parse().map_err(|_| AppError::invalid_parameter("malformed query string"))?;
    Query::<T>::try_from_uri(&uri)
        .map(|Query(value)| value)
        .map_err(|rejection| AppError::invalid_parameter(rejection.body_text()))
}

/// Path parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppPath<T>(pub T);

impl<S, T> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| AppPath(value))
            .map_err(|rejection| AppError::invalid_parameter(rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Input {
        name: String,
        quantity: u32,
    }

    async fn extract(content_type: &str, body: &'static str) -> Result<AppJson<Input>, AppError> {
        let req = Request::builder().header(CONTENT_TYPE, content_type).body(Body::from(body)).unwrap();
        AppJson::<Input>::from_request(req, &()).await
    }

    #[tokio::test]
    async fn malformed_json_is_invalid_json() {
        for body in ["{", "{\"name\": }", "not json", "{\"name\":\"a\",\"quantity\":1} trailing"] {
            let err = extract("application/json", body).await.unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(err.code(), "invalid_json", "{body}");
        }
    }

    #[tokio::test]
    async fn wrong_shape_names_the_field() {
        let err = extract("application/json", r#"{"name": "a", "quantity": -1}"#).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        match err {
            AppError::Validation(fields) => assert_eq!(fields[0].field, "quantity"),
            other => panic!("unexpected {other:?}"),
        }
        let err = extract("application/json", r#"{"quantity": 1}"#).await.unwrap_err();
        assert_eq!(err.code(), "validation_failed");
    }

    #[test]
    fn an_empty_cursor_is_no_cursor() {
        assert_eq!(without_empty_cursor("limit=5&cursor="), "limit=5");
        assert_eq!(without_empty_cursor("cursor&limit=5"), "limit=5");
        assert_eq!(without_empty_cursor("cursor=abc&limit=5"), "cursor=abc&limit=5");
        assert_eq!(without_empty_cursor(""), "");
    }

    #[tokio::test]
    async fn arrays_and_duplicate_keys_are_refused() {
        for body in [r#"["a", 1]"#, r#"{"name": "a", "quantity": 1, "name": "b"}"#] {
            let err = extract("application/json", body).await.unwrap_err();
            assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        }
        match extract("application/json", r#"{"name": "a", "quantity": 1, "name": "b"}"#).await.unwrap_err() {
            AppError::Validation(fields) => assert_eq!(fields[0].field, "name", "the repeated key is named"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn content_type_is_checked() {
        let err = extract("text/plain", r#"{"name": "a", "quantity": 1}"#).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(extract("application/json; charset=utf-8", r#"{"name": "a", "quantity": 1}"#).await.is_ok());
    }
}
