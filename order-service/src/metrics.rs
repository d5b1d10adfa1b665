//! The consumer's Prometheus metrics, registered next to service-kit's HTTP metrics.
//!
//! Why a module: the apply loop, the dead-letter path and the lag probe all report here, and
//! `/metrics` renders one registry. Label sets are bounded: `kind` is one of the fixed
//! dead-letter kinds, `partition` one of the topic's partitions, `outcome` of a claim one of
//! `took_effect`, `lost`.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};
use service_kit::metrics::{Metrics, LATENCY_BUCKETS};

/// Handles to the consumer's metrics (cheap to clone).
#[derive(Clone)]
pub struct ConsumerMetrics {
    /// Records applied to the view by this process (stale versions included).
    pub applied: IntCounter,
    /// Records that were older than the view's version and changed nothing.
    pub stale: IntCounter,
    /// Records sent to the dead-letter topic, by kind.
    pub dead_lettered: IntCounterVec,
    /// Order records skipped because the claim they were written under is not the one in
    /// effect in their partition (`order_events::fencing`: a zombie CartService's late writes).
    pub fenced: IntCounter,
    /// CartService's claim records read, by outcome (`took_effect`, `lost`).
    pub claims: IntCounterVec,
    /// Transient failures retried, by cause (`registry`, `dlq`, `store`).
    pub retries: IntCounterVec,
    /// Records between the stored offset and the high watermark, per partition.
    pub lag: IntGaugeVec,
    /// Time to apply one batch (decode, dead-letter, SQLite transaction).
    pub batch_seconds: Histogram,
    /// The persisted `applied_total` counter of the view (all processes, ever).
    pub applied_total: IntGauge,
    /// 1 while the consumer runs and makes progress; 0 before it is assigned, once it has
    /// ended (panic, unpublishable dead letter, stream end) or while it is stalled.
    pub consumer_up: IntGauge,
}

/// Handles to the topic scan's metrics.
#[derive(Clone)]
pub struct TopicScanMetrics {
    /// Scans whose consumer is running now (on blocking threads).
    pub active: IntGauge,
    /// Scan requests refused, by reason (`not_allowed`, `busy`).
    pub rejected: IntCounterVec,
    /// Scans stopped because their client went away.
    pub cancelled: IntCounter,
}

impl TopicScanMetrics {
    /// Creates the metrics and registers them with the service's registry.
    pub fn register(metrics: &Metrics) -> anyhow::Result<TopicScanMetrics> {
        let m = TopicScanMetrics {
            active: IntGauge::new(
                "order_topic_scans_active",
                "getAllOrderIdsFromTopic scans whose consumer is running",
            )?,
            rejected: IntCounterVec::new(
                Opts::new(
                    "order_topic_scans_rejected_total",
                    "getAllOrderIdsFromTopic requests refused, by reason",
                ),
                &["reason"],
            )?,
            cancelled: IntCounter::new(
                "order_topic_scans_cancelled_total",
                "getAllOrderIdsFromTopic scans stopped because the client went away",
            )?,
        };
        let registry = metrics.registry();
        registry.register(Box::new(m.active.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        registry.register(Box::new(m.cancelled.clone()))?;
        Ok(m)
    }
}

impl ConsumerMetrics {
    /// Creates the metrics and registers them with the service's registry.
    pub fn register(metrics: &Metrics) -> anyhow::Result<ConsumerMetrics> {
        let m = ConsumerMetrics {
            applied: IntCounter::new(
                "order_events_applied_total",
                "Order events applied to the view by this process",
            )?,
            stale: IntCounter::new(
                "order_events_stale_total",
                "Order events older than the version already in the view (ignored)",
            )?,
            dead_lettered: IntCounterVec::new(
                Opts::new(
                    "order_events_dead_lettered_total",
                    "Records sent to the dead-letter topic, by error kind",
                ),
                &["kind"],
            )?,
            fenced: IntCounter::new(
                "order_fenced_records_total",
                "Order records skipped by this process because their CartService writer had lost \
                 the partition (written under a claim no longer in effect: a zombie's late write)",
            )?,
            claims: IntCounterVec::new(
                Opts::new(
                    "order_claims_total",
                    "CartService partition claims read by this process, by outcome: took_effect \
                     (the partition changed owner) or lost (superseded a claim no longer in \
                     effect; changes nothing)",
                ),
                &["outcome"],
            )?,
            retries: IntCounterVec::new(
                Opts::new(
                    "order_events_retries_total",
                    "Transient failures retried with backoff, by cause",
                ),
                &["cause"],
            )?,
            lag: IntGaugeVec::new(
                Opts::new(
                    "order_events_consumer_lag",
                    "Records not yet applied, per partition (high watermark - stored offset)",
                ),
                &["partition"],
            )?,
            batch_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "order_events_apply_batch_seconds",
                    "Time to decode, dead-letter and commit one batch",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
            applied_total: IntGauge::new(
                "order_view_applied_records",
                "The view's persisted applied_total counter",
            )?,
            consumer_up: IntGauge::new(
                "consumer_up",
                "1 while the order-events consumer runs and makes progress, else 0",
            )?,
        };
        let registry = metrics.registry();
        registry.register(Box::new(m.consumer_up.clone()))?;
        registry.register(Box::new(m.applied.clone()))?;
        registry.register(Box::new(m.stale.clone()))?;
        registry.register(Box::new(m.dead_lettered.clone()))?;
        registry.register(Box::new(m.fenced.clone()))?;
        registry.register(Box::new(m.claims.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.lag.clone()))?;
        registry.register(Box::new(m.batch_seconds.clone()))?;
        registry.register(Box::new(m.applied_total.clone()))?;
        Ok(m)
    }
}
