//! A host whose answers the test decides, and helpers to run scripts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use remit_codemode::host::{CallError, Host, Reply};
use remit_codemode::isolate::{Limits, Report, RunOptions, StopHandle, run_async};
use remit_codemode::source::{Language, Script};
use remit_codemode::tools::Call;

/// Records every call; answers `exec` after `delay` with `{exit_code: 0, stdout: argv}`,
/// everything else at once with `{ok: true, tool}`.
#[derive(Default)]
pub(crate) struct TestHost {
    pub(crate) calls: Mutex<Vec<(String, Call)>>,
    pub(crate) delay: Duration,
}

impl Host for TestHost {
    fn call(&self, script: &str, call: Call) -> Reply {
        self.calls
            .lock()
            .unwrap()
            .push((script.to_owned(), call.clone()));
        match call {
            Call::Exec(e) => {
                let delay = self.delay;
                Reply::Later(Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    if e.argv.first().map(String::as_str) == Some("deny") {
                        return Err(CallError::denied("commands.forbid[0]", "not this"));
                    }
                    Ok(
                        serde_json::json!({"exit_code": 0, "stdout": e.argv.join(" "), "stderr": ""}),
                    )
                }))
            }
            Call::ReadFile(r) => {
                Reply::Ready(Ok(serde_json::json!({"path": r.path, "content": "hello"})))
            }
            other => Reply::Ready(Ok(serde_json::json!({"ok": true, "tool": other.tool()}))),
        }
    }

    fn redact(&self, text: &str) -> String {
        text.replace("sk-secret-value", "[REDACTED:test]")
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn run_with(
    code: &str,
    language: Language,
    host: Arc<TestHost>,
    limits: Limits,
) -> Report {
    let rt = runtime();
    let script = Script::new(
        if language == Language::Ts {
            "t.ts"
        } else {
            "t.js"
        },
        code.as_bytes(),
        language,
    )
    .unwrap();
    let options = RunOptions {
        limits,
        runtime: rt.handle().clone(),
    };
    rt.block_on(run_async(script, host, options, StopHandle::new()))
}

pub(crate) fn run(code: &str) -> Report {
    run_with(
        code,
        Language::Ts,
        Arc::new(TestHost::default()),
        Limits::default(),
    )
}

pub(crate) fn run_script(script: Script, host: Arc<TestHost>, limits: Limits) -> Report {
    let rt = runtime();
    let options = RunOptions {
        limits,
        runtime: rt.handle().clone(),
    };
    rt.block_on(run_async(script, host, options, StopHandle::new()))
}
