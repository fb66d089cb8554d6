//! The OpenAPI document tells the truth about statuses: beyond what each handler declares, every operation
//! documents the error answers the shared machinery can give it, with the error schema:
//!
//! - 401 `token_missing` / `token_invalid` / `token_revoked` on every authenticated route (403 `forbidden` too on
//!   the back office, where roles apply);
//! - 400 `invalid_parameter` wherever a path, query or header parameter is parsed (an id beyond 64 bits, a bad
//!   cursor, a missing `Idempotency-Key`) and 422 `validation_failed` where a query value is out of range;
//! - 400 `invalid_json`, 413 `payload_too_large`, 415 `unsupported_media_type` and 422 `validation_failed` wherever
//!   a JSON body is read;
//! - 503 everywhere: `request_timeout` (`http.request_timeout_ms`) and `database_unavailable`.
//!
//! Applied once to the assembled document ([`complete`]), so no handler can forget one.

use serde_json::json;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn, PathItem};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, ResponseBuilder};

use crate::domain::{Cursor, PageLimit};

/// The document served at `/openapi.json`: `openapi` completed ([`complete`]) and its request schemas
/// constrained as the validators are ([`crate::http::request_schemas`]).
pub fn render(mut openapi: OpenApi) -> anyhow::Result<String> {
    complete(&mut openapi);
    let mut document = serde_json::to_value(&openapi)?;
    crate::http::request_schemas::constrain(&mut document);
    Ok(serde_json::to_string(&document)?)
}

/// Adds the shared error answers to every operation of `openapi`.
pub fn complete(openapi: &mut OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let back_office = path.starts_with("/admin/");
        // Orders are paged by (created_at, id); every other list by id.
        let cursor_keys = if path.ends_with("/orders") { 2 } else { 1 };
        for operation in operations(item) {
            for parameter in operation.parameters.iter_mut().flatten() {
                constrain(parameter, path, cursor_keys);
            }
            let authenticated = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_parameters = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let has_query = operation
                .parameters
                .as_ref()
                .is_some_and(|p| p.iter().any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query)));
            let has_body = operation.request_body.is_some();
            if authenticated {
                add(operation, "401", "`token_missing`, `token_invalid`, `token_expired` or `token_revoked`");
                if back_office {
                    add(operation, "403", "`forbidden`: the admin's role does not allow this");
                }
            }
            if has_parameters || has_body {
                add(operation, "400", "`invalid_parameter` (a path, query or header value) or `invalid_json`");
            }
            if has_body {
                add(operation, "413", "`payload_too_large`: the body exceeds `http.body_limit_bytes`");
                add(operation, "415", "`unsupported_media_type`: the body must be `application/json`");
            }
            if has_body || has_query {
                add(operation, "422", "`validation_failed`, naming each field");
            }
            add(operation, "503", "`request_timeout`, `database_unavailable` or another dependency unavailable");
        }
    }
}

/// The constraints of the shared parameters, from the parsers that enforce them.
fn constrain(parameter: &mut Parameter, path: &str, cursor_keys: usize) {
    let schema = match (&parameter.parameter_in, parameter.name.as_str()) {
        (ParameterIn::Query, "status") if path.ends_with("/orders") => {
            // Empty means no filter, as absent does.
            let mut statuses = vec![""];
            statuses.extend(crate::orders::OrderStatus::ALL.map(|s| s.as_str()));
            json!({"type": "string", "enum": statuses})
        }
        (ParameterIn::Query, "status") if path.ends_with("/products") => {
            json!({"type": "string", "enum": ["on_sale", "delisted"]})
        }
        (ParameterIn::Query, "q") => {
            json!({"type": "string", "maxLength": crate::catalog::service::MAX_SEARCH_CHARS})
        }
        // An RFC 3339 time; empty means no bound, as absent does.
        (ParameterIn::Query, "from" | "to") => {
            json!({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "maxLength": 0}]})
        }
        (ParameterIn::Query, name) if name.ends_with("_id") => {
            json!({"type": "integer", "format": "int64", "minimum": 1})
        }
        (ParameterIn::Query, "limit") => json!({
            "type": "integer", "format": "int64", "minimum": 1, "maximum": PageLimit::MAX,
            "description": format!("Page size, 1 to {}; default {}.", PageLimit::MAX, PageLimit::DEFAULT),
        }),
        (ParameterIn::Query, "cursor") => json!({
            "type": "string", "pattern": Cursor::pattern(cursor_keys),
            "description": "The `next_cursor` of the previous page; empty or absent for the first page.",
        }),
        (ParameterIn::Header, "Idempotency-Key") => {
            parameter.required = utoipa::openapi::Required::True;
            json!({"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7E]+$"})
        }
        _ => return,
    };
    parameter.schema = Some(serde_json::from_value(schema).expect("a valid schema"));
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
        item.options.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Documents `status` with the error body unless the handler already did.
fn add(operation: &mut Operation, status: &str, description: &str) {
    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
                .build(),
        )
    });
}
