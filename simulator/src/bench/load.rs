//! The load generator: closed-loop (C workers, each starting its next unit
//! when the last one finished) and open-loop (units started at a fixed
//! rate whether or not earlier ones finished; a unit's first request is
//! timed from when it *should* have started, so a slow system cannot hide
//! its queueing — no coordinated omission).
//!
//! A *unit* is one round of the workload for one worker (an acquire and
//! its release; a submit, claim and ack; …), made of requests of
//! `ops_per_request` ops. Only what starts and ends inside the measured
//! window (after the warm-up) is counted.

use super::histogram::{Histogram, Percentiles};
use super::target::Worker;
use indicatif::ProgressBar;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

/// Errors kept verbatim per point (the rest are only counted).
const ERRORS_KEPT_MAX: usize = 8;

/// After an error, a worker pauses this long before its next unit (a
/// failing system is not hammered in a tight loop).
const ERROR_BACKOFF: Duration = Duration::from_millis(20);

/// How often the progress line is redrawn.
const PROGRESS_TICK: Duration = Duration::from_millis(250);

/// After the window closes, how long in-flight units get to finish before
/// their workers are abandoned (their results are not counted anyway).
const DRAIN_MAX: Duration = Duration::from_secs(15);

/// What a worker measured.
#[derive(Debug)]
pub struct Recorder {
    from: Instant,
    to: Instant,
    /// Every request.
    pub requests: Histogram,
    /// Per request kind ("acquire", "release", "submit", …).
    pub kinds: BTreeMap<&'static str, Histogram>,
    /// Units, from their (intended) start to their end.
    pub units: Histogram,
    /// Ops in counted requests.
    pub ops: u64,
    /// Ops the system executed but refused (e.g. a try-lock of a taken
    /// lock): committed, counted in `ops` too.
    pub refused: u64,
    /// Requests that failed (no verified answer).
    pub errors: u64,
    /// The first few errors.
    pub error_samples: Vec<String>,
    /// Ops completed at any time (for the progress line).
    live: Arc<AtomicU64>,
}

impl Recorder {
    fn new(from: Instant, to: Instant, live: Arc<AtomicU64>) -> Recorder {
        Recorder {
            from,
            to,
            requests: Histogram::new(),
            kinds: BTreeMap::new(),
            units: Histogram::new(),
            ops: 0,
            refused: 0,
            errors: 0,
            error_samples: Vec::new(),
            live,
        }
    }

    fn counts(&self, started: Instant, now: Instant) -> bool {
        started >= self.from && now <= self.to
    }

    /// A request of `ops` ops of kind `kind`, started at `started`, has a
    /// verified answer now; `refused` of its ops were refused.
    pub fn request(&mut self, kind: &'static str, started: Instant, ops: usize, refused: usize) {
        let now = Instant::now();
        self.live.fetch_add(ops as u64, Ordering::Relaxed);
        if !self.counts(started, now) {
            return;
        }
        let latency = now - started;
        self.requests.record(latency);
        self.kinds.entry(kind).or_default().record(latency);
        self.ops += ops as u64;
        self.refused += refused as u64;
    }

    /// A request failed.
    pub fn error(&mut self, kind: &'static str, error: impl std::fmt::Display) {
        let now = Instant::now();
        if now < self.from || now > self.to {
            return;
        }
        self.errors += 1;
        if self.error_samples.len() < ERRORS_KEPT_MAX {
            self.error_samples.push(format!("{kind}: {error}"));
        }
    }

    fn unit(&mut self, started: Instant) {
        let now = Instant::now();
        if self.counts(started, now) {
            self.units.record(now - started);
        }
    }

    fn merge(&mut self, other: Recorder) {
        self.requests.merge(&other.requests);
        for (k, h) in other.kinds {
            self.kinds.entry(k).or_default().merge(&h);
        }
        self.units.merge(&other.units);
        self.ops += other.ops;
        self.refused += other.refused;
        self.errors += other.errors;
        for e in other.error_samples {
            if self.error_samples.len() < ERRORS_KEPT_MAX {
                self.error_samples.push(e);
            }
        }
    }
}

/// How load is offered.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Load {
    /// `clients` workers, each one unit at a time.
    Closed {
        /// Concurrent workers.
        clients: usize,
    },
    /// Units started at `rate` per second, by up to `clients` workers.
    Open {
        /// Units per second offered.
        rate: f64,
        /// Workers (the most units in flight).
        clients: usize,
    },
}

impl Load {
    /// The workers this load needs.
    pub fn clients(&self) -> usize {
        match self {
            Load::Closed { clients } | Load::Open { clients, .. } => *clients,
        }
    }
}

/// The measured result of one point.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    /// The measured window, seconds.
    pub seconds: f64,
    /// Committed ops per second.
    pub ops_per_sec: f64,
    /// Answered requests per second.
    pub requests_per_sec: f64,
    /// Ops per request, measured.
    pub ops_per_request: f64,
    /// Units per second.
    pub units_per_sec: f64,
    /// Ops the system refused (committed, counted in the throughput).
    pub refused_ops: u64,
    /// Failed requests.
    pub errors: u64,
    /// The first few errors.
    pub error_samples: Vec<String>,
    /// Open loop: units that could not even be started (every worker
    /// busy and the start queue full): the system did not keep up.
    pub missed_units: u64,
    /// Every request's latency.
    pub latency: Percentiles,
    /// Latency per request kind.
    pub latency_by_kind: BTreeMap<String, Percentiles>,
    /// Units' latency (open loop: from the intended start).
    pub unit_latency: Percentiles,
}

fn summarize(total: Recorder, seconds: f64, missed: u64) -> Measured {
    let requests = total.requests.count();
    Measured {
        seconds,
        ops_per_sec: total.ops as f64 / seconds,
        requests_per_sec: requests as f64 / seconds,
        ops_per_request: if requests == 0 {
            0.0
        } else {
            total.ops as f64 / requests as f64
        },
        units_per_sec: total.units.count() as f64 / seconds,
        refused_ops: total.refused,
        errors: total.errors,
        error_samples: total.error_samples,
        missed_units: missed,
        latency: total.requests.percentiles(),
        latency_by_kind: total
            .kinds
            .iter()
            .map(|(k, h)| (k.to_string(), h.percentiles()))
            .collect(),
        unit_latency: total.units.percentiles(),
    }
}

/// Redraws `bar`'s message with the live throughput until `stop`.
fn progress(bar: ProgressBar, live: Arc<AtomicU64>, label: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (mut last, mut at) = (0u64, Instant::now());
        loop {
            tokio::time::sleep(PROGRESS_TICK).await;
            let now_ops = live.load(Ordering::Relaxed);
            let rate = (now_ops - last) as f64 / at.elapsed().as_secs_f64();
            (last, at) = (now_ops, Instant::now());
            bar.set_message(format!("{label}: {rate:.0} ops/s"));
        }
    })
}

/// Runs `workers` under `load` for `warmup` then `duration` (measured);
/// returns the measurement and the workers (for the next point), or
/// `None` for a worker that did not finish in time.
pub async fn run(
    workers: Vec<Worker>,
    load: Load,
    warmup: Duration,
    duration: Duration,
    bar: &ProgressBar,
    label: String,
) -> (Measured, Vec<Worker>) {
    let start = Instant::now();
    let (from, to) = (start + warmup, start + warmup + duration);
    let live = Arc::new(AtomicU64::new(0));
    let ticker = progress(bar.clone(), live.clone(), label);
    let tickets = match load {
        Load::Closed { .. } => None,
        Load::Open { rate, clients } => Some(open_loop_tickets(rate, clients, start, from, to)),
    };
    let (receiver, dispatcher) = match tickets {
        Some((rx, handle)) => (Some(Arc::new(Mutex::new(rx))), Some(handle)),
        None => (None, None),
    };
    let mut handles = Vec::new();
    for mut worker in workers {
        let mut rec = Recorder::new(from, to, live.clone());
        let receiver = receiver.clone();
        handles.push(tokio::spawn(async move {
            loop {
                let started = match &receiver {
                    None => {
                        let now = Instant::now();
                        if now >= to {
                            break;
                        }
                        now
                    }
                    Some(rx) => match rx.lock().await.recv().await {
                        Some(intended) => intended,
                        None => break,
                    },
                };
                let ok = worker.unit(&mut rec, started).await;
                if ok {
                    rec.unit(started);
                } else {
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            }
            (worker, rec)
        }));
    }
    let missed = match dispatcher {
        Some(d) => d.await.unwrap_or(0),
        None => 0,
    };
    let mut total = Recorder::new(from, to, live);
    let mut back = Vec::new();
    let drain_deadline = to + DRAIN_MAX;
    for handle in handles {
        let left = drain_deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, handle).await {
            Ok(Ok((worker, rec))) => {
                total.merge(rec);
                back.push(worker);
            }
            Ok(Err(e)) => total.error("worker", format!("worker task failed: {e}")),
            Err(_) => total.error("worker", "a worker did not finish its unit in time"),
        }
    }
    ticker.abort();
    (summarize(total, duration.as_secs_f64(), missed), back)
}

/// The open loop's dispatcher: unit `i` is due at `start + i / rate`; a
/// due unit that finds the start queue full is missed (counted when due
/// inside the measured window, from `from` on).
fn open_loop_tickets(
    rate: f64,
    clients: usize,
    start: Instant,
    from: Instant,
    to: Instant,
) -> (mpsc::Receiver<Instant>, tokio::task::JoinHandle<u64>) {
    let (tx, rx) = mpsc::channel(clients.max(1));
    let handle = tokio::spawn(async move {
        let mut sent = 0u64;
        let mut missed = 0u64;
        let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
        loop {
            let now = Instant::now();
            if now >= to {
                break;
            }
            let due = ((now - start).as_secs_f64() * rate) as u64;
            while sent < due {
                let intended = start + interval.mul_f64(sent as f64);
                if tx.try_send(intended).is_err() && intended >= from {
                    missed += 1;
                }
                sent += 1;
            }
            let next = start + interval.mul_f64(sent as f64);
            tokio::time::sleep_until(next.max(now + Duration::from_micros(200)).into()).await;
        }
        missed
    });
    (rx, handle)
}
