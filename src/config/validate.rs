//! Cross-field validation of [`Settings`]: every problem, each with its path.

use std::collections::HashSet;
use std::fmt;

use super::Settings;
use crate::source::SourceConfig;

/// One configuration problem: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the field, e.g. `routes[1].source.topics`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// An invalid configuration: every problem found.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub(crate) fn single(path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            problems: vec![Problem {
                path: path.to_owned(),
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// Collects problems while walking the settings.
#[derive(Debug, Default)]
pub struct Problems(pub(super) Vec<Problem>);

impl Problems {
    /// True when nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Record a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_event_name(s: &str) -> bool {
    !s.is_empty() && !s.contains(['\r', '\n', '\0'])
}

/// Check a list of CORS origins at `path`.
pub(super) fn check_origins(path: &str, origins: &[String], p: &mut Problems) {
    for (i, origin) in origins.iter().enumerate() {
        let ok = origin == "*"
            || ((origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && !origin.contains(char::is_whitespace));
        if !ok {
            p.push(
                format!("{path}[{i}]"),
                "must be `*` or an origin like `https://dash.example.com` (scheme and host, no path)",
            );
        }
    }
}

pub(super) fn validate(settings: &Settings) -> Result<(), ConfigError> {
    let mut p = Problems::default();
    let s = &settings.server;
    if s.listen == s.admin_listen && s.listen.port() != 0 {
        p.push("server.admin_listen", "must differ from server.listen");
    }
    if s.heartbeat_interval.as_millis() < 100 {
        p.push("server.heartbeat_interval", "must be at least 100ms");
    }
    if s.retry.as_millis() == 0 {
        p.push("server.retry", "must be greater than zero");
    }
    check_origins("server.cors_origins", &s.cors_origins, &mut p);
    for (i, n) in s.trusted_proxies.iter().enumerate() {
        if let Err(e) = super::access::parse_net(n) {
            p.push(format!("server.trusted_proxies[{i}]"), e);
        }
    }
    if s.client_ip_header.is_some() && s.trusted_proxies.is_empty() {
        p.push(
            "server.client_ip_header",
            "needs server.trusted_proxies (a header from anyone else is not believed)",
        );
    }
    if s.drain_window >= s.shutdown_grace {
        p.push(
            "server.drain_window",
            "must be shorter than server.shutdown_grace (streams drain, then the process exits)",
        );
    }
    if s.max_connection_age.is_some_and(|a| a.as_secs() < 1) {
        p.push("server.max_connection_age", "must be at least 1s");
    }
    let mp = &s.multiplex_path;
    if !mp.is_empty() && (!mp.starts_with('/') || mp.ends_with('/') || mp.contains(['?', '#', ' ']))
    {
        p.push(
            "server.multiplex_path",
            "must start with `/`, not end with `/`, and hold no `?`, `#` or spaces (empty: no multiplexed path)",
        );
    }
    if !mp.is_empty() && settings.routes.iter().any(|r| &r.path() == mp) {
        p.push(
            "server.multiplex_path",
            format!("`{mp}` is also a route's path"),
        );
    }
    if settings.routes.is_empty() {
        p.push("routes", "at least one route is required");
    }
    let mut names = HashSet::new();
    let mut paths = HashSet::new();
    for (i, r) in settings.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        if !is_name(&r.name) {
            p.push(
                format!("{at}.name"),
                "must be 1-64 characters of letters, digits, `-` or `_`",
            );
        } else if !names.insert(r.name.clone()) {
            p.push(
                format!("{at}.name"),
                format!("duplicate route name `{}`", r.name),
            );
        }
        let path = r.path();
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) || path.len() < 2 {
            p.push(
                format!("{at}.path"),
                "must start with `/` and hold no `?`, `#` or spaces",
            );
        } else if path.ends_with('/') {
            p.push(format!("{at}.path"), "must not end with `/`");
        } else if !paths.insert(path.clone()) {
            p.push(format!("{at}.path"), format!("duplicate path `{path}`"));
        }
        if let Some(h) = &r.event_name.header {
            if h.is_empty() {
                p.push(format!("{at}.event_name.header"), "must not be empty");
            }
        }
        if let Some(d) = &r.event_name.default {
            if !is_event_name(d) {
                p.push(
                    format!("{at}.event_name.default"),
                    "must be non-empty and hold no CR, LF or NUL",
                );
            }
        }
        if r.replay.max_events == 0 {
            p.push(format!("{at}.replay.max_events"), "must be at least 1");
        }
        if r.replay.max_bytes < 1024 {
            p.push(format!("{at}.replay.max_bytes"), "must be at least 1024");
        }
        if r.max_client_lag == Some(0) {
            p.push(format!("{at}.max_client_lag"), "must be at least 1");
        } else if r.max_client_lag.is_some_and(|l| l > r.replay.max_events) {
            p.push(
                format!("{at}.max_client_lag"),
                "must not exceed replay.max_events (a client that far behind has left the buffer)",
            );
        }
        if let super::StartPosition::Last(0) = r.start {
            p.push(format!("{at}.start"), "`last` must be at least 1");
        }
        let payload_ok = matches!(
            (&r.source, r.payload_mode()),
            (
                SourceConfig::Kafka(_),
                super::PayloadMode::Value | super::PayloadMode::Envelope
            ) | (
                SourceConfig::Mongo(_),
                super::PayloadMode::Change | super::PayloadMode::Document
            )
        );
        if !payload_ok {
            let allowed = match &r.source {
                SourceConfig::Kafka(_) => "`value` or `envelope`",
                SourceConfig::Mongo(_) => "`change` or `document`",
            };
            p.push(
                format!("{at}.payload"),
                format!("must be {allowed} for a {} source", r.source.kind()),
            );
        }
        super::access::validate_route(&at, r, &s.cors_origins, &mut p);
        match &r.source {
            SourceConfig::Kafka(k) => k.validate(&format!("{at}.source"), &mut p),
            SourceConfig::Mongo(m) => {
                m.validate(&format!("{at}.source"), &mut p);
                if r.event_name.header.is_some() {
                    p.push(
                        format!("{at}.event_name.header"),
                        "is for Kafka sources only",
                    );
                }
                if r.start != super::StartPosition::Latest {
                    p.push(
                        format!("{at}.start"),
                        "a mongodb source supports only `latest` (use `?since=` for history)",
                    );
                }
            }
        }
    }
    if p.0.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems: p.0 })
    }
}
