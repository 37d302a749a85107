//! The config file: a good one loads into typed values; each bad field is
//! refused with an error naming it; `init-cluster` output loads back.

use node::config::{init_cluster, ClusterFile, Config, ConfigError};
use primitives::{KeyPair, ReplicaId};
use rand::SeedableRng;
use std::path::Path;

fn keys(n: usize) -> Vec<KeyPair> {
    (0..n)
        .map(|i| KeyPair::from_seed(&[i as u8 + 1; 32]))
        .collect()
}

fn replica_table(i: usize, key: &KeyPair) -> String {
    format!(
        "[[cluster.replicas]]\nid = {i}\npublic_key = \"{}\"\np2p = \"/ip4/127.0.0.1/tcp/{}\"\nclient = \"127.0.0.1:{}\"\nhttp = \"127.0.0.1:{}\"\n",
        key.public().to_hex(),
        7100 + i,
        7200 + i,
        7300 + i
    )
}

fn good(n: usize) -> String {
    let mut text = String::from(
        "replica = 1\nkey_file = \"replica-1.key\"\ndata_dir = \"data-1\"\n\
         p2p_listen = \"/ip4/127.0.0.1/tcp/7101\"\nclient_listen = \"127.0.0.1:7201\"\n\
         http_listen = \"127.0.0.1:7301\"\n[cluster]\nname = \"test\"\n",
    );
    for (i, key) in keys(n).iter().enumerate() {
        text.push_str(&replica_table(i, key));
    }
    text
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_str_at(text, Path::new("/etc/qlock/replica-1.toml"))
}

/// The error's text, which must name `field`.
fn error_naming(text: &str, field: &str) -> String {
    let err = load(text).expect_err("the config must be refused");
    let message = err.to_string();
    assert!(
        message.contains(field),
        "error {message:?} does not name {field:?}"
    );
    message
}

#[test]
fn a_good_file_loads_with_defaults_and_resolved_paths() {
    let config = load(&good(4)).unwrap();
    assert_eq!(config.replica, ReplicaId(1));
    assert_eq!(config.key_file, Path::new("/etc/qlock/replica-1.key"));
    assert_eq!(config.data_dir, Path::new("/etc/qlock/data-1"));
    assert_eq!(config.client_listen.port(), 7201);
    assert_eq!(config.cluster.membership.n(), 4);
    assert_eq!(config.cluster.membership.f(), 1);
    assert_eq!(config.cluster.membership.name, "test");
    let expected: Vec<_> = keys(4).iter().map(KeyPair::public).collect();
    assert_eq!(config.cluster.membership.replicas, expected);
    assert_eq!(config.timeouts.request_ms, 10_000);
    assert_eq!(config.limits.connections_max, 1024);
    assert_eq!(
        config.request_limits(),
        primitives::RequestLimits::default()
    );
    let rc = config.runtime_config(keys(4)[1].clone());
    assert_eq!(rc.id, ReplicaId(1));
    assert_eq!(rc.peer_addresses.len(), 4);
    assert_eq!(
        rc.peer_addresses[3][0].to_string(),
        "/ip4/127.0.0.1/tcp/7103"
    );
}

#[test]
fn replica_ids_may_be_listed_in_any_order() {
    let k = keys(2);
    let text = good(0) + &replica_table(1, &k[1]) + &replica_table(0, &k[0]);
    let config = load(&text).unwrap();
    assert_eq!(config.cluster.membership.replicas[0], k[0].public());
    assert_eq!(config.cluster.replicas[1].client.port(), 7201);
}

#[test]
fn tables_override_defaults() {
    let text =
        good(4) + "[timeouts]\nrequest_ms = 500\n[limits]\nconnections_max = 3\nops_max = 8\n";
    let config = load(&text).unwrap();
    assert_eq!(config.timeouts.request_ms, 500);
    assert_eq!(config.timeouts.view_change_ms, 2_000);
    assert_eq!(config.limits.connections_max, 3);
    assert_eq!(config.request_limits().ops_max, 8);
}

#[test]
fn batching_reaches_the_primary_and_bad_values_are_named() {
    let defaults = load(&good(4)).unwrap().runtime_config(keys(4)[1].clone());
    assert_eq!(defaults.consensus.batch_delay_micros, 2_000);
    assert_eq!(defaults.consensus.batches_in_flight_max, 1);
    let text = good(4) + "[batching]\ndelay_ms = 20\nin_flight_max = 2\n";
    let rc = load(&text).unwrap().runtime_config(keys(4)[1].clone());
    assert_eq!(rc.consensus.batch_delay_micros, 20_000);
    assert_eq!(rc.consensus.batches_in_flight_max, 2);
    rc.consensus.validate().unwrap();
    error_naming(
        &(good(4) + "[batching]\nin_flight_max = 0\n"),
        "batching.in_flight_max",
    );
    // Not as long as the view-change timeout (2 s by default).
    error_naming(
        &(good(4) + "[batching]\ndelay_ms = 2000\n"),
        "batching.delay_ms",
    );
    load(&(good(4) + "[timeouts]\nview_change_ms = 5000\n[batching]\ndelay_ms = 2000\n")).unwrap();
    error_naming(&(good(4) + "[batching]\nsize_max = 8\n"), "size_max");
}

#[test]
fn worker_threads_default_to_one_per_core_and_are_bounded() {
    let defaults = load(&good(4)).unwrap();
    assert_eq!(defaults.runtime.worker_threads, 0);
    assert!(defaults.runtime.worker_threads() >= 1);
    let one = load(&(good(4) + "[runtime]\nworker_threads = 1\n")).unwrap();
    assert_eq!(one.runtime.worker_threads(), 1);
    error_naming(
        &(good(4) + "[runtime]\nworker_threads = 100000\n"),
        "runtime.worker_threads",
    );
    error_naming(&(good(4) + "[runtime]\nthreads = 1\n"), "threads");
}

#[test]
fn an_unknown_key_is_named() {
    error_naming(
        &(good(4) + "[limits]\nconections_max = 3\n"),
        "conections_max",
    );
    error_naming(&good(4).replace("data_dir", "datadir"), "datadir");
}

#[test]
fn a_missing_required_key_is_named() {
    error_naming(
        &good(4).replace("key_file = \"replica-1.key\"\n", ""),
        "key_file",
    );
}

#[test]
fn a_replica_not_in_the_cluster_is_named() {
    let msg = error_naming(&good(4).replace("replica = 1", "replica = 4"), "replica");
    assert!(msg.contains("not in cluster.replicas"), "{msg}");
}

#[test]
fn a_duplicate_id_is_named() {
    let k = keys(3);
    // Distinct keys and addresses: only the id is wrong.
    let third = replica_table(2, &k[2]).replace("id = 2", "id = 1");
    let text = good(0) + &replica_table(0, &k[0]) + &replica_table(1, &k[1]) + &third;
    let msg = error_naming(&text, "cluster.replicas[2].id");
    assert!(msg.contains("duplicate id 1"), "{msg}");
}

#[test]
fn an_id_out_of_range_is_named() {
    let k = keys(2);
    let text = good(0) + &replica_table(0, &k[0]) + &replica_table(5, &k[1]);
    error_naming(&text, "cluster.replicas[1].id");
}

#[test]
fn a_bad_hex_key_is_named() {
    let hex = keys(4)[2].public().to_hex();
    let msg = error_naming(
        &good(4).replace(&hex, "not-hex"),
        "cluster.replicas[2].public_key",
    );
    assert!(msg.contains("hex"), "{msg}");
    // The right length, but not a curve point (y = 2 is off the curve).
    let mut off_curve = [0u8; 32];
    off_curve[0] = 2;
    error_naming(
        &good(4).replace(&hex, &hex::encode(off_curve)),
        "cluster.replicas[2].public_key",
    );
}

#[test]
fn a_duplicate_key_is_named() {
    let k = keys(2);
    let hex1 = k[1].public().to_hex();
    let text = good(2).replace(&hex1, &k[0].public().to_hex());
    let msg = error_naming(&text, "cluster.replicas[1].public_key");
    assert!(msg.contains("cluster.replicas[0]"), "{msg}");
}

#[test]
fn a_duplicate_address_is_named() {
    let text = good(3).replace("127.0.0.1:7202", "127.0.0.1:7201");
    error_naming(&text, "cluster.replicas[2].client");
}

#[test]
fn bad_addresses_are_named() {
    error_naming(
        &good(4).replace(
            "client_listen = \"127.0.0.1:7201\"",
            "client_listen = \"localhost\"",
        ),
        "client_listen",
    );
    error_naming(
        &good(4).replace("/ip4/127.0.0.1/tcp/7102", "/ip9/x"),
        "cluster.replicas[2].p2p",
    );
}

#[test]
fn an_empty_cluster_is_refused() {
    error_naming(&(good(0) + "replicas = []\n"), "cluster.replicas");
}

#[test]
fn a_zero_limit_is_named() {
    error_naming(
        &(good(4) + "[limits]\nin_flight_per_connection_max = 0\n"),
        "limits.in_flight_per_connection_max",
    );
}

#[test]
fn init_cluster_output_loads_back_and_the_keys_match() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let out = init_cluster(dir.path(), 4, 17100, &mut rng).unwrap();
    assert_eq!(out.configs.len(), 4);
    let cluster = ClusterFile::load(&out.cluster_file).unwrap();
    assert_eq!(cluster.membership.replicas, out.public_keys);
    assert_eq!(cluster.replicas[3].client.port(), 17203);
    assert_eq!(cluster.replicas[2].http.unwrap().port(), 17302);
    for (i, path) in out.configs.iter().enumerate() {
        let config = Config::load(path).unwrap();
        assert_eq!(config.replica, ReplicaId(i as u16));
        assert_eq!(config.cluster_id(), cluster.cluster_id());
        assert_eq!(
            config.p2p_listen.to_string(),
            format!("/ip4/127.0.0.1/tcp/{}", 17100 + i)
        );
        assert_eq!(config.data_dir, dir.path().join(format!("data-{i}")));
        let key = config.load_key(path).unwrap();
        assert_eq!(key.public(), out.public_keys[i]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&config.key_file)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "key file mode");
        }
    }
    // A second run refuses to overwrite, and writes nothing.
    let err = init_cluster(dir.path(), 4, 17100, &mut rng).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn a_key_file_for_another_replica_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
    let out = init_cluster(dir.path(), 2, 17400, &mut rng).unwrap();
    let text = std::fs::read_to_string(&out.configs[0])
        .unwrap()
        .replace("replica-0.key", "replica-1.key");
    std::fs::write(&out.configs[0], text).unwrap();
    let config = Config::load(&out.configs[0]).unwrap();
    let err = config.load_key(&out.configs[0]).unwrap_err();
    assert_eq!(err.field(), Some("key_file"));
}

#[test]
fn init_cluster_refuses_zero_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
    let err = init_cluster(dir.path(), 0, 17100, &mut rng).unwrap_err();
    assert_eq!(err.field(), Some("--replicas"));
}
