//! The set of running routes: starting one (hub, reaper, fan-out writers, source), and
//! reloading the configuration — routes added, removed or changed are started and
//! stopped; clients of unchanged routes keep their streams.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::bus::{Budget, Hub};
use crate::config::{AuthConfig, ConfigError, RouteConfig, ServerConfig, Settings};
use crate::http::{fanout::FanOut, App, RouteEntry, RouteTable};
use crate::metrics::Metrics;
use crate::source::{CatchupLimits, CatchupPool};
use crate::{auth, source, StartError};

/// What the route starts under.
pub struct Scope<'a> {
    /// Metric families.
    pub metrics: &'a Metrics,
    /// Tasks of the process.
    pub tracker: &'a TaskTracker,
    /// Parent of every route's source token.
    pub sources: &'a CancellationToken,
    /// Parent of every route's streams token.
    pub streams: &'a CancellationToken,
    /// Server settings.
    pub server: &'a ServerConfig,
    /// The process-wide bound on catch-up readers.
    pub catchup: &'a Arc<CatchupLimits>,
}

/// The token verifier of route `rc` (its key files read now), if it authenticates.
fn authenticator(rc: &RouteConfig) -> Result<Option<Arc<auth::Authenticator>>, StartError> {
    match &rc.auth {
        AuthConfig::None => Ok(None),
        AuthConfig::Jwt(j) => auth::Authenticator::new(j)
            .map(|a| Some(Arc::new(a)))
            .map_err(|(field, msg)| StartError::Auth {
                field: format!("routes.{}.auth.{field}", rc.name),
                message: msg,
            }),
    }
}

/// Start route `rc` (whose loaded settings are `raw`).
pub fn start_route(
    rc: &RouteConfig,
    raw: serde_json::Value,
    scope: &Scope<'_>,
) -> Result<Arc<RouteEntry>, StartError> {
    let auth = authenticator(rc)?;
    let stop = scope.sources.child_token();
    if let Some(a) = &auth {
        // Keys from a URL: fetched now and kept fresh until the route stops.
        a.start_refresh(scope.tracker, stop.child_token());
    }
    let rm = scope.metrics.route(&rc.name);
    let limit = rc.memory_budget(&scope.server.catchup);
    rm.budget_limit.set(limit as i64);
    let budget = Budget::new(
        limit,
        Some(scope.catchup.memory().clone()),
        Some(rm.budget_used.clone()),
    );
    let hub = Arc::new(Hub::new(
        rc.source.initial_position(),
        rc.replay.max_events,
        rc.replay.max_bytes,
        rm.clone(),
        budget.clone(),
    ));
    scope.tracker.spawn(
        hub.clone()
            .run_reaper(Duration::from_millis(250), stop.child_token()),
    );
    let fanout = FanOut::start(
        &hub,
        scope.server.fanout_writers(),
        scope.server.heartbeat_interval,
        scope.tracker,
        &stop,
    );
    let catchup = CatchupPool::new(
        scope.catchup.clone(),
        budget,
        rm.clone(),
        scope.tracker.clone(),
        stop.child_token(),
    );
    let src = source::start(
        &rc.source,
        &rc.options(),
        source::Wiring {
            hub: hub.clone(),
            catchup,
            tracker: scope.tracker,
            cancel: stop.child_token(),
        },
    );
    Ok(Arc::new(RouteEntry {
        name: rc.name.clone(),
        kind: rc.source.kind(),
        reads: rc.source.describe(),
        path: rc.path(),
        source: src,
        hub,
        max_lag: rc.max_client_lag(),
        fanout,
        auth: parking_lot::RwLock::new(auth),
        access: rc.access(),
        selectors: rc.selectors(),
        open: Arc::default(),
        raw,
        stop,
        streams: scope.streams.child_token(),
    }))
}

/// Start every route of `settings`.
pub fn start_all(settings: &Settings, scope: &Scope<'_>) -> Result<RouteTable, StartError> {
    let mut routes = Vec::new();
    for (i, rc) in settings.routes.iter().enumerate() {
        let raw = settings.raw_routes.get(i).cloned().unwrap_or_default();
        routes.push(start_route(rc, raw, scope)?);
    }
    Ok(RouteTable::new(routes))
}

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Routes started.
    pub added: Vec<String>,
    /// Routes stopped (their clients' streams ended).
    pub removed: Vec<String>,
    /// Routes restarted with new settings (their clients' streams ended; they resume).
    pub changed: Vec<String>,
    /// Routes left running, clients untouched.
    pub unchanged: Vec<String>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new configuration is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A new route could not start.
    #[error("{0}")]
    Start(#[from] StartError),
}

/// Apply the configuration in `file` to the running routes. Server settings are not
/// reloaded (a difference is logged); an invalid file changes nothing.
pub fn reload(app: &App, file: &Path, scope: &Scope<'_>) -> Result<Reloaded, ReloadError> {
    let new = Settings::load(file)?;
    if new.server != app.server {
        warn!("server settings differ from the running ones; they apply at the next restart");
    }
    let old = app.table();
    let old_by_name: HashMap<&str, &Arc<RouteEntry>> =
        old.routes.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut out = Reloaded::default();
    let mut routes = Vec::new();
    let mut replaced = Vec::new();
    for (i, rc) in new.routes.iter().enumerate() {
        let raw = new.raw_routes.get(i).cloned().unwrap_or_default();
        match old_by_name.get(rc.name.as_str()) {
            Some(r) if r.raw == raw => {
                // Key files are read again (a rotated JWKS or secret applies); a file
                // that cannot be read keeps the keys in use. Keys from a URL refresh
                // themselves and are kept.
                let remote = r.auth.read().as_ref().is_some_and(|a| a.is_remote());
                if !remote {
                    match authenticator(rc) {
                        Ok(a) => *r.auth.write() = a,
                        Err(e) => {
                            warn!(route = %rc.name, "key files not reloaded, the keys in use are kept: {e}")
                        }
                    }
                }
                out.unchanged.push(rc.name.clone());
                routes.push((*r).clone());
            }
            Some(r) => {
                // Start the new one first: a failure leaves everything as it was.
                routes.push(start_route(rc, raw, scope)?);
                replaced.push((*r).clone());
                out.changed.push(rc.name.clone());
            }
            None => {
                routes.push(start_route(rc, raw, scope)?);
                out.added.push(rc.name.clone());
            }
        }
    }
    for r in &old.routes {
        if !new.routes.iter().any(|rc| rc.name == r.name) {
            replaced.push(r.clone());
            out.removed.push(r.name.clone());
        }
    }
    app.set_table(RouteTable::new(routes));
    for r in replaced {
        r.streams.cancel();
        r.stop.cancel();
    }
    info!(added = ?out.added, removed = ?out.removed, changed = ?out.changed, unchanged = out.unchanged.len(), "configuration reloaded");
    Ok(out)
}
