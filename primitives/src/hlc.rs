//! A hybrid logical clock after Kulkarni, Demirbas et al., "Logical Physical
//! Clocks" (OPODIS 2014), with CockroachDB's rule: a remote timestamp more
//! than the maximum clock offset ahead of our physical clock is refused, not
//! absorbed — otherwise one replica with a broken clock drags every clock
//! forward.
//!
//! Physical time is an input (microseconds since the UNIX epoch, read by
//! the node's event loop or the simulator's virtual clock). Guarantees, for
//! every timestamp `t = (l, c)` the clock returns, where `pt` is the largest
//! physical reading given so far:
//!
//! - timestamps strictly increase;
//! - `l ≥` the physical reading of the call;
//! - `l − pt ≤ max_offset`;
//! - `c ≤ COUNTER_MAX` (when the counter would overflow, `l` advances by one
//!   microsecond instead, and only if that keeps the offset bound).

use serde::{Deserialize, Serialize};
use std::fmt;

/// An HLC timestamp, ordered by `(wall, logical)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct HlcTimestamp {
    /// The `l` of the paper: microseconds since the UNIX epoch.
    pub wall: u64,
    /// The `c` of the paper: orders events within one `wall` value.
    pub logical: u16,
}

impl HlcTimestamp {
    /// The largest counter value.
    pub const COUNTER_MAX: u16 = u16::MAX;

    /// A timestamp at `wall` microseconds with counter 0.
    pub const fn from_micros(wall: u64) -> Self {
        HlcTimestamp { wall, logical: 0 }
    }

    /// The smallest timestamp after this one: one tick later. The effective
    /// time of a batch is `max(batch_time, previous.next_tick())`.
    #[must_use]
    pub fn next_tick(self) -> Self {
        if self.logical < Self::COUNTER_MAX {
            HlcTimestamp {
                wall: self.wall,
                logical: self.logical + 1,
            }
        } else {
            HlcTimestamp {
                wall: self.wall + 1,
                logical: 0,
            }
        }
    }
}

impl fmt::Debug for HlcTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}+{}",
            self.wall / 1_000_000,
            self.wall % 1_000_000,
            self.logical
        )
    }
}

/// Why the clock refused to produce a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HlcError {
    /// A remote timestamp is further ahead of our physical clock than the
    /// configured maximum offset: the sender's clock (or ours) is broken.
    #[error("remote timestamp {remote_wall} µs is {ahead} µs ahead of local physical time, beyond the {max_offset} µs maximum offset")]
    RemoteTooFarAhead {
        /// The remote `l`.
        remote_wall: u64,
        /// How far ahead of our physical reading it is.
        ahead: u64,
        /// The bound.
        max_offset: u64,
    },
    /// The counter is exhausted and advancing `l` would break the offset
    /// bound; retry once physical time has moved.
    #[error("logical counter exhausted at wall time {wall} µs")]
    CounterExhausted {
        /// The `l` at which the counter ran out.
        wall: u64,
    },
}

/// The clock: the last timestamp issued and the bound on remote offsets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hlc {
    last: HlcTimestamp,
    max_offset: u64,
}

impl Hlc {
    /// A clock that refuses remote timestamps more than `max_offset_micros`
    /// ahead of local physical time.
    pub fn new(max_offset_micros: u64) -> Self {
        Hlc {
            last: HlcTimestamp::default(),
            max_offset: max_offset_micros,
        }
    }

    /// The maximum offset, in microseconds.
    pub fn max_offset(&self) -> u64 {
        self.max_offset
    }

    /// The last timestamp issued.
    pub fn last(&self) -> HlcTimestamp {
        self.last
    }

    /// A timestamp for a local or send event at physical time `physical`.
    pub fn now(&mut self, physical: u64) -> Result<HlcTimestamp, HlcError> {
        let next = if physical > self.last.wall {
            HlcTimestamp::from_micros(physical)
        } else {
            self.bump(self.last.wall, u32::from(self.last.logical) + 1, physical)?
        };
        Ok(self.issue(next))
    }

    /// A timestamp for receiving a message stamped `remote` at physical
    /// time `physical`. Refuses (and leaves the clock unchanged) if `remote`
    /// is beyond the maximum offset.
    pub fn update(
        &mut self,
        remote: HlcTimestamp,
        physical: u64,
    ) -> Result<HlcTimestamp, HlcError> {
        let ahead = remote.wall.saturating_sub(physical);
        if ahead > self.max_offset {
            return Err(HlcError::RemoteTooFarAhead {
                remote_wall: remote.wall,
                ahead,
                max_offset: self.max_offset,
            });
        }
        let wall = self.last.wall.max(remote.wall).max(physical);
        let logical = match (wall == self.last.wall, wall == remote.wall) {
            (true, true) => u32::from(self.last.logical.max(remote.logical)) + 1,
            (true, false) => u32::from(self.last.logical) + 1,
            (false, true) => u32::from(remote.logical) + 1,
            (false, false) => 0,
        };
        let next = self.bump(wall, logical, physical)?;
        Ok(self.issue(next))
    }

    /// `(wall, logical)` with counter overflow carried into `wall`, if the
    /// offset bound allows it.
    fn bump(&self, wall: u64, logical: u32, physical: u64) -> Result<HlcTimestamp, HlcError> {
        if let Ok(logical) = u16::try_from(logical) {
            return Ok(HlcTimestamp { wall, logical });
        }
        let carried = wall + 1;
        if carried.saturating_sub(physical) > self.max_offset {
            return Err(HlcError::CounterExhausted { wall });
        }
        Ok(HlcTimestamp::from_micros(carried))
    }

    fn issue(&mut self, next: HlcTimestamp) -> HlcTimestamp {
        assert!(
            next > self.last,
            "HLC went backwards: {next:?} after {:?}",
            self.last
        );
        self.last = next;
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OFFSET: u64 = 500_000;

    #[test]
    fn remote_at_the_offset_is_accepted_beyond_it_refused() {
        let mut clock = Hlc::new(OFFSET);
        let pt = 10_000_000;
        let just_inside = HlcTimestamp::from_micros(pt + OFFSET - 1);
        let at = HlcTimestamp::from_micros(pt + OFFSET);
        let beyond = HlcTimestamp::from_micros(pt + OFFSET + 1);
        assert!(clock.update(just_inside, pt).is_ok());
        assert!(clock.update(at, pt).is_ok());
        let before = clock.clone();
        assert_eq!(
            clock.update(beyond, pt),
            Err(HlcError::RemoteTooFarAhead {
                remote_wall: pt + OFFSET + 1,
                ahead: OFFSET + 1,
                max_offset: OFFSET
            })
        );
        assert_eq!(clock, before, "a refused timestamp must not move the clock");
    }

    #[test]
    fn saturated_counter_carries_into_wall_or_refuses() {
        let mut clock = Hlc::new(2);
        let remote = HlcTimestamp {
            wall: 100,
            logical: HlcTimestamp::COUNTER_MAX,
        };
        // l = 100 = pt: carrying to 101 keeps l − pt = 1 ≤ 2.
        assert_eq!(
            clock.update(remote, 100),
            Ok(HlcTimestamp::from_micros(101))
        );
        let remote = HlcTimestamp {
            wall: 102,
            logical: HlcTimestamp::COUNTER_MAX,
        };
        // l would become 103 with pt = 100: beyond the offset.
        assert_eq!(
            clock.update(remote, 100),
            Err(HlcError::CounterExhausted { wall: 102 })
        );
    }

    #[test]
    fn next_tick_orders_and_carries() {
        let t = HlcTimestamp {
            wall: 5,
            logical: 1,
        };
        assert!(t.next_tick() > t);
        let full = HlcTimestamp {
            wall: 5,
            logical: HlcTimestamp::COUNTER_MAX,
        };
        assert_eq!(full.next_tick(), HlcTimestamp::from_micros(6));
    }

    #[derive(Clone, Debug)]
    enum Event {
        /// Physical time moves by this much (may be negative: NTP steps).
        Tick(i64),
        /// Local or send event on clock `i`.
        Local(usize),
        /// Clock `from` sends its last timestamp to clock `to`, shifted by a
        /// skew (to reach at, inside and beyond the offset), possibly with
        /// a saturated counter.
        Send {
            from: usize,
            to: usize,
            skew: i64,
            saturated: bool,
        },
    }

    fn events() -> impl Strategy<Value = Vec<Event>> {
        let event = prop_oneof![
            3 => (-2_000i64..20_000).prop_map(Event::Tick),
            3 => (0usize..3).prop_map(Event::Local),
            3 => (0usize..3, 0usize..3, prop_oneof![
                    Just(0i64), Just(OFFSET as i64), Just(OFFSET as i64 - 1), Just(OFFSET as i64 + 1),
                    -1_000i64..1_000, 0i64..(2 * OFFSET as i64)
                ], any::<bool>())
                .prop_map(|(from, to, skew, saturated)| Event::Send { from, to, skew, saturated }),
        ];
        prop::collection::vec(event, 0..300)
    }

    proptest! {
        #[test]
        fn hlc_properties_hold(events in events()) {
            let mut clocks = vec![Hlc::new(OFFSET); 3];
            let mut physical: u64 = 1_000_000_000;
            let mut max_physical = physical;
            let mut last = [HlcTimestamp::default(); 3];
            for event in events {
                match event {
                    Event::Tick(d) => {
                        physical = physical.saturating_add_signed(d);
                        max_physical = max_physical.max(physical);
                    }
                    Event::Local(i) => {
                        if let Ok(t) = clocks[i].now(physical) {
                            prop_assert!(t > last[i], "monotonic");
                            prop_assert!(t.wall >= physical, "l ≥ pt");
                            prop_assert!(t.wall.saturating_sub(max_physical) <= OFFSET, "l − pt ≤ ε");
                            last[i] = t;
                        }
                    }
                    Event::Send { from, to, skew, saturated } => {
                        let sent = clocks[from].last();
                        let mut remote = HlcTimestamp {
                            wall: sent.wall.saturating_add_signed(skew),
                            logical: sent.logical,
                        };
                        if saturated {
                            remote.logical = HlcTimestamp::COUNTER_MAX;
                        }
                        let ahead = remote.wall.saturating_sub(physical);
                        match clocks[to].update(remote, physical) {
                            Ok(t) => {
                                prop_assert!(ahead <= OFFSET, "accepted a timestamp beyond the offset");
                                prop_assert!(t > remote, "causality: receive after send");
                                prop_assert!(t > last[to], "monotonic");
                                prop_assert!(t.wall >= physical, "l ≥ pt");
                                prop_assert!(t.wall.saturating_sub(max_physical) <= OFFSET, "l − pt ≤ ε");
                                last[to] = t;
                            }
                            Err(HlcError::RemoteTooFarAhead { .. }) => prop_assert!(ahead > OFFSET),
                            Err(HlcError::CounterExhausted { .. }) => prop_assert!(saturated || remote.logical == HlcTimestamp::COUNTER_MAX || last[to].logical == HlcTimestamp::COUNTER_MAX),
                        }
                    }
                }
            }
        }
    }
}
