//! The Cedar schema of remit's decisions: who asks (a task, inside an agent), what it asks
//! for (an action per effect kind, typed actions grouped under `Action::"action"`), on what
//! (a program, a host, a ref, a secret, a target), and the context every request carries.
//!
//! Every policy — compiled from a remit or written by hand — is validated against this
//! schema in strict mode at load, so a typo in an attribute is a load error, not a policy
//! that silently never matches.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use remit_types::effect::{STANDARD_ACTIONS, TOOL_ARGS};

/// The context fields every action has.
const COMMON_CONTEXT: &str = r#""time": Time, "approvals": Set<String>, "quota": Quota"#;

/// The fixed part of the schema.
const BASE: &str = r#"
// Who: a task runs on behalf of an agent, which a human owns.
entity Agent = {
    "owner": String,
    "risk": String,
};
entity Task in [Agent] = {
    "agent": String,
    "owner": String,
    "requester": String,
    "remit": String,
};
// Approvers.
entity Group;
entity Human in [Group];
// What effects act on.
entity Program;
entity Host;
entity Ref;
entity Secret;
entity Target;
// A governed tool of MCP or code mode (`Tool::"write_file"`).
entity Tool;

type Time = {
    "unix": Long,
    "hour": Long,
    "weekday": Long,
};
type Quota = {
    "used": Long,
};

// Every typed action is in this group: `action in Action::"action"` covers them all.
action "action";
"#;

/// Build the schema text for a remit whose typed actions take `declared` arguments.
pub fn schema_text(declared: &BTreeMap<String, Vec<String>>) -> String {
    let mut out = String::from(BASE);
    let _ = writeln!(
        out,
        r#"action "exec" appliesTo {{ principal: [Task], resource: [Program], context: {{ {COMMON_CONTEXT}, "command": {{ "program": String, "line": String, "prefixes": Set<String>, "granting": Set<String>, "cwd": String }} }} }};"#
    );
    let _ = writeln!(
        out,
        r#"action "http_request" appliesTo {{ principal: [Task], resource: [Host], context: {{ {COMMON_CONTEXT}, "request": {{ "host": String, "port": Long, "method": String, "path": String }} }} }};"#
    );
    let _ = writeln!(
        out,
        r#"action "git_push" appliesTo {{ principal: [Task], resource: [Ref], context: {{ {COMMON_CONTEXT}, "push": {{ "remote": String, "ref": String, "old": String, "new": String, "force": Bool, "new_branch": Bool }} }} }};"#
    );
    let _ = writeln!(
        out,
        r#"action "secret_use" appliesTo {{ principal: [Task], resource: [Secret], context: {{ {COMMON_CONTEXT}, "use": {{ "name": String, "destination": String }} }} }};"#
    );
    let tool_args: Vec<String> = TOOL_ARGS
        .iter()
        .map(|a| format!("\"{a}\"?: String"))
        .collect();
    let _ = writeln!(
        out,
        r#"action "tool_call" appliesTo {{ principal: [Task], resource: [Tool], context: {{ {COMMON_CONTEXT}, "call": {{ "via": String, "tool": String, "script": String, "args": {{ {} }} }} }} }};"#,
        tool_args.join(", ")
    );
    let mut kinds: BTreeMap<&str, &[String]> =
        STANDARD_ACTIONS.iter().map(|k| (*k, &[][..])).collect();
    for (kind, args) in declared {
        kinds.insert(kind.as_str(), args.as_slice());
    }
    for (kind, args) in kinds {
        let fields: Vec<String> = args.iter().map(|a| format!("\"{a}\": String")).collect();
        let _ = writeln!(
            out,
            r#"action "{kind}" in ["action"] appliesTo {{ principal: [Task], resource: [Target], context: {{ {COMMON_CONTEXT}, "args": {{ {} }} }} }};"#,
            fields.join(", ")
        );
    }
    out
}
