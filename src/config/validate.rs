//! Cross-field validation of [`Settings`]: every problem, each with its path.

use std::collections::HashSet;

use super::Settings;
pub use crate::problems::{ConfigError, Problems};

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_event_name(s: &str) -> bool {
    !s.is_empty() && !s.contains(['\r', '\n', '\0'])
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
    super::access::check_origins("server.cors_origins", &s.cors_origins, &mut p);
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
    if s.write_timeout.as_millis() < 100 {
        p.push("server.write_timeout", "must be at least 100ms");
    }
    if s.head_timeout.as_millis() < 100 || s.head_timeout > std::time::Duration::from_secs(60) {
        p.push("server.head_timeout", "must be between 100ms and 60s");
    }
    let c = &s.catchup;
    if c.max_readers == 0 {
        p.push("server.catchup.max_readers", "must be at least 1");
    }
    if c.max_readers_per_route == 0 || c.max_readers_per_route > c.max_readers {
        p.push(
            "server.catchup.max_readers_per_route",
            "must be at least 1 and at most server.catchup.max_readers",
        );
    }
    if c.buffer_events == 0 {
        p.push("server.catchup.buffer_events", "must be at least 1");
    }
    if c.buffer_bytes < 64 * 1024 {
        p.push(
            "server.catchup.buffer_bytes",
            "must be at least 65536 (64 KiB)",
        );
    }
    if c.wait > std::time::Duration::from_secs(60) {
        p.push("server.catchup.wait", "must be at most 60s");
    }
    if c.stall.as_millis() < 100 {
        p.push("server.catchup.stall", "must be at least 100ms");
    }
    let reader = c.reader_bytes();
    if s.memory_budget.is_some_and(|b| b < reader) {
        p.push(
            "server.memory_budget",
            format!("must hold at least one catch-up reader ({reader} bytes: server.catchup.buffer_bytes and its prefetch)"),
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
        } else if path == "/console" || path.starts_with("/console/") {
            p.push(
                format!("{at}.path"),
                "`/console` and the paths under it are the console's",
            );
        } else if path == "/client" || path.starts_with("/client/") {
            p.push(
                format!("{at}.path"),
                "`/client` and the paths under it serve the JavaScript client",
            );
        } else if !paths.insert(path.clone()) {
            p.push(format!("{at}.path"), format!("duplicate path `{path}`"));
        }
        if let Some(h) = &r.event_name.header {
            if h.is_empty() {
                p.push(format!("{at}.event_name.header"), "must not be empty");
            }
        }
        if let Some(x) = &r.event_name.reserved_prefix {
            if !is_event_name(x) || x.contains(char::is_whitespace) {
                p.push(
                    format!("{at}.event_name.reserved_prefix"),
                    "must be non-empty and hold no whitespace or NUL",
                );
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
        if r.memory_budget.is_some_and(|b| b < reader) {
            p.push(
                format!("{at}.memory_budget"),
                format!("must hold at least one catch-up reader ({reader} bytes: server.catchup.buffer_bytes and its prefetch)"),
            );
        }
        if let super::StartPosition::Last(0) = r.start {
            p.push(format!("{at}.start"), "`last` must be at least 1");
        }
        super::access::validate_route(&at, r, &s.cors_origins, &mut p);
        r.source.validate(&r.options(), &at, &mut p);
    }
    p.into_result()
}
