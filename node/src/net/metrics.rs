//! Counters of the network layer, exported through a prometheus-client
//! [`Registry`]. Counters are shared handles (`Arc` inside), so connection
//! tasks update them without going through the swarm.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 2];

/// Every counter of the network layer.
#[derive(Clone, Debug, Default)]
pub struct NetMetrics {
    /// Connections closed right after the handshake because the remote's
    /// peer id is not in the configuration.
    pub connections_refused: Counter,
    /// Inbound connections dropped before the handshake because too many
    /// were already negotiating.
    pub connections_pending_refused: Counter,
    /// Dials started to configured peers.
    pub dials: Counter,
    /// Dials that failed (each schedules a retry with back-off).
    pub dial_failures: Counter,
    /// Configured peers (the replica itself excluded).
    pub peers_configured: Gauge,
    /// Configured peers with at least one connection now (an alert rule
    /// compares it with `peers_configured`).
    pub peers_connected: Gauge,
    frames: Family<Labels, Counter>,
}

/// The counters of one frame protocol (`protocol` label).
#[derive(Clone, Debug, Default)]
pub struct FrameMetrics {
    /// Frames written to a stream.
    pub sent: Counter,
    /// Frames read and decoded.
    pub received: Counter,
    /// Inbound frames refused because their length exceeded the bound.
    pub rejected_oversized: Counter,
    /// Inbound frames that did not decode as the protocol's message type.
    pub rejected_malformed: Counter,
    /// Sends refused because the peer's outbound queue was full.
    pub send_queue_full: Counter,
    /// Sends refused because the peer was not connected.
    pub send_not_connected: Counter,
    /// Sends refused because the encoded message exceeded the bound.
    pub send_oversized: Counter,
    /// Queued frames lost because their connection or stream failed.
    pub send_dropped: Counter,
}

impl NetMetrics {
    /// Registers every counter under `registry` (the caller may pass a
    /// sub-registry with a prefix such as `qlock_net`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections_refused",
            "Connections from peer ids not in the configuration, refused",
            self.connections_refused.clone(),
        );
        registry.register(
            "connections_pending_refused",
            "Inbound connections dropped because too many were negotiating",
            self.connections_pending_refused.clone(),
        );
        registry.register("dials", "Dials to configured peers", self.dials.clone());
        registry.register(
            "dial_failures",
            "Failed dials to configured peers",
            self.dial_failures.clone(),
        );
        registry.register(
            "peers_configured",
            "Configured peers, this replica excluded",
            self.peers_configured.clone(),
        );
        registry.register(
            "peers_connected",
            "Configured peers connected now",
            self.peers_connected.clone(),
        );
        registry.register(
            "frames",
            "Frames by protocol and outcome (sent, received, rejected_*, send_*)",
            self.frames.clone(),
        );
    }

    /// The counters of protocol `name` (a short static label, e.g. "pbft").
    pub fn frames(&self, name: &'static str) -> FrameMetrics {
        let get = |outcome| {
            self.frames
                .get_or_create(&[("protocol", name), ("outcome", outcome)])
                .clone()
        };
        FrameMetrics {
            sent: get("sent"),
            received: get("received"),
            rejected_oversized: get("rejected_oversized"),
            rejected_malformed: get("rejected_malformed"),
            send_queue_full: get("send_queue_full"),
            send_not_connected: get("send_not_connected"),
            send_oversized: get("send_oversized"),
            send_dropped: get("send_dropped"),
        }
    }
}
