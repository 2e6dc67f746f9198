//! What the browser's requests cost in session-store calls, counted by a `SessionStore`
//! wrapper around a `MemoryStore`: an exchange is at most two calls (`take_ticket`, which
//! also reads the session, and one `compare_and_swap`); a long-poll makes one store read
//! before it waits (one `wait_for_change`, no `load`), and none after it wakes.
//!
//! The browser's service runs over the counting wrapper; the phone's requests go through a
//! second service over the same `MemoryStore`, so that the counts are the browser's alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use qrauth_core::provider::builtin::{
    BuiltinProvider, PhoneAuthenticator, PhoneUser, SigningAlgorithm,
};
use qrauth_core::store::{MemoryStore, RateLimiter, SessionRecord, SessionStore};
use qrauth_core::{BindingSecret, Error, QrAuthService, QrCodeId, QrState, SecretHash};
use qrauth_test_support::service_client::Client;
use tokio::time::Instant;

struct TestPhones;

#[async_trait]
impl PhoneAuthenticator for TestPhones {
    async fn authenticate(&self, authorization: &str) -> qrauth_core::Result<PhoneUser> {
        match authorization {
            "Bearer alice" => Ok(PhoneUser::new("alice").nickname("Alice")),
            _ => Err(Error::Unauthenticated),
        }
    }
}

/// Calls per `SessionStore` method.
#[derive(Default)]
struct Calls {
    insert: AtomicUsize,
    load: AtomicUsize,
    compare_and_swap: AtomicUsize,
    put_ticket: AtomicUsize,
    take_ticket: AtomicUsize,
    wait_for_change: AtomicUsize,
}

/// A snapshot of [`Calls`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    insert: usize,
    load: usize,
    compare_and_swap: usize,
    put_ticket: usize,
    take_ticket: usize,
    wait_for_change: usize,
}

impl Counts {
    fn total(&self) -> usize {
        self.insert
            + self.load
            + self.compare_and_swap
            + self.put_ticket
            + self.take_ticket
            + self.wait_for_change
    }
}

impl Calls {
    fn counts(&self) -> Counts {
        let get = |c: &AtomicUsize| c.load(Ordering::SeqCst);
        Counts {
            insert: get(&self.insert),
            load: get(&self.load),
            compare_and_swap: get(&self.compare_and_swap),
            put_ticket: get(&self.put_ticket),
            take_ticket: get(&self.take_ticket),
            wait_for_change: get(&self.wait_for_change),
        }
    }

    fn reset(&self) {
        for c in [
            &self.insert,
            &self.load,
            &self.compare_and_swap,
            &self.put_ticket,
            &self.take_ticket,
            &self.wait_for_change,
        ] {
            c.store(0, Ordering::SeqCst);
        }
    }
}

fn count(c: &AtomicUsize) {
    c.fetch_add(1, Ordering::SeqCst);
}

/// A `MemoryStore` that counts the calls made to it.
struct Counting {
    inner: MemoryStore,
    calls: Arc<Calls>,
}

#[async_trait]
impl SessionStore for Counting {
    async fn insert(
        &self,
        record: &SessionRecord,
        retain_until_ms: u64,
    ) -> qrauth_core::Result<()> {
        count(&self.calls.insert);
        self.inner.insert(record, retain_until_ms).await
    }

    async fn load(&self, id: &QrCodeId) -> qrauth_core::Result<Option<SessionRecord>> {
        count(&self.calls.load);
        self.inner.load(id).await
    }

    async fn compare_and_swap(
        &self,
        expected_version: u64,
        record: &SessionRecord,
    ) -> qrauth_core::Result<bool> {
        count(&self.calls.compare_and_swap);
        self.inner.compare_and_swap(expected_version, record).await
    }

    async fn put_ticket(
        &self,
        ticket: &SecretHash,
        id: &QrCodeId,
        expire_at_ms: u64,
    ) -> qrauth_core::Result<()> {
        count(&self.calls.put_ticket);
        self.inner.put_ticket(ticket, id, expire_at_ms).await
    }

    async fn take_ticket(&self, ticket: &SecretHash) -> qrauth_core::Result<Option<SessionRecord>> {
        count(&self.calls.take_ticket);
        self.inner.take_ticket(ticket).await
    }

    async fn wait_for_change(
        &self,
        id: &QrCodeId,
        binding: &SecretHash,
        since_version: Option<u64>,
        deadline: Instant,
    ) -> qrauth_core::Result<Option<SessionRecord>> {
        count(&self.calls.wait_for_change);
        self.inner
            .wait_for_change(id, binding, since_version, deadline)
            .await
    }

    fn live_waiters(&self) -> usize {
        self.inner.live_waiters()
    }

    fn rate_limiter(&self) -> Arc<dyn RateLimiter> {
        self.inner.rate_limiter()
    }

    // Signed-in sessions are not counted here: an exchange adds one `create` of its own.
    fn signed_in(&self) -> Arc<dyn qrauth_core::store::SignedInStore> {
        self.inner.signed_in()
    }
}

/// The browser's service (over the counting wrapper), the phone's (over the same sessions),
/// the calls the browser's service made, and the shared store.
struct Setup {
    browser: Client,
    phone: Client,
    calls: Arc<Calls>,
    store: MemoryStore,
}

fn setup() -> Setup {
    let provider = Arc::new(
        BuiltinProvider::builder(Arc::new(TestPhones))
            .algorithm(SigningAlgorithm::Es256)
            .build()
            .expect("provider"),
    );
    let store = MemoryStore::new();
    let calls = Arc::new(Calls::default());
    let counting = Counting {
        inner: store.clone(),
        calls: calls.clone(),
    };
    // Two replicas of one deployment: they share the server key (of bindings and scan tokens).
    let key = qrauth_core::BindingKey::generate().expect("key");
    let browser = QrAuthService::builder(provider.clone())
        .store(counting)
        .binding_key(key.clone())
        .build()
        .expect("browser service");
    let phone = QrAuthService::builder(provider)
        .store(store.clone())
        .binding_key(key)
        .build()
        .expect("phone service");
    Setup {
        browser: Client::new(browser),
        phone: Client::new(phone),
        calls,
        store,
    }
}

/// Polls `condition` every millisecond until it holds or `within` passes.
async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    condition()
}

#[tokio::test]
async fn an_exchange_costs_at_most_two_store_calls() {
    let s = setup();
    let binding = BindingSecret::generate().unwrap();
    let id = s.browser.generate(&binding).await.unwrap().id;
    let scan = s.phone.scan(&id, "Bearer alice").await.unwrap();
    s.phone
        .confirm(&id, &scan.confirm_token, "Bearer alice")
        .await
        .unwrap();
    let ticket = s
        .browser
        .poll(&id, &binding)
        .await
        .unwrap()
        .ticket
        .expect("the bound browser sees the ticket");

    s.calls.reset();
    let tokens = s.browser.exchange(&ticket, &binding).await.unwrap();
    assert!(!tokens.id_token.is_empty());
    let counts = s.calls.counts();
    assert!(counts.total() <= 2, "an exchange made {counts:?}");
    assert_eq!(counts.take_ticket, 1, "{counts:?}");
    assert_eq!(counts.compare_and_swap, 1, "{counts:?}");
    assert_eq!(
        counts.load, 0,
        "take_ticket already read the session: {counts:?}"
    );
    let stored = s.store.load(&id).await.unwrap().expect("the session");
    assert_eq!(stored.state, QrState::Consumed);

    // A replayed ticket is one call: the take that finds nothing.
    s.calls.reset();
    assert!(matches!(
        s.browser.exchange(&ticket, &binding).await,
        Err(Error::InvalidTicket)
    ));
    let counts = s.calls.counts();
    assert_eq!(counts.total(), 1, "{counts:?}");
    assert_eq!(counts.take_ticket, 1, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_reads_the_store_once_before_waiting_and_not_again_when_woken() {
    let s = setup();
    let binding = BindingSecret::generate().unwrap();
    let id = s.browser.generate(&binding).await.unwrap().id;
    let since = s.browser.poll(&id, &binding).await.unwrap().version;

    s.calls.reset();
    let waiter = {
        let (browser, id, binding) = (s.browser.clone(), id.clone(), binding.clone());
        tokio::spawn(async move {
            browser
                .wait_for_change(&id, &binding, since, Duration::from_secs(5))
                .await
        })
    };
    assert!(
        eventually(Duration::from_secs(5), || s.store.live_waiters() == 1).await,
        "the long-poll waits"
    );
    let waiting = s.calls.counts();
    assert_eq!(waiting.wait_for_change, 1, "{waiting:?}");
    assert_eq!(
        waiting.load, 0,
        "no load besides the wait's own read: {waiting:?}"
    );
    assert!(waiting.total() <= 1, "before waiting: {waiting:?}");

    // A long-poll answered within 250 ms of its start counts as a poll (issue 16); this one
    // is answered by a change after a real wait, as a phone user's scan would be.
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.phone.scan(&id, "Bearer alice").await.unwrap();
    let status = waiter.await.unwrap().unwrap();
    assert_eq!(status.state, QrState::Scanned);
    assert!(status.version > since);
    let woken = s.calls.counts();
    assert_eq!(
        woken, waiting,
        "the woken long-poll answered from the wait's record"
    );
}

#[tokio::test]
async fn a_long_poll_that_times_out_makes_one_store_call() {
    let s = setup();
    let binding = BindingSecret::generate().unwrap();
    let id = s.browser.generate(&binding).await.unwrap().id;
    let since = s.browser.poll(&id, &binding).await.unwrap().version;

    s.calls.reset();
    let status = s
        .browser
        .wait_for_change(&id, &binding, since, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(status.version, since);
    let counts = s.calls.counts();
    assert_eq!(counts.total(), 1, "{counts:?}");
    assert_eq!(counts.wait_for_change, 1, "{counts:?}");

    // A foreign browser's long-poll is answered from the same one call, without waiting.
    s.calls.reset();
    let stranger = BindingSecret::generate().unwrap();
    let started = Instant::now();
    assert!(matches!(
        s.browser
            .wait_for_change(&id, &stranger, since, Duration::from_secs(5))
            .await,
        Err(Error::NotBound)
    ));
    assert!(started.elapsed() < Duration::from_secs(1));
    let counts = s.calls.counts();
    assert_eq!(counts.total(), 1, "{counts:?}");
    assert_eq!(counts.wait_for_change, 1, "{counts:?}");
}
