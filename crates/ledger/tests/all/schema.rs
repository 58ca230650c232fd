//! The event schema: canonical JSON, strict parsing, the hand-assembled envelope.

use proptest::prelude::*;
use remit_ledger::canonical::{assemble, body_json, decode, event_json};
use remit_types::event::*;

use crate::common::task_events;

fn event_of(body: EventBody, seq: u64, task: &str, agent: &str, time: &str) -> Event {
    Event {
        schema: SCHEMA_VERSION,
        seq,
        time: time.into(),
        task: task.into(),
        agent: agent.into(),
        body,
    }
}

#[test]
fn canonical_json_sorts_keys_and_round_trips() {
    for (i, new) in task_events("t-\u{e9}\"1", "ci-fixer")
        .into_iter()
        .enumerate()
    {
        let event = event_of(
            new.body,
            i as u64,
            &new.task,
            &new.agent,
            "2026-01-01T00:00:00.000000Z",
        );
        let bytes = event_json(&event).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.starts_with("{\"agent\":\"ci-fixer\",\"body\":{"),
            "{text}"
        );
        assert!(!text.contains('\n') && !text.contains(": "), "{text}");
        assert_eq!(decode(&bytes).unwrap(), event);
        // Canonical: re-canonicalising the parsed JSON gives the same bytes.
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(serde_json_canonicalizer::to_vec(&value).unwrap(), bytes);
    }
}

#[test]
fn unknown_fields_and_kinds_are_refused() {
    let good = br#"{"agent":"a","body":{"effect_id":"e1","kind":"approval_expired"},"schema":1,"seq":0,"task":"t","time":"x"}"#;
    assert!(decode(good).is_ok());
    for bad in [
        &br#"{"agent":"a","body":{"effect_id":"e1","kind":"approval_expired","smuggled":1},"schema":1,"seq":0,"task":"t","time":"x"}"#[..],
        br#"{"agent":"a","body":{"effect_id":"e1","kind":"approval_expired"},"extra":1,"schema":1,"seq":0,"task":"t","time":"x"}"#,
        br#"{"agent":"a","body":{"kind":"teleport"},"schema":1,"seq":0,"task":"t","time":"x"}"#,
        br#"{"agent":"a","body":{"effect_id":"e1","kind":"approval_expired"},"schema":1,"seq":-1,"task":"t","time":"x"}"#,
    ] {
        assert!(decode(bad).is_err(), "accepted {}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn every_kind_is_listed() {
    let kinds: Vec<&str> = task_events("t", "a")
        .iter()
        .map(|e| e.body.kind())
        .collect();
    for kind in kinds {
        assert!(EventBody::KINDS.contains(&kind));
    }
}

proptest! {
    #[test]
    fn assembled_envelope_is_the_canonical_event(
        task in "\\PC{0,12}",
        agent in "[ -~]{0,12}",
        argv in proptest::collection::vec("\\PC{0,8}", 0..4),
        seq in 0u64..(1 << 53),
        pid in any::<u32>(),
    ) {
        let body: EventBody = Exec {
            argv,
            cwd: "/w\u{1}\u{7f}\u{2028}".into(),
            pid,
            ppid: 1,
            decision: Verdict::NeedsApproval,
            rule: None,
        }
        .into();
        let time = "2026-01-01T00:00:00.000001Z";
        let mut out = Vec::new();
        assemble(&mut out, SCHEMA_VERSION, seq, time, &task, &agent, &body_json(&body).unwrap()).unwrap();
        let event = event_of(body, seq, &task, &agent, time);
        prop_assert_eq!(&out, &event_json(&event).unwrap());
        prop_assert_eq!(decode(&out).unwrap(), event);
    }
}

#[test]
fn body_json_is_the_reference_canonicalisation() {
    for new in task_events("t-\u{e9}\"1", "ci-fixer") {
        assert_eq!(
            body_json(&new.body).unwrap(),
            serde_json_canonicalizer::to_vec(&new.body).unwrap()
        );
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        (-(1i64 << 54)..(1i64 << 54)).prop_map(Value::from),
        "\\PC{0,6}|[\\x00-\\x1f\"\\\\/\u{7f}\u{2028}\u{e000}\u{1f600}]{0,4}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                "[a-c\u{e9}\u{ff61}\u{1f600}\u{10000}_]{0,3}",
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn value_json_matches_the_reference(value in json_value()) {
        let mut out = Vec::new();
        remit_ledger::canonical::value_json(&mut out, &value).unwrap();
        prop_assert_eq!(out, serde_json_canonicalizer::to_vec(&value).unwrap());
    }

    #[test]
    fn body_json_matches_the_reference(
        attrs in proptest::collection::btree_map("\\PC{0,4}", "\\PC{0,4}", 0..5),
        target in "\\PC{0,10}",
    ) {
        let body: EventBody = Decision {
            effect: EffectRef {
                id: "e1".into(),
                kind: "http.request".into(),
                target,
                attributes: attrs,
            },
            decision: Verdict::Allow,
            policy: None,
            reason: "\u{1}ok".into(),
        }
        .into();
        prop_assert_eq!(body_json(&body).unwrap(), serde_json_canonicalizer::to_vec(&body).unwrap());
    }
}
