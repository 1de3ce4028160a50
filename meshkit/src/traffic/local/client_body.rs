//! The downstream request body as forwarded upstream, remembering where it stands, so a
//! failure the client caused (a malformed chunk, an upload cut short, a body that stops
//! arriving) is answered and counted as the client's, never as the target's.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// Waiting for the client to send more of the body.
const WAITING_CLIENT: u32 = 0;
/// The last part the client sent was handed upstream; waiting for the upstream.
const FORWARDED: u32 = 1;
const COMPLETE: u32 = 2;
const FAILED: u32 = 3;

/// How the current request's body stands, one per downstream connection. The low two
/// bits are the state, the rest the request's generation: a body of an earlier request
/// on the same keep-alive connection, still polled by the upstream side, cannot
/// overwrite the current one's state. No allocation per request.
#[derive(Debug, Default)]
pub(crate) struct BodyState(AtomicU32);

/// Where the client's body stood when the upstream exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyEnd {
    /// Fully read from the client.
    Complete,
    /// The mesh was waiting for the client to send more (a slow or stalled client).
    WaitingForClient,
    /// Everything the client sent was handed upstream; the upstream had not asked for
    /// more (a target that stopped reading is the target's failure).
    Forwarded,
    /// The client's body could not be read: malformed, or cut short.
    Failed,
}

impl BodyState {
    pub(crate) fn end(&self) -> BodyEnd {
        match self.0.load(Ordering::Acquire) & 3 {
            COMPLETE => BodyEnd::Complete,
            FAILED => BodyEnd::Failed,
            FORWARDED => BodyEnd::Forwarded,
            _ => BodyEnd::WaitingForClient,
        }
    }

    /// Starts a new request in `state`; returns its generation.
    fn begin(&self, state: u32) -> u32 {
        let gen_ = (self.0.load(Ordering::Acquire) >> 2).wrapping_add(1) & (u32::MAX >> 2);
        self.0.store((gen_ << 2) | state, Ordering::Release);
        gen_
    }

    /// Sets `state` if request `gen_` is still the current one.
    fn set(&self, gen_: u32, state: u32) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now >> 2 == gen_).then_some((gen_ << 2) | state)
            });
    }
}

/// The client's body, passed through unchanged.
pub(crate) struct ClientBody {
    inner: Incoming,
    state: Arc<BodyState>,
    gen_: u32,
}

impl ClientBody {
    /// Wraps `inner` for a new request on the connection that `state` belongs to.
    pub(crate) fn new(inner: Incoming, state: Arc<BodyState>) -> Self {
        let start = if inner.is_end_stream() {
            COMPLETE
        } else {
            WAITING_CLIENT
        };
        let gen_ = state.begin(start);
        Self { inner, state, gen_ }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let mark = match &polled {
            Poll::Ready(None) => COMPLETE,
            Poll::Ready(Some(Err(_))) => FAILED,
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => COMPLETE,
            Poll::Ready(Some(Ok(_))) => FORWARDED,
            Poll::Pending => WAITING_CLIENT,
        };
        self.state.set(self.gen_, mark);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_earlier_requests_body_cannot_change_the_current_state() {
        let s = BodyState::default();
        let first = s.begin(WAITING_CLIENT);
        s.set(first, FORWARDED);
        assert_eq!(s.end(), BodyEnd::Forwarded);
        let second = s.begin(WAITING_CLIENT);
        // The first request's body ends late: ignored.
        s.set(first, COMPLETE);
        assert_eq!(s.end(), BodyEnd::WaitingForClient);
        s.set(second, FAILED);
        assert_eq!(s.end(), BodyEnd::Failed);
    }
}
