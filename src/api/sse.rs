//! Server-sent event streams: one way to answer with a stream of events, shared by the
//! container log stream and the job event streams.
//!
//! A stream is forwarded from its own task through a bounded channel, so a slow client
//! never holds up whoever produces the events; it ends when the events end, when the
//! client goes away, or when the caller's token expires (the client reconnects with a
//! fresh one). While idle, a comment line goes out every [`SSE_KEEP_ALIVE`].

use std::time::Duration;

use actix_web::Responder;
use actix_web_lab::sse;
pub use actix_web_lab::sse::{Data, Event};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::time::Instant;

/// SSE keep-alive period: a comment line at least this often while idle.
pub const SSE_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// How many events may wait for a slow client before the producer waits too.
const BUFFER: usize = 64;

/// An SSE data event with a JSON payload.
pub fn sse_json(event: &str, payload: &impl Serialize) -> Data {
    Data::new(serde_json::to_string(payload).unwrap_or_else(|_| "null".into())).event(event.to_string())
}

/// Answer with `events` as a server-sent event stream, forwarded until they end, the
/// client goes away, or `deadline` (the token's expiry) passes.
pub fn stream<S>(events: S, deadline: Instant) -> impl Responder
where
    S: Stream<Item = Event> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(BUFFER);
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                _ = tx.closed() => return,
                _ = tokio::time::sleep_until(deadline) => return,
            };
            let Some(event) = event else { return };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    sse::Sse::from_infallible_receiver(rx).with_keep_alive(SSE_KEEP_ALIVE)
}

/// Number the events `id: 1`, `id: 2`, … in the order they come.
pub fn numbered(events: impl Stream<Item = Data>) -> impl Stream<Item = Event> {
    events.enumerate().map(|(i, data)| data.id((i as u64 + 1).to_string()).into())
}
