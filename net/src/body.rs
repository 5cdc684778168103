//! Body wrappers of the serve loop: a deadline for the whole request body (`listen.body_read_timeout`), a
//! parking place for a body the handler dropped unread ([`KeepUnread`]), and a guard that marks a request as in
//! progress until its response body is finished or dropped (`listen.idle_timeout`).
//!
//! tower-http's `RequestBodyTimeout` bounds the wait for each *frame*, so a peer sending one byte just inside
//! every timeout keeps a body (and the handler reading it) alive forever; this one bounds the whole body.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::BoxError;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep, sleep_until};

/// The error a request body gives once `listen.body_read_timeout` has passed.
#[derive(Debug, thiserror::Error)]
#[error("request body not complete within listen.body_read_timeout")]
pub(crate) struct BodyTimeout;

/// A request body that fails with [`BodyTimeout`] when it is not complete by `deadline`, and records that in
/// `expired` (so the serve loop can answer 408 whatever the handler made of the error).
pub(crate) struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl<B> DeadlineBody<B> {
    pub(crate) fn new(inner: B, deadline: Instant, expired: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            deadline,
            sleep: None,
            expired,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.expired.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.expired.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(BodyTimeout.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The most of an unread request body the serve loop reads before answering; a larger rest is dropped (over
/// HTTP/2 that resets the stream, which is what a client sending that much to a refusing handler deserves).
pub(crate) const MAX_UNREAD_DRAIN: usize = 64 * 1024;

/// Where [`KeepUnread`] parks a request body that was dropped before its end.
pub(crate) type Unread<B> = Arc<Mutex<Option<B>>>;

/// A request body that, when dropped before its end (a handler answered without reading it: an authorisation
/// refusal, a 405, a 404), parks the rest in a shared slot instead of dropping it.
///
/// Dropping an unfinished HTTP/2 request body resets the stream while the client may still be sending, and
/// curl 7.88 then reports "(92) Stream error in the HTTP/2 framing layer" instead of the answer, about every
/// second time. The serve loop reads the parked rest ([`drain`]) before the answer goes out, so the client sees
/// the stream end cleanly.
pub(crate) struct KeepUnread<B: Body> {
    inner: Option<B>,
    slot: Unread<B>,
    ended: bool,
}

impl<B: Body> KeepUnread<B> {
    pub(crate) fn new(inner: B, slot: Unread<B>) -> Self {
        Self {
            inner: Some(inner),
            slot,
            ended: false,
        }
    }
}

impl<B: Body> Drop for KeepUnread<B> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && !self.ended
            && !inner.is_end_stream()
        {
            *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(inner);
        }
    }
}

impl<B> Body for KeepUnread<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = Pin::new(inner).poll_frame(cx);
        // After an error there is nothing worth reading on; after the end there is nothing left.
        if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
            this.ended = true;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// Reads and discards what is left of a parked request body: up to [`MAX_UNREAD_DRAIN`] bytes, until its end,
/// an error, or its deadline (the body is a [`DeadlineBody`]). Returns whether the body reached its end.
pub(crate) async fn drain<B>(mut body: B) -> bool
where
    B: Body<Data = Bytes> + Unpin,
{
    use std::future::poll_fn;
    let mut read = 0usize;
    loop {
        match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => return true,
            Some(Err(_)) => return false,
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    read = read.saturating_add(data.len());
                    if read > MAX_UNREAD_DRAIN {
                        return false;
                    }
                }
            }
        }
    }
}

/// Counts requests in progress on one connection (the serve loop watches the count for `idle_timeout`).
#[derive(Debug, Clone)]
pub(crate) struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    pub(crate) fn new() -> (Self, watch::Receiver<usize>) {
        let (tx, rx) = watch::channel(0);
        (Self(Arc::new(tx)), rx)
    }

    /// One more request in progress until the guard is dropped.
    pub(crate) fn begin(&self) -> InFlightGuard {
        self.0.send_modify(|n| *n += 1);
        InFlightGuard(self.0.clone())
    }
}

/// Drops the in-progress count by one.
#[derive(Debug)]
pub(crate) struct InFlightGuard(Arc<watch::Sender<usize>>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body that holds an [`InFlightGuard`] until it is finished or dropped.
pub(crate) struct Tracked<B> {
    inner: B,
    _guard: InFlightGuard,
}

impl<B> Tracked<B> {
    pub(crate) fn new(inner: B, guard: InFlightGuard) -> Self {
        Self {
            inner,
            _guard: guard,
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
