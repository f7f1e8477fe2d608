//! Prometheus metrics: one [`Metrics`] built on the process's registry at start-up and
//! passed down; per-route handles ([`RouteMetrics`]) are resolved once per route so the
//! hot path never looks up labels.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client went away.
    ClientClosed,
    /// The client fell too far behind.
    SlowClient,
    /// The bridge is shutting down.
    Shutdown,
    /// The source failed while serving the client.
    SourceError,
    /// The client's token expired.
    TokenExpired,
    /// The stream reached `server.max_connection_age`.
    MaxAge,
    /// The client's socket took no bytes for `server.write_timeout`.
    WriteTimeout,
}

impl DisconnectReason {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientClosed => "client_closed",
            DisconnectReason::SlowClient => "slow_client",
            DisconnectReason::Shutdown => "shutdown",
            DisconnectReason::SourceError => "source_error",
            DisconnectReason::TokenExpired => "token_expired",
            DisconnectReason::MaxAge => "max_age",
            DisconnectReason::WriteTimeout => "write_timeout",
        }
    }
}

/// How a client's start position was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// The replay buffer covered it.
    Buffer,
    /// Some partitions were read from the source first.
    Source,
    /// The position could not be served; the client got `event: reset`.
    Reset,
    /// The id could not be decoded (400).
    Malformed,
}

impl ResumeOutcome {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ResumeOutcome::Buffer => "buffer",
            ResumeOutcome::Source => "source",
            ResumeOutcome::Reset => "reset",
            ResumeOutcome::Malformed => "malformed",
        }
    }
}

/// Every metric family of the process.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    connections_active: IntGaugeVec,
    connections_opened: IntCounterVec,
    disconnects: IntCounterVec,
    events_sent: IntCounterVec,
    bytes_sent: IntCounterVec,
    source_records: IntCounterVec,
    source_errors: IntCounterVec,
    source_up: IntGaugeVec,
    consumer_lag: IntGaugeVec,
    resumes: IntCounterVec,
    latency: HistogramVec,
    fanout_write: HistogramVec,
    parked: IntGaugeVec,
    replay_events: IntGaugeVec,
    replay_bytes: IntGaugeVec,
    catchup_readers: IntGaugeVec,
    catchup_clients: IntGaugeVec,
    catchup_bytes: IntGaugeVec,
    catchup_refused: IntCounterVec,
    catchup_read: IntCounterVec,
    catchup_started: IntCounterVec,
    budget_limit: IntGaugeVec,
    budget_used: IntGaugeVec,
    budget_limited: IntCounterVec,
    login_refreshes: IntCounterVec,
    login_expiry: IntGaugeVec,
    /// The process-wide memory budget (bytes).
    pub process_budget_limit: IntGauge,
    /// Bytes held against the process-wide memory budget.
    pub process_budget_used: IntGauge,
    /// Requests refused before a stream opened, by HTTP status.
    pub rejected: IntCounterVec,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    c: T,
) -> Result<T, prometheus::Error> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    /// Create every family on `registry`.
    pub fn new(registry: Registry) -> Result<Metrics, prometheus::Error> {
        let r = &registry;
        let p = "sse_bridge_";
        let route = &["route"];
        let m = Metrics {
            connections_active: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(format!("{p}connections_active"), "Open SSE streams"),
                    route,
                )?,
            )?,
            connections_opened: reg(
                r,
                IntCounterVec::new(
                    Opts::new(format!("{p}connections_opened_total"), "SSE streams opened"),
                    route,
                )?,
            )?,
            disconnects: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        format!("{p}disconnects_total"),
                        "SSE streams closed, by reason",
                    ),
                    &["route", "reason"],
                )?,
            )?,
            events_sent: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        format!("{p}events_sent_total"),
                        "Events written to clients (heartbeats excluded)",
                    ),
                    route,
                )?,
            )?,
            bytes_sent: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        format!("{p}bytes_sent_total"),
                        "Bytes written to SSE clients",
                    ),
                    route,
                )?,
            )?,
            source_records: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        format!("{p}source_records_total"),
                        "Records received from the source by the shared reader",
                    ),
                    route,
                )?,
            )?,
            source_errors: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        format!("{p}source_errors_total"),
                        "Errors reported by the source",
                    ),
                    route,
                )?,
            )?,
            source_up: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        format!("{p}source_up"),
                        "1 when the route's source is connected and live",
                    ),
                    route,
                )?,
            )?,
            consumer_lag: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        format!("{p}consumer_lag"),
                        "Records between the high watermark and the route's position",
                    ),
                    &["route", "topic", "partition"],
                )?,
            )?,
            resumes: reg(
                r,
                IntCounterVec::new(
                    Opts::new(format!("{p}resumes_total"), "Client resumptions by outcome"),
                    &["route", "outcome"],
                )?,
            )?,
            fanout_write: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        format!("{p}fanout_write_seconds"),
                        "Time a fan-out writer took to write one batch of events to every client it holds",
                    )
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                        2.5,
                    ]),
                    route,
                )?,
            )?,
            parked: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        format!("{p}fanout_clients"),
                        "Streams whose live events a fan-out writer is writing",
                    ),
                    route,
                )?,
            )?,
            latency: reg(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        format!("{p}delivery_latency_seconds"),
                        "Source record timestamp to write to the client",
                    )
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0,
                    ]),
                    route,
                )?,
            )?,
            replay_events: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        format!("{p}replay_buffer_events"),
                        "Events held in the replay buffer",
                    ),
                    route,
                )?,
            )?,
            replay_bytes: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        format!("{p}replay_buffer_bytes"),
                        "Bytes held in the replay buffer",
                    ),
                    route,
                )?,
            )?,
            catchup_readers: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        format!("{p}catchup_readers"),
                        "Shared catch-up readers reading history behind the replay buffer",
                    ),
                    route,
                )?,
            )?,
            catchup_clients: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        format!("{p}catchup_clients"),
                        "Clients reading from a shared catch-up reader",
                    ),
                    route,
                )?,
            )?,
            catchup_bytes: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        format!("{p}catchup_buffer_bytes"),
                        "Bytes held in the buffers of shared catch-up readers",
                    ),
                    route,
                )?,
            )?,
            catchup_refused: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        format!("{p}catchup_refused_total"),
                        "Clients refused (503 catchup_busy) because no catch-up reader was free",
                    ),
                    route,
                )?,
            )?,
            catchup_read: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        format!("{p}catchup_events_read_total"),
                        "Events read from the source by catch-up readers",
                    ),
                    route,
                )?,
            )?,
            catchup_started: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        format!("{p}catchup_readers_started_total"),
                        "Catch-up readers started (each one read of the source)",
                    ),
                    route,
                )?,
            )?,
            budget_limit: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        format!("{p}memory_budget_bytes"),
                        "The route's memory budget for catch-up readers and client write buffers",
                    ),
                    route,
                )?,
            )?,
            budget_used: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        format!("{p}memory_budget_used_bytes"),
                        "Bytes held against the route's memory budget",
                    ),
                    route,
                )?,
            )?,
            budget_limited: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        format!("{p}memory_budget_limited_total"),
                        "Writes cut to one event because the memory budget was spent",
                    ),
                    route,
                )?,
            )?,
            login_refreshes: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        format!("{p}source_login_refreshes_total"),
                        "Renewals of a source's login token (aws_msk_iam), by outcome",
                    ),
                    &["route", "outcome"],
                )?,
            )?,
            login_expiry: reg(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        format!("{p}source_login_expiry_seconds"),
                        "When the source login's current token expires (Unix time)",
                    ),
                    route,
                )?,
            )?,
            process_budget_limit: reg(
                r,
                IntGauge::new(
                    format!("{p}process_memory_budget_bytes"),
                    "The process-wide memory budget for catch-up readers and client write buffers",
                )?,
            )?,
            process_budget_used: reg(
                r,
                IntGauge::new(
                    format!("{p}process_memory_budget_used_bytes"),
                    "Bytes held against the process-wide memory budget",
                )?,
            )?,
            rejected: reg(
                r,
                IntCounterVec::new(
                    Opts::new(
                        format!("{p}requests_rejected_total"),
                        "Requests refused, by status",
                    ),
                    &["status"],
                )?,
            )?,
            registry,
        };
        Ok(m)
    }

    /// Handles for `route`.
    pub fn route(&self, route: &str) -> RouteMetrics {
        let l = &[route];
        RouteMetrics {
            route: route.to_owned(),
            connections_active: self.connections_active.with_label_values(l),
            connections_opened: self.connections_opened.with_label_values(l),
            events_sent: self.events_sent.with_label_values(l),
            bytes_sent: self.bytes_sent.with_label_values(l),
            source_records: self.source_records.with_label_values(l),
            source_errors: self.source_errors.with_label_values(l),
            source_up: self.source_up.with_label_values(l),
            latency: self.latency.with_label_values(l),
            fanout_write: self.fanout_write.with_label_values(l),
            parked: self.parked.with_label_values(l),
            replay_events: self.replay_events.with_label_values(l),
            replay_bytes: self.replay_bytes.with_label_values(l),
            catchup_readers: self.catchup_readers.with_label_values(l),
            catchup_clients: self.catchup_clients.with_label_values(l),
            catchup_bytes: self.catchup_bytes.with_label_values(l),
            catchup_refused: self.catchup_refused.with_label_values(l),
            catchup_read: self.catchup_read.with_label_values(l),
            catchup_started: self.catchup_started.with_label_values(l),
            budget_limit: self.budget_limit.with_label_values(l),
            budget_used: self.budget_used.with_label_values(l),
            budget_limited: self.budget_limited.with_label_values(l),
            login_expiry: self.login_expiry.with_label_values(l),
            login_refreshes: self.login_refreshes.clone(),
            disconnects: self.disconnects.clone(),
            resumes: self.resumes.clone(),
            consumer_lag: self.consumer_lag.clone(),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
}

/// Metric handles of one route.
#[derive(Clone)]
pub struct RouteMetrics {
    route: String,
    /// Open streams.
    pub connections_active: IntGauge,
    /// Streams opened.
    pub connections_opened: IntCounter,
    /// Events written.
    pub events_sent: IntCounter,
    /// Bytes written.
    pub bytes_sent: IntCounter,
    /// Records received by the shared reader.
    pub source_records: IntCounter,
    /// Source errors.
    pub source_errors: IntCounter,
    /// Source connected and live.
    pub source_up: IntGauge,
    /// Record timestamp to write.
    pub latency: Histogram,
    /// Time to write one batch to every client of a fan-out writer.
    pub fanout_write: Histogram,
    /// Streams held by fan-out writers.
    pub parked: IntGauge,
    /// Ring occupancy (events).
    pub replay_events: IntGauge,
    /// Ring occupancy (bytes).
    pub replay_bytes: IntGauge,
    /// Shared catch-up readers running.
    pub catchup_readers: IntGauge,
    /// Clients reading from catch-up readers.
    pub catchup_clients: IntGauge,
    /// Bytes buffered by catch-up readers.
    pub catchup_bytes: IntGauge,
    /// Clients refused for want of a catch-up reader.
    pub catchup_refused: IntCounter,
    /// Events catch-up readers read from the source.
    pub catchup_read: IntCounter,
    /// Catch-up readers started.
    pub catchup_started: IntCounter,
    /// The route's memory budget (bytes).
    pub budget_limit: IntGauge,
    /// Bytes held against the route's memory budget.
    pub budget_used: IntGauge,
    /// Writes cut to one event for want of budget.
    pub budget_limited: IntCounter,
    /// When the source login's current token expires (Unix seconds).
    pub login_expiry: IntGauge,
    login_refreshes: IntCounterVec,
    disconnects: IntCounterVec,
    resumes: IntCounterVec,
    consumer_lag: IntGaugeVec,
}

impl RouteMetrics {
    /// The route's name.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Count a closed stream.
    pub fn disconnected(&self, reason: DisconnectReason) {
        self.disconnects
            .with_label_values(&[self.route.as_str(), reason.as_str()])
            .inc();
    }

    /// Count a resumption outcome.
    pub fn resumed(&self, outcome: ResumeOutcome) {
        self.resumes
            .with_label_values(&[self.route.as_str(), outcome.as_str()])
            .inc();
    }

    /// Count a renewal of the source login's token.
    pub fn login_refreshed(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.login_refreshes
            .with_label_values(&[self.route.as_str(), outcome])
            .inc();
    }

    /// Set the lag of one partition.
    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag
            .with_label_values(&[self.route.as_str(), topic, &partition.to_string()])
            .set(lag);
    }
}
