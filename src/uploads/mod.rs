//! Uploads (seed chapter 3.3): the mini-program sends files **straight to object storage** with a short-lived,
//! single-key credential (an S3-style POST policy for `wx.uploadFile`, or a presigned PUT), then asks us to complete
//! the upload: we check what arrived (size, magic bytes, dimensions), strip its metadata, and copy it to an
//! immutable content-addressed key served through the CDN. Avatars and product images accept only such uploads.
//!
//! The embedded default keeps the bucket under the data dir and serves it at `/files` (`files.rs`), speaking the
//! same POST-policy protocol, verified the same way; scale-out uses any S3-compatible store (`storage.*`).

pub mod admin_routes;
pub mod config;
pub mod files;
pub mod image;
pub mod policy;
pub mod routes;
pub mod service;
pub mod storage;
pub mod store;
pub mod worker;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What an upload is for: decides who may ask for it, its size limit and where it may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// The user's avatar (`PATCH /api/v1/me`).
    Avatar,
    /// A photo in a review.
    ReviewPhoto,
    /// A product image (admin only).
    ProductImage,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Avatar => "avatar",
            Purpose::ReviewPhoto => "review_photo",
            Purpose::ProductImage => "product_image",
        }
    }
}

/// Who asked for an upload: it is theirs alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    User(i64),
    Admin(i64),
}

impl Owner {
    pub fn kind(self) -> &'static str {
        match self {
            Owner::User(_) => "user",
            Owner::Admin(_) => "admin",
        }
    }

    pub fn id(self) -> i64 {
        match self {
            Owner::User(id) | Owner::Admin(id) => id,
        }
    }

    /// The owner's segment of the incoming key.
    fn key_segment(self) -> String {
        match self {
            Owner::User(id) => format!("u{id}"),
            Owner::Admin(id) => format!("a{id}"),
        }
    }
}

/// `Cache-Control` of every content-addressed object: its bytes never change.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
