//! Hostile scripts: each is stopped or contained, and the host is unaffected.

use std::sync::Arc;
use std::time::Duration;

use remit_codemode::isolate::{ErrorKind, Limits, RunOptions, StopHandle, run_async};
use remit_codemode::source::{Language, Script};
use remit_codemode::tools::Call;

use crate::support::*;

#[test]
fn polluting_prototypes_does_not_change_what_the_host_sees() {
    let host = Arc::new(TestHost::default());
    let r = run_with(
        r#"
        const bad = () => { throw new Error("hijacked"); };
        JSON.stringify = () => '{"argv":["rm","-rf","/"]}';
        JSON.parse = bad;
        Object.prototype.then = undefined;
        Object.defineProperty(Object.prototype, "content", { set() { throw new Error("setter"); }, configurable: true });
        Array.prototype.push = bad;
        Array.prototype[Symbol.iterator] = bad;
        Function.prototype.call = bad;
        Function.prototype.apply = bad;
        Promise.prototype.then = bad;
        String.prototype.slice = bad;
        Reflect.apply = bad;
        const tries = [];
        const attempts = [
          () => { remit.exec = () => "mine"; },
          () => { remit.fs.read = () => "mine"; },
          () => { delete remit.fs; },
          () => { Object.setPrototypeOf(remit, { exec: () => "mine" }); },
          () => { remit.fs.read.call = () => "mine"; },
          () => { globalThis.remit = {}; },
          () => { Object.defineProperty(remit.fs, "read", { value: 1 }); },
        ];
        for (let i = 0; i < attempts.length; i++) {
          try { attempts[i](); tries[tries.length] = "changed"; } catch (e) { tries[tries.length] = "refused"; }
        }
        const out = await remit.exec(["echo", "safe"]);
        const text = await remit.fs.read("a.txt");
        return { tries: tries.join(","), out: out.stdout, text, same: typeof remit.exec };
        "#,
        Language::Js,
        Arc::clone(&host),
        Limits::default(),
    );
    assert!(r.ok, "{r:?}");
    let v = r.result.unwrap();
    assert_eq!(
        v["tries"], "refused,refused,refused,refused,refused,refused,refused",
        "{v}"
    );
    assert_eq!(v["out"], "echo safe");
    assert_eq!(v["text"], "hello");
    let calls = host.calls.lock().unwrap();
    match &calls[0].1 {
        Call::Exec(e) => assert_eq!(e.argv, ["echo", "safe"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn eval_and_function_reach_only_the_isolate() {
    let r = run(r#"
        const g1 = eval("this");
        const g2 = new Function("return this")();
        const g3 = (0, eval)("globalThis");
        const g4 = remit.exec.constructor("return globalThis")();
        const same = g1 === globalThis && g2 === globalThis && g3 === globalThis && g4 === globalThis;
        const names = Object.getOwnPropertyNames(globalThis).sort();
        const missing = ["require", "process", "std", "os", "Deno", "Bun", "fetch", "XMLHttpRequest",
          "setTimeout", "setInterval", "performance", "print", "scriptArgs", "__remit_call", "WebAssembly"]
          .filter(n => n in globalThis);
        let imported = "no";
        try { await import("os"); imported = "yes"; } catch (e) { imported = "refused"; }
        let blocked = "no";
        try { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10); } catch (e) { blocked = "refused"; }
        return { same, missing, imported, blocked, names };
        "#);
    assert!(r.ok, "{r:?}");
    let v = r.result.unwrap();
    assert_eq!(v["same"], true);
    assert_eq!(v["missing"], serde_json::json!([]), "{v}");
    assert_eq!(v["imported"], "refused");
    assert_eq!(v["blocked"], "refused");
    // Every global is a language built-in, `remit` or `console`.
    let allowed = [
        "AggregateError",
        "Array",
        "ArrayBuffer",
        "Atomics",
        "BigInt",
        "BigInt64Array",
        "BigUint64Array",
        "Boolean",
        "DOMException",
        "DataView",
        "Date",
        "Error",
        "EvalError",
        "FinalizationRegistry",
        "Float16Array",
        "Float32Array",
        "Float64Array",
        "Function",
        "Infinity",
        "Int16Array",
        "Int32Array",
        "Int8Array",
        "Iterator",
        "JSON",
        "Map",
        "Math",
        "NaN",
        "Number",
        "Object",
        "Promise",
        "Proxy",
        "RangeError",
        "ReferenceError",
        "Reflect",
        "RegExp",
        "Set",
        "SharedArrayBuffer",
        "String",
        "SuppressedError",
        "Symbol",
        "SyntaxError",
        "TypeError",
        "URIError",
        "Uint16Array",
        "Uint32Array",
        "Uint8Array",
        "Uint8ClampedArray",
        "WeakMap",
        "WeakRef",
        "WeakSet",
        "atob",
        "btoa",
        "console",
        "decodeURI",
        "decodeURIComponent",
        "encodeURI",
        "encodeURIComponent",
        "escape",
        "eval",
        "globalThis",
        "isFinite",
        "isNaN",
        "navigator",
        "parseFloat",
        "parseInt",
        "queueMicrotask",
        "remit",
        "undefined",
        "unescape",
        "CallSite",
        "InternalError",
        "DisposableStack",
        "AsyncDisposableStack",
    ];
    for name in v["names"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        assert!(allowed.contains(&name), "unexpected global `{name}`");
    }
}

#[test]
fn the_clock_does_not_move() {
    let r = run(
        "const a = Date.now(); let x = 0; for (let i = 0; i < 3e6; i++) x += i; const b = Date.now(); return [a === b, new Date().getTime() === a, typeof performance, Date() === Date()];",
    );
    assert_eq!(
        r.result,
        Some(serde_json::json!([true, true, "undefined", true])),
        "{r:?}"
    );
}

#[test]
fn unknown_bindings_and_bad_arguments_are_clear() {
    let r = run("await remit.fs.delete('x')");
    let e = r.error.unwrap();
    assert!(
        e.message.contains("unknown binding `remit.fs.delete`") && e.message.contains("read"),
        "{e:?}"
    );
    assert_eq!(e.line, Some(1));
    let r = run("await remit.exec('ls -l')");
    assert!(
        r.error
            .unwrap()
            .message
            .contains("remit.exec: invalid type")
    );
    let r = run("await remit.fs.read({ path: 'a' }, { nope: 1 })");
    assert!(r.error.unwrap().message.contains("remit.fs.read"));
    let r = run("await remit.git.status(1)");
    assert!(
        r.error
            .unwrap()
            .message
            .contains("takes at most 0 arguments")
    );
    let r = run("await remit.exec(['a'], { cwd: 5 })");
    assert!(!r.ok);
    let r = run("const a: any = {}; a.self = a; await remit.exec(['x'], { stdin: a })");
    assert!(r.error.unwrap().message.contains("remit.exec"));
    let r = run("import fs from 'fs';");
    assert!(matches!(r.error.unwrap().kind, ErrorKind::Syntax));
}

#[test]
fn nothing_outlives_the_script() {
    let host = Arc::new(TestHost {
        delay: Duration::from_secs(30),
        ..TestHost::default()
    });
    // A call left running, a promise and a callback kept in a global.
    let r = run_with(
        "globalThis.kept = remit.exec(['sleep']); globalThis.later = () => remit.exec(['late']); return 'bye';",
        Language::Js,
        Arc::clone(&host),
        Limits::default(),
    );
    assert_eq!(r.result, Some(serde_json::json!("bye")));
    assert_eq!(r.cancelled, 1);
    // A new script sees a new isolate.
    let r = run_with(
        "return [typeof globalThis.kept, typeof globalThis.later];",
        Language::Js,
        Arc::clone(&host),
        Limits::default(),
    );
    assert_eq!(
        r.result,
        Some(serde_json::json!(["undefined", "undefined"]))
    );
    assert_eq!(host.calls.lock().unwrap().len(), 1, "`later` never ran");
}

#[test]
fn a_stopped_script_cannot_call_bindings() {
    let host = Arc::new(TestHost {
        delay: Duration::from_millis(20),
        ..TestHost::default()
    });
    let rt = runtime();
    let script = Script::new(
        "k.js",
        b"let n = 0; for (;;) { try { await remit.exec(['tick']); n++; } catch (e) { } }",
        Language::Js,
    )
    .unwrap();
    let stop = StopHandle::new();
    let options = RunOptions {
        limits: Limits::default(),
        runtime: rt.handle().clone(),
    };
    let running = rt.spawn(run_async(script, host.clone() as _, options, stop.clone()));
    std::thread::sleep(Duration::from_millis(200));
    stop.stop("the task was killed");
    let r = rt.block_on(running).unwrap();
    assert!(
        matches!(r.error.as_ref().unwrap().kind, ErrorKind::Killed),
        "{:?}",
        r.error
    );
    assert!(r.error.unwrap().message.contains("killed"));
    let after = host.calls.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        host.calls.lock().unwrap().len(),
        after,
        "calls after the stop"
    );
    // A busy loop is stopped too.
    let stop = StopHandle::new();
    let script = Script::new("b.js", b"while (true) {}", Language::Js).unwrap();
    let options = RunOptions {
        limits: Limits::default(),
        runtime: rt.handle().clone(),
    };
    let running = rt.spawn(run_async(script, host as _, options, stop.clone()));
    std::thread::sleep(Duration::from_millis(100));
    stop.stop("the task was killed");
    let r = rt.block_on(running).unwrap();
    assert!(matches!(r.error.unwrap().kind, ErrorKind::Killed));
}

#[test]
fn secrets_are_redacted_from_output_result_and_errors() {
    let r = run("console.log('key sk-secret-value'); throw new Error('sk-secret-value leaked');");
    assert!(!r.output.contains("sk-secret-value") && r.output.contains("[REDACTED:test]"));
    assert!(!r.error.unwrap().message.contains("sk-secret-value"));
    let r = run("return { k: 'sk-secret-value' };");
    assert_eq!(r.result, Some(serde_json::json!({"k": "[REDACTED:test]"})));
}
