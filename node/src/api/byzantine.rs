//! **Test only**: a Byzantine gateway, which lies to its clients in one
//! chosen way so tests can show, against real replicas, that the client's
//! checks (`client::verify`) catch every lie and that the client then gets
//! the truth from another replica.
//!
//! Only what the gateway *sends to clients* is falsified: the certified
//! replies to submits (TCP and HTTP) and the wait outcomes pushed as
//! events. The replica behind it still orders, executes and signs
//! honestly, so its peers see nothing wrong. Pulse headers and pulse
//! proofs are passed through untouched.
//!
//! Nothing here runs unless a [`Liar`] was built, and building one takes
//! an [`OptIn`]: `qlockd` makes one only from `--byzantine MODE` together
//! with `--i-am-a-test` or `QLOCK_ALLOW_BYZANTINE=1` in the environment,
//! never from a configuration file (whose schema refuses unknown keys).

use client::api::{Event, Reply};
use lockchain::ReceiptBatchProof;
use primitives::{ClusterId, Digest, SeqNum};
use qlock::{FencingToken, OpResult};
use std::ffi::OsStr;
use std::fmt;
use std::str::FromStr;

/// The environment variable that, set to `1`, allows `--byzantine`.
pub const ALLOW_ENV: &str = "QLOCK_ALLOW_BYZANTINE";

/// The command-line flag that allows `--byzantine`.
pub const ALLOW_FLAG: &str = "--i-am-a-test";

/// How the gateway lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Every receipt's result bytes are replaced (by a decodable, plausible
    /// grant) after signing: only the Merkle path can catch it.
    ForgedResult,
    /// Every receipt's Merkle path is altered.
    WrongPath,
    /// Every certificate is cut to f signatures, fewer than any reply
    /// needs.
    FewSignatures,
    /// Every certificate carries one replica's signature repeated, as many
    /// times as it had signatures (at least f + 1).
    DuplicateSigners,
    /// Every certificate's statement names another cluster id; nothing is
    /// re-signed.
    WrongCluster,
}

impl Mode {
    /// Every mode, in the order `--help` lists them.
    pub const ALL: [Mode; 5] = [
        Mode::ForgedResult,
        Mode::WrongPath,
        Mode::FewSignatures,
        Mode::DuplicateSigners,
        Mode::WrongCluster,
    ];

    /// The mode's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::ForgedResult => "forged-result",
            Mode::WrongPath => "wrong-path",
            Mode::FewSignatures => "few-signatures",
            Mode::DuplicateSigners => "duplicate-signers",
            Mode::WrongCluster => "wrong-cluster",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = ByzantineError;

    fn from_str(s: &str) -> Result<Mode, ByzantineError> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| ByzantineError::UnknownMode(s.to_string()))
    }
}

/// Why a Byzantine gateway was not started.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ByzantineError {
    /// Not one of [`Mode::ALL`].
    #[error("unknown Byzantine mode {0:?}: expected one of forged-result, wrong-path, few-signatures, duplicate-signers, wrong-cluster")]
    UnknownMode(String),
    /// `--byzantine` without the explicit opt-in.
    #[error("refusing --byzantine {mode}: it makes this replica lie to its clients and exists for tests only; a test that means it passes {ALLOW_FLAG} or sets {ALLOW_ENV}=1{}", found.as_ref().map(|v| format!(" ({ALLOW_ENV} is {v:?}, not \"1\")")).unwrap_or_default())]
    NotAllowed {
        /// The mode asked for.
        mode: Mode,
        /// What [`ALLOW_ENV`] held, if it was set to something other than `1`.
        found: Option<String>,
    },
}

/// Proof that lying was asked for explicitly; the only way to a [`Liar`].
#[derive(Debug)]
pub struct OptIn {
    mode: Mode,
}

impl OptIn {
    /// Allows `mode` if `flag` ([`ALLOW_FLAG`] was passed) or `env` (the
    /// value of [`ALLOW_ENV`]) is exactly `1`.
    pub fn check(mode: Mode, flag: bool, env: Option<&OsStr>) -> Result<OptIn, ByzantineError> {
        // Only the exact value counts, so `=0`, `=false` or an empty
        // export left behind do not switch lying on.
        if flag || env == Some(OsStr::new("1")) {
            return Ok(OptIn { mode });
        }
        Err(ByzantineError::NotAllowed {
            mode,
            found: env.map(|v| v.to_string_lossy().into_owned()),
        })
    }

    /// The mode allowed.
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

/// Falsifies outgoing replies and events in one [`Mode`].
#[derive(Clone, Debug)]
pub struct Liar {
    mode: Mode,
    /// f: what [`Mode::FewSignatures`] cuts a certificate to.
    f: usize,
}

impl Liar {
    /// A liar in the opted-in mode for a cluster of weak quorum
    /// `weak_quorum` (f + 1).
    pub fn new(opt_in: OptIn, weak_quorum: usize) -> Liar {
        assert!(weak_quorum >= 1, "a membership's weak quorum is f + 1 ≥ 1");
        Liar {
            mode: opt_in.mode,
            f: weak_quorum - 1,
        }
    }

    /// How it lies.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `reply`, falsified in every proof.
    pub fn reply(&self, mut reply: Reply) -> Reply {
        for proof in &mut reply.proofs {
            self.proof(proof);
        }
        reply
    }

    /// `event`, falsified.
    pub fn event(&self, event: Event) -> Event {
        let Event::WaitOutcome(mut proof) = event;
        self.proof(&mut proof);
        Event::WaitOutcome(proof)
    }

    /// Falsifies one receipt's proof.
    pub fn proof(&self, proof: &mut ReceiptBatchProof) {
        match self.mode {
            Mode::ForgedResult => {
                let forged = qlock::encode_outcome(&Ok(OpResult::Granted {
                    token: FencingToken {
                        seq: SeqNum(u64::MAX),
                        index: 0,
                    },
                }));
                let result = &mut proof.receipt.result;
                if *result == forged {
                    // Already that grant: any change is a lie.
                    result.0.push(0);
                } else {
                    *result = forged;
                }
            }
            Mode::WrongPath => {
                let path = &mut proof.receipt_path;
                match path.path.first_mut() {
                    Some(sibling) => sibling.0[0] ^= 0xff,
                    None => {
                        // A one-leaf tree has no path: claim a second leaf.
                        path.size += 1;
                        path.path.push(Digest([0xff; 32]));
                    }
                }
            }
            Mode::FewSignatures => proof.certificate.signatures.truncate(self.f),
            Mode::DuplicateSigners => {
                let signatures = &mut proof.certificate.signatures;
                if let Some(first) = signatures.first().copied() {
                    let count = signatures.len().max(self.f + 1);
                    *signatures = vec![first; count];
                }
            }
            Mode::WrongCluster => {
                let statement = &mut proof.certificate.statement;
                statement.cluster = other_cluster(statement.cluster);
            }
        }
    }
}

/// `reply` as it goes out to a client: as is, unless there is a liar.
pub(crate) fn outgoing_reply(liar: Option<&Liar>, reply: Reply) -> Reply {
    match liar {
        None => reply,
        Some(liar) => liar.reply(reply),
    }
}

/// `event` as it goes out to a client: as is, unless there is a liar.
pub(crate) fn outgoing_event(liar: Option<&Liar>, event: Event) -> Event {
    match liar {
        None => event,
        Some(liar) => liar.event(event),
    }
}

/// A cluster id that is not `cluster` (every bit flipped, no hashing: the
/// lie needs no meaning, only to differ).
fn other_cluster(cluster: ClusterId) -> ClusterId {
    ClusterId(Digest(cluster.0 .0.map(|b| !b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockchain::merkle::ReceiptTree;
    use lockchain::{BatchCertificate, MerkleError, Threshold, Verifier, VerifyError};
    use primitives::{HlcTimestamp, KeyPair, Membership, Receipt, ReplicaId};

    fn keys() -> Vec<KeyPair> {
        (0..4u8)
            .map(|i| KeyPair::from_seed(&[i + 40; 32]))
            .collect()
    }

    fn membership() -> Membership {
        Membership::new(
            "byzantine-unit",
            keys().iter().map(KeyPair::public).collect(),
        )
        .unwrap()
    }

    /// An honest proof of receipt `index` of a batch of `receipts`, signed
    /// by `signers` replicas.
    fn honest(receipts: u32, index: u32, signers: usize) -> ReceiptBatchProof {
        let m = membership();
        let all: Vec<Receipt> = (0..receipts)
            .map(|i| Receipt {
                request: Digest([i as u8 + 1; 32]),
                op_index: 0,
                seq: SeqNum(5),
                time: HlcTimestamp::from_micros(1_000),
                result: qlock::encode_outcome(&Ok(OpResult::Done)),
            })
            .collect();
        let tree = ReceiptTree::new(&all);
        let mut certificate = BatchCertificate::new(m.cluster_id(), SeqNum(5), tree.root());
        for (i, key) in keys().iter().enumerate().take(signers) {
            let sig = certificate.statement.sign(key);
            certificate.add(&m, ReplicaId(i as u16), sig).unwrap();
        }
        ReceiptBatchProof {
            receipt: all[index as usize].clone(),
            receipt_path: tree.proof(u64::from(index)).unwrap(),
            certificate,
        }
    }

    fn lie(mode: Mode, mut proof: ReceiptBatchProof) -> Result<(), VerifyError> {
        let m = membership();
        let liar = Liar::new(OptIn::check(mode, true, None).unwrap(), m.weak_quorum());
        liar.proof(&mut proof);
        Verifier::new(m).verify_receipt_in_batch(&proof, Threshold::WeakQuorum)
    }

    #[test]
    fn every_mode_turns_an_honest_proof_into_one_the_verifier_refuses() {
        let verifier = Verifier::new(membership());
        for (receipts, index, signers) in [(1, 0, 2), (3, 2, 4), (4, 1, 3)] {
            let proof = honest(receipts, index, signers);
            verifier
                .verify_receipt_in_batch(&proof, Threshold::WeakQuorum)
                .expect("the honest proof verifies");
            let case = format!("{receipts} receipts, index {index}, {signers} signers");
            let e = lie(Mode::ForgedResult, proof.clone()).unwrap_err();
            assert!(
                matches!(
                    e,
                    VerifyError::ReceiptPath(MerkleError::RootMismatch { .. })
                ),
                "{case}: {e:?}"
            );
            let e = lie(Mode::WrongPath, proof.clone()).unwrap_err();
            assert!(matches!(e, VerifyError::ReceiptPath(_)), "{case}: {e:?}");
            let e = lie(Mode::FewSignatures, proof.clone()).unwrap_err();
            assert_eq!(e, VerifyError::TooFewSigners { have: 1, need: 2 }, "{case}");
            let e = lie(Mode::DuplicateSigners, proof.clone()).unwrap_err();
            assert_eq!(
                e,
                VerifyError::DuplicateSigner {
                    replica: ReplicaId(0)
                },
                "{case}"
            );
            let e = lie(Mode::WrongCluster, proof).unwrap_err();
            assert!(
                matches!(e, VerifyError::ClusterMismatch { expected, found }
                    if expected == membership().cluster_id() && found != expected),
                "{case}: {e:?}"
            );
        }
    }

    #[test]
    fn a_forged_result_still_decodes_so_only_the_proof_gives_it_away() {
        let mut proof = honest(2, 1, 2);
        let liar = Liar::new(OptIn::check(Mode::ForgedResult, true, None).unwrap(), 2);
        liar.proof(&mut proof);
        let outcome = qlock::decode_outcome(&proof.receipt.result.0).unwrap();
        assert!(
            matches!(outcome, Ok(OpResult::Granted { .. })),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_reply_is_falsified_in_every_proof() {
        let reply = Reply {
            request: Digest([1; 32]),
            seq: SeqNum(5),
            proofs: vec![honest(3, 0, 4), honest(3, 1, 4)],
        };
        let liar = Liar::new(OptIn::check(Mode::FewSignatures, true, None).unwrap(), 2);
        let lied = liar.reply(reply);
        assert!(lied
            .proofs
            .iter()
            .all(|p| p.certificate.signatures.len() == 1));
        assert_eq!(lied.request, Digest([1; 32]), "the rest is left alone");
    }

    #[test]
    fn a_pushed_event_is_falsified_too_and_no_liar_changes_nothing() {
        let proof = honest(3, 2, 4);
        let event = Event::WaitOutcome(Box::new(proof.clone()));
        assert_eq!(outgoing_event(None, event.clone()), event);
        let liar = Liar::new(OptIn::check(Mode::WrongCluster, true, None).unwrap(), 2);
        let Event::WaitOutcome(lied) = outgoing_event(Some(&liar), event);
        let e = Verifier::new(membership())
            .verify_receipt_in_batch(&lied, Threshold::WeakQuorum)
            .unwrap_err();
        assert!(matches!(e, VerifyError::ClusterMismatch { .. }), "{e:?}");
        assert_eq!(lied.receipt, proof.receipt);
    }

    #[test]
    fn lying_needs_the_flag_or_the_variable_set_to_exactly_one() {
        let mode = Mode::WrongCluster;
        assert!(OptIn::check(mode, true, None).is_ok());
        assert!(OptIn::check(mode, false, Some(OsStr::new("1"))).is_ok());
        assert_eq!(
            OptIn::check(mode, false, None).unwrap_err(),
            ByzantineError::NotAllowed { mode, found: None }
        );
        for value in ["0", "", "true", "yes", " 1"] {
            let e = OptIn::check(mode, false, Some(OsStr::new(value))).unwrap_err();
            assert_eq!(
                e,
                ByzantineError::NotAllowed {
                    mode,
                    found: Some(value.to_string())
                }
            );
            assert!(e.to_string().contains(ALLOW_FLAG), "{e}");
        }
    }

    #[test]
    fn modes_parse_from_their_names_and_nothing_else() {
        for mode in Mode::ALL {
            assert_eq!(mode.name().parse::<Mode>(), Ok(mode));
        }
        assert_eq!(
            "honest".parse::<Mode>(),
            Err(ByzantineError::UnknownMode("honest".into()))
        );
        assert!("Forged-Result".parse::<Mode>().is_err());
    }
}
