//! The source side of a benchmark: create the Kafka topic (or NATS stream), produce
//! timestamped, sequenced events at a fixed rate.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

use crate::conn::now_us;

/// Create `topic` (an existing one is fine).
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let res = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;
    for r in res {
        if let Err((t, e)) = r {
            if e != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                anyhow::bail!("create topic {t}: {e}");
            }
        }
    }
    Ok(())
}

/// A producer tuned for low latency.
pub fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "1")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "30000")
        .create()?)
}

/// Paces sends at a fixed rate over a fixed time, in 1 ms ticks.
struct Pacer {
    start: tokio::time::Instant,
    rate: f64,
    total: u64,
    tick: tokio::time::Interval,
}

impl Pacer {
    fn new(rate: u64, dur: Duration) -> Pacer {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        Pacer {
            start: tokio::time::Instant::now(),
            rate: rate as f64,
            total: (rate as f64 * dur.as_secs_f64()) as u64,
            tick,
        }
    }

    /// With `sent` events out: waits for the next tick and returns how many should be out
    /// by now, or `None` once all are.
    async fn due(&mut self, sent: u64) -> Option<u64> {
        if sent >= self.total {
            return None;
        }
        self.tick.tick().await;
        Some(((self.start.elapsed().as_secs_f64() * self.rate) as u64).min(self.total))
    }
}

/// The payload of event `seq`, stamped with the time now.
fn event(seq: u64, padding: &str) -> String {
    format!(
        "{{\"seq\":{seq},\"ts\":{},\"pad\":\"{padding}\"}}",
        now_us()
    )
}

/// Produce `rate` events/s for `dur` starting at sequence `seq0`, each `{"seq":N,"ts":µs,"pad":"..."}`;
/// returns the next sequence number.
pub async fn produce(
    p: &FutureProducer,
    topic: &str,
    rate: u64,
    dur: Duration,
    seq0: u64,
    pad: usize,
) -> anyhow::Result<u64> {
    let padding = "x".repeat(pad);
    let mut pace = Pacer::new(rate, dur);
    let mut seq = seq0;
    while let Some(due) = pace.due(seq - seq0).await {
        while seq - seq0 < due {
            let v = event(seq, &padding);
            let rec: FutureRecord<'_, (), String> =
                FutureRecord::to(topic).partition(0).payload(&v);
            match p.send_result(rec) {
                Ok(_delivery) => seq += 1,
                Err((e, _)) => {
                    p.poll(Duration::from_millis(1));
                    tracing_free_log(&e);
                }
            }
        }
    }
    p.flush(Duration::from_secs(10))?;
    Ok(seq)
}

fn tracing_free_log(e: &rdkafka::error::KafkaError) {
    eprintln!("produce: {e}");
}

/// Publish like [`produce`], by HTTP POST to `url` (Nchan's publisher endpoint), one
/// request at a time on one keep-alive connection (so events stay in order).
pub async fn publish_http(
    url: &str,
    rate: u64,
    dur: Duration,
    seq0: u64,
    pad: usize,
) -> anyhow::Result<u64> {
    use http_body_util::{BodyExt, Full};
    let (addr, path) = crate::parse_url(url)?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let padding = "x".repeat(pad);
    let mut pace = Pacer::new(rate, dur);
    let mut seq = seq0;
    while let Some(due) = pace.due(seq - seq0).await {
        while seq - seq0 < due {
            let v = event(seq, &padding);
            let req = http::Request::post(path.as_str())
                .header("host", addr.to_string())
                .header("content-type", "application/json")
                .body(Full::new(bytes::Bytes::from(v)))?;
            let resp = sender.send_request(req).await?;
            anyhow::ensure!(resp.status().is_success(), "publish: {}", resp.status());
            let _ = resp.into_body().collect().await;
            seq += 1;
        }
    }
    Ok(seq)
}

/// Create the JetStream stream `stream` on subjects `<stream>.>` (an existing one is
/// fine).
pub async fn create_nats_stream(url: &str, stream: &str) -> anyhow::Result<()> {
    let js = async_nats::jetstream::new(async_nats::connect(url).await?);
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: stream.to_owned(),
        subjects: vec![format!("{stream}.>")],
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Publish like [`produce`], to JetStream subject `<stream>.bench`: in order on one
/// connection, up to 256 publishes awaiting their acknowledgement at once (awaiting each
/// before the next would cap the rate at one per round trip).
pub async fn produce_nats(
    url: &str,
    stream: &str,
    rate: u64,
    dur: Duration,
    seq0: u64,
    pad: usize,
) -> anyhow::Result<u64> {
    let js = async_nats::jetstream::new(async_nats::connect(url).await?);
    let subject = format!("{stream}.bench");
    let padding = "x".repeat(pad);
    let mut pace = Pacer::new(rate, dur);
    let mut seq = seq0;
    let mut acks = std::collections::VecDeque::new();
    while let Some(due) = pace.due(seq - seq0).await {
        while seq - seq0 < due {
            acks.push_back(
                js.publish(subject.clone(), event(seq, &padding).into())
                    .await?,
            );
            seq += 1;
            if acks.len() >= 256 {
                acks.pop_front().expect("in flight").await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    Ok(seq)
}

/// A SQL session on `url`, its connection driven in the background.
async fn pg(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Create table `table` (`seq`, `ts`, `pad`: a row is an event) if missing.
pub async fn create_pg_table(url: &str, table: &str) -> anyhow::Result<()> {
    pg(url)
        .await?
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (seq bigint PRIMARY KEY, ts bigint NOT NULL, pad text NOT NULL)"
        ))
        .await?;
    Ok(())
}

/// Produce like [`produce`] as rows of `table`, one transaction (an insert) each, up to
/// 64 awaiting their commit at once on one connection (it pipelines them); each row's
/// `ts` is the time its insert is sent.
pub async fn produce_pg(
    url: &str,
    table: &str,
    rate: u64,
    dur: Duration,
    seq0: u64,
    pad: usize,
) -> anyhow::Result<u64> {
    use futures::StreamExt;
    let client = pg(url).await?;
    let insert = client
        .prepare(&format!(
            "INSERT INTO {table} (seq, ts, pad) VALUES ($1, $2, $3)"
        ))
        .await?;
    let padding = "x".repeat(pad);
    let mut pace = Pacer::new(rate, dur);
    let mut seq = seq0;
    let mut inflight = futures::stream::FuturesOrdered::new();
    // An insert is sent when its future is first polled, so the inserts in flight are
    // polled while the pacer waits (left alone, they would go out 64 at a time).
    loop {
        tokio::select! {
            biased;
            Some(r) = inflight.next(), if !inflight.is_empty() => {
                r?;
            }
            due = pace.due(seq - seq0), if inflight.len() < 64 => {
                let Some(due) = due else { break };
                while seq - seq0 < due && inflight.len() < 64 {
                    let (c, st, p) = (&client, &insert, &padding);
                    let s = seq as i64;
                    inflight.push_back(async move {
                        c.execute(st, &[&s, &(now_us() as i64), p]).await
                    });
                    seq += 1;
                }
            }
        }
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    Ok(seq)
}
