//! The `qlock` binary against an in-process fake cluster: a round trip
//! with `--json` parsed, and the exit codes.

mod common;

use common::{dead_addr, FakeCluster, Gateway, Mode};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn qlock(dir: &Path, args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_qlock"))
        .current_dir(dir)
        .args(["--json", "--timeout-ms", "3000"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "{args:?}: not JSON: {stdout:?} stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), json)
}

async fn run(dir: &Path, args: &[&str]) -> (i32, Value) {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        qlock(&dir, &refs)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_with_json_and_exit_codes() {
    let cluster = FakeCluster::new(1);
    let gw = Gateway::start(cluster.clone(), 0, Mode::Honest).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cluster.toml"),
        cluster.cluster_toml(&[gw.addr]),
    )
    .unwrap();
    let d = dir.path();

    let (code, v) = run(d, &["keygen", "--out", "client.key"]).await;
    assert_eq!((code, v["ok"].as_bool()), (0, Some(true)), "{v}");
    assert_eq!(v["public_key"].as_str().unwrap().len(), 64);
    let (code, _) = run(d, &["keygen", "--out", "other.key"]).await;
    assert_eq!(code, 0);

    let (code, v) = run(d, &["session", "create", "--ttl-ms", "30000"]).await;
    assert_eq!(code, 0, "{v}");
    let session = v["session"].as_str().unwrap().to_string();

    let (code, v) = run(d, &["lock", "acquire", "--session", &session, "printer"]).await;
    assert_eq!(code, 0, "{v}");
    let token = v["token"]["u64"].as_u64().unwrap();

    let (code, v) = run(d, &["lock", "check", "printer"]).await;
    assert_eq!(code, 0);
    assert_eq!(v["holders"][0]["session"].as_str(), Some(session.as_str()));
    assert_eq!(v["holders"][0]["token"]["u64"].as_u64(), Some(token));

    // Another key's session finds the lock busy: exit code 1.
    let (_, v) = run(d, &["--key", "other.key", "session", "create"]).await;
    let other = v["session"].as_str().unwrap().to_string();
    let (code, v) = run(
        d,
        &[
            "--key",
            "other.key",
            "lock",
            "acquire",
            "--session",
            &other,
            "printer",
        ],
    )
    .await;
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["error"].as_str(), Some("op_refused"));

    let (code, _) = run(d, &["lock", "release", "--session", &session, "printer"]).await;
    assert_eq!(code, 0);
    let (code, v) = run(
        d,
        &[
            "--key",
            "other.key",
            "lock",
            "acquire",
            "--session",
            &other,
            "printer",
            "--wait",
            "1000",
        ],
    )
    .await;
    assert_eq!(code, 0, "{v}");
    assert!(v["token"]["u64"].as_u64().unwrap() > token, "tokens grow");

    let (code, v) = run(
        d,
        &["queue", "submit", "jobs", "hello", "--priority", "high"],
    )
    .await;
    assert_eq!(code, 0, "{v}");
    let message = v["message"].as_str().unwrap().to_string();
    assert_eq!(v["certified"].as_bool(), Some(true));
    let (code, v) = run(d, &["queue", "depth", "jobs"]).await;
    assert_eq!((code, v["ready_total"].as_u64()), (0, Some(1)));
    let (code, v) = run(d, &["queue", "peek", "jobs"]).await;
    assert_eq!((code, v["payload"].as_str()), (0, Some("hello")));
    let (code, v) = run(d, &["queue", "claim", "--session", &session, "jobs"]).await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["message"].as_str(), Some(message.as_str()));
    let delivery = v["delivery"].as_u64().unwrap().to_string();
    let (code, v) = run(
        d,
        &[
            "queue",
            "ack",
            "--session",
            &session,
            "--message",
            &message,
            "--delivery",
            &delivery,
        ],
    )
    .await;
    assert_eq!(code, 0, "{v}");
    let (code, v) = run(
        d,
        &[
            "queue",
            "ack",
            "--session",
            &session,
            "--message",
            &message,
            "--delivery",
            &delivery,
        ],
    )
    .await;
    assert_eq!(code, 1, "acked once only: {v}");

    let (code, v) = run(d, &["session", "status", "--session", &session]).await;
    assert_eq!(code, 0, "{v}");

    cluster.pulse_until(cluster.pulse_count() + 2);
    let (code, v) = run(d, &["lockchain", "verify"]).await;
    assert_eq!(code, 0, "{v}");
    assert!(v["count"].as_u64().unwrap() >= 2);
    let (code, v) = run(d, &["lockchain", "show", "--from", "1", "--to", "1"]).await;
    assert_eq!((code, v["count"].as_u64()), (0, Some(1)), "{v}");
    let (code, v) = run(d, &["proof", &message]).await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["verified"].as_bool(), Some(true));

    let (code, v) = run(d, &["status"]).await;
    assert_eq!(code, 0, "{v}");
    let (code, _) = run(d, &["session", "destroy", "--session", &session]).await;
    assert_eq!(code, 0);
    let (code, v) = run(d, &["session", "status", "--session", &session]).await;
    assert_eq!(code, 1, "{v}");

    // Configuration errors: 2. Unreachable cluster: 3.
    let (code, v) = run(d, &["--cluster", "missing.toml", "status"]).await;
    assert_eq!(code, 2, "{v}");
    assert!(v["message"].as_str().unwrap().contains("init-cluster"));
    let (code, _) = run(d, &["--key", "missing.key", "lock", "check", "x"]).await;
    assert_eq!(code, 2);
    std::fs::write(
        d.join("dead.toml"),
        cluster.cluster_toml(&[dead_addr().await]),
    )
    .unwrap();
    let (code, v) = run(d, &["--cluster", "dead.toml", "lock", "check", "x"]).await;
    assert_eq!(code, 3, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_and_reports() {
    let cluster = FakeCluster::new(4);
    let gw = Gateway::start(cluster.clone(), 0, Mode::Honest).await;
    let dir = tempfile::tempdir().unwrap();
    let addrs = [
        gw.addr,
        dead_addr().await,
        dead_addr().await,
        dead_addr().await,
    ];
    std::fs::write(
        dir.path().join("cluster.toml"),
        cluster.cluster_toml(&addrs),
    )
    .unwrap();
    let (code, v) = run(
        dir.path(),
        &[
            "--replica",
            "0",
            "demo",
            "--clients",
            "3",
            "--duration-ms",
            "1500",
        ],
    )
    .await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["tokens_unique"].as_bool(), Some(true));
    assert!(v["grants"].as_u64().unwrap() > 0, "{v}");
    assert!(v["consumed"].as_u64().unwrap() > 0, "{v}");
    eprintln!("demo against the fake cluster: {v}");
}
