//! What Alertmanager adds to the shared payload in newer versions.

use serde::{Deserialize, Serialize};

use super::LabelSet;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertmanagerExtras {
    /// v0.32+: why this notification was sent (`first notification`, `repeat interval elapsed`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_reason: Option<String>,
    /// v0.34+: the labels of the route that produced the group.
    #[serde(
        default,
        rename = "routeLabels",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_labels: Option<LabelSet>,
}
