//! The isolate: results, output, bindings, errors with positions.

use std::sync::Arc;

use remit_codemode::isolate::Limits;
use remit_codemode::source::Language;

use crate::support::*;

#[test]
fn hello_and_result() {
    let r = run("console.log('hello', 1, {a: 2}); const x: number = 40; return x + 2;");
    assert!(r.ok, "{r:?}");
    assert_eq!(r.output, "hello 1 {\"a\":2}\n");
    assert_eq!(r.result, Some(serde_json::json!(42)));
}

#[test]
fn bindings_resolve_and_reject() {
    let host = Arc::new(TestHost::default());
    let r = run_with(
        r#"
        const text = await remit.fs.read("a.txt");
        const out = await remit.exec(["echo", "hi"]);
        let code = "";
        try { await remit.exec(["deny"]); } catch (e) { code = e.code + " " + e.policy + " " + e.message; }
        return { text, out: out.stdout, code };
        "#,
        Language::Ts,
        Arc::clone(&host),
        Limits::default(),
    );
    assert!(r.ok, "{r:?}");
    let v = r.result.unwrap();
    assert_eq!(v["text"], "hello");
    assert_eq!(v["out"], "echo hi");
    assert!(
        v["code"]
            .as_str()
            .unwrap()
            .starts_with("denied commands.forbid[0] denied: not this"),
        "{v}"
    );
    assert_eq!(r.calls, 3);
    assert_eq!(host.calls.lock().unwrap().len(), 3);
    assert!(host.calls.lock().unwrap()[0].0.starts_with("sha256:"));
}

#[test]
fn errors_point_into_the_script() {
    let r = run("const a = 1;\nconst b: string = 'x';\nnull.boom;\n");
    assert!(!r.ok);
    let e = r.error.unwrap();
    assert_eq!(e.line, Some(3), "{e:?}");
    // JavaScript is parsed before it runs too.
    let e = remit_codemode::source::Script::new("t.js", b"let a = 1;\nlet b = ;\n", Language::Js)
        .unwrap_err();
    assert_eq!(e.to_string(), "t.js:2:9: syntax error: Unexpected token");
}

#[test]
fn deep_expressions_without_brackets_are_no_crash() {
    // Prefix operators, arrows, conditionals and long operator chains nest as deeply as
    // brackets do, in the parser and in the passes after it: each is refused or fails as a
    // script, never overflowing the stack of the process that holds the task.
    let n = 300_000;
    for code in [
        format!("return {}1;", "!".repeat(n)),
        format!("return {}1;", "x=>".repeat(n / 3)),
        format!("return {}1;", "1?1:".repeat(n / 4)),
        format!("return 1{};", "+1".repeat(n / 2)),
        format!("return 1{};", "**1".repeat(n / 3)),
    ] {
        for language in [Language::Ts, Language::Js] {
            if let Ok(script) =
                remit_codemode::source::Script::new("deep.ts", code.as_bytes(), language)
            {
                let host = Arc::new(TestHost::default());
                let _ = crate::support::run_script(script, host, Limits::default());
            }
        }
    }
    // The harmless twin: the same forms at ordinary depth run.
    let report = run(&format!("return {}1;", "!".repeat(100)));
    assert_eq!(report.result, Some(serde_json::json!(true)));
    let report = run(&format!("return 1{};", "+1".repeat(1000)));
    assert_eq!(report.result, Some(serde_json::json!(1001)));
}

#[test]
fn deeply_nested_source_is_refused_not_a_crash() {
    // Just under the limit, it parses and runs.
    let ok = format!("return {}1{};", "(".repeat(500), ")".repeat(500));
    assert_eq!(run(&ok).result, Some(serde_json::json!(1)));
    for (open, close) in [("(", ")"), ("[", "]"), ("{", "}"), ("f(", ")")] {
        let code = format!("return {}1{};", open.repeat(50_000), close.repeat(50_000));
        for language in [Language::Ts, Language::Js] {
            let r = remit_codemode::source::Script::new("deep.ts", code.as_bytes(), language);
            if let Ok(script) = r {
                let host = Arc::new(TestHost::default());
                let report = crate::support::run_script(script, host, Limits::default());
                assert!(!report.ok);
            }
        }
    }
}
