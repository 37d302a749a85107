//! `qlockd`'s configuration: one TOML file per replica, plus the
//! `cluster.toml` that clients load (the `[cluster]` table alone).
//!
//! The file form ([`ConfigFile`], [`ClusterFile`]) is what serde reads;
//! [`Config::load`] checks it and resolves it into typed values
//! ([`Config`]), so nothing downstream re-parses a string. Every error
//! names the field it is about (`cluster.replicas[2].public_key: ...`).
//!
//! ```toml
//! replica = 0
//! key_file = "replica-0.key"      # relative to this file's directory
//! data_dir = "data-0"             # idem
//! p2p_listen = "/ip4/127.0.0.1/tcp/7100"
//! client_listen = "127.0.0.1:7200"
//! http_listen = "127.0.0.1:7300"
//! [cluster]
//! name = "qlock-local"
//! [[cluster.replicas]]
//! id = 0
//! public_key = "hex..."
//! p2p = "/ip4/127.0.0.1/tcp/7100"
//! client = "127.0.0.1:7200"
//! http = "127.0.0.1:7300"
//! [timeouts]
//! request_ms = 10000
//! [limits]
//! connections_max = 1024
//! [batching]
//! delay_ms = 2
//! [runtime]
//! worker_threads = 0              # 0: one per core
//! ```

use libp2p::Multiaddr;
use primitives::keys::KeyFileError;
use primitives::membership::REPLICAS_MAX;
use primitives::{ClusterId, KeyPair, Membership, PublicKey, ReplicaId, RequestLimits};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The cluster name `init-cluster` writes, and the default of `cluster.name`.
pub const DEFAULT_CLUSTER_NAME: &str = "qlock";

/// The first port `init-cluster` uses when none is given.
pub const DEFAULT_BASE_PORT: u16 = 7100;

/// Why a configuration could not be used. Every variant names the file or
/// the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML does not parse or does not fit the schema (toml's message
    /// names the key and shows the line).
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's error.
        source: Box<toml::de::Error>,
    },
    /// A field parsed but its value is unusable.
    #[error("{path}: {field}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// The field, as a TOML path (`cluster.replicas[1].id`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key file could not be used.
    #[error(transparent)]
    Key(#[from] KeyFileError),
}

impl ConfigError {
    /// The field an [`ConfigError::Invalid`] is about.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// File form

/// One replica as the `[[cluster.replicas]]` table lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaEntry {
    /// Its index, `0..n` (each exactly once).
    pub id: u16,
    /// Its ed25519 public key, 64 hex digits.
    pub public_key: String,
    /// Its libp2p address (a multiaddr).
    pub p2p: String,
    /// Its binary client protocol address (`host:port`).
    pub client: String,
    /// Its HTTP address (`host:port`), if it serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
}

/// The `[cluster]` table: the replica set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Part of the cluster id, so two clusters with the same keys differ.
    #[serde(default = "default_cluster_name")]
    pub name: String,
    /// The replicas.
    pub replicas: Vec<ReplicaEntry>,
}

fn default_cluster_name() -> String {
    DEFAULT_CLUSTER_NAME.to_string()
}

/// The client's view of a cluster: a `cluster.toml` holding the
/// `[cluster]` table alone. The client library reads the same shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// The replica set.
    pub cluster: ClusterSection,
}

/// `[timeouts]`, all in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// How long a gateway waits for a request's certified reply before it
    /// answers `Timeout` (the request may still commit).
    pub request_ms: u64,
    /// How long a backup waits for a request to commit before suspecting
    /// the primary (BFT-SMaRt uses 2 s).
    pub view_change_ms: u64,
    /// How long shutdown waits for in-flight client work before closing
    /// connections.
    pub shutdown_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            request_ms: 10_000,
            view_change_ms: 2_000,
            shutdown_ms: 5_000,
        }
    }
}

impl Timeouts {
    /// [`Timeouts::request_ms`] as a duration.
    pub fn request(&self) -> Duration {
        Duration::from_millis(self.request_ms)
    }

    /// [`Timeouts::view_change_ms`] as a duration.
    pub fn view_change(&self) -> Duration {
        Duration::from_millis(self.view_change_ms)
    }

    /// [`Timeouts::shutdown_ms`] as a duration.
    pub fn shutdown(&self) -> Duration {
        Duration::from_millis(self.shutdown_ms)
    }
}

/// `[batching]`: how the primary groups requests into PBFT batches (TOCS
/// 2002 §5.1). Only the primary's proposals depend on these, so replicas
/// may differ; a batch's size bound is a validity rule and is not here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Batching {
    /// How long queued requests wait for the pipeline to drain before they
    /// go out as a partial batch anyway. Longer means fewer, larger batches
    /// under load (per-batch votes and fsyncs amortised over more
    /// requests), at the price of that much latency under load.
    pub delay_ms: u64,
    /// Batches of this primary proposed and not yet executed below which a
    /// request is proposed at once (light load pays no delay).
    pub in_flight_max: u64,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            delay_ms: consensus::Config::BATCH_DELAY_MICROS_DEFAULT / 1_000,
            in_flight_max: consensus::Config::BATCHES_IN_FLIGHT_MAX_DEFAULT,
        }
    }
}

impl Batching {
    fn check(&self, path: &Path, timeouts: &Timeouts) -> Result<(), ConfigError> {
        if self.in_flight_max == 0 {
            return Err(invalid(
                path,
                "batching.in_flight_max",
                "must be at least 1",
            ));
        }
        // The view-change timer must outlast a batch's wait, or a loaded
        // primary is suspected for batching (consensus checks it too).
        if self.delay_ms >= timeouts.view_change_ms {
            return Err(invalid(
                path,
                "batching.delay_ms",
                format!(
                    "must be below timeouts.view_change_ms ({})",
                    timeouts.view_change_ms
                ),
            ));
        }
        Ok(())
    }
}

/// `[runtime]`: the process's threads. One worker cost less CPU per
/// request at light load on a 2-core machine shared by four replicas, but
/// made batches smaller and throughput lower under load (BENCHMARKS.md),
/// so the default is one per core.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// tokio worker threads (network connections, the client API; the
    /// event loop is one task, signature checks and storage have their
    /// own blocking threads). 0: one per core.
    pub worker_threads: usize,
}

/// Worker threads at most: more than this is a typo, not a machine.
pub const WORKER_THREADS_MAX: usize = 1024;

impl RuntimeSection {
    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        if self.worker_threads > WORKER_THREADS_MAX {
            return Err(invalid(
                path,
                "runtime.worker_threads",
                format!("must be at most {WORKER_THREADS_MAX} (0: one per core)"),
            ));
        }
        Ok(())
    }

    /// The worker threads to start: the setting, or one per core.
    pub fn worker_threads(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// `[limits]`: the bounds of the client API. The three request bounds must
/// be the same on every replica (validity of a request is agreed), so
/// `init-cluster` writes the same values everywhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open client connections (TCP and HTTP each) at most; more are
    /// refused and counted.
    pub connections_max: usize,
    /// Frames being answered per TCP connection at most; past it the
    /// gateway stops reading that connection (back-pressure, not loss).
    pub in_flight_per_connection_max: usize,
    /// Client keys per connection whose events are pushed.
    pub subscriptions_per_connection_max: usize,
    /// Answers queued for one connection's writer.
    pub outbound_frames_per_connection_max: usize,
    /// Requests waiting for signature verification; more are refused
    /// `Overloaded`.
    pub verify_queue_max: usize,
    /// Signatures checked in one batch.
    pub verify_batch_max: usize,
    /// Bytes of an HTTP request body.
    pub http_body_bytes_max: usize,
    /// Ops in one request.
    pub ops_max: usize,
    /// Bytes of one encoded op.
    pub op_bytes_max: usize,
    /// Bytes of one encoded request, signature included.
    pub request_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let request = RequestLimits::default();
        Limits {
            connections_max: 1024,
            in_flight_per_connection_max: 256,
            subscriptions_per_connection_max: 64,
            outbound_frames_per_connection_max: 1024,
            verify_queue_max: 8192,
            verify_batch_max: 64,
            // A request in JSON is hex: twice its bytes, plus the keys.
            http_body_bytes_max: 2 * request.request_bytes_max + 64 * 1024,
            ops_max: request.ops_max,
            op_bytes_max: request.op_bytes_max,
            request_bytes_max: request.request_bytes_max,
        }
    }
}

impl Limits {
    /// The request bounds every replica must share.
    pub fn request(&self) -> RequestLimits {
        RequestLimits {
            ops_max: self.ops_max,
            op_bytes_max: self.op_bytes_max,
            request_bytes_max: self.request_bytes_max,
        }
    }
}

/// A replica's configuration file as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// This replica's id in `cluster.replicas`.
    pub replica: u16,
    /// Its secret key file, relative to the config file's directory.
    pub key_file: PathBuf,
    /// Its data directory, relative to the config file's directory.
    pub data_dir: PathBuf,
    /// The libp2p listen address.
    pub p2p_listen: String,
    /// The binary client protocol's listen address.
    pub client_listen: String,
    /// The HTTP listen address (JSON API, /metrics, /healthz).
    pub http_listen: String,
    /// The replica set.
    pub cluster: ClusterSection,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Batching.
    #[serde(default)]
    pub batching: Batching,
    /// Threads.
    #[serde(default)]
    pub runtime: RuntimeSection,
}

// ---------------------------------------------------------------------------
// Checked form

/// One replica, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaAddresses {
    /// Its id.
    pub id: ReplicaId,
    /// Its key.
    pub key: PublicKey,
    /// Its libp2p address.
    pub p2p: Multiaddr,
    /// Its client protocol address.
    pub client: SocketAddr,
    /// Its HTTP address.
    pub http: Option<SocketAddr>,
}

/// A checked replica set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// The keys, in id order, and the name: the cluster id's preimage.
    pub membership: Membership,
    /// Every replica, in id order (`replicas[i].id == i`).
    pub replicas: Vec<ReplicaAddresses>,
}

impl Cluster {
    /// The cluster id every request must name.
    pub fn cluster_id(&self) -> ClusterId {
        self.membership.cluster_id()
    }

    /// The network layer's view: every replica's key and dial address.
    pub fn peer_addresses(&self) -> Vec<crate::net::PeerAddress> {
        self.replicas
            .iter()
            .map(|r| crate::net::PeerAddress {
                key: r.key,
                addresses: vec![r.p2p.clone()],
            })
            .collect()
    }
}

/// A replica's configuration, checked and resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This replica.
    pub replica: ReplicaId,
    /// Its key file (absolute or relative to the working directory).
    pub key_file: PathBuf,
    /// Its data directory (idem).
    pub data_dir: PathBuf,
    /// The libp2p listen address.
    pub p2p_listen: Multiaddr,
    /// The binary client protocol's listen address.
    pub client_listen: SocketAddr,
    /// The HTTP listen address.
    pub http_listen: SocketAddr,
    /// The replica set.
    pub cluster: Cluster,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Limits.
    pub limits: Limits,
    /// Batching.
    pub batching: Batching,
    /// Threads.
    pub runtime: RuntimeSection,
}

/// Builds [`ConfigError::Invalid`] for `path`.
fn invalid(path: &Path, field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.display().to_string(),
        field: field.into(),
        reason: reason.into(),
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|source| ConfigError::Parse {
        path: path.display().to_string(),
        source: Box::new(source),
    })
}

fn parse_key(path: &Path, field: &str, hex_key: &str) -> Result<PublicKey, ConfigError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut bytes)
        .map_err(|_| invalid(path, field, "not 64 hex digits"))?;
    PublicKey::from_bytes(&bytes)
        .map_err(|_| invalid(path, field, "not a valid ed25519 public key"))
}

fn parse_socket(path: &Path, field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        invalid(
            path,
            field,
            format!("{text:?} is not host:port (an IP address and a port)"),
        )
    })
}

fn parse_multiaddr(path: &Path, field: &str, text: &str) -> Result<Multiaddr, ConfigError> {
    text.parse()
        .map_err(|e| invalid(path, field, format!("{text:?} is not a multiaddr: {e}")))
}

impl ClusterSection {
    /// Checks the replica set: `1..=REPLICAS_MAX` replicas, ids exactly
    /// `0..n`, keys and addresses valid and distinct.
    pub fn check(&self, path: &Path) -> Result<Cluster, ConfigError> {
        let n = self.replicas.len();
        if n == 0 || n > REPLICAS_MAX {
            return Err(invalid(
                path,
                "cluster.replicas",
                format!("a cluster has 1 to {REPLICAS_MAX} replicas, this one has {n}"),
            ));
        }
        if self.name.is_empty() {
            return Err(invalid(path, "cluster.name", "must not be empty"));
        }
        let mut by_id: BTreeMap<u16, ReplicaAddresses> = BTreeMap::new();
        // First index at which each key/address was seen, to name both.
        let mut keys: BTreeMap<PublicKey, usize> = BTreeMap::new();
        let mut addresses: BTreeMap<String, String> = BTreeMap::new();
        for (i, entry) in self.replicas.iter().enumerate() {
            let at = |f: &str| format!("cluster.replicas[{i}].{f}");
            if usize::from(entry.id) >= n {
                return Err(invalid(
                    path,
                    at("id"),
                    format!("id {} is out of range: ids are 0..{n}", entry.id),
                ));
            }
            if by_id.contains_key(&entry.id) {
                return Err(invalid(
                    path,
                    at("id"),
                    format!("duplicate id {}", entry.id),
                ));
            }
            let key = parse_key(path, &at("public_key"), &entry.public_key)?;
            if let Some(first) = keys.insert(key, i) {
                return Err(invalid(
                    path,
                    at("public_key"),
                    format!("same key as cluster.replicas[{first}]"),
                ));
            }
            let p2p = parse_multiaddr(path, &at("p2p"), &entry.p2p)?;
            let client = parse_socket(path, &at("client"), &entry.client)?;
            let http = entry
                .http
                .as_deref()
                .map(|h| parse_socket(path, &at("http"), h))
                .transpose()?;
            let mut claim = |field: String, addr: String| match addresses.get(&addr) {
                Some(other) => Err(invalid(
                    path,
                    field,
                    format!("address {addr} is also {other}"),
                )),
                None => {
                    addresses.insert(addr, field);
                    Ok(())
                }
            };
            claim(at("p2p"), p2p.to_string())?;
            claim(at("client"), format!("tcp:{client}"))?;
            if let Some(http) = http {
                claim(at("http"), format!("tcp:{http}"))?;
            }
            let replica = ReplicaAddresses {
                id: ReplicaId(entry.id),
                key,
                p2p,
                client,
                http,
            };
            by_id.insert(entry.id, replica);
        }
        // n distinct ids all below n: exactly 0..n.
        assert_eq!(by_id.len(), n, "ids are distinct and in range");
        let replicas: Vec<ReplicaAddresses> = by_id.into_values().collect();
        let membership =
            Membership::new(self.name.clone(), replicas.iter().map(|r| r.key).collect())
                .map_err(|e| invalid(path, "cluster.replicas", e.to_string()))?;
        Ok(Cluster {
            membership,
            replicas,
        })
    }
}

impl ClusterFile {
    /// Reads and checks a `cluster.toml`.
    pub fn load(path: &Path) -> Result<Cluster, ConfigError> {
        let file: ClusterFile = parse(path, &read(path)?)?;
        file.cluster.check(path)
    }
}

impl Limits {
    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let positive = [
            ("limits.connections_max", self.connections_max),
            (
                "limits.in_flight_per_connection_max",
                self.in_flight_per_connection_max,
            ),
            (
                "limits.subscriptions_per_connection_max",
                self.subscriptions_per_connection_max,
            ),
            (
                "limits.outbound_frames_per_connection_max",
                self.outbound_frames_per_connection_max,
            ),
            ("limits.verify_queue_max", self.verify_queue_max),
            ("limits.verify_batch_max", self.verify_batch_max),
            ("limits.http_body_bytes_max", self.http_body_bytes_max),
            ("limits.ops_max", self.ops_max),
            ("limits.op_bytes_max", self.op_bytes_max),
            ("limits.request_bytes_max", self.request_bytes_max),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(invalid(path, field, "must be at least 1"));
            }
        }
        if self.request_bytes_max > client::api::CLIENT_FRAME_BYTES_MAX - 64 {
            return Err(invalid(
                path,
                "limits.request_bytes_max",
                format!(
                    "must leave room in a client frame ({} bytes)",
                    client::api::CLIENT_FRAME_BYTES_MAX
                ),
            ));
        }
        Ok(())
    }
}

impl Timeouts {
    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        for (field, value) in [
            ("timeouts.request_ms", self.request_ms),
            ("timeouts.view_change_ms", self.view_change_ms),
        ] {
            if value == 0 {
                return Err(invalid(path, field, "must be at least 1"));
            }
        }
        Ok(())
    }
}

impl Config {
    /// Reads, parses and checks a replica's configuration file. Relative
    /// paths in it are taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::from_str_at(&read(path)?, path)
    }

    /// Parses and checks `text` as if read from `path`.
    pub fn from_str_at(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file: ConfigFile = parse(path, text)?;
        file.check(path)
    }

    /// The request bounds.
    pub fn request_limits(&self) -> RequestLimits {
        self.limits.request()
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> ClusterId {
        self.cluster.cluster_id()
    }

    /// The runtime's configuration: this file's identity, cluster,
    /// addresses, request bounds and timeouts over the runtime's defaults.
    pub fn runtime_config(&self, key: KeyPair) -> crate::replica::RuntimeConfig {
        let mut rc = crate::replica::RuntimeConfig::new(
            self.replica,
            key,
            self.cluster.membership.clone(),
            vec![self.p2p_listen.clone()],
            self.data_dir.clone(),
        );
        rc.peer_addresses = self
            .cluster
            .replicas
            .iter()
            .map(|r| vec![r.p2p.clone()])
            .collect();
        rc.request_limits = self.request_limits();
        rc.limits.reply_timeout = self.timeouts.request();
        rc.consensus.view_change_timeout_micros =
            u64::try_from(self.timeouts.view_change().as_micros()).unwrap_or(u64::MAX);
        rc.consensus.batch_delay_micros = self.batching.delay_ms.saturating_mul(1_000);
        rc.consensus.batches_in_flight_max = self.batching.in_flight_max;
        rc
    }

    /// Loads this replica's key and checks it is the one the cluster lists
    /// for it (a wrong key file would make every vote invalid).
    pub fn load_key(&self, path: &Path) -> Result<KeyPair, ConfigError> {
        let key = KeyPair::load(&self.key_file)?;
        let listed = self.cluster.replicas[self.replica.index()].key;
        if key.public() != listed {
            return Err(invalid(
                path,
                "key_file",
                format!(
                    "{} holds key {}, but cluster.replicas lists {} for replica {}",
                    self.key_file.display(),
                    key.public(),
                    listed,
                    self.replica.0
                ),
            ));
        }
        Ok(key)
    }
}

impl ConfigFile {
    /// Checks every field and resolves relative paths against `path`'s
    /// directory.
    pub fn check(&self, path: &Path) -> Result<Config, ConfigError> {
        let cluster = self.cluster.check(path)?;
        if usize::from(self.replica) >= cluster.replicas.len() {
            return Err(invalid(
                path,
                "replica",
                format!(
                    "replica {} is not in cluster.replicas (ids 0..{})",
                    self.replica,
                    cluster.replicas.len()
                ),
            ));
        }
        self.limits.check(path)?;
        self.timeouts.check(path)?;
        self.batching.check(path, &self.timeouts)?;
        self.runtime.check(path)?;
        let base = path.parent().unwrap_or(Path::new(""));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        if self.key_file.as_os_str().is_empty() {
            return Err(invalid(path, "key_file", "must not be empty"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid(path, "data_dir", "must not be empty"));
        }
        Ok(Config {
            replica: ReplicaId(self.replica),
            key_file: resolve(&self.key_file),
            data_dir: resolve(&self.data_dir),
            p2p_listen: parse_multiaddr(path, "p2p_listen", &self.p2p_listen)?,
            client_listen: parse_socket(path, "client_listen", &self.client_listen)?,
            http_listen: parse_socket(path, "http_listen", &self.http_listen)?,
            cluster,
            timeouts: self.timeouts.clone(),
            limits: self.limits.clone(),
            batching: self.batching.clone(),
            runtime: self.runtime.clone(),
        })
    }
}

// ---------------------------------------------------------------------------
// init-cluster

/// What `init-cluster` wrote.
#[derive(Clone, Debug)]
pub struct InitCluster {
    /// `replica-i.toml`, in id order.
    pub configs: Vec<PathBuf>,
    /// `replica-i.key`, in id order.
    pub keys: Vec<PathBuf>,
    /// `cluster.toml`.
    pub cluster_file: PathBuf,
    /// The public keys, in id order.
    pub public_keys: Vec<PublicKey>,
}

fn write_new(path: &Path, text: &str) -> Result<(), ConfigError> {
    use std::io::Write;
    let io = |source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Writes a local cluster of `n` replicas on 127.0.0.1 into `dir`:
/// `replica-i.key` (mode 0600), `replica-i.toml` and `cluster.toml`. Ports:
/// `base_port + i` for libp2p, `+ 100` for the client protocol, `+ 200`
/// for HTTP. Refuses to overwrite anything. Keys come from `rng` (the
/// binary passes the OS RNG).
pub fn init_cluster(
    dir: &Path,
    n: usize,
    base_port: u16,
    rng: &mut (impl rand::RngCore + rand::CryptoRng),
) -> Result<InitCluster, ConfigError> {
    // The flags are the "fields" of this command.
    let flag_error = |field: &str, reason: String| invalid(dir, field, reason);
    let n_max = REPLICAS_MAX.min(100);
    if n == 0 || n > n_max {
        return Err(flag_error(
            "--replicas",
            format!("must be 1 to {n_max} (ports are base + 0..100), not {n}"),
        ));
    }
    if u32::from(base_port) + 200 + n as u32 > u32::from(u16::MAX) {
        return Err(flag_error(
            "--base-port",
            format!("{base_port} + 200 + {n} is over 65535"),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|source| ConfigError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let pairs: Vec<KeyPair> = (0..n).map(|_| KeyPair::generate(rng)).collect();
    let port = |offset: u16, i: usize| base_port + offset + i as u16;
    let replicas: Vec<ReplicaEntry> = pairs
        .iter()
        .enumerate()
        .map(|(i, key)| ReplicaEntry {
            id: i as u16,
            public_key: key.public().to_hex(),
            p2p: format!("/ip4/127.0.0.1/tcp/{}", port(0, i)),
            client: format!("127.0.0.1:{}", port(100, i)),
            http: Some(format!("127.0.0.1:{}", port(200, i))),
        })
        .collect();
    let cluster = ClusterSection {
        name: format!("{DEFAULT_CLUSTER_NAME}-local"),
        replicas,
    };
    let mut out = InitCluster {
        configs: Vec::new(),
        keys: Vec::new(),
        cluster_file: dir.join("cluster.toml"),
        public_keys: pairs.iter().map(KeyPair::public).collect(),
    };
    // Check every target is free before writing anything, so a second run
    // fails without leaving a half-written cluster.
    let mut targets = vec![out.cluster_file.clone()];
    for i in 0..n {
        targets.push(dir.join(format!("replica-{i}.key")));
        targets.push(dir.join(format!("replica-{i}.toml")));
    }
    if let Some(existing) = targets.iter().find(|t| t.exists()) {
        return Err(ConfigError::Io {
            path: existing.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
        });
    }
    for (i, key) in pairs.iter().enumerate() {
        let key_name = format!("replica-{i}.key");
        let key_path = dir.join(&key_name);
        key.save(&key_path)?;
        let file = ConfigFile {
            replica: i as u16,
            key_file: PathBuf::from(key_name),
            data_dir: PathBuf::from(format!("data-{i}")),
            p2p_listen: cluster.replicas[i].p2p.clone(),
            client_listen: cluster.replicas[i].client.clone(),
            http_listen: cluster.replicas[i].http.clone().unwrap_or_default(),
            cluster: cluster.clone(),
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            batching: Batching::default(),
            runtime: RuntimeSection::default(),
        };
        let config_path = dir.join(format!("replica-{i}.toml"));
        write_new(&config_path, &to_toml(&file))?;
        out.keys.push(key_path);
        out.configs.push(config_path);
    }
    write_new(
        &out.cluster_file,
        &to_toml(&ClusterFile {
            cluster: cluster.clone(),
        }),
    )?;
    Ok(out)
}

/// The file forms are plain data: serializing them cannot fail.
fn to_toml<T: Serialize>(value: &T) -> String {
    toml::to_string(value).expect("config file forms serialize to TOML")
}
