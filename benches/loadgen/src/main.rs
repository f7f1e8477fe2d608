//! `sse-loadgen`: the benchmark driver of sse-bridge. Opens N SSE connections (spread
//! over 127.0.0.x source addresses), produces sequenced, timestamped events to Kafka at a
//! fixed rate, and reports deliveries per second, latency percentiles, lost and
//! duplicated events per connection, and the server's memory and CPU (from /proc).

mod catchup;
mod conn;
mod demo;
mod hostile;
mod http1;
mod open_rate;
mod proc_stats;
mod produce;
mod report;
mod soak;
mod storm;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use conn::Totals;

#[derive(Parser)]
#[command(about = "Load generator and benchmark driver for sse-bridge")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a topic.
    Topic {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
    },
    /// Create a JetStream stream on subjects `<stream>.>` (if missing).
    NatsStream {
        #[arg(long)]
        url: String,
        #[arg(long)]
        stream: String,
    },
    /// Create a table of bench events (`seq`, `ts`, `pad`) in PostgreSQL (if missing).
    PgTable {
        #[arg(long)]
        url: String,
        #[arg(long)]
        table: String,
    },
    /// Produce sample order events forever (the demo's producer).
    Demo {
        #[arg(long)]
        brokers: String,
        #[arg(long, default_value = "orders")]
        topic: String,
        /// Milliseconds between events.
        #[arg(long, default_value_t = 500)]
        every_ms: u64,
    },
    /// Publish sample shipment events forever to a JetStream stream (the demo's NATS
    /// producer).
    DemoNats {
        #[arg(long)]
        url: String,
        #[arg(long, default_value = "shipments")]
        stream: String,
        /// Milliseconds between events.
        #[arg(long, default_value_t = 700)]
        every_ms: u64,
    },
    /// Reconnect storm: all clients resume at once after the bridge restarts.
    Storm {
        /// Stream URL.
        #[arg(long)]
        url: String,
        /// Admin URL of the (restarted) bridge, for its resume metrics.
        #[arg(long)]
        admin: String,
        #[arg(long)]
        clients: usize,
        #[arg(long, default_value_t = 1)]
        sources: usize,
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        /// Events per second produced throughout.
        #[arg(long, default_value_t = 20)]
        rate: u64,
        /// Shell command that restarts the bridge and returns once it is ready.
        #[arg(long)]
        restart_cmd: String,
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        #[arg(long, default_value = "reconnect-storm")]
        label: String,
    },
    /// Produce `rate` events/s for `duration` seconds to Kafka (a shared producer for
    /// several `listen` processes).
    Produce {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        duration: f64,
        /// First sequence number.
        #[arg(long, default_value_t = 0)]
        seq0: u64,
    },
    /// Hold N connections for `duration` seconds without producing; report how many of
    /// `expect` events each received and the latency (events come from `produce`).
    Listen {
        #[command(flatten)]
        common: Common,
        /// Seconds to listen once every connection is live.
        #[arg(long)]
        duration: f64,
        /// Events every connection should receive.
        #[arg(long)]
        expect: u64,
        /// First sequence number expected.
        #[arg(long, default_value_t = 0)]
        seq0: u64,
        /// Touch this file once every connection is live.
        #[arg(long)]
        ready_file: Option<std::path::PathBuf>,
    },
    /// Streams opened per second for each start mode (routes `latest`, `earliest` and
    /// `last` of one topic whose history is inside the buffer; `since` and a resume by
    /// id on `latest`).
    OpenRate {
        /// Base URL of the bridge, e.g. http://127.0.0.1:8080
        #[arg(long)]
        base: String,
        /// Topic the routes read (for the resume id).
        #[arg(long)]
        topic: String,
        /// Offset of partition 0 the resume id names (inside the buffer).
        #[arg(long, default_value_t = 50)]
        resume_at: i64,
        /// `?since=` of the since mode (ms since the epoch).
        #[arg(long)]
        since: i64,
        #[arg(long, default_value_t = 5000)]
        clients: usize,
        #[arg(long, default_value_t = 1)]
        sources: usize,
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Honest clients following a route, alone and then under hostile load from other
    /// addresses; then the bridge's memory once the flood is over.
    Hostile {
        /// Stream URL of the route.
        #[arg(long)]
        url: String,
        /// Admin URL of the bridge.
        #[arg(long)]
        admin: String,
        #[arg(long)]
        pid: u32,
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 500)]
        honest: usize,
        #[arg(long, default_value_t = 500)]
        hostile: usize,
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// Seconds of production in each run.
        #[arg(long, default_value_t = 15.0)]
        duration: f64,
        /// Seconds after the flood before the last memory sample.
        #[arg(long, default_value_t = 30.0)]
        after: f64,
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        #[arg(long, default_value = "hostile")]
        label: String,
        /// Only these kinds of attacker (repeat; default: every kind).
        #[arg(long)]
        kind: Vec<String>,
    },
    /// Catch-up storm: every client resumes at once from `from`, far behind the buffer,
    /// and reads up to `head` (records `seq` = offset, one partition).
    Catchup {
        #[arg(long)]
        url: String,
        #[arg(long)]
        admin: String,
        #[arg(long)]
        pid: u32,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        #[arg(long, default_value_t = 2)]
        sources: usize,
        #[arg(long, default_value_t = 1)]
        source_base: u8,
        #[arg(long)]
        from: u64,
        #[arg(long)]
        head: u64,
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Steady clients on an `earliest` route, alone and then with visitors arriving
    /// every second (each reading up to 1.5 s from the earliest offset).
    Soak {
        /// Base URL of the bridge (routes `alone` and `visited`).
        #[arg(long)]
        base: String,
        #[arg(long)]
        admin: String,
        #[arg(long)]
        pid: u32,
        #[arg(long)]
        brokers: String,
        /// Topics of the routes `alone` and `visited`.
        #[arg(long, num_args = 2)]
        topics: Vec<String>,
        #[arg(long, default_value_t = 2000)]
        steady: usize,
        #[arg(long, default_value_t = 20)]
        visitors_per_s: u64,
        #[arg(long, default_value_t = 50)]
        rate: u64,
        /// Seconds of each run.
        #[arg(long, default_value_t = 240.0)]
        duration: f64,
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Hold N idle connections; report server memory per connection.
    Idle(Common),
    /// N connections on one route while events are produced at a fixed rate.
    Fanout {
        #[command(flatten)]
        common: Common,
        /// Kafka brokers.
        #[arg(long, default_value = "")]
        brokers: String,
        /// Topic the route reads (one partition).
        #[arg(long, default_value = "")]
        topic: String,
        /// Publish by HTTP POST here instead of producing to Kafka (Nchan's publisher).
        #[arg(long)]
        publish_url: Option<String>,
        /// Publish to this NATS server's JetStream instead (stream `--topic`, subject
        /// `<topic>.bench`).
        #[arg(long)]
        nats_url: Option<String>,
        /// Insert rows into this PostgreSQL database instead (table `--topic`, one
        /// transaction each).
        #[arg(long)]
        pg_url: Option<String>,
        /// Events per second produced.
        #[arg(long)]
        rate: u64,
        /// Seconds of production.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Payload padding, bytes.
        #[arg(long, default_value_t = 64)]
        pad: usize,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Stream URL, e.g. http://127.0.0.1:8080/streams/bench (repeat to spread clients
    /// over several servers).
    #[arg(long, required = true)]
    url: Vec<String>,
    /// Connections to open.
    #[arg(long)]
    clients: usize,
    /// PIDs of the server processes to sample.
    #[arg(long)]
    pid: Vec<u32>,
    /// Loopback source addresses to spread connections over (127.0.0.1..).
    #[arg(long, default_value_t = 1)]
    sources: usize,
    /// First loopback source address (127.0.0.N).
    #[arg(long, default_value_t = 1)]
    source_base: u8,
    /// Write the figures here as JSON.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Label of this run in the output.
    #[arg(long, default_value = "sse-bridge")]
    label: String,
    /// Seconds to hold idle connections (idle) or to wait for stragglers (fanout).
    #[arg(long, default_value_t = 3.0)]
    hold: f64,
}

pub(crate) fn parse_url(u: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = u
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("url must be http://"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Ok((
        host.parse()?,
        if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
    ))
}

struct Fleet {
    handles: Vec<tokio::task::JoinHandle<conn::ConnResult>>,
    totals: Arc<Totals>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Fleet {
    /// Wait until the fleet has received `want` events in all, or `within` has passed.
    async fn wait_for(&self, want: u64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.totals.events.load(Ordering::Relaxed) < want
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn open(c: &Common, expect_from: Option<u64>) -> anyhow::Result<Fleet> {
    let targets: Vec<(SocketAddr, String)> = c
        .url
        .iter()
        .map(|u| parse_url(u))
        .collect::<Result<_, _>>()?;
    let totals = Arc::new(Totals::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut handles = Vec::with_capacity(c.clients);
    for i in 0..c.clients {
        let (server, path) = targets[i % targets.len()].clone();
        let local = conn::source_addr(i / targets.len(), c.sources, c.source_base);
        let permit = sem.clone().acquire_owned().await?;
        let totals = totals.clone();
        let stop_rx = stop_rx.clone();
        handles.push(tokio::spawn(conn::run(
            server,
            path,
            local,
            None,
            totals,
            stop_rx,
            expect_from,
            expect_from,
            permit,
        )));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while totals.live.load(Ordering::Relaxed) + totals.failed.load(Ordering::Relaxed)
        < c.clients as u64
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "connections not live within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Fleet {
        handles,
        totals,
        stop,
    })
}

async fn close(f: Fleet) -> Vec<conn::ConnResult> {
    let _ = f.stop.send(true);
    let mut out = Vec::with_capacity(f.handles.len());
    for h in f.handles {
        if let Ok(r) = h.await {
            out.push(r);
        }
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Topic {
            brokers,
            topic,
            partitions,
        } => produce::create_topic(&brokers, &topic, partitions).await,
        Cmd::NatsStream { url, stream } => produce::create_nats_stream(&url, &stream).await,
        Cmd::PgTable { url, table } => produce::create_pg_table(&url, &table).await,
        Cmd::Demo {
            brokers,
            topic,
            every_ms,
        } => demo::run(&brokers, &topic, Duration::from_millis(every_ms)).await,
        Cmd::DemoNats {
            url,
            stream,
            every_ms,
        } => demo::run_nats(&url, &stream, Duration::from_millis(every_ms)).await,
        Cmd::Storm {
            url,
            admin,
            clients,
            sources,
            brokers,
            topic,
            rate,
            restart_cmd,
            json,
            label,
        } => {
            let r = storm::run(storm::Storm {
                url,
                admin,
                clients,
                sources,
                brokers,
                topic,
                rate,
                restart_cmd,
                label,
            })
            .await?;
            report::emit(&r, json.as_deref())
        }
        Cmd::Produce {
            brokers,
            topic,
            rate,
            duration,
            seq0,
        } => {
            let p = produce::producer(&brokers)?;
            let end = produce::produce(
                &p,
                &topic,
                rate,
                Duration::from_secs_f64(duration),
                seq0,
                32,
            )
            .await?;
            println!("{{\"produced\":{},\"next_seq\":{end}}}", end - seq0);
            Ok(())
        }
        Cmd::Listen {
            common: c,
            duration,
            expect,
            seq0,
            ready_file,
        } => {
            let fleet = open(&c, Some(seq0)).await?;
            if let Some(f) = ready_file {
                std::fs::write(f, b"live")?;
            }
            fleet
                .wait_for(expect * c.clients as u64, Duration::from_secs_f64(duration))
                .await;
            let failed = fleet.totals.failed.load(Ordering::Relaxed);
            let results = close(fleet).await;
            let mut lat: Vec<u32> = results
                .iter()
                .flat_map(|r| r.latencies_us.iter().copied())
                .collect();
            lat.sort_unstable();
            let short = results
                .iter()
                .filter(|r| r.events < expect || r.missing > 0)
                .count();
            let dups: u64 = results.iter().map(|r| r.duplicated).sum();
            let r = serde_json::json!({
                "scenario": "listen",
                "label": c.label,
                "clients": c.clients,
                "failed": failed,
                "expected_per_connection": expect,
                "delivered": results.iter().map(|r| r.events).sum::<u64>(),
                "connections_missing_events": short,
                "duplicated": dups,
                "latency_ms": {
                    "p50": lat.get(lat.len() / 2).map(|v| f64::from(*v) / 1000.0),
                    "p99": lat.get(lat.len() * 99 / 100).map(|v| f64::from(*v) / 1000.0),
                    "max": lat.last().map(|v| f64::from(*v) / 1000.0),
                },
            });
            report::emit(&r, c.json.as_deref())
        }
        Cmd::OpenRate {
            base,
            topic,
            resume_at,
            since,
            clients,
            sources,
            json,
        } => {
            let (server, _) = parse_url(&base)?;
            let id = sse_bridge::event_id::encode(
                &sse_bridge::source::kafka::KafkaPosition::from_topics(vec![(
                    topic,
                    vec![resume_at],
                )]),
            );
            let mode =
                |label: &str, path: String, headers: Vec<(String, String)>| open_rate::Mode {
                    label: label.into(),
                    path,
                    headers,
                };
            let modes = [
                mode("latest", "/streams/latest".into(), vec![]),
                mode("earliest", "/streams/earliest".into(), vec![]),
                mode("last", "/streams/last".into(), vec![]),
                mode("since", format!("/streams/latest?since={since}"), vec![]),
                mode(
                    "resume",
                    "/streams/latest".into(),
                    vec![("Last-Event-ID".into(), id)],
                ),
            ];
            let r = open_rate::run(server, &modes, clients, sources).await?;
            report::emit(&r, json.as_deref())
        }
        Cmd::Hostile {
            url,
            admin,
            pid,
            brokers,
            topic,
            honest,
            hostile,
            rate,
            duration,
            after,
            json,
            label,
            kind,
        } => {
            // An id naming 5,500 partitions the topic lacks (~15 KiB).
            let mut offsets = vec![0i64];
            offsets.extend((1..11_000).map(|p| {
                if p % 2 == 1 {
                    1
                } else {
                    sse_bridge::source::kafka::UNKNOWN
                }
            }));
            let huge = sse_bridge::event_id::encode(
                &sse_bridge::source::kafka::KafkaPosition::from_topics(vec![(
                    topic.clone(),
                    offsets,
                )]),
            );
            let h = hostile::Hostile {
                url,
                admin,
                pid,
                brokers,
                topic,
                honest,
                hostile,
                rate,
                duration,
                after,
                kinds: kind,
                label,
            };
            let r = hostile::run(h, huge).await?;
            report::emit(&r, json.as_deref())
        }
        Cmd::Catchup {
            url,
            admin,
            pid,
            topic,
            clients,
            sources,
            source_base,
            from,
            head,
            json,
        } => {
            let r = catchup::run(catchup::Catchup {
                url,
                admin,
                pid,
                topic,
                clients,
                sources,
                source_base,
                from,
                head,
            })
            .await?;
            report::emit(&r, json.as_deref())
        }
        Cmd::Soak {
            base,
            admin,
            pid,
            brokers,
            topics,
            steady,
            visitors_per_s,
            rate,
            duration,
            json,
        } => {
            let r = soak::run(soak::Soak {
                urls: [
                    format!("{base}/streams/alone"),
                    format!("{base}/streams/visited"),
                ],
                admin,
                pid,
                brokers,
                topics: [topics[0].clone(), topics[1].clone()],
                steady,
                visitors_per_s,
                rate,
                duration,
            })
            .await?;
            report::emit(&r, json.as_deref())
        }
        Cmd::Idle(c) => {
            let before = proc_stats::sample(&c.pid);
            let t0 = tokio::time::Instant::now();
            let fleet = open(&c, None).await?;
            let connect_s = t0.elapsed().as_secs_f64();
            let peak = proc_stats::peak_rss(&c.pid, Duration::from_secs_f64(c.hold)).await;
            let failed = fleet.totals.failed.load(Ordering::Relaxed);
            let results = close(fleet).await;
            let r = report::idle(
                &c.label, c.clients, failed, before, peak, connect_s, &results,
            );
            report::emit(&r, c.json.as_deref())
        }
        Cmd::Fanout {
            common: c,
            brokers,
            topic,
            publish_url,
            nats_url,
            pg_url,
            rate,
            duration,
            pad,
        } => {
            if let Some(url) = pg_url {
                produce::create_pg_table(&url, &topic).await?;
                let seq0 =
                    produce::produce_pg(&url, &topic, 10, Duration::from_millis(200), 0, pad)
                        .await?;
                let dur = Duration::from_secs_f64(duration);
                let r = fanout_measure(&c, rate, duration, seq0, async move {
                    produce::produce_pg(&url, &topic, rate, dur, seq0, pad).await
                })
                .await?;
                return report::emit(&r, c.json.as_deref());
            }
            if let Some(url) = publish_url {
                return fanout_http(c, url, rate, duration, pad).await;
            }
            if let Some(url) = nats_url {
                produce::create_nats_stream(&url, &topic).await?;
                let seq0 =
                    produce::produce_nats(&url, &topic, 10, Duration::from_millis(200), 0, pad)
                        .await?;
                let dur = Duration::from_secs_f64(duration);
                let r = fanout_measure(&c, rate, duration, seq0, async move {
                    produce::produce_nats(&url, &topic, rate, dur, seq0, pad).await
                })
                .await?;
                return report::emit(&r, c.json.as_deref());
            }
            let p = produce::producer(&brokers)?;
            // Warm the path (metadata, connections) before measuring.
            let seq0 = produce::produce(&p, &topic, 10, Duration::from_millis(200), 0, pad).await?;
            let dur = Duration::from_secs_f64(duration);
            let r = fanout_measure(&c, rate, duration, seq0, async move {
                produce::produce(&p, &topic, rate, dur, seq0, pad).await
            })
            .await?;
            report::emit(&r, c.json.as_deref())
        }
    }
}

/// Fan-out against a server fed by HTTP publishes (Nchan).
async fn fanout_http(
    c: Common,
    url: String,
    rate: u64,
    duration: f64,
    pad: usize,
) -> anyhow::Result<()> {
    let seq0 = produce::publish_http(&url, 10, Duration::from_millis(200), 0, pad).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dur = Duration::from_secs_f64(duration);
    let r = fanout_measure(&c, rate, duration, seq0, async move {
        produce::publish_http(&url, rate, dur, seq0, pad).await
    })
    .await?;
    report::emit(&r, c.json.as_deref())
}

/// Connect every client, run `produce`, measure: the figures of a fan-out run.
async fn fanout_measure<F>(
    c: &Common,
    rate: u64,
    duration: f64,
    seq0: u64,
    produce: F,
) -> anyhow::Result<serde_json::Value>
where
    F: std::future::Future<Output = anyhow::Result<u64>> + Send + 'static,
{
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = proc_stats::sample(&c.pid);
    let fleet = open(c, Some(seq0)).await?;
    let connected = proc_stats::sample(&c.pid);
    let t0 = tokio::time::Instant::now();
    let produce_task = tokio::spawn(produce);
    let peak = proc_stats::peak_rss(&c.pid, Duration::from_secs_f64(duration)).await;
    let end_seq = produce_task.await??;
    let produce_s = t0.elapsed().as_secs_f64();
    // Wait until every connection has everything, or the hold time passes.
    fleet
        .wait_for(
            (end_seq - seq0) * c.clients as u64,
            Duration::from_secs_f64(c.hold),
        )
        .await;
    let elapsed = t0.elapsed().as_secs_f64();
    let after = proc_stats::sample(&c.pid);
    let results = close(fleet).await;
    Ok(report::fanout(report::FanoutInput {
        label: &c.label,
        clients: c.clients,
        rate,
        produced: end_seq - seq0,
        seq0,
        produce_s,
        elapsed_s: elapsed,
        before,
        connected,
        after,
        peak_rss: peak,
        results: &results,
    }))
}
