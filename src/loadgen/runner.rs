//! `trellis bench run`: the phases of a run (warm-up, the measured mix, the
//! health-call floor), each paced as a closed loop (N in flight) or an open
//! loop (a fixed schedule, latency from each call's intended send time, so a
//! slow server cannot hide its queueing: no coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use super::LoadgenError;
use super::cpu::read_cpu_time;
use super::record::{Answer, Recorder};
use super::report::Report;
use super::workload::{Picker, Planned, WorkloadMix, minimize_latency, sampled_users, stream};
use crate::api::proto::v1;
use crate::api::proto::v1::check_permission_response::Permissionship;
use crate::client::connect::{Authed, Connection};
use crate::workload::{SocialShape, user_id};

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// `concurrency` workers, each sending its next request when the
    /// previous one answers.
    Closed { concurrency: usize },
    /// `rate` requests per second on a fixed schedule, at most
    /// `max_in_flight` outstanding (beyond that, sends wait, and the wait
    /// counts as latency).
    Open { rate: f64, max_in_flight: usize },
}

/// Everything a run needs besides the connection.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The generated network's size and seed (`bench generate`'s), which
    /// fix the ids the requests may name.
    pub relationships: usize,
    pub seed: u64,
    /// Share of the user pool that asks the checks (the test's 1 %).
    pub sample: f64,
    pub write_share: f64,
    /// Share of requests that are LookupResources pages.
    pub lookup_share: f64,
    pub pace: Pace,
    pub warmup: Duration,
    pub duration: Duration,
    pub floor_duration: Duration,
    /// The server's process, for its CPU time (same machine only).
    pub server_pid: Option<u32>,
    /// How long to wait for the loaded data to be visible at
    /// minimize_latency (the server's quantization window) before starting.
    pub visible_timeout: Duration,
    /// Printed as part of the report.
    pub endpoint: String,
}

/// The outcome of one measured phase.
#[derive(Debug, Clone)]
pub struct PhaseOutcome {
    pub recorder: Recorder,
    /// From the first send to the last answer.
    pub elapsed: Duration,
    pub server_cpu: Option<Duration>,
    pub client_cpu: Option<Duration>,
}

/// Runs warm-up, the mix and the floor against `connection`.
pub async fn run(connection: &Connection, config: &RunConfig) -> Result<Report, LoadgenError> {
    await_visible(connection, config.visible_timeout).await?;
    let shape = SocialShape::for_relationships(config.relationships);
    let users = sampled_users(&shape, config.sample, config.seed);
    let mix = WorkloadMix {
        write_share: config.write_share,
        lookup_share: config.lookup_share,
        health_only: false,
    };
    let pickers = |phase: u64, mix: WorkloadMix| {
        let users = users.clone();
        let seed = config.seed;
        move |worker: u64| Picker::new(shape, users.clone(), seed, stream(phase, worker), mix)
    };
    if !config.warmup.is_zero() {
        phase(connection, config, pickers(0, mix), config.warmup).await?;
    }
    let main = phase(connection, config, pickers(1, mix), config.duration).await?;
    let floor_mix = WorkloadMix {
        health_only: true,
        ..mix
    };
    let floor = phase(
        connection,
        config,
        pickers(2, floor_mix),
        config.floor_duration,
    )
    .await?;
    Ok(Report::build(config, &main, &floor))
}

/// Waits until a check that must answer HAS (`user:u0` sees its own
/// profile through `self`) does so at minimize_latency: right after a load,
/// the server's quantized revision may predate the data for a few seconds,
/// and measuring then would time answers over an empty graph.
async fn await_visible(connection: &Connection, timeout: Duration) -> Result<(), LoadgenError> {
    let deadline = Instant::now() + timeout;
    let user = v1::ObjectReference {
        object_type: "user".into(),
        object_id: user_id(0),
    };
    let request = v1::CheckPermissionRequest {
        consistency: Some(minimize_latency()),
        resource: Some(user.clone()),
        permission: "view_profile".into(),
        subject: Some(v1::SubjectReference {
            object: Some(user),
            optional_relation: String::new(),
        }),
        context: None,
        with_tracing: false,
    };
    let mut client = connection.permissions(0);
    loop {
        let answer = client.check_permission(request.clone()).await;
        match answer {
            Ok(response)
                if response.get_ref().permissionship() == Permissionship::HasPermission =>
            {
                return Ok(());
            }
            // Not there yet, or the schema is not visible yet either.
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {}
            Err(status) => return Err(LoadgenError::call("CheckPermission", status)),
        }
        if Instant::now() >= deadline {
            return Err(LoadgenError::NotVisible(timeout));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One phase: CPU sampled around it, paced as configured.
async fn phase<F>(
    connection: &Connection,
    config: &RunConfig,
    pickers: F,
    duration: Duration,
) -> Result<PhaseOutcome, LoadgenError>
where
    F: Fn(u64) -> Picker,
{
    let cpu = |pid: Option<u32>| pid.map(read_cpu_time).transpose();
    let server_before = cpu(config.server_pid)?;
    let client_before = cpu(Some(std::process::id()))?;
    let start = Instant::now();
    let recorder = match config.pace {
        Pace::Closed { concurrency } => {
            closed_loop(connection, &pickers, concurrency, start + duration).await
        }
        Pace::Open {
            rate,
            max_in_flight,
        } => open_loop(connection, pickers(0), rate, max_in_flight, start, duration).await,
    };
    let elapsed = start.elapsed();
    let server_after = cpu(config.server_pid)?;
    let client_after = cpu(Some(std::process::id()))?;
    let spent = |before: Option<_>, after: Option<_>| match (before, after) {
        (Some(b), Some(a)) => Some(super::CpuTime::until(b, a)),
        _ => None,
    };
    Ok(PhaseOutcome {
        recorder,
        elapsed,
        server_cpu: spent(server_before, server_after),
        client_cpu: spent(client_before, client_after),
    })
}

/// `concurrency` workers, each with its own picker, clients and recorder
/// (merged at the end, so no lock is shared on the hot path).
async fn closed_loop<F>(
    connection: &Connection,
    pickers: &F,
    concurrency: usize,
    deadline: Instant,
) -> Recorder
where
    F: Fn(u64) -> Picker,
{
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency.max(1) {
        let mut picker = pickers(worker as u64);
        let mut clients = Clients::new(connection, worker);
        workers.spawn(async move {
            let mut recorder = Recorder::default();
            while Instant::now() < deadline {
                let planned = picker.next_request();
                let kind = planned.kind();
                let sent = Instant::now();
                let outcome = clients.send(planned).await;
                recorder.record(kind, sent.elapsed(), outcome);
            }
            recorder
        });
    }
    let mut all = Recorder::default();
    while let Some(done) = workers.join_next().await {
        // A worker panicking is a bug in this module; its outcomes are lost
        // and the report says so by its counts.
        if let Ok(recorder) = done {
            all.merge(&recorder);
        }
    }
    all
}

/// Requests at `start + i / rate`; each one's latency runs from that
/// intended time, so time spent waiting for a send slot is counted.
async fn open_loop(
    connection: &Connection,
    mut picker: Picker,
    rate: f64,
    max_in_flight: usize,
    start: Instant,
    duration: Duration,
) -> Recorder {
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let collector = tokio::spawn(async move {
        let mut recorder = Recorder::default();
        while let Some((kind, latency, outcome)) = done_rx.recv().await {
            recorder.record(kind, latency, outcome);
        }
        recorder
    });
    let mut i: u32 = 0;
    loop {
        let intended = start + interval * i;
        if intended >= start + duration {
            break;
        }
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break; // closed: cannot happen, the semaphore is never closed
        };
        let planned = picker.next_request();
        let mut clients = Clients::new(connection, i as usize);
        let done = done_tx.clone();
        tokio::spawn(async move {
            let kind = planned.kind();
            let outcome = clients.send(planned).await;
            let _ = done.send((kind, intended.elapsed(), outcome));
            drop(slot);
        });
        i = i.saturating_add(1);
    }
    drop(done_tx);
    collector.await.unwrap_or_default()
}

/// The clients one sender uses, on one of the connections.
struct Clients {
    permissions: v1::permissions_service_client::PermissionsServiceClient<Authed>,
    health: tonic_health::pb::health_client::HealthClient<Authed>,
}

impl Clients {
    fn new(connection: &Connection, i: usize) -> Self {
        Self {
            permissions: connection.permissions(i),
            health: connection.health(i),
        }
    }

    /// Sends one request; the answer, or the gRPC code it failed with.
    async fn send(&mut self, planned: Planned) -> Result<Answer, tonic::Code> {
        match planned {
            Planned::Check(_, request) => {
                let response = self.permissions.check_permission(request).await;
                let answer = response.map_err(|s| s.code())?;
                Ok(match answer.get_ref().permissionship() {
                    Permissionship::HasPermission => Answer::Has,
                    Permissionship::NoPermission => Answer::No,
                    Permissionship::ConditionalPermission => Answer::Conditional,
                    Permissionship::Unspecified => Answer::Unspecified,
                })
            }
            Planned::Write(request) => {
                let response = self.permissions.write_relationships(request).await;
                response.map(|_| Answer::Ok).map_err(|s| s.code())
            }
            Planned::Lookup(request) => {
                // The whole page is read: the latency is the last result's.
                let response = self.permissions.lookup_resources(request).await;
                let mut stream = response.map_err(|s| s.code())?.into_inner();
                while stream.message().await.map_err(|s| s.code())?.is_some() {}
                Ok(Answer::Ok)
            }
            Planned::Health => {
                let request = HealthCheckRequest {
                    service: String::new(),
                };
                let response = self.health.check(request).await.map_err(|s| s.code())?;
                Ok(match response.get_ref().status() {
                    ServingStatus::Serving => Answer::Ok,
                    _ => Answer::Unspecified,
                })
            }
        }
    }
}
