//! Server-sent event streams: one way to answer with a stream of events, shared by the
//! container log stream and the job event streams.
//!
//! A stream is forwarded from its own task through a bounded channel, so a slow client
//! never holds up whoever produces the events; it ends when the events end, when the
//! client goes away, or when the caller's token expires (the client reconnects with a
//! fresh one). While idle, a comment line goes out every [`SSE_KEEP_ALIVE`].
//!
//! Each stream holds one of the slots its subject may hold open
//! (`BERTH_MAX_STREAMS_PER_SUBJECT`, [`slot`]): taken before the route asks anything of
//! the engine or the store, given back when the stream's task ends.

use std::time::Duration;

use actix_web::Responder;
use actix_web_lab::sse;
pub use actix_web_lab::sse::{Data, Event};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::time::Instant;

use super::problem::ApiResult;
use crate::auth::Principal;
use crate::sessions::SubjectSlot;
use crate::state::AppState;

/// SSE keep-alive period: a comment line at least this often while idle.
pub const SSE_KEEP_ALIVE: Duration = Duration::from_secs(10);

/// How many events may wait for a slow client before the producer waits too.
const BUFFER: usize = 64;

/// An SSE data event with a JSON payload.
pub fn sse_json(event: &str, payload: &impl Serialize) -> Data {
    Data::new(serde_json::to_string(payload).unwrap_or_else(|_| "null".into())).event(event.to_string())
}

/// One of the streams `who` may hold open, or 429 `too_many_streams` (with
/// `Retry-After`). Take it first: before any engine or store call.
pub fn slot(state: &AppState, who: &Principal) -> ApiResult<SubjectSlot> {
    Ok(state.sessions.stream_slot(&who.subject)?)
}

/// Answer with `events` as a server-sent event stream, forwarded until they end, the
/// client goes away, or `deadline` (the token's expiry) passes; `slot` is given back
/// then.
pub fn stream<S>(events: S, deadline: Instant, slot: SubjectSlot) -> impl Responder
where
    S: Stream<Item = Event> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(BUFFER);
    tokio::spawn(async move {
        let _slot = slot;
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
    // `retry:` tells EventSource how soon to reconnect; proxies (nginx) must not buffer.
    sse::Sse::from_infallible_receiver(rx)
        .with_keep_alive(SSE_KEEP_ALIVE)
        .with_retry_duration(RECONNECT_AFTER)
        .customize()
        .insert_header(("X-Accel-Buffering", "no"))
}

/// The reconnection delay a stream suggests to EventSource (`retry:`).
pub const RECONNECT_AFTER: Duration = Duration::from_secs(3);

/// Number the events `id: 1`, `id: 2`, … in the order they come.
pub fn numbered(events: impl Stream<Item = Data>) -> impl Stream<Item = Event> {
    events.enumerate().map(|(i, data)| data.id((i as u64 + 1).to_string()).into())
}

#[cfg(test)]
mod tests {
    use actix_web::Responder;
    use futures_util::{StreamExt, stream};
    use tokio::time::{Duration, Instant};

    async fn body(events: impl futures_util::Stream<Item = super::Event> + Send + 'static, deadline: Instant) -> String {
        let req = actix_web::test::TestRequest::default().to_http_request();
        let slots = crate::sessions::SubjectSlots::new(1);
        let res = super::stream(events, deadline, slots.take("t").unwrap()).respond_to(&req);
        let bytes = match actix_web::body::to_bytes(res.into_body()).await {
            Ok(bytes) => bytes,
            Err(e) => panic!("{}", Into::<Box<dyn std::error::Error>>::into(e)),
        };
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[actix_web::test]
    async fn forwards_numbered_events_until_they_end() {
        let events = super::numbered(stream::iter([super::sse_json("log", &"a"), super::sse_json("end", &1)]));
        let got = body(events, Instant::now() + Duration::from_secs(60)).await;
        // First the reconnection hint, then the events.
        assert_eq!(
            got.replace(": keep-alive\n\n", ""),
            "retry: 3000\n\nid: 1\nevent: log\ndata: \"a\"\n\nid: 2\nevent: end\ndata: 1\n\n"
        );
    }

    #[actix_web::test]
    async fn ends_when_the_deadline_passes() {
        let events = stream::iter([super::Event::from(super::sse_json("log", &"a"))]).chain(stream::pending());
        let got = body(events, Instant::now() + Duration::from_millis(200)).await;
        // The body ends (to_bytes returns) although the events do not.
        assert_eq!(got.replace(": keep-alive\n\n", ""), "retry: 3000\n\nevent: log\ndata: \"a\"\n\n");
    }

    #[actix_web::test]
    async fn the_slot_comes_back_when_the_client_goes_away() {
        let slots = crate::sessions::SubjectSlots::new(1);
        let req = actix_web::test::TestRequest::default().to_http_request();
        let events = stream::iter([super::Event::from(super::sse_json("log", &"a"))]).chain(stream::pending());
        let res = super::stream(events, Instant::now() + Duration::from_secs(60), slots.take("t").unwrap()).respond_to(&req);
        assert_eq!(res.headers().get("x-accel-buffering").unwrap(), "no", "proxies must not buffer a stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(slots.take("t").is_none(), "held while the stream runs");
        drop(res);
        let deadline = Instant::now() + Duration::from_secs(5);
        while slots.take("t").is_none() {
            assert!(Instant::now() < deadline, "the slot came back");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
