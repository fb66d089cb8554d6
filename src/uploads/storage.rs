//! The bucket: object operations through `object_store` (a directory under the data dir in the embedded default,
//! any S3-compatible store in scale-out) and what clients need to reach it (upload URL, signing keys, public base).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, Attributes, ObjectStore, PutOptions, PutPayload};

use crate::config::{Config, Mode};
use crate::error::AppError;
use crate::uploads::config::Provider;
use crate::uploads::policy::Credentials;

/// Where the embedded store is served on the main port.
pub const FILES_PATH: &str = "/files";

pub struct Storage {
    pub provider: Provider,
    store: Arc<dyn ObjectStore>,
    pub bucket: String,
    pub region: String,
    access_key_id: String,
    secret: String,
    /// The S3 API endpoint (for presigned PUTs): `<this server>/files` in the embedded mode.
    pub endpoint: url::Url,
    /// Where clients POST the form.
    pub upload_url: String,
    /// Public URLs are this + key (ends with `/`).
    pub public_base: String,
}

impl Storage {
    /// `own_addr`: this server's address as it reaches itself (the embedded bucket's default endpoint).
    pub fn from_config(config: &Config, own_addr: SocketAddr) -> anyhow::Result<Storage> {
        let storage = &config.storage;
        let (store, endpoint, access_key_id, secret): (Arc<dyn ObjectStore>, String, String, String) = match storage
            .provider
        {
            Provider::Local => {
                let dir = config.data_dir.join("files").join(&storage.bucket);
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)?.with_automatic_cleanup(true);
                // The embedded store's signing key: derived from the data key, never a default.
                let data_key = config.data_key().map_err(|e| anyhow::anyhow!("auth.data_key: {e}"))?;
                let secret = hex::encode(crate::crypto::hmac_sha256(&data_key, b"wxshop embedded storage key"));
                let endpoint = storage.endpoint.clone().unwrap_or_else(|| format!("http://{own_addr}{FILES_PATH}"));
                (Arc::new(store), endpoint, "wxshop-local".to_owned(), secret)
            }
            Provider::S3 | Provider::Cos | Provider::Oss => {
                let endpoint =
                    storage.endpoint.clone().unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", storage.region));
                let access_key_id = storage.access_key_id.clone().unwrap_or_default();
                let secret = storage.secret_access_key.as_ref().map(|s| s.expose().to_owned()).unwrap_or_default();
                let options = object_store::ClientOptions::new()
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_timeout(Duration::from_secs(30))
                    .with_connect_timeout(Duration::from_secs(3));
                let store = object_store::aws::AmazonS3Builder::new()
                    .with_endpoint(&endpoint)
                    .with_bucket_name(&storage.bucket)
                    .with_region(&storage.region)
                    .with_access_key_id(&access_key_id)
                    .with_secret_access_key(&secret)
                    .with_virtual_hosted_style_request(false)
                    .with_client_options(options)
                    .build()
                    .context("configuring the S3 client (storage.*)")?;
                (Arc::new(store), endpoint, access_key_id, secret)
            }
        };
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let upload_url = storage.upload_url.clone().unwrap_or_else(|| format!("{endpoint}/{}", storage.bucket));
        let mut public_base =
            storage.public_base_url.clone().unwrap_or_else(|| format!("{endpoint}/{}/", storage.bucket));
        if !public_base.ends_with('/') {
            public_base.push('/');
        }
        if config.mode == Mode::Dev && storage.provider == Provider::Local {
            tracing::info!(%upload_url, %public_base, "uploads go to the embedded store under the data dir");
        }
        Ok(Storage {
            provider: storage.provider,
            store,
            bucket: storage.bucket.clone(),
            region: storage.region.clone(),
            access_key_id,
            secret,
            endpoint: url::Url::parse(&endpoint).context("storage.endpoint")?,
            upload_url,
            public_base,
        })
    }

    pub fn credentials(&self) -> Credentials<'_> {
        Credentials { access_key_id: &self.access_key_id, secret: &self.secret, region: &self.region }
    }

    pub fn public_url(&self, key: &str) -> String {
        format!("{}{key}", self.public_base)
    }

    /// The object's size, or `None` when there is none.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, AppError> {
        match self.store.head(&ObjectPath::from(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, AppError> {
        match self.store.get(&ObjectPath::from(key)).await {
            Ok(result) => Ok(Some(result.bytes().await.map_err(unavailable)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Writes an object; `headers` (content type, cache control) go to stores that keep them. The embedded store
    /// serves its own headers, from the key.
    pub async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        cache_control: Option<&str>,
    ) -> Result<(), AppError> {
        let mut attributes = Attributes::new();
        if self.provider != Provider::Local {
            attributes.insert(Attribute::ContentType, content_type.to_owned().into());
            if let Some(cache_control) = cache_control {
                attributes.insert(Attribute::CacheControl, cache_control.to_owned().into());
            }
        }
        let options = PutOptions { attributes, ..PutOptions::default() };
        self.store
            .put_opts(&ObjectPath::from(key), PutPayload::from_bytes(body), options)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Deletes an object; one that is already gone is fine.
    pub async fn delete(&self, key: &str) -> Result<(), AppError> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(unavailable(error)),
        }
    }
}

fn unavailable(error: object_store::Error) -> AppError {
    tracing::error!(%error, "object storage call failed");
    metrics::counter!("storage_errors_total").increment(1);
    AppError::Unavailable { code: "storage_unavailable", message: "file storage is unavailable; retry".into() }
}
