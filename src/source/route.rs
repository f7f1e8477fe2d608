//! What an adapter reads of its route besides its own `source` section: the route's
//! name, where clients without an id start, how events are named, what `data:` carries,
//! the replay buffer and the selectors its events must carry values for. These are
//! fields of `[[routes]]` (the config layer builds [`RouteOptions`] from them); each
//! adapter checks which values it supports.

use serde::Deserialize;

use crate::bus::Selector;

/// Where a client that sends no event id starts.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartPosition {
    /// Only events that arrive after the client connected.
    #[default]
    Latest,
    /// Everything the source still retains.
    Earliest,
    /// The last N events of every partition, then live.
    Last(u64),
}

/// How the SSE `event:` name of an event is chosen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventNameConfig {
    /// Record header whose (UTF-8, single-line) value names the event (sources with
    /// headers only).
    pub header: Option<String>,
    /// Name used otherwise. Kafka default: `message` (no `event:` line, so `onmessage`
    /// fires). MongoDB default: the change's `operationType`; when set, every change gets
    /// this name.
    pub default: Option<String>,
    /// Put before a name taken from a record that is one the bridge gives events itself
    /// (`reset`, `expired`, and Kafka's `binary` and `delete`), so a producer cannot
    /// impersonate them: with the default, a header `reset` names the event
    /// `record.reset`.
    pub reserved_prefix: Option<String>,
}

/// The default of [`EventNameConfig::reserved_prefix`].
pub const RESERVED_PREFIX: &str = "record.";

impl EventNameConfig {
    /// The prefix of reserved names taken from records.
    pub fn reserved_prefix(&self) -> &str {
        self.reserved_prefix.as_deref().unwrap_or(RESERVED_PREFIX)
    }

    /// The constant name, or `fallback`.
    pub fn default_or<'a>(&'a self, fallback: &'a str) -> &'a str {
        self.default.as_deref().unwrap_or(fallback)
    }
}

/// Bounds of a route's in-memory replay buffer (also the live fan-out ring).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayConfig {
    /// Most events kept.
    pub max_events: usize,
    /// Most bytes of encoded frames kept.
    pub max_bytes: usize,
    /// At start-up, pre-fill the buffer from the source's recent history so that clients
    /// reconnecting after a restart resume from memory.
    pub warm_start: bool,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            max_events: 10_000,
            max_bytes: 64 * 1024 * 1024,
            warm_start: true,
        }
    }
}

/// The route-level settings an adapter reads.
#[derive(Debug, Clone)]
pub struct RouteOptions {
    /// Route name (logs, client ids, reset events).
    pub name: String,
    /// Start of clients that send no id.
    pub start: StartPosition,
    /// Event naming.
    pub event_name: EventNameConfig,
    /// What `data:` carries: one of the adapter's payload modes; `None`: its default.
    pub payload: Option<String>,
    /// Replay buffer bounds.
    pub replay: ReplayConfig,
    /// The selectors the route's events carry values for (its filters).
    pub selectors: Vec<Selector>,
}
