//! Fencing in the log: which of CartService's records count, decided by each partition itself.
//!
//! Why it exists: CartService runs as several instances, each the single writer of the
//! partitions it owns. Ownership moves (a rebalance, a crash, a process paused longer than its
//! session), and an owner that does not know it lost a partition (a *zombie*) may still write
//! to it. Kafka's answer is a transactional producer per partition, fenced by the broker; the
//! embedded broker refuses transactions (bench/NOTES §0), so the fence is written into the log,
//! where every reader sees it in the same order:
//!
//! * A new owner of a partition appends a **claim**: a record with no key and no value, and the
//!   header [`CLAIM_HEADER`] naming the claim it supersedes (its offset, or `none`). A claim
//!   takes effect only if it supersedes the claim in effect where it lands, so of two
//!   instances racing for a partition exactly one wins (compare-and-set, in log order).
//! * Every order record CartService writes carries [`WRITTEN_UNDER_HEADER`]: the offset of
//!   the claim its writer holds. It counts only while that claim is the one in effect, so a
//!   zombie's record landing after a newer claim is ignored by every reader, as an aborted
//!   transaction would be.
//! * A record without the header was not written under this protocol (an older CartService,
//!   a tool): it counts, as it always did.
//!
//! [`Fence`] is the rule, one per partition, applied in offset order by every reader of the
//! topic (CartService's order index, OrderService's view); readers store it with their offsets.
//! A writer acknowledges a record only once it has seen, in log order, that the record counts.
//! Java consumers with Confluent's deserializer read a claim as a null value and skip it.

use std::collections::HashMap;
use std::fmt;

/// On a claim record: the offset of the claim it supersedes, or `none`.
pub const CLAIM_HEADER: &str = "cart-claim";
/// On a claim record: the URL of the claimant (for people reading the log; readers ignore it).
pub const CLAIMANT_HEADER: &str = "cart-claimant";
/// On an order record: the offset of the claim its writer held.
pub const WRITTEN_UNDER_HEADER: &str = "cart-claim-offset";

/// The value of [`CLAIM_HEADER`] for a claim of a partition nobody claimed before.
const NONE: &str = "none";

/// What a record is, as far as fencing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marked {
    /// A claim of the partition, superseding the claim at that offset (or none).
    Claim { supersedes: Option<i64> },
    /// An order record, written under the claim at that offset (or outside the protocol).
    Order { under: Option<i64> },
}

/// A fencing header that does not parse: the record is unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadHeader {
    header: &'static str,
    value: String,
}

impl fmt::Display for BadHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "header {} is '{}', not an offset",
            self.header, self.value
        )
    }
}

impl std::error::Error for BadHeader {}

fn offset(header: &'static str, value: &[u8]) -> Result<i64, BadHeader> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .filter(|offset| *offset >= 0)
        .ok_or_else(|| BadHeader {
            header,
            value: String::from_utf8_lossy(&value[..value.len().min(64)]).into_owned(),
        })
}

/// Classifies a record by the values of its [`CLAIM_HEADER`] and [`WRITTEN_UNDER_HEADER`].
pub fn classify(claim: Option<&[u8]>, under: Option<&[u8]>) -> Result<Marked, BadHeader> {
    match (claim, under) {
        (Some(value), _) if value == NONE.as_bytes() => Ok(Marked::Claim { supersedes: None }),
        (Some(value), _) => Ok(Marked::Claim {
            supersedes: Some(offset(CLAIM_HEADER, value)?),
        }),
        (None, Some(value)) => Ok(Marked::Order {
            under: Some(offset(WRITTEN_UNDER_HEADER, value)?),
        }),
        (None, None) => Ok(Marked::Order { under: None }),
    }
}

/// Classifies a record by its headers (name, value), as a Kafka client lists them. A header
/// that appears more than once counts by its last value (as Java's `lastHeader`); a header
/// without a value reads as empty, which is not an offset.
pub fn classify_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> Result<Marked, BadHeader> {
    let mut claim = None;
    let mut under = None;
    for (name, value) in headers {
        let value = value.unwrap_or_default();
        if name == CLAIM_HEADER {
            claim = Some(value);
        } else if name == WRITTEN_UNDER_HEADER {
            under = Some(value);
        }
    }
    classify(claim, under)
}

/// What the fence of its partition says about one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A claim: `took_effect` if it superseded the claim in effect (a claim that lost the race
    /// changes nothing). Never an order.
    Claim { took_effect: bool },
    /// An order record that counts.
    Counts,
    /// An order record written under `under`, which is not the claim in effect (`in_effect`):
    /// a former owner's late write, which no reader counts.
    Fenced {
        under: Option<i64>,
        in_effect: Option<i64>,
    },
}

/// The value of [`CLAIM_HEADER`] for a claim superseding `current`.
pub fn claim_header(current: Option<i64>) -> String {
    current.map_or_else(|| NONE.to_string(), |offset| offset.to_string())
}

/// The fence of one partition: the claim in effect, as of the records read so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fence {
    current: Option<i64>,
}

impl Fence {
    /// The fence as stored with a reader's offsets.
    pub fn new(current: Option<i64>) -> Fence {
        Fence { current }
    }

    /// The offset of the claim in effect (`None` before any).
    pub fn current(&self) -> Option<i64> {
        self.current
    }

    /// A claim at `offset` superseding `supersedes`: it takes effect (and `true` is returned)
    /// if it supersedes the claim in effect. A reader that has seen no claim (a new topic, or
    /// one whose older records were deleted) accepts the first.
    pub fn claim(&mut self, offset: i64, supersedes: Option<i64>) -> bool {
        if self.current.is_none() || self.current == supersedes {
            self.current = Some(offset);
            true
        } else {
            false
        }
    }

    /// Whether an order record written under the claim at `under` counts. A reader that has
    /// seen no claim yet (its start was deleted by retention) takes the first writer's as the
    /// one in effect.
    pub fn admits(&mut self, under: Option<i64>) -> bool {
        match under {
            None => true,
            Some(claim) => *self.current.get_or_insert(claim) == claim,
        }
    }

    /// Applies the record at `offset` (records in log order) and says what it is.
    pub fn judge(&mut self, offset: i64, marked: Marked) -> Verdict {
        match marked {
            Marked::Claim { supersedes } => Verdict::Claim {
                took_effect: self.claim(offset, supersedes),
            },
            Marked::Order { under } if self.admits(under) => Verdict::Counts,
            Marked::Order { under } => Verdict::Fenced {
                under,
                in_effect: self.current,
            },
        }
    }

    /// Applies a record in log order: whether it is an order record that counts.
    pub fn apply(&mut self, offset: i64, marked: Marked) -> bool {
        self.judge(offset, marked) == Verdict::Counts
    }
}

/// The fences of every partition of a topic read from its beginning: for readers that keep no
/// state of their own (a scan, a test reading the topic back).
#[derive(Debug, Clone, Default)]
pub struct Fences(HashMap<i32, Fence>);

impl Fences {
    /// Whether the record at `offset` of `partition` (records of a partition in offset order)
    /// is an order record that counts, by its headers ([`classify_headers`]). A claim, a
    /// fenced record and one with a bad header do not.
    pub fn counts<'a>(
        &mut self,
        partition: i32,
        offset: i64,
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> bool {
        classify_headers(headers)
            .is_ok_and(|marked| self.0.entry(partition).or_default().apply(offset, marked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_two_claims_racing_for_a_partition_the_first_in_the_log_wins() {
        let mut fence = Fence::default();
        assert!(fence.claim(10, None));
        assert!(!fence.claim(11, None), "read the same end: loses");
        assert_eq!(fence.current(), Some(10));
        assert!(fence.claim(20, Some(10)));
        assert!(!fence.claim(21, Some(10)));
        assert_eq!(fence.current(), Some(20));
    }

    #[test]
    fn a_record_counts_only_under_the_claim_in_effect() {
        let mut fence = Fence::default();
        assert!(fence.admits(None), "written outside the protocol");
        fence.claim(5, None);
        assert!(fence.admits(Some(5)));
        fence.claim(9, Some(5));
        assert!(!fence.admits(Some(5)), "a zombie's late record");
        assert!(fence.admits(Some(9)));
        assert!(fence.admits(None));
    }

    #[test]
    fn a_reader_that_missed_the_claims_adopts_the_first_writer() {
        let mut fence = Fence::default();
        assert!(fence.admits(Some(3)));
        assert!(!fence.admits(Some(1)));
        assert!(fence.claim(8, Some(3)));
        assert!(!fence.admits(Some(3)));
    }

    #[test]
    fn headers_classify_records() {
        assert_eq!(
            classify(Some(b"none"), None),
            Ok(Marked::Claim { supersedes: None })
        );
        assert_eq!(
            classify(Some(b"42"), None),
            Ok(Marked::Claim {
                supersedes: Some(42)
            })
        );
        assert_eq!(
            classify(None, Some(b"7")),
            Ok(Marked::Order { under: Some(7) })
        );
        assert_eq!(classify(None, None), Ok(Marked::Order { under: None }));
        assert!(classify(Some(b"-1"), None).is_err());
        assert!(classify(None, Some(b"x")).is_err());
        assert_eq!(claim_header(None), "none");
        assert_eq!(claim_header(Some(4)), "4");
        let mut fence = Fence::default();
        assert!(!fence.apply(0, Marked::Claim { supersedes: None }));
        assert!(fence.apply(1, Marked::Order { under: Some(0) }));
    }

    #[test]
    fn fences_of_a_topic_are_kept_per_partition() {
        let claim = |value: &'static [u8]| [(CLAIM_HEADER, Some(value))];
        let under = |value: &'static [u8]| [(WRITTEN_UNDER_HEADER, Some(value))];
        let mut fences = Fences::default();
        assert!(!fences.counts(0, 0, claim(b"none")));
        assert!(!fences.counts(1, 0, claim(b"none")));
        assert!(!fences.counts(0, 1, claim(b"0")));
        assert!(!fences.counts(0, 2, under(b"0")), "fenced in partition 0");
        assert!(fences.counts(1, 1, under(b"0")), "not in partition 1");
        assert!(fences.counts(0, 3, under(b"1")));
        assert!(!fences.counts(0, 4, under(b"x")));
        assert!(fences.counts(0, 5, []), "outside the protocol");
    }

    #[test]
    fn headers_are_read_as_a_client_lists_them() {
        let read = |pairs: &[(&'static str, Option<&'static [u8]>)]| {
            classify_headers(pairs.iter().copied())
        };
        assert_eq!(read(&[]), Ok(Marked::Order { under: None }));
        assert_eq!(
            read(&[("trace-id", Some(b"t-1"))]),
            Ok(Marked::Order { under: None })
        );
        assert_eq!(
            read(&[
                (CLAIM_HEADER, Some(b"none")),
                (CLAIMANT_HEADER, Some(b"http://a"))
            ]),
            Ok(Marked::Claim { supersedes: None })
        );
        assert_eq!(
            read(&[
                (WRITTEN_UNDER_HEADER, Some(b"x")),
                (WRITTEN_UNDER_HEADER, Some(b"8"))
            ]),
            Ok(Marked::Order { under: Some(8) }),
            "the last of a repeated header counts"
        );
        assert!(read(&[(WRITTEN_UNDER_HEADER, None)]).is_err());
        assert!(read(&[(CLAIM_HEADER, None)]).is_err());
        assert!(read(&[(CLAIM_HEADER, Some(b"-3"))]).is_err());
    }

    #[test]
    fn a_verdict_says_why_a_record_does_not_count() {
        let mut fence = Fence::default();
        let claim = |supersedes| Marked::Claim { supersedes };
        let order = |under| Marked::Order { under };
        assert_eq!(
            fence.judge(0, claim(None)),
            Verdict::Claim { took_effect: true }
        );
        assert_eq!(fence.judge(1, order(Some(0))), Verdict::Counts);
        assert_eq!(
            fence.judge(2, claim(Some(0))),
            Verdict::Claim { took_effect: true }
        );
        assert_eq!(
            fence.judge(3, order(Some(0))),
            Verdict::Fenced {
                under: Some(0),
                in_effect: Some(2)
            }
        );
        assert_eq!(
            fence.judge(4, claim(None)),
            Verdict::Claim { took_effect: false }
        );
        assert_eq!(
            fence.judge(5, order(Some(4))),
            Verdict::Fenced {
                under: Some(4),
                in_effect: Some(2)
            }
        );
        assert_eq!(fence.judge(6, order(None)), Verdict::Counts);
    }
}
