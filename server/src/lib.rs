//! `rtcroom-server`: signaling for rooms, the rtcstats collector, and the demo host.
//!
//! One process runs everything: `GET /healthz`, the demo page from the static dir, and the built
//! npm package under `/pkg`. Later parts (signaling at `/signal`, the collector at `/rtcstats`)
//! are routes on the same [`router`].

use std::{future::Future, io, net::IpAddr, path::PathBuf};

use axum::{routing::get, Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tower_http::{services::ServeDir, trace::TraceLayer};

/// Server settings: every flag also reads an `RTCROOM_*` environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "rtcroom-server", version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "RTCROOM_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port to listen on (0 picks a free one; the chosen URL is printed on stdout).
    #[arg(long, short, env = "RTCROOM_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Directory served at `/` (the demo).
    #[arg(long, env = "RTCROOM_STATIC_DIR", default_value = "www")]
    pub static_dir: PathBuf,
    /// Directory served at `/pkg` (the built npm package).
    #[arg(long, env = "RTCROOM_PKG_DIR", default_value = "pkg")]
    pub pkg_dir: PathBuf,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    protocol: u32,
}

async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: rtcroom_protocol::RELEASE_VERSION,
        protocol: rtcroom_protocol::PROTOCOL_VERSION,
    })
}

/// All HTTP and WebSocket routes of the server.
pub fn router(config: &Config) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .nest_service("/pkg", ServeDir::new(&config.pkg_dir))
        .fallback_service(ServeDir::new(&config.static_dir))
        .layer(TraceLayer::new_for_http())
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received, draining");
}
