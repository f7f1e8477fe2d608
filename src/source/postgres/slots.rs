//! Replication slots: their names, SQL on a replication session, making sure a replica's
//! anchor slot exists (inheriting the history of a sibling's when it is new), moving it
//! by the resume window, and dropping the anchors of replicas that went away.
//!
//! Each replica of a route keeps one persistent slot, its anchor:
//! `<prefix>_<route>__<replica>`. Nothing streams it; the replica moves it forward with
//! `pg_replication_slot_advance` to positions older than `resume_window` only, so the
//! WAL after them stays and any replica can re-read it for a client resuming within the
//! window. Every read — the route's shared reader (`<anchor>_l`) and each catch-up
//! (`<anchor>_c<n>`) — streams a temporary copy of the anchor, which the database drops
//! when its session ends, and which confirms everything it read (so a server shutting
//! down never waits for the bridge). A replica is alive while its `_l` slot is.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use pgwire_replication::{Lsn, ReplicationClient};
use tracing::{info, warn};

use super::{unavailable, TIMEOUT};
use crate::source::SourceError;

/// Most characters of the route's part of a slot name.
const ROUTE_PART: usize = 24;

/// A name part: lower-case `a-z0-9` words joined by single `_`.
pub fn sanitize(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

/// The start every slot of `route` shares: `<prefix>_<route>__`.
pub fn route_prefix(prefix: &str, route: &str) -> String {
    let mut r = sanitize(route);
    r.truncate(ROUTE_PART);
    format!("{prefix}_{}__", r.trim_end_matches('_'))
}

/// Longest anchor name: room is left for the suffixes of its temporary copies.
const ANCHOR_MAX: usize = 55;

/// This replica's anchor slot of `route` (a long replica name keeps its end, where pod
/// names are unique).
pub fn slot_name(prefix: &str, route: &str, replica: &str) -> String {
    let head = route_prefix(prefix, route);
    let rep = sanitize(replica);
    let room = ANCHOR_MAX - head.len();
    let rep = rep[rep.len().saturating_sub(room)..].trim_start_matches('_');
    format!("{head}{}", if rep.is_empty() { "0" } else { rep })
}

/// This replica's name: `replica`, else `$POD_NAME`, else `$HOSTNAME`, else the host's.
pub fn replica_name(configured: Option<&str>) -> String {
    configured
        .map(str::to_owned)
        .or_else(|| std::env::var("POD_NAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "replica".into())
}

/// Run `sql`; its rows as text.
pub async fn query(
    s: &mut ReplicationClient,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, SourceError> {
    let rows = tokio::time::timeout(TIMEOUT, s.simple_query(sql))
        .await
        .map_err(|_| unavailable("query timed out"))?
        .map_err(unavailable)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|c| c.map(|b| String::from_utf8_lossy(&b).into_owned()))
                .collect()
        })
        .collect())
}

/// The first column of the first row.
pub async fn scalar(s: &mut ReplicationClient, sql: &str) -> Result<Option<String>, SourceError> {
    Ok(query(s, sql)
        .await?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten()))
}

/// An LSN column.
pub fn lsn(v: Option<&String>) -> Option<u64> {
    v.and_then(|s| Lsn::parse(s).ok()).map(|l| l.as_u64())
}

/// The temporary copy of `anchor` the shared reader streams.
pub fn live_name(anchor: &str) -> String {
    format!("{anchor}_l")
}

/// A temporary copy of `anchor` for catch-up read `n`.
pub fn catchup_name(anchor: &str, n: u32) -> String {
    format!("{anchor}_c{}", n % 1_000_000)
}

/// A slot of the route as `pg_replication_slots` shows it.
#[derive(Debug, Clone)]
pub struct SlotRow {
    pub name: String,
    pub active: bool,
    pub temporary: bool,
    /// `lost`: invalidated (`max_slot_wal_keep_size`), useless.
    pub lost: bool,
    pub confirmed: Option<u64>,
}

/// The slots of the route (`prefix` from [`route_prefix`]) in this database.
pub async fn route_slots(
    s: &mut ReplicationClient,
    prefix: &str,
) -> Result<Vec<SlotRow>, SourceError> {
    let rows = query(
        s,
        &format!(
            "SELECT slot_name, active, coalesce(wal_status, ''), confirmed_flush_lsn, temporary \
             FROM pg_replication_slots WHERE left(slot_name, {}) = '{prefix}' \
             AND database = current_database() AND plugin = 'pgoutput'",
            prefix.len()
        ),
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| SlotRow {
            name: r[0].clone().unwrap_or_default(),
            active: r[1].as_deref() == Some("t"),
            lost: r[2].as_deref() == Some("lost"),
            confirmed: lsn(r[3].as_ref()),
            temporary: r[4].as_deref() == Some("t"),
        })
        .collect())
}

/// How this replica's slot came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// It was there.
    Kept,
    /// Copied from another replica's slot of the route (its history with it).
    Copied,
    /// Made new: it holds history from now on only.
    Created,
}

/// Make sure `slot` exists and is usable; its confirmed position and where it came from.
///
/// `fresh`: made new whatever there is (its history cannot be decoded: it reaches back
/// before the publication existed).
pub async fn ensure(
    s: &mut ReplicationClient,
    prefix: &str,
    slot: &str,
    fresh: bool,
) -> Result<(u64, Origin), SourceError> {
    let slots = route_slots(s, prefix).await?;
    if slots.iter().any(|r| r.name == slot && r.active) {
        return Err(unavailable(format!(
            "replication slot {slot} is in use by another session: give each replica its own `replica` name"
        )));
    }
    let slots: Vec<SlotRow> = slots.into_iter().filter(|r| !r.temporary).collect();
    if let Some(own) = slots.iter().find(|r| r.name == slot) {
        if !own.lost && !fresh {
            if let Some(c) = own.confirmed {
                return Ok((c, Origin::Kept));
            }
        }
        warn!(
            slot,
            lost = own.lost,
            "replication slot invalidated (max_slot_wal_keep_size) or undecodable; making it again"
        );
        query(s, &format!("SELECT pg_drop_replication_slot('{slot}')")).await?;
    }
    let sibling = slots
        .iter()
        .filter(|r| r.name != slot && !r.lost && !fresh)
        .filter_map(|r| Some((r.confirmed?, r)))
        .min_by_key(|(c, _)| *c);
    let origin = match sibling {
        Some((_, sib)) => {
            info!(slot, from = %sib.name, "copying a replication slot of this route");
            query(
                s,
                &format!(
                    "SELECT pg_copy_logical_replication_slot('{}', '{slot}')",
                    sib.name
                ),
            )
            .await?;
            Origin::Copied
        }
        None => {
            info!(slot, "creating a replication slot");
            query(
                s,
                &format!("SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"),
            )
            .await?;
            Origin::Created
        }
    };
    let c = lsn(scalar(
        s,
        &format!("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"),
    )
    .await?
    .as_ref())
    .ok_or_else(|| unavailable(format!("replication slot {slot} has no confirmed position")))?;
    Ok((c, origin))
}

/// Move `anchor` to `lsn` (when it is behind it).
pub async fn advance(s: &mut ReplicationClient, anchor: &str, lsn: u64) -> Result<(), SourceError> {
    query(
        s,
        &format!(
            "SELECT pg_replication_slot_advance('{anchor}', '{}') FROM pg_replication_slots \
             WHERE slot_name = '{anchor}' AND confirmed_flush_lsn < '{}'",
            Lsn::from_u64(lsn).to_pg_string(),
            Lsn::from_u64(lsn).to_pg_string()
        ),
    )
    .await
    .map(drop)
}

/// Drops the route's anchors of replicas that went away (no reader of theirs for
/// `after`, as this replica saw them), and invalidated ones.
pub struct Janitor {
    after: Duration,
    idle_since: HashMap<String, Instant>,
}

impl Janitor {
    pub fn new(after: Duration) -> Janitor {
        Janitor {
            after,
            idle_since: HashMap::new(),
        }
    }

    /// Look at the route's anchors (not `own`) and drop the stale ones; their names.
    pub async fn sweep(
        &mut self,
        s: &mut ReplicationClient,
        slots: &[SlotRow],
        own: &str,
    ) -> Vec<String> {
        let now = Instant::now();
        let alive = |anchor: &str| {
            slots
                .iter()
                .any(|r| r.temporary && r.name == live_name(anchor))
        };
        self.idle_since
            .retain(|n, _| slots.iter().any(|r| &r.name == n && !alive(n)));
        let mut dropped = Vec::new();
        for r in slots.iter().filter(|r| r.name != own && !r.temporary) {
            if r.active || alive(&r.name) {
                continue;
            }
            let since = *self.idle_since.entry(r.name.clone()).or_insert(now);
            if r.lost || now.duration_since(since) >= self.after {
                // Fails harmlessly if its replica came back meanwhile (it is active).
                match query(s, &format!("SELECT pg_drop_replication_slot('{}')", r.name)).await {
                    Ok(_) => {
                        warn!(slot = %r.name, lost = r.lost, idle = ?now.duration_since(since), "dropped a stale replication slot of this route");
                        self.idle_since.remove(&r.name);
                        dropped.push(r.name.clone());
                    }
                    Err(e) => {
                        warn!(slot = %r.name, error = %e, "could not drop a stale replication slot")
                    }
                }
            }
        }
        dropped
    }
}

/// The positions a slot may confirm: the newest seen longer than `window` ago.
pub struct Window {
    window: Duration,
    samples: VecDeque<(Instant, u64)>,
    confirmable: u64,
}

impl Window {
    pub fn new(window: Duration, confirmed: u64) -> Window {
        Window {
            window,
            samples: VecDeque::new(),
            confirmable: confirmed,
        }
    }

    /// Every commit before `lsn` was delivered (one sample a second is kept).
    pub fn saw(&mut self, lsn: u64) {
        let now = Instant::now();
        match self.samples.back() {
            Some((t, l)) if now.duration_since(*t) < Duration::from_secs(1) || *l >= lsn => {}
            _ => self.samples.push_back((now, lsn)),
        }
    }

    /// The position the slot may confirm now.
    pub fn confirmable(&mut self) -> u64 {
        let now = Instant::now();
        while let Some((t, l)) = self.samples.front().copied() {
            if now.duration_since(t) < self.window {
                break;
            }
            self.confirmable = self.confirmable.max(l);
            self.samples.pop_front();
        }
        self.confirmable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(sanitize("Orders-DB v2"), "orders_db_v2");
        assert_eq!(
            slot_name("sse_bridge", "orders", "sse-bridge-7d9f8c-abcde"),
            "sse_bridge_orders__sse_bridge_7d9f8c_abcde"
        );
        // One route's prefix is not another's: `__` ends the route part.
        assert!(!slot_name("sse_bridge", "orders_x", "a")
            .starts_with(&route_prefix("sse_bridge", "orders")));
        let long = slot_name("sse_bridge", &"r".repeat(80), &"p".repeat(80));
        assert!(long.len() <= 63, "{long}");
        assert!(long.starts_with(&route_prefix("sse_bridge", &"r".repeat(80))));
    }

    #[test]
    fn window_confirms_only_old_positions() {
        let mut w = Window::new(Duration::ZERO, 5);
        w.saw(10);
        assert_eq!(w.confirmable(), 10);
        let mut w = Window::new(Duration::from_secs(3600), 5);
        w.saw(10);
        assert_eq!(w.confirmable(), 5);
    }
}
