//! Arbitrary text as a schema, through the registry library's public API as a registration
//! runs it: `parse_schema` under the size and nesting limits the HTTP API applies, then
//! `compat::check` at every level against the real order-event schema (both ways) and against
//! itself.
//!
//! Properties: no panic, no unbounded time or memory (libFuzzer's -timeout and -rss_limit_mb);
//! a schema the registry accepts reads its own data (compatible with itself at every level);
//! its stored text parses again to the same canonical form (what every instance replaying
//! `_schemas` relies on).

#![no_main]

use std::sync::LazyLock;

use apache_avro::Schema;
use libfuzzer_sys::fuzz_target;
use schema_registry::api::MAX_NESTING_DEPTH;
use schema_registry::compat::{check, CompatibilityLevel};
use schema_registry::model::{nesting_depth, parse_schema};

/// The registry's default `max_schema_bytes` (`SCHEMA_REGISTRY_MAX_SCHEMA_BYTES`).
const MAX_SCHEMA_BYTES: usize = 256 * 1024;

static ORDER_EVENT: LazyLock<Schema> = LazyLock::new(|| {
    Schema::parse_str(include_str!("../../schemas/order-event.avsc"))
        .expect("the contract schema parses")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() > MAX_SCHEMA_BYTES {
        return;
    }
    let Ok(candidate) = parse_schema(text, &[], &[]) else {
        return;
    };
    if nesting_depth(&candidate.parsed) > MAX_NESTING_DEPTH {
        return;
    }
    let candidate_schema: &Schema = &candidate.parsed;
    let ours: &Schema = &ORDER_EVENT;

    for level in CompatibilityLevel::ALL {
        check(level, candidate_schema, &[(1, ours)]);
        check(level, ours, &[(1, candidate_schema)]);
        let with_itself = check(
            level,
            candidate_schema,
            &[(1, candidate_schema), (2, candidate_schema)],
        );
        assert!(
            with_itself.is_empty(),
            "{text:?} is not {level} compatible with itself: {with_itself:?}"
        );
    }

    let replayed = parse_schema(&candidate.text, &[], &[]).expect("the stored text parses again");
    assert_eq!(replayed.canonical, candidate.canonical, "{text:?}");
});
