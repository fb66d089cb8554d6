//! Upload rules: who may upload what and how much, the credential, the checks on completion, the takedown.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::{now_ms, rfc3339};
use crate::error::{AppError, FieldError};
use crate::state::App;
use crate::uploads::config::Provider;
use crate::uploads::image::{self, Format};
use crate::uploads::policy::{self, UploadGrant};
use crate::uploads::store::{self, UploadRow};
use crate::uploads::{Owner, Purpose, IMMUTABLE};

/// How the client sends the file to storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub enum UploadMethod {
    /// Multipart form POST with the returned `fields` then the file last (`wx.uploadFile`). The storage enforces
    /// key, size range and type.
    #[default]
    #[serde(rename = "POST")]
    Post,
    /// `PUT` of the raw bytes to the presigned `url` with the returned `headers` (`wx.request` + ArrayBuffer).
    /// The size is checked on completion.
    #[serde(rename = "PUT")]
    Put,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUpload {
    pub purpose: Purpose,
    /// `image/jpeg`, `image/png` or `image/webp`: pinned by the credential.
    pub content_type: String,
    /// The file's size in bytes, within the purpose's limit.
    pub size: u64,
    /// `POST` (default) or `PUT`.
    #[serde(default)]
    pub method: UploadMethod,
}

/// All a client needs to send the file directly to storage.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadTicket {
    pub id: String,
    pub method: UploadMethod,
    /// Where to send it.
    pub url: String,
    /// `POST`: the form fields, to send before the file (the file field is named `file` and goes last).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
    /// `PUT`: the headers to send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    pub expires_at: String,
    /// Largest file accepted.
    pub max_bytes: u64,
}

/// A committed upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadView {
    pub id: String,
    /// Always `committed` here.
    pub status: String,
    pub purpose: Purpose,
    /// The public (CDN) URL of the content-addressed object.
    pub url: String,
    pub sha256: String,
    /// From the bytes, not from the client.
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub size: u64,
}

const ALLOWED_TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];

/// Issues an upload credential for `owner`.
pub async fn create(app: &App, owner: Owner, input: CreateUpload) -> Result<UploadTicket, AppError> {
    let config = &app.config.storage;
    let allowed = match owner {
        Owner::User(_) => matches!(input.purpose, Purpose::Avatar | Purpose::ReviewPhoto),
        Owner::Admin(_) => input.purpose == Purpose::ProductImage,
    };
    let mut fields = Vec::new();
    if !allowed {
        let expected = if matches!(owner, Owner::User(_)) { "avatar or review_photo" } else { "product_image" };
        fields.push(FieldError::new("purpose", format!("expected {expected}")));
    }
    if !ALLOWED_TYPES.contains(&input.content_type.as_str()) {
        fields.push(FieldError::new("content_type", "expected image/jpeg, image/png or image/webp"));
    }
    let max_bytes = config.max_bytes(input.purpose);
    if input.size == 0 {
        fields.push(FieldError::new("size", "must be at least 1 byte"));
    }
    if !fields.is_empty() {
        return Err(AppError::Validation(fields));
    }
    if input.size > max_bytes {
        return Err(AppError::Unprocessable {
            code: "file_too_large",
            fields: vec![FieldError::new("size", format!("at most {max_bytes} bytes for {}", input.purpose.as_str()))],
        });
    }
    if input.method == UploadMethod::Put && app.storage.provider == Provider::Oss {
        return Err(AppError::BadRequest {
            code: "method_unsupported",
            message: "this storage takes POST uploads only".into(),
        });
    }
    limit(app, owner).await?;

    let id = uuid::Uuid::new_v4().simple().to_string();
    let key = format!("incoming/{}/{}/{id}", input.purpose.as_str(), owner.key_segment());
    let now_ms = now_ms();
    let now = now_ms / 1000;
    let expires_at = now + config.upload_ttl_secs as i64;
    store::insert(
        &app.db.pool,
        &store::NewUpload {
            id: &id,
            owner_kind: owner.kind(),
            owner_id: owner.id(),
            purpose: input.purpose.as_str(),
            incoming_key: &key,
            content_type: &input.content_type,
            max_bytes: max_bytes as i64,
            expires_at: expires_at * 1000,
            now: now_ms,
        },
    )
    .await?;
    let storage = &app.storage;
    let grant = UploadGrant {
        bucket: &storage.bucket,
        key: &key,
        content_type: &input.content_type,
        max_bytes,
        now,
        expires_at,
    };
    let creds = storage.credentials();
    metrics::counter!("uploads_total", "stage" => "created", "purpose" => input.purpose.as_str()).increment(1);
    let (url, fields, headers) = match input.method {
        UploadMethod::Post => {
            (storage.upload_url.clone(), Some(policy::post_fields(storage.provider, &grant, &creds)), None)
        }
        UploadMethod::Put => {
            let url = policy::presigned_put(&storage.endpoint, &grant, &creds);
            let headers = BTreeMap::from([("Content-Type".to_owned(), input.content_type.clone())]);
            (url, None, Some(headers))
        }
    };
    Ok(UploadTicket {
        id,
        method: input.method,
        url,
        fields,
        headers,
        expires_at: rfc3339(expires_at * 1000),
        max_bytes,
    })
}

/// The per-minute rate and the daily quota of upload credentials.
async fn limit(app: &App, owner: Owner) -> Result<(), AppError> {
    let config = &app.config.storage;
    if config.per_user_per_minute > 0 {
        let key = format!("rl:upload:{}:{}", owner.kind(), owner.id());
        let counts = app.counters.increment_all(&[key], std::time::Duration::from_secs(60)).await?;
        if let Some(count) = counts.first().filter(|c| c.value > config.per_user_per_minute) {
            metrics::counter!("rate_limited_total", "action" => "upload").increment(1);
            return Err(AppError::TooManyRequests {
                code: "rate_limited",
                message: "too many uploads; slow down".into(),
                retry_after_secs: Some(count.resets_in.as_secs().max(1)),
            });
        }
    }
    if config.daily_quota > 0 {
        let now = now_ms();
        let day_start = now - now.rem_euclid(86_400_000);
        let used = store::count_since(&app.db.pool, owner.kind(), owner.id(), day_start).await?;
        if used as u64 >= config.daily_quota {
            let retry = ((day_start + 86_400_000 - now) / 1000).max(1) as u64;
            return Err(AppError::TooManyRequests {
                code: "upload_quota_exceeded",
                message: format!("at most {} uploads a day", config.daily_quota),
                retry_after_secs: Some(retry),
            });
        }
    }
    Ok(())
}

/// Upload ids are 32 hex digits: anything else cannot exist (and never reaches the database).
fn well_formed_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The upload if `owner` may see it (another's is a 404): a user's own; any admin's for an admin.
async fn owned(app: &App, owner: Owner, id: &str) -> Result<UploadRow, AppError> {
    if !well_formed_id(id) {
        return Err(AppError::not_found("upload"));
    }
    let row = store::get(&app.db.pool, id).await?.ok_or(AppError::not_found("upload"))?;
    let mine = row.owner_kind == owner.kind() && (row.owner_id == owner.id() || matches!(owner, Owner::Admin(_)));
    if !mine {
        return Err(AppError::not_found("upload"));
    }
    Ok(row)
}

/// Completes an upload: idempotent; a committed upload answers the same, a rejected one the same error.
pub async fn complete(app: &App, owner: Owner, id: &str) -> Result<UploadView, AppError> {
    let row = owned(app, owner, id).await?;
    match row.status.as_str() {
        "pending" => {}
        "committed" => return view(app, &row),
        "removed" => return Err(AppError::not_found("upload")),
        _ => return Err(rejected(row.reject_code.as_deref(), row.reject_message.clone())),
    }
    let started = std::time::Instant::now();
    let storage = &app.storage;
    let Some(size) = storage.size(&row.incoming_key).await? else {
        return not_received(app, id).await;
    };
    if size == 0 || size > row.max_bytes as u64 {
        let message = format!("the file is {size} bytes; at most {} are accepted", row.max_bytes);
        return reject(app, &row, "file_too_large", &message).await;
    }
    let Some(data) = storage.get(&row.incoming_key).await? else {
        return not_received(app, id).await;
    };
    if data.len() as u64 > row.max_bytes as u64 {
        let message = format!("the file is {} bytes; at most {} are accepted", data.len(), row.max_bytes);
        return reject(app, &row, "file_too_large", &message).await;
    }
    let config = &app.config.storage;
    let (max_dimension, max_megapixels) = (config.max_dimension, config.max_megapixels);
    let checked = match tokio::task::spawn_blocking(move || image::check(data, max_dimension, max_megapixels)).await {
        Ok(Ok(checked)) => checked,
        Ok(Err(rejection)) => return reject(app, &row, rejection.code(), &rejection.message()).await,
        Err(panic) => return Err(AppError::Internal(anyhow::anyhow!("image check panicked: {panic}"))),
    };
    let sha = crate::crypto::sha256_hex(&checked.bytes);
    let key = format!("img/{}/{sha}.{}", &sha[..2], checked.format.extension());
    // Content-addressed: the same bytes are one object, written once.
    if storage.size(&key).await? != Some(checked.bytes.len() as u64) {
        storage.put(&key, checked.bytes.clone(), checked.format.content_type(), Some(IMMUTABLE)).await?;
    }
    storage.delete(&row.incoming_key).await?;
    let committed = store::Committed {
        object_key: &key,
        sha256: &sha,
        final_type: checked.format.content_type(),
        width: checked.width as i64,
        height: checked.height as i64,
        size_bytes: checked.bytes.len() as i64,
    };
    store::commit(&app.db.pool, id, &committed, now_ms()).await?;
    metrics::counter!("uploads_total", "stage" => "committed", "purpose" => row.purpose.clone()).increment(1);
    metrics::histogram!("upload_complete_seconds").record(started.elapsed().as_secs_f64());
    // Whoever committed it, the row now says what the object is.
    let row = store::get(&app.db.pool, id).await?.ok_or(AppError::not_found("upload"))?;
    match row.status.as_str() {
        "committed" => view(app, &row),
        _ => Err(rejected(row.reject_code.as_deref(), row.reject_message.clone())),
    }
}

/// Nothing at the incoming key: not uploaded yet, or completed by a concurrent call that already moved it.
async fn not_received(app: &App, id: &str) -> Result<UploadView, AppError> {
    let row = store::get(&app.db.pool, id).await?.ok_or(AppError::not_found("upload"))?;
    match row.status.as_str() {
        "committed" => view(app, &row),
        "pending" => Err(AppError::conflict("upload_not_received", "the file has not arrived in storage yet")),
        _ => Err(rejected(row.reject_code.as_deref(), row.reject_message.clone())),
    }
}

/// Refuses the upload for good: its object is deleted and the row keeps the code.
async fn reject(app: &App, row: &UploadRow, code: &'static str, message: &str) -> Result<UploadView, AppError> {
    app.storage.delete(&row.incoming_key).await?;
    store::reject(&app.db.pool, &row.id, "rejected", code, message).await?;
    metrics::counter!("uploads_total", "stage" => "rejected", "purpose" => row.purpose.clone()).increment(1);
    tracing::info!(upload = %row.id, code, "upload rejected");
    Err(rejected(Some(code), Some(message.to_owned())))
}

fn rejected(code: Option<&str>, message: Option<String>) -> AppError {
    let code: &'static str = match code {
        Some("file_too_large") => "file_too_large",
        Some("unsupported_file_type") => "unsupported_file_type",
        Some("image_unreadable") => "image_unreadable",
        Some("image_too_large") => "image_too_large",
        _ => "upload_expired",
    };
    AppError::Unprocessable {
        code,
        fields: vec![FieldError::new("file", message.unwrap_or_else(|| "the upload was not completed in time".into()))],
    }
}

fn view(app: &App, row: &UploadRow) -> Result<UploadView, AppError> {
    let missing = || AppError::Internal(anyhow::anyhow!("committed upload {} lacks its object", row.id));
    let key = row.object_key.as_deref().ok_or_else(missing)?;
    let purpose = serde_json::from_value(serde_json::Value::String(row.purpose.clone())).map_err(|_| missing())?;
    Ok(UploadView {
        id: row.id.clone(),
        status: "committed".into(),
        purpose,
        url: app.storage.public_url(key),
        sha256: row.sha256.clone().ok_or_else(missing)?,
        content_type: row.final_type.clone().ok_or_else(missing)?,
        width: row.width.unwrap_or_default() as u32,
        height: row.height.unwrap_or_default() as u32,
        size: row.size_bytes.unwrap_or_default() as u64,
    })
}

/// The public URL of the user's own committed avatar upload; anything else (another user's, another purpose, not
/// committed) is a 404 `upload_not_found`, as if it did not exist.
pub async fn avatar_url(app: &App, user_id: i64, id: &str) -> Result<String, AppError> {
    let row = owned(app, Owner::User(user_id), id).await?;
    usable(app, &row, Purpose::Avatar)
}

/// The public URLs of committed product-image uploads (any admin's: the catalog is the shop's), in order; any id
/// that is not one is a 404 `upload_not_found`.
pub async fn product_image_urls(app: &App, ids: &[String]) -> Result<Vec<String>, AppError> {
    let mut urls = Vec::with_capacity(ids.len());
    for id in ids {
        let row = owned(app, Owner::Admin(0), id).await?;
        urls.push(usable(app, &row, Purpose::ProductImage)?);
    }
    Ok(urls)
}

fn usable(app: &App, row: &UploadRow, purpose: Purpose) -> Result<String, AppError> {
    if row.status != "committed" || row.purpose != purpose.as_str() {
        return Err(AppError::not_found("upload"));
    }
    Ok(view(app, row)?.url)
}

/// Takes an image down (admin): its object is deleted; in one transaction every upload of the same content is
/// marked removed, avatars showing it are cleared, product galleries lose it, and a CDN purge of its URL is recorded
/// in the outbox.
pub async fn take_down(app: &App, id: &str) -> Result<(), AppError> {
    if !well_formed_id(id) {
        return Err(AppError::not_found("upload"));
    }
    let row = store::get(&app.db.pool, id).await?.ok_or(AppError::not_found("upload"))?;
    if row.status != "committed" {
        return Err(AppError::not_found("upload"));
    }
    let (Some(key), Some(sha)) = (row.object_key.as_deref(), row.sha256.as_deref()) else {
        return Err(AppError::not_found("upload"));
    };
    // The object first: a failure after it leaves the row committed, and the takedown can simply be repeated.
    app.storage.delete(key).await?;
    let url = app.storage.public_url(key);
    let mut tx = app.db.begin_write().await?;
    let ids = store::committed_with_sha(&mut tx, sha).await?;
    store::remove_sha(&mut tx, sha).await?;
    // Nothing keeps showing it: avatars go blank, galleries lose it.
    let products = store::clear_references(&mut tx, &url, key, now_ms()).await?;
    let data = serde_json::json!({"object_key": key, "urls": [url], "uploads": ids});
    crate::events::record(&mut tx, crate::events::Event::new("upload", id, "upload.taken_down", data)).await?;
    tx.commit().await?;
    for product in products {
        app.cache.invalidate(&crate::catalog::service::product_cache_key(product)).await;
    }
    app.events_wake.notify_one();
    metrics::counter!("uploads_total", "stage" => "taken_down", "purpose" => row.purpose.clone()).increment(1);
    Ok(())
}

/// The content type of a content-addressed key, from the extension its sniff gave it.
pub fn sniffed_type(key: &str) -> Option<&'static str> {
    let ext = key.rsplit_once('.').map(|(_, ext)| ext)?;
    Format::from_extension(ext).map(Format::content_type)
}
