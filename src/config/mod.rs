//! Configuration: TOML file(s) loaded with the `config` crate, overridden by
//! `SSE_BRIDGE__SECTION__KEY` environment variables, then validated as a whole
//! (see `validate`) so that every problem is reported at once with its path.

pub mod access;
mod env;
mod secrets;
pub(crate) mod validate;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub use crate::problems::{ConfigError, Problem};
pub use crate::source::{
    CatchupConfig, EventNameConfig, ReplayConfig, RouteOptions, SourceConfig, StartPosition,
};
pub use access::{AuthConfig, ClaimFilter, JwtAlgorithm, JwtConfig, RouteAccess, Selector};

/// Prefix of environment variables that override the file (`SSE_BRIDGE__SERVER__LISTEN`).
pub const ENV_PREFIX: &str = "SSE_BRIDGE";

/// The whole configuration of one sse-bridge process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP server settings shared by every route.
    #[serde(default)]
    pub server: ServerConfig,
    /// The SSE routes, each fed by one source.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Each route's settings as loaded (file and environment), to tell on a reload which
    /// routes changed.
    #[serde(skip)]
    pub raw_routes: Vec<serde_json::Value>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[server]`: listeners, timers and cross-origin policy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the SSE routes are served on.
    pub listen: SocketAddr,
    /// Address of the admin server (`/metrics`, `/healthz`, `/readyz`).
    pub admin_listen: SocketAddr,
    /// Interval between heartbeats (an `id:`-only event) on an idle stream.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Reconnection delay hint sent to clients as `retry:` when a stream opens.
    #[serde(with = "humantime_serde")]
    pub retry: Duration,
    /// Origins allowed to open streams from a browser (`*` allows any); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Log format: `text` or `json`.
    pub log_format: LogFormat,
    /// How long open streams get to close on shutdown before the process exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long a new client waits for its route's source to become ready before a 503.
    #[serde(with = "humantime_serde")]
    pub source_wait: Duration,
    /// Most open connections on the stream server; beyond it new connections get a 503.
    /// 0: the open-files limit (raised to its hard limit at start) minus a reserve of 512.
    pub max_connections: usize,
    /// Fan-out writer tasks per route, writing live events to caught-up clients; `None`:
    /// one per CPU core; 0: every client's own task writes its socket.
    pub fanout_writers: Option<usize>,
    /// Most open streams from one client address (0: no limit); beyond it, 429.
    pub max_connections_per_ip: usize,
    /// Header carrying the client's address when the peer is a trusted proxy
    /// (e.g. `x-forwarded-for`: its last address not itself a trusted proxy).
    pub client_ip_header: Option<String>,
    /// Networks (CIDR) of proxies whose `client_ip_header` is believed.
    pub trusted_proxies: Vec<String>,
    /// Streams older than this close cleanly (a heartbeat with their position first), so
    /// clients rebalance over replicas and resume; unset: no limit.
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Option<Duration>,
    /// Path of the multiplexed stream (`?routes=a,b`); empty: none.
    pub multiplex_path: String,
    /// On SIGTERM, open streams close (each with a final heartbeat carrying its position)
    /// at moments spread over this window, so their reconnects do not land at once.
    #[serde(with = "humantime_serde")]
    pub drain_window: Duration,
    /// Where the console page (`/`, assets under `/console/`) is served: `admin` (the
    /// default: on the admin listener, which then also serves the streams the page
    /// opens), `public` (on the stream listener) or `off`.
    pub console: ConsoleAt,
    /// A client whose socket takes no bytes for this long, at the head or catching up,
    /// is disconnected (`disconnects_total{reason="write_timeout"}`) and everything it
    /// held is freed.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Time a connection gets to send its request head; until then it counts against
    /// its address's `max_connections_per_ip`.
    #[serde(with = "humantime_serde")]
    pub head_timeout: Duration,
    /// `[server.catchup]`: bounds of the shared readers that serve clients resuming from
    /// behind the replay buffer.
    pub catchup: CatchupConfig,
    /// Bytes catch-up readers and client write buffers may hold in the whole process.
    /// Default: what every catch-up reader may hold (`max_readers` × 2 ×
    /// `buffer_bytes`) plus the sum of the routes' `replay.max_bytes`.
    pub memory_budget: Option<usize>,
    /// What `/readyz` requires of the routes' sources: `any` (default: the pod serves
    /// while at least one route's source is ready; clients of the others get 503 and
    /// retry) or `all`.
    pub readiness: Readiness,
    /// Watch the configuration file and the key files it names, and reload when they
    /// change (as on SIGHUP).
    pub watch_config: bool,
}

/// `server.console`: where the console is served. `true` and `false` (the old form)
/// mean `public` and `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsoleAt {
    /// On the admin listener (never reachable where streams are public).
    #[default]
    Admin,
    /// On the stream listener.
    Public,
    /// Not served.
    Off,
}

impl<'de> Deserialize<'de> for ConsoleAt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Flag(bool),
            Word(String),
        }
        match Form::deserialize(d)? {
            Form::Flag(true) => Ok(ConsoleAt::Public),
            Form::Flag(false) => Ok(ConsoleAt::Off),
            Form::Word(w) => match w.as_str() {
                "admin" => Ok(ConsoleAt::Admin),
                "public" => Ok(ConsoleAt::Public),
                "off" => Ok(ConsoleAt::Off),
                other => Err(serde::de::Error::custom(format!(
                    "`{other}`: expected \"admin\", \"public\" or \"off\""
                ))),
            },
        }
    }
}

/// `server.readiness`: what `/readyz` requires of the routes' sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Readiness {
    /// At least one route's source is ready.
    #[default]
    Any,
    /// Every route's source is ready.
    All,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
            heartbeat_interval: Duration::from_secs(15),
            retry: Duration::from_secs(2),
            cors_origins: Vec::new(),
            log_format: LogFormat::Text,
            shutdown_grace: Duration::from_secs(10),
            source_wait: Duration::from_secs(10),
            max_connections: 0,
            fanout_writers: None,
            max_connections_per_ip: 0,
            client_ip_header: None,
            trusted_proxies: Vec::new(),
            max_connection_age: None,
            multiplex_path: "/streams".into(),
            drain_window: Duration::from_secs(5),
            console: ConsoleAt::Admin,
            write_timeout: Duration::from_secs(30),
            head_timeout: Duration::from_secs(5),
            catchup: CatchupConfig::default(),
            memory_budget: None,
            readiness: Readiness::default(),
            watch_config: true,
        }
    }
}

impl ServerConfig {
    /// Fan-out writers per route: as configured, else one per CPU core.
    pub fn fanout_writers(&self) -> usize {
        self.fanout_writers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
    }
}

/// `[[routes]]`: one SSE endpoint fed by one source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Route name: letters, digits, `-` and `_`; used in metrics labels and the default path.
    pub name: String,
    /// URL path of the stream; default `/streams/<name>`.
    #[serde(default)]
    pub path: Option<String>,
    /// The source feeding this route.
    pub source: SourceConfig,
    /// Start position of clients that send no event id.
    #[serde(default)]
    pub start: StartPosition,
    /// How the SSE `event:` name is chosen.
    #[serde(default)]
    pub event_name: EventNameConfig,
    /// What `data:` carries: a payload mode of the route's source (Kafka: `value`
    /// (default) or `envelope`; MongoDB: `change` (default) or `document`).
    #[serde(default)]
    pub payload: Option<String>,
    /// Replay buffer bounds.
    #[serde(default)]
    pub replay: ReplayConfig,
    /// A client this many events behind the newest one is disconnected as too slow
    /// (it reconnects and resumes from its id).
    /// Default: 4096, or `replay.max_events` when that is smaller.
    #[serde(default)]
    pub max_client_lag: Option<usize>,
    /// Authentication of clients (`none` by default).
    #[serde(default)]
    pub auth: AuthConfig,
    /// Equalities every client is bound to, by token claim (needs `auth`).
    #[serde(default)]
    pub filters: Vec<ClaimFilter>,
    /// Selectors a client may narrow by with query parameters of the same name.
    #[serde(default)]
    pub client_filters: Vec<Selector>,
    /// Most open streams on this route (0: no limit beyond the server's); beyond it, 503.
    #[serde(default)]
    pub max_connections: usize,
    /// Origins allowed for this route (replaces `server.cors_origins` when set).
    #[serde(default)]
    pub cors_origins: Option<Vec<String>>,
    /// Send `Access-Control-Allow-Credentials: true` to allowed origins (cookie auth).
    #[serde(default)]
    pub cors_credentials: bool,
    /// Bytes this route's catch-up readers and client write buffers may hold.
    /// Default: what its catch-up readers may hold (`max_readers_per_route` × 2 ×
    /// `buffer_bytes`) plus `replay.max_bytes`.
    #[serde(default)]
    pub memory_budget: Option<usize>,
}

/// The default slow-client bound, before the replay buffer caps it.
const DEFAULT_MAX_CLIENT_LAG: usize = 4096;

impl RouteConfig {
    /// The slow-client bound in force.
    pub fn max_client_lag(&self) -> usize {
        self.max_client_lag
            .unwrap_or(DEFAULT_MAX_CLIENT_LAG.min(self.replay.max_events))
    }

    /// The route's memory budget in force, with catch-up readers bounded by `catchup`.
    pub fn memory_budget(&self, catchup: &CatchupConfig) -> usize {
        self.memory_budget.unwrap_or_else(|| {
            catchup
                .reader_bytes()
                .saturating_mul(catchup.max_readers_per_route)
                .saturating_add(self.replay.max_bytes)
        })
    }

    /// What the route's source reads of the route's settings.
    pub fn options(&self) -> RouteOptions {
        RouteOptions {
            name: self.name.clone(),
            start: self.start,
            event_name: self.event_name.clone(),
            payload: self.payload.clone(),
            replay: self.replay.clone(),
            selectors: self.selectors(),
        }
    }

    /// Every selector the route's events carry values for (claim filters and client
    /// filters), sorted, once each.
    pub fn selectors(&self) -> Vec<Selector> {
        let mut v: Vec<Selector> = self
            .filters
            .iter()
            .map(|f| f.on.clone())
            .chain(self.client_filters.iter().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The route's access settings.
    pub fn access(&self) -> RouteAccess {
        RouteAccess {
            auth: self.auth.clone(),
            filters: self.filters.clone(),
            client_filters: self.client_filters.clone(),
            max_connections: self.max_connections,
            cors_origins: self.cors_origins.clone(),
            cors_credentials: self.cors_credentials,
        }
    }

    /// The URL path this route is served on.
    pub fn path(&self) -> String {
        self.path
            .clone()
            .unwrap_or_else(|| format!("/streams/{}", self.name))
    }
}

impl Settings {
    /// The key files the routes' authentication reads (JWT secrets, public keys, JWKS).
    pub fn key_files(&self) -> Vec<std::path::PathBuf> {
        self.routes
            .iter()
            .filter_map(|r| match &r.auth {
                AuthConfig::Jwt(j) => Some(j),
                AuthConfig::None => None,
            })
            .flat_map(|j| [&j.secret_file, &j.public_key_file, &j.jwks_file])
            .flatten()
            .map(std::path::PathBuf::from)
            .collect()
    }

    /// The process-wide memory budget in force.
    pub fn memory_budget(&self) -> usize {
        self.server.memory_budget.unwrap_or_else(|| {
            self.routes
                .iter()
                .fold(self.server.catchup.budget_bytes(), |sum, r| {
                    sum.saturating_add(r.replay.max_bytes)
                })
        })
    }

    /// Load `file`, apply environment overrides, deserialize and validate.
    pub fn load(file: &Path) -> Result<Settings, ConfigError> {
        Self::load_with_env(file, None)
    }

    /// Like [`Settings::load`], with an explicit environment (for tests).
    pub fn load_with_env(
        file: &Path,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        if !file.exists() {
            return Err(ConfigError::single(
                "config",
                format!("file {} does not exist", file.display()),
            ));
        }
        let vars: std::collections::HashMap<String, String> = match &env {
            Some(m) => m.clone(),
            None => std::env::vars().collect(),
        };
        // Overrides are applied to the loaded tree (routes by name), not by the `config`
        // crate (which would index the route list).
        let overrides = env::overrides(vars);
        let text = std::fs::read_to_string(file).map_err(|e| {
            ConfigError::single("config", format!("cannot read {}: {e}", file.display()))
        })?;
        let lookup = |name: &str| match &env {
            Some(m) => m.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        let text = secrets::expand(&text, &lookup).map_err(ConfigError::from)?;
        let raw = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Toml))
            .build()
            .map_err(|e| ConfigError::single("config", e.to_string()))?;
        let mut tree: serde_json::Value = raw
            .try_deserialize()
            .map_err(|e| ConfigError::single("config", e.to_string()))?;
        let applied = env::apply(&mut tree, &overrides)?;
        // A field only an override sets had its type guessed from its text: where the
        // settings want another (a list, text), it gets that, field by field.
        let mut settings: Settings = loop {
            match serde_path_to_error::deserialize(&tree) {
                Ok(s) => break s,
                Err(e) => {
                    let path = e.path().to_string();
                    let message = e.into_inner().to_string();
                    if env::retype(&mut tree, &applied, &path, &message) {
                        continue;
                    }
                    return Err(ConfigError::single(
                        if path == "." { "config" } else { &path },
                        message,
                    ));
                }
            }
        };
        settings.raw_routes = match tree.get("routes") {
            Some(serde_json::Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Check every cross-field rule; report all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate::validate(self)
    }
}

#[cfg(test)]
mod tests;
