//! `rtcroom-server`: signaling for rooms, the rtcstats collector, and the demo host.
//!
//! One process runs everything: `/signal` (rooms over WebSocket, see `docs/protocol.md`),
//! `GET /rooms/{room}` (presence), `GET /healthz`, the demo from the static dir, and the built
//! npm package under `/pkg`.

pub mod auth;
pub mod hub;
pub mod limits;
pub mod rtcstats;
pub mod signal;

use std::{
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use hub::{Hub, HubLimits};
use serde::Serialize;
use signal::SignalSettings;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
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

    /// Maximum peers per room (a room's first joiner may ask for fewer).
    #[arg(long, env = "RTCROOM_ROOM_CAPACITY", default_value_t = 50)]
    pub room_capacity: u32,
    /// Maximum number of rooms at once.
    #[arg(long, env = "RTCROOM_MAX_ROOMS", default_value_t = 10_000)]
    pub max_rooms: usize,
    /// Largest signaling frame in bytes.
    #[arg(long, env = "RTCROOM_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,
    /// Frames per second a connection may send (sustained).
    #[arg(long, env = "RTCROOM_RATE_LIMIT", default_value_t = 50)]
    pub rate_limit: u32,
    /// Frames a connection may send in a burst.
    #[arg(long, env = "RTCROOM_RATE_BURST", default_value_t = 200)]
    pub rate_burst: u32,
    /// Limit violations tolerated before a client is disconnected (peer-left "kicked").
    #[arg(long, env = "RTCROOM_MAX_VIOLATIONS", default_value_t = 10)]
    pub max_violations: u32,
    /// A client silent this long (ms) is removed with peer-left "timeout".
    #[arg(long, env = "RTCROOM_HEARTBEAT_TIMEOUT_MS", default_value_t = 30_000)]
    pub heartbeat_timeout_ms: u64,
    /// Interval (ms) of the server's WebSocket pings.
    #[arg(long, env = "RTCROOM_PING_INTERVAL_MS", default_value_t = 10_000)]
    pub ping_interval_ms: u64,
    /// How long (ms) a dropped peer keeps its id and place for a resume.
    #[arg(long, env = "RTCROOM_RESUME_GRACE_MS", default_value_t = 10_000)]
    pub resume_grace_ms: u64,
    /// Frames queued for a peer while it reconnects.
    #[arg(long, env = "RTCROOM_RESUME_QUEUE", default_value_t = 256)]
    pub resume_queue: usize,
    /// A signaling socket that is in no room this long (ms) after the upgrade, or after it
    /// left, is closed (4003).
    #[arg(long, env = "RTCROOM_JOIN_TIMEOUT_MS", default_value_t = 10_000)]
    pub join_timeout_ms: u64,
    /// A connection that has not sent a complete request head this long (ms) after it opened
    /// (or after its last response) is closed.
    #[arg(long, env = "RTCROOM_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Connections held at once, in all (WebSockets included). Lowered to fit the open-file
    /// limit. Over it, WebSockets are closed with 1013 and requests get 503.
    #[arg(long, env = "RTCROOM_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Connections held at once from one client address.
    #[arg(long, env = "RTCROOM_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,
    /// Clock skew (s) allowed when checking a JWT's `exp` and `nbf`.
    #[arg(long, env = "RTCROOM_JWT_LEEWAY_SECS", default_value_t = 5)]
    pub jwt_leeway_secs: u64,
    /// HS256 secret: when set, joining requires a JWT (`?token=`) whose claims name the room.
    #[arg(long, env = "RTCROOM_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Origins allowed to open the signaling socket (comma-separated); empty allows all.
    #[arg(long, env = "RTCROOM_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Key for resume tokens. Keep it across restarts, and peers resume with the same ids after
    /// a server restart. Unset: a random key per process.
    #[arg(long, env = "RTCROOM_RESUME_SECRET", hide_env_values = true)]
    pub resume_secret: Option<String>,
    /// Where `/rtcstats` writes one dump file per socket.
    #[arg(long, env = "RTCROOM_DUMPS_DIR", default_value = "dumps")]
    pub dumps_dir: PathBuf,
    /// HS256 secret for `/rtcstats?rtcstats-token=` (claims `rtcStats: {user, session,
    /// conference}`). Unset: the `--jwt-secret`, if any; neither set: anyone may upload.
    #[arg(long, env = "RTCROOM_RTCSTATS_SECRET", hide_env_values = true)]
    pub rtcstats_secret: Option<String>,
    /// Largest stats message in bytes, once inflated (a first full getStats can be tens of
    /// KB). Larger ones are refused and reported; one of twice this closes the socket (1009).
    /// Keep it above the SDK's `maxRecordBytes` (default 512 KiB).
    #[arg(long, env = "RTCROOM_RTCSTATS_MAX_FRAME_BYTES", default_value_t = 1024 * 1024)]
    pub rtcstats_max_frame_bytes: usize,
    /// How often (ms) the collector acknowledges written lines; a closing SDK trace waits for
    /// the last ack, so this bounds how long a `leave()` flush takes.
    #[arg(long, env = "RTCROOM_RTCSTATS_ACK_INTERVAL_MS", default_value_t = 100)]
    pub rtcstats_ack_interval_ms: u64,
    /// Largest dump file in bytes (0: no cap). A dump that reaches it ends with a close line
    /// saying `dump-size-limit` and its socket closes with 1013; the SDK goes on in a new dump.
    #[arg(long, env = "RTCROOM_RTCSTATS_MAX_DUMP_BYTES", default_value_t = 64 << 20)]
    pub rtcstats_max_dump_bytes: u64,
    /// Bytes per second one stats socket may upload, sustained (0: no limit). Messages beyond
    /// the token bucket are refused (acknowledged, counted and reported), not written.
    #[arg(long, env = "RTCROOM_RTCSTATS_RATE_BYTES", default_value_t = 256 << 10)]
    pub rtcstats_rate_bytes: u64,
    /// Bytes one stats socket may upload in a burst (a reconnecting SDK replays what it holds
    /// at once); never less than the largest message.
    #[arg(long, env = "RTCROOM_RTCSTATS_RATE_BURST_BYTES", default_value_t = 4 << 20)]
    pub rtcstats_rate_burst_bytes: u64,
    /// Total bytes of the files in the dumps dir (0: no quota), measured at start-up and kept
    /// up to date. A dump that reaches it ends with a close line saying `dumps-quota` (1013).
    #[arg(long, env = "RTCROOM_RTCSTATS_DUMPS_QUOTA_BYTES", default_value_t = 1 << 30)]
    pub rtcstats_dumps_quota_bytes: u64,
    /// Turn off `GET /rooms/{room}`.
    #[arg(long, env = "RTCROOM_NO_PRESENCE")]
    pub no_presence: bool,
}

impl Config {
    /// Defaults as the command line gives them, for tests and embedding.
    pub fn defaults() -> Config {
        <Config as clap::Parser>::parse_from(["rtcroom-server"])
    }
}

/// What every request handler and connection task shares.
pub struct App {
    hub: Mutex<Hub>,
    pub signal: SignalSettings,
    pub collector: rtcstats::CollectorSettings,
    presence: bool,
    /// Cancelled once on shutdown: every connection closes with 1001 going-away.
    pub shutdown: CancellationToken,
    /// Every WebSocket task, so shutdown can wait for their close frames.
    pub tasks: TaskTracker,
}

impl App {
    pub fn new(config: &Config) -> App {
        App {
            hub: Mutex::new(Hub::new(
                HubLimits {
                    room_capacity: config.room_capacity.max(1),
                    max_rooms: config.max_rooms,
                    resume_grace: Duration::from_millis(config.resume_grace_ms),
                    resume_queue: config.resume_queue,
                    // A token must outlive the grace after the client's last sign of life.
                    token_ttl: Duration::from_millis(config.resume_grace_ms + config.heartbeat_timeout_ms),
                    resume_probe: Duration::from_millis(config.heartbeat_timeout_ms.clamp(100, 2000)),
                },
                rtcroom_hub::ResumeKeys::new(config.resume_secret.as_deref()),
            )),
            signal: SignalSettings {
                frames: hub::FrameLimits {
                    max_frame: config.max_frame_bytes,
                    rate: config.rate_limit,
                    burst: config.rate_burst,
                    max_violations: config.max_violations,
                },
                heartbeat_timeout: Duration::from_millis(config.heartbeat_timeout_ms),
                ping_interval: Duration::from_millis(config.ping_interval_ms.max(10)),
                join_timeout: Duration::from_millis(config.join_timeout_ms.max(10)),
                jwt_secret: config.jwt_secret.clone().filter(|s| !s.is_empty()),
                jwt_leeway: Duration::from_secs(config.jwt_leeway_secs),
                allowed_origins: config
                    .allowed_origins
                    .iter()
                    .filter(|o| !o.is_empty())
                    .cloned()
                    .collect(),
            },
            collector: rtcstats::CollectorSettings {
                dumps_dir: config.dumps_dir.clone(),
                secret: config
                    .rtcstats_secret
                    .clone()
                    .or_else(|| config.jwt_secret.clone())
                    .filter(|s| !s.is_empty()),
                max_frame: config.rtcstats_max_frame_bytes,
                ack_interval_ms: config.rtcstats_ack_interval_ms.max(10),
                max_dump_bytes: config.rtcstats_max_dump_bytes,
                rate_bytes: config.rtcstats_rate_bytes,
                rate_burst_bytes: config
                    .rtcstats_rate_burst_bytes
                    .max(config.rtcstats_max_frame_bytes as u64),
                quota: Arc::new(rtcstats::DumpsQuota::measure(
                    &config.dumps_dir,
                    config.rtcstats_dumps_quota_bytes,
                )),
            },
            presence: !config.no_presence,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// The hub lock. A panic while holding it is a bug; recover the state rather than take
    /// every other connection down with it.
    pub fn hub(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    protocol: u32,
    #[serde(flatten)]
    counts: hub::HubCounts,
}

async fn healthz(State(app): State<Arc<App>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: rtcroom_protocol::RELEASE_VERSION,
        protocol: rtcroom_protocol::PROTOCOL_VERSION,
        counts: app.hub().counts(),
    })
}

async fn presence(State(app): State<Arc<App>>, Path(room): Path<String>) -> Response {
    if !app.presence {
        return StatusCode::NOT_FOUND.into_response();
    }
    if !rtcroom_protocol::valid_room_name(&room) {
        return (StatusCode::BAD_REQUEST, "invalid room name").into_response();
    }
    let hub = app.hub();
    Json(hub.presence(&room)).into_response()
}

/// All HTTP and WebSocket routes of the server.
pub fn router(config: &Config, app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/signal", get(signal::upgrade))
        .route("/signal/{room}", get(signal::upgrade_in_room))
        .route("/rooms/{room}", get(presence))
        .route("/rtcstats", get(rtcstats::upgrade))
        .nest_service("/pkg", ServeDir::new(&config.pkg_dir))
        .fallback_service(ServeDir::new(&config.static_dir))
        .layer(axum::middleware::from_fn(limits::guard))
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}

/// A connection's socket with its place in the connection limits: the place is freed when the
/// socket closes, also after a WebSocket upgrade took it over.
struct Counted {
    io: tokio::net::TcpStream,
    _slot: limits::Slot,
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Serves until `shutdown` resolves. Every WebSocket client then gets a going-away close, and
/// open requests drain.
///
/// HTTP/1.1 only (browsers reach WebSockets over it), with a header-read timeout and the
/// connection limits applied as connections are accepted.
pub async fn serve(
    listener: TcpListener,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    use tower::ServiceExt;
    let app = Arc::new(App::new(config));
    let routes = router(config, app.clone());
    let limits = limits::ConnLimits::new(config.max_connections, config.max_connections_per_ip);
    // Grace periods end on this clock.
    let ticker = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = app.shutdown.cancelled() => break,
                    _ = every.tick() => app.hub().tick(std::time::Instant::now()),
                }
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.header_read_timeout_ms.max(1)));
    // Open HTTP connections, told to finish their request and close on shutdown.
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, or a connection that died in the backlog.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (slot, over) = match limits.admit(addr.ip()) {
            limits::Admission::Serve(slot, over) => (slot, over),
            limits::Admission::Drop => continue,
        };
        // Signaling is many small frames that should leave at once (ICE candidates come in bursts).
        let _ = tcp.set_nodelay(true);
        let io = hyper_util::rt::TokioIo::new(Counted { io: tcp, _slot: slot });
        let routes = routes.clone();
        let service = hyper::service::service_fn(
            move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(axum::extract::ConnectInfo(addr));
                if let Some(over) = over {
                    request.extensions_mut().insert(over);
                }
                routes.clone().oneshot(request)
            },
        );
        let connection = http.serve_connection(io, service).with_upgrades();
        let stop = app.shutdown.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    app.shutdown.cancel();
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(3), connections.wait()).await;
    app.tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(3), app.tasks.wait()).await;
    let _ = ticker.await;
    Ok(())
}

/// A server running inside this process (tests, benchmarks).
pub struct Running {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl Running {
    /// Binds `config.bind:config.port` and serves in a background task.
    pub async fn start(config: Config) -> io::Result<Running> {
        let listener = TcpListener::bind(SocketAddr::new(config.bind, config.port)).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let task =
            tokio::spawn(
                async move { serve(listener, &config, async move { signal.cancelled().await }).await },
            );
        Ok(Running { addr, stop, task })
    }

    /// Graceful shutdown, as on SIGTERM.
    pub async fn stop(self) -> io::Result<()> {
        self.stop.cancel();
        self.task.await.unwrap_or_else(|err| Err(io::Error::other(err)))
    }
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
    tracing::info!("shutdown signal received, closing connections");
}
