//! `qlockd --byzantine MODE` against the real client: four real `qlockd`
//! processes on 127.0.0.1, one of them (or several) a gateway that lies to
//! its clients. For every mode the client refuses the lie with the error
//! that names it and completes the op through an honest replica, with a
//! reply that verifies and an op executed once; the same lie over HTTP
//! fails `client::verify` too. And the mode is refused unless asked for
//! explicitly.
//!
//! Every test is bounded by a timeout; every process it starts is killed
//! (by its pid, through its `Child`) when the test ends, pass or fail.

mod common;

use client::api::Reply;
use client::verify::{verify_reply, VerifyReplyError};
use client::{Client, ClientOptions, ClusterConfig, ReplicaError, VerifiedReply};
use lockchain::{MerkleError, Threshold, VerifyError};
use node::api::byzantine::{Mode, ALLOW_ENV, ALLOW_FLAG};
use node::api::http::SubmitAnswer;
use node::config::{ClusterSection, Config, ConfigFile, Limits, ReplicaEntry, Timeouts};
use primitives::{ClusterId, KeyPair, ReplicaId, Request, RequestBody, RequestNumber};
use qlock::{Durability, Op, OpResult, Priority};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// The bound of one whole test.
const TEST_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a cluster may take to connect and commit a first request.
const READY_TIMEOUT: Duration = Duration::from_secs(45);

/// How long a refused `qlockd` may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

const CLUSTER_NAME: &str = "byzantine-gateway-test";

/// A session lease the cluster accepts (5 s to 1 h).
const TTL_MICROS: u64 = 30_000_000;

/// How a liar was allowed to lie.
#[derive(Clone, Copy, Debug)]
enum OptInBy {
    Flag,
    Env,
}

/// What one replica's gateway does.
#[derive(Clone, Copy, Debug)]
enum Role {
    Honest,
    Liar(Mode, OptInBy),
}

fn replica_key(i: usize) -> KeyPair {
    KeyPair::from_seed(&[i as u8 + 61; 32])
}

/// Writes replica configs and keys for `n` replicas into `dir`; returns
/// the config paths in id order.
fn write_configs(dir: &Path, n: usize) -> Vec<PathBuf> {
    let ports = common::free_ports(3 * n);
    let replicas: Vec<ReplicaEntry> = (0..n)
        .map(|i| ReplicaEntry {
            id: i as u16,
            public_key: replica_key(i).public().to_hex(),
            p2p: format!("/ip4/127.0.0.1/tcp/{}", ports[3 * i]),
            client: format!("127.0.0.1:{}", ports[3 * i + 1]),
            http: Some(format!("127.0.0.1:{}", ports[3 * i + 2])),
        })
        .collect();
    let cluster = ClusterSection {
        name: CLUSTER_NAME.into(),
        replicas,
    };
    (0..n)
        .map(|i| {
            let key_file = PathBuf::from(format!("replica-{i}.key"));
            replica_key(i).save(&dir.join(&key_file)).unwrap();
            let file = ConfigFile {
                replica: i as u16,
                key_file,
                data_dir: PathBuf::from(format!("data-{i}")),
                p2p_listen: cluster.replicas[i].p2p.clone(),
                client_listen: cluster.replicas[i].client.clone(),
                http_listen: cluster.replicas[i].http.clone().unwrap(),
                cluster: cluster.clone(),
                timeouts: Timeouts {
                    request_ms: 5_000,
                    view_change_ms: 2_000,
                    shutdown_ms: 1_000,
                },
                limits: Limits::default(),
                batching: Default::default(),
                runtime: Default::default(),
            };
            let path = dir.join(format!("replica-{i}.toml"));
            std::fs::write(&path, toml::to_string(&file).unwrap()).unwrap();
            path
        })
        .collect()
}

/// `qlockd` with a clean environment as far as the opt-in goes: whatever
/// the shell running the tests exports must not allow lying.
fn qlockd() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qlockd"));
    command
        .env_remove(ALLOW_ENV)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// A `qlockd` process, killed when dropped.
struct Process {
    child: Child,
    stderr: PathBuf,
}

impl Process {
    fn spawn(mut command: Command, stderr: PathBuf) -> Process {
        let file = std::fs::File::create(&stderr).unwrap();
        let child = command.stderr(file).spawn().expect("qlockd starts");
        Process { child, stderr }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Panics with its log if it has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("qlockd exited with {status}:\n{}", self.stderr());
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Only this child, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Four (or `roles.len()`) real replicas.
struct Cluster {
    processes: Vec<Process>,
    configs: Vec<Config>,
    client_config: ClusterConfig,
    honest: usize,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(roles: &[Role]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_configs(dir.path(), roles.len());
        let processes = roles
            .iter()
            .enumerate()
            .map(|(i, role)| {
                let mut command = qlockd();
                command.arg("--config").arg(&paths[i]);
                if let Role::Liar(mode, by) = role {
                    command.arg("--byzantine").arg(mode.name());
                    match by {
                        OptInBy::Flag => command.arg(ALLOW_FLAG),
                        OptInBy::Env => command.env(ALLOW_ENV, "1"),
                    };
                }
                Process::spawn(command, dir.path().join(format!("replica-{i}.log")))
            })
            .collect();
        let configs = paths.iter().map(|p| Config::load(p).unwrap()).collect();
        let honest = roles
            .iter()
            .position(|r| matches!(r, Role::Honest))
            .expect("at least one honest gateway");
        Cluster {
            processes,
            configs,
            client_config: ClusterConfig::load(&paths[0]).unwrap(),
            honest,
            _dir: dir,
        }
    }

    fn cluster_id(&self) -> ClusterId {
        self.client_config.cluster_id()
    }

    fn http(&self, i: usize) -> SocketAddr {
        self.configs[i].http_listen
    }

    async fn client(&self, seed: u8, preferred: usize) -> Client {
        let options = ClientOptions {
            request_timeout: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(1),
            preferred_replica: Some(ReplicaId(preferred as u16)),
            keepalive: false,
            ..ClientOptions::default()
        };
        Client::connect(
            self.client_config.clone(),
            KeyPair::from_seed(&[seed; 32]),
            options,
        )
        .await
        .unwrap()
    }

    /// Waits until every replica serves, a request committed through an
    /// honest gateway, and every replica is connected to all its peers and
    /// has executed that request: from then on a liar's replica answers
    /// as promptly as an honest one, so its lies are what the client sees.
    async fn ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        for i in 0..self.processes.len() {
            let addr = self.configs[i].client_listen;
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                self.processes[i].assert_running();
                assert!(Instant::now() < deadline, "replica {i} never listened");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let warm = self.client(200, self.honest).await;
        let seq = loop {
            match warm
                .submit(
                    vec![Op::Check {
                        resource: "warm-up".into(),
                    }],
                    false,
                )
                .await
            {
                Ok(reply) => break reply.seq.expect("certified"),
                Err(e) => {
                    for p in &mut self.processes {
                        p.assert_running();
                    }
                    assert!(Instant::now() < deadline, "no first commit: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        loop {
            let statuses = warm.status_all().await;
            let caught_up = statuses.iter().all(|(_, s)| {
                s.as_ref()
                    .is_ok_and(|s| s.last_executed >= seq && s.peers.iter().all(|p| p.connected))
            });
            if caught_up {
                return;
            }
            for p in &mut self.processes {
                p.assert_running();
            }
            assert!(Instant::now() < deadline, "not caught up: {statuses:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Checks an accepted reply again, independently of the client that
/// accepted it.
fn assert_verifies(client: &Client, reply: &VerifiedReply, threshold: Threshold) {
    assert!(reply.certified());
    assert!(!reply.proofs.is_empty());
    for (i, proof) in reply.proofs.iter().enumerate() {
        assert_eq!(proof.receipt.request, reply.request);
        assert_eq!(proof.receipt.op_index, i as u32);
        client
            .verifier()
            .verify_receipt_in_batch(proof, threshold)
            .expect("the accepted reply verifies");
    }
}

/// The one failure `client` recorded: at `replica`, a reply that did not
/// verify.
fn only_failure(client: &Client, replica: usize) -> VerifyReplyError {
    let failures = client.replica_failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].replica, ReplicaId(replica as u16));
    match &failures[0].error {
        ReplicaError::Unverifiable(e) => e.clone(),
        other => panic!("not a verification failure: {other:?}"),
    }
}

/// Panics unless `error` is the one `mode`'s lie must produce, for a
/// reply that needed `need` signers.
fn assert_caught(mode: Mode, need: usize, cluster: ClusterId, error: &VerifyReplyError) {
    let VerifyReplyError::Proof { op: 0, source } = error else {
        panic!("{mode}: not a proof failure of op 0: {error:?}");
    };
    let caught = match (mode, source) {
        (Mode::ForgedResult, VerifyError::ReceiptPath(MerkleError::RootMismatch { .. })) => true,
        (Mode::WrongPath, VerifyError::ReceiptPath(_)) => true,
        (Mode::FewSignatures, VerifyError::TooFewSigners { have, need: n }) => {
            *have == 1 && *n == need
        }
        (Mode::DuplicateSigners, VerifyError::DuplicateSigner { .. }) => true,
        (Mode::WrongCluster, VerifyError::ClusterMismatch { expected, found }) => {
            *expected == cluster && *found != cluster
        }
        _ => false,
    };
    assert!(caught, "{mode} (need {need}): {source:?}");
}

/// A minimal HTTP/1.1 POST: (status, body).
async fn post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// The certified reply `replica`'s HTTP API gives to `request`.
async fn http_reply(cluster: &Cluster, replica: usize, request: &Request) -> Reply {
    let json = serde_json::to_vec(request).unwrap();
    let (status, body) = post(cluster.http(replica), "/v1/submit", &json).await;
    assert_eq!(status, 200, "{body}");
    match serde_json::from_str(&body).unwrap() {
        SubmitAnswer::Replied { reply } => reply,
        other => panic!("not a certified reply: {other:?}"),
    }
}

/// Replica 0 lies in `mode`, the others are honest. A client that tries
/// replica 0 first refuses its lie, and gets the op done by replica 1:
/// an ordinary op (f + 1 signatures) and a `sync` queue submit (2f + 1,
/// executed once). Over HTTP, the liar's reply fails `verify_reply` and
/// an honest replica's passes.
async fn lie_then_recover(mode: Mode, by: OptInBy) {
    let roles = [
        Role::Liar(mode, by),
        Role::Honest,
        Role::Honest,
        Role::Honest,
    ];
    let mut cluster = Cluster::start(&roles);
    timeout(TEST_TIMEOUT, async {
        cluster.ready().await;
        let id = cluster.cluster_id();
        let log = cluster.processes[0].stderr();
        let banner = format!("WARNING: --byzantine {mode}: this replica's gateway LIES");
        assert!(
            log.contains(&banner) && log.contains("BYZANTINE GATEWAY"),
            "the liar warns loudly, on stderr and in its log:\n{log}"
        );
        for honest in &cluster.processes[1..] {
            assert!(!honest.stderr().contains("LIES"), "{}", honest.stderr());
        }

        // An ordinary op.
        let a = cluster.client(2, 0).await;
        let reply = a
            .submit(vec![Op::CreateSession { ttl: TTL_MICROS }], false)
            .await
            .expect("an honest replica answers");
        assert_eq!(reply.replica, ReplicaId(1), "answered by the next replica");
        assert!(
            matches!(reply.outcomes[0], Ok(OpResult::SessionCreated { .. })),
            "{:?}",
            reply.outcomes
        );
        assert_verifies(&a, &reply, Threshold::WeakQuorum);
        assert_caught(mode, 2, id, &only_failure(&a, 0));

        // A sync submit: the same signed request went to the liar first,
        // so executing it twice would show as two messages.
        let b = cluster.client(3, 0).await;
        let queue = format!("q-{mode}");
        let sent = b
            .queue_submit(
                &queue,
                Priority::Normal,
                b"x".to_vec(),
                None,
                Durability::Sync,
            )
            .await
            .expect("an honest replica answers");
        assert_eq!(sent.duplicate, Some(false));
        assert_eq!(b.current_replica(), ReplicaId(1));
        assert_caught(mode, 3, id, &only_failure(&b, 0));
        let depth = b.depth(&queue).await.unwrap();
        assert_eq!(depth.ready.iter().sum::<u32>(), 1, "executed once");

        // The same lie over HTTP.
        let key = KeyPair::from_seed(&[4; 32]);
        let ops = [Op::Check {
            resource: format!("http-{mode}"),
        }];
        let request = RequestBody {
            cluster: id,
            client: key.public(),
            number: RequestNumber(1),
            atomic: false,
            ops: ops.iter().map(Op::encode).collect(),
        }
        .sign(&key);
        let verifier = a.verifier();
        let lied = http_reply(&cluster, 0, &request).await;
        let error = verify_reply(verifier, &request, &lied, Threshold::WeakQuorum)
            .expect_err("the liar's HTTP reply does not verify");
        assert_caught(mode, 2, id, &error);
        let honest = http_reply(&cluster, 1, &request).await;
        let outcomes = verify_reply(verifier, &request, &honest, Threshold::WeakQuorum)
            .expect("the honest HTTP reply verifies");
        assert!(matches!(outcomes[0], Ok(OpResult::Lock(_))), "{outcomes:?}");
        assert_eq!(honest.seq, lied.seq, "both name the one execution");
    })
    .await
    .expect("timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_result_bytes_are_refused_and_the_op_completes_elsewhere() {
    lie_then_recover(Mode::ForgedResult, OptInBy::Flag).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_merkle_path_is_refused_and_the_op_completes_elsewhere() {
    lie_then_recover(Mode::WrongPath, OptInBy::Env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_than_f_plus_one_signatures_are_refused_and_the_op_completes_elsewhere() {
    lie_then_recover(Mode::FewSignatures, OptInBy::Flag).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_signer_repeated_is_refused_and_the_op_completes_elsewhere() {
    lie_then_recover(Mode::DuplicateSigners, OptInBy::Env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_naming_another_cluster_is_refused_and_the_op_completes_elsewhere() {
    lie_then_recover(Mode::WrongCluster, OptInBy::Flag).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_lying_gateways_are_passed_one_by_one_until_the_honest_one() {
    let liars = [
        Mode::ForgedResult,
        Mode::WrongCluster,
        Mode::DuplicateSigners,
    ];
    let mut roles: Vec<Role> = liars
        .iter()
        .map(|m| Role::Liar(*m, OptInBy::Flag))
        .collect();
    roles.push(Role::Honest);
    let mut cluster = Cluster::start(&roles);
    timeout(TEST_TIMEOUT, async {
        cluster.ready().await;
        let c = cluster.client(5, 0).await;
        let reply = c
            .submit(vec![Op::CreateSession { ttl: TTL_MICROS }], false)
            .await
            .expect("the honest replica answers");
        assert_eq!(reply.replica, ReplicaId(3));
        assert_verifies(&c, &reply, Threshold::WeakQuorum);
        let failures = c.replica_failures();
        assert_eq!(failures.len(), liars.len(), "{failures:?}");
        for (i, (failure, mode)) in failures.iter().zip(liars).enumerate() {
            assert_eq!(failure.replica, ReplicaId(i as u16));
            let ReplicaError::Unverifiable(e) = &failure.error else {
                panic!("replica {i}: {:?}", failure.error);
            };
            assert_caught(mode, 2, cluster.cluster_id(), e);
        }
    })
    .await
    .expect("timed out");
}

/// Runs `command` to its end (killed and failed past [`EXIT_TIMEOUT`]);
/// returns its exit code and stderr.
fn run_to_exit(command: Command, log: PathBuf) -> (Option<i32>, String) {
    let mut process = Process::spawn(command, log);
    let deadline = Instant::now() + EXIT_TIMEOUT;
    loop {
        if let Some(status) = process.child.try_wait().unwrap() {
            return (status.code(), process.stderr());
        }
        assert!(
            Instant::now() < deadline,
            "qlockd kept running:\n{}",
            process.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn byzantine_mode_without_the_opt_in_exits_non_zero_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_configs(dir.path(), 4).remove(0);
    for env in [None, Some("0"), Some("yes")] {
        let mut command = qlockd();
        command
            .arg("--config")
            .arg(&config)
            .arg("--byzantine")
            .arg("forged-result");
        if let Some(value) = env {
            command.env(ALLOW_ENV, value);
        }
        let (code, stderr) = run_to_exit(command, dir.path().join("refused.log"));
        assert_eq!(code, Some(1), "{env:?}: {stderr}");
        for needle in [
            "refusing --byzantine forged-result",
            "tests only",
            ALLOW_FLAG,
            ALLOW_ENV,
        ] {
            assert!(
                stderr.contains(needle),
                "{env:?}: no {needle:?} in {stderr}"
            );
        }
        if let Some(value) = env {
            assert!(stderr.contains(&format!("{value:?}")), "{stderr}");
        }
        assert!(!stderr.contains("LIES"), "no liar started: {stderr}");
        assert!(
            !dir.path().join("data-0").exists(),
            "refused before opening anything"
        );
    }
}

#[test]
fn the_opt_in_flag_alone_and_unknown_modes_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_configs(dir.path(), 1).remove(0);
    let mut alone = qlockd();
    alone.arg("--config").arg(&config).arg(ALLOW_FLAG);
    let (code, stderr) = run_to_exit(alone, dir.path().join("alone.log"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--byzantine"), "{stderr}");

    let mut unknown = qlockd();
    unknown
        .arg("--config")
        .arg(&config)
        .arg("--byzantine")
        .arg("honest-ish")
        .arg(ALLOW_FLAG);
    let (code, stderr) = run_to_exit(unknown, dir.path().join("unknown.log"));
    assert_eq!(code, Some(2), "{stderr}");
    for mode in Mode::ALL {
        assert!(stderr.contains(mode.name()), "{mode} not listed: {stderr}");
    }
    assert!(!dir.path().join("data-0").exists());
}

#[test]
fn a_config_file_cannot_switch_byzantine_mode_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_configs(dir.path(), 1).remove(0);
    let honest = std::fs::read_to_string(&path).unwrap();
    for line in ["byzantine = \"forged-result\"\n", "i_am_a_test = true\n"] {
        // Top-level keys go before the first table.
        let lying = format!("{line}{honest}");
        let error = Config::from_str_at(&lying, &path).expect_err("an unknown key is refused");
        let key = line.split(' ').next().unwrap();
        assert!(error.to_string().contains(key), "{error}");
        std::fs::write(&path, &lying).unwrap();
        let mut command = qlockd();
        command.arg("--config").arg(&path);
        let (code, stderr) = run_to_exit(command, dir.path().join("config.log"));
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains(key), "{stderr}");
        assert!(!stderr.contains("BYZANTINE GATEWAY"), "{stderr}");
    }
}
