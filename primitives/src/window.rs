//! The per-client sliding window of request numbers (DESIGN.md step 1).
//!
//! Not strict monotonicity: a client pipelines several requests, and a
//! primary may order them differently than they were sent. A strict check
//! would turn the reordered ones into "replays". The window (as in IPsec's
//! anti-replay window) accepts any number above the highest seen, and any
//! unseen number within [`RequestWindow::WIDTH`] below it; numbers seen
//! before get the cached reply; numbers below the window are refused.

use serde::{Deserialize, Serialize};

/// The verdict on one request number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowVerdict {
    /// Never seen and inside (or above) the window: execute it.
    Fresh,
    /// Seen before: answer with the cached reply, do not execute again.
    Seen,
    /// Too old to tell whether it was seen: refuse it.
    BelowWindow,
}

/// One client's window. Fixed size: 8 + 16 bytes whatever the client does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestWindow {
    /// The highest number seen; 0 means none (number 0 is never valid).
    highest: u64,
    /// Bit `i` is set when number `highest − i` has been seen.
    seen: u128,
}

impl RequestWindow {
    /// How far below the highest number a request may still arrive.
    pub const WIDTH: u64 = 128;

    /// An empty window.
    pub fn new() -> Self {
        RequestWindow {
            highest: 0,
            seen: 1,
        }
    }

    /// The highest number seen so far (0 if none).
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// The verdict on `number`, without recording it.
    pub fn check(&self, number: u64) -> WindowVerdict {
        if number == 0 {
            return WindowVerdict::BelowWindow;
        }
        if number > self.highest {
            return WindowVerdict::Fresh;
        }
        let age = self.highest - number;
        if age >= Self::WIDTH {
            WindowVerdict::BelowWindow
        } else if self.seen & (1u128 << age) != 0 {
            WindowVerdict::Seen
        } else {
            WindowVerdict::Fresh
        }
    }

    /// Checks `number` and, if it is fresh, records it as seen.
    pub fn admit(&mut self, number: u64) -> WindowVerdict {
        let verdict = self.check(number);
        if verdict == WindowVerdict::Fresh {
            self.record(number);
        }
        verdict
    }

    fn record(&mut self, number: u64) {
        if number > self.highest {
            let shift = number - self.highest;
            self.seen = if shift >= Self::WIDTH {
                0
            } else {
                self.seen << shift
            };
            self.highest = number;
            self.seen |= 1;
        } else {
            let age = self.highest - number;
            assert!(age < Self::WIDTH, "recording a number below the window");
            self.seen |= 1u128 << age;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// The reference: remember everything, judge by the definition.
    #[derive(Default)]
    struct Model {
        seen: BTreeSet<u64>,
    }

    impl Model {
        fn admit(&mut self, n: u64) -> WindowVerdict {
            let highest = self.seen.last().copied().unwrap_or(0);
            let verdict = if n == 0 || (n <= highest && highest - n >= RequestWindow::WIDTH) {
                WindowVerdict::BelowWindow
            } else if self.seen.contains(&n) {
                WindowVerdict::Seen
            } else {
                WindowVerdict::Fresh
            };
            if verdict == WindowVerdict::Fresh {
                self.seen.insert(n);
            }
            verdict
        }
    }

    fn numbers() -> impl Strategy<Value = Vec<u64>> {
        // Mostly near each other (a pipelining client), sometimes far jumps.
        prop::collection::vec(
            prop_oneof![8 => 0u64..300, 1 => 0u64..100_000, 1 => Just(u64::MAX)],
            0..400,
        )
    }

    proptest! {
        #[test]
        fn agrees_with_the_model(ns in numbers()) {
            let mut window = RequestWindow::new();
            let mut model = Model::default();
            for n in ns {
                prop_assert_eq!(window.admit(n), model.admit(n), "number {}", n);
            }
        }

        #[test]
        fn reordered_pipeline_is_all_fresh_then_all_seen(
            start in 1u64..1_000_000,
            order in Just((0..RequestWindow::WIDTH).collect::<Vec<_>>()).prop_shuffle(),
        ) {
            let mut window = RequestWindow::new();
            for offset in &order {
                prop_assert_eq!(window.admit(start + offset), WindowVerdict::Fresh);
            }
            for offset in &order {
                prop_assert_eq!(window.admit(start + offset), WindowVerdict::Seen);
            }
        }
    }

    #[test]
    fn below_the_window_is_refused() {
        let mut w = RequestWindow::new();
        assert_eq!(w.admit(1), WindowVerdict::Fresh);
        assert_eq!(w.admit(1 + RequestWindow::WIDTH), WindowVerdict::Fresh);
        assert_eq!(w.check(1), WindowVerdict::BelowWindow);
        assert_eq!(w.check(2), WindowVerdict::Fresh);
        assert_eq!(w.check(0), WindowVerdict::BelowWindow);
    }
}
