//! Behaviour of `TokenCache` under concurrency and expiry. moka measures time with the real
//! monotonic clock, so these tests use short real sleeps (each test well under 2 s).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use qrauth_core::Error;
use qrauth_core::token_cache::{Fetched, TokenCache, into_owned_error};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A fetch that counts its calls, sleeps `delay`, and returns `token-<n>` valid for `ttl`.
async fn counting_fetch(
    calls: Arc<AtomicUsize>,
    delay: Duration,
    ttl: Duration,
) -> Result<Fetched<String>, Error> {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(delay).await;
    Ok(Fetched::new(format!("token-{n}"), ttl))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_callers_on_an_empty_cache_share_one_fetch() {
    let cache: TokenCache<&'static str, String> = TokenCache::builder().build();
    let calls = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(tokio::sync::Barrier::new(100));

    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let cache = cache.clone();
            let calls = Arc::clone(&calls);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                cache
                    .get_or_fetch("app", || {
                        counting_fetch(calls, ms(100), Duration::from_secs(7200))
                    })
                    .await
            })
        })
        .collect();

    for task in tasks {
        let token = task.await.expect("task panicked").expect("fetch failed");
        assert_eq!(token, "token-1");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "exactly one fetch");

    // And later callers are served from the cache.
    let again = cache
        .get_or_fetch("app", || {
            counting_fetch(Arc::clone(&calls), ms(0), Duration::from_secs(7200))
        })
        .await
        .map_err(into_owned_error)
        .expect("cached");
    assert_eq!(again, "token-1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn different_keys_are_fetched_separately() {
    let cache: TokenCache<String, String> = TokenCache::builder().build();
    let calls = Arc::new(AtomicUsize::new(0));
    for key in ["a", "b", "a", "b"] {
        cache
            .get_or_fetch(key.to_owned(), || {
                counting_fetch(Arc::clone(&calls), ms(0), Duration::from_secs(60))
            })
            .await
            .map_err(into_owned_error)
            .expect("fetch");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_expiring_credential_is_refreshed_before_its_real_expiry() {
    // Valid 200 ms, margin 50 ms: served until ~150 ms, refreshed after that, i.e. while the
    // credential is still valid. Probes are placed so that scheduling delays on a busy machine
    // can only weaken a check, never make it fail spuriously.
    let cache: TokenCache<&'static str, String> =
        TokenCache::builder().refresh_margin(ms(50)).build();
    let calls = Arc::new(AtomicUsize::new(0));
    let ttl = ms(200);

    let fetched_at = Instant::now();
    let first = cache
        .get_or_fetch("app", || counting_fetch(Arc::clone(&calls), ms(0), ttl))
        .await
        .map_err(into_owned_error)
        .expect("first fetch");
    assert_eq!(first, "token-1");
    let refresh_point = fetched_at + ttl - ms(50);
    let real_expiry = fetched_at + ttl;

    // Inside the fresh window: served from the cache, no fetch.
    tokio::time::sleep_until((fetched_at + ms(100)).into()).await;
    let cached = cache.get(&"app").await;
    if Instant::now() < refresh_point {
        assert_eq!(cached.as_deref(), Some("token-1"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Between the refresh point and the real expiry: no longer served.
    tokio::time::sleep_until((fetched_at + ms(175)).into()).await;
    let probe_started = Instant::now();
    assert_eq!(
        cache.get(&"app").await,
        None,
        "still served after the refresh point"
    );
    assert!(probe_started >= refresh_point);
    let probe_ended = Instant::now();
    if probe_ended >= real_expiry {
        eprintln!("machine too busy: the early-refresh probe ended after the real expiry");
    }

    // The next call refreshes.
    let refreshed = cache
        .get_or_fetch("app", || counting_fetch(Arc::clone(&calls), ms(0), ttl))
        .await
        .map_err(into_owned_error)
        .expect("refresh");
    assert_eq!(refreshed, "token-2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn every_value_served_still_has_the_margin_to_live() {
    // Call continuously for 600 ms with credentials valid 200 ms: each value returned must be
    // younger than its real expiry minus (roughly) the margin.
    let cache: TokenCache<&'static str, (String, Instant)> =
        TokenCache::builder().refresh_margin(ms(50)).build();
    let calls = Arc::new(AtomicUsize::new(0));
    let ttl = ms(200);
    let begin = Instant::now();
    while begin.elapsed() < ms(600) {
        let calls = Arc::clone(&calls);
        let probe_started = Instant::now();
        let (_, expires_at) = cache
            .get_or_fetch("app", || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(Fetched::new(("t".to_owned(), Instant::now() + ttl), ttl))
            })
            .await
            .map_err(into_owned_error)
            .expect("fetch");
        // The cache checked freshness after `probe_started`, so this is a lower bound of what
        // was left when the value was handed out.
        let left = expires_at.saturating_duration_since(probe_started);
        assert!(
            left >= ms(45),
            "served a credential with only {left:?} left"
        );
        tokio::time::sleep(ms(10)).await;
    }
    let n = calls.load(Ordering::SeqCst);
    assert!(
        (3..=6).contains(&n),
        "{n} fetches in 600 ms with 150 ms freshness"
    );
}

#[tokio::test]
async fn the_margin_never_exceeds_half_the_lifetime() {
    // Default margin 60 s, credential valid 200 ms: cached for ~100 ms, not zero.
    let cache: TokenCache<&'static str, String> = TokenCache::new();
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        cache
            .get_or_fetch("app", || counting_fetch(Arc::clone(&calls), ms(0), ms(200)))
            .await
            .map_err(into_owned_error)
            .expect("fetch");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "cached despite margin > lifetime"
    );
    tokio::time::sleep(ms(130)).await;
    assert_eq!(
        cache.get(&"app").await,
        None,
        "dropped after half the lifetime"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_fetch_reaches_every_waiter_and_the_next_call_retries() {
    let cache: TokenCache<&'static str, String> = TokenCache::builder().build();
    let calls = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(tokio::sync::Barrier::new(20));

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let cache = cache.clone();
            let calls = Arc::clone(&calls);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                cache
                    .get_or_fetch("app", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(ms(200)).await;
                        Err::<Fetched<String>, _>(Error::Upstream("IdP answered 503".to_owned()))
                    })
                    .await
            })
        })
        .collect();

    for task in tasks {
        let err = task
            .await
            .expect("task panicked")
            .expect_err("the failure must reach every waiter");
        assert!(matches!(*err, Error::Upstream(ref m) if m == "IdP answered 503"));
        let owned = into_owned_error(err);
        assert_eq!(owned.code(), "upstream_unavailable");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one shared failing fetch");

    // Not poisoned: nothing cached, the next call fetches again and succeeds.
    assert_eq!(cache.get(&"app").await, None);
    let token = cache
        .get_or_fetch("app", || {
            counting_fetch(Arc::clone(&calls), ms(0), Duration::from_secs(60))
        })
        .await
        .map_err(into_owned_error)
        .expect("retry succeeds");
    assert_eq!(token, "token-2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn invalidate_forces_a_refetch() {
    let cache: TokenCache<&'static str, String> = TokenCache::builder().build();
    let calls = Arc::new(AtomicUsize::new(0));
    let fetch = |calls: &Arc<AtomicUsize>| {
        counting_fetch(Arc::clone(calls), ms(0), Duration::from_secs(60))
    };
    let first = cache
        .get_or_fetch("app", || fetch(&calls))
        .await
        .map_err(into_owned_error);
    assert_eq!(first.expect("fetch"), "token-1");
    cache.invalidate(&"app").await;
    assert_eq!(cache.get(&"app").await, None);
    let second = cache
        .get_or_fetch("app", || fetch(&calls))
        .await
        .map_err(into_owned_error);
    assert_eq!(second.expect("fetch"), "token-2");

    cache.invalidate_all();
    let third = cache
        .get_or_fetch("app", || fetch(&calls))
        .await
        .map_err(into_owned_error);
    assert_eq!(third.expect("fetch"), "token-3");
}

#[tokio::test]
async fn a_credential_with_no_lifetime_is_returned_but_not_reused() {
    let cache: TokenCache<&'static str, String> = TokenCache::builder().build();
    let calls = Arc::new(AtomicUsize::new(0));
    for n in 1..=2 {
        let token = cache
            .get_or_fetch("app", || {
                counting_fetch(Arc::clone(&calls), ms(0), Duration::ZERO)
            })
            .await
            .map_err(into_owned_error)
            .expect("fetch");
        assert_eq!(token, format!("token-{n}"));
    }
}
