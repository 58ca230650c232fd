//! The deployment shape: the listening socket is made inside a network namespace of the
//! test's own (as the supervisor makes it inside the task's) and handed to the proxy, which
//! connects out from the host's namespace. A tool in the namespace reaches the origin only
//! through the proxy; `curl --noproxy '*'` cannot connect at all.

use std::io::IoSliceMut;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};

use crate::support::*;

const HELPER: &str = r#"
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(128)
u = socket.socket(socket.AF_UNIX)
u.connect(sys.argv[1])
socket.send_fds(u, [str(s.getsockname()[1]).encode()], [s.fileno()])
sys.stdin.read()
"#;

#[test]
fn a_listener_inside_a_namespace() {
    let rt = runtime();
    let good = rt.block_on(origin("127.0.0.1:0", None, hello()));
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("fd.sock");
    let unix = UnixListener::bind(&sock).unwrap();
    let python = String::from_utf8(
        Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let mut helper = Command::new("unshare")
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" -c \"$1\" \"$2\"",
        ])
        .args([python.trim(), HELPER, sock.to_str().unwrap()])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let (stream, _) = unix.accept().unwrap();
    let mut port = [0u8; 16];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut ancillary = RecvAncillaryBuffer::new(&mut space);
    let received = recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut port)],
        &mut ancillary,
        RecvFlags::empty(),
    )
    .unwrap();
    let port: u16 = String::from_utf8_lossy(&port[..received.bytes])
        .parse()
        .unwrap();
    let fd: OwnedFd = ancillary
        .drain()
        .find_map(|m| match m {
            RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        })
        .unwrap();
    let std_listener = std::net::TcpListener::from(fd);
    std_listener.set_nonblocking(true).unwrap();

    let remit = format!(
        "[network]\nallow = [\"origin.test:{}\"]\nprivate = [\"origin.test\"]\n",
        good.port()
    );
    let mut setup = Setup::new(&remit);
    setup.resolver = TableResolver::with(&[("origin.test", "127.0.0.1")]);
    let proxy = rt.block_on(setup.start());
    let listener = rt.block_on(async { tokio::net::TcpListener::from_std(std_listener).unwrap() });
    let egress = proxy.egress.clone();
    rt.spawn(async move { egress.serve(listener).await });

    let pid = helper.id().to_string();
    let in_ns = |args: &[&str]| {
        let mut all = vec!["-t", pid.as_str(), "-n", "curl", "-sS", "--max-time", "5"];
        all.extend_from_slice(args);
        Command::new("nsenter")
            .args(&all)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .output()
            .unwrap()
    };
    let via_proxy = format!("http://127.0.0.1:{port}");
    let out = in_ns(&[
        "-x",
        &via_proxy,
        &format!("http://origin.test:{}/", good.port()),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A tool that ignores the proxy: nothing to connect to, no name to resolve.
    let out = in_ns(&[
        "--noproxy",
        "*",
        &format!("http://127.0.0.1:{}/", good.port()),
    ]);
    assert!(!out.status.success());
    let out = in_ns(&[
        "--noproxy",
        "*",
        &format!("http://origin.test:{}/", good.port()),
    ]);
    assert!(!out.status.success());
    assert_eq!(good.requests().len(), 1);

    drop(helper.stdin.take());
    let _ = helper.wait();
    std::thread::sleep(Duration::from_millis(50));
}
