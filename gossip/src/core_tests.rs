//! Tests of one core at its boundary: inputs in, outputs asserted. They
//! cite the part of Plumtree (Leitão et al., SRDS 2007) they check.

use crate::sim::TagValidator;
use crate::*;
use primitives::{Bytes, Digest, ReplicaId};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const ME: ReplicaId = ReplicaId(0);

fn core_with(n: usize, config: Config) -> Plumtree<TagValidator> {
    Plumtree::new(ME, n, config, TagValidator, ChaCha8Rng::seed_from_u64(1))
}

fn core(n: usize) -> Plumtree<TagValidator> {
    core_with(n, Config::default())
}

fn payload(k: u8) -> Bytes {
    TagValidator::seal(vec![k; 24])
}

fn id_of(p: &Bytes) -> Digest {
    TagValidator.message_id(&p.0)
}

fn gossip(from: u16, hop: Hop, payload: Bytes) -> InEvent {
    InEvent::Message {
        from: ReplicaId(from),
        message: Message::Gossip { hop, payload },
    }
}

fn msg(from: u16, message: Message) -> InEvent {
    InEvent::Message {
        from: ReplicaId(from),
        message,
    }
}

fn sends(out: &[OutEvent]) -> Vec<(u16, Message)> {
    out.iter()
        .filter_map(|e| match e {
            OutEvent::Send { to, message } => Some((to.0, message.clone())),
            _ => None,
        })
        .collect()
}

fn delivered(out: &[OutEvent]) -> Vec<Delivery> {
    out.iter()
        .filter_map(|e| match e {
            OutEvent::Deliver(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

fn timers(out: &[OutEvent]) -> Vec<(u64, Timer)> {
    out.iter()
        .filter_map(|e| match e {
            OutEvent::SetTimer { at_micros, timer } => Some((*at_micros, timer.clone())),
            _ => None,
        })
        .collect()
}

/// §3.6: a broadcast is pushed eagerly to every eager peer (all peers at
/// first) and not delivered back to the broadcaster.
#[test]
fn broadcast_pushes_to_all_eager_peers() {
    let mut core = core(4);
    let out = core.handle(0, InEvent::Broadcast(payload(1))).unwrap();
    let to: Vec<u16> = sends(&out).iter().map(|(to, _)| *to).collect();
    assert_eq!(to, vec![1, 2, 3]);
    assert!(sends(&out)
        .iter()
        .all(|(_, m)| matches!(m, Message::Gossip { hop: 1, .. })));
    assert!(delivered(&out).is_empty());
    assert_eq!(
        timers(&out),
        vec![(Config::default().tick_micros, Timer::Tick)]
    );
    assert_eq!(
        core.handle(1, InEvent::Broadcast(payload(1))),
        Err(GossipError::AlreadyKnown(id_of(&payload(1))))
    );
}

/// §3.6: first receipt delivers and forwards (not to the sender); a
/// duplicate makes the sender lazy and is answered with PRUNE.
#[test]
fn first_receipt_delivers_and_forwards_duplicate_prunes() {
    let mut core = core(4);
    let out = core.handle(10, gossip(1, 1, payload(1))).unwrap();
    let d = delivered(&out);
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].hop, d[0].from, d[0].via),
        (1, Some(ReplicaId(1)), Via::Gossip)
    );
    let to: Vec<u16> = sends(&out).iter().map(|(to, _)| *to).collect();
    assert_eq!(to, vec![2, 3]);
    assert!(matches!(sends(&out)[0].1, Message::Gossip { hop: 2, .. }));

    let out = core.handle(11, gossip(2, 1, payload(1))).unwrap();
    assert!(delivered(&out).is_empty());
    assert_eq!(sends(&out), vec![(2, Message::Prune)]);
    assert!(core.lazy_peers().contains(&ReplicaId(2)));

    // The next message goes to 2 as an IHAVE at the next tick only.
    let out = core.handle(12, gossip(1, 1, payload(2))).unwrap();
    let to: Vec<u16> = sends(&out).iter().map(|(to, _)| *to).collect();
    assert_eq!(to, vec![3]);
    let out = core
        .handle(20_000, InEvent::TimerFired(Timer::Tick))
        .unwrap();
    let ihaves = sends(&out);
    assert_eq!(ihaves.len(), 1);
    assert_eq!(
        ihaves[0],
        (
            2,
            Message::IHave {
                ids: vec![(id_of(&payload(2)), 1)]
            }
        )
    );
}

/// A PRUNE from a peer stops eager pushes to it.
#[test]
fn prune_makes_the_link_lazy() {
    let mut core = core(4);
    core.handle(0, msg(3, Message::Prune)).unwrap();
    let out = core.handle(1, InEvent::Broadcast(payload(1))).unwrap();
    let to: Vec<u16> = sends(&out).iter().map(|(to, _)| *to).collect();
    assert_eq!(to, vec![1, 2]);
}

/// Forged payloads are refused by the hook, never delivered or forwarded,
/// and their copies are dropped without asking the hook again.
#[test]
fn forged_payload_is_never_forwarded() {
    let mut core = core(4);
    let mut forged = payload(1);
    forged.0[0] ^= 1;
    let result = core.handle(0, gossip(1, 1, forged.clone()));
    assert!(matches!(
        result,
        Err(GossipError::InvalidPayload {
            peer: ReplicaId(1),
            ..
        })
    ));
    let out = core.handle(1, gossip(2, 1, forged)).unwrap();
    assert!(sends(&out).is_empty() && delivered(&out).is_empty());
    assert_eq!(core.stats().invalid, 1);
}

/// A validator whose id leaves out part of the payload, as a request
/// digest leaves out the signature: the id is the hash of the body, the
/// tag after it is what is checked.
struct BodyIdValidator;

impl Validator for BodyIdValidator {
    fn message_id(&self, payload: &[u8]) -> Digest {
        let body = &payload[..payload.len().saturating_sub(8)];
        Digest::of(primitives::Domain::Test, body)
    }

    fn validate(&mut self, id: &Digest, payload: &[u8]) -> Result<(), Invalid> {
        TagValidator.validate(id, payload)
    }
}

/// A Byzantine peer's forged copy (valid id, bad signature) arriving first
/// must not censor the genuine payload under that id: the refusal is
/// remembered by the whole payload, and the genuine copy is delivered.
#[test]
fn forged_copy_under_a_valid_id_does_not_block_the_genuine_one() {
    let mut core = Plumtree::new(
        ME,
        4,
        Config::default(),
        BodyIdValidator,
        ChaCha8Rng::seed_from_u64(1),
    );
    let genuine = payload(3);
    let mut forged = genuine.clone();
    let last = forged.0.len() - 1;
    forged.0[last] ^= 1;
    assert_eq!(
        BodyIdValidator.message_id(&forged.0),
        BodyIdValidator.message_id(&genuine.0)
    );
    assert!(core.handle(0, gossip(1, 1, forged.clone())).is_err());
    // The same forged bytes again are dropped without a second check.
    let out = core.handle(1, gossip(1, 1, forged)).unwrap();
    assert!(sends(&out).is_empty() && delivered(&out).is_empty());
    assert_eq!(core.stats().invalid, 1);
    let out = core.handle(2, gossip(2, 1, genuine.clone())).unwrap();
    let got = delivered(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, genuine);
}

/// Bad input from peers is a typed error, not a panic.
#[test]
fn malformed_and_unknown_senders_are_refused() {
    let config = Config {
        ihave_batch_max: 2,
        ..Config::default()
    };
    let mut core = core_with(4, config);
    let ids = vec![(Digest::ZERO, 1); 3];
    assert!(matches!(
        core.handle(0, msg(1, Message::IHave { ids })),
        Err(GossipError::Malformed { .. })
    ));
    assert_eq!(
        core.handle(0, msg(9, Message::Prune)),
        Err(GossipError::UnknownPeer(ReplicaId(9)))
    );
    assert_eq!(
        core.handle(0, msg(0, Message::Prune)),
        Err(GossipError::UnknownPeer(ReplicaId(0)))
    );
}

/// Algorithm 2: an IHAVE for an unknown id starts a timer; when it fires,
/// GRAFT the announcer (making it eager); the retry timer tries the next
/// announcer; a GRAFT is answered from the cache.
#[test]
fn ihave_timer_grafts_announcers_in_turn() {
    let config = Config::default();
    let mut core = core(4);
    let p = payload(7);
    let id = id_of(&p);
    let out = core
        .handle(0, msg(1, Message::IHave { ids: vec![(id, 3)] }))
        .unwrap();
    assert!(timers(&out).contains(&(config.graft_timeout_micros, Timer::Graft(id))));
    core.handle(5, msg(2, Message::IHave { ids: vec![(id, 2)] }))
        .unwrap();

    let t1 = config.graft_timeout_micros;
    let out = core
        .handle(t1, InEvent::TimerFired(Timer::Graft(id)))
        .unwrap();
    assert_eq!(sends(&out), vec![(1, Message::Graft { id })]);
    assert!(timers(&out).contains(&(t1 + config.graft_retry_micros, Timer::Graft(id))));

    let t2 = t1 + config.graft_retry_micros;
    let out = core
        .handle(t2, InEvent::TimerFired(Timer::Graft(id)))
        .unwrap();
    assert_eq!(sends(&out), vec![(2, Message::Graft { id })]);

    // The payload arrives from 2: delivered once; the stale timer is a no-op.
    let out = core.handle(t2 + 1, gossip(2, 3, p.clone())).unwrap();
    assert_eq!(delivered(&out).len(), 1);
    assert_eq!(core.missing_len(), 0);
    let out = core
        .handle(t2 + 99, InEvent::TimerFired(Timer::Graft(id)))
        .unwrap();
    assert!(sends(&out).is_empty());

    // We answer a GRAFT for it.
    let out = core
        .handle(t2 + 100, msg(3, Message::Graft { id }))
        .unwrap();
    assert_eq!(
        sends(&out),
        vec![(3, Message::Gossip { hop: 4, payload: p })]
    );
}

/// Fake IHAVEs: the missing table stays within the per-peer quota, each
/// fake id costs at most `grafts_per_announcer_max` GRAFTs, then it is
/// forgotten.
#[test]
fn fake_ihaves_are_bounded() {
    let config = Config {
        missing_per_peer_max: 10,
        ihave_batch_max: 64,
        ..Config::default()
    };
    let mut core = core_with(4, config.clone());
    let ids: Vec<_> = (0..64u8).map(|i| (Digest([i; 32]), 1)).collect();
    let out = core.handle(0, msg(1, Message::IHave { ids })).unwrap();
    assert_eq!(core.missing_len(), 10);
    assert_eq!(timers(&out).len(), 1 + 10);
    assert_eq!(core.stats().missing_dropped, 54);
    let mut grafts = 0;
    let mut now = 0;
    for _ in 0..5 {
        now += config.graft_timeout_micros;
        for i in 0..10u8 {
            let out = core
                .handle(now, InEvent::TimerFired(Timer::Graft(Digest([i; 32]))))
                .unwrap();
            grafts += sends(&out).len();
        }
    }
    assert_eq!(grafts, 10 * config.grafts_per_announcer_max as usize);
    assert_eq!(core.missing_len(), 0);
    // The quota is free again.
    let ids = vec![(Digest([200; 32]), 1)];
    core.handle(now, msg(1, Message::IHave { ids })).unwrap();
    assert_eq!(core.missing_len(), 1);
}

/// Drives replica 0 until it grafted peer 1 (so 1 is protected), then
/// sends it a duplicate from 1; returns the resulting sends.
fn duplicate_after_graft(protection: u64) -> Vec<(u16, Message)> {
    let config = Config {
        graft_protection_micros: protection,
        ..Config::default()
    };
    let mut core = core_with(4, config.clone());
    let (a, b) = (payload(1), payload(2));
    core.handle(0, gossip(2, 1, a.clone())).unwrap();
    core.handle(1, gossip(1, 1, a)).unwrap(); // duplicate: 1 pruned
    assert!(core.lazy_peers().contains(&ReplicaId(1)));
    let ids = vec![(id_of(&b), 1)];
    core.handle(2, msg(1, Message::IHave { ids })).unwrap();
    let t = 2 + config.graft_timeout_micros;
    core.handle(t, InEvent::TimerFired(Timer::Graft(id_of(&b))))
        .unwrap();
    assert!(core.eager_peers().contains(&ReplicaId(1)));
    core.handle(t + 1, gossip(1, 1, b.clone())).unwrap();
    let out = core.handle(t + 2, gossip(2, 1, b.clone())).unwrap();
    assert_eq!(
        sends(&out),
        vec![(2, Message::Prune)],
        "the racer is pruned"
    );
    // A fast duplicate now arrives over the repaired link: a Byzantine
    // racer (2) got a new message c first, correct 1 delivers it later.
    let c = payload(3);
    core.handle(t + 3, gossip(2, 1, c.clone())).unwrap();
    sends(&core.handle(t + 4, gossip(1, 1, c)).unwrap())
}

/// The PRUNE-provocation mitigation: a peer we had to GRAFT keeps its
/// eager link for `graft_protection_micros`, whoever races it.
#[test]
fn grafted_peer_is_protected_from_prune() {
    assert!(duplicate_after_graft(10_000_000).is_empty());
    assert_eq!(duplicate_after_graft(0), vec![(1, Message::Prune)]);
}

/// The PRUNE-provocation mitigation, second half: a peer whose fast copy
/// displaced a tree link just before the tree failed us (we had to GRAFT)
/// is made lazy and suspect; its fast copies then prune nobody and do not
/// make it eager again.
#[test]
fn racer_is_demoted_when_the_tree_fails() {
    let config = Config::default();
    let mut core = core(4);
    let (a, b, c) = (payload(1), payload(2), payload(3));
    core.handle(0, gossip(2, 1, a.clone())).unwrap(); // 2 races
    let out = core.handle(1, gossip(1, 1, a)).unwrap();
    assert_eq!(sends(&out), vec![(1, Message::Prune)]);
    // 2 withholds b; 1 announces it; the timer GRAFTs 1 and demotes 2.
    let ids = vec![(id_of(&b), 1)];
    core.handle(2, msg(1, Message::IHave { ids })).unwrap();
    let t = 2 + config.graft_timeout_micros;
    let out = core
        .handle(t, InEvent::TimerFired(Timer::Graft(id_of(&b))))
        .unwrap();
    let s = sends(&out);
    assert!(s.contains(&(1, Message::Graft { id: id_of(&b) })));
    assert!(s.contains(&(2, Message::Prune)));
    assert!(core.lazy_peers().contains(&ReplicaId(2)));
    // 2 races again: delivered, but 2 stays lazy and 3's copy is kept.
    core.handle(t + 1, gossip(2, 1, c.clone())).unwrap();
    assert!(core.lazy_peers().contains(&ReplicaId(2)));
    let out = core.handle(t + 2, gossip(3, 1, c)).unwrap();
    assert!(sends(&out).is_empty());
    assert!(core.eager_peers().contains(&ReplicaId(3)));
}

/// Fetch-by-digest: hints first, then the next peer on timeout; the answer
/// is delivered once; unsolicited answers are ignored; a fetched payload's
/// later tree copy is forwarded but not delivered again.
#[test]
fn fetch_by_digest() {
    let config = Config::default();
    let mut core = core(4);
    let p = payload(5);
    let id = id_of(&p);
    let fetch = InEvent::Fetch {
        id,
        hints: vec![ReplicaId(3)],
    };
    let out = core.handle(0, fetch).unwrap();
    assert_eq!(sends(&out), vec![(3, Message::FetchRequest { id })]);
    let t = config.fetch_timeout_micros;
    let out = core
        .handle(t, InEvent::TimerFired(Timer::Fetch(id)))
        .unwrap();
    let asked = sends(&out);
    assert_eq!(asked.len(), 1);
    assert_ne!(asked[0].0, 3);

    let unsolicited = Message::FetchReply {
        payload: payload(6),
    };
    let out = core.handle(t + 1, msg(1, unsolicited)).unwrap();
    assert!(out.is_empty());

    let out = core
        .handle(
            t + 2,
            msg(asked[0].0, Message::FetchReply { payload: p.clone() }),
        )
        .unwrap();
    let d = delivered(&out);
    assert_eq!((d.len(), d[0].via), (1, Via::Fetch));

    let out = core.handle(t + 3, gossip(1, 2, p.clone())).unwrap();
    assert!(delivered(&out).is_empty());
    assert_eq!(sends(&out).len(), 2, "forwarded down the tree");

    // Serving: from the cache, locally and to peers.
    let out = core
        .handle(t + 4, InEvent::Fetch { id, hints: vec![] })
        .unwrap();
    assert_eq!(delivered(&out)[0].via, Via::Fetch);
    let out = core
        .handle(t + 5, msg(2, Message::FetchRequest { id }))
        .unwrap();
    assert_eq!(sends(&out), vec![(2, Message::FetchReply { payload: p })]);
}

/// A fetch nobody answers fails after `fetch_attempts_max` tries; fetches
/// in flight are bounded.
#[test]
fn fetch_fails_and_is_bounded() {
    let config = Config {
        fetch_attempts_max: 3,
        fetches_pending_max: 1,
        ..Config::default()
    };
    let mut core = core_with(4, config.clone());
    let id = Digest([1; 32]);
    core.handle(0, InEvent::Fetch { id, hints: vec![] })
        .unwrap();
    let other = InEvent::Fetch {
        id: Digest([2; 32]),
        hints: vec![],
    };
    assert_eq!(core.handle(0, other), Err(GossipError::FetchOverload));
    let mut failed = 0;
    for k in 1..=3 {
        let out = core
            .handle(
                k * config.fetch_timeout_micros,
                InEvent::TimerFired(Timer::Fetch(id)),
            )
            .unwrap();
        failed += out
            .iter()
            .filter(|e| matches!(e, OutEvent::FetchFailed { .. }))
            .count();
    }
    assert_eq!(failed, 1);
    assert_eq!(core.stats().fetch_requests_sent, 3);
}

/// A peer flooding valid payloads cannot grow the cache past its bounds.
#[test]
fn cache_is_bounded_under_flood() {
    let config = Config {
        cache_max: 16,
        seen_max: 32,
        ..Config::default()
    };
    let mut core = core_with(4, config);
    for k in 0..200u16 {
        let p = TagValidator::seal(k.to_le_bytes().to_vec());
        core.handle(u64::from(k), gossip(1, 1, p)).unwrap();
    }
    assert_eq!(core.cache_len(), 32);
}

fn any_input() -> impl Strategy<Value = (u16, Message)> {
    let id = (0u8..8).prop_map(|i| Digest([i; 32]));
    let from = 0u16..6;
    let message = prop_oneof![
        (0u8..8, any::<bool>()).prop_map(|(k, forge)| {
            let mut p = payload(k);
            if forge {
                p.0[0] ^= 1;
            }
            Message::Gossip { hop: 1, payload: p }
        }),
        prop::collection::vec((id.clone(), 0u16..5), 0..6).prop_map(|ids| Message::IHave { ids }),
        id.clone().prop_map(|id| Message::Graft { id }),
        Just(Message::Prune),
        id.prop_map(|id| Message::FetchRequest { id }),
        (0u8..8).prop_map(|k| Message::FetchReply {
            payload: payload(k)
        }),
    ];
    (from, message)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever peers send, in any order, with timers firing in between:
    /// no panic, every bound holds, and no id is delivered twice by gossip.
    #[test]
    fn arbitrary_peer_input_keeps_bounds(inputs in prop::collection::vec(any_input(), 1..120)) {
        let config = Config {
            missing_max: 4,
            missing_per_peer_max: 2,
            cache_max: 4,
            seen_max: 16,
            ..Config::default()
        };
        let mut core = core_with(5, config);
        let mut delivered_ids = std::collections::BTreeSet::new();
        let mut pending_timers = Vec::new();
        for (now, (from, message)) in inputs.into_iter().enumerate() {
            let now = now as u64 * 30_000;
            let mut outs = core.handle(now, InEvent::Message { from: ReplicaId(from), message }).unwrap_or_default();
            for timer in std::mem::take(&mut pending_timers) {
                outs.extend(core.handle(now, InEvent::TimerFired(timer)).unwrap());
            }
            for out in outs {
                match out {
                    OutEvent::Deliver(d) if d.via == Via::Gossip => {
                        prop_assert!(delivered_ids.insert(d.id), "delivered twice");
                    }
                    OutEvent::SetTimer { timer, .. } => pending_timers.push(timer),
                    _ => {}
                }
            }
            prop_assert!(core.missing_len() <= 4);
            prop_assert!(core.cache_len() <= 16);
        }
    }
}

/// A driver that loses timers (its own bound) does not strand waits: an
/// overdue wait is advanced by the tick, so the missing table drains.
#[test]
fn lost_timers_are_recovered_by_the_tick() {
    let config = Config::default();
    let mut core = core(4);
    let ids = vec![(Digest([9; 32]), 1)];
    core.handle(0, msg(1, Message::IHave { ids })).unwrap();
    assert_eq!(core.missing_len(), 1);
    let mut now = 0;
    let mut grafts = 0;
    for _ in 0..200 {
        now += config.tick_micros;
        let out = core.handle(now, InEvent::TimerFired(Timer::Tick)).unwrap();
        grafts += sends(&out)
            .iter()
            .filter(|(_, m)| matches!(m, Message::Graft { .. }))
            .count();
    }
    assert_eq!(grafts, config.grafts_per_announcer_max as usize);
    assert_eq!(core.missing_len(), 0);
}

/// A peer asking for the same payload again and again gets at most
/// `answers_per_tick_max` copies per tick.
#[test]
fn repeated_grafts_are_answered_within_a_budget() {
    let config = Config {
        answers_per_tick_max: 3,
        ..Config::default()
    };
    let mut core = core_with(4, config);
    let p = payload(1);
    let id = id_of(&p);
    core.handle(0, InEvent::Broadcast(p)).unwrap();
    let mut answered = 0;
    for k in 0..10 {
        let out = core.handle(k, msg(1, Message::Graft { id })).unwrap();
        answered += sends(&out).len();
        let out = core
            .handle(k, msg(1, Message::FetchRequest { id }))
            .unwrap();
        answered += sends(&out).len();
    }
    assert_eq!(answered, 3);
    core.handle(20_000, InEvent::TimerFired(Timer::Tick))
        .unwrap();
    let out = core.handle(20_001, msg(1, Message::Graft { id })).unwrap();
    assert_eq!(sends(&out).len(), 1, "a new tick, a new budget");
}

/// Records what `prepare` is handed; validates like [`TagValidator`].
#[derive(Default)]
struct PrepareRecorder {
    prepared: Vec<Vec<Digest>>,
}

impl Validator for PrepareRecorder {
    fn validate(&mut self, id: &Digest, payload: &[u8]) -> Result<(), Invalid> {
        TagValidator.validate(id, payload)
    }

    fn prepare(&mut self, payloads: &[(Digest, &[u8])]) {
        self.prepared
            .push(payloads.iter().map(|(id, _)| *id).collect());
    }
}

/// The batch hint names each new payload once and leaves out what the
/// core already holds or refused, so a batch verification is never spent
/// on a duplicate (the common case under eager push, §3.2).
#[test]
fn prepare_hints_only_new_distinct_payloads() {
    let mut core = Plumtree::new(
        ME,
        4,
        Config::default(),
        PrepareRecorder::default(),
        ChaCha8Rng::seed_from_u64(1),
    );
    let held = payload(1);
    let mut bad = payload(2);
    bad.0[0] ^= 1;
    core.handle(0, gossip(1, 1, held.clone())).unwrap();
    assert!(core.handle(0, gossip(1, 1, bad.clone())).is_err());
    let fresh = payload(3);
    let batch = [
        Message::Gossip {
            hop: 1,
            payload: held,
        },
        Message::Gossip {
            hop: 1,
            payload: bad,
        },
        Message::Gossip {
            hop: 1,
            payload: fresh.clone(),
        },
        Message::FetchReply {
            payload: fresh.clone(),
        },
        Message::Prune,
        Message::FetchReply {
            payload: payload(4),
        },
    ];
    core.prepare(&batch);
    let expected = vec![vec![id_of(&fresh), id_of(&payload(4))]];
    assert_eq!(core.validator_mut().prepared, expected);
    // Nothing new: no call at all.
    core.handle(0, gossip(2, 1, fresh)).unwrap();
    core.handle(0, gossip(2, 1, payload(4))).unwrap();
    core.prepare(&batch);
    assert_eq!(core.validator_mut().prepared.len(), 1);
}
