//! The registry's integration tests, one binary (modules share `common`; the Python checks stay
//! in `tests/confluent`): the REST API, hostile input, restart and replay, interop with
//! `schema_registry_converter` and Confluent's Python client, and security (HTTPS, basic auth).

mod common;

mod api;
mod confluent_python;
mod hostile;
mod interop;
mod restart;
mod security;
