//! The wire encoding of consensus messages: every message decodes to
//! itself, within `Config::message_bytes_max`, and its signature survives
//! the round trip; a flipped byte never yields a message that verifies as
//! the original signer's.

mod common;

use common::{config, keys};
use consensus::{Batch, Message, PrePrepare, Vote, WireMessage};
use primitives::{codec, Digest, HlcTimestamp, ReplicaId, SeqNum, ViewNumber};
use proptest::prelude::*;

fn message() -> impl Strategy<Value = Message> {
    let digest = any::<[u8; 32]>().prop_map(Digest);
    let pp = (
        0u64..5,
        1u64..1000,
        prop::collection::vec(digest.clone(), 0..4),
        any::<u64>(),
    )
        .prop_map(|(view, seq, digests, wall)| {
            Message::PrePrepare(PrePrepare {
                view: ViewNumber(view),
                seq: SeqNum(seq),
                batch: Batch {
                    digests,
                    batch_time: HlcTimestamp::from_micros(wall),
                },
            })
        });
    let vote = (0u64..5, 1u64..1000, digest, any::<bool>()).prop_map(|(view, seq, batch, c)| {
        let v = Vote {
            view: ViewNumber(view),
            seq: SeqNum(seq),
            batch,
            replica: ReplicaId(1),
        };
        if c {
            Message::Commit(v)
        } else {
            Message::Prepare(v)
        }
    });
    prop_oneof![pp, vote]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn messages_round_trip_and_stay_signed(m in message(), flip in any::<prop::sample::Index>()) {
        let keys = keys(4);
        let cfg = config(&keys, 0);
        let signer = m.sender(&cfg.membership);
        let signed = m.sign(cfg.cluster, &keys[signer.index()]);
        let wire = WireMessage::Signed(signed.clone());
        let bytes = codec::encode(&wire);
        prop_assert!(bytes.len() <= cfg.message_bytes_max());
        let back = WireMessage::decode(&bytes, cfg.message_bytes_max()).unwrap();
        prop_assert_eq!(&back, &wire);
        let key = cfg.membership.key(signer).unwrap();
        prop_assert!(signed.verify(cfg.cluster, key));
        let mut tampered = bytes.clone();
        let i = flip.index(tampered.len());
        tampered[i] ^= 0x01;
        if let Ok(WireMessage::Signed(t)) = WireMessage::decode(&tampered, cfg.message_bytes_max()) {
            let t_signer = t.message.sender(&cfg.membership);
            if let Some(k) = cfg.membership.key(t_signer) {
                prop_assert!(t == signed || !t.verify(cfg.cluster, k));
            }
        }
    }
}
