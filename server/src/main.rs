use std::{io::Write, net::SocketAddr, process::ExitCode};

use clap::Parser;
use rtcroom_server::{serve, shutdown_signal, Config};
use tracing_subscriber::EnvFilter;

/// Each WebSocket is a file descriptor: lift the soft open-file limit to the hard one so a busy
/// server is not capped by the usual soft default of 1024. Returns the limit now in force.
fn raise_nofile_limit() -> Option<u64> {
    #[cfg(unix)]
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        Some(limit.rlim_cur)
    }
    #[cfg(not(unix))]
    None
}

/// Descriptors kept free of connections: the listener, dump files, static files, logs.
const RESERVED_FDS: u64 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let nofile = raise_nofile_limit();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let mut config = Config::parse();
    // Connections over the open-file limit would fail to be accepted at all: cap them below it,
    // so the server keeps answering (1013, 503, /healthz) instead.
    if let Some(fit) = nofile.map(|n| n.saturating_sub(RESERVED_FDS).max(16) as usize) {
        if config.max_connections > fit {
            tracing::warn!(
                requested = config.max_connections,
                fit,
                "max-connections lowered to fit the open-file limit"
            );
            config.max_connections = fit;
        }
    }
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(%addr, %err, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    // The one line on stdout: scripts and tests read the URL from it.
    println!("rtcroom-server listening on http://{local}/");
    let _ = std::io::stdout().flush();
    tracing::info!(%local, static_dir = %config.static_dir.display(), pkg_dir = %config.pkg_dir.display(), "serving");
    match serve(listener, &config, shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(%err, "server error");
            ExitCode::FAILURE
        }
    }
}
