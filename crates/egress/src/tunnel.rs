//! Pass-through tunnels (`dangerously_tunnel`). Between two TCP sockets the bytes are
//! copied in the kernel: `splice(2)` moves each direction's bytes from one socket into a pipe
//! and from the pipe into the other socket, so they never enter the proxy's memory. Every
//! chunk is still charged to the budget meter before it is passed on, and an idle side still
//! ends the tunnel. Whatever way a tunnel ends (closed, cut, refused after its `CONNECT` was
//! allowed, or dropped when the task ends), it is reported once, with the bytes it moved.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, Interest};
use tokio::net::TcpStream;

use crate::budget::Meter;
use crate::events::{EgressEvent, TunnelRecord};
use crate::{EgressGate, Shared};

/// Bytes asked of one `splice` call, and the pipe size asked for to hold them. Larger pipes
/// (256 KiB) cut the proxy's own CPU a little more but hand the task bigger bursts, which it
/// then spends more on receiving: no faster end to end on loopback.
const CHUNK: usize = 64 * 1024;

/// A tunnel whose `CONNECT` was allowed under `id`: reported to the gate when dropped.
pub(crate) struct Tunnel<G: EgressGate> {
    shared: Arc<Shared<G>>,
    id: u64,
    peer: SocketAddr,
    host: String,
    port: u16,
    started: Instant,
    /// The address connected to, once connected.
    upstream: Option<SocketAddr>,
    /// Bytes passed on from the task, and to it.
    up: AtomicU64,
    down: AtomicU64,
    /// Why it ended early; until it ends by itself, that the task ended first.
    error: Option<String>,
    /// Its place among the task's connections at once ([`crate::Limits::max_connections`]):
    /// a tunnel outlives the proxy connection that opened it.
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<G: EgressGate> Tunnel<G> {
    /// The tunnel allowed under `id` (from `shared.next_id`).
    pub(crate) fn new(
        shared: Arc<Shared<G>>,
        id: u64,
        peer: SocketAddr,
        host: String,
        port: u16,
    ) -> Self {
        Tunnel {
            id,
            shared,
            peer,
            host,
            port,
            started: Instant::now(),
            upstream: None,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            error: Some("the task ended while the tunnel was open".into()),
            slot: None,
        }
    }

    /// Take a place among the task's connections for as long as the tunnel lives (that of
    /// the connection the `CONNECT` came on, `slot`, if it is still there); `false` when
    /// there is none left.
    pub(crate) fn take_slot(&mut self, slot: &crate::proxy::Slot) -> bool {
        self.slot = crate::proxy::take_place(&self.shared, slot);
        self.slot.is_some()
    }

    /// Hand its place back to the connection the `CONNECT` came on, which goes on serving
    /// requests after a refusal.
    pub(crate) fn give_back(&mut self, slot: &crate::proxy::Slot) {
        if let Some(place) = self.slot.take() {
            let mut held = slot.lock().unwrap_or_else(|p| p.into_inner());
            if held.is_none() {
                *held = Some(place);
            }
        }
    }

    /// It ended, or will, without carrying anything further: why.
    pub(crate) fn fail(&mut self, why: String) {
        self.error = Some(why);
    }

    /// Connected to `addr`.
    pub(crate) fn connected(&mut self, addr: SocketAddr) {
        self.upstream = Some(addr);
    }

    /// Copy both ways between the task's side and `upstream` until both close, either side
    /// fails, or one is idle for `idle`; `early` holds bytes of the task's already read (they
    /// go upstream first). Between two TCP sockets the copy is done in the kernel.
    pub(crate) async fn carry<C>(
        &mut self,
        client: C,
        early: &[u8],
        mut upstream: TcpStream,
        meter: &Meter,
        idle: Duration,
    ) where
        C: Client,
    {
        if !early.is_empty() {
            let n = u64::try_from(early.len()).unwrap_or(u64::MAX);
            if let Err(reason) = meter.charge(n) {
                self.error = Some(reason);
                return;
            }
            if let Err(e) = upstream.write_all(early).await {
                self.error = Some(e.to_string());
                return;
            }
            self.up.fetch_add(n, Ordering::Relaxed);
        }
        let (up, down) = (&self.up, &self.down);
        self.error = match client.into_tcp() {
            Ok(client) => match (pipe(), pipe()) {
                (Ok(a), Ok(b)) => {
                    both_ways(
                        one_way(&client, &upstream, &a, meter, idle, up),
                        one_way(&upstream, &client, &b, meter, idle, down),
                    )
                    .await
                }
                (Err(e), _) | (_, Err(e)) => Some(format!("pipe: {e}")),
            },
            Err(client) => {
                let (mut ar, mut aw) = tokio::io::split(client);
                let (mut br, mut bw) = tokio::io::split(upstream);
                both_ways(
                    copy_one_way(&mut ar, &mut bw, meter, idle, up),
                    copy_one_way(&mut br, &mut aw, meter, idle, down),
                )
                .await
            }
        };
    }
}

impl<G: EgressGate> Drop for Tunnel<G> {
    fn drop(&mut self) {
        self.shared.gate.observe(EgressEvent::Tunnel(TunnelRecord {
            id: self.id,
            peer: self.peer,
            host: std::mem::take(&mut self.host),
            port: self.port,
            upstream: self.upstream,
            bytes_up: self.up.load(Ordering::Relaxed),
            bytes_down: self.down.load(Ordering::Relaxed),
            duration_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            error: self.error.take(),
        }));
    }
}

/// The task's side of a tunnel: a TCP socket the kernel can splice, or any other stream.
pub(crate) trait Client: AsyncRead + AsyncWrite + Unpin + Sized {
    /// The TCP socket itself, if that is what this is.
    fn into_tcp(self) -> Result<TcpStream, Self>;
}

impl Client for TcpStream {
    fn into_tcp(self) -> Result<TcpStream, Self> {
        Ok(self)
    }
}

impl Client for hyper_util::rt::TokioIo<hyper::upgrade::Upgraded> {
    fn into_tcp(self) -> Result<TcpStream, Self> {
        Err(self)
    }
}

/// Run a tunnel's two directions (each giving why it stopped early) until both close cleanly
/// or either fails: the first failure.
async fn both_ways<U, D>(up: U, down: D) -> Option<String>
where
    U: Future<Output = Option<String>>,
    D: Future<Output = Option<String>>,
{
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        let failed = tokio::select! {
            r = &mut up, if !up_done => { up_done = true; r }
            r = &mut down, if !down_done => { down_done = true; r }
        };
        if failed.is_some() {
            return failed;
        }
    }
    None
}

/// A non-blocking pipe, made as large as the kernel allows up to [`CHUNK`].
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    // A smaller pipe only means smaller steps; the default (64 KiB) still works.
    let _ = rustix::pipe::fcntl_setpipe_size(&write, CHUNK);
    Ok((read, write))
}

/// Move `from`'s bytes to `to` through `pipe` until `from` closes (then shut down `to`'s
/// writing side), either side fails, or `from` is idle too long; count them in `moved`.
async fn one_way(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &(OwnedFd, OwnedFd),
    meter: &Meter,
    idle: Duration,
    moved: &AtomicU64,
) -> Option<String> {
    let (pipe_read, pipe_write) = pipe;
    // Without it a lone urgent byte waits for the next ordinary bytes; nothing else changes.
    let urgent = UrgentWatch::new(from).ok();
    loop {
        // In: socket → pipe. The pipe is empty here, so "would block" means the socket is.
        let read = splice_in(from, pipe_write.as_fd(), CHUNK, urgent.as_ref());
        let step = match tokio::time::timeout(idle, read).await {
            Err(_) => return Some(format!("idle for {idle:?}")),
            Ok(Err(e)) => return Some(e.to_string()),
            Ok(Ok(step)) => step,
        };
        let mut held = match step {
            In::End => {
                let _ = rustix::net::shutdown(to, rustix::net::Shutdown::Write);
                return None;
            }
            In::Spliced(n) => n,
            In::Urgent { byte, after } => {
                let n = after.len() + usize::from(byte.is_some());
                if let Err(reason) = meter.charge(u64::try_from(n).unwrap_or(u64::MAX)) {
                    return Some(reason);
                }
                // Passed on as it came: the urgent byte as urgent, then what followed it.
                let sent = async {
                    if let Some(byte) = byte {
                        send_when_ready(to, &[byte], rustix::net::SendFlags::OOB).await?;
                    }
                    let mut rest = &after[..];
                    while !rest.is_empty() {
                        let n = send_when_ready(to, rest, rustix::net::SendFlags::empty()).await?;
                        rest = &rest[n.min(rest.len())..];
                    }
                    io::Result::Ok(())
                };
                match tokio::time::timeout(idle, sent).await {
                    Err(_) => return Some(format!("idle for {idle:?}")),
                    Ok(Err(e)) => return Some(e.to_string()),
                    Ok(Ok(())) => {}
                }
                moved.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
                continue;
            }
        };
        if let Err(reason) = meter.charge(u64::try_from(held).unwrap_or(u64::MAX)) {
            return Some(reason);
        }
        // Out: pipe → socket, until the pipe is empty. "Would block" means the socket is full.
        while held > 0 {
            let wrote =
                splice_when_ready(to, Interest::WRITABLE, pipe_read.as_fd(), to.as_fd(), held);
            match tokio::time::timeout(idle, wrote).await {
                Err(_) => return Some(format!("idle for {idle:?}")),
                Ok(Err(e)) => return Some(e.to_string()),
                Ok(Ok(0)) => return Some("the other side stopped reading".into()),
                Ok(Ok(n)) => {
                    held -= n.min(held);
                    moved.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
                }
            }
        }
    }
}

/// What one read from a tunnel's socket gave.
enum In {
    /// The socket's sender closed its side.
    End,
    /// Bytes spliced into the pipe.
    Spliced(usize),
    /// The socket stood at TCP's urgent mark, which `splice(2)` does not cross: the urgent
    /// byte (if it was still to be read) and the ordinary bytes after it, read through user
    /// space, which crosses the mark.
    Urgent { byte: Option<u8>, after: Vec<u8> },
}

/// Splice up to `len` bytes from socket `from` into `pipe`, once `from` is readable.
///
/// At TCP's urgent mark `splice(2)` moves nothing ("would block", or 0 once the sender's
/// close has arrived), and since nothing new arrives the socket never becomes readable
/// again: the direction would stall until the idle timeout, or end early. So when a readable
/// socket splices nothing, a peek tells whether ordinary bytes wait past the mark; if so,
/// the urgent byte and those bytes are read through user space (an ordinary read steps over
/// the mark), and splicing resumes after them. An urgent byte with nothing after it does not
/// make the socket readable at all: `urgent`, if given, reports it.
async fn splice_in(
    from: &TcpStream,
    pipe: BorrowedFd<'_>,
    len: usize,
    urgent: Option<&UrgentWatch>,
) -> io::Result<In> {
    let spliced = spliced_in(from, pipe, len);
    match urgent {
        None => spliced.await,
        Some(watch) => tokio::select! {
            biased;
            step = spliced => step,
            step = watch.lone_byte(from) => step,
        },
    }
}

/// The readable half of [`splice_in`].
async fn spliced_in(from: &TcpStream, pipe: BorrowedFd<'_>, len: usize) -> io::Result<In> {
    when_ready(from, Interest::READABLE, || {
        match splice(from.as_fd(), pipe, len) {
            // Also what `splice(2)` says at the urgent mark once the sender's close has
            // arrived: it is the end only if no ordinary bytes wait past the mark.
            Ok(0) => match past_urgent_mark(from, len) {
                // The end; but an urgent byte sent just before the close sits out of band,
                // where no splice or ordinary read reaches it: pass it on first.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(match urgent_byte(from) {
                    Some(byte) => In::Urgent {
                        byte: Some(byte),
                        after: Vec::new(),
                    },
                    None => In::End,
                }),
                other => other,
            },
            Ok(n) => Ok(In::Spliced(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => past_urgent_mark(from, len),
            Err(e) => Err(e),
        }
    })
    .await
}

/// After `splice(2)` moved nothing from a readable `from`: if ordinary bytes wait, `from`
/// stands at the urgent mark; read the urgent byte (if it is still to be read) and up to
/// `len` ordinary bytes after it. "Would block" if nothing waits.
fn past_urgent_mark(from: &TcpStream, len: usize) -> io::Result<In> {
    use rustix::net::RecvFlags;
    let mut peek = [0u8; 1];
    if rustix::net::recv(from, &mut peek, RecvFlags::PEEK | RecvFlags::DONTWAIT)?.0 == 0 {
        // The sender closed meanwhile: the next splice says so.
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let byte = urgent_byte(from);
    let mut after = vec![0u8; len];
    let n = match rustix::net::recv(from, &mut after, RecvFlags::DONTWAIT) {
        Ok((n, _)) => n,
        Err(rustix::io::Errno::AGAIN) => 0,
        Err(e) => return Err(e.into()),
    };
    after.truncate(n);
    Ok(In::Urgent { byte, after })
}

/// Urgent data on a socket, which its own registration with the runtime (readable and
/// writable) never reports: the kernel says "priority", not "readable", while the urgent byte
/// is all there is to read. Watched through a duplicate of the socket's descriptor,
/// registered for priority alone.
struct UrgentWatch(AsyncFd<OwnedFd>);

impl UrgentWatch {
    fn new(socket: &TcpStream) -> io::Result<Self> {
        let dup = socket.as_fd().try_clone_to_owned()?;
        // Deprecated because an arbitrary `AsRawFd` may close or change its descriptor while
        // registered; an `OwnedFd` owned by the `AsyncFd` can do neither, which is what the
        // unsafe replacement asks its caller to promise (and this crate has no unsafe code).
        #[allow(deprecated)]
        let watch = AsyncFd::with_interest(dup, Interest::PRIORITY)?;
        Ok(Self(watch))
    }

    /// Once `from` holds an urgent byte not yet read: that byte, with nothing after it (any
    /// ordinary bytes after it make `from` readable, and are taken that way).
    async fn lone_byte(&self, from: &TcpStream) -> io::Result<In> {
        loop {
            let mut ready = self.0.ready(Interest::PRIORITY).await?;
            if let Some(byte) = urgent_byte(from) {
                return Ok(In::Urgent {
                    byte: Some(byte),
                    after: Vec::new(),
                });
            }
            // Read already by the readable path, or the socket closed: wait for the next.
            ready.clear_ready();
        }
    }
}

/// The urgent byte `from` holds out of band, if one is there still unread.
fn urgent_byte(from: &TcpStream) -> Option<u8> {
    use rustix::net::RecvFlags;
    let mut byte = [0u8; 1];
    match rustix::net::recv(from, &mut byte, RecvFlags::OOB | RecvFlags::DONTWAIT) {
        Ok((1, _)) => Some(byte[0]),
        // Already read, or none (EINVAL): nothing urgent to pass on.
        _ => None,
    }
}

/// Send `bytes` (with `flags`) on `to` once it is writable; how many were sent.
async fn send_when_ready(
    to: &TcpStream,
    bytes: &[u8],
    flags: rustix::net::SendFlags,
) -> io::Result<usize> {
    when_ready(to, Interest::WRITABLE, || {
        rustix::net::send(to, bytes, flags | rustix::net::SendFlags::DONTWAIT)
            .map_err(io::Error::from)
    })
    .await
}

/// One `splice(2)` of up to `len` bytes from `from` to `to`, once `socket` (one of them) is
/// ready for `interest`.
async fn splice_when_ready(
    socket: &TcpStream,
    interest: Interest,
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    len: usize,
) -> io::Result<usize> {
    when_ready(socket, interest, || splice(from, to, len)).await
}

/// A non-blocking `splice(2)` of up to `len` bytes.
fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    rustix::pipe::splice(
        from,
        None,
        to,
        None,
        len,
        SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
    )
    .map_err(io::Error::from)
}

/// `op` on `socket` once it is ready for `interest`. "Would block" clears that readiness
/// and waits again.
async fn when_ready<T>(
    socket: &TcpStream,
    interest: Interest,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    loop {
        socket.ready(interest).await?;
        match socket.try_io(interest, &mut op) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            done => return done,
        }
    }
}

/// Copy `from` to `to` through user space, charging the meter and counting in `moved`, until
/// `from` closes (then close `to`), either side fails, or `from` is idle too long.
async fn copy_one_way<R, W>(
    from: &mut R,
    to: &mut W,
    meter: &Meter,
    idle: Duration,
    moved: &AtomicU64,
) -> Option<String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match tokio::time::timeout(idle, from.read(&mut buf)).await {
            Err(_) => return Some(format!("idle for {idle:?}")),
            Ok(Err(e)) => return Some(e.to_string()),
            Ok(Ok(0)) => {
                let _ = to.shutdown().await;
                return None;
            }
            Ok(Ok(n)) => n,
        };
        let n64 = u64::try_from(n).unwrap_or(u64::MAX);
        if let Err(reason) = meter.charge(n64) {
            return Some(reason);
        }
        if let Err(e) = to.write_all(&buf[..n]).await {
            return Some(e.to_string());
        }
        moved.fetch_add(n64, Ordering::Relaxed);
    }
}
