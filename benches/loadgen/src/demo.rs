//! The demo's producer: sample order events on a 3-partition topic, twice a second, with
//! the event type in a `type` header (so the demo route names events by it).

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

fn chrono_like_now() -> String {
    let ms = crate::conn::now_us() / 1000;
    format!("{ms}")
}
