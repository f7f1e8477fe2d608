//! sse-bridge: backend change feeds as resumable Server-Sent Events.
//!
//! Module map, by floor (a module imports only from floors below it; `tests/layering.rs`
//! enforces this), in the order an event flows:
//! - floor 0: [`position`] (the `Position` trait every adapter's position implements, and
//!   the `Step` each event moves it by), [`event_id`] (the one wire form of ids), [`sse`]
//!   (SSE frames), `problems` (config problems with their paths), `metrics`.
//! - floor 1: `bus` — a route's ring of frames encoded once, shared by every client,
//!   doubling as the replay buffer; client cursors and filters; memory budgets. It knows
//!   no source.
//! - floor 2: [`source`] — the plug (`Adapter`, `SourceSpec`, `Source`, the closed list
//!   `ADAPTERS`), shared bounded catch-up for every adapter (`CatchupPool`), and one
//!   folder per adapter ([`source::kafka`], [`source::mongo`], [`source::nats`],
//!   [`source::postgres`]);
//!   `auth` — JWT verification and its config.
//! - floor 3: [`config`] — the file's shape (server, routes), env overrides (routes by
//!   name), validation;
//!   each adapter parses and checks its own `source` section.
//! - floor 4: `http` — the one stream path (`native` reads, `open` checks and plans,
//!   `stream` and `fanout` write), the warp surface (console, the JavaScript client at
//!   `/client/`, preflights, errors, admin).
//! - floor 5: this crate root (start, drain, run), `route_set` (starting routes,
//!   reloading) and `watch` (reloading when the configuration or its key files change).
//!
//! A record read by an adapter becomes a frame whose id is the route position after it,
//! is pushed to the bus; a fan-out writer writes it as-is to every client at the head, and
//! a client still catching up writes it from its own task, under its own id while its
//! position differs from the route's. `docs/architecture.md` walks a record and a resume
//! through these by function name.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod bus;
pub mod config;
pub mod event_id;
mod http;
mod metrics;
pub mod position;
mod problems;
mod route_set;
pub mod source;
pub mod sse;
mod watch;

pub use route_set::{ReloadError, Reloaded};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::config::Settings;
use crate::http::App;
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
    catchup: Arc<source::CatchupLimits>,
}

/// Start every source and both servers; returns once the listeners are bound.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let (rdkafka, features) = source::kafka::librdkafka();
    info!(version = env!("CARGO_PKG_VERSION"), commit = env!("SSE_BRIDGE_COMMIT"), %rdkafka, %features, "sse-bridge starting");
    let missing = source::kafka::missing_features(&features);
    if !missing.is_empty() {
        tracing::warn!(
            ?missing,
            "librdkafka lacks features some Kafka clusters need"
        );
    }
    let metrics = Metrics::new(prometheus::Registry::new())?;
    let tracker = TaskTracker::new();
    let sources = CancellationToken::new();
    let streams = CancellationToken::new();
    let memory = settings.memory_budget();
    metrics.process_budget_limit.set(memory as i64);
    let catchup = source::CatchupLimits::new(
        settings.server.catchup.clone(),
        bus::Budget::new(memory, None, Some(metrics.process_budget_used.clone())),
    );
    let table = route_set::start_all(
        &settings,
        &route_set::Scope {
            metrics: &metrics,
            tracker: &tracker,
            sources: &sources,
            streams: &streams,
            server: &settings.server,
            catchup: &catchup,
        },
    )?;
    let app = Arc::new(App {
        table: parking_lot::RwLock::new(Arc::new(table)),
        server: settings.server.clone(),
        metrics,
        draining: CancellationToken::new(),
        streams,
        per_ip: Arc::default(),
        trusted_proxies: settings
            .server
            .trusted_proxies
            .iter()
            .filter_map(|n| config::access::parse_net(n).ok())
            .collect(),
    });
    let bind = |addr: SocketAddr| async move {
        listen(addr).map_err(|source| StartError::Bind { addr, source })
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
    tracker.spawn(http::serve_streams(
        http::Listener {
            listener,
            filter: http::routes::filter(app.clone()),
            stop: stop_accepting.clone(),
            grace,
            name: "streams",
        },
        app.clone(),
        capacity,
    ));
    let admin_listener = http::Listener {
        listener: admin,
        filter: http::admin::filter(app.clone()),
        stop: admin_stop.clone(),
        grace: Duration::from_secs(1),
        name: "admin",
    };
    if settings.server.console == config::ConsoleAt::Admin {
        // The console's page opens streams on its own origin: the admin listener serves
        // them too (a few operators, not the public).
        let capacity = http::Capacity {
            max: ADMIN_STREAMS,
            open: Default::default(),
            refused: app.metrics.rejected.with_label_values(&["503"]),
        };
        tracker.spawn(http::serve_streams(admin_listener, app.clone(), capacity));
    } else {
        tracker.spawn(http::serve_admin(admin_listener));
    }
    info!(%http_addr, %admin_addr, routes = app.table().routes.len(), "sse-bridge listening");
    Ok(Running {
        http_addr,
        admin_addr,
        app,
        stop_accepting,
        sources,
        admin_stop,
        tracker,
        grace,
        catchup,
    })
}

/// Connections the kernel may queue before they are accepted. A reconnect storm (every
/// dashboard of a restarted replica at once) arrives faster than a busy process accepts:
/// with the default of 1,024, the queue overflows and clients get connection resets. The
/// kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 8192;

/// A listening socket on `addr` with a deep accept queue.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Most connections of the admin listener when it serves the console (and its streams).
const ADMIN_STREAMS: usize = 256;

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
    /// Apply the configuration in `file` (SIGHUP): routes added, removed or changed
    /// start and stop; clients of unchanged routes keep their streams. An invalid file
    /// changes nothing and its problems are returned.
    pub fn reload(
        &self,
        file: &std::path::Path,
    ) -> Result<route_set::Reloaded, route_set::ReloadError> {
        route_set::reload(
            &self.app,
            file,
            &route_set::Scope {
                metrics: &self.app.metrics,
                tracker: &self.tracker,
                sources: &self.sources,
                streams: &self.app.streams,
                server: &self.app.server,
                catchup: &self.catchup,
            },
        )
    }

    /// Streams open on every route.
    pub fn open_streams(&self) -> usize {
        self.app
            .table()
            .routes
            .iter()
            .map(|r| r.open.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }
}

/// Run until `shutdown` completes, applying the configuration in `file` again each time
/// `reload` yields (SIGHUP) or, with `server.watch_config`, the file or a key file it
/// names changes on disk; then shut down gracefully (drain).
pub async fn run(
    settings: Settings,
    file: std::path::PathBuf,
    shutdown: impl Future<Output = ()>,
    mut reload: impl futures::Stream<Item = ()> + Unpin,
) -> Result<(), StartError> {
    use futures::StreamExt;
    let watched = if settings.server.watch_config {
        watch::changes(file.clone())
    } else {
        futures::stream::pending().boxed()
    };
    let mut changes = futures::stream::select(&mut reload, watched);
    let running = start(settings).await?;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = changes.next() => match running.reload(&file) {
                Ok(_) => {}
                Err(e) => tracing::error!(file = %file.display(), "configuration reload rejected, the running one is kept: {e}"),
            },
        }
    }
    running.shutdown().await;
    Ok(())
}
