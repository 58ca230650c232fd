//! Pass-through tunnels between two TCP sockets, copied in the kernel: `splice(2)` moves
//! each direction's bytes from one socket into a pipe and from the pipe into the other
//! socket, so they never enter the proxy's memory. Every byte is still charged to the
//! budget meter before it is passed on, and an idle side still ends the tunnel.

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::{AsyncWriteExt as _, Interest};
use tokio::net::TcpStream;

use crate::budget::Meter;

/// Bytes asked of one `splice` call, and the pipe size asked for to hold them.
const CHUNK: usize = 256 * 1024;

/// Copy both ways between `client` and `upstream` until both sides close, either fails,
/// or one is idle for `idle`. `early` holds bytes the client sent that were already read
/// (they go upstream first). Returns the bytes sent up, the bytes sent down, and why the
/// tunnel ended early.
pub(crate) async fn splice_tunnel(
    client: TcpStream,
    early: &[u8],
    mut upstream: TcpStream,
    meter: &Meter,
    idle: Duration,
) -> (u64, u64, Option<String>) {
    let mut sent_early = 0u64;
    if !early.is_empty() {
        let n = u64::try_from(early.len()).unwrap_or(u64::MAX);
        if let Err(reason) = meter.charge(n) {
            return (0, 0, Some(reason));
        }
        if let Err(e) = upstream.write_all(early).await {
            return (0, 0, Some(e.to_string()));
        }
        sent_early = n;
    }
    let pipes = match (pipe(), pipe()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return (sent_early, 0, Some(format!("pipe: {e}"))),
    };
    let up = one_way(&client, &upstream, &pipes.0, meter, idle);
    let down = one_way(&upstream, &client, &pipes.1, meter, idle);
    let (u, d, error) = both_ways(up, down).await;
    (sent_early + u, d, error)
}

/// Run a tunnel's two directions (each giving the bytes it moved and why it stopped early)
/// until both close cleanly or either fails: the bytes up, the bytes down, the first failure.
pub(crate) async fn both_ways<U, D>(up: U, down: D) -> (u64, u64, Option<String>)
where
    U: Future<Output = (u64, Option<String>)>,
    D: Future<Output = (u64, Option<String>)>,
{
    tokio::pin!(up, down);
    let mut up_result = None;
    let mut down_result = None;
    while up_result.is_none() || down_result.is_none() {
        tokio::select! {
            r = &mut up, if up_result.is_none() => {
                let failed = r.1.is_some();
                up_result = Some(r);
                if failed { break; }
            }
            r = &mut down, if down_result.is_none() => {
                let failed = r.1.is_some();
                down_result = Some(r);
                if failed { break; }
            }
        }
    }
    let (u, ue) = up_result.unwrap_or((0, None));
    let (d, de) = down_result.unwrap_or((0, None));
    (u, d, ue.or(de))
}

/// A non-blocking pipe, made as large as the kernel allows up to [`CHUNK`].
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
    // A smaller pipe only means smaller steps; the default (64 KiB) still works.
    let _ = rustix::pipe::fcntl_setpipe_size(&write, CHUNK);
    Ok((read, write))
}

/// Move `from`'s bytes to `to` through `pipe` until `from` closes (then shut down `to`'s
/// writing side), either side fails, or `from` is idle too long.
async fn one_way(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &(OwnedFd, OwnedFd),
    meter: &Meter,
    idle: Duration,
) -> (u64, Option<String>) {
    let (pipe_read, pipe_write) = pipe;
    let mut total = 0u64;
    loop {
        // In: socket → pipe. The pipe is empty here, so "would block" means the socket is.
        let read = async {
            loop {
                from.readable().await?;
                match from.try_io(Interest::READABLE, || {
                    rustix::pipe::splice(
                        from,
                        None,
                        pipe_write,
                        None,
                        CHUNK,
                        SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
                    )
                    .map_err(io::Error::from)
                }) {
                    Ok(n) => return Ok::<usize, io::Error>(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        };
        let mut held = match tokio::time::timeout(idle, read).await {
            Err(_) => return (total, Some(format!("idle for {idle:?}"))),
            Ok(Err(e)) => return (total, Some(e.to_string())),
            Ok(Ok(0)) => {
                let _ = socket_shutdown_write(to);
                return (total, None);
            }
            Ok(Ok(n)) => n,
        };
        let n64 = u64::try_from(held).unwrap_or(u64::MAX);
        if let Err(reason) = meter.charge(n64) {
            return (total, Some(reason));
        }
        // Out: pipe → socket, until the pipe is empty. "Would block" means the socket is full.
        while held > 0 {
            let wrote = async {
                loop {
                    to.writable().await?;
                    match to.try_io(Interest::WRITABLE, || {
                        rustix::pipe::splice(
                            pipe_read,
                            None,
                            to,
                            None,
                            held,
                            SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
                        )
                        .map_err(io::Error::from)
                    }) {
                        Ok(n) => return Ok::<usize, io::Error>(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
            };
            match tokio::time::timeout(idle, wrote).await {
                Err(_) => return (total, Some(format!("idle for {idle:?}"))),
                Ok(Err(e)) => return (total, Some(e.to_string())),
                Ok(Ok(0)) => return (total, Some("the other side stopped reading".into())),
                Ok(Ok(n)) => {
                    held -= n.min(held);
                    total += u64::try_from(n).unwrap_or(u64::MAX);
                }
            }
        }
    }
}

fn socket_shutdown_write(socket: &TcpStream) -> io::Result<()> {
    rustix::net::shutdown(socket, rustix::net::Shutdown::Write).map_err(io::Error::from)
}
