//! `source = { type = "nats", ... }`: typed config of the NATS JetStream adapter.

use serde::Deserialize;

use crate::problems::Problems;
pub use crate::source::ValueFormat;

/// A JetStream stream (or the subjects of it a filter picks) feeding one route. The
/// route's position is the stream sequence after the last message delivered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSourceConfig {
    /// Server URLs (`nats://host:4222`, `tls://host:4222`).
    pub servers: Vec<String>,
    /// The JetStream stream.
    pub stream: String,
    /// Only messages whose subject matches this filter (wildcards `*` and `>`).
    #[serde(default)]
    pub subject: Option<String>,
    /// A credentials file (`.creds`: user JWT and NKey seed).
    #[serde(default)]
    pub creds_file: Option<String>,
    /// A token to authenticate with.
    #[serde(default)]
    pub token: Option<String>,
    /// User name and password.
    #[serde(default)]
    pub user: Option<String>,
    /// Password of `user`.
    #[serde(default)]
    pub password: Option<String>,
    /// PEM certificates trusted for `tls://` servers besides the system's.
    #[serde(default)]
    pub tls_ca_file: Option<String>,
    /// How an envelope (`payload = "envelope"`) carries the message data.
    #[serde(default)]
    pub value_format: ValueFormat,
}

/// A stream name as JetStream accepts it.
fn is_stream_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
        })
}

/// A subject filter: dot-separated tokens, `*` a whole token, `>` the last one.
fn is_subject_filter(s: &str) -> bool {
    let tokens: Vec<&str> = s.split('.').collect();
    !s.is_empty()
        && tokens.iter().enumerate().all(|(i, t)| {
            !t.is_empty()
                && !t.chars().any(|c| c.is_whitespace() || c.is_control())
                && (!t.contains('*') || *t == "*")
                && (!t.contains('>') || (*t == ">" && i == tokens.len() - 1))
        })
}

impl NatsSourceConfig {
    /// Report every problem of this section under `at` (e.g. `routes[1].source`).
    pub(crate) fn validate(&self, at: &str, p: &mut Problems) {
        if self.servers.is_empty() {
            p.push(format!("{at}.servers"), "must not be empty");
        }
        for (i, s) in self.servers.iter().enumerate() {
            let ok = s
                .split_once("://")
                .is_some_and(|(scheme, rest)| matches!(scheme, "nats" | "tls") && !rest.is_empty());
            if !ok {
                p.push(
                    format!("{at}.servers[{i}]"),
                    "must be a `nats://host:port` or `tls://host:port` URL",
                );
            }
        }
        if !is_stream_name(&self.stream) {
            p.push(
                format!("{at}.stream"),
                "must be a JetStream stream name (no spaces, `.`, `*`, `>`, `/` or `\\`)",
            );
        }
        if let Some(f) = &self.subject {
            if !is_subject_filter(f) {
                p.push(
                    format!("{at}.subject"),
                    "must be a subject filter: dot-separated tokens, `*` for one token, `>` last",
                );
            }
        }
        let ways = [
            self.creds_file.is_some(),
            self.token.is_some(),
            self.user.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() > 1 {
            p.push(
                format!("{at}.creds_file"),
                "give one of `creds_file`, `token` or `user`/`password`",
            );
        }
        if self.user.is_some() != self.password.is_some() {
            p.push(
                format!("{at}.password"),
                "`user` and `password` go together",
            );
        }
    }

    /// What the console shows: the stream and its filter.
    pub(crate) fn describe(&self) -> String {
        match &self.subject {
            Some(f) => format!("{} ({f})", self.stream),
            None => self.stream.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_filters() {
        assert!(is_stream_name("ORDERS"));
        assert!(is_stream_name("orders-v2_x"));
        for bad in ["", "a.b", "a b", "a*", "a>", "a/b"] {
            assert!(!is_stream_name(bad), "{bad}");
        }
        for ok in ["orders", "orders.*", "orders.>", "a.*.c", ">"] {
            assert!(is_subject_filter(ok), "{ok}");
        }
        for bad in ["", "a..b", "a.>.c", "a*", "a.b*", "a b"] {
            assert!(!is_subject_filter(bad), "{bad}");
        }
    }
}
