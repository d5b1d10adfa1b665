//! The contract's integration tests, one binary (modules share `common`; fixtures stay in
//! `tests/fixtures`): Avro round trips, money properties, the wire format, schema evolution, and
//! the codec against our real registry (plain and over HTTPS with basic auth).

#![allow(clippy::unwrap_used)] // Tests fail by panicking.

mod common;

mod avro_roundtrip;
mod money_properties;
mod registry;
mod registry_security;
mod schema_evolution;
mod wire_format;
