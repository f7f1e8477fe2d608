//! The demo's producers: sample order events on a 3-partition Kafka topic, twice a
//! second, and sample shipment events on a NATS JetStream stream, each with the event type
//! in a `type` header (so the demo routes name events by it).

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use crate::produce;

/// Produce sample orders forever.
pub async fn run(brokers: &str, topic: &str, every: Duration) -> anyhow::Result<()> {
    produce::create_topic(brokers, topic, 3).await?;
    let p = produce::producer(brokers)?;
    let kinds = ["created", "paid", "shipped", "delivered"];
    let customers = ["ada", "grace", "linus", "margaret", "ken"];
    let mut n: u64 = 0;
    loop {
        let order = n / 4 + 1000;
        let kind = kinds[(n % 4) as usize];
        let customer = customers[(order % 5) as usize];
        let value = format!(
            "{{\"order\":{order},\"status\":\"{kind}\",\"customer\":\"{customer}\",\"amount\":{}.{:02},\"at\":\"{}\"}}",
            10 + order % 90,
            order % 100,
            chrono_like_now()
        );
        let key = format!("order-{order}");
        let headers = OwnedHeaders::new().insert(Header {
            key: "type",
            value: Some(kind),
        });
        let rec = FutureRecord::to(topic)
            .key(&key)
            .payload(&value)
            .headers(headers);
        if let Err((e, _)) = p.send(rec, Duration::from_secs(5)).await {
            eprintln!("demo producer: {e}");
        }
        n += 1;
        tokio::time::sleep(every).await;
    }
}

/// Publish sample shipments forever to JetStream stream `stream` (made when missing, on
/// subjects `<stream>.>`), on subject `<stream>.<region>` with `type` and `region` headers.
pub async fn run_nats(url: &str, stream: &str, every: Duration) -> anyhow::Result<()> {
    produce::create_nats_stream(url, stream).await?;
    let js = async_nats::jetstream::new(async_nats::connect(url).await?);
    let kinds = ["packed", "in_transit", "delivered"];
    let regions = ["eu", "us", "apac"];
    let mut n: u64 = 0;
    loop {
        let shipment = n / 3 + 5000;
        let kind = kinds[(n % 3) as usize];
        let region = regions[(shipment % 3) as usize];
        let value = format!(
            "{{\"shipment\":{shipment},\"order\":{},\"status\":\"{kind}\",\"region\":\"{region}\",\"at\":\"{}\"}}",
            1000 + shipment % 500,
            chrono_like_now()
        );
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("type", kind);
        headers.insert("region", region);
        let sent = js
            .publish_with_headers(format!("{stream}.{region}"), headers, value.into())
            .await;
        match sent {
            Ok(ack) => {
                if let Err(e) = ack.await {
                    eprintln!("demo nats producer: {e}");
                }
            }
            Err(e) => eprintln!("demo nats producer: {e}"),
        }
        n += 1;
        tokio::time::sleep(every).await;
    }
}

fn chrono_like_now() -> String {
    let ms = crate::conn::now_us() / 1000;
    format!("{ms}")
}
