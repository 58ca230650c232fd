//! Pass-through tunnels (`dangerously_tunnel`): the task's TLS reaches the origin untouched,
//! both directions arrive whole, the bytes are counted and charged to the budget, and a
//! budget that runs out cuts the tunnel.

use std::sync::Arc;

use crate::support::*;

const UP: usize = 2 << 20;
const DOWN: usize = 3 << 20;

/// An HTTPS origin with its own CA: `/echo` answers how many bytes it was sent followed by
/// `DOWN` bytes of `z`; anything else answers `hello`.
fn tls_origin(rt: &tokio::runtime::Runtime, ca: &OriginCa) -> Origin {
    let handler: Handler = Arc::new(|seen: &Seen| {
        if seen.uri.ends_with("/echo") {
            let mut body = format!("{}\n", seen.body.len()).into_bytes();
            body.resize(body.len() + DOWN, b'z');
            (200, vec![], body)
        } else {
            (200, vec![], b"hello".to_vec())
        }
    });
    rt.block_on(origin(
        "127.0.0.1:0",
        Some(ca.server_config(&["tunnel.test"])),
        handler,
    ))
}

/// The origin, and a proxy that passes its host through (with `extra` in its remit); the
/// origin's CA, the only one the task trusts here, is written to the returned file.
fn start(rt: &tokio::runtime::Runtime, extra: &str) -> (Origin, Proxy, std::path::PathBuf) {
    let ca = OriginCa::new();
    let origin = tls_origin(rt, &ca);
    let port = origin.port();
    let remit = format!(
        "[network]\nallow = [\"tunnel.test:{port}\"]\ndangerously_tunnel = [\"tunnel.test:{port}\"]\nprivate = [\"127.0.0.1\"]\n{extra}"
    );
    let mut setup = Setup::new(&remit);
    setup.resolver = TableResolver::with(&[("tunnel.test", "127.0.0.1")]);
    let proxy = rt.block_on(setup.start());
    let ca_file = proxy.dir.path().join("origin-ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    (origin, proxy, ca_file)
}

/// The origin's own certificate reaches the task (only the origin's CA is trusted here,
/// not the task CA), a 2 MiB upload and a 3 MiB answer arrive whole, and the tunnel's
/// record counts them.
#[test]
fn a_pass_through_tunnel_carries_tls_untouched_both_ways() {
    let rt = runtime();
    let (origin, proxy, ca_file) = start(&rt, "");
    let upload = proxy.dir.path().join("upload");
    std::fs::write(&upload, vec![b'u'; UP]).unwrap();
    let url = format!("https://tunnel.test:{}/echo", origin.port());
    let (status, headers, body) = proxy.curl(&[
        "--cacert",
        ca_file.to_str().unwrap(),
        "--data-binary",
        &format!("@{}", upload.display()),
        &url,
    ]);
    assert_eq!(status, 200, "{headers}");
    assert!(
        body.starts_with(&format!("{UP}\n")),
        "{}",
        &body[..body.len().min(40)]
    );
    assert_eq!(body.len(), format!("{UP}\n").len() + DOWN);
    assert_eq!(origin.requests().len(), 1);
    assert_eq!(origin.requests()[0].body.len(), UP);

    assert!(eventually(|| tunnels(&proxy.gate).len() == 1));
    let record = &tunnels(&proxy.gate)[0];
    assert_eq!(record.host, "tunnel.test");
    assert!(record.upstream.is_some(), "{record:?}");
    assert_eq!(record.error, None, "{record:?}");
    assert!(record.bytes_up >= UP as u64, "{record:?}");
    assert!(record.bytes_down >= DOWN as u64, "{record:?}");
    // Decided once, as a CONNECT.
    let connects = proxy.gate.effects_of("http_request");
    assert_eq!(connects.len(), 1, "{connects:?}");
}

/// A budget smaller than the answer cuts the tunnel and says why; a small request before
/// it, within the budget, passes.
#[test]
fn a_pass_through_tunnel_is_cut_at_the_budget() {
    let rt = runtime();
    let (origin, proxy, ca_file) = start(&rt, "[network.budget]\ntotal = \"1MiB\"\n");
    let cafile = ca_file.to_str().unwrap();

    let small = format!("https://tunnel.test:{}/", origin.port());
    let (status, headers, body) = proxy.curl(&["--cacert", cafile, &small]);
    assert_eq!((status, body.as_str()), (200, "hello"), "{headers}");

    let big = format!("https://tunnel.test:{}/echo", origin.port());
    let (status, _, body) = proxy.curl(&["--cacert", cafile, &big]);
    assert!(
        body.len() < DOWN,
        "the whole answer came through ({status})"
    );
    assert!(eventually(|| tunnels(&proxy.gate).len() == 2));
    let cut = tunnels(&proxy.gate)
        .into_iter()
        .find(|t| t.error.is_some())
        .expect("a tunnel cut by the budget");
    assert!(
        cut.error
            .as_deref()
            .unwrap()
            .contains("network.budget.total"),
        "{cut:?}"
    );
    assert!(cut.bytes_down <= 1 << 20, "{cut:?}");
    assert!(cut.upstream.is_some(), "{cut:?}");

    // With the budget used up, the next tunnel is refused before anything is connected, and
    // its record says so.
    let _ = proxy.curl(&["--cacert", cafile, &small]);
    assert!(eventually(|| tunnels(&proxy.gate).len() == 3));
    let refused = tunnels(&proxy.gate)
        .into_iter()
        .find(|t| t.upstream.is_none())
        .expect("a tunnel refused before it was connected");
    assert!(
        refused.error.as_deref().unwrap().contains("egress.budget"),
        "{refused:?}"
    );
    assert_eq!((refused.bytes_up, refused.bytes_down), (0, 0));
}

/// A tunnel still open when the proxy shuts down (the task ended) is reported before the
/// shutdown returns, with what it moved and why it ended.
#[test]
fn a_tunnel_open_at_shutdown_is_reported() {
    use std::io::{Read, Write};
    let rt = runtime();
    let (origin, proxy, _) = start(&rt, "");
    let mut s = std::net::TcpStream::connect(proxy.addr).unwrap();
    write!(
        s,
        "CONNECT tunnel.test:{p} HTTP/1.1\r\nhost: tunnel.test:{p}\r\n\r\n",
        p = origin.port()
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // The start of a TLS handshake goes up; the tunnel stays open.
    s.write_all(b"\x16\x03\x01\x00\x04").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(tunnels(&proxy.gate).is_empty());

    rt.block_on(proxy.egress.shutdown());
    let all = tunnels(&proxy.gate);
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(
        all[0].error.as_deref().unwrap().contains("task ended"),
        "{all:?}"
    );
    assert!(all[0].upstream.is_some(), "{all:?}");
    assert!(all[0].bytes_up >= 5, "{all:?}");
}

/// TCP urgent data (a byte sent out of band) neither stalls a spliced tunnel nor gets lost:
/// what follows it arrives at once, and the byte itself arrives as urgent, also when it is
/// the last thing sent before a close. (`splice(2)`
/// stops at the urgent mark, and the socket reports nothing new to wait for.)
#[test]
fn urgent_data_passes_through_a_tunnel() {
    use std::io::{Read, Write};
    let rt = runtime();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let remit = format!(
        "[network]\nallow = [\"oob.test:{port}\"]\ndangerously_tunnel = [\"oob.test:{port}\"]\nprivate = [\"127.0.0.1\"]\n"
    );
    let mut setup = Setup::new(&remit);
    setup.resolver = TableResolver::with(&[("oob.test", "127.0.0.1")]);
    let proxy = rt.block_on(setup.start());
    let mut task = std::net::TcpStream::connect(proxy.addr).unwrap();
    write!(
        task,
        "CONNECT oob.test:{port} HTTP/1.1\r\nhost: oob.test:{port}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        task.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let (mut origin, _) = listener.accept().unwrap();
    // Long enough for any machine, far shorter than the proxy's idle timeout (300 s).
    let wait = std::time::Duration::from_secs(20);
    origin.set_read_timeout(Some(wait)).unwrap();
    task.set_read_timeout(Some(wait)).unwrap();
    let read = |s: &mut std::net::TcpStream, n: usize| {
        let mut got = vec![0u8; n];
        s.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("stalled: {e}"));
        got
    };
    let urgent = |s: &std::net::TcpStream| {
        let mut b = [0u8; 1];
        for _ in 0..200 {
            match rustix::net::recv(s, &mut b, rustix::net::RecvFlags::OOB) {
                Ok((1, _)) => return Some(b[0]),
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
        None
    };

    // Ordinary bytes, an urgent one, and more ordinary bytes, from one end to the other.
    // The urgent byte is read before the ordinary bytes after it (reading past the mark
    // discards it).
    let pass = |from: &mut std::net::TcpStream,
                to: &mut std::net::TcpStream,
                before: &[u8],
                mark: u8,
                after: &[u8]| {
        from.write_all(before).unwrap();
        assert_eq!(read(to, before.len()), before);
        rustix::net::send(&*from, &[mark], rustix::net::SendFlags::OOB).unwrap();
        from.write_all(after).unwrap();
        assert_eq!(urgent(to), Some(mark));
        assert_eq!(read(to, after.len()), after);
    };
    pass(&mut task, &mut origin, b"before", b'!', b"after");
    // Twin, down: the tunnel's other direction, the same way.
    pass(&mut origin, &mut task, b"hello", b'?', b"world");
    // And the tunnel still carries ordinary traffic both ways afterwards.
    task.write_all(b"again").unwrap();
    assert_eq!(read(&mut origin, 5), b"again");
    // An urgent byte alone, nothing after it: it arrives without waiting for more.
    rustix::net::send(&task, b"&", rustix::net::SendFlags::OOB).unwrap();
    assert_eq!(urgent(&origin), Some(b'&'));
    rustix::net::send(&origin, b"*", rustix::net::SendFlags::OOB).unwrap();
    assert_eq!(urgent(&task), Some(b'*'));
    // Urgent data right before a close: what follows the urgent byte, and the byte itself
    // when it is the last thing sent, arrive before the close.
    rustix::net::send(&task, b"%", rustix::net::SendFlags::OOB).unwrap();
    task.write_all(b"tail").unwrap();
    task.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(urgent(&origin), Some(b'%'));
    assert_eq!(read(&mut origin, 4), b"tail");
    assert_eq!(origin.read(&mut [0u8; 8]).unwrap(), 0, "the close follows");
    rustix::net::send(&origin, b"#", rustix::net::SendFlags::OOB).unwrap();
    origin.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(urgent(&task), Some(b'#'));
    assert_eq!(task.read(&mut [0u8; 8]).unwrap(), 0, "the close follows");
    drop(task);
    drop(origin);
    assert!(eventually(|| tunnels(&proxy.gate).len() == 1));
    let record = &tunnels(&proxy.gate)[0];
    assert_eq!(record.bytes_up, 6 + 1 + 5 + 5 + 1 + 1 + 4, "{record:?}");
    assert_eq!(record.bytes_down, 5 + 1 + 5 + 1 + 1, "{record:?}");
}
