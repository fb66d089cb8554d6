//! Simulators of the external services wxshop talks to, speaking their real protocols (paths, parameters, JSON
//! shapes, errcodes), so development and tests exercise the real client code. `wechat` is the mini-program server
//! API, `pay` WeChat Pay API v3.
//!
//! Mounted under `/__simulator/...` on the main port in dev mode when no WeChat app is configured (never in
//! production), or run alone with `wxshop simulator --listen ADDR`. These routes are WeChat's API, not ours, so
//! they are not in wxshop's OpenAPI document.

pub mod cdn;
pub mod pay;
pub mod wechat;

use std::sync::Arc;

use axum::Router;

/// Where the simulator is mounted on the main port.
pub const MOUNT_PATH: &str = "/__simulator";

/// The simulated apps' credentials in dev mode.
pub const SIM_APP_ID: &str = "wxsimulator0000001";
pub const SIM_APP_SECRET: &str = "simulator-app-secret";
/// The subscribe-message templates the shop uses with the simulator (paid, shipped).
pub const SIM_TEMPLATE_PAID: &str = "simTemplateOrderPaid000000000000000000001";
pub const SIM_TEMPLATE_SHIPPED: &str = "simTemplateOrderShipped00000000000000000002";

/// The simulators in use, mounted at `/wechat`, `/pay` and `/cdn`.
pub fn router(
    wechat: Option<Arc<wechat::WechatSimulator>>,
    pay: Option<Arc<pay::PaySimulator>>,
    cdn: Option<Arc<cdn::CdnSimulator>>,
) -> Router {
    let mut router = Router::new();
    if let Some(cdn) = cdn {
        router = router.nest("/cdn", cdn::router(cdn));
    }
    if let Some(wechat) = wechat {
        router = router.nest("/wechat", wechat::router(wechat));
    }
    if let Some(pay) = pay {
        router = router.nest("/pay", pay::router(pay));
    }
    router
}

/// `router` mounted under [`MOUNT_PATH`] of `app` (nothing when neither simulator is in use).
pub fn mount<S: Clone + Send + Sync + 'static>(
    app: Router<S>,
    wechat: Option<Arc<wechat::WechatSimulator>>,
    pay: Option<Arc<pay::PaySimulator>>,
    cdn: Option<Arc<cdn::CdnSimulator>>,
) -> Router<S> {
    if wechat.is_none() && pay.is_none() && cdn.is_none() {
        return app;
    }
    app.nest_service(MOUNT_PATH, router(wechat, pay, cdn))
}

/// Runs the simulators alone (`wxshop simulator --listen ADDR`) until SIGINT/SIGTERM.
pub async fn serve(listen: std::net::SocketAddr, app_id: &str, app_secret: &str) -> anyhow::Result<()> {
    let wechat = Arc::new(wechat::WechatSimulator::new(app_id, app_secret));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let pay = pay::PaySimulator::new(app_id, &format!("http://{}/pay", listener.local_addr()?));
    tracing::warn!(
        address = %listener.local_addr()?,
        app_id,
        "WeChat SIMULATOR listening: http://{0}/wechat and WeChat Pay http://{0}/pay (for development and tests only)",
        listener.local_addr()?
    );
    let cdn = cdn::CdnSimulator::new(crate::cdn::SIM_SECRET_ID, crate::cdn::SIM_SECRET_KEY);
    axum::serve(listener, router(Some(wechat), Some(pay), Some(cdn)))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
