//! Evaluation cost of a feature flag (release build): `cargo run --release --example flags_bench`.
//!
//! Times three things over 1,000,000 distinct user ids, 10 rounds, and prints nanoseconds per evaluation:
//!   - a 30% rollout (one murmur3 hash and a compare);
//!   - the same behind two targeting rules (an allow list and a platform/semver rule) that do not match;
//!   - `Flags::is_enabled` through the snapshot (ArcSwap load + map lookup + evaluation), as handlers call it.

use std::hint::black_box;
use std::time::Instant;

use serde_json::json;
use wxshop::flags::engine::{Context, Flag};
use wxshop::flags::Flags;

fn time(name: &str, ids: &[String], mut evaluate: impl FnMut(&str) -> bool) {
    let rounds = 10;
    let started = Instant::now();
    let mut on = 0usize;
    for _ in 0..rounds {
        for id in ids {
            on += usize::from(evaluate(black_box(id)));
        }
    }
    let per = started.elapsed().as_nanos() as f64 / (rounds * ids.len()) as f64;
    println!("{name}: {per:.1} ns per evaluation ({:.1}% on)", on as f64 * 100.0 / (rounds * ids.len()) as f64);
}

fn main() {
    let ids: Vec<String> = (0..1_000_000).map(|i| (i * 7919 + 13).to_string()).collect();
    let rollout: Flag =
        serde_json::from_value(json!({"key": "orders.list_v2", "enabled": true, "rollout_percent": 30})).unwrap();
    let targeted: Flag = serde_json::from_value(json!({
        "key": "checkout.new_flow", "enabled": true, "rollout_percent": 30,
        "rules": [
            {"id": "staff", "constraints": [{"attribute": "user_id", "operator": "in", "values": ["1", "2", "3", "4", "5"]}]},
            {"id": "new-ios", "constraints": [
                {"attribute": "platform", "operator": "in", "values": ["ios"]},
                {"attribute": "app_version", "operator": "semver_gt", "values": ["3.2.0"]}]},
        ],
    }))
    .unwrap();
    let properties = [("platform", "android")];
    time("rollout 30%", &ids, |id| rollout.evaluate(&Context { user_id: Some(id), ..Default::default() }).enabled);
    time("two rules, then rollout 30%", &ids, |id| {
        targeted.evaluate(&Context { user_id: Some(id), properties: &properties, ..Default::default() }).enabled
    });
    let flags = Flags::new(10_000, None);
    flags.install(1, vec![rollout.clone(), targeted.clone()]);
    time("Flags::is_enabled (snapshot lookup + rollout 30%)", &ids, |id| {
        flags.is_enabled("orders.list_v2", &Context { user_id: Some(id), ..Default::default() })
    });
}
