//! Every limit stops the script with an error naming it; the host keeps working.

use std::sync::Arc;
use std::time::Duration;

use remit_codemode::isolate::{ErrorKind, Limit, Limits};
use remit_codemode::source::Language;

use crate::support::*;

fn limit_of(r: &remit_codemode::isolate::Report) -> Option<Limit> {
    match r.error.as_ref()?.kind {
        ErrorKind::Limit { limit } => Some(limit),
        _ => None,
    }
}

fn limits() -> Limits {
    Limits {
        cpu: Duration::from_millis(300),
        wall: Duration::from_secs(5),
        memory: 32 << 20,
        ..Limits::default()
    }
}

/// For the memory tests: CPU and wall limits far above what filling 32 MiB takes, so that
/// the memory limit is the one that stops the script even in a debug build on a busy machine.
fn memory_limits() -> Limits {
    Limits {
        cpu: Duration::from_secs(20),
        wall: Duration::from_secs(60),
        ..limits()
    }
}

#[test]
fn cpu_time_stops_an_infinite_loop_even_when_caught() {
    for code in [
        "while (true) {}",
        "for (;;) { try { while (true) {} } catch (e) {} }",
        "const f = () => { try { f(); } catch (e) { f(); } }; f();",
    ] {
        let r = run_with(code, Language::Js, Arc::new(TestHost::default()), limits());
        assert!(!r.ok, "{code}");
        assert_eq!(limit_of(&r), Some(Limit::Cpu), "{code}: {:?}", r.error);
        assert!(r.error.as_ref().unwrap().message.contains("CPU-time limit"));
    }
}

#[test]
fn wall_time_stops_a_script_waiting_on_a_binding() {
    let host = Arc::new(TestHost {
        delay: Duration::from_secs(30),
        ..TestHost::default()
    });
    let l = Limits {
        wall: Duration::from_millis(300),
        ..limits()
    };
    let started = std::time::Instant::now();
    let r = run_with(
        "await remit.exec(['sleep']); return 1;",
        Language::Js,
        host,
        l,
    );
    assert_eq!(limit_of(&r), Some(Limit::Wall), "{:?}", r.error);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(r.cancelled, 1, "the running call is cancelled");
}

#[test]
fn memory() {
    let threads = || std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count);
    let before = threads();
    // Growing without bound: stopped by the memory limit itself, with a clear error.
    for code in [
        "const a = []; while (true) a.push(new Array(100000).fill(1.5));",
        "const a = []; let i = 0; while (true) a.push('x'.repeat(1000) + i++);",
    ] {
        let r = run_with(
            code,
            Language::Js,
            Arc::new(TestHost::default()),
            memory_limits(),
        );
        assert!(!r.ok, "{code}: {r:?}");
        assert_eq!(limit_of(&r), Some(Limit::Memory), "{code}: {:?}", r.error);
        assert!(
            r.error.as_ref().unwrap().message.contains("out of memory"),
            "{:?}",
            r.error
        );
    }
    // Caught, the failed allocation is an error the script handles: the limit still held.
    let r = run_with(
        "const a = []; try { while (true) a.push(new Array(100000).fill(1.5)); } catch (e) { return 'caught'; }",
        Language::Js,
        Arc::new(TestHost::default()),
        memory_limits(),
    );
    assert_eq!(r.result, Some(serde_json::json!("caught")), "{r:?}");
    // One huge allocation: refused by the engine or by the limit, never granted.
    for code in [
        "new ArrayBuffer(1 << 30);",
        "'x'.repeat(1 << 29);",
        "let s = 'x'; while (true) s = s + s;",
    ] {
        let r = run_with(
            code,
            Language::Js,
            Arc::new(TestHost::default()),
            memory_limits(),
        );
        assert!(!r.ok, "{code}");
        let e = r.error.as_ref().unwrap();
        assert!(
            limit_of(&r) == Some(Limit::Memory)
                || e.message.contains("RangeError")
                || e.message.contains("memory")
                || e.message.contains("too long"),
            "{code}: {e:?}"
        );
    }
    // The host is unaffected: the next script runs, and no thread was left behind.
    assert_eq!(run("return 1 + 1").result, Some(serde_json::json!(2)));
    assert!(
        threads() <= before.max(1) + 1,
        "threads {before} -> {}",
        threads()
    );
}

#[test]
fn deep_recursion() {
    let r = run("function f(n: number): number { return f(n + 1) + 1; } f(0);");
    assert_eq!(limit_of(&r), Some(Limit::Stack), "{:?}", r.error);
    // Caught, it is just an error the script handles.
    let r =
        run("function f(): number { return f() + 1; } try { f(); } catch (e) { return 'caught'; }");
    assert_eq!(r.result, Some(serde_json::json!("caught")));
}

#[test]
fn binding_calls() {
    let l = Limits {
        calls: 5,
        ..limits()
    };
    let r = run_with(
        "let n = 0; try { for (;;) { await remit.fs.read('a'); n++; } } catch (e) { } return n;",
        Language::Js,
        Arc::new(TestHost::default()),
        l,
    );
    assert_eq!(limit_of(&r), Some(Limit::Calls), "{:?}", r);
    assert_eq!(r.calls, 6);
}

#[test]
fn output() {
    let l = Limits {
        output: 1000,
        ..limits()
    };
    let r = run_with(
        "try { for (;;) console.log('0123456789'); } catch (e) {} return 1;",
        Language::Js,
        Arc::new(TestHost::default()),
        l.clone(),
    );
    assert_eq!(limit_of(&r), Some(Limit::Output), "{:?}", r.error);
    assert!(r.output.len() <= 1000 && r.output_truncated);
    let r = run_with(
        "return 'x'.repeat(5000);",
        Language::Js,
        Arc::new(TestHost::default()),
        l,
    );
    assert_eq!(limit_of(&r), Some(Limit::Output), "{:?}", r.error);
}

#[test]
fn a_promise_nothing_settles() {
    let r = run("await new Promise(() => {}); return 1;");
    assert!(
        matches!(r.error.as_ref().unwrap().kind, ErrorKind::Stuck),
        "{:?}",
        r.error
    );
}
