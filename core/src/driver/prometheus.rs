//! A client's own counters in a Prometheus registry (feature `prometheus`), under the names
//! every binding uses (docs/exporter.md): `multiput_client_<name>_total{server="host:port"}`
//! for hits, misses, sets, errors, timeouts, down_events, repairs and stale, and
//! `multiput_client_disagreements_total` for the whole client. Python's
//! `multiput.prometheus.MultiputCollector` exports the same series.
//!
//! ```no_run
//! # fn main() -> Result<(), multiput::Error> {
//! use prometheus_client::registry::Registry;
//! let client = multiput::blocking::Client::builder().servers(["127.0.0.1:11211"]).build()?;
//! let mut registry = Registry::default();
//! let c = client.clone();
//! registry.register_collector(Box::new(multiput::prometheus::ClientCollector::new(move || c.metrics())));
//! # Ok(()) }
//! ```

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

use crate::metrics::{Counters, Metrics};

/// A per-server counter: name without `_total`, help, and the field it reads.
type Family = (&'static str, &'static str, fn(&Counters) -> u64);

/// The per-server counters.
const PER_SERVER: [Family; 8] = [
    ("multiput_client_hits", "Reads that found the key.", |c| {
        c.hits
    }),
    (
        "multiput_client_misses",
        "Reads that did not find the key.",
        |c| c.misses,
    ),
    (
        "multiput_client_sets",
        "Stores the server confirmed.",
        |c| c.sets,
    ),
    (
        "multiput_client_errors",
        "Calls that failed on the server's side: timeouts, broken or refused connections, \
         protocol violations, server errors.",
        |c| c.errors,
    ),
    (
        "multiput_client_timeouts",
        "Calls that timed out (counted in errors too).",
        |c| c.timeouts,
    ),
    (
        "multiput_client_down_events",
        "Times the client marked the server down.",
        |c| c.down_events,
    ),
    (
        "multiput_client_repairs",
        "Replicated reads that wrote the winning value back to this server.",
        |c| c.repairs,
    ),
    (
        "multiput_client_stale",
        "Replicated reads where this server's copy was missing or older than the winner.",
        |c| c.stale,
    ),
];

/// A [`Collector`] of one client's counters, read at each scrape from `metrics` (typically
/// `move || client.metrics()` on a clone of the client: clones share their counters).
pub struct ClientCollector {
    metrics: Box<dyn Fn() -> Metrics + Send + Sync>,
}

impl ClientCollector {
    /// A collector reading the counters from `metrics` at each scrape.
    pub fn new(metrics: impl Fn() -> Metrics + Send + Sync + 'static) -> ClientCollector {
        ClientCollector {
            metrics: Box::new(metrics),
        }
    }
}

impl fmt::Debug for ClientCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientCollector")
    }
}

impl Collector for ClientCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let m = (self.metrics)();
        for (name, help, field) in PER_SERVER {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (server, c) in &m.servers {
                let labels = [("server", server.as_str())];
                let sample = family.encode_family(&labels)?;
                ConstCounter::new(field(c)).encode(sample)?;
            }
        }
        let help = "Replicated reads whose replicas disagreed (one per read).";
        let family = encoder.encode_descriptor(
            "multiput_client_disagreements",
            help,
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(m.total.disagreements).encode(family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    #[test]
    fn every_counter_is_a_total_per_server() {
        let a = Counters {
            hits: 3,
            misses: 1,
            repairs: 2,
            ..Counters::default()
        };
        let metrics = move || Metrics {
            servers: vec![
                ("10.0.0.1:11211".into(), a),
                ("10.0.0.2:11211".into(), Counters::default()),
            ],
            total: Counters {
                disagreements: 4,
                ..a
            },
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ClientCollector::new(metrics)));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE multiput_client_hits counter",
            "multiput_client_hits_total{server=\"10.0.0.1:11211\"} 3",
            "multiput_client_hits_total{server=\"10.0.0.2:11211\"} 0",
            "multiput_client_misses_total{server=\"10.0.0.1:11211\"} 1",
            "multiput_client_repairs_total{server=\"10.0.0.1:11211\"} 2",
            "multiput_client_stale_total{server=\"10.0.0.2:11211\"} 0",
            "multiput_client_disagreements_total 4",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
        }
    }
}
