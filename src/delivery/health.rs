//! Upstream health: the integrations that have a health endpoint are probed in the
//! background and shown as `integration_up`. The probe itself is the channel's.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{Metrics, ReceiverIntegrationLabels};
use crate::runtime::Shared;

/// Probes every integration that has a health endpoint ([`crate::channels::Integration::health_interval`])
/// forever and sets `integration_up{receiver,integration}`: 1 when every such integration of
/// that kind in that receiver answers, else 0. Reads the runtime in force each round, so reloads apply; series
/// of receivers no longer configured are removed. The round period is the shortest
/// health interval configured (30s when there is none).
pub async fn health_loop(runtime: Shared, metrics: Arc<Metrics>) {
    let mut shown: HashSet<ReceiverIntegrationLabels> = HashSet::new();
    loop {
        let rt = runtime.load_full();
        let mut probes = tokio::task::JoinSet::new();
        let mut interval = Duration::from_secs(30);
        let mut first = true;
        for (receiver, list) in &rt.receivers {
            for integration in list {
                if let Some(every) = integration.health_interval() {
                    interval = if first { every } else { interval.min(every) };
                    first = false;
                    let (rt, receiver, index) = (rt.clone(), receiver.clone(), integration.index);
                    probes.spawn(async move {
                        let kind = rt.receivers.get(&receiver).and_then(|l| l.get(index));
                        let up = match kind {
                            Some(i) => i.probe(&rt.client).await,
                            None => false,
                        };
                        (receiver, kind.map_or("unknown", |i| i.name()), up)
                    });
                }
            }
        }
        let mut up: BTreeMap<(String, &'static str), bool> = BTreeMap::new();
        while let Some(joined) = probes.join_next().await {
            if let Ok((receiver, kind, ok)) = joined {
                *up.entry((receiver, kind)).or_insert(true) &= ok;
            }
        }
        let mut now_shown = HashSet::new();
        for ((receiver, integration), ok) in up {
            let labels = ReceiverIntegrationLabels {
                receiver,
                integration,
            };
            metrics
                .integration_up
                .get_or_create(&labels)
                .set(i64::from(ok));
            now_shown.insert(labels);
        }
        for gone in shown.difference(&now_shown) {
            metrics.integration_up.remove(gone);
        }
        shown = now_shown;
        drop(rt);
        tokio::time::sleep(interval).await;
    }
}
