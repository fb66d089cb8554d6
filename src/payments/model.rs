//! WeChat Pay's JSON (transactions, refunds, notifications) and what our payment routes answer.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `amount` of a transaction. `total` is what the order asked for; `payer_total` excludes WeChat-funded coupons,
/// so the business check compares `total`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransactionAmount {
    pub total: i64,
    #[serde(default)]
    pub payer_total: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub payer_currency: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payer {
    pub openid: String,
}

/// A transaction, as the query answers it and a `TRANSACTION.SUCCESS` notification carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transaction {
    pub appid: String,
    pub mchid: String,
    pub out_trade_no: String,
    #[serde(default)]
    pub transaction_id: Option<String>,
    #[serde(default)]
    pub trade_type: Option<String>,
    /// `SUCCESS`, `REFUND`, `NOTPAY`, `CLOSED`, `REVOKED`, `USERPAYING`, `PAYERROR`.
    pub trade_state: String,
    #[serde(default)]
    pub trade_state_desc: Option<String>,
    #[serde(default)]
    pub success_time: Option<String>,
    #[serde(default)]
    pub payer: Option<Payer>,
    #[serde(default)]
    pub amount: Option<TransactionAmount>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefundAmount {
    pub total: i64,
    pub refund: i64,
    #[serde(default)]
    pub payer_total: Option<i64>,
    #[serde(default)]
    pub payer_refund: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
}

/// A refund, as the refund call and query answer it (`status`), or a refund notification carries it
/// (`refund_status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefundInfo {
    #[serde(default)]
    pub refund_id: Option<String>,
    pub out_refund_no: String,
    #[serde(default)]
    pub out_trade_no: Option<String>,
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// `SUCCESS`, `CLOSED`, `PROCESSING`, `ABNORMAL`.
    #[serde(default, alias = "refund_status")]
    pub status: Option<String>,
    #[serde(default)]
    pub success_time: Option<String>,
    #[serde(default)]
    pub mchid: Option<String>,
    pub amount: RefundAmount,
}

/// The notification envelope.
#[derive(Debug, Deserialize)]
pub struct Notification {
    pub id: String,
    pub event_type: String,
    #[serde(default)]
    pub resource_type: Option<String>,
    pub resource: EncryptedResource,
}

#[derive(Debug, Deserialize)]
pub struct EncryptedResource {
    pub algorithm: String,
    pub ciphertext: String,
    #[serde(default)]
    pub associated_data: Option<String>,
    pub nonce: String,
    #[serde(default)]
    pub original_type: Option<String>,
}

/// Where an order's payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// No prepay yet.
    None,
    /// Prepaid, not paid (yet).
    Pending,
    Paid,
    /// Closed at WeChat (the order was cancelled unpaid).
    Closed,
    /// Paid after the order was cancelled: refunded in full automatically.
    RefundedAfterCancel,
}

impl PaymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::None => "none",
            PaymentState::Pending => "pending",
            PaymentState::Paid => "paid",
            PaymentState::Closed => "closed",
            PaymentState::RefundedAfterCancel => "refunded_after_cancel",
        }
    }

    pub fn parse(s: &str) -> PaymentState {
        match s {
            "pending" => PaymentState::Pending,
            "paid" => PaymentState::Paid,
            "closed" => PaymentState::Closed,
            "refunded_after_cancel" => PaymentState::RefundedAfterCancel,
            _ => PaymentState::None,
        }
    }
}

/// The five fields `wx.requestPayment` takes, all strings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestPayment {
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    /// `prepay_id=…`.
    pub package: String,
    /// Always `RSA`.
    #[serde(rename = "signType")]
    pub sign_type: String,
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

/// An order's payment as the mini-program sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentView {
    pub order_id: i64,
    pub out_trade_no: String,
    pub state: PaymentState,
    /// The order's status after what WeChat said.
    pub order_status: crate::orders::OrderStatus,
    pub amount_fen: i64,
    pub transaction_id: Option<String>,
    pub paid_at: Option<String>,
}

/// Where a refund is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Asked for by the buyer, waiting for an admin.
    Requested,
    Rejected,
    /// Sent to (or being sent to) WeChat Pay.
    Processing,
    Succeeded,
    /// WeChat Pay could not pay it back (e.g. the card is frozen): not final, needs a person.
    Abnormal,
    /// Failed for good; the order went back to where it was.
    Closed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Requested => "requested",
            RefundStatus::Rejected => "rejected",
            RefundStatus::Processing => "processing",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Abnormal => "abnormal",
            RefundStatus::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<RefundStatus> {
        [Self::Requested, Self::Rejected, Self::Processing, Self::Succeeded, Self::Abnormal, Self::Closed]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// A refund as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Refund {
    pub id: i64,
    pub order_id: i64,
    pub out_refund_no: String,
    /// `request` (the buyer asked) or `after_cancel` (paid after the order was cancelled).
    pub kind: String,
    pub status: RefundStatus,
    pub amount_fen: i64,
    pub reason: String,
    pub decision_note: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}
