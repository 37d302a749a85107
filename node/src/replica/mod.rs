//! The replica runtime: the one event loop that drives the sans-IO cores
//! (consensus, gossip, qlock, lockchain) with libp2p, RocksDB and the
//! clock, and answers the client API through [`ReplicaHandle`].
//!
//! Codemap:
//! - [`handle`] — the command channel the API layer talks through (the
//!   fixed contract);
//! - `runtime` — the event loop itself;
//! - [`wire`] — [`PeerMessage`], what replicas say on the PBFT protocol;
//! - [`certify`] — receipt trees of recent batches and the batch
//!   signatures that certify replies;
//! - [`persist`] — records in RocksDB, the storage worker, recovery;
//! - [`metrics`] — the runtime's Prometheus metrics.
//!
//! Start a replica with [`spawn`]; stop it with [`RuntimeTask::stop`].
//!
//! **Architecture invariant:** the event loop is the only place that reads
//! the clock; everything it drives is deterministic given its inputs.

pub mod certify;
pub mod handle;
pub mod metrics;
pub mod persist;
mod runtime;
pub mod wire;

pub use handle::{Command, ReplicaHandle, SubmitOutcome};
pub use metrics::RuntimeMetrics;
pub use runtime::SNAPSHOT_PULSE_INTERVAL;
pub use wire::PeerMessage;

use crate::net::{build_swarm, NetConfig, NetError, NetMetrics, PeerAddress};
use libp2p::Multiaddr;
use primitives::{KeyPair, Membership, ReplicaId, RequestLimits};
use prometheus_client::registry::Registry;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The runtime's own bounds.
#[derive(Clone, Debug)]
pub struct RuntimeLimits {
    /// Requests held in the mempool from clients and gossip (payloads the
    /// core fetched for a batch are admitted beyond it: the core bounds
    /// those).
    pub mempool_max: usize,
    /// Requests with submitters waiting for a certified reply.
    pub pending_replies_max: usize,
    /// Submitters waiting on one request.
    pub waiters_per_request_max: usize,
    /// How long a submitter waits before [`client::api::ApiError::Timeout`].
    pub reply_timeout: Duration,
    /// Executed batches whose receipt trees are kept in memory (late
    /// signatures, replies, proofs); also the executed-request index.
    pub batch_cache_max: usize,
    /// Event subscribers in total.
    pub subscribers_max: usize,
    /// Inbound consensus messages queued.
    pub consensus_lane_max: usize,
    /// Inbound fetch messages queued.
    pub fetch_lane_max: usize,
    /// Client commands queued in the loop (beyond the handle's channel).
    pub client_lane_max: usize,
    /// Inbound gossip messages queued.
    pub gossip_lane_max: usize,
    /// After a stop, how long the loop waits for the batch in flight.
    pub stop_grace: Duration,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits {
            mempool_max: 65_536,
            pending_replies_max: 65_536,
            waiters_per_request_max: 8,
            reply_timeout: Duration::from_secs(10),
            batch_cache_max: 1024,
            subscribers_max: 65_536,
            consensus_lane_max: 65_536,
            fetch_lane_max: 4096,
            client_lane_max: 4096,
            gossip_lane_max: 16_384,
            stop_grace: Duration::from_secs(2),
        }
    }
}

/// Everything a replica needs to run.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// This replica.
    pub id: ReplicaId,
    /// Its key (also its libp2p identity).
    pub key: KeyPair,
    /// The replica set.
    pub membership: Membership,
    /// Where to dial each replica, by replica index (the own entry is
    /// ignored; an empty list means it dials us).
    pub peer_addresses: Vec<Vec<Multiaddr>>,
    /// The p2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// The RocksDB directory (created if missing).
    pub data_dir: PathBuf,
    /// Consensus knobs (`membership`, `id`, `key` and `cluster` are taken
    /// from the fields above).
    pub consensus: consensus::Config,
    /// The state machine's configuration (identical on every replica).
    pub qlock: qlock::Config,
    /// The gossip core's configuration.
    pub gossip: gossip::Config,
    /// Request shape limits (identical on every replica).
    pub request_limits: RequestLimits,
    /// RocksDB settings.
    pub storage: storage::StorageConfig,
    /// The runtime's bounds.
    pub limits: RuntimeLimits,
}

impl RuntimeConfig {
    /// Defaults for replica `id` of `membership`, storing in `data_dir`,
    /// listening on `listen`.
    pub fn new(
        id: ReplicaId,
        key: KeyPair,
        membership: Membership,
        listen: Vec<Multiaddr>,
        data_dir: PathBuf,
    ) -> Self {
        let consensus = consensus::Config::new(membership.clone(), id, key.clone());
        RuntimeConfig {
            peer_addresses: vec![Vec::new(); membership.n()],
            id,
            key,
            membership,
            listen,
            data_dir,
            consensus,
            qlock: qlock::Config::default(),
            gossip: gossip::Config::default(),
            request_limits: RequestLimits::default(),
            storage: storage::StorageConfig::default(),
            limits: RuntimeLimits::default(),
        }
    }

    /// The consensus configuration with this replica's identity.
    pub fn consensus_config(&self) -> consensus::Config {
        let mut c = self.consensus.clone();
        c.membership = self.membership.clone();
        c.cluster = self.membership.cluster_id();
        c.id = self.id;
        c.key = self.key.clone();
        c
    }

    fn net_config(&self) -> NetConfig {
        let peers = self
            .membership
            .replicas
            .iter()
            .enumerate()
            .map(|(i, key)| PeerAddress {
                key: *key,
                addresses: if i == self.id.index() {
                    Vec::new()
                } else {
                    self.peer_addresses.get(i).cloned().unwrap_or_default()
                },
            })
            .collect();
        let mut net = NetConfig::new(self.listen.clone(), peers);
        net.gossip = crate::net::gossip_driver::gossip_frame_config(&self.gossip);
        net
    }
}

/// Why a replica could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The consensus configuration is invalid.
    #[error("consensus config: {0}")]
    Consensus(consensus::ConfigError),
    /// The network could not start.
    #[error("network: {0}")]
    Net(#[from] NetError),
    /// The store failed (a replica that cannot persist must not vote).
    #[error("storage: {0}")]
    Storage(storage::StorageError),
    /// The data dir holds something unusable.
    #[error("recovery: {0}")]
    Recovery(String),
    /// The loop's task panicked or was cancelled.
    #[error("event loop task: {0}")]
    Join(String),
}

/// A running replica's loop: stop it gracefully and wait for it.
#[derive(Debug)]
pub struct RuntimeTask {
    stop: Option<oneshot::Sender<()>>,
    join: JoinHandle<Result<(), RuntimeError>>,
}

impl RuntimeTask {
    /// Stops taking requests, finishes the batch in flight (bounded by
    /// [`RuntimeLimits::stop_grace`]), syncs the store and waits for the
    /// loop to end.
    pub async fn stop(mut self) -> Result<(), RuntimeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join().await
    }

    /// Waits for the loop to end (it ends on its own only on an error, or
    /// once every [`ReplicaHandle`] is dropped).
    pub async fn join(self) -> Result<(), RuntimeError> {
        match self.join.await {
            Ok(result) => result,
            Err(e) => Err(RuntimeError::Join(e.to_string())),
        }
    }

    /// Kills the loop at once, without syncing (tests of crash recovery).
    pub fn abort(&self) {
        self.join.abort();
    }
}

/// Starts a replica: opens its store (recovering from it), builds its
/// swarm and spawns its event loop on the current tokio runtime. Metrics
/// are registered on `registry` (`qlock_*`, and `qlock_net_*` for the
/// network). Returns the handle the API layer uses and the loop's task.
pub fn spawn(
    config: RuntimeConfig,
    registry: &mut Registry,
) -> Result<(ReplicaHandle, RuntimeTask), RuntimeError> {
    config
        .consensus_config()
        .validate()
        .map_err(RuntimeError::Consensus)?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| RuntimeError::Recovery(format!("data dir: {e}")))?;
    let store = storage::Store::open(&config.data_dir, config.storage.clone())
        .map_err(RuntimeError::Storage)?;
    let net_metrics = NetMetrics::default();
    net_metrics.register(registry.sub_registry_with_prefix("qlock_net"));
    let metrics = RuntimeMetrics::default();
    metrics.register(registry);
    let swarm = build_swarm(&config.key.seed(), &config.net_config(), &net_metrics)?;
    let (handle, commands) = ReplicaHandle::channel();
    let runtime = runtime::Runtime::new(config, swarm, Arc::new(store), metrics, commands)?;
    let (stop, stop_rx) = oneshot::channel();
    let join = tokio::spawn(runtime.run(stop_rx));
    Ok((
        handle,
        RuntimeTask {
            stop: Some(stop),
            join,
        },
    ))
}
