//! etcd, the system QLOCK is compared with: 3 members of Debian's
//! `etcd-server` (3.4) started on 127.0.0.1 and stopped afterwards, and a
//! worker per client driving its real gRPC API through `etcd-client`
//! (see the workload table in [`super::target`]). Built only with the
//! simulator's `etcd` feature (the crate's build needs `protoc`).

use super::load::Recorder;
use super::target::{Workload, HOT_RESOURCES, PAYLOAD_BYTES, RESOURCES, SESSION_TTL};
use etcd_client::{
    Client, Compare, CompareOp, LeaseKeepAliveStream, LeaseKeeper, LockOptions, PutOptions, Txn,
    TxnOp,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Members at most.
pub const MEMBERS_MAX: usize = 7;

/// How long the members get to elect a leader and answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// After SIGTERM, how long a member gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Ports are picked in this range (below the ephemeral range).
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// A one-shot request's bound.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(12);

/// Why etcd could not be run.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The etcd binary is missing.
    #[error("etcd not found at {0}: run scripts/etcd-install.sh (Debian's etcd-server)")]
    Missing(String),
    /// A file or process operation failed.
    #[error("{0}")]
    Io(String),
    /// The members did not become ready.
    #[error("etcd not ready after {secs} s: {detail} (logs in {logs})")]
    NotReady {
        /// The bound.
        secs: u64,
        /// The last error.
        detail: String,
        /// The members' logs.
        logs: String,
    },
    /// A client call failed.
    #[error("etcd client: {0}")]
    Client(#[from] etcd_client::Error),
}

/// A local etcd cluster; stopped on [`EtcdCluster::stop`] or drop.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Child>,
    endpoints: Vec<String>,
}

fn free_base(count: usize) -> Result<u16, EtcdError> {
    let mut rng = ChaCha8Rng::from_entropy();
    for _ in 0..200 {
        let base = rng.gen_range(PORT_RANGE.start..PORT_RANGE.end - 2 * count as u16);
        let free = (0..2 * count as u16)
            .all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return Ok(base);
        }
    }
    Err(EtcdError::Io(
        "no free ports for etcd after 200 tries".into(),
    ))
}

impl EtcdCluster {
    /// Starts `count` members of `binary` and waits until a put commits.
    pub async fn launch(binary: &Path, count: usize) -> Result<EtcdCluster, EtcdError> {
        if !binary.is_file() {
            return Err(EtcdError::Missing(binary.display().to_string()));
        }
        if count == 0 || count > MEMBERS_MAX {
            return Err(EtcdError::Io(format!(
                "etcd members must be 1 to {MEMBERS_MAX}"
            )));
        }
        let dir = tempfile::Builder::new()
            .prefix("qlock-bench-etcd-")
            .tempdir()
            .map_err(|e| EtcdError::Io(format!("temporary directory: {e}")))?;
        let base = free_base(count)?;
        let client_port = |i: usize| base + i as u16;
        let peer_port = |i: usize| base + (count + i) as u16;
        let initial: Vec<String> = (0..count)
            .map(|i| format!("m{i}=http://127.0.0.1:{}", peer_port(i)))
            .collect();
        let mut cluster = EtcdCluster {
            members: Vec::new(),
            endpoints: (0..count)
                .map(|i| format!("http://127.0.0.1:{}", client_port(i)))
                .collect(),
            dir,
        };
        for i in 0..count {
            let log_path = cluster.dir.path().join(format!("m{i}.log"));
            let log = std::fs::File::create(&log_path)
                .map_err(|e| EtcdError::Io(format!("{}: {e}", log_path.display())))?;
            let log_err = log
                .try_clone()
                .map_err(|e| EtcdError::Io(format!("{}: {e}", log_path.display())))?;
            let client_url = format!("http://127.0.0.1:{}", client_port(i));
            let peer_url = format!("http://127.0.0.1:{}", peer_port(i));
            let child = Command::new(binary)
                .arg(format!("--name=m{i}"))
                .arg(format!(
                    "--data-dir={}",
                    cluster.dir.path().join(format!("m{i}")).display()
                ))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster={}", initial.join(",")))
                .arg("--initial-cluster-token=qlock-bench")
                .arg("--initial-cluster-state=new")
                .arg("--logger=zap")
                .arg("--log-level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log_err))
                .process_group(0)
                .spawn()
                .map_err(|e| EtcdError::Io(format!("cannot run {}: {e}", binary.display())))?;
            cluster.members.push(child);
        }
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    async fn wait_ready(&mut self) -> Result<(), EtcdError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut detail = String::from("no answer yet");
        while Instant::now() < deadline {
            for (i, m) in self.members.iter_mut().enumerate() {
                if let Ok(Some(status)) = m.try_wait() {
                    return Err(EtcdError::Io(format!(
                        "etcd member {i} exited at start ({status}); see {}",
                        self.dir.path().join(format!("m{i}.log")).display()
                    )));
                }
            }
            let probe = async {
                let mut c = self.client().await?;
                c.put("qlock-bench/ready", "1", None).await?;
                Ok::<(), etcd_client::Error>(())
            };
            match tokio::time::timeout(Duration::from_secs(3), probe).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => detail = e.to_string(),
                Err(_) => detail = "probe timed out".into(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(EtcdError::NotReady {
            secs: READY_TIMEOUT.as_secs(),
            detail,
            logs: self.dir.path().display().to_string(),
        })
    }

    /// A client of every member.
    pub async fn client(&self) -> Result<Client, etcd_client::Error> {
        let options = etcd_client::ConnectOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(Duration::from_secs(2));
        Client::connect(&self.endpoints, Some(options)).await
    }

    /// The members' client URLs.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The directory holding the members' data and logs.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The members' pids.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(Child::id).collect()
    }

    /// Stops every member: SIGTERM, then SIGKILL after [`STOP_GRACE`].
    pub fn stop(&mut self) {
        for m in &self.members {
            let _ = kill(Pid::from_raw(m.id() as i32), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        for m in &mut self.members {
            loop {
                match m.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = m.kill();
                        let _ = m.wait();
                        break;
                    }
                }
            }
        }
        self.members.clear();
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            let _ = m.kill();
            let _ = m.wait();
        }
    }
}

/// An etcd worker: its own client (connection), lease(s) and RNG.
pub struct EtcdWorker {
    client: Client,
    lease: i64,
    keepers: Vec<(LeaseKeeper, LeaseKeepAliveStream)>,
    workload: Workload,
    k: usize,
    index: usize,
    rng: ChaCha8Rng,
    counter: u64,
}

impl EtcdWorker {
    /// Connects worker `index`, grants its lease(s).
    pub async fn connect(
        cluster: &EtcdCluster,
        workload: Workload,
        k: usize,
        index: usize,
        seed: u64,
    ) -> Result<EtcdWorker, EtcdError> {
        let mut client = cluster.client().await?;
        let ttl = SESSION_TTL.as_secs() as i64;
        let lease = client.lease_grant(ttl, None).await?.id();
        let mut keepers = Vec::new();
        if workload == Workload::Renew {
            for _ in 0..k {
                let id = client.lease_grant(ttl, None).await?.id();
                keepers.push(client.lease_keep_alive(id).await?);
            }
        }
        Ok(EtcdWorker {
            client,
            lease,
            keepers,
            workload,
            k,
            index,
            rng: ChaCha8Rng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9)),
            counter: 0,
        })
    }

    /// Runs one unit (see [`super::target`]); `false` if a request failed.
    pub async fn unit(&mut self, rec: &mut Recorder, started: Instant) -> bool {
        let result = match self.workload {
            Workload::Locks if self.k == 1 => self.lock_service(rec, started, false).await,
            Workload::Locks => self.locks_txn(rec, started).await,
            Workload::Contended => self.lock_service(rec, started, true).await,
            Workload::Queue => self.queue(rec, started).await,
            Workload::Submit => self.submit(rec, started).await.map(|_| ()),
            Workload::Renew => self.renew(rec, started).await,
        };
        match result {
            Ok(()) => true,
            Err((kind, e)) => {
                rec.error(kind, e);
                false
            }
        }
    }

    async fn lock_service(
        &mut self,
        rec: &mut Recorder,
        started: Instant,
        hot: bool,
    ) -> Result<(), (&'static str, etcd_client::Error)> {
        let name = if hot {
            format!("hot/{}", self.rng.gen_range(0..HOT_RESOURCES))
        } else {
            format!("bench/{}", self.rng.gen_range(0..RESOURCES))
        };
        let options = LockOptions::new().with_lease(self.lease);
        let key = self
            .client
            .lock(name, Some(options))
            .await
            .map_err(|e| ("acquire", e))?
            .key()
            .to_vec();
        rec.request("acquire", started, 1, 0);
        let t = Instant::now();
        self.client.unlock(key).await.map_err(|e| ("release", e))?;
        rec.request("release", t, 1, 0);
        Ok(())
    }

    async fn locks_txn(
        &mut self,
        rec: &mut Recorder,
        started: Instant,
    ) -> Result<(), (&'static str, etcd_client::Error)> {
        let base = self.rng.gen_range(0..RESOURCES);
        let keys: Vec<String> = (0..self.k as u64)
            .map(|i| format!("/qlock-bench/lock/{}", (base + i) % RESOURCES))
            .collect();
        let compares: Vec<Compare> = keys
            .iter()
            .map(|k| Compare::create_revision(k.as_str(), CompareOp::Equal, 0))
            .collect();
        let puts: Vec<TxnOp> = keys
            .iter()
            .map(|k| {
                TxnOp::put(
                    k.as_str(),
                    vec![],
                    Some(PutOptions::new().with_lease(self.lease)),
                )
            })
            .collect();
        let taken = self
            .client
            .txn(Txn::new().when(compares).and_then(puts))
            .await
            .map_err(|e| ("acquire", e))?;
        if !taken.succeeded() {
            rec.request("acquire", started, self.k, self.k);
            return Ok(());
        }
        rec.request("acquire", started, self.k, 0);
        let t = Instant::now();
        let deletes: Vec<TxnOp> = keys
            .iter()
            .map(|k| TxnOp::delete(k.as_str(), None))
            .collect();
        self.client
            .txn(Txn::new().and_then(deletes))
            .await
            .map_err(|e| ("release", e))?;
        rec.request("release", t, self.k, 0);
        Ok(())
    }

    async fn submit(
        &mut self,
        rec: &mut Recorder,
        started: Instant,
    ) -> Result<Vec<String>, (&'static str, etcd_client::Error)> {
        let keys: Vec<String> = (0..self.k as u64)
            .map(|i| format!("/qlock-bench/queue/{}/{:012}", self.index, self.counter + i))
            .collect();
        self.counter += self.k as u64;
        let payload = vec![0x51u8; PAYLOAD_BYTES];
        if self.k == 1 {
            self.client
                .put(keys[0].as_str(), payload, None)
                .await
                .map_err(|e| ("submit", e))?;
        } else {
            let puts: Vec<TxnOp> = keys
                .iter()
                .map(|k| TxnOp::put(k.as_str(), payload.clone(), None))
                .collect();
            self.client
                .txn(Txn::new().and_then(puts))
                .await
                .map_err(|e| ("submit", e))?;
        }
        rec.request("submit", started, self.k, 0);
        Ok(keys)
    }

    async fn queue(
        &mut self,
        rec: &mut Recorder,
        started: Instant,
    ) -> Result<(), (&'static str, etcd_client::Error)> {
        let keys = self.submit(rec, started).await?;
        // Claim: if each message is still there, move it to a claim key
        // held by the worker's lease (a visibility timeout's analogue).
        let compares: Vec<Compare> = keys
            .iter()
            .map(|k| Compare::version(k.as_str(), CompareOp::Greater, 0))
            .collect();
        let mut moves = Vec::new();
        for k in &keys {
            moves.push(TxnOp::delete(k.as_str(), None));
            moves.push(TxnOp::put(
                format!("{k}/claimed"),
                vec![],
                Some(PutOptions::new().with_lease(self.lease)),
            ));
        }
        let t = Instant::now();
        self.client
            .txn(Txn::new().when(compares).and_then(moves))
            .await
            .map_err(|e| ("claim", e))?;
        rec.request("claim", t, self.k, 0);
        let t = Instant::now();
        let acks: Vec<TxnOp> = keys
            .iter()
            .map(|k| TxnOp::delete(format!("{k}/claimed"), None))
            .collect();
        self.client
            .txn(Txn::new().and_then(acks))
            .await
            .map_err(|e| ("ack", e))?;
        rec.request("ack", t, self.k, 0);
        Ok(())
    }

    async fn renew(
        &mut self,
        rec: &mut Recorder,
        started: Instant,
    ) -> Result<(), (&'static str, etcd_client::Error)> {
        // One keep-alive per lease: etcd has no batched renewal, so each
        // counts as its own request.
        for (i, (keeper, stream)) in self.keepers.iter_mut().enumerate() {
            // The first is timed from the unit's (intended) start.
            let t = if i == 0 { started } else { Instant::now() };
            keeper.keep_alive().await.map_err(|e| ("renew", e))?;
            match stream.message().await.map_err(|e| ("renew", e))? {
                Some(_) => rec.request("renew", t, 1, 0),
                None => {
                    return Err((
                        "renew",
                        etcd_client::Error::InvalidArgs("keep-alive stream closed".into()),
                    ))
                }
            }
        }
        Ok(())
    }
}
