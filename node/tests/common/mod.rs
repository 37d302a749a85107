//! Helpers shared by the test binaries that start replicas on real ports.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where picked ports come from: below Linux's ephemeral range (32768 and
/// up by default). A port picked there and released could be taken, before
/// the replica binds it, as the source port of any outgoing connection on
/// the machine (another test's dials included); a port below it is only
/// ever taken by an explicit bind.
const PORTS: std::ops::Range<u16> = 12_000..32_000;

/// The next candidate of this process: tests of one binary run in parallel
/// threads and never pick the same port.
static CURSOR: AtomicU16 = AtomicU16::new(0);

/// `count` distinct ports on 127.0.0.1 that were free when picked (each was
/// bound, all held until all were found).
pub fn free_ports(count: usize) -> Vec<u16> {
    let span = PORTS.end - PORTS.start;
    // Test processes running at once start far apart.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let start = ((std::process::id() ^ nanos) % u32::from(span)) as u16;
    let _ = CURSOR.compare_exchange(0, start.max(1), Ordering::SeqCst, Ordering::SeqCst);
    let mut held = Vec::with_capacity(count);
    for _ in 0..span {
        if held.len() == count {
            break;
        }
        let offset = CURSOR.fetch_add(1, Ordering::SeqCst) % span;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", PORTS.start + offset)) {
            held.push(l);
        }
    }
    assert_eq!(held.len(), count, "no {count} free ports in {PORTS:?}");
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}
