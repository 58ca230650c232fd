//! Export: JSON lines re-hash to the signed root; OCSF classes per event kind.

use remit_ledger::export::{Format, export, ocsf};
use remit_ledger::merkle::MemoryTree;
use remit_ledger::{Query, SignedCheckpoint};

use crate::common::{Backend, Env, both_stores, fill};

both_stores! {
    jsonl_export_rehashes_to_the_signed_root => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        fill(&ledger);
        let cp: SignedCheckpoint = ledger.close().unwrap().unwrap();
        let mut reader = env.reader();
        let mut out = Vec::new();
        assert_eq!(export(&mut reader, &Query::default(), Format::Jsonl, &mut out).unwrap(), 42);
        let mut tree = MemoryTree::new();
        for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            tree.push_data(line);
        }
        assert_eq!(tree.root(), cp.checkpoint.root);
    };

    ocsf_export_maps_classes => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        fill(&ledger);
        ledger.close().unwrap();
        let mut reader = env.reader();
        let mut out = Vec::new();
        let query = Query { task: Some("t-1".into()), ..Query::default() };
        assert_eq!(export(&mut reader, &query, Format::Ocsf, &mut out).unwrap(), 14);
        let lines: Vec<serde_json::Value> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let class = |i: usize| lines[i]["class_uid"].as_u64().unwrap();
        assert_eq!(class(1), 1007, "exec → Process Activity");
        assert_eq!(lines[2]["action_id"], 2, "denied exec");
        assert_eq!(class(3), 4002, "http decision → HTTP Activity");
        assert_eq!(lines[3]["activity_id"], 3, "GET");
        assert_eq!(lines[3]["http_request"]["url"]["hostname"], "api.github.com");
        assert_eq!(class(4), 3002, "credential → Authentication");
        assert_eq!(class(7), 6003, "git push decision → API Activity");
        assert_eq!(class(8), 6003, "approval → API Activity");
        assert_eq!(class(10), 2004, "violation → Detection Finding");
        for line in &lines {
            let uid = line["class_uid"].as_u64().unwrap();
            let activity = line["activity_id"].as_u64().unwrap();
            assert_eq!(line["type_uid"].as_u64().unwrap(), uid * 100 + activity);
            assert_eq!(line["metadata"]["version"], "1.3.0");
            assert!(line["time"].as_u64().unwrap() > 1_767_225_600_000);
            assert!(line["unmapped"]["remit"]["seq"].is_u64());
        }
        let _ = ocsf;
    };

    filters_select_events => |backend: Backend| {
        let env = Env::new(backend);
        let ledger = env.open();
        fill(&ledger);
        ledger.close().unwrap();
        let mut reader = env.reader();
        let t30 = reader.event(30).unwrap().event.time;
        let mut count = |q: Query| {
            let mut n = 0;
            reader.scan(&q, &mut |_| { n += 1; Ok(true) }).unwrap();
            n
        };
        assert_eq!(count(Query::default()), 42);
        assert_eq!(count(Query { kinds: vec!["exec".into(), "task_end".into()], ..Query::default() }), 9);
        assert_eq!(count(Query { agent: Some("nobody".into()), ..Query::default() }), 0);
        assert_eq!(count(Query { since: Some(t30.clone()), ..Query::default() }), 12);
        assert_eq!(count(Query { from_seq: 40, ..Query::default() }), 2);
        assert_eq!(count(Query { limit: Some(5), ..Query::default() }), 5);
        // A limit past what the store can count is no limit, not an error.
        assert_eq!(count(Query { limit: Some(u64::MAX), ..Query::default() }), 42);
    };
}
