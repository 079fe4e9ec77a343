//! Signaling load benchmark (issue #3): N WebSocket clients in rooms of K on loopback, each sending
//! `rate` signals per second to the next peer of its room, round-robin. Prints connected clients,
//! messages/s, relay latency percentiles and server RSS for rtcroom-server and for a baseline,
//! side by side with ratios.
//!
//! The baseline is the smallest relay on the same stack (axum WebSocket, an mpsc queue per
//! connection, one lock): no JSON, no rooms. A client addresses its target by index
//! (`TARGET\n{json}`) and the frame is forwarded untouched. Both servers run as child processes
//! on 127.0.0.1 (`--port 0`) so their RSS and CPU are measured alone; the clients run here.
//!
//! Build and run (see docs/benchmarks.md):
//! `cargo build --profile server -p rtcroom-server --bins && target/server/rtcroom-bench`

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    process::{ExitCode, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{
    extract::{
        ws::{Message as AxMessage, WebSocket, WebSocketUpgrade},
        Path, State,
    },
    response::Response,
    routing::get,
    Router,
};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
    sync::{mpsc, watch, Semaphore},
    time::Instant,
};
use tokio_tungstenite::{
    client_async_with_config,
    tungstenite::{protocol::WebSocketConfig, Message},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    Rtcroom,
    Baseline,
    Both,
}

/// Signaling load benchmark: rtcroom-server against a minimal WebSocket relay, on loopback.
#[derive(Debug, Clone, Parser)]
#[command(name = "rtcroom-bench", version, about)]
struct Args {
    /// Number of WebSocket clients.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Peers per room (the last room may be smaller).
    #[arg(long, default_value_t = 4)]
    room_size: usize,
    /// Signals per client per second.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Measured time, after the warmup.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Load before the measurement starts (not counted).
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Bytes of padding in each signal payload (an ICE candidate is ~200, an SDP a few KB).
    #[arg(long, default_value_t = 200)]
    payload_bytes: usize,
    /// Connections being opened at once (the loopback SYN backlog is finite).
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// The rtcroom-server binary (default: next to this executable).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Rounds, each running the servers one after the other. With more than one, every round's
    /// table is printed and the summary shows each server's median round (by p99): other work on
    /// the machine shows up as outliers instead of deciding the result.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Which servers to measure.
    #[arg(long, value_enum, default_value_t = Only::Both)]
    only: Only,
    /// Read buffer of the baseline's sockets in bytes (default: axum's 128 KiB, as rtcroom-server
    /// uses). Tungstenite zero-fills the whole buffer, so it is resident memory per connection.
    #[arg(long)]
    baseline_read_buffer: Option<usize>,
    /// Also print messages, p99 and max latency per 250 ms of send time (finds stalls).
    #[arg(long)]
    timeline: bool,
    /// Internal: run the baseline relay server (the bench starts itself with this flag).
    #[arg(long, hide = true)]
    baseline_server: bool,
}

/// Bound on connecting and joining all clients.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on one TCP connect + WebSocket handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// After the last send, how long receivers wait for frames still in flight.
const DRAIN: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    raise_nofile_limit();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rtcroom-bench: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    if args.baseline_server {
        return runtime.block_on(baseline::serve(args.baseline_read_buffer));
    }
    runtime.block_on(bench(args))
}

/// Lifts the soft open-file limit to the hard one (10k clients need 10k descriptors).
fn raise_nofile_limit() -> (libc::rlim_t, libc::rlim_t) {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return (0, 0);
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            let _ = libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
        (limit.rlim_cur, limit.rlim_max)
    }
}

// ---------------------------------------------------------------------------------------------
// The baseline relay server (runs in a child process: `rtcroom-bench --baseline-server`).

mod baseline {
    use super::*;

    #[derive(Default)]
    struct Relay {
        conns: Mutex<HashMap<u32, mpsc::Sender<AxMessage>>>,
        read_buffer: Option<usize>,
    }

    /// Same queue bound as rtcroom's per-connection channel.
    const QUEUE: usize = 1024;

    pub async fn serve(read_buffer: Option<usize>) -> ExitCode {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("baseline: cannot listen: {err}");
                return ExitCode::FAILURE;
            }
        };
        let Ok(addr) = listener.local_addr() else {
            return ExitCode::FAILURE;
        };
        println!("baseline relay listening on http://{addr}/");
        let relay = Arc::new(Relay {
            read_buffer,
            ..Relay::default()
        });
        let app = Router::new()
            .route("/relay/{index}", get(upgrade))
            .with_state(relay);
        tokio::select! {
            result = axum::serve(listener, app) => {
                if let Err(err) = result {
                    eprintln!("baseline: {err}");
                    return ExitCode::FAILURE;
                }
            }
            _ = rtcroom_server::shutdown_signal() => {}
        }
        ExitCode::SUCCESS
    }

    async fn upgrade(
        ws: WebSocketUpgrade,
        State(relay): State<Arc<Relay>>,
        Path(index): Path<u32>,
    ) -> Response {
        let ws = match relay.read_buffer {
            Some(size) => ws.read_buffer_size(size),
            None => ws,
        };
        ws.on_upgrade(move |socket| connection(socket, relay, index))
    }

    async fn connection(mut socket: WebSocket, relay: Arc<Relay>, index: u32) {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        relay
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(index, tx);
        loop {
            tokio::select! {
                biased;
                out = rx.recv() => match out {
                    Some(message) => {
                        if socket.send(message).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                incoming = socket.recv() => match incoming {
                    Some(Ok(AxMessage::Text(text))) => {
                        let target = text.split_once('\n').and_then(|(to, _)| to.parse::<u32>().ok());
                        if let Some(target) = target {
                            let conns = relay.conns.lock().unwrap_or_else(|p| p.into_inner());
                            if let Some(tx) = conns.get(&target) {
                                let _ = tx.try_send(AxMessage::Text(text));
                            }
                        }
                    }
                    Some(Ok(AxMessage::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        relay
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&index);
    }
}

// ---------------------------------------------------------------------------------------------
// Server processes.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rtcroom,
    Baseline,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Rtcroom => "rtcroom",
            Kind::Baseline => "baseline",
        }
    }
}

struct ServerProcess {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    /// Kept open: a server writing to a closed pipe would get EPIPE.
    _stdout: BufReader<tokio::process::ChildStdout>,
}

async fn start_server(kind: Kind, args: &Args) -> Result<ServerProcess, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut command = match kind {
        Kind::Rtcroom => {
            let bin = args
                .server_bin
                .clone()
                .unwrap_or_else(|| exe.with_file_name("rtcroom-server"));
            let rooms = args.clients.div_ceil(args.room_size.max(1)) + 16;
            let mut command = Command::new(&bin);
            command.args([
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--room-capacity",
                &args.room_size.to_string(),
                "--max-rooms",
                &rooms.to_string(),
                "--rate-limit",
                "1000",
                "--rate-burst",
                "1000",
                "--max-frame-bytes",
                &(args.payload_bytes + 4096).to_string(),
                // Every bench client comes from 127.0.0.1.
                "--max-connections",
                &(args.clients + 64).to_string(),
                "--max-connections-per-ip",
                &(args.clients + 64).to_string(),
            ]);
            command
        }
        Kind::Baseline => {
            let mut command = Command::new(&exe);
            command.arg("--baseline-server");
            if let Some(size) = args.baseline_read_buffer {
                command.args(["--baseline-read-buffer", &size.to_string()]);
            }
            command
        }
    };
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "warn");
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start the {} server: {e}", kind.name()))?;
    let pid = child.id().ok_or("server exited at once")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    match tokio::time::timeout(Duration::from_secs(10), stdout.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return Err(format!("the {} server printed no address", kind.name())),
    }
    // "... listening on http://ADDR/"
    let addr: SocketAddr = line
        .trim()
        .rsplit_once("http://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("cannot parse the server address from {line:?}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("the server listens on {addr}, not loopback: refusing"));
    }
    Ok(ServerProcess {
        child,
        pid,
        addr,
        _stdout: stdout,
    })
}

async fn stop_server(mut server: ServerProcess) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(server.pid as libc::pid_t, libc::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(10), server.child.wait())
        .await
        .is_err()
    {
        let _ = server.child.kill().await;
    }
}

/// VmRSS and VmHWM (peak) of a process, in KiB.
fn proc_rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Machine-wide (busy, total) clock ticks from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

struct CpuSample {
    server: u64,
    bench: u64,
    machine: (u64, u64),
    at: Instant,
}

fn cpu_sample(server_pid: u32) -> CpuSample {
    CpuSample {
        server: cpu_ticks(&server_pid.to_string()),
        bench: cpu_ticks("self"),
        machine: machine_ticks(),
        at: Instant::now(),
    }
}

// ---------------------------------------------------------------------------------------------
// Clients.

/// When the load runs, shared by every client.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Time zero of the timestamps carried in payloads.
    epoch: Instant,
    load_start: Instant,
    /// Sends stamped in [measure_from, measure_to) (µs since epoch) are measured.
    measure_from: u64,
    measure_to: u64,
    send_end: Instant,
    stop: Instant,
}

#[derive(Default)]
struct ClientResult {
    connected: bool,
    error: Option<String>,
    sent: u64,
    received: u64,
    /// Relay latencies (µs) of measured messages.
    latencies: Vec<u32>,
    /// (send time in ms since the measurement began, latency in µs), for `--timeline`.
    timeline: Vec<(u32, u32)>,
    /// Sends skipped because the room was incomplete.
    skipped: u64,
    /// Frames other than expected relays (errors from the server and such).
    unexpected: u64,
    first_unexpected: Option<String>,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(rename = "peerId", default)]
    peer_id: Option<String>,
    #[serde(default)]
    peers: Vec<PeerRef>,
    #[serde(default)]
    peer: Option<PeerRef>,
    #[serde(default)]
    payload: Option<Payload>,
}

#[derive(Deserialize)]
struct PeerRef {
    id: String,
}

#[derive(Deserialize)]
struct Payload {
    t: u64,
}

struct ClientSpec {
    index: usize,
    kind: Kind,
    addr: SocketAddr,
    room: usize,
    /// Position in the room (baseline: by index; rtcroom: learned from the join order).
    room_base: usize,
    room_len: usize,
    phase: Duration,
    period: Duration,
    pad: Arc<str>,
}

struct Shared {
    ready: AtomicUsize,
    failed: AtomicUsize,
    connect: Semaphore,
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn connect(spec: &ClientSpec, shared: &Shared) -> Result<Ws, String> {
    let _permit = shared.connect.acquire().await.map_err(|e| e.to_string())?;
    let path = match spec.kind {
        Kind::Rtcroom => "/signal".to_string(),
        Kind::Baseline => format!("/relay/{}", spec.index),
    };
    let attempt = async {
        let tcp = TcpStream::connect(spec.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let url = format!("ws://{}{path}", spec.addr);
        let (ws, _) = client_async_with_config(url, tcp, Some(config))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        Ok::<Ws, String>(ws)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| "connect timed out".to_string())?
}

async fn client(
    spec: ClientSpec,
    shared: Arc<Shared>,
    mut start: watch::Receiver<Option<Plan>>,
) -> ClientResult {
    let mut result = ClientResult::default();
    let mut ws = match connect(&spec, &shared).await {
        Ok(ws) => ws,
        Err(err) => {
            shared.failed.fetch_add(1, Ordering::SeqCst);
            result.error = Some(err);
            return result;
        }
    };
    result.connected = true;

    // Room order: the ids (rtcroom) or indexes (baseline) of the room's peers in join order.
    let mut order: Vec<String> = Vec::new();
    let mut me = 0usize;
    match spec.kind {
        Kind::Baseline => {
            order = (0..spec.room_len)
                .map(|p| (spec.room_base + p).to_string())
                .collect();
            me = spec.index - spec.room_base;
            shared.ready.fetch_add(1, Ordering::SeqCst);
        }
        Kind::Rtcroom => {
            let join = format!(r#"{{"type":"join","room":"bench-{}","version":1}}"#, spec.room);
            if let Err(err) = ws.send(Message::text(join)).await {
                shared.failed.fetch_add(1, Ordering::SeqCst);
                result.error = Some(format!("send join: {err}"));
                return result;
            }
        }
    }
    let mut counted = spec.kind == Kind::Baseline;

    // Setup: learn the room (rtcroom) and wait for the start.
    let plan = loop {
        tokio::select! {
            plan = start.wait_for(|p| p.is_some()) => match plan {
                Ok(plan) => break (*plan).unwrap_or_else(|| unreachable!()),
                Err(_) => return result,
            },
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    Some(Err(err)) => {
                        if !counted {
                            shared.failed.fetch_add(1, Ordering::SeqCst);
                        }
                        result.error = Some(format!("during setup: {err}"));
                        return result;
                    }
                    None => {
                        if !counted {
                            shared.failed.fetch_add(1, Ordering::SeqCst);
                        }
                        result.error = Some("closed during setup".into());
                        return result;
                    }
                };
                match serde_json::from_str::<Frame>(text.as_str()) {
                    Ok(frame) if frame.kind == "joined" => {
                        order.extend(frame.peers.into_iter().map(|p| p.id));
                        me = order.len();
                        order.push(frame.peer_id.unwrap_or_default());
                    }
                    Ok(frame) if frame.kind == "peer-joined" => {
                        order.extend(frame.peer.map(|p| p.id));
                    }
                    _ => {
                        result.unexpected += 1;
                        result.first_unexpected.get_or_insert_with(|| text.as_str().to_string());
                        if !counted {
                            shared.failed.fetch_add(1, Ordering::SeqCst);
                        }
                        result.error = Some(format!("unexpected during setup: {}", text.as_str()));
                        return result;
                    }
                }
                if !counted && order.len() >= spec.room_len {
                    counted = true;
                    shared.ready.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    };
    if !counted {
        // The start came before the room was complete (a peer failed): still take part.
        result.error = Some(format!(
            "room incomplete: {} of {} peers",
            order.len(),
            spec.room_len
        ));
    }

    // Load.
    let mut next = plan.load_start + spec.phase;
    let mut tick: usize = 0;
    let send_timer = tokio::time::sleep_until(next);
    tokio::pin!(send_timer);
    let stop = tokio::time::sleep_until(plan.stop);
    tokio::pin!(stop);
    let mut body = String::with_capacity(128 + spec.pad.len());
    loop {
        tokio::select! {
            _ = &mut send_timer, if next < plan.send_end => {
                if order.len() >= 2 {
                    let n = order.len();
                    // Shift by 1..n-1 positions: every tick is a derangement of the room, so
                    // each peer receives exactly one signal per tick.
                    let target = (me + 1 + tick % (n - 1)) % n;
                    let t = plan.epoch.elapsed().as_micros() as u64;
                    body.clear();
                    use std::fmt::Write;
                    let _ = match spec.kind {
                        Kind::Rtcroom => write!(
                            body,
                            r#"{{"type":"signal","to":"{}","payload":{{"t":{t},"pad":"{}"}}}}"#,
                            order[target], spec.pad
                        ),
                        Kind::Baseline => write!(
                            body,
                            "{}\n{{\"type\":\"signal\",\"to\":\"{}\",\"payload\":{{\"t\":{t},\"pad\":\"{}\"}}}}",
                            order[target], order[target], spec.pad
                        ),
                    };
                    if ws.send(Message::text(body.as_str())).await.is_err() {
                        result.error = Some("send failed".into());
                        break;
                    }
                    if (plan.measure_from..plan.measure_to).contains(&t) {
                        result.sent += 1;
                    }
                } else {
                    result.skipped += 1;
                }
                tick += 1;
                next += spec.period;
                send_timer.as_mut().reset(next);
            }
            frame = ws.next() => {
                let now = plan.epoch.elapsed().as_micros() as u64;
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => {
                        result.error = Some("connection lost during the load".into());
                        break;
                    }
                };
                let json = match spec.kind {
                    Kind::Rtcroom => text.as_str(),
                    Kind::Baseline => text.as_str().split_once('\n').map_or("", |(_, j)| j),
                };
                match serde_json::from_str::<Frame>(json) {
                    Ok(Frame { kind: "signal", payload: Some(Payload { t }), .. }) => {
                        if (plan.measure_from..plan.measure_to).contains(&t) {
                            result.received += 1;
                            let latency = now.saturating_sub(t).min(u32::MAX as u64) as u32;
                            result.latencies.push(latency);
                            result.timeline.push((((t - plan.measure_from) / 1000) as u32, latency));
                        }
                    }
                    _ => {
                        result.unexpected += 1;
                        result.first_unexpected.get_or_insert_with(|| text.as_str().to_string());
                    }
                }
            }
            _ = &mut stop => break,
        }
    }
    result
}

/// Phase of client `index` within the send period: consecutive indexes (one room) are spread
/// `period / room_size` apart, and rooms fill the gaps evenly.
fn phase_fraction(index: usize, clients: usize, room_size: usize) -> f64 {
    let rooms = clients.div_ceil(room_size);
    let slot = (index % room_size) * rooms + index / room_size;
    slot as f64 / (rooms * room_size) as f64
}

// ---------------------------------------------------------------------------------------------
// One measured run.

struct Figures {
    kind: Kind,
    clients: usize,
    connected: usize,
    ready: usize,
    failed: usize,
    rooms: usize,
    setup_secs: f64,
    sent: u64,
    received: u64,
    skipped: u64,
    unexpected: u64,
    duration: f64,
    /// Sorted latencies in µs.
    latencies: Vec<u32>,
    timeline: Vec<(u32, u32)>,
    rss_kib: u64,
    hwm_kib: u64,
    server_cpu: f64,
    bench_cpu: f64,
    machine_busy: f64,
    bench_rss_kib: u64,
}

impl Figures {
    fn percentile_ms(&self, q: f64) -> Option<f64> {
        if self.latencies.is_empty() {
            return None;
        }
        let rank = ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        Some(self.latencies[rank - 1] as f64 / 1000.0)
    }
    fn max_ms(&self) -> Option<f64> {
        self.latencies.last().map(|&v| v as f64 / 1000.0)
    }
    fn rate(&self) -> f64 {
        self.received as f64 / self.duration
    }
}

async fn run(kind: Kind, args: &Args) -> Result<Figures, String> {
    let server = start_server(kind, args).await?;
    println!("{}: server pid {} on {}", kind.name(), server.pid, server.addr);
    let result = tokio::time::timeout(
        SETUP_TIMEOUT + Duration::from_secs(args.warmup_secs + args.duration_secs) + Duration::from_secs(30),
        load(kind, args, &server),
    )
    .await
    .unwrap_or_else(|_| Err("the run went past its time bound".into()));
    stop_server(server).await;
    result
}

async fn load(kind: Kind, args: &Args, server: &ServerProcess) -> Result<Figures, String> {
    let n = args.clients;
    let k = args.room_size.max(2);
    let rooms = n.div_ceil(k);
    let period = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    let pad: Arc<str> = "x".repeat(args.payload_bytes).into();
    let shared = Arc::new(Shared {
        ready: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        connect: Semaphore::new(args.connect_concurrency.max(1)),
    });
    let (start_tx, start_rx) = watch::channel(None);
    let setup_began = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for index in 0..n {
        let room = index / k;
        let room_base = room * k;
        let spec = ClientSpec {
            index,
            kind,
            addr: server.addr,
            room,
            room_base,
            room_len: k.min(n - room_base),
            phase: period.mul_f64(phase_fraction(index, n, k)),
            period,
            pad: pad.clone(),
        };
        tasks.push(tokio::spawn(client(spec, shared.clone(), start_rx.clone())));
    }
    drop(start_rx);

    // Wait until every client is in its complete room (or failed), bounded.
    let mut last_print = Instant::now();
    loop {
        let ready = shared.ready.load(Ordering::SeqCst);
        let failed = shared.failed.load(Ordering::SeqCst);
        if ready + failed >= n {
            break;
        }
        if setup_began.elapsed() > SETUP_TIMEOUT {
            println!(
                "{}: setup timed out with {ready} ready, {failed} failed",
                kind.name()
            );
            break;
        }
        if last_print.elapsed() > Duration::from_secs(2) {
            println!("{}: setting up… {ready} ready, {failed} failed", kind.name());
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let setup_secs = setup_began.elapsed().as_secs_f64();
    let ready = shared.ready.load(Ordering::SeqCst);
    let failed = shared.failed.load(Ordering::SeqCst);
    println!(
        "{}: {ready} clients ready in {setup_secs:.1} s ({failed} failed); load: {} s warmup + {} s measured",
        kind.name(),
        args.warmup_secs,
        args.duration_secs
    );

    let epoch = Instant::now();
    let load_start = epoch + Duration::from_millis(200);
    let measure_from = load_start + Duration::from_secs(args.warmup_secs);
    let measure_to = measure_from + Duration::from_secs(args.duration_secs);
    let plan = Plan {
        epoch,
        load_start,
        measure_from: (measure_from - epoch).as_micros() as u64,
        measure_to: (measure_to - epoch).as_micros() as u64,
        send_end: measure_to,
        stop: measure_to + DRAIN,
    };
    let _ = start_tx.send(Some(plan));

    tokio::time::sleep_until(measure_from).await;
    let before = cpu_sample(server.pid);
    tokio::time::sleep_until(measure_to).await;
    let after = cpu_sample(server.pid);
    let (rss_kib, hwm_kib) = proc_rss_kib(server.pid);
    let (bench_rss_kib, _) = proc_rss_kib(std::process::id());

    let mut figures = Figures {
        kind,
        clients: n,
        connected: 0,
        ready,
        failed,
        rooms,
        setup_secs,
        sent: 0,
        received: 0,
        skipped: 0,
        unexpected: 0,
        duration: args.duration_secs as f64,
        latencies: Vec::new(),
        timeline: Vec::new(),
        rss_kib,
        hwm_kib,
        server_cpu: 0.0,
        bench_cpu: 0.0,
        machine_busy: 0.0,
        bench_rss_kib,
    };
    let wall = (after.at - before.at).as_secs_f64();
    let hz = clock_ticks_per_sec();
    figures.server_cpu = (after.server - before.server) as f64 / hz / wall * 100.0;
    figures.bench_cpu = (after.bench - before.bench) as f64 / hz / wall * 100.0;
    let (busy, total) = (
        after.machine.0 - before.machine.0,
        (after.machine.1 - before.machine.1).max(1),
    );
    // Percent of one core, like the per-process figures.
    figures.machine_busy = busy as f64 / total as f64 * 100.0 * cores() as f64;

    let mut errors: HashMap<String, usize> = HashMap::new();
    let mut first_unexpected = None;
    for task in tasks {
        let Ok(r) = task.await else { continue };
        figures.connected += usize::from(r.connected);
        figures.sent += r.sent;
        figures.received += r.received;
        figures.skipped += r.skipped;
        figures.unexpected += r.unexpected;
        figures.latencies.extend_from_slice(&r.latencies);
        if args.timeline {
            figures.timeline.extend_from_slice(&r.timeline);
        }
        if first_unexpected.is_none() {
            first_unexpected = r.first_unexpected;
        }
        if let Some(err) = r.error {
            *errors.entry(err).or_default() += 1;
        }
    }
    figures.latencies.sort_unstable();
    if args.timeline {
        print_timeline(kind, &mut figures.timeline);
    }
    let mut errors: Vec<_> = errors.into_iter().collect();
    errors.sort_by_key(|e| std::cmp::Reverse(e.1));
    for (err, count) in errors.iter().take(5) {
        println!("{}: {count} clients: {err}", kind.name());
    }
    if let Some(frame) = first_unexpected {
        println!("{}: first unexpected frame: {frame}", kind.name());
    }
    Ok(figures)
}

fn print_timeline(kind: Kind, timeline: &mut [(u32, u32)]) {
    const BUCKET_MS: u32 = 250;
    timeline.sort_unstable();
    println!(
        "{}: timeline (send time ms: messages, p99 ms, max ms)",
        kind.name()
    );
    for bucket in timeline.chunk_by_mut(|a, b| a.0 / BUCKET_MS == b.0 / BUCKET_MS) {
        let start = bucket[0].0 / BUCKET_MS * BUCKET_MS;
        let mut latencies: Vec<u32> = bucket.iter().map(|&(_, l)| l).collect();
        latencies.sort_unstable();
        let p99 = latencies[(latencies.len() * 99).div_ceil(100).clamp(1, latencies.len()) - 1];
        let max = latencies[latencies.len() - 1];
        println!(
            "  {start:>6}: {:>5} {:>8.2} {:>8.2}",
            latencies.len(),
            p99 as f64 / 1000.0,
            max as f64 / 1000.0
        );
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

// ---------------------------------------------------------------------------------------------
// Report.

fn print_report(args: &Args, title: &str, runs: &[Figures]) {
    let head = |f: &Figures| f.kind.name().to_string();
    let mut rows: Vec<(String, Vec<String>, Option<f64>)> = Vec::new();
    let ratio = |a: f64, b: f64| if b > 0.0 { Some(a / b) } else { None };
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let pair = |f: &dyn Fn(&Figures) -> f64| -> Option<f64> {
        match runs {
            [a, b] => ratio(f(a), f(b)),
            _ => None,
        }
    };
    rows.push((
        "clients ready / total".into(),
        runs.iter()
            .map(|f| format!("{} / {}", f.ready, f.clients))
            .collect(),
        None,
    ));
    rows.push((
        "connected (failed)".into(),
        runs.iter()
            .map(|f| format!("{} ({})", f.connected, f.failed))
            .collect(),
        None,
    ));
    rows.push((
        "rooms".into(),
        runs.iter().map(|f| f.rooms.to_string()).collect(),
        None,
    ));
    rows.push((
        "setup time (s)".into(),
        runs.iter().map(|f| format!("{:.1}", f.setup_secs)).collect(),
        pair(&|f| f.setup_secs),
    ));
    rows.push((
        "messages sent".into(),
        runs.iter().map(|f| f.sent.to_string()).collect(),
        None,
    ));
    rows.push((
        "messages received".into(),
        runs.iter().map(|f| f.received.to_string()).collect(),
        None,
    ));
    rows.push((
        "messages lost".into(),
        runs.iter()
            .map(|f| f.sent.saturating_sub(f.received).to_string())
            .collect(),
        None,
    ));
    rows.push((
        "messages/s (received)".into(),
        runs.iter().map(|f| format!("{:.0}", f.rate())).collect(),
        pair(&|f| f.rate()),
    ));
    for (label, q) in [
        ("latency p50 (ms)", 0.5),
        ("latency p90 (ms)", 0.9),
        ("latency p99 (ms)", 0.99),
        ("latency p99.9 (ms)", 0.999),
    ] {
        rows.push((
            label.into(),
            runs.iter().map(|f| ms(f.percentile_ms(q))).collect(),
            pair(&|f| f.percentile_ms(q).unwrap_or(0.0)),
        ));
    }
    rows.push((
        "latency max (ms)".into(),
        runs.iter().map(|f| ms(f.max_ms())).collect(),
        pair(&|f| f.max_ms().unwrap_or(0.0)),
    ));
    rows.push((
        "server RSS (MiB)".into(),
        runs.iter()
            .map(|f| format!("{:.1}", f.rss_kib as f64 / 1024.0))
            .collect(),
        pair(&|f| f.rss_kib as f64),
    ));
    rows.push((
        "server peak RSS (MiB)".into(),
        runs.iter()
            .map(|f| format!("{:.1}", f.hwm_kib as f64 / 1024.0))
            .collect(),
        pair(&|f| f.hwm_kib as f64),
    ));
    rows.push((
        "server CPU (% of a core)".into(),
        runs.iter().map(|f| format!("{:.0}", f.server_cpu)).collect(),
        pair(&|f| f.server_cpu),
    ));
    rows.push((
        "bench clients CPU (%)".into(),
        runs.iter().map(|f| format!("{:.0}", f.bench_cpu)).collect(),
        None,
    ));
    rows.push((
        "other load on the machine (%)".into(),
        runs.iter()
            .map(|f| format!("{:.0}", (f.machine_busy - f.server_cpu - f.bench_cpu).max(0.0)))
            .collect(),
        None,
    ));
    rows.push((
        "machine busy (% of a core)".into(),
        runs.iter()
            .map(|f| format!("{:.0} of {}", f.machine_busy, cores() * 100))
            .collect(),
        None,
    ));
    rows.push((
        "bench RSS (MiB)".into(),
        runs.iter()
            .map(|f| format!("{:.1}", f.bench_rss_kib as f64 / 1024.0))
            .collect(),
        None,
    ));
    rows.push((
        "unexpected frames / skipped".into(),
        runs.iter()
            .map(|f| format!("{} / {}", f.unexpected, f.skipped))
            .collect(),
        None,
    ));

    println!();
    if !title.is_empty() {
        println!("== {title}");
    }
    println!(
        "signaling relay: {} clients, rooms of {}, {} signal/s per client, {} B padding, {} s measured after {} s warmup",
        args.clients, args.room_size, args.rate, args.payload_bytes, args.duration_secs, args.warmup_secs
    );
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(10);
    let col = 16;
    let mut header = format!("{:width$}", "");
    for f in runs {
        header.push_str(&format!(" | {:>col$}", head(f)));
    }
    if runs.len() == 2 {
        header.push_str(&format!(" | {:>8}", "ratio"));
    }
    println!("{header}");
    println!("{}", "-".repeat(header.chars().count()));
    for (label, values, r) in rows {
        let mut line = format!("{label:width$}");
        for v in &values {
            line.push_str(&format!(" | {v:>col$}"));
        }
        if runs.len() == 2 {
            line.push_str(&format!(
                " | {:>8}",
                r.map_or(String::new(), |r| format!("{r:.2}x"))
            ));
        }
        println!("{line}");
    }
    if runs.len() == 2 {
        println!("ratio = {} / {}", head(&runs[0]), head(&runs[1]));
    }
    for f in runs.iter().filter(|f| f.kind == Kind::Rtcroom) {
        let goal = f.ready == f.clients && f.percentile_ms(0.99).is_some_and(|p| p < 10.0);
        println!(
            "goal (all {} clients in {} rooms, p99 < 10 ms): {}",
            f.clients,
            f.rooms,
            if goal { "met" } else { "NOT met" }
        );
    }
}

async fn bench(args: Args) -> ExitCode {
    if args.clients < 2 || args.room_size < 2 || args.rate <= 0.0 || args.duration_secs == 0 {
        eprintln!("rtcroom-bench: needs --clients >= 2, --room-size >= 2, --rate > 0, --duration-secs > 0");
        return ExitCode::FAILURE;
    }
    let (soft, hard) = raise_nofile_limit();
    println!("open-file limit: {soft} (hard {hard}); {} cores", cores());
    if (soft as usize) < args.clients + 64 {
        eprintln!(
            "rtcroom-bench: the open-file limit {soft} cannot hold {} client sockets (raise `ulimit -Hn`)",
            args.clients
        );
        return ExitCode::FAILURE;
    }
    let kinds: &[Kind] = match args.only {
        Only::Rtcroom => &[Kind::Rtcroom],
        Only::Baseline => &[Kind::Baseline],
        Only::Both => &[Kind::Rtcroom, Kind::Baseline],
    };
    let rounds = args.rounds.max(1);
    let mut all: Vec<Vec<Figures>> = kinds.iter().map(|_| Vec::new()).collect();
    for round in 1..=rounds {
        let mut runs = Vec::new();
        for &kind in kinds {
            match run(kind, &args).await {
                Ok(figures) => runs.push(figures),
                Err(err) => {
                    eprintln!("rtcroom-bench: {} run failed: {err}", kind.name());
                    return ExitCode::FAILURE;
                }
            }
            // Let the sockets of the previous run close before the next one starts.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let title = if rounds > 1 {
            format!("round {round} of {rounds}")
        } else {
            String::new()
        };
        print_report(&args, &title, &runs);
        for (slot, figures) in all.iter_mut().zip(runs) {
            slot.push(figures);
        }
    }
    if rounds > 1 {
        let medians: Vec<Figures> = all
            .into_iter()
            .map(|mut runs| {
                runs.sort_by(|a, b| {
                    a.percentile_ms(0.99)
                        .unwrap_or(f64::MAX)
                        .total_cmp(&b.percentile_ms(0.99).unwrap_or(f64::MAX))
                });
                runs.swap_remove(runs.len() / 2)
            })
            .collect();
        print_report(
            &args,
            &format!("summary: each server's median round by p99 of {rounds}"),
            &medians,
        );
    }
    ExitCode::SUCCESS
}
