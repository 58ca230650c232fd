//! The escape suite: attacks a hostile task would try, each next to a harmless twin that must
//! succeed. Every attack is aimed at something the test owns (a file in its temp dir, a
//! listener it started, a process it spawned), so a containment failure touches nothing else.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use crate::support::*;

/// Run a bash snippet that prints `BLOCKED` when the attack failed and `ESCAPED` when it
/// worked; assert it was blocked.
#[track_caller]
fn blocked(world: &World, remit: Option<&str>, attack: &str) {
    let script = format!("if ( {attack} ); then echo ESCAPED; else echo BLOCKED; fi");
    let out = world.run(remit, &script);
    let text = stdout(&out);
    assert!(
        text.contains("BLOCKED") && !text.contains("ESCAPED"),
        "attack `{attack}` was not blocked\n{}",
        show(&out)
    );
}

/// The harmless twin of an attack must work.
#[track_caller]
fn works(world: &World, remit: Option<&str>, twin: &str) {
    let script = format!("if ( {twin} ); then echo WORKED; else echo FAILED; fi");
    let out = world.run(remit, &script);
    let text = stdout(&out);
    assert!(
        text.contains("WORKED"),
        "twin `{twin}` failed\n{}",
        show(&out)
    );
}

#[test]
fn read_etc_shadow() {
    let w = World::new();
    blocked(&w, None, "cat /etc/shadow >/dev/null 2>&1");
    blocked(&w, None, "cat /etc/gshadow >/dev/null 2>&1");
    works(&w, None, "grep -q '^agent:\\|^[a-z]' /etc/passwd");
}

#[test]
fn read_ssh_keys_and_cloud_credentials() {
    let w = World::new();
    let home = w.home.display();
    blocked(
        &w,
        None,
        &format!("cat {home}/.ssh/id_ed25519 >/dev/null 2>&1"),
    );
    blocked(&w, None, "cat ~/.ssh/id_ed25519 >/dev/null 2>&1");
    blocked(
        &w,
        None,
        &format!("cat {home}/.aws/credentials >/dev/null 2>&1"),
    );
    blocked(&w, None, &format!("cat {home}/.env >/dev/null 2>&1"));
    // The twin: the home directory exists and is the task's own, empty and writable.
    works(
        &w,
        None,
        "test -d ~ && touch ~/scratch && test -z \"$(ls -A ~ | grep -v scratch)\"",
    );
}

#[test]
fn read_secrets_granted_by_accident() {
    // A remit that grants a whole home read-only still never shows its credentials.
    let w = World::new();
    let remit = format!("[filesystem]\nread_only = [\"{}\"]\n", w.home.display());
    let home = w.home.display();
    blocked(
        &w,
        Some(&remit),
        &format!("cat {home}/.ssh/id_ed25519 >/dev/null 2>&1"),
    );
    blocked(
        &w,
        Some(&remit),
        &format!("cat {home}/.aws/credentials >/dev/null 2>&1"),
    );
    blocked(
        &w,
        Some(&remit),
        &format!("cat {home}/.config/gh/hosts.yml >/dev/null 2>&1"),
    );
    blocked(
        &w,
        Some(&remit),
        &format!("cat {home}/.docker/config.json >/dev/null 2>&1"),
    );
    blocked(
        &w,
        Some(&remit),
        &format!("cat {home}/.env >/dev/null 2>&1"),
    );
    std::fs::write(w.home.join("notes.txt"), "hello").unwrap();
    works(&w, Some(&remit), &format!("grep -q hello {home}/notes.txt"));
}

#[test]
fn read_another_users_file() {
    if !is_root() {
        eprintln!("SKIPPED: needs root (a uid other than the tester's, cgroups)");
        return;
    }
    let w = World::new();
    let theirs = w.ws.join("theirs.txt");
    std::fs::write(&theirs, "private").unwrap();
    std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).unwrap();
    std::fs::set_permissions(&theirs, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    blocked(&w, None, "cat theirs.txt >/dev/null 2>&1");
    std::fs::write(w.ws.join("mine.txt"), "mine").unwrap();
    works(&w, None, "grep -q mine mine.txt");
}

#[test]
fn read_init_and_supervisor_environment() {
    let w = World::new();
    blocked(&w, None, "cat /proc/1/environ >/dev/null 2>&1");
    blocked(&w, None, "ls /proc/1/fd >/dev/null 2>&1");
    // The supervisor and this test live outside the task's pid namespace.
    let me = std::process::id();
    blocked(&w, None, &format!("cat /proc/{me}/environ >/dev/null 2>&1"));
    blocked(
        &w,
        None,
        "cat /proc/$PPID/environ 2>/dev/null | grep -q REMIT_HOME",
    );
    works(&w, None, "grep -q REMIT_TASK /proc/self/environ");
}

#[test]
fn write_outside_the_workspace() {
    let w = World::new();
    let target = w.outside.join("written");
    let t = target.display();
    let out = w.run(None, &format!("echo x > {t} 2>/dev/null; echo x > ../outside/via-dotdot 2>/dev/null; echo x > /proc/self/root{t}.root 2>/dev/null; true"));
    assert!(out.status.success(), "{}", show(&out));
    assert!(!w.exists(&target), "wrote outside the workspace");
    assert!(!w.exists(&w.outside.join("via-dotdot")));
    assert!(!w.exists(&w.outside.join("written.root")));
    blocked(&w, None, "echo x > /usr/remit-test-marker 2>/dev/null");
    blocked(&w, None, "echo x > /etc/remit-test-marker 2>/dev/null");
    // Twin: the workspace is writable and the write reaches the host.
    let out = w.run(None, "echo inside > inside.txt");
    ok(&out);
    assert_eq!(
        std::fs::read_to_string(w.ws.join("inside.txt")).unwrap(),
        "inside\n"
    );
}

#[test]
fn write_through_a_planted_symlink() {
    let w = World::new();
    std::os::unix::fs::symlink(&w.outside, w.ws.join("link")).unwrap();
    std::os::unix::fs::symlink(w.outside.join("secret.txt"), w.ws.join("secret-link")).unwrap();
    let out = w.run(
        None,
        "echo x > link/through-symlink 2>/dev/null; cat secret-link 2>/dev/null; true",
    );
    assert!(
        !w.exists(&w.outside.join("through-symlink")),
        "{}",
        show(&out)
    );
    assert!(!stdout(&out).contains("outside-secret"), "{}", show(&out));
    // Twin: a symlink inside the workspace works.
    std::fs::create_dir(w.ws.join("sub")).unwrap();
    std::os::unix::fs::symlink("sub", w.ws.join("sublink")).unwrap();
    ok(&w.run(None, "echo y > sublink/f"));
    assert!(w.exists(&w.ws.join("sub/f")));
}

#[test]
fn tcp_and_udp_to_the_host_loopback() {
    let w = World::new();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let port = tcp.local_addr().unwrap().port();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let uport = udp.local_addr().unwrap().port();
    blocked(
        &w,
        None,
        &format!("timeout 3 bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' 2>/dev/null"),
    );
    blocked(
        &w,
        None,
        &format!("timeout 3 curl -s http://127.0.0.1:{port}/ >/dev/null 2>&1"),
    );
    blocked(
        &w,
        None,
        &format!(
            "python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.settimeout(2); s.connect((\"::1\", {port}))' 2>/dev/null"
        ),
    );
    let _ = w.run(None, &format!("echo hi > /dev/udp/127.0.0.1/{uport}; python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b\"x\", (\"127.0.0.1\", {uport}))'; true"));
    assert!(tcp.accept().is_err(), "a TCP connection reached the host");
    udp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(
        udp.recv_from(&mut buf).is_err(),
        "a UDP datagram reached the host"
    );
    // Twin: the task's own loopback works for the ports its remit lets it listen on.
    let remit = "[network]\nlisten = [0, 18080]\n";
    works(
        &w,
        Some(remit),
        "python3 -c '
import socket, threading
srv = socket.socket(); srv.bind((\"127.0.0.1\", 18080)); srv.listen(1)
c = socket.create_connection((\"127.0.0.1\", 18080)); c.sendall(b\"ping\")
a, _ = srv.accept(); assert a.recv(4) == b\"ping\"'",
    );
    // Listening on a port the remit does not name is refused.
    blocked(
        &w,
        Some(remit),
        "python3 -c 'import socket; socket.socket().bind((\"127.0.0.1\", 18081))' 2>/dev/null",
    );
}

#[test]
fn host_unix_socket() {
    let w = World::new();
    let path = w.outside.join("host.sock");
    let listener = UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    // Anyone may connect, as to a desktop's docker socket: only remit stands in the way.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let p = path.display();
    blocked(
        &w,
        None,
        &format!(
            "python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"{p}\")' 2>/dev/null"
        ),
    );
    blocked(
        &w,
        None,
        "test -S /var/run/docker.sock || test -S /run/docker.sock || test -e /run/containerd/containerd.sock",
    );
    // Granted read-only with the tree that holds it: a read-only mount does not stop
    // `connect`, so the socket is hidden; the tree's files stay readable.
    std::fs::write(w.outside.join("notes.txt"), "hello").unwrap();
    let granted = format!("[filesystem]\nread_only = [\"{}\"]\n", w.outside.display());
    blocked(
        &w,
        Some(&granted),
        &format!(
            "python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"{p}\")' 2>/dev/null"
        ),
    );
    works(
        &w,
        Some(&granted),
        &format!("grep -q hello {}/notes.txt", w.outside.display()),
    );
    assert!(
        listener.accept().is_err(),
        "a Unix connection reached the host socket"
    );
    // Twin: a socket the task makes in its own workspace works.
    works(
        &w,
        None,
        "python3 -c '
import socket, os
s = socket.socket(socket.AF_UNIX); s.bind(\"own.sock\"); s.listen(1)
c = socket.socket(socket.AF_UNIX); c.connect(\"own.sock\")'",
    );
}

#[test]
fn namespaces_mount_chroot_and_privileges() {
    let w = World::new();
    blocked(&w, None, "unshare -r true 2>/dev/null");
    blocked(&w, None, "unshare -U -m true 2>/dev/null");
    blocked(&w, None, "unshare -n true 2>/dev/null");
    blocked(&w, None, "mkdir -p m && mount -t tmpfs none m 2>/dev/null");
    blocked(&w, None, "umount /etc/shadow 2>/dev/null");
    blocked(&w, None, "chroot / true 2>/dev/null");
    // setuid binaries do not elevate: no_new_privs and nosuid mounts.
    blocked(
        &w,
        None,
        "su -c 'touch /tmp/as-root' root </dev/null 2>/dev/null",
    );
    blocked(&w, None, "test \"$(id -u)\" = 0");
    blocked(&w, None, "grep -q 'CapEff:.*[1-9a-f]' /proc/self/status");
    blocked(&w, None, "grep -q 'NoNewPrivs:.*0' /proc/self/status");
    // Under memory pressure the task is killed first, not the supervisor; the task cannot
    // lower that (its twin: raising it, as any process may).
    blocked(
        &w,
        None,
        "echo 0 > /proc/self/oom_score_adj 2>/dev/null; test \"$(cat /proc/self/oom_score_adj)\" != 1000",
    );
    works(&w, None, "test \"$(cat /proc/self/oom_score_adj)\" = 1000");
    // Twin: ordinary work in the same places.
    works(
        &w,
        None,
        "mkdir -p m && touch m/f && id -un >/dev/null && true",
    );
}

#[test]
fn ptrace_a_sibling() {
    let w = World::new();
    blocked(
        &w,
        None,
        "sleep 30 & pid=$!; python3 -c \"
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
sys.exit(0 if libc.ptrace(16, $pid, 0, 0) == 0 else 1)\" 2>/dev/null; r=$?; kill $pid; exit $r",
    );
    blocked(
        &w,
        None,
        "sleep 30 & pid=$!; python3 -c \"
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
class IoVec(ctypes.Structure): _fields_ = [('b', ctypes.c_void_p), ('l', ctypes.c_size_t)]
buf = ctypes.create_string_buffer(8)
local = IoVec(ctypes.cast(buf, ctypes.c_void_p), 8); remote = IoVec(0x400000, 8)
sys.exit(0 if libc.process_vm_readv($pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) > 0 else 1)\" 2>/dev/null; r=$?; kill $pid; exit $r",
    );
    // Twin: signalling a sibling works.
    works(&w, None, "sleep 30 & pid=$!; kill -0 $pid && kill $pid");
}

#[test]
fn kill_a_host_process() {
    let w = World::new();
    let mut victim = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = victim.id();
    blocked(&w, None, &format!("kill -9 {pid} 2>/dev/null"));
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the host process was killed"
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
    works(&w, None, "sleep 30 & kill -9 $!");
}

#[test]
fn fork_bomb_is_held_by_the_pids_limit() {
    let w = World::new();
    let remit = "[limits]\npids = 64\nwall = \"3s\"\n";
    // Processes that stay alive hold their slot: the 65th cannot start.
    let out = w.run(
        Some(remit),
        "python3 -c '
import os, time
n = 0
try:
    for i in range(200):
        if os.fork() == 0:
            time.sleep(2); os._exit(0)
        n += 1
    print(\"UNLIMITED\", n)
except OSError:
    print(\"LIMITED\", n)'",
    );
    let text = stdout(&out);
    assert!(
        text.contains("LIMITED") && !text.contains("UNLIMITED"),
        "{}",
        show(&out)
    );
    // A real bomb: forks forever. The limit holds it and the wall clock ends it, with
    // nothing left behind.
    let started = std::time::Instant::now();
    let out = w.run(Some(remit), "python3 -c 'import os\nwhile True:\n    try: os.fork()\n    except OSError: pass' 31.41596");
    assert_eq!(out.status.code(), Some(124), "{}", show(&out));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(processes_with("31.41596"), 0);
    // Twin: a handful of processes are fine.
    works(
        &w,
        Some(remit),
        "for i in 1 2 3 4 5 6 7 8; do sleep 0.1 & done; wait",
    );
}

#[test]
fn memory_beyond_the_limit() {
    let w = World::new();
    let remit = "[limits]\nmemory = \"64MiB\"\n";
    blocked(
        &w,
        Some(remit),
        "python3 -c 'b = bytearray(256 * 1024 * 1024); b[::4096] = b\"x\" * (len(b) // 4096)' 2>/dev/null",
    );
    works(
        &w,
        Some(remit),
        "python3 -c 'b = bytearray(16 * 1024 * 1024); b[::4096] = b\"x\" * (len(b) // 4096)'",
    );
}

fn processes_with(marker: &str) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let mut cmdline = String::new();
        if let Ok(mut f) = std::fs::File::open(entry.path().join("cmdline"))
            && f.read_to_string(&mut cmdline).is_ok()
            && cmdline.contains(marker)
        {
            count += 1;
        }
    }
    count
}

#[test]
fn nothing_outlives_the_task() {
    let w = World::new();
    let out = w.run(
        None,
        "setsid sleep 31.41591 </dev/null >/dev/null 2>&1 & (sh -c 'sleep 31.41592 &' &) ; nohup sleep 31.41593 >/dev/null 2>&1 & disown; echo started",
    );
    assert!(stdout(&out).contains("started"), "{}", show(&out));
    for marker in ["31.41591", "31.41592", "31.41593"] {
        assert_eq!(
            processes_with(marker),
            0,
            "a `sleep {marker}` survived the task"
        );
    }
    // Twin: background work finishes when the task waits for it.
    works(
        &w,
        None,
        "(sleep 0.1; echo done > bg.txt) & wait; grep -q done bg.txt",
    );
}

#[test]
fn wall_clock_limit_kills_the_whole_tree() {
    let w = World::new();
    let started = std::time::Instant::now();
    let out = w.run(
        Some("[limits]\nwall = \"1s\"\n"),
        "sleep 31.41594 & sleep 31.41595; echo finished",
    );
    assert_eq!(out.status.code(), Some(124), "{}", show(&out));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(!stdout(&out).contains("finished"));
    assert_eq!(processes_with("31.41594") + processes_with("31.41595"), 0);
    assert!(stderr(&out).contains("wall-clock limit"), "{}", show(&out));
}

#[test]
fn raw_sockets_and_foreign_families() {
    let w = World::new();
    for family in [
        "socket.AF_INET, socket.SOCK_RAW, 1",
        "socket.AF_PACKET, socket.SOCK_RAW",
        "socket.AF_NETLINK, socket.SOCK_RAW, 0",
        "40, socket.SOCK_STREAM",
        // Multipath TCP: a second TCP the Landlock port rules do not cover.
        "socket.AF_INET, socket.SOCK_STREAM, 262",
        "socket.AF_INET6, socket.SOCK_STREAM, 262",
    ] {
        blocked(
            &w,
            None,
            &format!("python3 -c 'import socket; socket.socket({family})' 2>/dev/null"),
        );
    }
    works(
        &w,
        None,
        "python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM); socket.socket(socket.AF_UNIX)'",
    );
}

#[test]
fn terminal_injection() {
    let w = World::new();
    // TIOCSTI (and TIOCLINUX, TIOCSETD, TCXONC, which leave the user's terminal dead) is
    // refused by the filter whatever descriptor it is aimed at (EPERM, not the ENOTTY an
    // ordinary ioctl on a non-terminal gets).
    let out = w.run(
        None,
        "python3 -c '
import fcntl, termios, errno, sys
for req in (termios.TIOCSTI, 0x541C, 0xFFFFFFFF00005412, 0x5423, 0x540A):
    try:
        fcntl.ioctl(0, req, b\"x\")
    except OSError as e:
        print(\"STI\", e.errno)
try:
    fcntl.ioctl(0, termios.TIOCGWINSZ, b\"\\0\" * 8)
except OSError as e:
    print(\"WINSZ\", e.errno)'",
    );
    let text = stdout(&out);
    assert_eq!(text.matches("STI 1").count(), 5, "{}", show(&out));
    assert!(text.contains("WINSZ 25"), "{}", show(&out));
}

#[test]
fn environment_is_scrubbed() {
    let w = World::new();
    let out = w
        .command()
        .env("GITHUB_TOKEN", "ghp_fake")
        .env("AWS_SECRET_ACCESS_KEY", "fake")
        .env("OPENAI_API_KEY", "sk-fake")
        .env("SSH_AUTH_SOCK", "/tmp/agent.sock")
        .env("MY_SERVICE_PASSWORD", "fake")
        .env("LD_PRELOAD", "/tmp/evil.so")
        .args(["run", "--quiet", "--", "env"])
        .output()
        .unwrap();
    let env = ok(&out);
    for name in [
        "GITHUB_TOKEN",
        "AWS_SECRET",
        "OPENAI_API_KEY",
        "SSH_AUTH_SOCK",
        "PASSWORD",
        "LD_PRELOAD",
        "REMIT_HOME",
    ] {
        assert!(!env.contains(name), "`{name}` leaked into the task\n{env}");
    }
    // Twin: the allowlisted variables and the remit's own arrive.
    assert!(
        env.contains("LANG=C.UTF-8") && env.contains("PATH="),
        "{env}"
    );
    let out = w.run(
        Some("[environment]\nset = { GREETING = \"hi\" }\n"),
        "echo $GREETING",
    );
    assert_eq!(ok(&out).trim(), "hi");
    // A pattern passes what it names, never what carries credentials or loads code.
    let out = w
        .command()
        .env("GIT_AUTHOR_NAME", "someone")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
        .env(
            "GIT_CONFIG_VALUE_0",
            "Authorization: Bearer fake-bearer-value",
        )
        .env("GIT_ASKPASS", "/tmp/askpass")
        .args(["run", "--quiet", "--remit"])
        .arg(w.remit("[environment]\npass = [\"GIT_*\"]\n"))
        .args(["--", "env"])
        .output()
        .unwrap();
    let env = ok(&out);
    assert!(env.contains("GIT_AUTHOR_NAME=someone"), "{env}");
    for name in ["GIT_CONFIG", "fake-bearer-value", "GIT_ASKPASS"] {
        assert!(!env.contains(name), "`{name}` passed by a pattern\n{env}");
    }
}

#[test]
fn hidden_paths_in_the_workspace() {
    let w = World::new();
    std::fs::write(w.ws.join(".env"), "DB_PASSWORD=fake").unwrap();
    std::fs::create_dir_all(w.ws.join("conf")).unwrap();
    std::fs::write(w.ws.join("conf/.env.local"), "X=fake").unwrap();
    std::fs::write(w.ws.join("conf/app.toml"), "name = 'app'").unwrap();
    let remit = "[filesystem]\nhidden = [\"**/.env*\"]\n";
    blocked(&w, Some(remit), "cat .env >/dev/null 2>&1");
    blocked(&w, Some(remit), "cat conf/.env.local >/dev/null 2>&1");
    blocked(&w, Some(remit), "echo x > .env 2>/dev/null");
    works(&w, Some(remit), "grep -q app conf/app.toml");
    assert_eq!(
        std::fs::read_to_string(w.ws.join(".env")).unwrap(),
        "DB_PASSWORD=fake"
    );
}

#[test]
fn env_files_in_a_read_only_grant() {
    // A directory outside the workspace granted read-only: its `.env*` files are hidden
    // whatever the remit says; what is beside them is readable.
    let w = World::new();
    let conf = w.outside.join("conf");
    std::fs::create_dir_all(conf.join("deploy")).unwrap();
    std::fs::write(conf.join(".env"), "DB_PASSWORD=fake-outside-env").unwrap();
    std::fs::write(conf.join(".env.local"), "X=fake-outside-env").unwrap();
    std::fs::write(conf.join("deploy/.env.production"), "Y=fake-outside-env").unwrap();
    std::fs::write(conf.join("app.toml"), "name = 'app'").unwrap();
    std::fs::write(w.ws.join(".env"), "MINE=1").unwrap();
    let c = conf.display();
    let remit = format!("[filesystem]\nread_only = [\"{c}\"]\n");
    blocked(&w, Some(&remit), &format!("cat {c}/.env >/dev/null 2>&1"));
    blocked(
        &w,
        Some(&remit),
        &format!("cat {c}/.env.local >/dev/null 2>&1"),
    );
    blocked(
        &w,
        Some(&remit),
        &format!("cat {c}/deploy/.env.production >/dev/null 2>&1"),
    );
    blocked(
        &w,
        Some(&remit),
        &format!("grep -rqs fake-outside-env {c} /proc/self/root{c}"),
    );
    // Twins: the ordinary file beside it, and the workspace's own `.env` (the project's,
    // hidden only when the remit says so).
    works(&w, Some(&remit), &format!("grep -q app {c}/app.toml"));
    works(&w, Some(&remit), "grep -q MINE .env");
    // The same `.env` named by a relative hidden pattern: hidden in the grant too.
    let remit = format!("[filesystem]\nread_only = [\"{c}\"]\nhidden = [\"**/.env*\"]\n");
    blocked(&w, Some(&remit), &format!("cat {c}/.env >/dev/null 2>&1"));
    blocked(&w, Some(&remit), "cat .env >/dev/null 2>&1");
    works(&w, Some(&remit), &format!("grep -q app {c}/app.toml"));
}

#[test]
fn hidden_patterns_and_env_links_in_a_read_write_grant() {
    let w = World::new();
    let data = w.outside.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("real-secrets"), "fake-linked-secret").unwrap();
    std::os::unix::fs::symlink(data.join("real-secrets"), data.join(".env")).unwrap();
    std::fs::write(data.join("server.pem"), "fake-pem").unwrap();
    std::fs::write(data.join("notes.txt"), "hello").unwrap();
    let d = data.display();
    let remit = format!("[filesystem]\nread_write = [\"{d}\"]\nhidden = [\"**/*.pem\"]\n");
    // A `.env` that is a link: what it points at is hidden too.
    blocked(&w, Some(&remit), &format!("cat {d}/.env >/dev/null 2>&1"));
    blocked(
        &w,
        Some(&remit),
        &format!("cat {d}/real-secrets >/dev/null 2>&1"),
    );
    blocked(
        &w,
        Some(&remit),
        &format!("cat {d}/server.pem >/dev/null 2>&1"),
    );
    blocked(
        &w,
        Some(&remit),
        &format!("echo x > {d}/real-secrets 2>/dev/null"),
    );
    // Twin: the rest of the grant is readable and writable.
    works(
        &w,
        Some(&remit),
        &format!("grep -q hello {d}/notes.txt && echo more >> {d}/notes.txt"),
    );
    assert_eq!(
        std::fs::read_to_string(data.join("real-secrets")).unwrap(),
        "fake-linked-secret"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("notes.txt")).unwrap(),
        "hellomore\n"
    );
}

#[test]
fn kernel_surface_is_closed() {
    let w = World::new();
    // bpf, perf_event_open, keyctl, io_uring_setup, userfaultfd, personality tricks.
    let out = w.run(
        None,
        "python3 -c '
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
for name, nr, args in [(\"bpf\", 321, (0, 0, 0)), (\"perf\", 298, (0, 0, -1, -1, 0)), (\"keyctl\", 250, (0, 0)),
                       (\"io_uring\", 425, (1, 0)), (\"userfaultfd\", 323, (0,)), (\"personality\", 135, (0x0040000,)),
                       (\"open_by_handle_at\", 304, (0, 0, 0))]:
    r = libc.syscall(nr, *args)
    print(name, r, ctypes.get_errno())
print(\"getpid\", libc.syscall(39) > 0)'",
    );
    let text = ok(&out);
    for line in text.lines().filter(|l| !l.starts_with("getpid")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts[1], "-1", "`{}` succeeded\n{text}", parts[0]);
        assert!(
            ["1", "38"].contains(&parts[2]),
            "`{}` failed with errno {} instead of EPERM/ENOSYS\n{text}",
            parts[0],
            parts[2]
        );
    }
    assert!(text.contains("getpid True"), "{text}");
}

#[test]
fn the_task_sees_a_minimal_tree() {
    let w = World::new();
    let out = w.run(None, "ls /; ls /dev; test -e /sys/kernel && echo SYS; test -e /root/.cargo && echo CARGO; test -e /var/run/docker.sock && echo DOCKER; cat /proc/self/uid_map");
    let text = ok(&out);
    for absent in ["SYS", "CARGO", "DOCKER", "boot", "srv", "opt"] {
        assert!(
            !text.lines().any(|l| l == absent),
            "`{absent}` is visible\n{text}"
        );
    }
    for present in ["usr", "tmp", "null", "urandom", "pts", "shm"] {
        assert!(
            text.lines().any(|l| l == present),
            "`{present}` is missing\n{text}"
        );
    }
}

/// A task cgroup left by a supervisor that was killed outright is removed by the next task
/// that uses cgroups (the test plants one named for a pid that cannot exist).
#[test]
fn cgroups_of_dead_supervisors_are_collected() {
    if !is_root() {
        eprintln!("SKIPPED: needs root (a uid other than the tester's, cgroups)");
        return;
    }
    let w = World::new();
    // Wherever this host keeps remit's task cgroups (v1 per controller, or v2).
    let candidates = [
        "/sys/fs/cgroup/memory/remit",
        "/sys/fs/cgroup/pids/remit",
        "/sys/fs/cgroup/remit",
        "/sys/fs/cgroup/unified/remit",
    ];
    let remit = "[limits]\nmemory = \"256MiB\"\n";
    // Make sure the parents exist (a first task creates them).
    ok(&w.run(Some(remit), "true"));
    let planted: Vec<std::path::PathBuf> = candidates
        .iter()
        .map(std::path::Path::new)
        .filter(|p| p.is_dir())
        .map(|p| p.join("4194000-stale-test"))
        .filter(|p| std::fs::create_dir(p).is_ok())
        .collect();
    // A task with a memory limit ran just before: its hierarchy must be there.
    assert!(
        !planted.is_empty(),
        "no remit cgroup directory among {candidates:?}"
    );
    ok(&w.run(Some(remit), "true"));
    for p in &planted {
        assert!(!p.exists(), "`{}` was left behind", p.display());
    }
}

/// `execveat` of a descriptor on a FIFO nobody writes to: the supervisor looks at the program
/// without blocking on it, so the task, its wall clock and its end go on. Next to the twin, a
/// program run from a descriptor on a regular file.
#[test]
fn exec_of_a_fifo_descriptor_does_not_stall_the_supervisor() {
    let w = World::new();
    let script = "python3 -c \"import os; os.mkfifo('f'); fd = os.open('f', os.O_PATH); os.execve(fd, ['x'], {})\"; \
         echo survived; \
         python3 -c \"import os; fd = os.open('/bin/echo', os.O_RDONLY); os.execve(fd, ['echo', 'twin-ran'], {})\"";
    let mut child = w
        .command()
        .arg("run")
        .arg("--quiet")
        .arg("--remit")
        .arg(w.remit("[limits]\nwall = \"30s\"\n"))
        .arg("--")
        .arg("bash")
        .arg("-c")
        .arg(script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("the supervisor stalled on the FIFO");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains("survived") && text.contains("twin-ran"),
        "{}",
        show(&out)
    );
}

/// A denial explains itself on the task's standard error, but never through a file the task
/// may only read: the supervisor's own rights are not lent to it.
#[test]
fn a_denial_message_is_not_written_into_a_file_the_task_only_reads() {
    let w = World::new();
    let target = w.ws.join("read-only-for-the-task.txt");
    std::fs::write(&target, "original\n").unwrap();
    let remit = "[commands]\nforbid = [\"curl\"]\n";
    // The attack: standard error pointed at a file opened for reading only.
    let out = w.run(
        Some(remit),
        "curl --version 2<read-only-for-the-task.txt; echo done",
    );
    assert!(stdout(&out).contains("done"), "{}", show(&out));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "original\n");
    // The twin: a writable standard error gets the explanation.
    let out = w.run(Some(remit), "curl --version; echo done");
    assert!(stderr(&out).contains("forbids `curl`"), "{}", show(&out));
}

/// remit's own state (its signing keys, ledger, vault and every task's sockets) stays out of
/// reach even when a remit grants the tree that holds it.
#[test]
fn remit_state_is_hidden_even_when_granted() {
    let w = World::new();
    // A first task fills the state directory.
    ok(&w.run(None, "true"));
    assert!(w.exists(&w.state.join("ledger.key")));
    let state = w.state.display();
    let remit = format!(
        "[filesystem]\nread_only = [\"{state}\", \"{}\"]\n",
        w.home.display()
    );
    blocked(
        &w,
        Some(&remit),
        &format!("cat {state}/ledger.key >/dev/null 2>&1"),
    );
    blocked(&w, Some(&remit), &format!("ls {state}/run | grep -q ."));
    // The twin: the rest of what was granted is readable.
    std::fs::write(w.home.join("notes.txt"), "hello").unwrap();
    works(
        &w,
        Some(&remit),
        &format!("grep -q hello {}/notes.txt", w.home.display()),
    );
}

/// A built-in secret path that is a symbolic link (dotfiles managers link `~/.ssh` into a
/// repository) is hidden at its target too.
#[test]
fn a_linked_secret_directory_is_hidden_at_its_target() {
    let w = World::new();
    std::fs::rename(w.home.join(".ssh"), w.home.join("dotfiles-ssh")).unwrap();
    std::os::unix::fs::symlink("dotfiles-ssh", w.home.join(".ssh")).unwrap();
    let home = w.home.display();
    let remit = format!("[filesystem]\nread_only = [\"{home}\"]\n");
    blocked(
        &w,
        Some(&remit),
        &format!("cat {home}/.ssh/id_ed25519 >/dev/null 2>&1"),
    );
    blocked(
        &w,
        Some(&remit),
        &format!("cat {home}/dotfiles-ssh/id_ed25519 >/dev/null 2>&1"),
    );
    std::fs::write(w.home.join("notes.txt"), "hello").unwrap();
    works(&w, Some(&remit), &format!("grep -q hello {home}/notes.txt"));
}

/// A task shares the user's terminal. One that makes its own process group the terminal's
/// foreground group and sets `TOSTOP`, then gets a command denied (the supervisor says so on
/// the terminal), must not stop the supervisor: the wall-clock limit still ends the task and
/// remit exits. Run under a terminal of its own (`script`), from a shell with job control,
/// as a user's shell runs it. The twin: the same task without the grab.
#[test]
fn a_task_that_takes_the_terminal_cannot_stop_the_supervisor() {
    let w = World::new();
    let remit = w.remit("[commands]\nforbid = [\"touch\"]\n\n[limits]\nwall = \"3s\"\n");
    let grab = r#"
import os, signal, subprocess, sys, termios, time
if sys.argv[1] == "grab":
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    os.setpgid(0, 0)
    tty = os.open("/dev/tty", os.O_RDWR)
    os.tcsetpgrp(tty, os.getpgrp())
    attrs = termios.tcgetattr(tty)
    attrs[3] |= termios.TOSTOP
    termios.tcsetattr(tty, termios.TCSANOW, attrs)
try:
    subprocess.run(["touch", "denied"])
except OSError:
    pass
time.sleep(30)
"#;
    std::fs::write(w.ws.join("grab.py"), grab).unwrap();
    for mode in ["grab", "twin"] {
        let inner = format!(
            "set -m; '{}' run --quiet --remit '{}' -- python3 grab.py {mode}; echo EXIT=\\$?",
            env!("CARGO_BIN_EXE_remit"),
            remit.display()
        );
        let mut child = std::process::Command::new("script")
            .args(["-qec", &format!("bash -c \"{inner}\""), "/dev/null"])
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", &w.home)
            .env("LANG", "C.UTF-8")
            .env("REMIT_HOME", &w.state)
            .current_dir(&w.ws)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let ended = loop {
            if child.try_wait().unwrap().is_some() {
                break true;
            }
            if started.elapsed() > Duration::from_secs(60) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if !ended {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        let text = stdout(&out);
        assert!(
            ended,
            "{mode}: remit was stopped through the terminal\n{text}"
        );
        assert!(text.contains("EXIT=124"), "{mode}: {text}");
        assert!(!w.ws.join("denied").exists());
    }
}

/// The workspace is the user's directory and the task's files belong to its owner there (root,
/// over a root-owned workspace): a set-user-ID or set-group-ID program left in it would run
/// with the owner's rights for anyone on the host. Every way to set those bits is refused;
/// the twins set ordinary modes the same ways.
#[test]
fn set_user_id_programs_cannot_be_left_in_the_workspace() {
    let w = World::new();
    for attack in [
        "cp /bin/true ./a && chmod u+s ./a && test -u ./a",
        "cp /bin/true ./b && chmod g+s ./b && test -g ./b",
        "cp /bin/true ./c && chmod 6755 ./c && test -u ./c",
        "python3 -c 'import os; os.close(os.open(\"d\", os.O_CREAT | os.O_WRONLY, 0o4755))' && test -u d",
        "python3 -c 'import os; fd = os.open(\".\", os.O_TMPFILE | os.O_WRONLY, 0o2755)' && false",
        "python3 -c 'import os, stat; os.mknod(\"e\", stat.S_IFREG | 0o4755)' && test -u e",
        "touch f && python3 -c 'import os; fd = os.open(\"f\", os.O_RDONLY); os.fchmod(fd, 0o4755)' && test -u f",
    ] {
        blocked(&w, None, &format!("{attack} 2>/dev/null"));
    }
    for name in ["a", "b", "c", "d", "e", "f"] {
        let path = w.ws.join(name);
        if let Ok(meta) = std::fs::metadata(&path) {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                meta.permissions().mode() & 0o6000,
                0,
                "{name} is set-id on the host"
            );
        }
    }
    for twin in [
        "cp /bin/true ./g && chmod 755 ./g && ./g && ! test -u ./g",
        "python3 -c 'import os; os.close(os.open(\"h\", os.O_CREAT | os.O_WRONLY, 0o755))' && test -x h",
        "python3 -c 'import os, stat; os.mknod(\"i\", stat.S_IFREG | 0o644)' && test -f i",
        "touch j && python3 -c 'import os; fd = os.open(\"j\", os.O_RDONLY); os.fchmod(fd, 0o700)' && test -x j",
        "python3 -c 'import os; print(open(\"/etc/hostname\").read())' >/dev/null",
    ] {
        works(&w, None, twin);
    }
}
