//! `qlock`: the QLOCK command-line client.
//!
//! Exit codes: 0 ok; 1 the cluster refused the op (lock busy, no such
//! session, ...); 2 usage or configuration error; 3 the cluster is
//! unreachable or its answers do not verify.

use clap::{Args, Parser, Subcommand, ValueEnum};
use client::{Client, ClientError, ClientOptions, ClusterConfig};
use primitives::{Digest, KeyPair, PulseNumber, ReplicaId, SeqNum};
use qlock::{Durability, FencingToken, LockMode, MessageId, Priority, SessionId};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The QLOCK client: Byzantine-fault-tolerant locks, sessions and queues
/// with verifiable receipts. Every answer is checked against the cluster's
/// public keys before it is printed.
#[derive(Debug, Parser)]
#[command(name = "qlock", version, about, long_about = None)]
struct Cli {
    /// The cluster file (`qlockd init-cluster` writes it).
    #[arg(long, global = true, default_value = "./cluster.toml")]
    cluster: PathBuf,
    /// The client's key file (`qlock keygen --out FILE` writes one). The
    /// key is the client's identity: sessions belong to it. Use one key
    /// per process at a time.
    #[arg(long, global = true, default_value = "./client.key")]
    key: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Try this replica first.
    #[arg(long, global = true)]
    replica: Option<u16>,
    /// How long to wait for one replica before trying another (ms).
    #[arg(long, global = true, default_value_t = 12_000)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writes a new client key (mode 0600; refuses to overwrite).
    Keygen {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sessions: leases that own locks and claims.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Locks with fencing tokens.
    #[command(subcommand)]
    Lock(LockCommand),
    /// Priority queues.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Each replica's view of the cluster (informational: not signed).
    Status,
    /// The lockchain: certified pulse headers.
    #[command(subcommand)]
    Lockchain(LockchainCommand),
    /// Fetches and verifies the proof of a receipt (REQUEST:OP as printed
    /// by other commands) up to a certified pulse.
    Proof {
        /// `REQUEST_DIGEST_HEX:OP_INDEX`.
        receipt: String,
    },
    /// Prints this key's wait outcomes (lock grants, ended waits) as they
    /// are pushed.
    Watch {
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this long (ms).
        #[arg(long)]
        duration_ms: Option<u64>,
    },
    /// A short demo workload: clients contending for locks, a queue
    /// producer and consumer; prints ops/s and tokens.
    Demo {
        /// Lock clients (each with its own fresh key).
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// How long to run (ms).
        #[arg(long, default_value_t = 5_000)]
        duration_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
enum SessionCommand {
    /// Opens a session; prints its id for `--session`.
    Create {
        /// Lease length (ms); the cluster allows 5 s to 1 h by default.
        #[arg(long, default_value_t = 30_000)]
        ttl_ms: u64,
    },
    /// Extends a session's lease to now + ttl.
    Renew(SessionTtl),
    /// Ends a session, releasing its locks and returning its claims.
    Destroy(SessionArg),
    /// Describes a session (owner only).
    Status(SessionArg),
}

#[derive(Debug, Args)]
struct SessionArg {
    /// The session, `SEQ.INDEX` as `session create` prints it.
    #[arg(long, value_parser = parse_session)]
    session: SessionId,
}

#[derive(Debug, Args)]
struct SessionTtl {
    /// The session, `SEQ.INDEX`.
    #[arg(long, value_parser = parse_session)]
    session: SessionId,
    /// New lease length (ms).
    #[arg(long, default_value_t = 30_000)]
    ttl_ms: u64,
}

#[derive(Debug, Subcommand)]
enum LockCommand {
    /// Takes a lock; prints the fencing token. The lock stays held after
    /// the command exits, until released or the session ends.
    Acquire {
        /// The session, `SEQ.INDEX`.
        #[arg(long, value_parser = parse_session)]
        session: SessionId,
        /// The lock's name.
        resource: String,
        /// Shared (reader) instead of exclusive.
        #[arg(long)]
        shared: bool,
        /// Wait up to this long (ms) in FIFO order; without it, try once.
        #[arg(long)]
        wait: Option<u64>,
    },
    /// Releases a lock (or withdraws a wait).
    Release {
        /// The session, `SEQ.INDEX`.
        #[arg(long, value_parser = parse_session)]
        session: SessionId,
        /// The lock's name.
        resource: String,
    },
    /// Describes a lock: holders, tokens, waiters.
    Check {
        /// The lock's name.
        resource: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PriorityArg {
    Critical,
    High,
    Normal,
    Low,
}

impl From<PriorityArg> for Priority {
    fn from(p: PriorityArg) -> Priority {
        match p {
            PriorityArg::Critical => Priority::Critical,
            PriorityArg::High => Priority::High,
            PriorityArg::Normal => Priority::Normal,
            PriorityArg::Low => Priority::Low,
        }
    }
}

#[derive(Debug, Subcommand)]
enum QueueCommand {
    /// Adds a message; prints its id.
    Submit {
        /// The queue.
        queue: String,
        /// The payload (UTF-8 text).
        payload: String,
        /// Priority.
        #[arg(long, value_enum, default_value = "normal")]
        priority: PriorityArg,
        /// A dedup key: a repeat within the dedup window adds nothing.
        #[arg(long)]
        dedup: Option<String>,
        /// Answer on acceptance, uncertified (may be lost in a crash).
        #[arg(long = "async")]
        asynchronous: bool,
    },
    /// Claims the next message; prints id, delivery and payload.
    Claim {
        /// The session, `SEQ.INDEX`.
        #[arg(long, value_parser = parse_session)]
        session: SessionId,
        /// The queue.
        queue: String,
        /// Visibility timeout (ms).
        #[arg(long, default_value_t = 30_000)]
        visibility_ms: u64,
    },
    /// Completes a claimed message.
    Ack(MessageArgs),
    /// Returns a claimed message now.
    Nack(MessageArgs),
    /// Ready/claimed/dead counts.
    Depth {
        /// The queue.
        queue: String,
    },
    /// The message a claim would return, without claiming.
    Peek {
        /// The queue.
        queue: String,
    },
}

#[derive(Debug, Args)]
struct MessageArgs {
    /// The claiming session, `SEQ.INDEX`.
    #[arg(long, value_parser = parse_session)]
    session: SessionId,
    /// The message id, `REQUEST_DIGEST_HEX:OP_INDEX`.
    #[arg(long, value_parser = parse_receipt)]
    message: (Digest, u32),
    /// The delivery number `claim` printed.
    #[arg(long)]
    delivery: u32,
}

#[derive(Debug, Subcommand)]
enum LockchainCommand {
    /// Prints certified pulse headers.
    Show(PulseRange),
    /// Downloads pulse headers and checks every quorum certificate and
    /// the hash chain.
    Verify(PulseRange),
}

#[derive(Debug, Args)]
struct PulseRange {
    /// The first pulse.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// The last pulse (default: as many as stored, up to 10 000).
    #[arg(long)]
    to: Option<u64>,
}

/// Parses `SEQ.INDEX`.
fn parse_session(text: &str) -> Result<SessionId, String> {
    let (seq, index) = text
        .split_once('.')
        .ok_or_else(|| format!("{text:?} is not SEQ.INDEX (as `session create` prints)"))?;
    let seq = seq.parse().map_err(|_| format!("bad SEQ in {text:?}"))?;
    let index = index
        .parse()
        .map_err(|_| format!("bad INDEX in {text:?}"))?;
    Ok(SessionId(FencingToken {
        seq: SeqNum(seq),
        index,
    }))
}

fn session_string(s: SessionId) -> String {
    format!("{}.{}", s.0.seq.0, s.0.index)
}

/// Parses `DIGEST_HEX:OP_INDEX`.
fn parse_receipt(text: &str) -> Result<(Digest, u32), String> {
    let (hex_digest, op) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not DIGEST_HEX:OP_INDEX"))?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut bytes)
        .map_err(|_| format!("{hex_digest:?} is not 64 hex digits"))?;
    let op = op
        .parse()
        .map_err(|_| format!("bad OP_INDEX in {text:?}"))?;
    Ok((Digest(bytes), op))
}

fn message_string(id: MessageId) -> String {
    format!("{}:{}", id.request.to_hex(), id.op_index)
}

fn token_json(t: FencingToken) -> Value {
    json!({"seq": t.seq.0, "index": t.index, "u64": t.as_u64()})
}

/// What a command prints: text for people, a JSON object for programs.
struct Output {
    json: Value,
    text: String,
}

fn out(json: Value, text: impl Into<String>) -> Output {
    Output {
        json,
        text: text.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(output) => {
            if json {
                println!("{}", output.json);
            } else if !output.text.is_empty() {
                println!("{}", output.text);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    json!({"ok": false, "error": e.kind(), "message": e.to_string()})
                );
            } else {
                eprintln!("qlock: {e}");
            }
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

async fn connect(cli: &Cli, keepalive: bool) -> Result<Client, ClientError> {
    let config = ClusterConfig::load(&cli.cluster)?;
    let key = KeyPair::load(&cli.key)?;
    let options = ClientOptions {
        request_timeout: Duration::from_millis(cli.timeout_ms),
        preferred_replica: cli.replica.map(ReplicaId),
        keepalive,
        ..ClientOptions::default()
    };
    Client::connect(config, key, options).await
}

async fn run(cli: Cli) -> Result<Output, ClientError> {
    match &cli.command {
        Command::Keygen { out: path } => {
            let key = KeyPair::generate(&mut rand::rngs::OsRng);
            key.save(path)?;
            let public = key.public().to_hex();
            Ok(out(
                json!({"ok": true, "key_file": path.display().to_string(), "public_key": public}),
                format!("wrote {} (public key {public})", path.display()),
            ))
        }
        Command::Demo {
            clients,
            duration_ms,
        } => demo(&cli, *clients, Duration::from_millis(*duration_ms)).await,
        Command::Lockchain(cmd) => {
            let c = connect(&cli, false).await?;
            lockchain(&c, cmd).await
        }
        _ => {
            let c = connect(&cli, false).await?;
            command(&c, &cli.command).await
        }
    }
}

async fn command(c: &Client, command: &Command) -> Result<Output, ClientError> {
    match command {
        Command::Session(cmd) => session(c, cmd).await,
        Command::Lock(cmd) => lock(c, cmd).await,
        Command::Queue(cmd) => queue(c, cmd).await,
        Command::Status => {
            let mut rows = Vec::new();
            let mut text = String::new();
            let mut reachable = 0;
            for (replica, result) in c.status_all().await {
                match result {
                    Ok(s) => {
                        reachable += 1;
                        text.push_str(&format!(
                            "replica {}: view {} (primary {}), executed {}, stable checkpoint {}, state transfers {}\n",
                            replica.0, s.view.0, s.primary.0, s.last_executed.0, s.stable_checkpoint.0, s.state_transfers
                        ));
                        rows.push(json!({"replica": replica.0, "ok": true, "view": s.view.0,
                            "primary": s.primary.0, "last_executed": s.last_executed.0,
                            "stable_checkpoint": s.stable_checkpoint.0,
                            "state_transfers": s.state_transfers,
                            "peers": serde_json::to_value(&s.peers).unwrap_or(Value::Null)}));
                    }
                    Err(e) => {
                        text.push_str(&format!("replica {}: {e}\n", replica.0));
                        rows.push(
                            json!({"replica": replica.0, "ok": false, "error": e.to_string()}),
                        );
                    }
                }
            }
            if reachable == 0 {
                return Err(ClientError::Unavailable {
                    failures: client::Failures(c.replica_failures()),
                });
            }
            Ok(out(
                json!({"ok": true, "cluster": c.cluster_id().to_string(), "replicas": rows}),
                text.trim_end().to_string(),
            ))
        }
        Command::Proof { receipt } => {
            let (request, op_index) =
                parse_receipt(receipt).map_err(ClientError::InvalidArgument)?;
            let (proof, outcome) = c.receipt_proof(request, op_index).await?;
            let h = &proof.pulse.header;
            Ok(out(
                json!({"ok": true, "verified": true, "request": request.to_hex(), "op_index": op_index,
                    "seq": proof.receipt.seq.0, "time": proof.receipt.time.wall,
                    "pulse": h.pulse.0, "pulse_header": h.digest().to_hex(),
                    "signers": proof.pulse.signatures.len(),
                    "outcome": serde_json::to_value(&outcome).unwrap_or(Value::Null)}),
                format!(
                    "verified: op {op_index} of {} in batch {} under pulse {} ({} signers): {outcome:?}",
                    request.to_hex(),
                    proof.receipt.seq.0,
                    h.pulse.0,
                    proof.pulse.signatures.len()
                ),
            ))
        }
        Command::Watch { count, duration_ms } => watch(c, *count, *duration_ms).await,
        Command::Keygen { .. } | Command::Demo { .. } | Command::Lockchain(_) => {
            unreachable!("handled in run")
        }
    }
}

async fn session(c: &Client, cmd: &SessionCommand) -> Result<Output, ClientError> {
    match cmd {
        SessionCommand::Create { ttl_ms } => {
            let s = c.create_session(Duration::from_millis(*ttl_ms)).await?;
            let id = session_string(s.id);
            Ok(out(
                json!({"ok": true, "session": id, "expires_at": s.expires_at, "ttl_ms": ttl_ms}),
                format!(
                    "session {id} (expires at {} µs unless renewed)",
                    s.expires_at
                ),
            ))
        }
        SessionCommand::Renew(a) => {
            let expires_at = c.renew(a.session, Duration::from_millis(a.ttl_ms)).await?;
            Ok(out(
                json!({"ok": true, "session": session_string(a.session), "expires_at": expires_at}),
                format!("renewed; expires at {expires_at} µs"),
            ))
        }
        SessionCommand::Destroy(a) => {
            c.destroy_session(a.session).await?;
            Ok(out(
                json!({"ok": true, "session": session_string(a.session)}),
                "destroyed",
            ))
        }
        SessionCommand::Status(a) => {
            let info = c.session_status(a.session).await?;
            Ok(out(
                json!({"ok": true, "session": session_string(a.session), "owner": info.owner.to_hex(),
                    "expires_at": info.expires_at, "locks": info.locks, "claims": info.claims}),
                format!(
                    "owner {}, expires at {} µs, {} locks, {} claims",
                    info.owner.to_hex(),
                    info.expires_at,
                    info.locks,
                    info.claims
                ),
            ))
        }
    }
}

async fn lock(c: &Client, cmd: &LockCommand) -> Result<Output, ClientError> {
    match cmd {
        LockCommand::Acquire {
            session,
            resource,
            shared,
            wait,
        } => {
            let mode = if *shared {
                LockMode::Shared
            } else {
                LockMode::Exclusive
            };
            let guard = c
                .acquire(*session, resource, mode, wait.map(Duration::from_millis))
                .await?;
            // The CLI exits: keep the lock (release it with `lock release`).
            let token = guard.keep();
            Ok(out(
                json!({"ok": true, "resource": resource, "session": session_string(*session),
                    "token": token_json(token)}),
                format!("{}", token.as_u64()),
            ))
        }
        LockCommand::Release { session, resource } => {
            c.release(*session, resource).await?;
            Ok(out(
                json!({"ok": true, "resource": resource}),
                format!("released {resource}"),
            ))
        }
        LockCommand::Check { resource } => {
            let info = c.check(resource).await?;
            let holders: Vec<Value> = info
                .holders
                .iter()
                .map(|(s, t)| json!({"session": session_string(*s), "token": token_json(*t)}))
                .collect();
            let waiters: Vec<Value> = info
                .waiters
                .iter()
                .map(|(s, m)| json!({"session": session_string(*s), "mode": format!("{m:?}")}))
                .collect();
            let text = if info.holders.is_empty() {
                format!("{resource}: free ({} waiters)", info.waiters.len())
            } else {
                format!(
                    "{resource}: {:?} by {} ({} waiters)",
                    info.mode.unwrap_or(LockMode::Exclusive),
                    info.holders
                        .iter()
                        .map(|(s, t)| format!("{} token {}", session_string(*s), t.as_u64()))
                        .collect::<Vec<_>>()
                        .join(", "),
                    info.waiters.len()
                )
            };
            Ok(out(
                json!({"ok": true, "resource": resource,
                    "mode": info.mode.map(|m| format!("{m:?}")),
                    "holders": holders, "waiters": waiters,
                    "last_token": info.last_token.map(token_json),
                    "delayed_until": info.delayed_until}),
                text,
            ))
        }
    }
}

async fn queue(c: &Client, cmd: &QueueCommand) -> Result<Output, ClientError> {
    match cmd {
        QueueCommand::Submit {
            queue,
            payload,
            priority,
            dedup,
            asynchronous,
        } => {
            let durability = if *asynchronous {
                Durability::Async
            } else {
                Durability::Sync
            };
            let sent = c
                .queue_submit(
                    queue,
                    (*priority).into(),
                    payload.as_bytes().to_vec(),
                    dedup.as_ref().map(|d| d.as_bytes().to_vec()),
                    durability,
                )
                .await?;
            let id = message_string(sent.id);
            Ok(out(
                json!({"ok": true, "queue": queue, "message": id,
                    "request": sent.id.request.to_hex(), "op_index": sent.id.op_index,
                    "certified": sent.duplicate.is_some(), "duplicate": sent.duplicate}),
                format!("message {id}"),
            ))
        }
        QueueCommand::Claim {
            session,
            queue,
            visibility_ms,
        } => match c
            .claim(*session, queue, Duration::from_millis(*visibility_ms))
            .await?
        {
            Some(msg) => {
                let view = msg.keep();
                let payload = String::from_utf8_lossy(&view.payload.0).to_string();
                Ok(out(
                    json!({"ok": true, "queue": queue, "empty": false,
                        "message": message_string(view.id), "delivery": view.delivery,
                        "priority": format!("{:?}", view.priority), "payload": payload,
                        "payload_hex": hex::encode(&view.payload.0),
                        "submitter": view.provenance.submitter.to_hex(),
                        "submitted_seq": view.provenance.seq.0}),
                    format!(
                        "message {} delivery {}: {payload}",
                        message_string(view.id),
                        view.delivery
                    ),
                ))
            }
            None => Ok(out(
                json!({"ok": true, "queue": queue, "empty": true}),
                format!("{queue}: nothing ready"),
            )),
        },
        QueueCommand::Ack(a) | QueueCommand::Nack(a) => {
            let message = MessageId {
                request: a.message.0,
                op_index: a.message.1,
            };
            let ack = matches!(cmd, QueueCommand::Ack(_));
            if ack {
                c.ack_message(a.session, message, a.delivery).await?;
            } else {
                c.nack_message(a.session, message, a.delivery).await?;
            }
            let verb = if ack { "acked" } else { "nacked" };
            Ok(out(
                json!({"ok": true, "message": message_string(message), "done": verb}),
                format!("{verb} {}", message_string(message)),
            ))
        }
        QueueCommand::Depth { queue } => {
            let d = c.depth(queue).await?;
            let ready: u32 = d.ready.iter().sum();
            Ok(out(
                json!({"ok": true, "queue": queue, "ready": d.ready, "ready_total": ready,
                    "claimed": d.claimed, "dead": d.dead}),
                format!(
                    "{queue}: {ready} ready (critical {}, high {}, normal {}, low {}), {} claimed, {} dead",
                    d.ready[0], d.ready[1], d.ready[2], d.ready[3], d.claimed, d.dead
                ),
            ))
        }
        QueueCommand::Peek { queue } => match c.peek(queue).await? {
            Some(view) => {
                let payload = String::from_utf8_lossy(&view.payload.0).to_string();
                Ok(out(
                    json!({"ok": true, "queue": queue, "empty": false,
                        "message": message_string(view.id), "priority": format!("{:?}", view.priority),
                        "delivery": view.delivery, "payload": payload}),
                    format!("message {}: {payload}", message_string(view.id)),
                ))
            }
            None => Ok(out(
                json!({"ok": true, "queue": queue, "empty": true}),
                format!("{queue}: nothing ready"),
            )),
        },
    }
}

/// The most pulses `lockchain show|verify` fetches without `--to`.
const PULSES_DEFAULT_MAX: u64 = 10_000;

async fn lockchain(c: &Client, cmd: &LockchainCommand) -> Result<Output, ClientError> {
    let (range, verify) = match cmd {
        LockchainCommand::Show(r) => (r, false),
        LockchainCommand::Verify(r) => (r, true),
    };
    let to = range
        .to
        .unwrap_or(range.from.saturating_add(PULSES_DEFAULT_MAX - 1));
    if to < range.from {
        return Err(ClientError::InvalidArgument(format!(
            "--to {to} is before --from {}",
            range.from
        )));
    }
    let count = u32::try_from(to - range.from + 1)
        .map_err(|_| ClientError::InvalidArgument("range too long: ask for fewer pulses".into()))?;
    // `pulses` checks every certificate and link as it downloads.
    let chain = c.pulses(PulseNumber(range.from), count).await?;
    if verify {
        c.verifier()
            .verify_continuity(&chain)
            .map_err(|e| ClientError::UnexpectedResult {
                op: "lockchain verify",
                got: e.to_string(),
            })?;
    }
    let headers: Vec<Value> = chain
        .iter()
        .map(|p| {
            let h = &p.header;
            json!({"pulse": h.pulse.0, "first_seq": h.first_seq.0, "last_seq": h.last_seq.0,
                "digest": h.digest().to_hex(), "previous": h.previous.to_hex(),
                "batches_root": h.batches_root.to_hex(), "state_digest": h.state_digest.to_hex(),
                "time": h.time.wall, "signers": p.signatures.len()})
        })
        .collect();
    let text = if verify {
        match (chain.first(), chain.last()) {
            (Some(a), Some(b)) => format!(
                "verified {} pulses ({}..={}, seqs {}..={}): every quorum certificate and link holds",
                chain.len(),
                a.header.pulse.0,
                b.header.pulse.0,
                a.header.first_seq.0,
                b.header.last_seq.0
            ),
            _ => "no pulses in that range yet".to_string(),
        }
    } else {
        chain
            .iter()
            .map(|p| {
                format!(
                    "pulse {} seqs {}..={} header {} ({} signers)",
                    p.header.pulse.0,
                    p.header.first_seq.0,
                    p.header.last_seq.0,
                    p.header.digest().to_hex(),
                    p.signatures.len()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(out(
        json!({"ok": true, "verified": true, "count": chain.len(), "pulses": headers}),
        text,
    ))
}

async fn watch(
    c: &Client,
    count: Option<u64>,
    duration_ms: Option<u64>,
) -> Result<Output, ClientError> {
    let mut events = c.events();
    // Events are pushed for keys that submitted on the connection: a
    // cheap read registers this one.
    c.check("qlock.watch").await?;
    let deadline = duration_ms.map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
    let mut seen = Vec::new();
    loop {
        if count.is_some_and(|n| seen.len() as u64 >= n) {
            break;
        }
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, events.next()).await {
                Ok(e) => e,
                Err(_) => break,
            },
            None => events.next().await,
        };
        let Some(e) = next else { break };
        let outcome = serde_json::to_value(&e.outcome).unwrap_or(Value::Null);
        let line = json!({"request": e.request.to_hex(), "op_index": e.op_index, "seq": e.seq.0, "outcome": outcome});
        if !cli_json_mode() {
            println!(
                "{}:{} at batch {}: {:?}",
                e.request.to_hex(),
                e.op_index,
                e.seq.0,
                e.outcome
            );
        }
        seen.push(line);
    }
    Ok(out(json!({"ok": true, "events": seen}), String::new()))
}

/// Whether `--json` was given (watch prints lines as they come only in
/// text mode).
fn cli_json_mode() -> bool {
    std::env::args().any(|a| a == "--json")
}

async fn demo(cli: &Cli, clients: usize, duration: Duration) -> Result<Output, ClientError> {
    if clients == 0 || clients > 64 {
        return Err(ClientError::InvalidArgument(
            "--clients must be 1 to 64".into(),
        ));
    }
    let config = ClusterConfig::load(&cli.cluster)?;
    let options = ClientOptions {
        request_timeout: Duration::from_millis(cli.timeout_ms),
        preferred_replica: cli.replica.map(ReplicaId),
        ..ClientOptions::default()
    };
    let started = Instant::now();
    let resources = ["demo-lock-a", "demo-lock-b"];
    let mut tasks = Vec::new();
    // Lock contenders: each its own key (one key per client process).
    for i in 0..clients {
        let key = KeyPair::generate(&mut rand::rngs::OsRng);
        let c = Client::connect(config.clone(), key, options.clone()).await?;
        let resource = resources[i % resources.len()];
        tasks.push(tokio::spawn(async move {
            let session = c.create_session(Duration::from_secs(10)).await?;
            let mut grants: Vec<(String, FencingToken)> = Vec::new();
            let mut ops = 1u64;
            while started.elapsed() < duration {
                match c
                    .acquire(
                        session.id,
                        resource,
                        LockMode::Exclusive,
                        Some(Duration::from_secs(2)),
                    )
                    .await
                {
                    Ok(guard) => {
                        grants.push((resource.to_string(), guard.token()));
                        guard.release().await?;
                        ops += 2;
                    }
                    Err(ClientError::Op(qlock::OpError::WaitTimedOut)) => ops += 1,
                    Err(e) => return Err(e),
                }
            }
            c.destroy_session(session.id).await?;
            Ok::<_, ClientError>((ops + 1, grants, 0u64, 0u64))
        }));
    }
    // A producer and a consumer on one queue.
    let queue = format!("demo-queue-{}", std::process::id());
    {
        let key = KeyPair::generate(&mut rand::rngs::OsRng);
        let c = Client::connect(config.clone(), key, options.clone()).await?;
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut produced = 0u64;
            while started.elapsed() < duration {
                c.queue_submit(
                    &queue,
                    Priority::Normal,
                    format!("job {produced}").into_bytes(),
                    None,
                    Durability::Sync,
                )
                .await?;
                produced += 1;
            }
            Ok((produced, Vec::new(), produced, 0))
        }));
    }
    {
        let key = KeyPair::generate(&mut rand::rngs::OsRng);
        let c = Client::connect(config.clone(), key, options.clone()).await?;
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let session = c.create_session(Duration::from_secs(10)).await?;
            let (mut consumed, mut ops) = (0u64, 1u64);
            // Drain a little past the producer's end.
            while started.elapsed() < duration + Duration::from_millis(500) {
                ops += 1;
                match c.claim(session.id, &queue, Duration::from_secs(30)).await? {
                    Some(msg) => {
                        msg.ack().await?;
                        consumed += 1;
                        ops += 1;
                    }
                    None => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            c.destroy_session(session.id).await?;
            Ok((ops + 1, Vec::new(), 0, consumed))
        }));
    }
    let (mut ops, mut produced, mut consumed) = (0u64, 0u64, 0u64);
    let mut grants: Vec<(String, FencingToken)> = Vec::new();
    for t in tasks {
        let (o, g, p, c) = t
            .await
            .map_err(|e| ClientError::InvalidArgument(format!("demo task failed: {e}")))??;
        ops += o;
        produced += p;
        consumed += c;
        grants.extend(g);
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Fencing tokens must be distinct per resource: a repeat would mean
    // two grants of one lock at once.
    let mut per_resource: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for (r, t) in &grants {
        per_resource.entry(r.clone()).or_default().push(t.as_u64());
    }
    let mut tokens_unique = true;
    let mut max_tokens = serde_json::Map::new();
    for (r, ts) in per_resource.iter_mut() {
        ts.sort_unstable();
        let before = ts.len();
        ts.dedup();
        tokens_unique &= ts.len() == before;
        max_tokens.insert(r.clone(), json!(ts.last().copied()));
    }
    let ops_per_sec = ops as f64 / elapsed;
    let text = format!(
        "demo: {clients} lock clients + 1 producer + 1 consumer for {elapsed:.1} s\n\
         {ops} verified ops, {ops_per_sec:.0} ops/s\n\
         {} lock grants, fencing tokens distinct per resource: {tokens_unique}; highest tokens {}\n\
         queue {queue}: {produced} produced (sync, 2f+1 signatures), {consumed} consumed",
        grants.len(),
        Value::Object(max_tokens.clone())
    );
    Ok(out(
        json!({"ok": tokens_unique, "clients": clients, "seconds": elapsed, "ops": ops,
            "ops_per_sec": ops_per_sec, "grants": grants.len(), "tokens_unique": tokens_unique,
            "highest_tokens": max_tokens, "produced": produced, "consumed": consumed}),
        text,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_and_subcommands_parse() {
        let cli = Cli::try_parse_from([
            "qlock",
            "lock",
            "acquire",
            "--session",
            "12.3",
            "printer",
            "--wait",
            "500",
            "--json",
            "--cluster",
            "c.toml",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.cluster, PathBuf::from("c.toml"));
        match cli.command {
            Command::Lock(LockCommand::Acquire {
                session,
                resource,
                shared,
                wait,
            }) => {
                assert_eq!(
                    session,
                    SessionId(FencingToken {
                        seq: SeqNum(12),
                        index: 3
                    })
                );
                assert_eq!(resource, "printer");
                assert!(!shared);
                assert_eq!(wait, Some(500));
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from(["qlock", "status"]).unwrap();
        assert_eq!(cli.cluster, PathBuf::from("./cluster.toml"));
        assert!(!cli.json);
    }

    #[test]
    fn bad_ids_are_usage_errors() {
        let e = Cli::try_parse_from(["qlock", "session", "status", "--session", "12"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("SEQ.INDEX"), "{e}");
        let e = Cli::try_parse_from([
            "qlock",
            "queue",
            "ack",
            "--session",
            "1.0",
            "--message",
            "zz:1",
            "--delivery",
            "1",
        ])
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = Cli::try_parse_from(["qlock", "queue", "submit", "q"]).unwrap_err();
        assert_eq!(e.exit_code(), 2, "missing payload");
    }

    #[test]
    fn ids_round_trip_through_their_printed_form() {
        let s = SessionId(FencingToken {
            seq: SeqNum(77),
            index: 5,
        });
        assert_eq!(parse_session(&session_string(s)), Ok(s));
        let m = MessageId {
            request: Digest([0xab; 32]),
            op_index: 9,
        };
        assert_eq!(parse_receipt(&message_string(m)), Ok((m.request, 9)));
        let cli = Cli::try_parse_from([
            "qlock",
            "queue",
            "submit",
            "jobs",
            "hello",
            "--priority",
            "critical",
            "--async",
        ])
        .unwrap();
        match cli.command {
            Command::Queue(QueueCommand::Submit {
                priority,
                asynchronous,
                ..
            }) => {
                assert!(matches!(priority, PriorityArg::Critical));
                assert!(asynchronous);
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
