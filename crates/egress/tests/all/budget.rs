//! Byte budgets per destination and per task.

use std::sync::Arc;

use crate::support::*;

#[test]
fn budgets_cut_and_refuse() {
    let rt = runtime();
    let big: Handler = Arc::new(|_| (200, vec![], vec![b'x'; 40 * 1024]));
    let a = rt.block_on(origin("127.0.0.1:0", None, big.clone()));
    let b = rt.block_on(origin("127.0.0.1:0", None, big));
    let remit = format!(
        "[network]\nallow = [\"a.test:{}\", \"b.test:{}\"]\nprivate = [\"127.0.0.1\"]\n[network.budget]\nper_host = \"64KiB\"\ntotal = \"100KiB\"\n",
        a.port(),
        b.port()
    );
    let mut setup = Setup::new(&remit);
    setup.resolver = TableResolver::with(&[("a.test", "127.0.0.1"), ("b.test", "127.0.0.1")]);
    let proxy = rt.block_on(setup.start());
    let url_a = format!("http://a.test:{}/", a.port());
    let url_b = format!("http://b.test:{}/", b.port());
    let (status, _, body) = proxy.curl(&[&url_a]);
    assert_eq!((status, body.len()), (200, 40 * 1024));
    // The second transfer crosses the host's budget and is cut short.
    let (_, _, body) = proxy.curl(&[&url_a]);
    assert!(body.len() < 40 * 1024, "{}", body.len());
    // Then the host is refused, with the reason.
    let (status, headers, _) = proxy.curl(&[&url_a]);
    assert_eq!(status, 403);
    assert!(headers.contains("network.budget.per_host"), "{headers}");
    // Another host still has room in the task's budget, until that runs out too.
    let (status, _, _) = proxy.curl(&[&url_b]);
    assert_eq!(status, 200);
    let (status, headers, _) = proxy.curl(&[&url_b]);
    assert!(status == 403 || status == 200, "{status}");
    let (status, headers2, _) = proxy.curl(&[&url_b]);
    assert_eq!(status, 403, "{headers}{headers2}");
    assert!(headers2.contains("network.budget.total"), "{headers2}");
    assert!(
        violations(&proxy.gate)
            .iter()
            .any(|v| v.kind == remit_egress::ViolationKind::Budget)
    );
    assert!(proxy.egress.bytes_used() >= 100 * 1024);
}
