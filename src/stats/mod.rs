//! Stats tracing: rtcstats-compatible dumps (fileFormat 3), sans-IO.
//!
//! Plain state machines with time as an input (`now`, epoch ms), built and tested natively; a
//! thin web-sys shell feeds them browser events and carries out their actions. The wire format,
//! tables (and where they come from), the ack extension, generation rules, polling and summary
//! fields are specified in `docs/stats-format.md`.
//!
//! - [`value`]: an ordered JSON value whose writer matches JS `JSON.stringify` (no serde_json
//!   in the wasm build);
//! - [`methods`]: the rtcstats method table;
//! - [`compress`]: getStats delta compression and decompression, config sanitizing;
//! - [`trace`]: the generation-guarded trace with buffering, acks and replay;
//! - [`tracer`]: the trace plus the peer connections it watches (schedules, final samples);
//! - [`poll`]: when to call getStats for one peer connection;
//! - [`summary`]: what an in-page UI shows (candidate type, RTT, bitrates, loss, jitter, fps);
//! - [`dump`]: reads a collector dump back and checks its invariants.

pub mod compress;
pub mod dump;
pub mod methods;
pub mod poll;
pub mod summary;
pub mod trace;
pub mod tracer;
pub mod value;

pub use compress::{sanitize_configuration, StatsCompressor};
pub use poll::PollSchedule;
pub use summary::{summarize, MediaSummary, Summary};
pub use trace::{AckMode, Action, Counters, Trace, TraceConfig};
pub use value::Value;
