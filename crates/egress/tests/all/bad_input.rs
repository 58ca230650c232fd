//! Bad input: each bad connection is closed with an error recorded, and the proxy keeps
//! serving everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use remit_egress::{EgressEvent, Stage};

use crate::support::*;

fn connection_errors(proxy: &Proxy, stage: Stage) -> usize {
    proxy
        .gate
        .events()
        .iter()
        .filter(|e| matches!(e, EgressEvent::ConnectionError(c) if c.stage == stage))
        .count()
}

/// Everything the proxy answers until it closes the connection; a proxy that leaves the
/// connection open (the read times out) fails the test.
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "the connection was not closed ({e}) after {}",
            String::from_utf8_lossy(&out[..out.len().min(100)])
        ),
    }
    out
}

#[test]
fn bad_connections_are_closed_and_others_served() {
    let rt = runtime();
    let good = rt.block_on(origin("127.0.0.1:0", None, hello()));
    // An origin that answers garbage.
    let garbage = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"\x00\x01\x02 this is not http\r\n\r\n").await;
            }
        });
        addr
    });
    let remit = format!(
        "[network]\nallow = [\"origin.test:{}\", \"garbage.test:{}\"]\nprivate = [\"127.0.0.1\"]\n",
        good.port(),
        garbage.port()
    );
    let mut setup = Setup::new(&remit);
    setup.resolver =
        TableResolver::with(&[("origin.test", "127.0.0.1"), ("garbage.test", "127.0.0.1")]);
    setup.limits = Some(remit_egress::Limits {
        header_read_timeout: Duration::from_secs(1),
        handshake_timeout: Duration::from_secs(1),
        max_connections: 64,
        ..remit_egress::Limits::default()
    });
    let proxy = rt.block_on(setup.start());
    let ok = format!("http://origin.test:{}/", good.port());

    // Malformed request line.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.write_all(b"HELLO THERE\r\n\r\n").unwrap();
    let answer = read_all(&mut s);
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(proxy.curl(&[&ok]).0, 200);

    // Oversized headers.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    let huge = "a".repeat(200 * 1024);
    let _ = write!(s, "GET {ok} HTTP/1.1\r\nhost: x\r\nx-big: {huge}\r\n\r\n");
    let answer = read_all(&mut s);
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer[..answer.len().min(100)])
    );
    assert_eq!(proxy.curl(&[&ok]).0, 200);

    // Slowloris: headers that never end are cut after the header timeout.
    let started = Instant::now();
    let mut slow = TcpStream::connect(proxy.addr).unwrap();
    slow.write_all(format!("GET {ok} HTTP/1.1\r\nhost: x\r\n").as_bytes())
        .unwrap();
    let _ = read_all(&mut slow);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "slow client kept for {:?}",
        started.elapsed()
    );
    assert_eq!(proxy.curl(&[&ok]).0, 200);

    // Host names with an empty label: refused before any decision, like any name that is
    // not one.
    for host in [".origin.test", "a..origin.test"] {
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        write!(
            s,
            "CONNECT {host}:{} HTTP/1.1\r\nhost: {host}\r\n\r\n",
            good.port()
        )
        .unwrap();
        let answer = read_all(&mut s);
        assert!(
            answer.starts_with(b"HTTP/1.1 400"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    let (status, headers, body) = proxy.curl(&[&format!("http://a..origin.test:{}/", good.port())]);
    assert_eq!(status, 400, "{headers}{body}");
    assert_eq!(proxy.curl(&[&ok]).0, 200);

    // Invalid TLS from the task after CONNECT.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    write!(
        s,
        "CONNECT origin.test:{} HTTP/1.1\r\nhost: origin.test\r\n\r\n",
        good.port()
    )
    .unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    s.write_all(b"\x16\x03\x01\x00\x05garbage-that-is-not-a-client-hello")
        .unwrap();
    let _ = read_all(&mut s);
    assert!(eventually(
        || connection_errors(&proxy, Stage::ClientTls) >= 1
    ));

    // Neither TLS nor HTTP inside a tunnel.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    write!(
        s,
        "CONNECT origin.test:{} HTTP/1.1\r\nhost: origin.test\r\n\r\n",
        good.port()
    )
    .unwrap();
    s.read_exact(&mut head).unwrap();
    s.write_all(b"\x00\x01SSH-2.0-nope\r\n").unwrap();
    let _ = read_all(&mut s);
    assert!(eventually(|| violations(&proxy.gate)
        .iter()
        .any(|v| v.kind == remit_egress::ViolationKind::Protocol)));

    // An origin that answers garbage: 502 with the reason, and the proxy carries on.
    let (status, headers, body) =
        proxy.curl(&[&format!("http://garbage.test:{}/", garbage.port())]);
    assert_eq!(status, 502, "{headers}{body}");
    assert!(headers.contains("egress.upstream"), "{headers}");

    // More connections than allowed: the extra ones are closed, the proxy still serves.
    let idle: Vec<TcpStream> = (0..80)
        .map(|_| TcpStream::connect(proxy.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    drop(idle);
    assert!(eventually(|| proxy.curl(&[&ok]).0 == 200));
    assert!(connection_errors(&proxy, Stage::Accept) >= 1);
    assert!(connection_errors(&proxy, Stage::ClientHttp) >= 1);
    assert_eq!(proxy.curl(&[&ok]).0, 200);
}

/// A proxy with `limits` allowing `origin.test`, a plain origin answering `hello` (the
/// runtime serves both while it lives).
fn proxy_to_one_origin(limits: remit_egress::Limits) -> (tokio::runtime::Runtime, Origin, Proxy) {
    proxy_to(hello(), "", |setup| setup.limits = Some(limits))
}

/// A proxy allowing `origin.test` (with `more` remit text, and `adjust`ed), an origin
/// answering with `handler` (the runtime serves both while it lives).
fn proxy_to(
    handler: Handler,
    more: &str,
    adjust: impl FnOnce(&mut Setup),
) -> (tokio::runtime::Runtime, Origin, Proxy) {
    let rt = runtime();
    let good = rt.block_on(origin("127.0.0.1:0", None, handler));
    let remit = format!(
        "[network]\nallow = [\"origin.test:{}\"]\nprivate = [\"127.0.0.1\"]\n{more}",
        good.port()
    );
    let mut setup = Setup::new(&remit);
    setup.resolver = TableResolver::with(&[("origin.test", "127.0.0.1")]);
    adjust(&mut setup);
    let proxy = rt.block_on(setup.start());
    (rt, good, proxy)
}

/// Bodies read whole for inspection share one task-wide allowance of memory: one that would
/// pass it is refused (`503`, `egress.memory`) before the origin sees anything, its bytes are
/// given back, and bodies within it still pass.
#[test]
fn inspected_bodies_share_a_memory_allowance() {
    let (_rt, good, proxy) = proxy_to_one_origin(remit_egress::Limits {
        max_inspected_body: 1 << 20,
        max_inspected_total: 64 * 1024,
        ..remit_egress::Limits::default()
    });
    let url = format!("http://origin.test:{}/upload", good.port());
    // Compressed bodies are read whole and inflated before they are searched: each is held
    // twice, as sent and as inflated. Bytes that do not compress keep both sizes alike.
    let gzip_file = |data: &[u8], level: flate2::Compression, name: &str| {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
        e.write_all(data).unwrap();
        let path = proxy.dir.path().join(name);
        std::fs::write(&path, e.finish().unwrap()).unwrap();
        format!("@{}", path.display())
    };
    let gzip = |size: usize, name: &str| {
        let mut x = 0x2545_f491_u32;
        let data: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.to_le_bytes()[0]
            })
            .collect();
        gzip_file(&data, flate2::Compression::fast(), name)
    };
    let small = gzip(20 * 1024, "small.gz");
    let large = gzip(100 * 1024, "large.gz");
    let send =
        |file: &str| proxy.curl(&["-H", "content-encoding: gzip", "--data-binary", file, &url]);

    let (status, headers, body) = send(&small);
    assert_eq!(status, 200, "{headers}{body}");

    // A body the whole allowance could never hold is too large (413: retrying cannot help),
    // compressed as sent or once inflated: a small body that would inflate past it is
    // refused before it is inflated whole, the inflated copy counted as it is made.
    let before = good.requests().len();
    let bomb = gzip_file(
        &vec![0u8; 200 * 1024],
        flate2::Compression::best(),
        "bomb.gz",
    );
    for file in [&large, &bomb] {
        let (status, headers, body) = send(file);
        assert_eq!(status, 413, "{headers}{body}");
        assert!(
            headers
                .to_ascii_lowercase()
                .contains("x-remit-policy: egress.size"),
            "{headers}"
        );
        assert!(body.contains("65536 bytes"), "{body}");
    }
    assert_eq!(
        good.requests().len(),
        before,
        "the origin saw a refused body"
    );

    // The allowance is shared: while another upload holds most of it, a body that fits on
    // its own is refused as busy (503: retrying may help), and goes through once it is free.
    let mut holder = TcpStream::connect(proxy.addr).unwrap();
    write!(
        holder,
        "POST {url} HTTP/1.1\r\nhost: origin.test\r\ncontent-encoding: gzip\r\ncontent-length: 60000\r\n\r\n"
    )
    .unwrap();
    holder.write_all(&[0x1f; 40_000]).unwrap();
    holder.flush().unwrap();
    // Until the proxy has read the holder's bytes, the small body still passes (and is
    // counted: the origin sees exactly those).
    let busy = std::cell::RefCell::new(String::new());
    let passed = std::cell::Cell::new(0);
    assert!(
        eventually(|| {
            let (status, headers, body) = send(&small);
            *busy.borrow_mut() = format!("{status} {headers}{body}");
            passed.set(passed.get() + usize::from(status == 200));
            status == 503
        }),
        "never busy: {}",
        busy.borrow()
    );
    let busy = busy.into_inner();
    assert!(
        busy.to_ascii_lowercase()
            .contains("x-remit-policy: egress.memory"),
        "{busy}"
    );
    assert!(busy.contains("inspecting request bodies"), "{busy}");
    assert_eq!(
        good.requests().len(),
        before + passed.get(),
        "the origin saw a refused body"
    );
    drop(holder);

    // What the refused and abandoned bodies held was given back: the allowance is whole
    // again (the abandoned upload's once the proxy sees its connection close).
    assert!(eventually(|| send(&small).0 == 200));
    for _ in 0..3 {
        let (status, headers, body) = send(&small);
        assert_eq!(status, 200, "{headers}{body}");
    }
}

/// Read one answer's head (up to its blank line).
fn read_head(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => out.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An intercepted `CONNECT` keeps its place among the task's connections for as long as it
/// is open, not only until its upgrade: a task cannot hold more than the limit that way.
#[test]
fn intercepted_connections_count_against_the_limit() {
    let (_rt, good, proxy) = proxy_to_one_origin(remit_egress::Limits {
        handshake_timeout: Duration::from_secs(60),
        max_connections: 4,
        ..remit_egress::Limits::default()
    });
    let ok = format!("http://origin.test:{}/", good.port());
    let connect = |port: u16| {
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        // A connection closed at accept may refuse the write too: its head is then empty.
        let _ = write!(
            s,
            "CONNECT origin.test:{port} HTTP/1.1\r\nhost: origin.test:{port}\r\n\r\n"
        );
        let head = read_head(&mut s);
        (s, head)
    };

    // As many intercepted connections as the limit, each waiting for its TLS handshake.
    let mut open = Vec::new();
    for _ in 0..4 {
        let (s, head) = connect(443);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        open.push(s);
    }
    // None is left: a fifth connection is not served (closed at accept, or refused).
    let (_, head) = connect(443);
    assert!(
        head.is_empty() || head.starts_with("HTTP/1.1 503"),
        "a fifth connection was served: {head}"
    );
    assert_eq!(proxy.curl(&[&ok]).0, 0, "a plain request was served");
    // The harmless twin: once they close, the task is served again.
    drop(open);
    assert!(eventually(|| proxy.curl(&[&ok]).0 == 200));
}

/// A body that looks like a registry upload is read for its package and version as it
/// streams past, never built into a document: 64 MiB of `[0,0,…]` (which a JSON document
/// tree holds in sixteen times its size) raises the proxy's peak memory by a few times the
/// body at most, and the upload is still decided with its package and version. Its harmless
/// twin, a real package document, is read the same.
#[test]
fn a_large_upload_is_read_for_its_package_without_building_it() {
    let (_rt, good, proxy) = proxy_to(
        hello(),
        "\n[actions.publish]\nargs = [\"registry\", \"package\", \"version\"]\n",
        |setup| setup.publish_args = vec!["registry".into(), "package".into(), "version".into()],
    );
    let url = format!("http://origin.test:{}/demo", good.port());
    let upload = |name: &str, body: &[u8]| {
        let path = proxy.dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let file = format!("@{}", path.display());
        let (status, headers, answer) = proxy.curl(&[
            "-X",
            "PUT",
            "-H",
            "content-type: application/json",
            "--data-binary",
            &file,
            &url,
        ]);
        assert_eq!(status, 200, "{headers}{answer}");
    };
    upload(
        "twin.json",
        br#"{"name":"demo","versions":{"1.0.0":{"name":"demo"}},"_attachments":{}}"#,
    );

    let mut body = br#"{"name":"demo","versions":{"2.0.0":{}},"pad":["#.to_vec();
    body.reserve(64 << 20);
    while body.len() < 64 << 20 {
        body.extend_from_slice(b"0,0,0,0,0,0,0,0,");
    }
    body.extend_from_slice(b"0]}");
    let peak = || -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    // The peak from here on (other tests of this process run meanwhile: a margin).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak();
    upload("large.json", &body);
    let grown = peak().saturating_sub(before);
    assert!(
        grown < 8 * (64 << 20),
        "the proxy's peak memory grew by {} MiB for a 64 MiB upload",
        grown >> 20
    );
    let versions: Vec<String> = proxy
        .gate
        .effects_of("publish")
        .iter()
        .filter_map(|(effect, _)| match effect {
            remit_types::effect::Effect::Action { args, .. } => {
                assert_eq!(args.get("package").map(String::as_str), Some("demo"));
                args.get("version").cloned()
            }
            _ => None,
        })
        .collect();
    assert_eq!(versions, ["1.0.0", "2.0.0"]);
}

/// A client that asks and then takes nothing of the answer holds no connection (nor the
/// origin's) for ever: once it has taken nothing for the idle limit, the proxy closes it and
/// says why. A client that reads slowly, but reads, gets the whole answer.
#[test]
fn a_client_that_stops_reading_is_closed() {
    let (_rt, _good, proxy, ask) = big_and_small(remit_egress::Limits {
        idle_timeout: Duration::from_secs(2),
        header_read_timeout: Duration::from_secs(2),
        ..remit_egress::Limits::default()
    });
    let ask = |path: &str| {
        let (head, s) = ask(path);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        s
    };

    // The harmless twin: 16 MiB (more than the sockets buffer) read 256 KiB at a time with
    // pauses, for longer than the idle limit.
    let mut slow = ask("/small");
    let mut buf = vec![0u8; 256 << 10];
    for chunk in 0..64 {
        if let Err(e) = slow.read_exact(&mut buf) {
            panic!("closed after {chunk} chunks: {e}");
        }
        std::thread::sleep(Duration::from_millis(60));
    }

    // The attack: 64 MiB asked for, nothing read.
    let mut stalled = ask("/big");
    std::thread::sleep(Duration::from_secs(6));
    let rest = read_all(&mut stalled);
    assert!(
        rest.len() < 32 << 20,
        "{} bytes came after the stall: the connection was kept",
        rest.len()
    );
    assert!(eventually(|| proxy.gate.events().iter().any(|e| matches!(
        e,
        EgressEvent::ConnectionError(c) if c.error.contains("took nothing")
    ))));
}

/// An HTTP/2 connection that sends its preface and then nothing (or only pings, which HTTP/2
/// answers by itself) is closed once nothing was asked for the header limit, with the reason
/// recorded; it does not hold its place until the task ends.
#[test]
fn a_quiet_http2_connection_is_closed() {
    let (_rt, _good, proxy) = proxy_to_one_origin(remit_egress::Limits {
        header_read_timeout: Duration::from_secs(2),
        ..remit_egress::Limits::default()
    });
    let script = r#"
import socket, ssl, sys, time
proxy, ca = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", proxy))
s.sendall(b"CONNECT origin.test:443 HTTP/1.1\r\nhost: origin.test:443\r\n\r\n")
head = b""
while b"\r\n\r\n" not in head:
    byte = s.recv(1)
    if not byte:
        sys.exit("closed before the tunnel")
    head += byte
assert head.startswith(b"HTTP/1.1 200"), head
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["h2"])
t = ctx.wrap_socket(s, server_hostname="origin.test")
assert t.selected_alpn_protocol() == "h2", t.selected_alpn_protocol()
t.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
t.settimeout(0.5)
start = time.time()
pinged = 0.0
frames = b""
try:
    while time.time() - start < 30:
        # A ping of its own every half second; the server's pings acknowledged.
        if time.time() - pinged >= 0.5:
            t.sendall(b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678")
            pinged = time.time()
        try:
            data = t.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        frames += data
        while len(frames) >= 9 and len(frames) >= 9 + int.from_bytes(frames[:3], "big"):
            length, kind, flags = int.from_bytes(frames[:3], "big"), frames[3], frames[4]
            payload, frames = frames[9:9 + length], frames[9 + length:]
            if kind == 6 and not flags & 1:
                t.sendall(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + payload)
    else:
        print("still open")
        sys.exit(0)
except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
    pass
print("closed after %.1f s" % (time.time() - start))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(proxy.addr.port().to_string())
        .arg(&proxy.bundle)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("closed after"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(eventually(|| proxy.gate.events().iter().any(|e| matches!(
        e,
        EgressEvent::ConnectionError(c) if c.error.contains("nothing was asked")
    ))));
}

/// A proxy with `limits` in front of an origin answering 64 MiB for `/big` and 16 MiB for
/// anything else, and a function that asks for a path on a connection of its own and reads
/// the answer's head.
#[allow(clippy::type_complexity)]
fn big_and_small(
    limits: remit_egress::Limits,
) -> (
    tokio::runtime::Runtime,
    Origin,
    Proxy,
    impl Fn(&str) -> (String, TcpStream),
) {
    let origin_handler: Handler = Arc::new(|seen: &Seen| {
        let size = if seen.uri.ends_with("/big") {
            64 << 20
        } else {
            16 << 20
        };
        (200, Vec::new(), vec![b'x'; size])
    });
    let (rt, good, proxy) = proxy_to(origin_handler, "", |setup| setup.limits = Some(limits));
    let (addr, port) = (proxy.addr, good.port());
    let ask = move |path: &str| {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET http://origin.test:{port}{path} HTTP/1.1\r\nhost: origin.test:{port}\r\n\r\n"
        )
        .unwrap();
        (read_head(&mut s), s)
    };
    (rt, good, proxy, ask)
}

/// The task's requests under way at once are bounded across its connections (each may
/// hold an origin socket and buffers): one past the limit gets `503` (`egress.requests`),
/// and once one is over the next is served.
#[test]
fn requests_under_way_are_bounded() {
    let (_rt, _good, proxy, ask) = big_and_small(remit_egress::Limits {
        max_requests: 2,
        ..remit_egress::Limits::default()
    });
    // Two answers under way, not read.
    let (head, first) = ask("/big");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (head, _second) = ask("/big");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (head, _) = ask("/small");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-remit-policy: egress.requests"),
        "{head}"
    );
    // Recorded, and said in one line.
    assert!(eventually(|| proxy.gate.events().iter().any(|e| matches!(
        e,
        EgressEvent::Violation(v) if v.kind == remit_egress::ViolationKind::Limit
            && v.reason.contains("2 requests under way")
    ))));
    // One over (its client gone): the next is served, whole.
    drop(first);
    assert!(eventually(|| ask("/small").0.starts_with("HTTP/1.1 200")));
    drop(proxy);
}
