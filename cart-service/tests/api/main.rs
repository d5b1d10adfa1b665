//! CartService's integration tests, one binary (one link instead of two; the modules share
//! `common`): each starts a real broker and our registry, and CartService in-process.

#![allow(clippy::unwrap_used)] // Tests fail by panicking.

mod common;

mod fencing;
mod orders;
mod resilience;
mod state;
