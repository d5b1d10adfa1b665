//! CartService's fencing as OrderService reads it: the headers of a record, and the one rule
//! (`order_events::fencing::Fence`) applied to it.
//!
//! Why a module: several CartService instances write `order-events`, each owning some
//! partitions, and a former owner (a zombie) may still write after a newer claim; which of its
//! records count is decided by `order_events::fencing`, in offset order per partition. The
//! apply loop ([`crate::consumer`]) and the topic scan ([`crate::topic_scan`]) both read the
//! headers and apply the rule through this module, so they cannot disagree.

use order_events::fencing::{classify_headers, BadHeader, Marked};
use rdkafka::message::Headers;

/// Classifies a record by its fencing headers (`order_events::fencing::classify_headers`).
pub(crate) fn marked<H: Headers>(headers: Option<&H>) -> Result<Marked, BadHeader> {
    classify_headers(
        headers
            .into_iter()
            .flat_map(|headers| headers.iter().map(|h| (h.key, h.value))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders};

    fn headers(pairs: &[(&str, Option<&str>)]) -> OwnedHeaders {
        pairs.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header { key, value: *value })
        })
    }

    #[test]
    fn headers_mark_claims_orders_and_unreadable_records() {
        assert_eq!(
            marked::<OwnedHeaders>(None),
            Ok(Marked::Order { under: None })
        );
        assert_eq!(
            marked(Some(&headers(&[("trace-id", Some("t-1"))]))),
            Ok(Marked::Order { under: None })
        );
        assert_eq!(
            marked(Some(&headers(&[
                ("cart-claim", Some("none")),
                ("cart-claimant", Some("http://a"))
            ]))),
            Ok(Marked::Claim { supersedes: None })
        );
        assert_eq!(
            marked(Some(&headers(&[("cart-claim", Some("12"))]))),
            Ok(Marked::Claim {
                supersedes: Some(12)
            })
        );
        assert_eq!(
            marked(Some(&headers(&[("cart-claim-offset", Some("7"))]))),
            Ok(Marked::Order { under: Some(7) })
        );
        // The last of a repeated header counts.
        assert_eq!(
            marked(Some(&headers(&[
                ("cart-claim-offset", Some("x")),
                ("cart-claim-offset", Some("8"))
            ]))),
            Ok(Marked::Order { under: Some(8) })
        );
        assert!(marked(Some(&headers(&[("cart-claim-offset", Some("x"))]))).is_err());
        assert!(marked(Some(&headers(&[("cart-claim-offset", None)]))).is_err());
        assert!(marked(Some(&headers(&[("cart-claim", None)]))).is_err());
        assert!(marked(Some(&headers(&[("cart-claim", Some("-3"))]))).is_err());
    }
}
