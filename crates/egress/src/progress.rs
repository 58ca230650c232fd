//! A client connection's progress, watched: a connection that makes none is closed.
//!
//! A body's own idle timer (`Metered`) only runs while the body is polled, and hyper polls a
//! response body only when the client takes what was sent before: a client that asks and
//! then never reads (or an HTTP/2 client that opens a connection and sends nothing, or only
//! `PING`s, which HTTP/2 answers by itself) would hold the connection, its buffers and its
//! origin socket until the task ends. Here the service counts each connection's requests
//! still waiting for their answer and answers being sent, and every frame an answer hands
//! over is progress. A connection is closed when
//! - nothing is asked and nothing answered for [`crate::Limits::header_read_timeout`]
//!   (before its first request too), or
//! - answers are under way, no request is waiting, and the client has taken nothing for
//!   [`crate::Limits::idle_timeout`].
//!
//! A request still waiting for its answer (a decision, a human's approval, the origin) keeps
//! its connection: those waits have limits of their own. A request body still streaming to
//! the origin is progress too (an upload the origin answered early, a client-streaming
//! call), counted through [`CONNECTION`], which the service sets around each request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::time::Instant;

use crate::body::{BoxError, ProxyBody};

/// How long a connection being closed for want of progress may take to finish what it was
/// sending (an HTTP/2 `GOAWAY`), before it is dropped.
const GRACE: Duration = Duration::from_secs(5);

tokio::task_local! {
    /// The progress of the connection the request being served came on.
    pub(crate) static CONNECTION: Arc<Progress>;
}

/// The progress of the connection the request being served came on, if it is watched.
pub(crate) fn current() -> Option<Arc<Progress>> {
    CONNECTION.try_with(Arc::clone).ok()
}

/// One connection's requests and answers.
#[derive(Debug)]
pub(crate) struct Progress {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last progress.
    last: AtomicU64,
    waiting: AtomicUsize,
    answering: AtomicUsize,
}

impl Progress {
    pub(crate) fn new() -> Arc<Progress> {
        Arc::new(Progress {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            answering: AtomicUsize::new(0),
        })
    }

    /// Something moved.
    pub(crate) fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// A request is being answered: held until its answer is ready.
    pub(crate) fn asked(self: &Arc<Progress>) -> Waiting {
        self.touch();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(Arc::clone(self))
    }

    /// The answer's body, its frames counted as progress while it is sent.
    pub(crate) fn answer(self: &Arc<Progress>, body: ProxyBody) -> ProxyBody {
        self.touch();
        self.answering.fetch_add(1, Ordering::Relaxed);
        ProxyBody::new(Watched {
            inner: body,
            progress: Arc::clone(self),
        })
    }

    /// Why the connection should be closed now, if it should, and whether gracefully (it is
    /// quiet: nothing under way would be cut).
    fn stuck(&self, quiet: Duration, stalled: Duration) -> Option<(String, bool)> {
        let waiting = self.waiting.load(Ordering::Relaxed);
        let answering = self.answering.load(Ordering::Relaxed);
        let idle = self.idle();
        if waiting == 0 && answering == 0 && idle >= quiet {
            return Some((
                format!(
                    "nothing was asked on the connection for {} s",
                    idle.as_secs()
                ),
                true,
            ));
        }
        if waiting == 0 && answering > 0 && idle >= stalled {
            return Some((
                format!(
                    "the client took nothing of {answering} answer(s) under way for {} s",
                    idle.as_secs()
                ),
                false,
            ));
        }
        None
    }
}

/// A request waiting for its answer (see [`Progress::asked`]).
pub(crate) struct Waiting(Arc<Progress>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.touch();
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An answer's body being sent.
struct Watched {
    inner: ProxyBody,
    progress: Arc<Progress>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.progress.touch();
        self.progress.answering.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Body for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_ready() {
            self.progress.touch();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Answer one request of the connection `progress` watches: counted as waiting until
/// `handle` has its answer (and the connection's, for the request body, meanwhile), then the
/// answer's body watched.
pub(crate) async fn answer(
    progress: Arc<Progress>,
    handle: impl Future<Output = http::Response<ProxyBody>>,
) -> http::Response<ProxyBody> {
    let waiting = progress.asked();
    let response = CONNECTION.scope(Arc::clone(&progress), handle).await;
    drop(waiting);
    response.map(|body| progress.answer(body))
}

/// Drive `connection` to its end, or close it once it makes no progress (see the module): a
/// quiet one first with `shutdown` (a graceful close), then, [`GRACE`] later, by dropping
/// it; one with answers stalled by dropping it at once. `Err` says why it was closed.
pub(crate) async fn serve<C, E>(
    connection: C,
    shutdown: fn(Pin<&mut C>),
    progress: &Progress,
    limits: &crate::Limits,
) -> Result<Result<(), E>, String>
where
    C: Future<Output = Result<(), E>>,
{
    let (quiet, stalled) = (limits.header_read_timeout, limits.idle_timeout);
    let mut connection = std::pin::pin!(connection);
    let tick = quiet
        .min(stalled)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ended = connection.as_mut() => return Ok(ended),
            _ = ticks.tick() => {
                if let Some((why, graceful)) = progress.stuck(quiet, stalled) {
                    // A stalled answer is cut at once: a graceful close would wait for it.
                    if graceful {
                        shutdown(connection.as_mut());
                        // Whatever it ends with, it was closed for this.
                        let _ = tokio::time::timeout(GRACE, connection.as_mut()).await;
                    }
                    return Err(why);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule: quiet with nothing under way, stalled with answers under way and nothing
    /// moving; a request waiting for its answer, or a body still moving either way, keeps
    /// the connection.
    #[tokio::test(start_paused = true)]
    async fn a_connection_is_stuck_only_when_nothing_moves() {
        let quiet = Duration::from_secs(30);
        let stalled = Duration::from_secs(300);
        let progress = Progress::new();
        assert!(progress.stuck(quiet, stalled).is_none());
        tokio::time::advance(quiet).await;
        let (why, graceful) = progress.stuck(quiet, stalled).unwrap();
        assert!(why.contains("nothing was asked") && graceful, "{why}");

        // Waiting for an answer (an approval, a slow origin): never stuck.
        let waiting = progress.asked();
        tokio::time::advance(stalled * 2).await;
        assert!(progress.stuck(quiet, stalled).is_none());
        // Answered; the answer's body under way, the client taking nothing.
        let body = progress.answer(crate::body::empty());
        drop(waiting);
        tokio::time::advance(stalled - Duration::from_secs(1)).await;
        assert!(progress.stuck(quiet, stalled).is_none());
        // An upload still streaming to the origin is progress.
        progress.touch();
        tokio::time::advance(stalled - Duration::from_secs(1)).await;
        assert!(progress.stuck(quiet, stalled).is_none());
        tokio::time::advance(Duration::from_secs(2)).await;
        let (why, graceful) = progress.stuck(quiet, stalled).unwrap();
        assert!(why.contains("took nothing") && !graceful, "{why}");
        drop(body);
        assert!(progress.stuck(quiet, stalled).is_none());
    }
}
