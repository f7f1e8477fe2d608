//! The loop every source reader runs in: read until cancelled; after a failure, count
//! it, mark the route's source down with the error (what `/readyz` and waiting clients
//! see), and try again with backoff.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::SourceError;
use crate::bus::Hub;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long was a working connection, not one more failed attempt.
const HEALTHY: Duration = Duration::from_secs(30);

/// Run `once` until it returns `Ok` (it saw `cancel`) or `cancel` fires; `kind` names
/// the source in logs.
pub async fn reconnecting<F, Fut>(hub: &Hub, kind: &str, cancel: &CancellationToken, mut once: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), SourceError>>,
{
    let mut backoff = FIRST_BACKOFF;
    let route = hub.metrics().route().to_owned();
    loop {
        let began = tokio::time::Instant::now();
        match once().await {
            Ok(()) => return,
            Err(e) => {
                // A connection that held a while starts the backoff over.
                if began.elapsed() >= HEALTHY {
                    backoff = FIRST_BACKOFF;
                }
                hub.metrics().source_errors.inc();
                warn!(route = %route, source = kind, error = %e, retry_in = ?backoff, "source failed");
                hub.set_state(|s| {
                    s.connected = false;
                    s.last_error = Some(e.to_string());
                });
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
