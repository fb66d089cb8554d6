//! Flag changes: validated, versioned (optimistic concurrency), audited in the same transaction, announced.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::{now_ms, rfc3339};
use crate::error::{AppError, FieldError};
use crate::flags::engine::{Flag, Rule, Variant};
use crate::flags::{store, sync};
use crate::state::App;

/// A new flag: everything but its version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFlag {
    pub key: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub rollout_percent: u8,
    #[serde(default)]
    pub stickiness: Option<String>,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub variants: Vec<Variant>,
    #[serde(default)]
    pub client_visible: bool,
    /// Why (kept in the audit log).
    #[serde(default)]
    pub reason: Option<String>,
}

/// A change: only the fields given. Operators may change `enabled` and `rollout_percent` only.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateFlag {
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub rollout_percent: Option<u8>,
    pub stickiness: Option<String>,
    pub group_id: Option<String>,
    pub rules: Option<Vec<Rule>>,
    pub variants: Option<Vec<Variant>>,
    pub client_visible: Option<bool>,
    /// Why (kept in the audit log).
    pub reason: Option<String>,
}

impl UpdateFlag {
    /// Whether it touches only what an operator may (the kill switch and the rollout).
    pub fn operator_allowed(&self) -> bool {
        self.description.is_none()
            && self.stickiness.is_none()
            && self.group_id.is_none()
            && self.rules.is_none()
            && self.variants.is_none()
            && self.client_visible.is_none()
    }
}

/// One audited change.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlagChange {
    pub version: i64,
    /// `admin:<id>`.
    pub actor: String,
    /// `create`, `update`, `kill`, `revert`.
    pub action: String,
    pub reason: String,
    pub at: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Object)]
    pub after: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlagList {
    pub items: Vec<Flag>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlagHistory {
    pub items: Vec<FlagChange>,
}

/// Whether `key` is a well-formed flag key (anything else cannot exist: 404 without a query).
pub fn valid_key(key: &str) -> bool {
    (1..=64).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

fn known_key(key: &str) -> Result<(), AppError> {
    if valid_key(key) {
        Ok(())
    } else {
        Err(AppError::not_found("flag"))
    }
}

/// Checks a whole flag; every problem named.
pub fn check(flag: &Flag) -> Result<(), AppError> {
    let mut fields = Vec::new();
    if !valid_key(&flag.key) {
        fields.push(FieldError::new("key", "1 to 64 of a-z, 0-9, '.', '_', '-'"));
    }
    if flag.description.chars().count() > 500 {
        fields.push(FieldError::new("description", "at most 500 characters"));
    }
    if flag.rollout_percent > 100 {
        fields.push(FieldError::new("rollout_percent", "0 to 100"));
    }
    if flag.stickiness.is_empty() || flag.stickiness.len() > 64 {
        fields.push(FieldError::new("stickiness", "default, user_id, anon_id or an attribute name"));
    }
    if flag.group_id.as_ref().is_some_and(|g| g.is_empty() || g.len() > 64) {
        fields.push(FieldError::new("group_id", "1 to 64 characters"));
    }
    if flag.rules.len() > 50 {
        fields.push(FieldError::new("rules", "at most 50 rules"));
    }
    for (i, rule) in flag.rules.iter().enumerate() {
        if rule.id.is_empty() || rule.id.len() > 64 || flag.rules[..i].iter().any(|r| r.id == rule.id) {
            fields.push(FieldError::new(format!("rules[{i}].id"), "1 to 64 characters, unique"));
        }
        if rule.rollout_percent.is_some_and(|p| p > 100) {
            fields.push(FieldError::new(format!("rules[{i}].rollout_percent"), "0 to 100"));
        }
        if rule.constraints.len() > 20 {
            fields.push(FieldError::new(format!("rules[{i}].constraints"), "at most 20"));
        }
        for (j, c) in rule.constraints.iter().enumerate() {
            if c.attribute.is_empty() || c.attribute.len() > 64 {
                fields.push(FieldError::new(format!("rules[{i}].constraints[{j}].attribute"), "1 to 64 characters"));
            }
            if c.values.is_empty() || c.values.len() > 1000 || c.values.iter().any(|v| v.len() > 256) {
                fields.push(FieldError::new(
                    format!("rules[{i}].constraints[{j}].values"),
                    "1 to 1000 values of at most 256 characters",
                ));
            }
        }
    }
    if flag.variants.len() > 20 {
        fields.push(FieldError::new("variants", "at most 20 variants"));
    }
    for (i, variant) in flag.variants.iter().enumerate() {
        if variant.name.is_empty()
            || variant.name.len() > 64
            || flag.variants[..i].iter().any(|v| v.name == variant.name)
        {
            fields.push(FieldError::new(format!("variants[{i}].name"), "1 to 64 characters, unique"));
        }
        if variant.weight == 0 || variant.weight > 100_000 {
            fields.push(FieldError::new(format!("variants[{i}].weight"), "1 to 100000"));
        }
    }
    if fields.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(fields))
    }
}

/// The audit log keeps at most 255 characters of a reason.
fn check_reason(reason: &str) -> Result<(), AppError> {
    if reason.chars().count() > 255 {
        return Err(AppError::validation("reason", "at most 255 characters"));
    }
    Ok(())
}

fn actor(admin_id: i64) -> String {
    format!("admin:{admin_id}")
}

/// Commits the change, reloads this instance at once and tells the others.
async fn commit_and_announce(
    app: &App,
    tx: sqlx::Transaction<'static, sqlx::Any>,
    version: i64,
) -> Result<(), AppError> {
    use crate::db::Bounded;
    tx.commit().bounded().await?;
    if let Err(error) = sync::refresh(app, true).await {
        tracing::warn!(%error, "cannot reload the flags after a change; the poll will");
    }
    sync::announce(app, version).await;
    metrics::counter!("flag_changes_total").increment(1);
    Ok(())
}

pub async fn create(app: &App, admin_id: i64, input: CreateFlag) -> Result<Flag, AppError> {
    let flag = Flag {
        // Unset: the key, shown as such (two flags with one group id bucket users alike).
        group_id: Some(input.group_id.unwrap_or_else(|| input.key.clone())),
        key: input.key,
        description: input.description,
        enabled: input.enabled,
        rollout_percent: input.rollout_percent,
        stickiness: input.stickiness.unwrap_or_else(|| "default".into()),
        rules: input.rules,
        variants: input.variants,
        client_visible: input.client_visible,
        version: 1,
    };
    check(&flag)?;
    check_reason(input.reason.as_deref().unwrap_or(""))?;
    let mut tx = app.db.begin_write().await?;
    if store::get_for_update(&mut tx, &flag.key, app.db.dialect.for_update()).await?.is_some() {
        return Err(AppError::conflict("flag_exists", "a flag with this key exists"));
    }
    let now = now_ms();
    store::insert(&mut tx, &flag, now).await.map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            AppError::conflict("flag_exists", "a flag with this key exists")
        }
        _ => e.into(),
    })?;
    let reason = input.reason.unwrap_or_default();
    let actor = actor(admin_id);
    let entry = store::AuditEntry {
        key: &flag.key,
        version: flag.version,
        actor: &actor,
        action: "create",
        before: None,
        after: &flag,
        reason: &reason,
        at: now,
    };
    store::audit(&mut tx, &entry).await?;
    let global = store::bump(&mut tx).await?;
    commit_and_announce(app, tx, global).await?;
    Ok(flag)
}

/// Applies `change` to the flag if its version is still `expected` (409 `version_conflict` otherwise).
async fn change(
    app: &App,
    admin_id: i64,
    key: &str,
    expected: Option<i64>,
    action: &str,
    reason: &str,
    apply: impl FnOnce(&mut Flag) -> Result<(), AppError>,
) -> Result<Flag, AppError> {
    known_key(key)?;
    check_reason(reason)?;
    let mut tx = app.db.begin_write().await?;
    let before =
        store::get_for_update(&mut tx, key, app.db.dialect.for_update()).await?.ok_or(AppError::not_found("flag"))?;
    if let Some(expected) = expected {
        if expected != before.version {
            return Err(AppError::conflict(
                "version_conflict",
                format!(
                    "the flag is at version {}, not {expected}: reload it and apply the change again",
                    before.version
                ),
            ));
        }
    }
    let mut after = before.clone();
    apply(&mut after)?;
    after.key = before.key.clone();
    after.version = before.version + 1;
    check(&after)?;
    let now = now_ms();
    store::update(&mut tx, &after, now).await?;
    let actor = actor(admin_id);
    let entry = store::AuditEntry {
        key,
        version: after.version,
        actor: &actor,
        action,
        before: Some(&before),
        after: &after,
        reason,
        at: now,
    };
    store::audit(&mut tx, &entry).await?;
    let global = store::bump(&mut tx).await?;
    commit_and_announce(app, tx, global).await?;
    Ok(after)
}

pub async fn update(
    app: &App,
    admin_id: i64,
    key: &str,
    expected: Option<i64>,
    input: UpdateFlag,
) -> Result<Flag, AppError> {
    let reason = input.reason.clone().unwrap_or_default();
    change(app, admin_id, key, expected, "update", &reason, |flag| {
        if let Some(v) = input.description {
            flag.description = v;
        }
        if let Some(v) = input.enabled {
            flag.enabled = v;
        }
        if let Some(v) = input.rollout_percent {
            flag.rollout_percent = v;
        }
        if let Some(v) = input.stickiness {
            flag.stickiness = v;
        }
        if let Some(v) = input.group_id {
            flag.group_id = Some(v);
        }
        if let Some(v) = input.rules {
            flag.rules = v;
        }
        if let Some(v) = input.variants {
            flag.variants = v;
        }
        if let Some(v) = input.client_visible {
            flag.client_visible = v;
        }
        Ok(())
    })
    .await
}

/// The kill switch: off for everyone, whatever the rules say.
pub async fn kill(app: &App, admin_id: i64, key: &str, reason: &str) -> Result<Flag, AppError> {
    change(app, admin_id, key, None, "kill", reason, |flag| {
        flag.enabled = false;
        Ok(())
    })
    .await
}

/// Restores the flag exactly as it was right after `version` (as a new version).
pub async fn revert(app: &App, admin_id: i64, key: &str, version: i64, reason: &str) -> Result<Flag, AppError> {
    known_key(key)?;
    let mut conn = app.db.pool.acquire().await?;
    let target = store::at_version(&mut conn, key, version).await?.ok_or(AppError::not_found("flag_version"))?;
    drop(conn);
    change(app, admin_id, key, None, "revert", reason, move |flag| {
        *flag = target;
        Ok(())
    })
    .await
}

pub async fn history(app: &App, key: &str) -> Result<FlagHistory, AppError> {
    known_key(key)?;
    let rows = store::history(&app.db.pool, key).await?;
    if rows.is_empty() {
        return Err(AppError::not_found("flag"));
    }
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap_or(serde_json::Value::Null);
    let items = rows
        .into_iter()
        .map(|r| FlagChange {
            version: r.version,
            actor: r.actor,
            action: r.action,
            reason: r.reason,
            at: rfc3339(r.at),
            before: r.before.as_deref().map(parse),
            after: parse(&r.after),
        })
        .collect();
    Ok(FlagHistory { items })
}

/// The stored flag (the source of truth, not the snapshot).
pub async fn get(app: &App, key: &str) -> Result<Flag, AppError> {
    known_key(key)?;
    let mut conn = app.db.pool.acquire().await?;
    store::get_for_update(&mut conn, key, "").await?.ok_or(AppError::not_found("flag"))
}

pub async fn list(app: &App) -> Result<FlagList, AppError> {
    let (_, items) = store::load_all(&app.db).await?;
    Ok(FlagList { items })
}
