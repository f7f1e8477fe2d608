//! sse-bridge: backend change feeds as resumable Server-Sent Events.
//!
//! Module map, in the order an event flows through them:
//! - [`config`]: TOML + env settings, validated as a whole (every problem with its path).
//! - [`source`]: the closed set of source adapters, one shared reader per route:
//!   [`source::kafka`] (consumer of every partition; client plans; catch-up ranges) and
//!   [`source::mongo`] (change stream; opaque resume tokens; per-client catch-up streams).
//! - [`hub`]: a route's bus — a bounded ring of frames encoded once, shared by every
//!   client, doubling as the replay buffer.
//! - [`auth`]: JWT verification of clients (algorithm and key fixed by config), token
//!   extraction from header, query or cookie.
//! - [`event_id`]: the one place positions become SSE ids (and back).
//! - [`http`]: the stream server (streams written straight to sockets by
//!   [`http::native`]; everything else through warp: routes, CORS, JSON errors), per-client
//!   streams, the fan-out writers that write live events to every caught-up client of a
//!   route ([`http::fanout`]), SSE framing, and the admin server (`/metrics`, `/healthz`,
//!   `/readyz`).
//! - [`metrics`]: Prometheus families on one registry, per-route handles.
//!
//! A record or change read by a source becomes a frame (`id:` = route position after it),
//! is pushed to the hub; a fan-out writer writes it as-is to every client at the head, and
//! a client still catching up (or too slow for the writer) writes it from its own task,
//! under its own id while its position differs from the route's.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod event_id;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod source;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::config::Settings;
use crate::http::{App, RouteEntry};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A route's keys could not be loaded.
    #[error("{field}: {message}")]
    Auth {
        /// The field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A started service.
pub struct Running {
    /// Address of the stream server.
    pub http_addr: SocketAddr,
    /// Address of the admin server.
    pub admin_addr: SocketAddr,
    app: Arc<App>,
    stop_accepting: CancellationToken,
    sources: CancellationToken,
    admin_stop: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
}

/// Start every source and both servers; returns once the listeners are bound.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let metrics = Metrics::new(prometheus::Registry::new())?;
    let tracker = TaskTracker::new();
    let sources = CancellationToken::new();
    let mut routes = Vec::new();
    for rc in &settings.routes {
        let rm = metrics.route(&rc.name);
        let initial = rc.source.initial_position();
        let hub = Arc::new(Hub::new(
            initial,
            rc.replay.max_events,
            rc.replay.max_bytes,
            rm.clone(),
        ));
        tracker.spawn(
            hub.clone()
                .run_reaper(Duration::from_millis(250), sources.child_token()),
        );
        let fanout = http::fanout::FanOut::start(
            &hub,
            settings.server.fanout_writers(),
            settings.server.heartbeat_interval,
            &tracker,
            &sources,
        );
        let auth = match &rc.auth {
            config::AuthConfig::None => None,
            config::AuthConfig::Jwt(j) => Some(Arc::new(auth::Authenticator::new(j).map_err(
                |(field, msg)| StartError::Auth {
                    field: format!("routes.{}.auth.{field}", rc.name),
                    message: msg,
                },
            )?)),
        };
        let src = source::start(rc, hub, rm, &tracker, sources.child_token());
        routes.push(Arc::new(RouteEntry {
            name: rc.name.clone(),
            kind: rc.source.kind(),
            path: rc.path(),
            source: src,
            max_lag: rc.max_client_lag(),
            fanout,
            auth,
            access: rc.access(),
            selectors: rc.access().selectors(),
            open: Arc::default(),
        }));
    }
    let by_path: HashMap<_, _> = routes.iter().map(|r| (r.path.clone(), r.clone())).collect();
    let app = Arc::new(App {
        routes,
        by_path,
        server: settings.server.clone(),
        metrics,
        draining: CancellationToken::new(),
        streams: CancellationToken::new(),
        per_ip: Arc::default(),
        trusted_proxies: settings
            .server
            .trusted_proxies
            .iter()
            .filter_map(|n| config::access::parse_net(n).ok())
            .collect(),
    });
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let listener = bind(settings.server.listen).await?;
    let admin = bind(settings.server.admin_listen).await?;
    let http_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: settings.server.listen,
        source,
    })?;
    let admin_addr = admin.local_addr().map_err(|source| StartError::Bind {
        addr: settings.server.admin_listen,
        source,
    })?;
    let stop_accepting = CancellationToken::new();
    let admin_stop = CancellationToken::new();
    let grace = settings.server.shutdown_grace;
    let capacity = http::Capacity {
        max: connection_budget(settings.server.max_connections),
        open: Default::default(),
        refused: app.metrics.rejected.with_label_values(&["503"]),
    };
    info!(
        max_connections = capacity.max,
        "stream server connection limit"
    );
    tracker.spawn(http::serve(
        listener,
        http::routes::filter(app.clone()),
        stop_accepting.clone(),
        grace,
        "streams",
        Some(capacity),
        Some(app.clone()),
    ));
    tracker.spawn(http::serve(
        admin,
        http::admin::filter(app.clone()),
        admin_stop.clone(),
        Duration::from_secs(1),
        "admin",
        None,
        None,
    ));
    info!(%http_addr, %admin_addr, routes = app.routes.len(), "sse-bridge listening");
    Ok(Running {
        http_addr,
        admin_addr,
        app,
        stop_accepting,
        sources,
        admin_stop,
        tracker,
        grace,
    })
}

/// Descriptors kept out of the connection budget (sources, admin, logs, catch-up reads).
const FD_RESERVE: u64 = 512;

/// Raise the open-files soft limit to the hard limit (logging both) and derive the stream
/// server's connection limit from it, unless `configured` sets one.
fn connection_budget(configured: usize) -> usize {
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).ok();
    let raised = rlimit::increase_nofile_limit(u64::MAX).ok();
    let (soft_before, hard) = before.unwrap_or((0, 0));
    let soft = raised.unwrap_or(soft_before);
    info!(soft_before, soft, hard, "open files limit");
    if configured > 0 {
        return configured;
    }
    usize::try_from(soft.saturating_sub(FD_RESERVE).max(64)).unwrap_or(usize::MAX)
}

impl Running {
    /// Graceful shutdown: readiness fails at once, new streams are refused, open streams
    /// end, and everything stops within the grace period.
    pub async fn shutdown(self) {
        let window = self.app.server.drain_window;
        info!(drain_window = ?window, "draining");
        // Readiness fails and the listener closes at once (a reconnect goes to another
        // replica); open streams close at moments spread over the drain window, each
        // with a final heartbeat carrying its position.
        self.app.draining.cancel();
        self.stop_accepting.cancel();
        self.tracker.close();
        let deadline = tokio::time::sleep(self.grace + Duration::from_secs(1));
        tokio::pin!(deadline);
        let drained = async {
            let until = tokio::time::Instant::now() + window + Duration::from_millis(500);
            while tokio::time::Instant::now() < until && self.open_streams() > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            _ = &mut deadline => {}
            _ = drained => {}
        }
        info!(
            left = self.open_streams(),
            "drain window over; closing what is left"
        );
        self.app.streams.cancel();
        // Streams first, then sources and the admin server.
        tokio::select! {
            _ = &mut deadline => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        self.sources.cancel();
        self.admin_stop.cancel();
        tokio::select! {
            _ = self.tracker.wait() => info!("stopped"),
            _ = deadline => tracing::warn!("shutdown grace period over; exiting"),
        }
    }
}

impl Running {
    /// Streams open on every route.
    pub fn open_streams(&self) -> usize {
        self.app
            .routes
            .iter()
            .map(|r| r.open.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }
}

/// Run until `shutdown` completes, then shut down gracefully.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let running = start(settings).await?;
    shutdown.await;
    running.shutdown().await;
    Ok(())
}
