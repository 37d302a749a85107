//! Request-number allocation: the client's half of the replicas'
//! per-client sliding window ([`primitives::RequestWindow`], 128 wide).
//!
//! A replica accepts a number above the highest it has seen, or an unseen
//! one less than [`RequestWindow::WIDTH`] below it. So a client may have
//! many requests in flight (a primary may reorder them) as long as every
//! in-flight number lies within one window: the allocator hands out
//! consecutive numbers and refuses a new one while the oldest unfinished
//! number is `WIDTH` or more below it. That bounds the in-flight requests
//! to 128 as well.
//!
//! The first number is the wall clock in microseconds at start-up, so a
//! new process using the same key starts above the numbers an earlier one
//! used (as long as that one sent fewer than one request per microsecond
//! of its life and the clock does not go back). Two processes must not
//! use one key at the same time.

use primitives::{RequestNumber, RequestWindow};
use std::collections::BTreeSet;

/// Hands out request numbers so that every unfinished one lies within a
/// replica's window.
#[derive(Clone, Debug)]
pub struct RequestNumbers {
    next: u64,
    in_flight: BTreeSet<u64>,
}

impl RequestNumbers {
    /// The most numbers in flight at once (the replicas' window width).
    pub const IN_FLIGHT_MAX: u64 = RequestWindow::WIDTH;

    /// An allocator whose first number is `first` (at least 1: number 0
    /// is never valid).
    pub fn starting_at(first: u64) -> RequestNumbers {
        RequestNumbers {
            next: first.max(1),
            in_flight: BTreeSet::new(),
        }
    }

    /// The next number, or `None` while the window is full (wait for a
    /// [`Self::finish`]).
    pub fn allocate(&mut self) -> Option<RequestNumber> {
        if let Some(&oldest) = self.in_flight.first() {
            if self.next - oldest >= Self::IN_FLIGHT_MAX {
                return None;
            }
        }
        let number = self.next;
        self.next = self.next.checked_add(1).expect("request numbers exhausted");
        assert!(self.in_flight.insert(number), "number handed out twice");
        Some(RequestNumber(number))
    }

    /// Marks `number` finished (answered, or given up on): it no longer
    /// holds the window back.
    pub fn finish(&mut self, number: RequestNumber) {
        self.in_flight.remove(&number.0);
    }

    /// Numbers handed out and not finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The number the next [`Self::allocate`] returns.
    pub fn peek_next(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use primitives::WindowVerdict;

    #[test]
    fn numbers_are_consecutive_and_bounded_by_the_window() {
        let mut numbers = RequestNumbers::starting_at(1000);
        let got: Vec<u64> = (0..128).map(|_| numbers.allocate().unwrap().0).collect();
        assert_eq!(got, (1000..1128).collect::<Vec<_>>());
        assert_eq!(numbers.allocate(), None, "129th in flight refused");
        // Finishing a later one does not help: the oldest holds the window.
        numbers.finish(RequestNumber(1100));
        assert_eq!(numbers.allocate(), None);
        numbers.finish(RequestNumber(1000));
        assert_eq!(numbers.allocate(), Some(RequestNumber(1128)));
        assert_eq!(numbers.allocate(), None);
        assert_eq!(numbers.in_flight(), 127);
    }

    #[test]
    fn zero_is_never_handed_out() {
        let mut numbers = RequestNumbers::starting_at(0);
        assert_eq!(numbers.allocate(), Some(RequestNumber(1)));
    }

    #[test]
    fn any_arrival_order_of_in_flight_numbers_is_fresh_at_a_replica() {
        // Whatever the allocator allows in flight, a replica's window
        // accepts in any order: reverse order is the worst case.
        let mut numbers = RequestNumbers::starting_at(5);
        let mut batch: Vec<u64> = std::iter::from_fn(|| numbers.allocate().map(|n| n.0)).collect();
        assert_eq!(batch.len(), 128);
        batch.reverse();
        let mut window = RequestWindow::new();
        for n in &batch {
            assert_eq!(window.admit(*n), WindowVerdict::Fresh, "number {n}");
        }
        // The same numbers again are replays: cached replies, not re-execution.
        for n in &batch {
            assert_eq!(window.admit(*n), WindowVerdict::Seen);
        }
    }

    #[test]
    fn a_later_process_starting_from_the_clock_is_above_an_earlier_one() {
        let mut earlier = RequestNumbers::starting_at(1_000_000);
        let mut window = RequestWindow::new();
        for _ in 0..50 {
            let n = earlier.allocate().unwrap();
            earlier.finish(n);
            assert_eq!(window.admit(n.0), WindowVerdict::Fresh);
        }
        // 1 ms later on the clock.
        let mut later = RequestNumbers::starting_at(1_001_000);
        let n = later.allocate().unwrap();
        assert_eq!(window.admit(n.0), WindowVerdict::Fresh);
    }
}
