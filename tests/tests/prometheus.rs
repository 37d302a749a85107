//! The Prometheus files in `scripts/prometheus/`: `promtool` accepts the
//! scrape config and the alert rules, the rules' unit tests pass (each
//! alert fires when it should, and only then), and every metric the rules
//! use is one a real `qlockd` exports.
//!
//! `promtool` ships in Debian's `prometheus` package, which
//! `scripts/test.sh` installs; without it the promtool checks are skipped
//! with a message saying so.

use e2e::{bounded, eventually, TestCluster};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn prometheus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/prometheus")
}

/// `promtool`, or `None` (with a message) when it is not installed.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!(
            "SKIPPED: promtool is not installed (Debian package `prometheus`; ./scripts/test.sh installs it)"
        );
    }
    found
}

fn promtool_passes(promtool: &PathBuf, args: &[&str]) {
    let output = Command::new(promtool)
        .args(args)
        .current_dir(prometheus_dir())
        .output()
        .expect("run promtool");
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn promtool_accepts_the_scrape_config_and_the_alert_rules() {
    let Some(promtool) = promtool() else { return };
    promtool_passes(&promtool, &["check", "config", "prometheus.yml"]);
    promtool_passes(&promtool, &["check", "rules", "alerts.yml"]);
}

#[test]
fn every_alert_fires_in_its_unit_test_and_only_for_the_replica_in_trouble() {
    let Some(promtool) = promtool() else { return };
    promtool_passes(&promtool, &["test", "rules", "alerts_test.yml"]);
}

/// The `qlock_*` names an expression mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("qlock_") {
        if i > 0 && text[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue; // inside another word
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.insert(name);
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_rules_use_metrics_that_qlockd_exports() {
    bounded(Duration::from_secs(120), "test", async {
        let rules =
            std::fs::read_to_string(prometheus_dir().join("alerts.yml")).expect("alerts.yml");
        let exprs: String = rules
            .lines()
            .filter(|l| l.trim_start().starts_with("expr:"))
            .collect::<Vec<_>>()
            .join("\n");
        let used = metric_names(&exprs);
        assert!(used.len() >= 6, "the rules use too few metrics: {used:?}");
        let cluster = TestCluster::start(4).await;
        // Something committed, so every family has its samples.
        cluster
            .client()
            .await
            .check("metrics-probe")
            .await
            .expect("a commit");
        let text = cluster.metrics(0).await.expect("metrics");
        let exported: BTreeSet<String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_string)
            .collect();
        let missing: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
        assert!(
            missing.is_empty(),
            "alerts.yml uses metrics qlockd does not export: {missing:?}\nexported: {exported:?}"
        );
    })
    .await
}

async fn metric(cluster: &TestCluster, i: usize, name: &str) -> Result<f64, String> {
    cluster
        .metric(i, name)
        .await
        .ok_or_else(|| format!("replica {i} exports no {name}"))
}

/// Without a quorum (two of four replicas killed) a waiting request shows
/// as `qlock_pending_requests` while `qlock_committed_batches_total`
/// stays put, and the peers gauge drops: the series the stall and
/// disconnection alerts read behave as the rules assume, on a real qlockd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_cluster_shows_waiting_requests_no_commits_and_missing_peers() {
    bounded(Duration::from_secs(120), "test", async {
        let mut cluster = TestCluster::start(4).await;
        let primary = cluster.primary_now().await;
        let alive = primary;
        let other = (primary + 1) % 4;
        for i in (0..4).filter(|i| *i != alive && *i != other) {
            cluster.kill(i).expect("kill -9");
        }
        let c = cluster.client_of(alive).await;
        let waiting = tokio::spawn(async move { c.check("stalled").await });
        let me = &cluster;
        eventually(Duration::from_secs(20), "a waiting request", || async {
            match metric(me, alive, "qlock_pending_requests").await? {
                v if v >= 1.0 => Ok(()),
                v => Err(format!("qlock_pending_requests = {v}")),
            }
        })
        .await;
        let commits = "qlock_committed_batches_total";
        let before = metric(me, alive, commits).await.expect("commits");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = metric(me, alive, commits).await.expect("commits");
        assert_eq!(before, after, "a cluster without a quorum committed");
        let connected = metric(me, alive, "qlock_net_peers_connected")
            .await
            .expect("peers");
        let configured = metric(me, alive, "qlock_net_peers_configured")
            .await
            .expect("peers");
        assert_eq!(configured, 3.0);
        assert!(
            connected < configured,
            "{connected} of {configured} peers connected"
        );
        // Back to a quorum: the request commits and nothing waits.
        for i in (0..4).filter(|i| *i != alive && *i != other) {
            cluster.start(i).expect("restart");
        }
        bounded(Duration::from_secs(60), "the waiting request", waiting)
            .await
            .expect("task")
            .expect("the request commits once a quorum is back");
        let me = &cluster;
        eventually(Duration::from_secs(30), "no waiting request", || async {
            let v = metric(me, alive, "qlock_pending_requests").await?;
            if v < 0.5 {
                Ok(())
            } else {
                Err(format!("qlock_pending_requests = {v}"))
            }
        })
        .await;
        assert!(metric(me, alive, commits).await.expect("commits") > after);
    })
    .await
}
