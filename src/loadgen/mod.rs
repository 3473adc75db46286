//! The load generator behind `trellis bench`: loads the social network of
//! AuthZed's 1M-QPS test into any SpiceDB-compatible server (`generate`),
//! drives it with the test's request mix and measures latency, answers,
//! errors and the server's CPU against the floor of a health call (`run`).
//! A client of the public API: it speaks only `authzed.api.v1` and
//! `grpc.health.v1` over the generated clients, and depends on `workload`
//! for the data, on `api::proto` for the wire types and on
//! `client::connect` for its connections, nothing else.

mod cpu;
mod generate;
mod plot;
mod record;
mod report;
mod runner;
mod workload;

pub use crate::client::connect::{Connection, Target, Transport};
pub use cpu::{CpuTime, read_cpu_time};
pub use generate::{LoadVia, generate, write_relationships_file};
pub use plot::latency_svg;
pub use record::{Answer, Recorder};
pub use report::{KindReport, PhaseReport, Report, ServerCpu};
pub use runner::{Pace, PhaseOutcome, RunConfig, run};
pub use workload::{Picker, Planned, RequestKind, WorkloadMix, check_plan};

/// The social-network schema every generated network is written with.
pub const SCHEMA: &str = include_str!("../../schema-examples/social-network.zed");

/// Why a benchmark command could not do its work. Per-request failures
/// are not errors: they are counted in the report by gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// No connection to the server could be opened.
    #[error(transparent)]
    Connect(#[from] crate::client::connect::ConnectError),
    /// A setup call (schema, load, the visibility probe) failed.
    #[error("{call} failed: {status}")]
    Call {
        call: &'static str,
        status: Box<tonic::Status>,
    },
    #[error("{call} loaded {got} relationships, {want} were sent")]
    ShortLoad {
        call: &'static str,
        got: u64,
        want: u64,
    },
    /// `run` found no data: `generate` was not run with this size and seed.
    #[error(
        "the loaded data did not become visible at minimize_latency within {0:?} (run `trellis bench generate` with the same --relationships and --seed first)"
    )]
    NotVisible(std::time::Duration),
    #[error("reading the CPU time of process {pid}: {reason}")]
    Cpu { pid: u32, reason: String },
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl LoadgenError {
    fn call(call: &'static str, status: tonic::Status) -> Self {
        Self::Call {
            call,
            status: Box::new(status),
        }
    }
}
