//! The PostgreSQL adapter (`type = "postgres"`): logical replication with the built-in
//! `pgoutput` plugin from a publication. Each replica of a route keeps an anchor slot
//! holding the resume window; one replication session streams a temporary copy of it
//! into the route's hub (`reader`); a client resuming from a position the hub no longer
//! holds reads another temporary copy from there (`catchup`); client starts are planned
//! in `plan`; slots, their names, the window and the cleanup of stale ones live in
//! `slots`. The position is the commit
//! LSN of a transaction and the index of a change in it ([`PgPos`]).

mod catchup;
mod config;
mod decode;
mod encode;
mod pgoutput;
mod plan;
mod position;
mod reader;
mod slots;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use config::PostgresSourceConfig;
pub use position::PgPos;

use crate::bus::{Cursor, Hub, Selector};
use crate::metrics::RouteMetrics;
use crate::position::Position;
use crate::problems::Problems;
use crate::source::{
    parse_section, spawn, Adapter, CatchupPool, ClientStart, Plan, Reader, RouteOptions,
    SourceError, SourceSpec, StartPosition, Wiring,
};
use crate::sse::{self, Frame};

/// The PostgreSQL adapter (`type = "postgres"`).
pub const ADAPTER: Adapter = Adapter {
    name: "postgres",
    id_kind: position::KIND,
    parse: parse_section::<PostgresSourceConfig>,
};

impl SourceSpec for PostgresSourceConfig {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn validate(&self, route: &RouteOptions, at: &str, p: &mut Problems) {
        PostgresSourceConfig::validate(self, &format!("{at}.source"), p);
        if let Some(d) = &route.event_name.default {
            if encode::RESERVED.contains(&d.as_str()) {
                p.push(
                    format!("{at}.event_name.default"),
                    format!("`{d}` is a name the bridge gives events itself"),
                );
            }
        }
        if route.event_name.header.is_some() {
            p.push(
                format!("{at}.event_name.header"),
                "row changes have no headers (the event name is the operation, or `default`)",
            );
        }
        if let Some(mode) = &route.payload {
            if !encode::Payload::NAMES.contains(&mode.as_str()) {
                p.push(
                    format!("{at}.payload"),
                    "must be `change` or `row` for a postgres source",
                );
            }
        }
        if let StartPosition::Last(_) = route.start {
            p.push(
                format!("{at}.start"),
                "a postgres route starts at `latest` or `earliest` (changes are not counted per table)",
            );
        }
    }

    /// `key` compares `schema.table`; `field:PATH` a field of the change (`new.status`).
    fn supports(&self, selector: &Selector) -> bool {
        matches!(
            selector,
            Selector::Key | Selector::Field(_) | Selector::Event
        )
    }

    fn describe(&self) -> String {
        PostgresSourceConfig::describe(self)
    }

    fn initial_position(&self) -> Box<dyn Position> {
        Box::new(PgPos::default())
    }

    fn start(&self, route: &RouteOptions, w: Wiring<'_>) -> Arc<dyn crate::source::Source> {
        let src = PgSource::new(route, self.clone(), w.hub, w.catchup);
        spawn(src, w.tracker, w.cancel)
    }
}

impl Reader for PgSource {
    type Position = PgPos;

    async fn run(self: Arc<Self>, cancel: CancellationToken) {
        reader::run(self, cancel).await
    }

    async fn plan(self: &Arc<Self>, start: ClientStart) -> Result<Plan, SourceError> {
        self.plan_client(start).await
    }

    fn attach(self: &Arc<Self>, cursor: Cursor) -> Plan {
        self.attach_cursor(cursor)
    }
}

/// Timeout of connecting, of queries and of a silent catch-up session.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A running PostgreSQL source of one route.
struct PgSource {
    route: String,
    cfg: PostgresSourceConfig,
    conn: config::Conn,
    encoder: encode::Encoder,
    start: StartPosition,
    warm: bool,
    hub: Arc<Hub>,
    catchup: CatchupPool,
    metrics: RouteMetrics,
    /// This replica's slot, and the start of every slot name of the route.
    slot: String,
    slot_prefix: String,
    /// The cluster's system identifier; 0 until connected.
    system: AtomicU64,
    /// This replica's slot's confirmed position (the oldest resumable), as last read.
    confirmed: AtomicU64,
    /// The server's WAL position, as last read.
    wal_now: AtomicU64,
    /// Where the anchor may move: the newest position older than the resume window.
    advance_to: AtomicU64,
    /// The anchor is to be made new at the next connection (see `reader`).
    fresh_anchor: std::sync::atomic::AtomicBool,
}

/// A PostgreSQL failure, as clients are told of it.
fn unavailable(e: impl std::fmt::Display) -> SourceError {
    SourceError::Unavailable(format!("postgres: {e}"))
}

/// The route position in a box the route's hub handed out.
fn pos_of(p: &dyn Position) -> PgPos {
    PgPos::of(p).unwrap_or_default()
}

impl PgSource {
    fn new(
        route: &RouteOptions,
        cfg: PostgresSourceConfig,
        hub: Arc<Hub>,
        catchup: CatchupPool,
    ) -> Arc<PgSource> {
        let tables: HashSet<(String, String)> = cfg.table_names().into_iter().collect();
        let replica = slots::replica_name(cfg.replica.as_deref());
        Arc::new(PgSource {
            route: route.name.clone(),
            conn: cfg.conn().expect("validated"),
            encoder: encode::Encoder {
                payload: encode::Payload::of(route.payload.as_deref()),
                event_name: route.event_name.clone(),
                selectors: route.selectors.clone(),
                tables: (!tables.is_empty()).then_some(tables),
            },
            start: route.start,
            warm: route.replay.warm_start,
            metrics: hub.metrics().clone(),
            slot: slots::slot_name(&cfg.slot_prefix, &route.name, &replica),
            slot_prefix: slots::route_prefix(&cfg.slot_prefix, &route.name),
            cfg,
            hub,
            catchup,
            system: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            wal_now: AtomicU64::new(0),
            advance_to: AtomicU64::new(0),
            fresh_anchor: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn system(&self) -> u64 {
        self.system.load(Ordering::Relaxed)
    }

    /// A replication session on `slot`, waiting for its start (from `start`, else
    /// from the slot's confirmed position) while queries run on it.
    async fn session(
        &self,
        slot: &str,
        start: Option<u64>,
    ) -> Result<pgwire_replication::ReplicationClient, SourceError> {
        let cfg = self
            .conn
            .session(slot, &self.cfg.publication)
            .with_start_lsn(pgwire_replication::Lsn::from_u64(start.unwrap_or(0)))
            .with_status_interval(Duration::from_secs(1))
            .with_wakeup_interval(Duration::from_secs(1));
        pgwire_replication::ReplicationClient::connect_gated(cfg)
            .await
            .map_err(unavailable)
    }

    /// The cluster's system identifier, from a session.
    async fn identify(s: &mut pgwire_replication::ReplicationClient) -> Result<u64, SourceError> {
        let id = tokio::time::timeout(TIMEOUT, s.identify_system())
            .await
            .map_err(|_| unavailable("IDENTIFY_SYSTEM timed out"))?
            .map_err(unavailable)?;
        id.system_id
            .parse()
            .map_err(|_| unavailable("IDENTIFY_SYSTEM: bad system identifier"))
    }

    /// The frame of an `event: reset`: positions from `requested` on are gone (`cause`);
    /// the slot holds history from `earliest`; the route goes on at `next`.
    fn reset_frame(&self, cause: &str, requested: PgPos, earliest: u64, next: PgPos) -> Frame {
        let data = serde_json::json!({
            "reason": "position_unavailable",
            "route": self.route,
            "publication": self.cfg.publication,
            "requested": { "lsn": PgPos::lsn_text(requested.lsn), "index": requested.next },
            "earliest": PgPos::lsn_text(earliest),
            "resumed_from": { "lsn": PgPos::lsn_text(next.lsn), "index": next.next },
            "cause": cause,
        });
        sse::frame(
            &crate::event_id::encode(&next),
            Some("reset"),
            Some(&data.to_string()),
        )
    }

    /// An `event: reset` moving the route to `next`.
    fn reset_event(
        &self,
        cause: &str,
        requested: PgPos,
        earliest: u64,
        next: PgPos,
    ) -> crate::bus::Event {
        crate::bus::Event {
            frame: self.reset_frame(cause, requested, earliest, next),
            step: next.restart(),
            timestamp_ms: None,
            attrs: None,
        }
    }
}
