//! How long loading a remit's policy takes (it is on the cold path of `remit run`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
fn main() {
    for text in [
        "",
        "[commands]\nforbid = [\"curl\", \"git push\"]\n[actions.publish]\nargs=[\"tag\"]\napprove = true\n",
    ] {
        let t = std::time::Instant::now();
        let loaded = remit_types::remit::parse(text, "x", ".".into()).unwrap();
        let t1 = t.elapsed();
        let e = remit_policy::engine::Engine::load(&loaded).unwrap();
        let t2 = t.elapsed();
        let p = remit_policy::engine::Principal {
            task: "t".into(),
            agent: "a".into(),
            owner: String::new(),
            requester: String::new(),
            remit: String::new(),
            risk: String::new(),
        };
        let d = e.decide(
            &p,
            &remit_types::effect::Effect::Exec {
                argv: vec!["ls".into()],
                cwd: "/".into(),
            },
            &Default::default(),
        );
        let t3 = t.elapsed();
        println!(
            "parse {t1:?} load {:?} first decide {:?} {}",
            t2 - t1,
            t3 - t2,
            d.label()
        );
    }
}
