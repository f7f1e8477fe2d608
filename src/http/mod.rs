//! The HTTP face: the stream server (one SSE route per configured route), the admin
//! server, SSE framing and parsing, and JSON errors. Handlers talk to the hub and the
//! source's planner, never to Kafka directly.

pub mod access;
pub mod admin;
pub mod client;
pub mod console;
pub mod errors;
pub mod fanout;
pub mod limits;
pub mod multiplex;
pub mod native;
mod open;
pub mod routes;

pub mod stream;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::source::Source;

/// A route as the HTTP layer sees it.
pub struct RouteEntry {
    /// Route name.
    pub name: String,
    /// Source kind (`kafka`).
    pub kind: &'static str,
    /// URL path.
    pub path: String,
    /// What the route's source reads (topics, collection), for the console.
    pub reads: String,
    /// The running source.
    pub source: Arc<dyn Source>,
    /// The route's bus.
    pub hub: Arc<crate::bus::Hub>,
    /// Events behind the head after which a caught-up client is disconnected.
    pub max_lag: usize,
    /// Fan-out writers of the route's live clients.
    pub fanout: fanout::FanOut,
    /// Token verifier, when the route authenticates; replaced on reload (key files are
    /// read again) without touching the route's streams.
    pub auth: parking_lot::RwLock<Option<Arc<crate::auth::Authenticator>>>,
    /// Access settings (filters, limits, CORS).
    pub access: crate::config::RouteAccess,
    /// The selectors the route's events carry values for.
    pub selectors: Vec<crate::config::Selector>,
    /// Open streams.
    pub open: Arc<std::sync::atomic::AtomicUsize>,
    /// The route's settings as loaded (a reload restarts the route when they differ).
    pub raw: serde_json::Value,
    /// Stops the route's source, reaper and writers.
    pub stop: CancellationToken,
    /// Ends the route's streams.
    pub streams: CancellationToken,
}

/// The running routes, swapped whole on a reload.
pub struct RouteTable {
    /// Routes in config order.
    pub routes: Vec<Arc<RouteEntry>>,
    /// Routes by path.
    pub by_path: HashMap<String, Arc<RouteEntry>>,
}

impl RouteTable {
    /// A table of `routes`.
    pub fn new(routes: Vec<Arc<RouteEntry>>) -> RouteTable {
        let by_path = routes.iter().map(|r| (r.path.clone(), r.clone())).collect();
        RouteTable { routes, by_path }
    }
}

/// Shared state of the HTTP servers.
pub struct App {
    /// The running routes.
    pub table: parking_lot::RwLock<Arc<RouteTable>>,
    /// Server settings.
    pub server: ServerConfig,
    /// Metrics.
    pub metrics: Metrics,
    /// Fires when shutdown begins: readiness fails, new streams are refused.
    pub draining: CancellationToken,
    /// Fires when open streams must end.
    pub streams: CancellationToken,
    /// Open streams per client address.
    pub per_ip: Arc<limits::PerIp>,
    /// Proxies whose client address header is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl App {
    /// Whether `ip` is one of the proxies whose client address header is believed.
    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// The routes now.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.read().clone()
    }

    /// Replace the routes.
    pub fn set_table(&self, t: RouteTable) {
        *self.table.write() = Arc::new(t);
    }
}

/// How many connections a server holds, and what happens beyond.
#[derive(Clone)]
pub struct Capacity {
    /// Most open connections.
    pub max: usize,
    /// Open connections now.
    pub open: Arc<std::sync::atomic::AtomicUsize>,
    /// Counts connections refused for capacity.
    pub refused: prometheus::IntCounter,
}

/// Decrements the open-connection count when a connection ends.
struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Answer 503 and close: the server is at its connection limit (which keeps descriptors
/// in reserve, so this never runs out of them).
async fn refuse(mut tcp: tokio::net::TcpStream) {
    // Read the request head first: clients do not expect an answer before asking.
    let limit = Duration::from_secs(1);
    native::read_head_bytes(&mut tcp, limit).await;
    let resp = errors::unavailable(
        "over_capacity",
        "this instance holds its maximum of connections; retry (another replica may have room)",
        1,
    );
    native::write_response(&mut tcp, resp, limit).await;
}

/// Answer a connection from an address that already holds its share (open streams and
/// connections that have not sent a head yet): 429, then close.
async fn refuse_address(mut tcp: tokio::net::TcpStream) {
    let limit = Duration::from_secs(1);
    native::read_head_bytes(&mut tcp, limit).await;
    native::write_response(&mut tcp, access::too_many_connections(), limit).await;
}

/// What answers a listener's requests: a warp filter that always answers.
pub trait Surface:
    warp::Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + Send + Sync + 'static
{
}

impl<F> Surface for F where
    F: warp::Filter<Extract = (warp::reply::Response,), Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A listener and how it stops.
pub struct Listener<F> {
    /// The bound socket.
    pub listener: TcpListener,
    /// What answers requests (everything but streams, on the stream listener).
    pub filter: F,
    /// Stops accepting when cancelled.
    pub stop: CancellationToken,
    /// How long open connections get to finish once `stop` fires.
    pub grace: Duration,
    /// Name in logs.
    pub name: &'static str,
}

/// Serve the admin filter on its listener until it stops.
pub async fn serve_admin<F: Surface>(l: Listener<F>)
where
    F::Future: Send,
{
    serve(l, None).await
}

/// Serve the stream listener until it stops: streams on the stream path, everything else
/// through `l.filter`; beyond `capacity`, new connections get a 503.
pub async fn serve_streams<F: Surface>(l: Listener<F>, app: Arc<App>, capacity: Capacity)
where
    F::Future: Send,
{
    serve(l, Some((app, capacity))).await
}

/// Accept connections until `stop` fires, then wait up to `grace` for open ones.
async fn serve<F: Surface>(l: Listener<F>, streams: Option<(Arc<App>, Capacity)>)
where
    F::Future: Send,
{
    let Listener {
        listener,
        filter,
        stop,
        grace,
        name,
    } = l;
    let (app, capacity) = match streams {
        Some((a, c)) => (Some(a), Some(c)),
        None => (None, None),
    };
    let graceful = GracefulShutdown::new();
    let native_tasks = tokio_util::task::TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(server = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match &capacity {
            Some(c) if c.open.load(std::sync::atomic::Ordering::Relaxed) >= c.max => {
                c.refused.inc();
                tokio::spawn(refuse(tcp));
                continue;
            }
            Some(c) => {
                c.open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Some(Slot(c.open.clone()))
            }
            None => None,
        };
        // A connection counts against its address's share from accept, not only once it
        // opens a stream, so one address holding idle sockets cannot crowd everyone else
        // out. Connections from trusted proxies count by the address they report, once
        // their head is read.
        let pending = match &app {
            Some(a) if a.server.max_connections_per_ip > 0 && !a.is_trusted(peer.ip()) => {
                let mut h = limits::Held::default();
                if !h.ip(
                    &a.per_ip,
                    peer.ip().to_canonical(),
                    a.server.max_connections_per_ip,
                ) {
                    a.metrics.rejected.with_label_values(&["429"]).inc();
                    tokio::spawn(refuse_address(tcp));
                    continue;
                }
                Some(h)
            }
            _ => None,
        };
        let _ = tcp.set_nodelay(true);
        let kill = CancellationToken::new();
        let svc = warp::service(filter.clone());
        let watcher = graceful.watcher();
        let app = app.clone();
        let streams = app.is_some();
        let head_timeout = app
            .as_ref()
            .map_or(Duration::from_secs(10), |a| a.server.head_timeout);
        native_tasks.spawn(async move {
            let _slot = slot;
            let mut tcp = tcp;
            let prefix = match app {
                None => Vec::new(),
                Some(app) => match native::read_head(&mut tcp, &app, pending).await {
                    native::Head::Close => return,
                    native::Head::Stream(req) => {
                        native::serve_stream(tcp, app, req, kill, peer).await;
                        return;
                    }
                    native::Head::Other(prefix) => prefix,
                },
            };
            // HTTP/1.1 only: what EventSource speaks without TLS, and the smallest
            // per-connection state.
            // On the stream listener a connection answers one request of the warp
            // surface and closes: a browser's next request (a stream, say) then arrives
            // first on a new connection, where the stream path reads it.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(head_timeout)
                .keep_alive(!streams)
                // The head limit holds on this path too (431 beyond it).
                .max_buf_size(native::MAX_HEAD)
                .serve_connection(
                    TokioIo::new(native::Prefixed::new(prefix, tcp)),
                    TowerToHyperService::new(svc),
                );
            tokio::select! {
                r = watcher.watch(conn) => if let Err(e) = r {
                    debug!(error = %e, "connection ended with error");
                },
                _ = kill.cancelled() => debug!(%peer, "connection closed by the server"),
            }
        });
    }
    drop(listener);
    native_tasks.close();
    let all = async {
        graceful.shutdown().await;
        native_tasks.wait().await;
    };
    tokio::select! {
        _ = all => info!(server = name, "all connections closed"),
        _ = tokio::time::sleep(grace) => warn!(server = name, "grace period over; closing remaining connections"),
    }
}
