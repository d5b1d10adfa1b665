//! OrderService's integration tests, one binary (one link instead of five; modules share
//! `common`): each starts a real broker and our registry, and OrderService in-process.

#![allow(clippy::unwrap_used)] // Tests fail by panicking.

mod common;

mod crash_recovery;
mod dead_letters;
mod fencing;
mod liveness;
mod topic_scan;
mod view;
