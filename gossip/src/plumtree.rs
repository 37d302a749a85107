//! The Plumtree state machine (Leitão, Pereira, Rodrigues, SRDS 2007,
//! Algorithm 1 and 2), hardened for Byzantine peers.
//!
//! Beyond the paper:
//! - a validation hook ([`Validator`]) runs before anything is cached,
//!   delivered or forwarded, and ids are computed by the receiver;
//! - GRAFTs cycle through a missing id's announcers, at most
//!   `grafts_per_announcer_max` each; announcers whose ids keep expiring
//!   unanswered ("strikes") start no new waits; each first announcer has a
//!   quota in the missing table;
//! - anti-entropy: every few ticks a summary of recent ids goes to one
//!   active peer and one random member, so losses every other path missed,
//!   and an eclipsed replica, are still repaired;
//! - the PRUNE-provocation mitigation (see
//!   [`Config::graft_protection_micros`] and [`Config::eager_min`]);
//! - fetch-by-digest ([`InEvent::Fetch`]) for consensus's payload
//!   availability rule;
//! - GRAFT and fetch answers are budgeted per peer and tick.

use crate::cache::{Cache, Entry};
use crate::config::Config;
use crate::message::{Hop, Message, MessageError};
use crate::overlay;
use primitives::{Bytes, Digest, Domain, ReplicaId};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The application's judgement of payloads, supplied by the caller.
///
/// A payload is forwarded, cached and delivered only after
/// [`Validator::validate`] accepted it, so forged payloads never travel
/// past the first correct replica. The node can verify signatures in
/// batches before calling [`Plumtree::handle`] and let `validate` look the
/// verdict up.
pub trait Validator {
    /// The id of a payload. The default is
    /// `Digest::of(Domain::GossipMessage, payload)`; a caller gossiping
    /// signed requests may return the request digest instead. It must be
    /// collision resistant among valid payloads: the id is what duplicates
    /// are judged by. It need not cover every byte (a request digest leaves
    /// out the signature): refusals are remembered by the hash of the whole
    /// payload, so a forged copy under a valid payload's id never blocks it.
    fn message_id(&self, payload: &[u8]) -> Digest {
        Digest::of(Domain::GossipMessage, payload)
    }

    /// Accepts or refuses a payload received from a peer.
    fn validate(&mut self, id: &Digest, payload: &[u8]) -> Result<(), Invalid>;

    /// A hint that `payloads` (with their ids, distinct, none held by the
    /// core) are about to be validated, so the hook may check them
    /// together, e.g. with one batch signature verification. It must not
    /// change any verdict of [`Self::validate`]. The default ignores it.
    fn prepare(&mut self, payloads: &[(Digest, &[u8])]) {
        let _ = payloads;
    }
}

/// A validation hook's refusal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid payload: {0}")]
pub struct Invalid(pub String);

/// Timers the core asks the driver to fire with [`InEvent::TimerFired`].
/// Timers are never cancelled: a stale one is ignored when it fires.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// The periodic housekeeping tick.
    Tick,
    /// An announced id has not arrived: GRAFT (next) announcer.
    Graft(Digest),
    /// A fetch answer has not arrived: ask the next peer.
    Fetch(Digest),
}

/// Inputs to [`Plumtree::handle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InEvent {
    /// Disseminate a payload that this replica has already validated.
    Broadcast(Bytes),
    /// A message from a peer.
    Message {
        /// The sender, authenticated by the transport.
        from: ReplicaId,
        /// What it sent.
        message: Message,
    },
    /// A timer set by [`OutEvent::SetTimer`] is due.
    TimerFired(Timer),
    /// The transport connected to a peer.
    PeerUp(ReplicaId),
    /// The transport lost a peer.
    PeerDown(ReplicaId),
    /// Fetch-by-digest: get the payload with this id (consensus needs it
    /// for a PRE-PREPARE). Ends in one [`OutEvent::Deliver`] or one
    /// [`OutEvent::FetchFailed`].
    Fetch {
        /// The id wanted.
        id: Digest,
        /// Peers likely to hold it (e.g. the primary), asked first.
        hints: Vec<ReplicaId>,
    },
}

/// How a delivered payload arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Through the broadcast tree (eager push or GRAFT).
    Gossip,
    /// As the answer to an [`InEvent::Fetch`].
    Fetch,
}

/// A payload handed to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Its id.
    pub id: Digest,
    /// The validated payload.
    pub payload: Bytes,
    /// Hops it travelled (0 when served from the local cache).
    pub hop: Hop,
    /// The peer it came from (`None` when served from the local cache).
    pub from: Option<ReplicaId>,
    /// How it arrived.
    pub via: Via,
}

/// Outputs of [`Plumtree::handle`], in the order they were produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutEvent {
    /// Send a message to a peer (best effort; loss is repaired).
    Send {
        /// The recipient.
        to: ReplicaId,
        /// The message.
        message: Message,
    },
    /// Hand a payload to the application: once per id arriving by gossip,
    /// and once per answered fetch.
    Deliver(Delivery),
    /// An [`InEvent::Fetch`] found no peer that answered in time.
    FetchFailed {
        /// The id that could not be fetched.
        id: Digest,
    },
    /// Call [`Plumtree::handle`] with [`InEvent::TimerFired`] at this time.
    SetTimer {
        /// When, in microseconds of the caller's clock.
        at_micros: u64,
        /// Which timer.
        timer: Timer,
    },
}

/// Why an input was refused. Nothing is sent and nothing delivered for a
/// refused input; the node may count it against the peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GossipError {
    /// A message from a replica that is not a member (or from ourselves).
    #[error("message from unknown peer {0:?}")]
    UnknownPeer(ReplicaId),
    /// A message outside the configured bounds.
    #[error("malformed message from {peer:?}: {error}")]
    Malformed {
        /// The sender.
        peer: ReplicaId,
        /// What is wrong.
        error: MessageError,
    },
    /// The validation hook refused a payload a peer sent.
    #[error("peer {peer:?} sent invalid payload {id:?}: {reason}")]
    InvalidPayload {
        /// The sender.
        peer: ReplicaId,
        /// The payload's id.
        id: Digest,
        /// The hook's reason.
        reason: Invalid,
    },
    /// A local broadcast over [`Config::payload_bytes_max`].
    #[error("payload of {len} bytes exceeds {max}")]
    PayloadTooLarge {
        /// Its size.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A local broadcast of a payload already known.
    #[error("payload {0:?} was already broadcast or received")]
    AlreadyKnown(Digest),
    /// [`Config::fetches_pending_max`] fetches are in flight.
    #[error("too many fetches in flight")]
    FetchOverload,
}

/// Counters for metrics and measurements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Payload messages sent (eager pushes and GRAFT answers).
    pub gossip_sent: u64,
    /// IHAVE messages sent.
    pub ihave_sent: u64,
    /// Ids announced in IHAVE messages.
    pub ihave_ids_sent: u64,
    /// GRAFTs sent.
    pub graft_sent: u64,
    /// PRUNEs sent.
    pub prune_sent: u64,
    /// PRUNEs withheld by the mitigations (graft protection, eager_min).
    pub prune_suppressed: u64,
    /// Fetch requests sent.
    pub fetch_requests_sent: u64,
    /// Fetch replies sent.
    pub fetch_replies_sent: u64,
    /// Payloads delivered to the application.
    pub delivered: u64,
    /// Duplicate payloads received.
    pub duplicates: u64,
    /// Payloads the validation hook refused.
    pub invalid: u64,
    /// Announcements dropped because a missing-table bound was reached.
    pub missing_dropped: u64,
    /// Missing ids given up after [`Config::graft_attempts_max`] GRAFTs.
    pub missing_expired: u64,
    /// Queued announcements dropped at [`Config::ihave_queue_max`].
    pub ihave_ids_dropped: u64,
    /// Fetches that failed.
    pub fetches_failed: u64,
    /// GRAFTs and fetch requests left unanswered at
    /// [`Config::answers_per_tick_max`].
    pub answers_refused: u64,
}

/// Our view of one active peer.
#[derive(Clone, Debug)]
struct Peer {
    up: bool,
    eager: bool,
    /// Not pruned before this time (the PRUNE-provocation mitigation).
    protected_until: u64,
    /// When its first copy last made us prune another peer.
    raced_at: Option<u64>,
    /// Until then, its first copies neither make it eager nor prune
    /// anyone (it raced, then the tree failed us).
    suspect_until: u64,
    /// Announcements waiting for the next tick.
    ihave_queue: VecDeque<(Digest, Hop)>,
}

/// An id announced by IHAVE and not yet received.
#[derive(Clone, Debug)]
struct Missing {
    announcers: VecDeque<(ReplicaId, Hop)>,
    /// The first announcer, charged against its quota.
    owner: ReplicaId,
    grafts: u32,
    /// When its timer is due (to recover if the driver lost the timer).
    due: u64,
}

/// A fetch-by-digest in flight.
#[derive(Clone, Debug)]
struct Fetching {
    candidates: Vec<ReplicaId>,
    attempts: u32,
    /// When its timer is due (to recover if the driver lost the timer).
    due: u64,
}

/// One replica's Plumtree core. Feed it [`InEvent`]s with the current time;
/// carry out the [`OutEvent`]s it returns.
pub struct Plumtree<V> {
    me: ReplicaId,
    n: usize,
    config: Config,
    validator: V,
    rng: ChaCha8Rng,
    peers: BTreeMap<ReplicaId, Peer>,
    cache: Cache,
    missing: BTreeMap<Digest, Missing>,
    /// Missing ids per first announcer (bounded by `missing_per_peer_max`).
    missing_owned: BTreeMap<ReplicaId, usize>,
    fetches: BTreeMap<Digest, Fetching>,
    /// Per announcer: its announced ids that expired unanswered, minus one
    /// per tick (bounded by `n` keys).
    strikes: BTreeMap<ReplicaId, u32>,
    /// Per peer: payloads sent this tick in answer to GRAFT or fetch
    /// (bounded by `n` keys, cleared every tick).
    answers: BTreeMap<ReplicaId, u32>,
    tick_scheduled: bool,
    ticks: u64,
    anti_entropy_cursor: usize,
    /// Hashes of whole payloads the hook refused, so their copies are
    /// dropped without asking it again; oldest forgotten first.
    refused: BTreeSet<Digest>,
    refused_order: VecDeque<Digest>,
    stats: Stats,
}

/// Refused payloads remembered (see `Plumtree::refused`). Forgetting one
/// only costs a second check of a copy.
pub const REFUSED_MAX: usize = 4096;

impl<V: Validator> Plumtree<V> {
    /// A core for replica `me` of a cluster of `n`. `rng` is the caller's
    /// seeded generator: the only source of randomness.
    pub fn new(me: ReplicaId, n: usize, config: Config, validator: V, rng: ChaCha8Rng) -> Self {
        assert!(me.index() < n, "replica {me:?} outside a cluster of {n}");
        if let Err(e) = config.check() {
            panic!("invalid gossip config: {e}");
        }
        let view = overlay::active_view(
            me,
            n,
            config.active_view_target,
            config.active_view_max,
            config.overlay_seed,
        );
        let peers = view
            .into_iter()
            .map(|p| {
                let peer = Peer {
                    up: true,
                    eager: true,
                    protected_until: 0,
                    raced_at: None,
                    suspect_until: 0,
                    ihave_queue: VecDeque::new(),
                };
                (p, peer)
            })
            .collect();
        let cache = Cache::new(
            config.cache_max,
            config.cache_age_max_micros,
            config.seen_max,
            config.seen_age_max_micros,
        );
        Plumtree {
            me,
            n,
            config,
            validator,
            rng,
            peers,
            cache,
            missing: BTreeMap::new(),
            missing_owned: BTreeMap::new(),
            fetches: BTreeMap::new(),
            strikes: BTreeMap::new(),
            answers: BTreeMap::new(),
            tick_scheduled: false,
            ticks: 0,
            anti_entropy_cursor: 0,
            refused: BTreeSet::new(),
            refused_order: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Hands the validation hook the new payloads among `messages` (ones
    /// the caller is about to [`Self::handle`]) in one
    /// [`Validator::prepare`] call: payloads the core holds or refused
    /// before, and second copies, are left out. Changes no state of the
    /// core; a caller that never calls it gets the same results.
    pub fn prepare<'a>(&mut self, messages: impl IntoIterator<Item = &'a Message>) {
        let mut ids = BTreeSet::new();
        let mut payloads = Vec::new();
        for message in messages {
            let (Message::Gossip { payload, .. } | Message::FetchReply { payload }) = message
            else {
                continue;
            };
            let id = self.validator.message_id(&payload.0);
            if self.cache.contains(&id) || !ids.insert(id) {
                continue;
            }
            if self
                .refused
                .contains(&Digest::of(Domain::GossipMessage, &payload.0))
            {
                continue;
            }
            payloads.push((id, &payload.0[..]));
        }
        if !payloads.is_empty() {
            self.validator.prepare(&payloads);
        }
    }

    /// Processes one input at time `now_micros` (non-decreasing).
    pub fn handle(&mut self, now: u64, event: InEvent) -> Result<Vec<OutEvent>, GossipError> {
        let mut out = Vec::new();
        // The first accepted input starts the periodic tick (a tick input is
        // its own chain already). A refused input returns no outputs, so it
        // cannot be the one that starts it.
        let start_tick = !self.tick_scheduled && event != InEvent::TimerFired(Timer::Tick);
        match event {
            InEvent::Broadcast(payload) => self.on_broadcast(now, payload, &mut out)?,
            InEvent::Message { from, message } => self.on_message(now, from, message, &mut out)?,
            InEvent::TimerFired(Timer::Tick) => self.on_tick(now, &mut out),
            InEvent::TimerFired(Timer::Graft(id)) => self.on_graft_timer(now, id, &mut out),
            InEvent::TimerFired(Timer::Fetch(id)) => self.on_fetch_timer(now, id, &mut out),
            InEvent::PeerUp(peer) => self.on_peer_up(peer),
            InEvent::PeerDown(peer) => self.on_peer_down(peer),
            InEvent::Fetch { id, hints } => self.on_fetch(now, id, hints, &mut out)?,
        }
        if start_tick {
            self.tick_scheduled = true;
            out.insert(
                0,
                OutEvent::SetTimer {
                    at_micros: now + self.config.tick_micros,
                    timer: Timer::Tick,
                },
            );
        }
        Ok(out)
    }

    /// This replica.
    pub fn me(&self) -> ReplicaId {
        self.me
    }

    /// Counters since construction.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The peers we push payloads to (the tree links).
    pub fn eager_peers(&self) -> BTreeSet<ReplicaId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.up && p.eager)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The peers we only announce ids to.
    pub fn lazy_peers(&self) -> BTreeSet<ReplicaId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.up && !p.eager)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Ids announced but not yet received.
    pub fn missing_len(&self) -> usize {
        self.missing.len()
    }

    /// Ids remembered by the cache.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// The validation hook.
    pub fn validator_mut(&mut self) -> &mut V {
        &mut self.validator
    }

    fn on_broadcast(
        &mut self,
        now: u64,
        payload: Bytes,
        out: &mut Vec<OutEvent>,
    ) -> Result<(), GossipError> {
        if payload.0.len() > self.config.payload_bytes_max {
            return Err(GossipError::PayloadTooLarge {
                len: payload.0.len(),
                max: self.config.payload_bytes_max,
            });
        }
        let id = self.validator.message_id(&payload.0);
        if self.cache.contains(&id) {
            return Err(GossipError::AlreadyKnown(id));
        }
        self.accept(now, id, payload.clone(), 0, false);
        self.push(id, &payload, 0, None, out);
        Ok(())
    }

    fn on_message(
        &mut self,
        now: u64,
        from: ReplicaId,
        message: Message,
        out: &mut Vec<OutEvent>,
    ) -> Result<(), GossipError> {
        if from.index() >= self.n || from == self.me {
            return Err(GossipError::UnknownPeer(from));
        }
        message
            .check(&self.config)
            .map_err(|error| GossipError::Malformed { peer: from, error })?;
        match message {
            Message::Gossip { hop, payload } => self.on_gossip(now, from, hop, payload, out),
            Message::IHave { ids } => {
                self.on_ihave(now, from, ids, out);
                Ok(())
            }
            Message::Graft { id } => {
                self.on_graft(from, id, out);
                Ok(())
            }
            Message::Prune => {
                if let Some(peer) = self.peers.get_mut(&from) {
                    peer.eager = false;
                }
                Ok(())
            }
            Message::FetchRequest { id } => {
                if !self.may_answer(from) {
                    return Ok(());
                }
                if let Some((payload, _)) = self.cache.payload(&id) {
                    self.stats.fetch_replies_sent += 1;
                    let message = Message::FetchReply {
                        payload: payload.clone(),
                    };
                    out.push(OutEvent::Send { to: from, message });
                }
                Ok(())
            }
            Message::FetchReply { payload } => self.on_fetch_reply(now, from, payload, out),
        }
    }

    /// Algorithm 1, "upon Receive(GOSSIP)".
    fn on_gossip(
        &mut self,
        now: u64,
        from: ReplicaId,
        hop: Hop,
        payload: Bytes,
        out: &mut Vec<OutEvent>,
    ) -> Result<(), GossipError> {
        let id = self.validator.message_id(&payload.0);
        if let Some(entry) = self.cache.get_mut(&id) {
            let first_from = entry.first_from;
            if entry.awaiting_tree {
                // Fetched earlier: deliver nothing, but feed the tree below us.
                entry.awaiting_tree = false;
                entry.first_from = Some(from);
                // Forward the copy that was validated: the one just received
                // may differ in bytes the id leaves out.
                let validated = entry.payload.clone();
                self.make_eager(from);
                if let Some(validated) = validated {
                    self.push(id, &validated, hop, Some(from), out);
                }
            } else {
                self.stats.duplicates += 1;
                self.maybe_prune(now, from, first_from, out);
            }
            return Ok(());
        }
        if !self.check_payload(from, id, &payload)? {
            return Ok(());
        }
        self.accept(now, id, payload.clone(), hop, false);
        if let Some(entry) = self.cache.get_mut(&id) {
            entry.first_from = Some(from);
        }
        if self.peers.get(&from).is_none_or(|p| p.suspect_until <= now) {
            self.make_eager(from);
        }
        self.fetches.remove(&id);
        self.deliver(id, payload.clone(), hop, Some(from), Via::Gossip, out);
        self.push(id, &payload, hop, Some(from), out);
        Ok(())
    }

    /// Runs the validation hook. A refusal is remembered by the hash of the
    /// whole payload, not by its id: the id may leave bytes out (a request
    /// digest leaves out the signature), and a Byzantine peer's forged copy
    /// must not make the genuine payload under the same id look refused.
    /// The wait for the id goes on.
    fn check_payload(
        &mut self,
        from: ReplicaId,
        id: Digest,
        payload: &Bytes,
    ) -> Result<bool, GossipError> {
        let fingerprint = Digest::of(Domain::GossipMessage, &payload.0);
        if self.refused.contains(&fingerprint) {
            return Ok(false);
        }
        if let Err(reason) = self.validator.validate(&id, &payload.0) {
            self.stats.invalid += 1;
            if self.refused_order.len() >= REFUSED_MAX {
                let oldest = self.refused_order.pop_front().expect("non-empty");
                self.refused.remove(&oldest);
            }
            self.refused.insert(fingerprint);
            self.refused_order.push_back(fingerprint);
            return Err(GossipError::InvalidPayload {
                peer: from,
                id,
                reason,
            });
        }
        Ok(true)
    }

    /// Caches a new valid payload and ends the wait for it.
    fn accept(&mut self, now: u64, id: Digest, payload: Bytes, hop: Hop, awaiting_tree: bool) {
        let entry = Entry {
            payload: Some(payload),
            hop,
            at_micros: now,
            awaiting_tree,
            first_from: None,
        };
        self.cache.insert(id, entry, now);
        self.forget_missing(&id);
    }

    fn forget_missing(&mut self, id: &Digest) {
        if let Some(missing) = self.missing.remove(id) {
            let owned = self.missing_owned.entry(missing.owner).or_default();
            assert!(*owned > 0, "missing quota out of step");
            *owned -= 1;
        }
    }

    fn deliver(
        &mut self,
        id: Digest,
        payload: Bytes,
        hop: Hop,
        from: Option<ReplicaId>,
        via: Via,
        out: &mut Vec<OutEvent>,
    ) {
        self.stats.delivered += 1;
        out.push(OutEvent::Deliver(Delivery {
            id,
            payload,
            hop,
            from,
            via,
        }));
    }

    /// Algorithm 1, "procedure EagerPush / LazyPush".
    fn push(
        &mut self,
        id: Digest,
        payload: &Bytes,
        hop: Hop,
        except: Option<ReplicaId>,
        out: &mut Vec<OutEvent>,
    ) {
        let queue_max = self.config.ihave_queue_max;
        for (to, peer) in &mut self.peers {
            if !peer.up || Some(*to) == except {
                continue;
            }
            if peer.eager {
                self.stats.gossip_sent += 1;
                let message = Message::Gossip {
                    hop: hop.saturating_add(1),
                    payload: payload.clone(),
                };
                out.push(OutEvent::Send { to: *to, message });
            } else {
                if peer.ihave_queue.len() >= queue_max {
                    peer.ihave_queue.pop_front();
                    self.stats.ihave_ids_dropped += 1;
                }
                peer.ihave_queue.push_back((id, hop));
            }
        }
    }

    fn make_eager(&mut self, peer: ReplicaId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.eager = true;
        }
    }

    /// Algorithm 1's reaction to a duplicate, with the mitigations of the
    /// PRUNE-provocation attack: a recently grafted peer keeps its eager
    /// link, a suspect's fast copy prunes nobody, and at least `eager_min`
    /// eager links stay.
    fn maybe_prune(
        &mut self,
        now: u64,
        from: ReplicaId,
        first_from: Option<ReplicaId>,
        out: &mut Vec<OutEvent>,
    ) {
        let eager_count = self.peers.values().filter(|p| p.up && p.eager).count();
        let eager_min = self.config.eager_min;
        let first_suspect = first_from
            .and_then(|f| self.peers.get(&f))
            .is_some_and(|p| now < p.suspect_until);
        let Some(peer) = self.peers.get_mut(&from) else {
            return;
        };
        let keep = now < peer.protected_until || eager_count <= eager_min || first_suspect;
        if peer.eager && keep {
            self.stats.prune_suppressed += 1;
            return;
        }
        if peer.eager && self.config.graft_protection_micros > 0 {
            // The first copy displaced a tree link: remember who raced.
            if let Some(racer) = first_from.and_then(|f| self.peers.get_mut(&f)) {
                racer.raced_at = Some(now);
            }
        }
        let Some(peer) = self.peers.get_mut(&from) else {
            return;
        };
        peer.eager = false;
        self.stats.prune_sent += 1;
        out.push(OutEvent::Send {
            to: from,
            message: Message::Prune,
        });
    }

    /// Algorithm 2, "upon Receive(IHAVE)": start a timer per unknown id.
    fn on_ihave(
        &mut self,
        now: u64,
        from: ReplicaId,
        ids: Vec<(Digest, Hop)>,
        out: &mut Vec<OutEvent>,
    ) {
        for (id, hop) in ids {
            if self.cache.contains(&id) {
                continue;
            }
            if let Some(missing) = self.missing.get_mut(&id) {
                let known = missing.announcers.iter().any(|(p, _)| *p == from);
                if !known && missing.announcers.len() < self.config.announcers_max {
                    missing.announcers.push_back((from, hop));
                }
                continue;
            }
            let struck = self.strikes.get(&from).copied().unwrap_or(0);
            let owned = self.missing_owned.entry(from).or_default();
            if self.missing.len() >= self.config.missing_max
                || *owned >= self.config.missing_per_peer_max
                || struck >= self.config.announcer_strikes_max
            {
                self.stats.missing_dropped += 1;
                continue;
            }
            *owned += 1;
            let missing = Missing {
                announcers: VecDeque::from([(from, hop)]),
                owner: from,
                grafts: 0,
                due: now + self.config.graft_timeout_micros,
            };
            self.missing.insert(id, missing);
            out.push(OutEvent::SetTimer {
                at_micros: now + self.config.graft_timeout_micros,
                timer: Timer::Graft(id),
            });
        }
    }

    /// Algorithm 2, "upon Timer(id)": GRAFT the next announcer, cycling
    /// through them so one lost GRAFT or one lying announcer cannot end the
    /// wait.
    fn on_graft_timer(&mut self, now: u64, id: Digest, out: &mut Vec<OutEvent>) {
        let Some(missing) = self.missing.get_mut(&id) else {
            return;
        };
        let per_announcer = self.config.grafts_per_announcer_max as usize;
        let budget =
            (missing.announcers.len() * per_announcer).min(self.config.graft_attempts_max as usize);
        if missing.grafts as usize >= budget {
            self.stats.missing_expired += 1;
            for (announcer, _) in &missing.announcers {
                let strikes = self.strikes.entry(*announcer).or_default();
                *strikes = strikes.saturating_add(1);
            }
            self.forget_missing(&id);
            return;
        }
        assert!(
            !missing.announcers.is_empty(),
            "missing id without announcer"
        );
        let index = missing.grafts as usize % missing.announcers.len();
        let (to, _) = missing.announcers[index];
        missing.grafts += 1;
        missing.due = now + self.config.graft_retry_micros;
        if let Some(peer) = self.peers.get_mut(&to) {
            peer.eager = true;
            if self.config.graft_protection_micros > 0 {
                peer.protected_until = now + self.config.graft_protection_micros;
            }
        }
        self.demote_racers(now, out);
        self.stats.graft_sent += 1;
        out.push(OutEvent::Send {
            to,
            message: Message::Graft { id },
        });
        out.push(OutEvent::SetTimer {
            at_micros: now + self.config.graft_retry_micros,
            timer: Timer::Graft(id),
        });
    }

    /// The tree failed us (we GRAFT): eager peers whose fast copies
    /// recently displaced a tree link are the likely culprits of a
    /// PRUNE-provocation attack. Make them lazy and suspect for
    /// `graft_protection_micros`; protected (grafted) peers are kept.
    fn demote_racers(&mut self, now: u64, out: &mut Vec<OutEvent>) {
        let window = self.config.graft_protection_micros;
        if window == 0 {
            return;
        }
        for (id, peer) in &mut self.peers {
            let recent = peer
                .raced_at
                .is_some_and(|t| now.saturating_sub(t) < window);
            if !recent || now < peer.protected_until {
                continue;
            }
            peer.raced_at = None;
            peer.suspect_until = now + window;
            if peer.eager && peer.up {
                peer.eager = false;
                self.stats.prune_sent += 1;
                out.push(OutEvent::Send {
                    to: *id,
                    message: Message::Prune,
                });
            }
        }
    }

    /// Charges one payload answer to `peer`'s budget for this tick.
    fn may_answer(&mut self, peer: ReplicaId) -> bool {
        let answers = self.answers.entry(peer).or_default();
        if *answers >= self.config.answers_per_tick_max {
            self.stats.answers_refused += 1;
            return false;
        }
        *answers += 1;
        true
    }

    /// Algorithm 2, "upon Receive(GRAFT)".
    fn on_graft(&mut self, from: ReplicaId, id: Digest, out: &mut Vec<OutEvent>) {
        self.make_eager(from);
        if !self.may_answer(from) {
            return;
        }
        if let Some((payload, hop)) = self.cache.payload(&id) {
            self.stats.gossip_sent += 1;
            let message = Message::Gossip {
                hop: hop.saturating_add(1),
                payload: payload.clone(),
            };
            out.push(OutEvent::Send { to: from, message });
        }
    }

    fn on_peer_up(&mut self, peer: ReplicaId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.up = true;
            p.eager = true;
        }
    }

    fn on_peer_down(&mut self, peer: ReplicaId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.up = false;
            p.eager = false;
            p.ihave_queue.clear();
        }
    }

    /// Flushes IHAVE queues, runs anti-entropy, expires the cache.
    fn on_tick(&mut self, now: u64, out: &mut Vec<OutEvent>) {
        self.tick_scheduled = true;
        self.ticks += 1;
        out.push(OutEvent::SetTimer {
            at_micros: now + self.config.tick_micros,
            timer: Timer::Tick,
        });
        self.answers.clear();
        self.strikes.retain(|_, strikes| {
            *strikes -= 1;
            *strikes > 0
        });
        let batch_max = self.config.ihave_batch_max;
        for (to, peer) in &mut self.peers {
            while !peer.ihave_queue.is_empty() {
                let take = peer.ihave_queue.len().min(batch_max);
                let ids: Vec<_> = peer.ihave_queue.drain(..take).collect();
                self.stats.ihave_sent += 1;
                self.stats.ihave_ids_sent += ids.len() as u64;
                out.push(OutEvent::Send {
                    to: *to,
                    message: Message::IHave { ids },
                });
            }
        }
        if self
            .ticks
            .is_multiple_of(u64::from(self.config.anti_entropy_every_ticks))
        {
            self.anti_entropy(now, out);
            self.fire_lost_timers(now, out);
        }
        self.cache.expire(now);
    }

    /// A driver may drop timers under its own bounds; a wait whose timer is
    /// a whole anti-entropy period overdue is advanced here, so no entry
    /// stays in the missing or fetch tables for ever.
    fn fire_lost_timers(&mut self, now: u64, out: &mut Vec<OutEvent>) {
        let period = self.config.tick_micros * u64::from(self.config.anti_entropy_every_ticks);
        let overdue = |due: u64| due.saturating_add(period) < now;
        let missing: Vec<Digest> = self
            .missing
            .iter()
            .filter(|(_, m)| overdue(m.due))
            .map(|(id, _)| *id)
            .collect();
        for id in missing {
            self.on_graft_timer(now, id, out);
        }
        let fetches: Vec<Digest> = self
            .fetches
            .iter()
            .filter(|(_, f)| overdue(f.due))
            .map(|(id, _)| *id)
            .collect();
        for id in fetches {
            self.on_fetch_timer(now, id, out);
        }
    }

    /// Sends a summary of recent ids to one up active peer (round robin
    /// from a random start) and, when the active view is partial, to one
    /// random member too: repairs losses that pushes, IHAVEs and GRAFTs all
    /// missed, and reaches a replica whose overlay neighbours are all
    /// Byzantine (an eclipse) — it can GRAFT from anyone.
    fn anti_entropy(&mut self, now: u64, out: &mut Vec<OutEvent>) {
        let up: Vec<ReplicaId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.up)
            .map(|(id, _)| *id)
            .collect();
        let since = now.saturating_sub(self.config.anti_entropy_window_micros);
        let ids = self.cache.recent(since, self.config.ihave_batch_max);
        if ids.is_empty() {
            return;
        }
        let mut targets = Vec::with_capacity(2);
        if !up.is_empty() {
            if self.anti_entropy_cursor == 0 {
                self.anti_entropy_cursor = 1 + rand::Rng::gen_range(&mut self.rng, 0..up.len());
            }
            self.anti_entropy_cursor += 1;
            targets.push(up[self.anti_entropy_cursor % up.len()]);
        }
        if self.peers.len() + 1 < self.n {
            let other = rand::Rng::gen_range(&mut self.rng, 1..self.n);
            targets.push(ReplicaId(((self.me.index() + other) % self.n) as u16));
        }
        for to in targets {
            self.stats.ihave_sent += 1;
            self.stats.ihave_ids_sent += ids.len() as u64;
            let message = Message::IHave { ids: ids.clone() };
            out.push(OutEvent::Send { to, message });
        }
    }

    fn on_fetch(
        &mut self,
        now: u64,
        id: Digest,
        mut hints: Vec<ReplicaId>,
        out: &mut Vec<OutEvent>,
    ) -> Result<(), GossipError> {
        if let Some((payload, _)) = self.cache.payload(&id) {
            let payload = payload.clone();
            self.deliver(id, payload, 0, None, Via::Fetch, out);
            return Ok(());
        }
        if self.fetches.contains_key(&id) {
            return Ok(());
        }
        if self.fetches.len() >= self.config.fetches_pending_max {
            return Err(GossipError::FetchOverload);
        }
        hints.truncate(self.config.fetch_hints_max);
        let mut others: Vec<ReplicaId> = self.peers.keys().copied().collect();
        others.shuffle(&mut self.rng);
        let announcers = self
            .missing
            .get(&id)
            .map(|m| m.announcers.iter().map(|(p, _)| *p).collect::<Vec<_>>())
            .unwrap_or_default();
        let mut candidates = Vec::new();
        for peer in hints.into_iter().chain(announcers).chain(others) {
            if peer.index() < self.n && peer != self.me && !candidates.contains(&peer) {
                candidates.push(peer);
            }
        }
        if candidates.is_empty() {
            self.stats.fetches_failed += 1;
            out.push(OutEvent::FetchFailed { id });
            return Ok(());
        }
        let fetching = Fetching {
            candidates,
            attempts: 0,
            due: now,
        };
        self.fetches.insert(id, fetching);
        self.on_fetch_timer(now, id, out);
        Ok(())
    }

    /// Asks the next candidate, or gives up after `fetch_attempts_max`.
    fn on_fetch_timer(&mut self, now: u64, id: Digest, out: &mut Vec<OutEvent>) {
        let Some(fetching) = self.fetches.get_mut(&id) else {
            return;
        };
        if fetching.attempts >= self.config.fetch_attempts_max {
            self.fetches.remove(&id);
            self.stats.fetches_failed += 1;
            out.push(OutEvent::FetchFailed { id });
            return;
        }
        let to = fetching.candidates[fetching.attempts as usize % fetching.candidates.len()];
        fetching.attempts += 1;
        fetching.due = now + self.config.fetch_timeout_micros;
        self.stats.fetch_requests_sent += 1;
        out.push(OutEvent::Send {
            to,
            message: Message::FetchRequest { id },
        });
        out.push(OutEvent::SetTimer {
            at_micros: now + self.config.fetch_timeout_micros,
            timer: Timer::Fetch(id),
        });
    }

    fn on_fetch_reply(
        &mut self,
        now: u64,
        from: ReplicaId,
        payload: Bytes,
        out: &mut Vec<OutEvent>,
    ) -> Result<(), GossipError> {
        let id = self.validator.message_id(&payload.0);
        // Only answers to our own requests are looked at (and only then
        // validated): unsolicited payloads cost a lookup, nothing more.
        if !self.fetches.contains_key(&id) || self.cache.contains(&id) {
            return Ok(());
        }
        if !self.check_payload(from, id, &payload)? {
            return Ok(());
        }
        self.fetches.remove(&id);
        self.accept(now, id, payload.clone(), 0, true);
        self.deliver(id, payload, 0, Some(from), Via::Fetch, out);
        Ok(())
    }
}
