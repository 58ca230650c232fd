//! Run one command in a minimal sandbox over the current directory, allowing every exec and
//! printing what was observed: `cargo run -p remit-sandbox --example run -- sh -c 'id; ls /'`.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a development tool, not library code

use std::os::fd::AsFd;

use remit_sandbox::{Event, Sandbox, SandboxSpec, SpawnRequest, Verdict};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cwd = std::env::current_dir().unwrap_or_default();
    let spec = SandboxSpec::minimal("example", cwd.clone());
    let start = std::time::Instant::now();
    let mut sandbox = match Sandbox::create(&spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    eprintln!("[ready in {:?}]", start.elapsed());
    let path = which(&args[0]);
    let (i, o, e) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let id = sandbox
        .spawn(&SpawnRequest {
            path: path.as_ref(),
            argv: &args,
            env: &spec.env,
            cwd: &cwd,
            stdio: [i.as_fd(), o.as_fd(), e.as_fd()],
            new_process_group: false,
        })
        .unwrap_or_else(|e| panic!("{e}"));
    loop {
        if let Some(watch) = sandbox.exec_watch() {
            while let Ok(Some(attempt)) = watch.recv() {
                eprintln!(
                    "[exec {:?} pid {} ppid {} cwd {} prog {:?}]",
                    attempt.argv,
                    attempt.pid,
                    attempt.ppid,
                    attempt.cwd,
                    attempt.program.as_ref().map(|p| p.ino)
                );
                let _ = watch.respond(&attempt, Verdict::Allow);
            }
        }
        match sandbox.try_event() {
            Ok(Some(Event::Exited { id: done, status })) if done == id => {
                eprintln!("[exit {status:?} after {:?}]", start.elapsed());
                break;
            }
            Ok(Some(ev)) => eprintln!("[{ev:?}]"),
            Ok(None) => std::thread::sleep(std::time::Duration::from_micros(50)),
            Err(e) => {
                eprintln!("error: {e}");
                break;
            }
        }
    }
}

fn which(name: &str) -> String {
    if name.contains('/') {
        return name.to_owned();
    }
    for dir in ["/usr/local/bin", "/usr/bin", "/bin"] {
        let p = format!("{dir}/{name}");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    name.to_owned()
}
