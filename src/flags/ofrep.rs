//! The mini-program's flags: the OpenFeature Remote Evaluation Protocol (OFREP) bulk endpoint. Only flags marked
//! `client_visible` leave the server; the user is the token's (a `targetingKey` in the body is only an anonymous
//! id); `ETag` / `If-None-Match` answer 304 while nothing the client would see changed.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::extract::AuthUser;
use crate::error::{AppError, ErrorBody};
use crate::flags::engine::{Context, Reason};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(evaluate_flags))
}

/// `{"context": {"targetingKey"?, attributes…}}`; every part optional.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct OfrepRequest {
    #[schema(value_type = Option<Object>)]
    context: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OfrepFlag {
    pub key: String,
    pub value: Value,
    pub reason: Reason,
    pub variant: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OfrepBulk {
    pub flags: Vec<OfrepFlag>,
}

const MAX_ATTRIBUTES: usize = 20;

/// Every client-visible flag evaluated for the signed-in user (or the anonymous `targetingKey`). Send the
/// returned `ETag` as `If-None-Match` to get a 304 while nothing changed.
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags", tag = "flags", security((), ("bearer" = [])),
    request_body = OfrepRequest,
    responses(
        (status = 200, body = OfrepBulk, headers(("ETag" = String))),
        (status = 304, description = "nothing changed since the ETag sent"),
        (status = 400, body = ErrorBody, description = "`invalid_json`, `invalid_context`"),
        (status = 401, body = ErrorBody, description = "a token was sent and is not valid"),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody, description = "the token's revocation check could not reach its store, with `Retry-After` (anonymous requests never)"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn evaluate_flags(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    if body.len() > 16 * 1024 {
        return Err(AppError::PayloadTooLarge);
    }
    let user = AuthUser::optional(&headers, &state).await?.map(|user| user.id.to_string());
    let request: Value = if body.is_empty() { Value::Null } else { crate::http::extract::parse_json_value(&body)? };
    let invalid = |message: &str| AppError::BadRequest { code: "invalid_context", message: message.into() };
    let context = match &request {
        Value::Null => None,
        Value::Object(map) => match map.get("context") {
            None | Some(Value::Null) => None,
            Some(Value::Object(context)) => Some(context),
            Some(_) => return Err(invalid("context must be an object")),
        },
        _ => return Err(invalid("the body must be an object")),
    };
    let mut attributes: Vec<(String, String)> = Vec::new();
    let mut targeting_key = None;
    for (name, value) in context.into_iter().flatten() {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(invalid("context values must be strings, numbers or booleans")),
        };
        if name.len() > 64 || text.len() > 256 {
            return Err(invalid("context names are at most 64 characters, values at most 256"));
        }
        if name == "targetingKey" {
            targeting_key = Some(text);
        } else if !matches!(name.as_str(), "user_id" | "userId") {
            attributes.push((name.clone(), text));
        }
    }
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(invalid("at most 20 context attributes"));
    }
    attributes.sort();
    let snapshot = state.flags.snapshot();
    // The ETag covers everything the answer depends on: the flags' version, who, and the attributes.
    let mut hasher = Sha256::new();
    hasher.update(snapshot.version.to_le_bytes());
    hasher.update([u8::from(state.flags.is_stale())]);
    for part in [user.as_deref().unwrap_or("-"), targeting_key.as_deref().unwrap_or("-")] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    for (name, value) in &attributes {
        hasher.update(name.as_bytes());
        hasher.update([1]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    let etag = format!("\"{}\"", hex::encode(&hasher.finalize()[..16]));
    let etag_value = HeaderValue::from_str(&etag).expect("hex is a valid header");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    let properties: Vec<(&str, &str)> = attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let ctx = Context {
        user_id: user.as_deref(),
        anon_id: targeting_key.as_deref(),
        properties: &properties,
        now_ms: crate::db::now_ms(),
    };
    let mut visible: Vec<_> = snapshot.flags.values().filter(|f| f.client_visible).collect();
    visible.sort_by(|a, b| a.key.cmp(&b.key));
    let flags = visible
        .into_iter()
        .map(|flag| {
            let evaluation = state.flags.evaluate(&snapshot, &flag.key, &ctx);
            OfrepFlag {
                key: flag.key.clone(),
                value: crate::flags::routes::value_of(flag, &evaluation),
                reason: evaluation.reason,
                variant: evaluation.variant.map(|v| v.name.clone()),
                metadata: serde_json::json!({"version": flag.version}),
            }
        })
        .collect();
    Ok((StatusCode::OK, [(header::ETAG, etag_value)], axum::Json(OfrepBulk { flags })).into_response())
}
