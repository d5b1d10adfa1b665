//! CartService's fencing as OrderService reads it: the headers of a record, and the one rule
//! (`order_events::fencing::Fence`) applied to it.
//!
//! Why a module: several CartService instances write `order-events`, each owning some
//! partitions, and a former owner (a zombie) may still write after a newer claim; which of its
//! records count is decided by `order_events::fencing`, in offset order per partition. The
//! apply loop ([`crate::consumer`]) and the topic scan ([`crate::topic_scan`]) both read the
//! headers and apply the rule through this module, so they cannot disagree.

use order_events::fencing::{classify, BadHeader, Marked, CLAIM_HEADER, WRITTEN_UNDER_HEADER};
use order_events::Fence;
use rdkafka::message::Headers;

/// Classifies a record by its fencing headers ([`CLAIM_HEADER`], [`WRITTEN_UNDER_HEADER`]).
/// If a header appears more than once, the last one counts (as Java's `lastHeader`); a header
/// without a value reads as empty, which is not an offset ([`BadHeader`]).
pub(crate) fn marked<H: Headers>(headers: Option<&H>) -> Result<Marked, BadHeader> {
    let mut claim = None;
    let mut under = None;
    if let Some(headers) = headers {
        for header in headers.iter() {
            let value = header.value.unwrap_or_default();
            if header.key == CLAIM_HEADER {
                claim = Some(value);
            } else if header.key == WRITTEN_UNDER_HEADER {
                under = Some(value);
            }
        }
    }
    classify(claim, under)
}

/// What the fence of its partition says about one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A claim record: `took_effect` if it superseded the claim in effect (a claim that lost
    /// the race changes nothing). Never an order.
    Claim { took_effect: bool },
    /// An order record that counts.
    Counts,
    /// An order record written under claim `under`, which is not the one in effect
    /// (`in_effect`): a zombie's late write, ignored by every reader.
    Fenced {
        under: Option<i64>,
        in_effect: Option<i64>,
    },
}

/// Applies the record at `offset` to its partition's `fence` (in offset order) and says what
/// it is. The same rule as [`Fence::apply`]; a claim also says whether it took effect.
pub(crate) fn judge(fence: &mut Fence, offset: i64, marked: Marked) -> Verdict {
    match marked {
        Marked::Claim { supersedes } => Verdict::Claim {
            took_effect: fence.claim(offset, supersedes),
        },
        Marked::Order { under } => {
            if fence.apply(offset, marked) {
                Verdict::Counts
            } else {
                Verdict::Fenced {
                    under,
                    in_effect: fence.current(),
                }
            }
        }
    }
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

    #[test]
    fn a_zombies_record_is_fenced_and_a_losing_claim_changes_nothing() {
        let mut fence = Fence::default();
        let claim = |supersedes| Marked::Claim { supersedes };
        let order = |under| Marked::Order { under };
        assert_eq!(
            judge(&mut fence, 0, claim(None)),
            Verdict::Claim { took_effect: true }
        );
        assert_eq!(judge(&mut fence, 1, order(Some(0))), Verdict::Counts);
        assert_eq!(
            judge(&mut fence, 2, claim(Some(0))),
            Verdict::Claim { took_effect: true }
        );
        assert_eq!(
            judge(&mut fence, 3, order(Some(0))),
            Verdict::Fenced {
                under: Some(0),
                in_effect: Some(2)
            }
        );
        assert_eq!(judge(&mut fence, 4, order(Some(2))), Verdict::Counts);
        assert_eq!(
            judge(&mut fence, 5, claim(None)),
            Verdict::Claim { took_effect: false }
        );
        assert_eq!(
            judge(&mut fence, 6, order(Some(5))),
            Verdict::Fenced {
                under: Some(5),
                in_effect: Some(2)
            }
        );
        assert_eq!(judge(&mut fence, 7, order(None)), Verdict::Counts);
        assert_eq!(fence.current(), Some(2));
    }
}
