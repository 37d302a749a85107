//! The client's view of a cluster: the `cluster.toml` that `qlockd
//! init-cluster` writes (the `[cluster]` table), checked into a
//! [`ClusterConfig`] — the membership (public keys in id order, the cluster
//! id's preimage) and each replica's client address.
//!
//! Unknown fields are ignored, so a replica's own config file (which holds
//! the same `[cluster]` table plus its private settings) also works.

use primitives::{ClusterId, Membership, PublicKey, ReplicaId};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;

/// The cluster name when the file names none (the same default as
/// `qlockd`'s).
pub const DEFAULT_CLUSTER_NAME: &str = "qlock";

/// Why a cluster file could not be used. Every variant names the file and,
/// where it can, the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read cluster file {path}: {source} (pass --cluster FILE, or run `qlockd init-cluster` to write one)")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML does not parse or lacks a required field.
    #[error("cluster file {path} does not parse: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message (names the key and line).
        source: Box<toml::de::Error>,
    },
    /// A field parsed but its value is unusable.
    #[error("cluster file {path}: {field}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// The field, as a TOML path.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
struct FileForm {
    cluster: SectionForm,
}

#[derive(Debug, Deserialize)]
struct SectionForm {
    #[serde(default)]
    name: Option<String>,
    replicas: Vec<ReplicaForm>,
}

#[derive(Debug, Deserialize)]
struct ReplicaForm {
    id: u16,
    public_key: String,
    client: String,
}

/// One replica as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaEndpoint {
    /// Its id (its index in the membership).
    pub id: ReplicaId,
    /// Its public key.
    pub key: PublicKey,
    /// Its binary client protocol address.
    pub client: SocketAddr,
}

/// A checked cluster description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Name and keys: what the cluster id is the digest of.
    pub membership: Membership,
    /// Every replica, in id order (`replicas[i].id == i`).
    pub replicas: Vec<ReplicaEndpoint>,
}

impl ClusterConfig {
    /// Builds a config from its parts (tests, or programs that know the
    /// cluster without a file). Panics if `replicas` is not in id order
    /// with the membership's keys — that is a caller bug.
    pub fn new(membership: Membership, replicas: Vec<ReplicaEndpoint>) -> ClusterConfig {
        assert_eq!(membership.n(), replicas.len(), "one endpoint per member");
        for (i, r) in replicas.iter().enumerate() {
            assert_eq!(r.id.index(), i, "endpoints in id order");
            assert_eq!(membership.key(r.id), Some(&r.key), "endpoint key");
        }
        ClusterConfig {
            membership,
            replicas,
        }
    }

    /// The cluster id every request names.
    pub fn cluster_id(&self) -> ClusterId {
        self.membership.cluster_id()
    }

    /// Reads and checks a cluster file.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks the text of a cluster file; `path` names it in
    /// errors.
    pub fn parse(text: &str, path: &str) -> Result<ClusterConfig, ConfigError> {
        let form: FileForm = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_string(),
            source: Box::new(source),
        })?;
        let invalid = |field: String, reason: String| ConfigError::Invalid {
            path: path.to_string(),
            field,
            reason,
        };
        let n = form.cluster.replicas.len();
        if n == 0 || n > primitives::membership::REPLICAS_MAX {
            return Err(invalid(
                "cluster.replicas".into(),
                format!(
                    "a cluster has 1 to {} replicas, this one has {n}",
                    primitives::membership::REPLICAS_MAX
                ),
            ));
        }
        let mut slots: Vec<Option<ReplicaEndpoint>> = vec![None; n];
        for (i, r) in form.cluster.replicas.iter().enumerate() {
            let at = |f: &str| format!("cluster.replicas[{i}].{f}");
            let slot = slots
                .get_mut(usize::from(r.id))
                .ok_or_else(|| invalid(at("id"), format!("id {} is not in 0..{n}", r.id)))?;
            if slot.is_some() {
                return Err(invalid(at("id"), format!("duplicate id {}", r.id)));
            }
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(r.public_key.trim(), &mut bytes)
                .map_err(|_| invalid(at("public_key"), "not 64 hex digits".into()))?;
            let key = PublicKey::from_bytes(&bytes)
                .map_err(|_| invalid(at("public_key"), "not a valid ed25519 public key".into()))?;
            let client = r.client.parse().map_err(|_| {
                invalid(
                    at("client"),
                    format!("{:?} is not host:port (an IP address and a port)", r.client),
                )
            })?;
            *slot = Some(ReplicaEndpoint {
                id: ReplicaId(r.id),
                key,
                client,
            });
        }
        // n distinct ids, each below n: every slot is filled.
        let replicas: Vec<ReplicaEndpoint> = slots.into_iter().flatten().collect();
        assert_eq!(replicas.len(), n, "ids are distinct and in range");
        let name = form
            .cluster
            .name
            .unwrap_or_else(|| DEFAULT_CLUSTER_NAME.to_string());
        if name.is_empty() {
            return Err(invalid("cluster.name".into(), "must not be empty".into()));
        }
        let membership = Membership::new(name, replicas.iter().map(|r| r.key).collect())
            .map_err(|e| invalid("cluster.replicas".into(), e.to_string()))?;
        Ok(ClusterConfig {
            membership,
            replicas,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use primitives::KeyPair;

    fn key_hex(i: u8) -> String {
        KeyPair::from_seed(&[i; 32]).public().to_hex()
    }

    #[test]
    fn parses_the_init_cluster_shape_and_ignores_extra_fields() {
        let text = format!(
            r#"
[cluster]
name = "qlock-local"
[[cluster.replicas]]
id = 1
public_key = "{}"
p2p = "/ip4/127.0.0.1/tcp/7101"
client = "127.0.0.1:7201"
http = "127.0.0.1:7301"
[[cluster.replicas]]
id = 0
public_key = "{}"
p2p = "/ip4/127.0.0.1/tcp/7100"
client = "127.0.0.1:7200"
future_field = 3
"#,
            key_hex(2),
            key_hex(1)
        );
        let c = ClusterConfig::parse(&text, "c.toml").unwrap();
        assert_eq!(c.replicas.len(), 2);
        assert_eq!(c.replicas[0].client, "127.0.0.1:7200".parse().unwrap());
        assert_eq!(
            c.membership.replicas[0],
            KeyPair::from_seed(&[1; 32]).public()
        );
        assert_eq!(c.membership.name, "qlock-local");
    }

    #[test]
    fn the_default_name_matches_qlockd() {
        let text = format!(
            "[[cluster.replicas]]\nid = 0\npublic_key = \"{}\"\nclient = \"127.0.0.1:1\"\n",
            key_hex(1)
        );
        let c = ClusterConfig::parse(&text, "c.toml").unwrap();
        assert_eq!(c.membership.name, DEFAULT_CLUSTER_NAME);
    }

    #[test]
    fn bad_fields_are_named() {
        let dup = format!(
            "[[cluster.replicas]]\nid = 0\npublic_key = \"{k}\"\nclient = \"127.0.0.1:1\"\n\
             [[cluster.replicas]]\nid = 0\npublic_key = \"{k}\"\nclient = \"127.0.0.1:2\"\n",
            k = key_hex(1)
        );
        let e = ClusterConfig::parse(&dup, "c.toml").unwrap_err();
        assert!(e.to_string().contains("cluster.replicas[1].id"), "{e}");
        let bad_key =
            "[[cluster.replicas]]\nid = 0\npublic_key = \"zz\"\nclient = \"127.0.0.1:1\"\n";
        let e = ClusterConfig::parse(bad_key, "c.toml").unwrap_err();
        assert!(e.to_string().contains("public_key"), "{e}");
        let bad_addr = format!(
            "[[cluster.replicas]]\nid = 0\npublic_key = \"{}\"\nclient = \"localhost\"\n",
            key_hex(1)
        );
        let e = ClusterConfig::parse(&bad_addr, "c.toml").unwrap_err();
        assert!(e.to_string().contains("client"), "{e}");
    }
}
