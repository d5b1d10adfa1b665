//! CartService: validated orders, published as Avro records keyed by `orderId`.
//!
//! A skeleton until its own issue: it only answers `/health` and `/ready` so the launcher can
//! start the whole stack.
