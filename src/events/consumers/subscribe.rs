//! WeChat subscribe messages (订阅消息) to the buyer: "paid" on `order.paid`, "shipped" on `order.shipped`, with the
//! templates `wechat.subscribe_template_paid` / `wechat.subscribe_template_shipped` (unset: no message; with the
//! WeChat simulator, its own templates).
//!
//! A message is a side effect outside the database: it is sent inside the consumer's transaction and the inbox row
//! commits after it, so only a crash between WeChat's answer and that commit can send one twice. The event id rides
//! in the message's page (`…&event=<id>`) as its idempotency key, so such a duplicate can be recognised.

use serde_json::json;
use sqlx::{AnyConnection, Row};

use crate::db::Bounded;
use crate::error::AppError;
use crate::events::consumers::data_i64;
use crate::events::envelope::CloudEvent;
use crate::state::App;
use crate::wechat::WechatError;

pub async fn apply(app: &App, conn: &mut AnyConnection, event: &CloudEvent) -> Result<(), AppError> {
    let config = &app.config.wechat;
    let simulated = app.config.wechat_simulated();
    let (template, what) = match event.kind() {
        "order.paid" => (
            config.subscribe_template_paid.as_deref().or(simulated.then_some(crate::simulator::SIM_TEMPLATE_PAID)),
            "已支付",
        ),
        "order.shipped" => (
            config
                .subscribe_template_shipped
                .as_deref()
                .or(simulated.then_some(crate::simulator::SIM_TEMPLATE_SHIPPED)),
            "已发货",
        ),
        _ => return Ok(()),
    };
    let Some(template) = template else { return Ok(()) };
    let order_id = data_i64(event, "order_id")?;
    let row = sqlx::query(
        "SELECT o.order_no, o.total_fen, o.carrier, o.tracking_no, u.openid FROM shop_order o \
         JOIN app_user u ON u.id = o.user_id WHERE o.id = ?",
    )
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .bounded()
    .await?;
    let Some(row) = row else { return Ok(()) };
    let order_no: String = row.try_get("order_no")?;
    let total: i64 = row.try_get("total_fen")?;
    let tracking: Option<String> = row.try_get("tracking_no")?;
    let body = json!({
        "touser": row.try_get::<String, _>("openid")?,
        "template_id": template,
        "page": format!("pages/order/detail?id={order_id}&event={}", event.id),
        "miniprogram_state": "formal",
        "lang": "zh_CN",
        "data": {
            "character_string1": { "value": order_no },
            "phrase2": { "value": what },
            "amount3": { "value": format!("{}.{:02}元", total / 100, total % 100) },
            "thing4": { "value": tracking.unwrap_or_default().chars().take(20).collect::<String>() },
        },
    });
    match app.wechat.send_subscribe_message(&body).await {
        Ok(()) => {
            metrics::counter!("subscribe_messages_total", "outcome" => "sent").increment(1);
            Ok(())
        }
        // The buyer did not subscribe (or refused): nothing to retry.
        Err(WechatError::Refused(code)) => {
            metrics::counter!("subscribe_messages_total", "outcome" => "refused").increment(1);
            tracing::info!(code, order_id, "the buyer does not take this subscribe message");
            Ok(())
        }
        Err(error) => Err(AppError::Internal(anyhow::anyhow!("subscribeMessage.send: {error}"))),
    }
}
