//! Bodies in flight: counted, charged to the budgets, scanned for secrets with a hold-back
//! so a secret split across chunks is still caught before any of it is forwarded, and cut
//! when idle too long.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::budget::Meter;
use crate::matcher::{Hit, Matcher};

/// Errors carried by bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one body type the proxy sends both ways.
pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

/// A body from bytes.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub(crate) fn empty() -> ProxyBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// Why a body stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("no data for {0:?}; the transfer was cut")]
    Idle(Duration),
    #[error("{0}")]
    Budget(String),
    #[error("a known secret was found in the body")]
    Secret,
    #[error("the body is larger than the {0} bytes remit inspects")]
    TooLarge(usize),
    #[error(
        "the {0} bytes remit holds at once for inspecting request bodies are in use; retry shortly"
    )]
    Busy(usize),
}

/// Memory taken from a task-wide allowance of bytes held for inspection, returned when
/// dropped.
#[derive(Debug)]
pub(crate) struct Held {
    allowance: Arc<Semaphore>,
    total: usize,
    permit: Option<OwnedSemaphorePermit>,
}

impl Held {
    pub(crate) fn new(allowance: &Arc<Semaphore>, total: usize) -> Held {
        Held {
            allowance: Arc::clone(allowance),
            total,
            permit: None,
        }
    }

    /// Take as many more bytes as the allowance has left, up to `n`: how many were taken.
    pub(crate) fn take_up_to(&mut self, n: usize) -> usize {
        let room = n
            .min(self.allowance.available_permits())
            .min(u32::MAX as usize);
        if self.take(room).is_ok() { room } else { 0 }
    }

    /// Give back `n` of the bytes taken.
    pub(crate) fn give_back(&mut self, n: usize) {
        if let Some(permit) = &mut self.permit {
            drop(permit.split(n));
        }
    }

    /// Bytes this body holds.
    fn holding(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// The most this body could take more if no other body held anything.
    pub(crate) fn ceiling(&self) -> usize {
        self.total.saturating_sub(self.holding())
    }

    /// Take `n` more bytes, or fail at once if the allowance has not that many left: `Busy`
    /// when other bodies hold the rest (retrying may succeed), `TooLarge` when the whole
    /// allowance could not hold this body (retrying never will).
    pub(crate) fn take(&mut self, n: usize) -> Result<(), BodyError> {
        if n > self.ceiling() {
            return Err(BodyError::TooLarge(self.total));
        }
        let Ok(n) = u32::try_from(n) else {
            return Err(BodyError::TooLarge(self.total));
        };
        if n == 0 {
            return Ok(());
        }
        let permit = Arc::clone(&self.allowance)
            .try_acquire_many_owned(n)
            .map_err(|_| BodyError::Busy(self.total))?;
        match &mut self.permit {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
        Ok(())
    }
}

/// A body from bytes that keeps their memory counted (`held`) until it has been sent.
pub(crate) fn full_held(bytes: Bytes, held: Held) -> ProxyBody {
    HeldBody {
        inner: http_body_util::Full::new(bytes),
        _held: held,
    }
    .map_err(|never| match never {})
    .boxed()
}

struct HeldBody {
    inner: http_body_util::Full<Bytes>,
    _held: Held,
}

impl Body for HeldBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a scanner looks for and what it reports.
pub(crate) struct Scan {
    pub(crate) matcher: Arc<Matcher>,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Request bodies: phantoms to unbound hosts count. Response bodies: only real values.
    pub(crate) outbound: bool,
    /// Where a hit is left for the request handler.
    pub(crate) hit: Arc<Mutex<Option<Hit>>>,
    pending: BytesMut,
}

impl Scan {
    pub(crate) fn new(
        matcher: Arc<Matcher>,
        host: &str,
        port: u16,
        outbound: bool,
        hit: Arc<Mutex<Option<Hit>>>,
    ) -> Scan {
        Scan {
            matcher,
            host: host.to_owned(),
            port,
            outbound,
            hit,
            pending: BytesMut::new(),
        }
    }

    /// Add a chunk; what may be released now, or the hit.
    fn push(&mut self, chunk: &[u8]) -> Result<Bytes, Hit> {
        self.pending.extend_from_slice(chunk);
        if let Some(hit) = self
            .matcher
            .scan(&self.pending, &self.host, self.port, self.outbound)
        {
            return Err(hit);
        }
        let keep = self
            .matcher
            .longest()
            .saturating_sub(1)
            .min(self.pending.len());
        let release = self.pending.len() - keep;
        Ok(self.pending.split_to(release).freeze())
    }

    fn finish(&mut self) -> Bytes {
        self.pending.split().freeze()
    }
}

/// A body that is counted, charged, scanned and timed.
pub(crate) struct Metered<B> {
    inner: B,
    count: Arc<AtomicU64>,
    meter: Option<Meter>,
    scan: Option<Scan>,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    trailers: Option<http::HeaderMap>,
    ended: bool,
    /// Kept alive until the body ends (a record emitted on drop).
    _guard: Option<Arc<dyn Send + Sync>>,
    /// The client connection whose progress each frame is (a request body).
    progress: Option<Arc<crate::progress::Progress>>,
}

impl<B> Metered<B> {
    pub(crate) fn new(
        inner: B,
        count: Arc<AtomicU64>,
        meter: Option<Meter>,
        scan: Option<Scan>,
        idle: Duration,
        guard: Option<Arc<dyn Send + Sync>>,
    ) -> Metered<B> {
        Metered {
            inner,
            count,
            meter,
            scan,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            trailers: None,
            ended: false,
            _guard: guard,
            progress: None,
        }
    }

    /// Count each frame as progress of the client connection `progress` watches.
    pub(crate) fn watched(mut self, progress: Option<Arc<crate::progress::Progress>>) -> Self {
        self.progress = progress;
        self
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.ended {
                if let Some(scan) = &mut this.scan {
                    let tail = scan.finish();
                    if !tail.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(tail))));
                    }
                }
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => {
                    if this.sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(Err(Box::new(BodyError::Idle(this.idle)))));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(None) => this.ended = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(progress) = &this.progress {
                        progress.touch();
                    }
                    let frame = match frame.into_data() {
                        Ok(data) => data,
                        Err(frame) => {
                            if let Ok(trailers) = frame.into_trailers() {
                                // Trailers are searched like the body: a secret in one is
                                // refused the same way.
                                if let Some(scan) = &this.scan
                                    && let Some(hit) = trailers.iter().find_map(|(name, value)| {
                                        let mut field = name.as_str().as_bytes().to_vec();
                                        field.extend_from_slice(b": ");
                                        field.extend_from_slice(value.as_bytes());
                                        scan.matcher.scan(
                                            &field,
                                            &scan.host,
                                            scan.port,
                                            scan.outbound,
                                        )
                                    })
                                {
                                    if let Ok(mut slot) = scan.hit.lock() {
                                        *slot = Some(hit);
                                    }
                                    return Poll::Ready(Some(Err(Box::new(BodyError::Secret))));
                                }
                                this.trailers = Some(trailers);
                            }
                            this.ended = true;
                            continue;
                        }
                    };
                    this.sleep.as_mut().reset(Instant::now() + this.idle);
                    let n = u64::try_from(frame.len()).unwrap_or(u64::MAX);
                    this.count.fetch_add(n, Ordering::Relaxed);
                    if let Some(meter) = &this.meter
                        && let Err(reason) = meter.charge(n)
                    {
                        return Poll::Ready(Some(Err(Box::new(BodyError::Budget(reason)))));
                    }
                    let out = match &mut this.scan {
                        None => frame,
                        Some(scan) => match scan.push(&frame) {
                            Ok(release) => release,
                            Err(hit) => {
                                if let Ok(mut slot) = scan.hit.lock() {
                                    *slot = Some(hit);
                                }
                                return Poll::Ready(Some(Err(Box::new(BodyError::Secret))));
                            }
                        },
                    };
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
            && self.trailers.is_none()
            && self.scan.as_ref().is_none_or(|s| s.pending.is_empty())
    }

    fn size_hint(&self) -> SizeHint {
        if self.scan.is_some() {
            // Scanning holds bytes back, so the frames differ; the total is the same.
            self.inner.size_hint()
        } else {
            self.inner.size_hint()
        }
    }
}

/// Read a whole body, up to `limit` bytes, each frame within `idle`, counting what it holds
/// in `held`.
pub(crate) async fn collect_limited<B>(
    mut body: B,
    limit: usize,
    idle: Duration,
    meter: Option<&Meter>,
    held: &mut Held,
) -> Result<Bytes, BoxError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut out = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(Box::new(BodyError::Idle(idle))),
            Ok(None) => break,
            Ok(Some(frame)) => frame.map_err(Into::into)?,
        };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(Box::new(BodyError::TooLarge(limit)));
            }
            held.take(data.len()).map_err(|e| Box::new(e) as BoxError)?;
            if let Some(meter) = meter {
                meter
                    .charge(u64::try_from(data.len()).unwrap_or(u64::MAX))
                    .map_err(|r| Box::new(BodyError::Budget(r)) as BoxError)?;
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// Whether an error chain holds a body error of ours, and which.
pub(crate) fn body_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a BodyError> {
    let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(ours) = e.downcast_ref::<BodyError>() {
            return Some(ours);
        }
        current = e.source();
    }
    None
}
