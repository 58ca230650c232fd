//! Where policy loading time goes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::str::FromStr;
fn main() {
    let text = remit_policy::schema::schema_text(&Default::default());
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let (schema, _) = cedar_policy::Schema::from_cedarschema_str(&text).unwrap();
        let t1 = t.elapsed();
        let (frag, _) = cedar_policy::SchemaFragment::from_cedarschema_str(&text).unwrap();
        let json = frag.to_json_string().unwrap();
        let t2 = t.elapsed();
        let p = cedar_policy::PolicySet::from_str(
            "permit(principal, action == Action::\"exec\", resource);",
        )
        .unwrap();
        let t3 = t.elapsed();
        let v = cedar_policy::Validator::new(schema.clone())
            .validate(&p, cedar_policy::ValidationMode::Strict);
        let t4 = t.elapsed();
        let t5 = std::time::Instant::now();
        let _s2 = cedar_policy::Schema::from_json_str(&json).unwrap();
        let t6 = t5.elapsed();
        println!(
            "schema {t1:?} frag+json {:?} policy {:?} validate {:?} ok={} | from_json {t6:?}",
            t2 - t1,
            t3 - t2,
            t4 - t3,
            v.validation_passed()
        );
    }
}
