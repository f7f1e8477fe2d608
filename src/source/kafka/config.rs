//! `source = { type = "kafka", ... }`: typed config of the Kafka adapter.

use std::collections::{BTreeMap, HashSet};

use rdkafka::ClientConfig;
use serde::Deserialize;

use super::msk_iam::MskIamConfig;
use crate::problems::Problems;
use crate::source::ValueFormat;

/// Properties sse-bridge sets itself; a route may not override them.
const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "auto.offset.reset",
];

/// Kafka topics feeding one route. Every partition of every topic is read by one shared
/// consumer (no consumer group: every replica serves every partition).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap brokers, `host:port` each.
    pub brokers: Vec<String>,
    /// Topics of the route; positions (event ids) cover every partition of each.
    pub topics: Vec<String>,
    /// Extra librdkafka properties (SASL, TLS, fetch tuning), passed through as-is.
    #[serde(default)]
    pub properties: Properties,
    /// How an envelope (`payload = "envelope"`) carries the record value.
    #[serde(default)]
    pub value_format: ValueFormat,
    /// Sign in to Amazon MSK with IAM (SASL/OAUTHBEARER, a SigV4-signed token).
    #[serde(default)]
    pub aws_msk_iam: Option<MskIamConfig>,
}

/// librdkafka properties; `Debug` hides the values of secret-looking keys.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Properties(pub BTreeMap<String, String>);

impl Properties {
    fn is_secret(key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        k.contains("password") || k.contains("secret") || k.contains("key") || k.contains("jaas")
    }
}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.0 {
            if Self::is_secret(k) {
                m.entry(k, &"<redacted>");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

fn is_topic_name(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl KafkaSourceConfig {
    /// Report every problem of this section under `at` (e.g. `routes[1].source`).
    pub(crate) fn validate(&self, at: &str, p: &mut Problems) {
        if self.brokers.is_empty() {
            p.push(format!("{at}.brokers"), "must not be empty");
        }
        for (i, b) in self.brokers.iter().enumerate() {
            let ok = b
                .rsplit_once(':')
                .map(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok_and(|n| n > 0))
                .unwrap_or(false);
            if !ok {
                p.push(format!("{at}.brokers[{i}]"), "must be `host:port`");
            }
        }
        if self.topics.is_empty() {
            p.push(format!("{at}.topics"), "must not be empty");
        }
        let mut seen = HashSet::new();
        for (i, t) in self.topics.iter().enumerate() {
            if !is_topic_name(t) {
                p.push(
                    format!("{at}.topics[{i}]"),
                    "must be a Kafka topic name (1-249 of letters, digits, `.`, `_`, `-`)",
                );
            } else if !seen.insert(t) {
                p.push(
                    format!("{at}.topics[{i}]"),
                    format!("duplicate topic `{t}`"),
                );
            }
        }
        if let Some(iam) = &self.aws_msk_iam {
            iam.validate(&self.brokers, &self.properties.0, at, p);
        }
        for key in self.properties.0.keys() {
            if RESERVED.contains(&key.as_str()) {
                p.push(
                    format!("{at}.properties.\"{key}\""),
                    "is set by sse-bridge and cannot be overridden",
                );
            }
        }
    }

    /// librdkafka configuration for a consumer of this source (no group, manual assignment).
    pub(crate) fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers.join(","))
            .set("client.id", client_id)
            .set("group.id", "sse-bridge-unused")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .set("socket.nagle.disable", "true")
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "5000")
            .set("topic.metadata.refresh.interval.ms", "5000");
        if self.aws_msk_iam.is_some() {
            // The token comes from the client's context (`msk_iam`).
            c.set("security.protocol", "SASL_SSL")
                .set("sasl.mechanism", "OAUTHBEARER");
        }
        for (k, v) in &self.properties.0 {
            c.set(k, v);
        }
        c
    }
}
