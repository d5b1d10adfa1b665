//! OrderService: consumes `order-events` into a durable, queryable view.
//!
//! A skeleton until its own issue: it only answers `/health` and `/ready` so the launcher can
//! start the whole stack.
