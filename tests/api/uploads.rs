//! Uploads straight to storage, in both storage modes: the embedded store (`/files` on the binary) and a real
//! S3-compatible server (s3s-fs, its own process) that enforces the POST policy. Then the takedown's CDN purge.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use sqlx::Row;

use crate::helpers::{backends, spawn_app_with, Backend, TestApp};
use crate::servers::OwnS3;
use wxshop::uploads::config::{CdnProvider, Provider};

/// A 1×1 baseline JPEG carrying an EXIF segment with a GPS position and a comment, after `tag` bytes in an APP3
/// segment (kept by the stripper) so different tags make different images.
fn jpeg(tag: &str) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    out.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
    let exif = b"Exif\0\0MM\0*\0\0\0\x08GPSLatitude=31.2304N;GPSLongitude=121.4737E";
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(exif);
    out.extend_from_slice(&[0xFF, 0xE3]);
    out.extend_from_slice(&((tag.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(&[
        0xFF, 0xDB, 0x00, 0x43, 0x00, 0x08, 0x06, 0x06, 0x07, 0x06, 0x05, 0x08, 0x07, 0x07, 0x07, 0x09, 0x09, 0x08,
        0x0A, 0x0C, 0x14, 0x0D, 0x0C, 0x0B, 0x0B, 0x0C, 0x19, 0x12, 0x13, 0x0F, 0x14, 0x1D, 0x1A, 0x1F, 0x1E, 0x1D,
        0x1A, 0x1C, 0x1C, 0x20, 0x24, 0x2E, 0x27, 0x20, 0x22, 0x2C, 0x23, 0x1C, 0x1C, 0x28, 0x37, 0x29, 0x2C, 0x30,
        0x31, 0x34, 0x34, 0x34, 0x1F, 0x27, 0x39, 0x3D, 0x38, 0x32, 0x3C, 0x2E, 0x33, 0x34, 0x32, 0xFF, 0xC0, 0x00,
        0x0B, 0x08, 0x00, 0x01, 0x00, 0x01, 0x01, 0x01, 0x11, 0x00, 0xFF, 0xC4, 0x00, 0x14, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0xFF, 0xC4,
        0x00, 0x14, 0x10, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x37, 0xFF, 0xD9,
    ]);
    out
}

/// What `wx.uploadFile` sends: the returned fields as form data, then the file (field `file`, last).
async fn send_form(client: &reqwest::Client, ticket: &Value, bytes: Vec<u8>, content_type: &str) -> reqwest::Response {
    let fields: BTreeMap<String, String> = serde_json::from_value(ticket["fields"].clone()).unwrap();
    send_fields(client, ticket["url"].as_str().unwrap(), &fields, bytes, content_type).await
}

async fn send_fields(
    client: &reqwest::Client,
    url: &str,
    fields: &BTreeMap<String, String>,
    bytes: Vec<u8>,
    content_type: &str,
) -> reqwest::Response {
    let mut form = Form::new();
    for (name, value) in fields {
        form = form.text(name.clone(), value.clone());
    }
    let file = Part::bytes(bytes).file_name("photo.jpg").mime_str(content_type).unwrap();
    client.post(url).multipart(form.part("file", file)).send().await.unwrap()
}

async fn create(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    app.post("/api/v1/uploads", &body, Some(token)).await
}

async fn complete(app: &TestApp, token: &str, id: &str) -> (u16, Value) {
    app.post(&format!("/api/v1/uploads/{id}/complete"), &json!({}), Some(token)).await
}

enum Mode {
    Embedded,
    S3(OwnS3),
}

impl Mode {
    fn name(&self) -> &'static str {
        match self {
            Mode::Embedded => "embedded store",
            Mode::S3(_) => "s3 (s3s-fs)",
        }
    }
}

async fn spawn(backend: &Backend, mode: &Mode, customize: impl FnOnce(&mut wxshop::config::Config)) -> TestApp {
    spawn_app_with(backend, |config| {
        if let Mode::S3(s3) = mode {
            config.storage.provider = Provider::S3;
            config.storage.endpoint = Some(s3.endpoint());
            config.storage.bucket = s3.bucket.clone();
            config.storage.access_key_id = Some(s3.access_key.clone());
            config.storage.secret_access_key = Some(wxshop::config::Secret::new(s3.secret_key.clone()));
        }
        config.storage.avatar_max_bytes = 4_000;
        customize(config);
    })
    .await
}

/// The object at `key`, read back from the store the app uses.
async fn object(app: &TestApp, key: &str) -> Option<Vec<u8>> {
    app.state.storage.get(key).await.unwrap().map(|b| b.to_vec())
}

/// When the object's file (in the embedded bucket's or the S3 server's directory) was last written.
fn object_mtime(app: &TestApp, mode: &Mode, key: &str) -> std::time::SystemTime {
    let path = match mode {
        Mode::Embedded => app.config.data_dir.join("files").join(&app.config.storage.bucket).join(key),
        Mode::S3(s3) => s3.root.path().join(&s3.bucket).join(key),
    };
    std::fs::metadata(&path).and_then(|m| m.modified()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn an_image_goes_straight_to_storage_is_checked_and_served_at_its_content_address() {
    let last = backends().pop().unwrap();
    for (backend, mode) in [(Backend::Embedded, Mode::Embedded), (last, Mode::S3(OwnS3::start().await))] {
        eprintln!("storage: {}", mode.name());
        let app = spawn(&backend, &mode, |_| {}).await;
        let alice = app.login("alice-up").await;
        let bob = app.login("bob-up").await;
        let image = jpeg("first");

        // 1. The credential: a POST policy for this user's incoming key, short-lived.
        let (status, ticket) = create(
            &app,
            &alice.access_token,
            json!({"purpose": "avatar", "content_type": "image/jpeg", "size": image.len()}),
        )
        .await;
        assert_eq!(status, 200, "{ticket}");
        assert_eq!(ticket["method"], "POST");
        let key = ticket["fields"]["key"].as_str().unwrap().to_owned();
        let id = ticket["id"].as_str().unwrap().to_owned();
        assert_eq!(key, format!("incoming/avatar/u{}/{id}", alice.user_id));
        assert_eq!(ticket["fields"]["Content-Type"], "image/jpeg");
        let expires = time::OffsetDateTime::parse(
            ticket["expires_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let left = (expires - time::OffsetDateTime::now_utc()).whole_seconds();
        assert!((0..=600).contains(&left), "expires in {left} s");

        // Not uploaded yet.
        let (status, body) = complete(&app, &alice.access_token, &id).await;
        assert_eq!((status, body["code"].as_str()), (409, Some("upload_not_received")), "{body}");

        // 2. The upload, as wx.uploadFile does it.
        let response = send_form(&app.client, &ticket, image.clone(), "image/jpeg").await;
        assert_eq!(response.status(), 204, "{}", response.text().await.unwrap());

        // 3. Completion: checked, stripped, content-addressed.
        let (status, done) = complete(&app, &alice.access_token, &id).await;
        assert_eq!(status, 200, "{done}");
        assert_eq!((done["status"].as_str(), done["content_type"].as_str()), (Some("committed"), Some("image/jpeg")));
        assert_eq!((done["width"].as_u64(), done["height"].as_u64()), (Some(1), Some(1)));
        let sha = done["sha256"].as_str().unwrap().to_owned();
        let final_key = format!("img/{}/{sha}.jpg", &sha[..2]);
        assert!(done["url"].as_str().unwrap().ends_with(&final_key), "{done}");
        let stored = object(&app, &final_key).await.expect("the content-addressed object exists");
        assert_eq!(wxshop::crypto::sha256_hex(&stored), sha);
        let text = String::from_utf8_lossy(&stored);
        assert!(!text.contains("GPSLatitude") && !text.contains("Exif"), "EXIF/GPS stripped");
        assert!(object(&app, &key).await.is_none(), "the incoming object is deleted");
        if let Mode::S3(s3) = &mode {
            assert_eq!(s3.object(&final_key).as_deref(), Some(&stored[..]), "in the S3 server's bucket");
            // What the CDN fetches from the bucket: the stripped bytes, with the type and caching set on the object.
            let creds = app.state.storage.credentials();
            let host = format!("127.0.0.1:{}", s3.port);
            let path = format!("/{}/{final_key}", s3.bucket);
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let query = wxshop::uploads::policy::presign_query("GET", &host, &path, &[], now, 300, &creds);
            let response = app.client.get(format!("http://{host}{path}?{query}")).send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-type"], "image/jpeg");
            assert_eq!(response.headers()["cache-control"], "public, max-age=31536000, immutable");
            let served = response.bytes().await.unwrap();
            assert_eq!(&served[..], &stored[..]);
            assert!(!String::from_utf8_lossy(&served).contains("GPSLatitude"), "no GPS in the served bytes");
        }
        // Again: the same answer.
        let (status, again) = complete(&app, &alice.access_token, &id).await;
        assert_eq!((status, &again), (200, &done));

        // 4. Served (embedded store): the right headers, Range, conditional requests.
        if let Mode::Embedded = mode {
            let url = done["url"].as_str().unwrap();
            let response = app.client.get(url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            let headers = response.headers().clone();
            assert_eq!(headers["content-type"], "image/jpeg");
            assert_eq!(headers["x-content-type-options"], "nosniff");
            assert_eq!(headers["content-security-policy"], "default-src 'none'; sandbox");
            assert_eq!(headers["cache-control"], "public, max-age=31536000, immutable");
            assert_eq!(headers["etag"], format!("\"{sha}\"").as_str());
            let served = response.bytes().await.unwrap();
            assert_eq!(&served[..], &stored[..]);
            assert!(!String::from_utf8_lossy(&served).contains("GPSLatitude"), "no GPS in the served bytes");
            let range = app.client.get(url).header("range", "bytes=0-9").send().await.unwrap();
            assert_eq!(range.status(), 206);
            assert_eq!(range.headers()["content-range"], format!("bytes 0-9/{}", stored.len()).as_str());
            assert_eq!(range.bytes().await.unwrap().len(), 10);
            let cached = app.client.get(url).header("if-none-match", format!("\"{sha}\"")).send().await.unwrap();
            assert_eq!(cached.status(), 304);
            // Nothing but content-addressed images is served.
            let incoming = format!("{}/files/wxshop/{key}", app.address);
            assert_eq!(app.client.get(&incoming).send().await.unwrap().status(), 404);
        }

        // 5. The same bytes again: one object, the same URL, not written again.
        let written = object_mtime(&app, &mode, &final_key);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (_, ticket2) = create(
            &app,
            &alice.access_token,
            json!({"purpose": "avatar", "content_type": "image/jpeg", "size": image.len()}),
        )
        .await;
        assert_eq!(send_form(&app.client, &ticket2, image.clone(), "image/jpeg").await.status(), 204);
        let (status, done2) = complete(&app, &alice.access_token, ticket2["id"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{done2}");
        assert_eq!((done2["url"].clone(), done2["sha256"].clone()), (done["url"].clone(), done["sha256"].clone()));
        assert_eq!(object_mtime(&app, &mode, &final_key), written, "the existing object is reused, not rewritten");

        // 6. The avatar: only my own committed avatar upload.
        let patch = |token: String, body: Value| {
            let app = &app;
            async move { app.call(reqwest::Method::PATCH, "/api/v1/me", Some(&body), Some(&token)).await }
        };
        let (status, _, error) = patch(bob.access_token.clone(), json!({"avatar_upload_id": id})).await;
        assert_eq!((status, error["code"].as_str()), (404, Some("upload_not_found")), "another user's upload");
        let (status, _, me) = patch(alice.access_token.clone(), json!({"avatar_upload_id": id})).await;
        assert_eq!(status, 200, "{me}");
        assert_eq!(me["avatar_url"], done["url"]);
        let (status, _, error) = patch(alice.access_token.clone(), json!({"avatar_upload_id": "0".repeat(32)})).await;
        assert_eq!((status, error["code"].as_str()), (404, Some("upload_not_found")));
        // Another user cannot complete (or learn about) my upload either.
        let (status, _) = complete(&app, &bob.access_token, &id).await;
        assert_eq!(status, 404);

        // 7. HTML and SVG with an image type and a .jpg name: accepted by storage (the type is only declared),
        // refused on completion by their bytes, and deleted.
        for (body, what) in [
            (&b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"[..], "html"),
            (&b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"><rect/></svg>"[..], "svg"),
        ] {
            let (_, ticket) = create(
                &app,
                &alice.access_token,
                json!({"purpose": "review_photo", "content_type": "image/jpeg", "size": body.len()}),
            )
            .await;
            assert_eq!(send_form(&app.client, &ticket, body.to_vec(), "image/jpeg").await.status(), 204, "{what}");
            let id = ticket["id"].as_str().unwrap();
            let (status, error) = complete(&app, &alice.access_token, id).await;
            assert_eq!((status, error["code"].as_str()), (422, Some("unsupported_file_type")), "{what}: {error}");
            assert!(object(&app, ticket["fields"]["key"].as_str().unwrap()).await.is_none(), "{what}: object deleted");
            let (status, again) = complete(&app, &alice.access_token, id).await;
            assert_eq!((status, again["code"].as_str()), (422, Some("unsupported_file_type")));
            // A rejected upload is no avatar.
            let (status, _, _) = patch(alice.access_token.clone(), json!({"avatar_upload_id": id})).await;
            assert_eq!(status, 404);
        }

        // 8. The storage edge refuses: oversize, another key, an expired policy, a tampered signature.
        let (_, ticket) =
            create(&app, &alice.access_token, json!({"purpose": "avatar", "content_type": "image/jpeg", "size": 100}))
                .await;
        let key = ticket["fields"]["key"].as_str().unwrap().to_owned();
        let response = send_form(&app.client, &ticket, vec![0xFF; 4_001], "image/jpeg").await;
        assert_eq!(response.status(), 400, "over content-length-range: {}", response.text().await.unwrap());
        assert!(object(&app, &key).await.is_none());
        let fields: BTreeMap<String, String> = serde_json::from_value(ticket["fields"].clone()).unwrap();
        let url = ticket["url"].as_str().unwrap();
        let mut other_key = fields.clone();
        other_key.insert("key".into(), format!("img/00/{}.jpg", "0".repeat(64)));
        let response = send_fields(&app.client, url, &other_key, image.clone(), "image/jpeg").await;
        assert!(matches!(response.status().as_u16(), 400 | 403), "a key outside the policy: {}", response.status());
        assert!(object(&app, &format!("img/00/{}.jpg", "0".repeat(64))).await.is_none());
        let mut tampered = fields.clone();
        let signature = tampered["x-amz-signature"].clone();
        let flipped = format!("{}{}", if signature.starts_with('a') { 'b' } else { 'a' }, &signature[1..]);
        tampered.insert("x-amz-signature".into(), flipped);
        let response = send_fields(&app.client, url, &tampered, image.clone(), "image/jpeg").await;
        assert_eq!(response.status(), 403, "a tampered signature");
        let mut wrong_type = fields.clone();
        wrong_type.insert("Content-Type".into(), "text/html".into());
        let response = send_fields(&app.client, url, &wrong_type, image.clone(), "text/html").await;
        assert!(matches!(response.status().as_u16(), 400 | 403), "another content type: {}", response.status());
        // An expired policy, signed with the right key (the server's credentials) for the right key.
        let storage = &app.state.storage;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let grant = wxshop::uploads::policy::UploadGrant {
            bucket: &storage.bucket,
            key: &key,
            content_type: "image/jpeg",
            max_bytes: 4_000,
            now: now - 700,
            expires_at: now - 100,
        };
        let expired = wxshop::uploads::policy::post_fields(storage.provider, &grant, &storage.credentials());
        let response = send_fields(&app.client, url, &expired, image.clone(), "image/jpeg").await;
        assert_eq!(response.status(), 403, "an expired policy");
        assert!(object(&app, &key).await.is_none(), "nothing stored by refused uploads");

        // 9. Presigned PUT (wx.request with an ArrayBuffer).
        let (status, put) = create(
            &app,
            &alice.access_token,
            json!({"purpose": "review_photo", "content_type": "image/jpeg", "size": 500, "method": "PUT"}),
        )
        .await;
        assert_eq!(status, 200, "{put}");
        assert_eq!(
            (put["method"].as_str(), put["headers"]["Content-Type"].as_str()),
            (Some("PUT"), Some("image/jpeg"))
        );
        let url = put["url"].as_str().unwrap();
        let wrong = app.client.put(url).header("content-type", "text/html").body(jpeg("put")).send().await.unwrap();
        assert_eq!(wrong.status(), 403, "the content type is signed");
        let ok = app.client.put(url).header("content-type", "image/jpeg").body(jpeg("put")).send().await.unwrap();
        assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap());
        let (status, done_put) = complete(&app, &alice.access_token, put["id"].as_str().unwrap()).await;
        assert_eq!((status, done_put["purpose"].as_str()), (200, Some("review_photo")), "{done_put}");
        assert_ne!(done_put["sha256"], done["sha256"]);
    }
}

#[tokio::test]
async fn bad_requests_limits_and_the_sweep_of_abandoned_uploads() {
    let app = spawn(&Backend::Embedded, &Mode::Embedded, |config| {
        config.storage.daily_quota = 6;
    })
    .await;
    let user = app.login("carol-up").await;
    let token = &user.access_token;
    for (body, field) in [
        (json!({"purpose": "product_image", "content_type": "image/jpeg", "size": 10}), "purpose"),
        (json!({"purpose": "avatar", "content_type": "image/svg+xml", "size": 10}), "content_type"),
        (json!({"purpose": "avatar", "content_type": "text/html", "size": 10}), "content_type"),
        (json!({"purpose": "avatar", "content_type": "image/png", "size": 0}), "size"),
    ] {
        let (status, error) = create(&app, token, body.clone()).await;
        assert_eq!((status, error["fields"][0]["field"].as_str()), (422, Some(field)), "{body}: {error}");
    }
    let (status, error) =
        create(&app, token, json!({"purpose": "avatar", "content_type": "image/png", "size": 4_001})).await;
    assert_eq!((status, error["code"].as_str()), (422, Some("file_too_large")), "{error}");
    let (status, _) = create(&app, token, json!({"purpose": "selfie", "content_type": "image/png", "size": 10})).await;
    assert_eq!(status, 422);
    let (status, _) =
        app.post("/api/v1/uploads", &json!({"purpose": "avatar", "content_type": "image/png", "size": 10}), None).await;
    assert_eq!(status, 401);
    let (status, error) = complete(&app, token, "not-an-id").await;
    assert_eq!((status, error["code"].as_str()), (404, Some("upload_not_found")));

    // An upload never completed: the sweep deletes its object and expires it.
    let (_, ticket) =
        create(&app, token, json!({"purpose": "avatar", "content_type": "image/jpeg", "size": 500})).await;
    assert_eq!(send_form(&app.client, &ticket, jpeg("abandoned"), "image/jpeg").await.status(), 204);
    let key = ticket["fields"]["key"].as_str().unwrap();
    assert!(object(&app, key).await.is_some());
    let id = ticket["id"].as_str().unwrap();
    assert_eq!(wxshop::uploads::worker::sweep(&app.state).await.unwrap(), 0, "not abandoned yet");
    sqlx::query("UPDATE upload SET expires_at = 0 WHERE id = ?").bind(id).execute(&app.state.db.pool).await.unwrap();
    assert_eq!(wxshop::uploads::worker::sweep(&app.state).await.unwrap(), 1);
    assert!(object(&app, key).await.is_none(), "the abandoned object is deleted");
    let (status, error) = complete(&app, token, id).await;
    assert_eq!((status, error["code"].as_str()), (422, Some("upload_expired")), "{error}");

    // The daily quota (6 credentials, 1 used above): the 7th of the day is refused.
    for _ in 0..5 {
        let (status, body) =
            create(&app, token, json!({"purpose": "avatar", "content_type": "image/jpeg", "size": 10})).await;
        assert_eq!(status, 200, "{body}");
    }
    let response = app
        .client
        .post(app.url("/api/v1/uploads"))
        .bearer_auth(token)
        .json(&json!({"purpose": "avatar", "content_type": "image/jpeg", "size": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "upload_quota_exceeded");
}

async fn admin_upload(app: &TestApp, admin: &str, tag: &str) -> Value {
    let bytes = jpeg(tag);
    let body = json!({"purpose": "product_image", "content_type": "image/jpeg", "size": bytes.len()});
    let (status, ticket) = app.post("/admin/api/v1/uploads", &body, Some(admin)).await;
    assert_eq!(status, 200, "{ticket}");
    assert_eq!(send_form(&app.client, &ticket, bytes, "image/jpeg").await.status(), 204);
    let path = format!("/admin/api/v1/uploads/{}/complete", ticket["id"].as_str().unwrap());
    let (status, done) = app.post(&path, &json!({}), Some(admin)).await;
    assert_eq!(status, 200, "{done}");
    done
}

async fn purge_rows(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query("SELECT url, status FROM cdn_purge ORDER BY id")
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (wxshop::db::get_text(r, "url").unwrap(), wxshop::db::get_text(r, "status").unwrap()))
        .collect()
}

#[tokio::test]
async fn taking_product_images_down_purges_the_cdn_in_one_batch_retried_and_within_quota() {
    for backend in backends() {
        let app = spawn_app_with(&backend, |config| {
            config.cdn.provider = CdnProvider::Tencent;
            config.cdn.daily_quota = 4;
            // Longer than the pause between calls (1 / max_calls_per_sec): a retry waits for the next pass.
            config.cdn.retry_base_ms = 400;
            // The test drives the purger; the background one only makes its first pass at start-up.
            config.cdn.worker_interval_ms = 3_600_000;
        })
        .await;
        let operator = app.admin_token("operator").await;
        let admin = app.admin_token("admin").await;
        let viewer = app.admin_token("viewer").await;
        let mut images = Vec::new();
        for i in 0..5 {
            images.push(admin_upload(&app, &operator, &format!("product-{i}")).await);
        }
        // A product takes upload ids, not URLs.
        let ids: Vec<&str> = images.iter().take(2).map(|i| i["id"].as_str().unwrap()).collect();
        let product = json!({"category_id": 1, "title": "相机", "image_upload_ids": ids,
            "skus": [{"title": "黑色", "price_fen": 100, "stock": 1}]});
        let (status, created) = app.post("/admin/api/v1/products", &product, Some(&operator)).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["image_urls"], json!([images[0]["url"], images[1]["url"]]));
        let product_path = format!("/api/v1/products/{}", created["id"]);
        let (_, shown) = app.get_json(&product_path).await;
        assert_eq!(shown["image_urls"], created["image_urls"], "(and now cached)");
        let user = app.login("dave-up").await;
        let (_, avatar) =
            create(&app, &user.access_token, json!({"purpose": "avatar", "content_type": "image/jpeg", "size": 10}))
                .await;
        let bad = json!({"category_id": 1, "title": "x", "image_upload_ids": [avatar["id"]], "skus": [{"title": "a", "price_fen": 1, "stock": 1}]});
        let (status, error) = app.post("/admin/api/v1/products", &bad, Some(&operator)).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (404, Some("upload_not_found")),
            "a user's upload is no product image"
        );

        // Taking down: admins only.
        let first = images[0]["id"].as_str().unwrap();
        let response =
            app.call(reqwest::Method::DELETE, &format!("/admin/api/v1/uploads/{first}"), None, Some(&operator)).await;
        assert_eq!(response.0, 403);
        let _ = viewer;
        app.post("/__simulator/cdn/_control", &json!({"fail_next": 1}), None).await;
        for image in &images {
            let path = format!("/admin/api/v1/uploads/{}", image["id"].as_str().unwrap());
            let (status, _, body) = app.call(reqwest::Method::DELETE, &path, None, Some(&admin)).await;
            assert_eq!(status, 204, "{body}");
        }
        let (status, _, _) =
            app.call(reqwest::Method::DELETE, &format!("/admin/api/v1/uploads/{first}"), None, Some(&admin)).await;
        assert_eq!(status, 404, "already taken down");
        if app.config.storage.provider == Provider::Local {
            assert_eq!(app.client.get(images[0]["url"].as_str().unwrap()).send().await.unwrap().status(), 404);
        }

        // The outbox delivers the takedowns to the purge queue.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while purge_rows(&app).await.len() < 5 {
            assert!(std::time::Instant::now() < deadline, "purges queued: {:?}", purge_rows(&app).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // First pass: the provider answers 503.
        let report = wxshop::cdn::worker::pass(&app.state).await.unwrap();
        assert_eq!((report.calls, report.failed_calls, report.urls_submitted), (1, 1, 0), "{report:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Second pass: one call with as many URLs as the day's quota allows (4 of 5), then it stops.
        let report = wxshop::cdn::worker::pass(&app.state).await.unwrap();
        assert_eq!((report.calls, report.urls_submitted, report.over_quota), (1, 4, true), "{report:?}");
        let (_, calls) = app.get_json("/__simulator/cdn/_calls").await;
        let calls = calls["calls"].as_array().unwrap().clone();
        assert_eq!(calls.len(), 1, "one successful call: {calls:?}");
        let purged: Vec<&str> = calls[0]["urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap()).collect();
        assert_eq!(purged.len(), 4);
        for image in images.iter().take(4) {
            assert!(purged.contains(&image["url"].as_str().unwrap()), "{purged:?}");
        }
        let rows = purge_rows(&app).await;
        assert_eq!(rows.iter().filter(|(_, s)| s == "submitted").count(), 4, "{rows:?}");
        assert_eq!(rows.iter().filter(|(_, s)| s == "pending").count(), 1, "over quota waits for tomorrow: {rows:?}");
        // The task is followed until the provider says done.
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        let report = wxshop::cdn::worker::pass(&app.state).await.unwrap();
        assert_eq!(report.tasks_done, 1, "{report:?}");
        let rows = purge_rows(&app).await;
        assert_eq!(rows.iter().filter(|(_, s)| s == "done").count(), 4, "{rows:?}");
        let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM upload WHERE status = 'removed'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        assert_eq!(count, 5);

        // Nothing keeps showing a taken-down image: the product's gallery lost both (its cached detail too) ...
        let (_, shown) = app.get_json(&product_path).await;
        assert_eq!(shown["image_urls"], json!([]), "{shown}");
        // ... and an avatar taken down goes blank.
        let bytes = jpeg("dave's avatar");
        let (_, ticket) = create(
            &app,
            &user.access_token,
            json!({"purpose": "avatar", "content_type": "image/jpeg", "size": bytes.len()}),
        )
        .await;
        assert_eq!(send_form(&app.client, &ticket, bytes, "image/jpeg").await.status(), 204);
        let (status, done) = complete(&app, &user.access_token, ticket["id"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{done}");
        let patch = json!({"avatar_upload_id": ticket["id"]});
        let (status, _, me) =
            app.call(reqwest::Method::PATCH, "/api/v1/me", Some(&patch), Some(&user.access_token)).await;
        assert_eq!((status, me["avatar_url"].clone()), (200, done["url"].clone()));
        let path = format!("/admin/api/v1/uploads/{}", ticket["id"].as_str().unwrap());
        let (status, _, _) = app.call(reqwest::Method::DELETE, &path, None, Some(&admin)).await;
        assert_eq!(status, 204);
        let (_, me) = app.get_auth("/api/v1/me", &user.access_token).await;
        assert_eq!(me["avatar_url"], "", "{me}");
    }
}
