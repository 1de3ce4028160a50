//! The downstream request body as forwarded upstream, remembering how it ended, so a
//! failure the client caused (a malformed chunk, an upload cut short, a body that never
//! arrives) is answered and counted as the client's, never as the target's.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

const SENDING: u8 = 0;
const COMPLETE: u8 = 1;
const FAILED: u8 = 2;

/// How the current request's body has gone so far. One per downstream connection: an
/// HTTP/1 connection carries one request at a time.
#[derive(Debug, Default)]
pub(crate) struct BodyState(AtomicU8);

/// Where the client's body stood when the upstream exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyEnd {
    /// Fully read from the client.
    Complete,
    /// Still arriving (slow or stalled client).
    Sending,
    /// The client's body could not be read: malformed, or cut short.
    Failed,
}

impl BodyState {
    pub(crate) fn end(&self) -> BodyEnd {
        match self.0.load(Ordering::Acquire) {
            COMPLETE => BodyEnd::Complete,
            FAILED => BodyEnd::Failed,
            _ => BodyEnd::Sending,
        }
    }
}

/// The client's body, passed through unchanged.
pub(crate) struct ClientBody {
    inner: Incoming,
    state: Arc<BodyState>,
}

impl ClientBody {
    /// Wraps `inner` for a new request, resetting `state`.
    pub(crate) fn new(inner: Incoming, state: Arc<BodyState>) -> Self {
        let start = if inner.is_end_stream() {
            COMPLETE
        } else {
            SENDING
        };
        state.0.store(start, Ordering::Release);
        Self { inner, state }
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
            Poll::Ready(None) => Some(COMPLETE),
            Poll::Ready(Some(Err(_))) => Some(FAILED),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => Some(COMPLETE),
            _ => None,
        };
        if let Some(m) = mark {
            self.state.0.store(m, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
