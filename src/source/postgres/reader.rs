//! The shared reader of a route: a temporary copy of this replica's anchor slot, read
//! from where the ring is (or, at start, from the oldest position the anchor keeps, to
//! warm the ring), publishing every change of the route's tables to the hub. An anchor
//! that is gone (dropped by an operator, invalidated by `max_slot_wal_keep_size`) is
//! made again — from a sibling's when one exists — and the changes it cannot give back
//! become an explicit reset. A monitor beside it moves the anchor to the newest position
//! older than `resume_window`, reads the server's WAL position (the lag) and the
//! anchor's (the oldest resumable), and drops stale anchors of the route.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pgwire_replication::{Lsn, ReplicationClient};

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::decode::{Decoder, Item};
use super::slots::{self, Janitor, Origin, Window};
use super::{pos_of, unavailable, PgPos, PgSource, TIMEOUT};
use crate::position::Position;
use crate::source::SourceError;

/// How often the monitor looks at the database.
const MONITOR: Duration = Duration::from_secs(5);

/// Changes published to the hub at once (a transaction's, or this many of a big one).
const BATCH: usize = 256;

pub(super) async fn run(src: Arc<PgSource>, cancel: CancellationToken) {
    tokio::join!(
        crate::source::reconnecting(&src.hub, "postgres", &cancel, || run_once(&src, &cancel)),
        monitor(&src, &cancel),
    );
}

impl PgSource {
    /// Make sure the publication is there (made, with `tables`, when allowed).
    async fn publication(&self, s: &mut ReplicationClient) -> Result<(), SourceError> {
        let name = &self.cfg.publication;
        let tables: Vec<String> = self
            .cfg
            .table_names()
            .iter()
            .map(|(s, t)| format!("{s}.{t}"))
            .collect();
        let have = slots::query(
            s,
            &format!(
                "SELECT p.pubname, t.schemaname || '.' || t.tablename FROM pg_publication p \
                 LEFT JOIN pg_publication_tables t ON t.pubname = p.pubname WHERE p.pubname = '{name}'"
            ),
        )
        .await?;
        if !self.cfg.create_publication {
            return match have.is_empty() {
                true => Err(unavailable(format!(
                    "publication {name} does not exist (create it, or set `create_publication = true`)"
                ))),
                false => Ok(()),
            };
        }
        let mut present: Vec<String> = have.into_iter().filter_map(|r| r[1].clone()).collect();
        let mut wanted = tables.clone();
        present.sort();
        wanted.sort();
        if present == wanted {
            return Ok(());
        }
        let exists = slots::scalar(
            s,
            &format!("SELECT count(*) FROM pg_publication WHERE pubname = '{name}'"),
        )
        .await?
        .as_deref()
            != Some("0");
        let sql = if exists {
            format!("ALTER PUBLICATION {name} SET TABLE {}", tables.join(", "))
        } else {
            format!("CREATE PUBLICATION {name} FOR TABLE {}", tables.join(", "))
        };
        info!(route = %self.route, %sql, "setting up the publication");
        slots::query(s, &sql).await?;
        Ok(())
    }
}

async fn run_once(src: &Arc<PgSource>, cancel: &CancellationToken) -> Result<(), SourceError> {
    // Set-up on a session of its own: the stream's start is known only after it.
    let mut s = src.session(&src.slot, None).await?;
    let system = PgSource::identify(&mut s).await?;
    src.publication(&mut s).await?;
    let fresh = src.fresh_anchor.swap(false, Ordering::Relaxed);
    let (confirmed, origin) = slots::ensure(&mut s, &src.slot_prefix, &src.slot, fresh).await?;
    let now = slots::lsn(
        slots::scalar(&mut s, "SELECT pg_current_wal_lsn()")
            .await?
            .as_ref(),
    )
    .unwrap_or(0);
    drop(s);
    src.system.store(system, Ordering::Relaxed);
    src.confirmed.store(confirmed, Ordering::Relaxed);
    src.wal_now.fetch_max(now, Ordering::Relaxed);

    let head = pos_of(&*src.hub.head().1);
    let resumable = PgPos {
        system,
        lsn: confirmed,
        next: 0,
    };
    let from = if !head.is_known() {
        // First start: warm the ring from the slot's window (or start at the present).
        let lsn = if src.warm {
            confirmed
        } else {
            now.max(confirmed)
        };
        let p = PgPos { lsn, ..resumable };
        src.hub.set_head(|h| *h = Box::new(p));
        p
    } else if head.system != system || head.lsn < confirmed {
        let cause = if head.system != system {
            "database_changed"
        } else if fresh {
            "publication_recreated"
        } else if origin == Origin::Kept {
            "slot_ahead"
        } else {
            "slot_lost"
        };
        warn!(route = %src.route, head = %PgPos::lsn_text(head.lsn), confirmed = %PgPos::lsn_text(confirmed), cause, "changes the route had not read are gone");
        src.hub
            .publish([src.reset_event(cause, head, confirmed, resumable)]);
        resumable
    } else {
        head
    };

    // Stream a temporary copy of the anchor: the database drops it with the session.
    let live = slots::live_name(&src.slot);
    let mut client = src.session(&live, Some(from.lsn)).await?;
    slots::query(
        &mut client,
        &format!(
            "SELECT pg_copy_logical_replication_slot('{}', '{live}', true)",
            src.slot
        ),
    )
    .await?;
    client.start().await.map_err(unavailable)?;
    tokio::time::timeout(TIMEOUT, client.wait_started())
        .await
        .map_err(|_| unavailable("START_REPLICATION timed out"))?
        .map_err(unavailable)?;
    info!(route = %src.route, slot = %src.slot, from = %PgPos::lsn_text(from.lsn), ?origin, "postgres source reading");
    let mut live = from.lsn >= now;
    src.hub.set_state(|s| {
        s.connected = true;
        s.last_error = None;
        s.live |= live;
    });

    let mut dec = Decoder::new(system, from);
    let mut window = Window::new(src.cfg.resume_window, confirmed);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut items, mut batch) = (Vec::new(), Vec::new());
    let go_live = |live: &mut bool| {
        if !*live {
            *live = true;
            info!(route = %src.route, "postgres source live");
            src.hub.set_state(|s| s.live = true);
        }
    };
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => {
                src.advance_to.fetch_max(window.confirmable(), Ordering::Relaxed);
                let head = pos_of(&*src.hub.head().1);
                let behind = src.wal_now.load(Ordering::Relaxed).saturating_sub(head.lsn);
                src.metrics.set_lag(&src.cfg.publication, 0, behind as i64);
            }
            ev = client.recv() => {
                let ev = match ev {
                    Ok(Some(ev)) => ev,
                    Ok(None) => return Err(unavailable("the replication stream ended")),
                    Err(e) => {
                        let e = e.to_string();
                        if e.contains("publication") && e.contains("does not exist") {
                            // It exists (checked before starting): the slot reaches
                            // back before it was made, and cannot decode past that.
                            warn!(route = %src.route, error = %e, "the slot's history predates the publication; the anchor will be made again");
                            src.fresh_anchor.store(true, Ordering::Relaxed);
                        }
                        return Err(unavailable(e));
                    }
                };
                tracing::trace!(route = %src.route, event = ?ev, "replication event");
                dec.feed(&src.encoder, ev, &mut items)?;
                for item in items.drain(..) {
                    match item {
                        Item::Change(ev, _) => {
                            src.metrics.source_records.inc();
                            batch.push(ev);
                            if batch.len() >= BATCH {
                                src.hub.publish(batch.drain(..));
                            }
                        }
                        Item::Begin(lsn) => window.saw(lsn),
                        Item::Commit { end, .. } => {
                            src.hub.publish(batch.drain(..));
                            // The copy confirms what it read; the anchor keeps the window.
                            client.update_applied_lsn(Lsn::from_u64(end));
                            if end >= now {
                                go_live(&mut live);
                            }
                        }
                        Item::Sent(w) => {
                            window.saw(w);
                            client.update_applied_lsn(Lsn::from_u64(w));
                            src.wal_now.fetch_max(w, Ordering::Relaxed);
                            let idle = PgPos { system, lsn: w, next: 0 };
                            src.hub.set_head(|h| {
                                if pos_of(&**h).lsn < w {
                                    *h = Box::new(idle);
                                }
                            });
                            go_live(&mut live);
                        }
                    }
                }
            }
        }
    }
}

/// Every [`MONITOR`]: the server's WAL position, this slot's confirmed position, and
/// stale slots of the route dropped.
async fn monitor(src: &Arc<PgSource>, cancel: &CancellationToken) {
    let mut janitor = Janitor::new(src.cfg.stale_slot_after);
    let mut warned = false;
    loop {
        let pass = async {
            let mut s = src.session(&src.slot, None).await?;
            if let Some(l) = slots::lsn(
                slots::scalar(&mut s, "SELECT pg_current_wal_lsn()")
                    .await?
                    .as_ref(),
            ) {
                src.wal_now.fetch_max(l, Ordering::Relaxed);
            }
            let to = src.advance_to.load(Ordering::Relaxed);
            if to > src.confirmed.load(Ordering::Relaxed) {
                slots::advance(&mut s, &src.slot, to).await?;
            }
            let rows = slots::route_slots(&mut s, &src.slot_prefix).await?;
            match rows
                .iter()
                .find(|r| r.name == src.slot && !r.lost)
                .and_then(|r| r.confirmed)
            {
                Some(c) => src.confirmed.store(c, Ordering::Relaxed),
                // Dropped by an operator or invalidated under a running reader: made
                // again, ids before it are no longer resumable (the live stream goes on).
                None if src.system() != 0 => {
                    let (c, origin) =
                        slots::ensure(&mut s, &src.slot_prefix, &src.slot, false).await?;
                    warn!(route = %src.route, slot = %src.slot, ?origin, "the anchor slot was gone; made again");
                    src.confirmed.store(c, Ordering::Relaxed);
                }
                None => {}
            }
            janitor.sweep(&mut s, &rows, &src.slot).await;
            if !warned {
                warned = true;
                let keep = slots::scalar(&mut s, "SHOW max_slot_wal_keep_size").await?;
                if keep.as_deref() == Some("-1") {
                    warn!(route = %src.route, "max_slot_wal_keep_size is unlimited: a slot that stops moving keeps WAL without bound (the bridge drops stale slots of its routes; set a limit as a last line of defence)");
                }
            }
            Ok::<_, SourceError>(())
        };
        if let Err(e) = pass.await {
            debug!(route = %src.route, error = %e, "postgres monitor pass failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(MONITOR) => {}
        }
    }
}
