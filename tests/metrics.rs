//! The `metrics` feature: each metric moves when it should, under a recording `metrics`
//! recorder (installed once for this binary; each test uses its own `cache` label).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use tower_bearer::{Backoff, Error, Token, TokenCache, source::from_fn};

/// Every series ever registered, by name and labels: counters and gauges as atomics (a gauge
/// holds its `f64` bits), histograms as the values recorded.
#[derive(Default)]
struct Recording {
    counters: Mutex<HashMap<Key, Arc<AtomicU64>>>,
    gauges: Mutex<HashMap<Key, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<Key, Arc<Values>>>,
}

#[derive(Default)]
struct Values(Mutex<Vec<f64>>);

impl HistogramFn for Values {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

impl Recorder for &'static Recording {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut map = self.counters.lock().unwrap();
        Counter::from_arc(map.entry(key.clone()).or_default().clone())
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut map = self.gauges.lock().unwrap();
        Gauge::from_arc(map.entry(key.clone()).or_default().clone())
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut map = self.histograms.lock().unwrap();
        Histogram::from_arc(map.entry(key.clone()).or_default().clone())
    }
}

fn recording() -> &'static Recording {
    static RECORDING: OnceLock<&'static Recording> = OnceLock::new();
    RECORDING.get_or_init(|| {
        let recording: &'static Recording = Box::leak(Box::default());
        metrics::set_global_recorder(recording).unwrap();
        recording
    })
}

/// Whether `key` is metric `name` of cache `cache` with at least `labels`.
fn matches(key: &Key, cache: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    let has = |k: &str, v: &str| key.labels().any(|l| l.key() == k && l.value() == v);
    key.name() == name && has("cache", cache) && labels.iter().all(|(k, v)| has(k, v))
}

/// The sum of the counters `name` of `cache` that have `labels`.
fn counter(cache: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    let map = recording().counters.lock().unwrap();
    map.iter()
        .filter(|(key, _)| matches(key, cache, name, labels))
        .map(|(_, n)| n.load(Ordering::SeqCst))
        .sum()
}

fn gauge(cache: &str, name: &str) -> f64 {
    let map = recording().gauges.lock().unwrap();
    let (_, bits) = map
        .iter()
        .find(|(key, _)| matches(key, cache, name, &[]))
        .unwrap_or_else(|| panic!("no gauge {name} for {cache}"));
    f64::from_bits(bits.load(Ordering::SeqCst))
}

fn histogram_len(cache: &str, name: &str, labels: &[(&str, &str)]) -> usize {
    let map = recording().histograms.lock().unwrap();
    map.iter()
        .filter(|(key, _)| matches(key, cache, name, labels))
        .map(|(_, values)| values.0.lock().unwrap().len())
        .sum()
}

#[tokio::test(start_paused = true)]
async fn every_metric_moves_when_it_should() {
    recording();
    let cache_name = "lifecycle";
    let calls = Arc::new(AtomicU32::new(0));
    let source = {
        let calls = calls.clone();
        from_fn(move || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Err(Error::transient("the token endpoint is down")),
                    _ => Ok(Token::new(format!("t{n}")).with_expires_in(Duration::from_secs(100))),
                }
            }
        })
    };
    let cache = TokenCache::builder(source)
        .metrics_label(cache_name)
        .jitter(Duration::ZERO)
        .backoff(Backoff::new(Duration::from_secs(1), Duration::from_secs(1)))
        .build();

    // A failed refresh that a caller waited for.
    assert!(cache.token().await.is_err());
    let refreshes = "tower_bearer_refreshes_total";
    let failed = [
        ("outcome", "transient"),
        ("reason", "no_token"),
        ("tier", "none"),
    ];
    assert_eq!(counter(cache_name, refreshes, &failed), 1);
    assert_eq!(counter(cache_name, "tower_bearer_waits_total", &[]), 1);
    assert_eq!(
        histogram_len(
            cache_name,
            "tower_bearer_refresh_duration_seconds",
            &[("outcome", "transient")]
        ),
        1
    );
    assert_eq!(
        gauge(cache_name, "tower_bearer_token_expires_in_seconds"),
        0.0
    );

    // After the backoff, a successful one.
    tokio::time::advance(Duration::from_secs(2)).await;
    let first = cache.token().await.unwrap();
    let ok = [("outcome", "ok"), ("tier", "source")];
    assert_eq!(counter(cache_name, refreshes, &ok), 1);
    assert_eq!(counter(cache_name, "tower_bearer_waits_total", &[]), 2);
    assert_eq!(
        histogram_len(
            cache_name,
            "tower_bearer_refresh_duration_seconds",
            &[("outcome", "ok")]
        ),
        1
    );
    let left = gauge(cache_name, "tower_bearer_token_expires_in_seconds");
    assert!((99.0..=100.0).contains(&left), "{left}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let at = gauge(cache_name, "tower_bearer_token_expiry_timestamp_seconds");
    assert!((at - now - 100.0).abs() < 5.0, "{at} vs {now}");
    // A fresh token on the fast path records nothing more.
    for _ in 0..10 {
        cache.token().await.unwrap();
    }
    assert_eq!(counter(cache_name, refreshes, &[]), 2);
    assert_eq!(counter(cache_name, "tower_bearer_waits_total", &[]), 2);
    assert_eq!(
        counter(cache_name, "tower_bearer_served_stale_total", &[]),
        0
    );

    // Inside the refresh window (60 s before expiry): served stale while one refresh runs.
    tokio::time::advance(Duration::from_secs(50)).await;
    assert_eq!(cache.token().await.unwrap().secret(), first.secret());
    assert_eq!(
        counter(cache_name, "tower_bearer_served_stale_total", &[]),
        1
    );
    let left = gauge(cache_name, "tower_bearer_token_expires_in_seconds");
    assert!((48.0..=50.0).contains(&left), "{left}");
    tokio::task::yield_now().await;
    let stale = [("outcome", "ok"), ("reason", "stale")];
    for _ in 0..100 {
        if counter(cache_name, refreshes, &stale) == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(counter(cache_name, refreshes, &stale), 1);

    // A 401: the token is dropped (and a refresh starts at once).
    let seen = cache.token().await.unwrap();
    assert!(cache.invalidate(&seen));
    assert_eq!(
        counter(cache_name, "tower_bearer_invalidations_total", &[]),
        1
    );
    assert!(!cache.invalidate(&seen));
    assert_eq!(
        counter(cache_name, "tower_bearer_invalidations_total", &[]),
        1
    );
    cache.token().await.unwrap();
    assert_eq!(
        counter(
            cache_name,
            refreshes,
            &[("reason", "invalidated"), ("outcome", "ok")]
        ),
        1
    );
}

#[tokio::test]
async fn a_token_without_expiry_reads_infinity_and_caches_are_told_apart() {
    recording();
    let a = TokenCache::builder(tower_bearer::source::static_token("forever"))
        .metrics_label("forever-a")
        .build();
    let b = TokenCache::builder(tower_bearer::source::static_token("forever"))
        .metrics_label("forever-b")
        .build();
    a.token().await.unwrap();
    assert_eq!(
        gauge("forever-a", "tower_bearer_token_expires_in_seconds"),
        f64::INFINITY
    );
    assert_eq!(counter("forever-a", "tower_bearer_refreshes_total", &[]), 1);
    assert_eq!(counter("forever-b", "tower_bearer_refreshes_total", &[]), 0);
    b.token().await.unwrap();
    assert_eq!(counter("forever-b", "tower_bearer_refreshes_total", &[]), 1);
}
