//! The NATS JetStream adapter (`type = "nats"`): one ordered consumer per route reads
//! the stream (or the subjects its filter picks) into the route's hub (`reader`); a
//! client resuming from a sequence the hub no longer holds reads the stream from there
//! through a shared catch-up reader (`catchup`); client starts are planned in `plan`.
//! The position is the stream sequence after the last message delivered ([`NatsSeq`]).

mod catchup;
mod config;
mod plan;
mod position;
mod reader;
mod record;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream::Stream as JsStream;
use tokio_util::sync::CancellationToken;

pub use config::{NatsSourceConfig, ValueFormat};
pub use position::NatsSeq;
use record::{Msg, MsgEncoder, PayloadMode};

use crate::bus::{Cursor, Hub, Selector};
use crate::metrics::RouteMetrics;
use crate::position::Position;
use crate::problems::Problems;
use crate::source::{
    parse_section, spawn, Adapter, CatchupPool, ClientStart, Plan, Reader, RouteOptions,
    SourceError, SourceSpec, StartPosition, Wiring,
};
use crate::sse::{self, Frame};

/// The NATS JetStream adapter (`type = "nats"`).
pub const ADAPTER: Adapter = Adapter {
    name: "nats",
    id_kind: position::KIND,
    parse: parse_section::<NatsSourceConfig>,
};

impl SourceSpec for NatsSourceConfig {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn validate(&self, route: &RouteOptions, at: &str, p: &mut Problems) {
        NatsSourceConfig::validate(self, &format!("{at}.source"), p);
        crate::source::validate_record_route(
            "nats",
            route,
            self.value_format,
            record::RESERVED,
            at,
            p,
        );
    }

    /// `key` compares the subject; `header:NAME` a message header.
    fn supports(&self, selector: &Selector) -> bool {
        matches!(
            selector,
            Selector::Key | Selector::Header(_) | Selector::Event
        )
    }

    fn describe(&self) -> String {
        NatsSourceConfig::describe(self)
    }

    fn initial_position(&self) -> Box<dyn Position> {
        Box::new(NatsSeq::default())
    }

    fn start(&self, route: &RouteOptions, w: Wiring<'_>) -> Arc<dyn crate::source::Source> {
        let src = NatsSource::new(route, self.clone(), w.hub, w.catchup);
        spawn(src, w.tracker, w.cancel)
    }
}

impl Reader for NatsSource {
    type Position = NatsSeq;

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

/// Timeout of connecting and of JetStream API requests.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A running NATS source of one route.
struct NatsSource {
    route: String,
    cfg: NatsSourceConfig,
    encoder: MsgEncoder,
    start: StartPosition,
    warm_events: u64,
    hub: Arc<Hub>,
    catchup: CatchupPool,
    metrics: RouteMetrics,
    client: tokio::sync::Mutex<Option<async_nats::Client>>,
}

/// A NATS failure, as clients are told of it.
fn unavailable(e: impl std::fmt::Display) -> SourceError {
    SourceError::Unavailable(format!("nats: {e}"))
}

/// The route position in a box the route's hub handed out.
fn seq_of(p: &dyn Position) -> NatsSeq {
    NatsSeq::of(p).unwrap_or_default()
}

impl NatsSource {
    fn new(
        route: &RouteOptions,
        cfg: NatsSourceConfig,
        hub: Arc<Hub>,
        catchup: CatchupPool,
    ) -> Arc<NatsSource> {
        Arc::new(NatsSource {
            route: route.name.clone(),
            encoder: MsgEncoder::new(
                PayloadMode::of(route.payload.as_deref()),
                cfg.value_format,
                route.event_name.clone(),
                route.selectors.clone(),
            ),
            start: route.start,
            warm_events: if route.replay.warm_start {
                route.replay.max_events as u64
            } else {
                0
            },
            metrics: hub.metrics().clone(),
            cfg,
            hub,
            catchup,
            client: tokio::sync::Mutex::new(None),
        })
    }

    /// The connection (made once; the client reconnects by itself after that).
    async fn client(&self) -> Result<async_nats::Client, SourceError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("sse-bridge-{}", self.route))
            .connection_timeout(TIMEOUT)
            .max_reconnects(None);
        if let Some(f) = &self.cfg.creds_file {
            opts = opts.credentials_file(f).await.map_err(unavailable)?;
        }
        if let Some(t) = &self.cfg.token {
            opts = opts.token(t.clone());
        }
        if let (Some(u), Some(p)) = (&self.cfg.user, &self.cfg.password) {
            opts = opts.user_and_password(u.clone(), p.clone());
        }
        if let Some(ca) = &self.cfg.tls_ca_file {
            opts = opts.add_root_certificates(ca.into());
        }
        let addrs: Vec<async_nats::ServerAddr> = self
            .cfg
            .servers
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        let c = tokio::time::timeout(TIMEOUT, opts.connect(addrs))
            .await
            .map_err(|_| unavailable("connecting timed out"))?
            .map_err(unavailable)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// The route's stream, its info fresh.
    async fn stream(&self) -> Result<JsStream, SourceError> {
        let js = async_nats::jetstream::new(self.client().await?);
        let mut s = tokio::time::timeout(TIMEOUT, js.get_stream(&self.cfg.stream))
            .await
            .map_err(|_| unavailable("stream lookup timed out"))?
            .map_err(unavailable)?;
        tokio::time::timeout(TIMEOUT, s.info())
            .await
            .map_err(|_| unavailable("stream info timed out"))?
            .map_err(unavailable)?;
        Ok(s)
    }

    /// An ordered consumer of the route's subjects from `policy`, and how many messages
    /// it has to deliver before it is at the end of the stream.
    async fn consume(
        &self,
        stream: &JsStream,
        policy: DeliverPolicy,
    ) -> Result<(Ordered, u64), SourceError> {
        let consumer = tokio::time::timeout(
            TIMEOUT,
            stream.create_consumer(OrderedConfig {
                filter_subject: self.cfg.subject.clone().unwrap_or_default(),
                deliver_policy: policy,
                ..Default::default()
            }),
        )
        .await
        .map_err(|_| unavailable("creating a consumer timed out"))?
        .map_err(unavailable)?;
        let pending = consumer.cached_info().num_pending;
        let messages = consumer.messages().await.map_err(unavailable)?;
        Ok((messages, pending))
    }
}

impl NatsSource {
    /// The frame of an `event: reset`: sequences from `requested` on are gone (`cause`);
    /// the stream holds `first..=last` and the route goes on at `next`.
    fn reset_frame(&self, cause: &str, requested: u64, first: u64, last: u64, next: u64) -> Frame {
        let data = serde_json::json!({
            "reason": "position_unavailable",
            "route": self.route,
            "stream": self.cfg.stream,
            "requested": requested,
            "earliest": first,
            "latest": last,
            "resumed_from": next,
            "cause": cause,
        });
        sse::frame(
            &crate::event_id::encode(&NatsSeq(next)),
            Some("reset"),
            Some(&data.to_string()),
        )
    }
}

/// A JetStream message as the encoder reads it, and how many messages follow it.
fn msg_of(m: &async_nats::jetstream::Message) -> Result<(Msg, u64), SourceError> {
    let info = m.info().map_err(unavailable)?;
    let mut headers: Vec<(String, Vec<String>)> = m
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .map(|(n, vs)| {
            (
                n.to_string(),
                vs.iter().map(|v| v.as_str().to_owned()).collect(),
            )
        })
        .collect();
    headers.sort();
    let time_ms = (info.published.unix_timestamp_nanos() / 1_000_000) as i64;
    Ok((
        Msg {
            stream: info.stream.to_owned(),
            subject: m.subject.to_string(),
            seq: info.stream_sequence,
            time_ms,
            headers,
            data: m.payload.clone(),
        },
        info.pending,
    ))
}
