//! With the real ledger as the recorder: lease events are durable, and no value reaches it.

use std::sync::Arc;
use std::time::Duration;

use remit_ledger::{FixedClock, Ledger, LedgerKey, LedgerReader, Location, Options, Query};
use remit_vault::{Broker, RevokeReason};

use crate::common::{Home, all_bytes, contains, remit, task};

#[test]
fn leases_are_in_the_ledger_and_their_values_are_not() {
    let home = Home::new();
    home.vault
        .set(
            "anthropic-key",
            b"sk-ant-api03-LEDGERtest0123456789",
            "alice",
        )
        .unwrap();
    let location = Location::Sqlite(home.path().join("ledger.db"));
    let ledger = Ledger::open(
        location.clone(),
        LedgerKey::from_seed("remit.local/ledger/test", [3; 32]).unwrap(),
        Arc::new(FixedClock::epoch_2026()),
        Options::default(),
    )
    .unwrap();
    let ledger = Arc::new(ledger);
    let broker = Broker::new(home.vault.clone(), ledger.clone());
    let creds = broker
        .issue_for_task(
            &task("T1"),
            &remit(
                "[network]\nallow = [\"api.anthropic.com\"]\n\
                 [[network.credential]]\nname = \"anthropic\"\nfrom = { vault = \"anthropic-key\" }\n\
                 inject = { hosts = [\"api.anthropic.com\"], header = \"x-api-key\" }\n\
                 [credentials.git.w]\nrepository = \"https://git.internal/a/b\"\n",
            ),
            Duration::from_secs(600),
        )
        .unwrap();
    let token = creds.env[0].1.expose().to_vec();
    broker.revoke_task("T1", &RevokeReason::Killed).unwrap();
    ledger.close().unwrap();

    let mut events = Vec::new();
    LedgerReader::open(&location)
        .unwrap()
        .scan(&Query::default(), &mut |row| {
            events.push(serde_json::from_slice::<serde_json::Value>(&row.bytes).unwrap());
            Ok(true)
        })
        .unwrap();
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["body"]["kind"].as_str().unwrap(),
                e["body"]["name"].as_str().unwrap(),
                e["body"]["destination"]
                    .as_str()
                    .or(e["body"]["reason"].as_str())
                    .unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "credential_issued anthropic api.anthropic.com",
            "credential_issued w https://git.internal/a/b",
            "credential_revoked anthropic killed",
            "credential_revoked w killed",
        ]
    );
    assert_eq!(events[0]["task"], "T1");
    assert_eq!(events[0]["agent"], "ci-fixer");
    for (path, bytes) in all_bytes(home.path()) {
        for value in [b"sk-ant-api03-LEDGERtest0123456789".as_slice(), &token] {
            assert!(!contains(&bytes, value), "`{path}` holds a value");
        }
    }
}
