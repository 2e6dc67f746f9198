//! The QR login flow end to end through the public API: a `QrAuthService` over a
//! `MemoryStore` with the built-in provider, driven through its HTTP handlers
//! (`QrAuthService::handle`) by an in-process browser and phone (`support/service_client.rs`).
//!
//! Each test names the rule it proves; the numbers refer to §7 of
//! `reference/qr-login-security.md`.

use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, REFERRER_POLICY, SET_COOKIE};
use http::{HeaderValue, Method, StatusCode};
use qrauth_core::provider::builtin::{BuiltinProvider, SigningAlgorithm};
use qrauth_core::store::{MemoryStore, SessionStore};
use qrauth_core::{
    ApiRequest, BindingSecret, ConfirmToken, Error, Lifetimes, Limits, ManualClock, QrAuthProvider,
    QrAuthService, QrAuthServiceBuilder, QrCodeId, QrState, Route, Ticket, TokenSet,
};
use qrauth_test_support::phone::TestPhones;
use qrauth_test_support::service_client::{
    Client, Qr, ScanOutcome, Status, binding_cookie, body_json, json_text_request,
};
use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio::time::Instant;

const ISSUER: &str = "https://login.example.com/auth";
const AUDIENCE: &str = "example-web";
const PHONE_URL: &str = "https://login.example.com/m/confirm";
const ALICE: &str = "Bearer alice";

// ---------------------------------------------------------------------------------------------
// Fixtures

fn service_builder(
    provider: &Arc<BuiltinProvider>,
    store: &MemoryStore,
    lifetimes: Lifetimes,
    clock: Option<&ManualClock>,
) -> QrAuthServiceBuilder {
    let builder = QrAuthService::builder(provider.clone())
        .store(store.clone())
        .lifetimes(lifetimes);
    match clock {
        Some(clock) => builder.clock(Arc::new(clock.clone())),
        None => builder,
    }
}

/// The built-in provider and a service over a `MemoryStore` the test can inspect. The flow
/// helpers go through a service without abuse limits (the flow itself has none); `service()`
/// is one with the default limits over the same store, for the tests of the HTTP answers.
struct Harness {
    provider: Arc<BuiltinProvider>,
    store: MemoryStore,
    lifetimes: Lifetimes,
    clock: Option<ManualClock>,
    client: Client,
}

impl Harness {
    /// ES256 (fast key generation), system clock, default lifetimes.
    fn new() -> Self {
        Self::build(Lifetimes::default(), None)
    }

    /// ES256 with `lifetimes` and, when given, a manual clock shared by store and service.
    fn build(lifetimes: Lifetimes, clock: Option<&ManualClock>) -> Self {
        Self::configure(lifetimes, clock, false)
    }

    fn configure(lifetimes: Lifetimes, clock: Option<&ManualClock>, number_matching: bool) -> Self {
        let mut store = MemoryStore::builder();
        let mut provider = BuiltinProvider::builder(Arc::new(TestPhones))
            .algorithm(SigningAlgorithm::Es256)
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .phone_url(PHONE_URL)
            .app_name("Example");
        if let Some(clock) = clock {
            store = store.clock(Arc::new(clock.clone()));
            provider = provider.clock(Arc::new(clock.clone()));
        }
        let provider = Arc::new(provider.build().expect("provider"));
        let store = store.build();
        let service = service_builder(&provider, &store, lifetimes, clock)
            .limits(Limits::unlimited())
            .number_matching(number_matching)
            .build()
            .expect("service");
        Self {
            provider,
            store,
            lifetimes,
            clock: clock.cloned(),
            client: Client::new(service),
        }
    }

    /// A service builder over this harness's provider, store, lifetimes and clock.
    fn builder(&self) -> QrAuthServiceBuilder {
        service_builder(
            &self.provider,
            &self.store,
            self.lifetimes,
            self.clock.as_ref(),
        )
    }

    /// The service with its default limits, over the same store.
    fn service(&self) -> QrAuthService {
        self.builder().build().expect("service")
    }

    async fn generate(&self, binding: &BindingSecret) -> Qr {
        self.client.generate(binding).await.expect("generate")
    }

    async fn poll(&self, id: &QrCodeId, binding: &BindingSecret) -> qrauth_core::Result<Status> {
        self.client.poll(id, binding).await
    }

    async fn wait_for_change(
        &self,
        id: &QrCodeId,
        binding: &BindingSecret,
        since: u64,
        wait: Duration,
    ) -> qrauth_core::Result<Status> {
        self.client.wait_for_change(id, binding, since, wait).await
    }

    async fn exchange(
        &self,
        ticket: &Ticket,
        binding: &BindingSecret,
    ) -> qrauth_core::Result<TokenSet> {
        self.client.exchange(ticket, binding).await
    }

    async fn scan(&self, id: &QrCodeId, user: &str) -> qrauth_core::Result<ScanOutcome> {
        self.client.scan(id, &format!("Bearer {user}")).await
    }

    async fn confirm(
        &self,
        id: &QrCodeId,
        token: &ConfirmToken,
        user: &str,
    ) -> qrauth_core::Result<QrState> {
        self.client
            .confirm(id, token, &format!("Bearer {user}"))
            .await
    }

    async fn cancel(
        &self,
        id: &QrCodeId,
        token: &ConfirmToken,
        user: &str,
    ) -> qrauth_core::Result<QrState> {
        self.client
            .cancel(id, token, &format!("Bearer {user}"))
            .await
    }

    /// A pending session bound to a fresh browser.
    async fn pending(&self) -> (BindingSecret, QrCodeId) {
        let binding = BindingSecret::generate().unwrap();
        let qr = self.generate(&binding).await;
        (binding, qr.id)
    }

    /// A session scanned by alice, with her confirm token.
    async fn scanned(&self) -> (BindingSecret, QrCodeId, ConfirmToken) {
        let (binding, id) = self.pending().await;
        let outcome = self.scan(&id, "alice").await.expect("scan");
        (binding, id, outcome.confirm_token)
    }

    /// A session confirmed by alice, with the ticket its bound browser polled.
    async fn confirmed(&self) -> (BindingSecret, QrCodeId, Ticket) {
        let (binding, id, token) = self.scanned().await;
        let state = self.confirm(&id, &token, "alice").await.expect("confirm");
        assert_eq!(state, QrState::Confirmed);
        let status = self.poll(&id, &binding).await.expect("poll");
        assert_eq!(status.state, QrState::Confirmed);
        let ticket = status.ticket.expect("the bound browser sees the ticket");
        (binding, id, ticket)
    }
}

fn assert_not_bound<T>(result: qrauth_core::Result<T>, what: &str) {
    match result {
        Err(Error::NotBound) => {}
        Err(other) => panic!("{what}: expected NotBound, got {other:?}"),
        Ok(_) => panic!("{what}: expected NotBound, got a success"),
    }
}

fn assert_invalid_ticket<T>(result: qrauth_core::Result<T>, what: &str) {
    match result {
        Err(Error::InvalidTicket) => {}
        Err(other) => panic!("{what}: expected InvalidTicket, got {other:?}"),
        Ok(_) => panic!("{what}: expected InvalidTicket, got a success"),
    }
}

fn assert_expired<T>(result: qrauth_core::Result<T>, what: &str) {
    match result {
        Err(Error::ExpiredQrCode) => {}
        Err(other) => panic!("{what}: expected ExpiredQrCode, got {other:?}"),
        Ok(_) => panic!("{what}: expected ExpiredQrCode, got a success"),
    }
}

fn assert_conflict<T>(result: qrauth_core::Result<T>, what: &str) {
    match result {
        Err(Error::Conflict(_)) => {}
        Err(other) => panic!("{what}: expected Conflict, got {other:?}"),
        Ok(_) => panic!("{what}: expected Conflict, got a success"),
    }
}

fn assert_forbidden<T>(result: qrauth_core::Result<T>, what: &str) {
    match result {
        Err(Error::Forbidden(_)) => {}
        Err(other) => panic!("{what}: expected Forbidden, got {other:?}"),
        Ok(_) => panic!("{what}: expected Forbidden, got a success"),
    }
}

// ---------------------------------------------------------------------------------------------
// The whole flow

#[tokio::test]
async fn full_flow_issues_verifiable_tokens_once_and_leaves_the_session_consumed() {
    let h = Harness::new();
    let binding = BindingSecret::generate().unwrap();
    let qr = h
        .client
        .generate_with_body(&binding, &json!({ "nonce": "n-0S6_WzA2Mj" }))
        .await
        .unwrap();
    assert!(qr.expires_in > 0 && qr.expires_in <= 120);
    assert!(qr.content.contains(qr.id.as_str()));

    let pending = h.poll(&qr.id, &binding).await.unwrap();
    assert_eq!(pending.state, QrState::Pending);
    assert!(pending.ticket.is_none() && pending.user.is_none());

    let outcome = h.scan(&qr.id, "alice").await.unwrap();
    assert_eq!(outcome.context.app_name, "Example");
    let scanned = h.poll(&qr.id, &binding).await.unwrap();
    assert_eq!(scanned.state, QrState::Scanned);
    assert!(scanned.ticket.is_none(), "no ticket before confirmation");
    assert_eq!(
        scanned.user.as_ref().and_then(|u| u.nickname.as_deref()),
        Some("Alice")
    );

    let state = h
        .confirm(&qr.id, &outcome.confirm_token, "alice")
        .await
        .unwrap();
    assert_eq!(state, QrState::Confirmed);

    let confirmed = h.poll(&qr.id, &binding).await.unwrap();
    assert_eq!(confirmed.state, QrState::Confirmed);
    assert!(confirmed.version > scanned.version);
    let ticket = confirmed.ticket.expect("the bound browser gets the ticket");

    let tokens = h.exchange(&ticket, &binding).await.unwrap();
    assert_eq!(tokens.token_type, "Bearer");
    assert!(tokens.expires_in > 0);

    let claims = h.provider.verify(&tokens.id_token).await.unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.iss, ISSUER);
    assert!(claims.aud.contains(AUDIENCE));
    assert_eq!(claims.nonce.as_deref(), Some("n-0S6_WzA2Mj"));
    assert_eq!(claims.extra.get("nickname"), Some(&Value::from("Alice")));
    assert_eq!(
        claims.extra.get("email"),
        Some(&Value::from("alice@example.com"))
    );

    let consumed = h.poll(&qr.id, &binding).await.unwrap();
    assert_eq!(consumed.state, QrState::Consumed);
    assert!(consumed.ticket.is_none(), "no ticket after consumption");
    assert!(consumed.user.is_none(), "no user info after consumption");

    assert_invalid_ticket(
        h.exchange(&ticket, &binding).await,
        "second exchange of the same ticket",
    );
    // Replaying the poll does not resurrect a ticket either.
    assert!(h.poll(&qr.id, &binding).await.unwrap().ticket.is_none());
}

// ---------------------------------------------------------------------------------------------
// Atomic transitions and single use

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_confirms_and_cancels_have_exactly_one_winner() {
    const N: usize = 100;
    let h = Arc::new(Harness::new());
    let (binding, id, token) = h.scanned().await;
    let scanned_version = h.poll(&id, &binding).await.unwrap().version;

    let barrier = Arc::new(Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (h, id, token, barrier) = (h.clone(), id.clone(), token.clone(), barrier.clone());
            tokio::spawn(async move {
                let confirm = i % 2 == 0;
                barrier.wait().await;
                let result = if confirm {
                    h.confirm(&id, &token, "alice").await
                } else {
                    h.cancel(&id, &token, "alice").await
                };
                (confirm, result)
            })
        })
        .collect();

    let mut winners = Vec::new();
    for task in tasks {
        let (confirm, result) = task.await.unwrap();
        match result {
            Ok(state) => winners.push((confirm, state)),
            Err(e) => assert_conflict(Err::<(), _>(e), "a losing confirm/cancel"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one transition wins: {winners:?}");
    let (winner_confirmed, winner_state) = winners[0];
    let expected = if winner_confirmed {
        QrState::Confirmed
    } else {
        QrState::Cancelled
    };
    assert_eq!(winner_state, expected);

    let status = h.poll(&id, &binding).await.unwrap();
    assert_eq!(status.state, expected, "the final state is the winner's");
    assert_eq!(
        status.version,
        scanned_version + 1,
        "the losers changed nothing"
    );
    assert_eq!(status.ticket.is_some(), winner_confirmed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_exchanges_of_one_ticket_yield_exactly_one_token_set() {
    const N: usize = 50;
    let h = Arc::new(Harness::new());
    let (binding, _id, ticket) = h.confirmed().await;

    let barrier = Arc::new(Barrier::new(N));
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let (h, binding, ticket, barrier) =
                (h.clone(), binding.clone(), ticket.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                h.exchange(&ticket, &binding).await
            })
        })
        .collect();

    let mut token_sets: Vec<TokenSet> = Vec::new();
    let mut invalid = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(tokens) => token_sets.push(tokens),
            Err(Error::InvalidTicket) => invalid += 1,
            Err(other) => panic!("unexpected exchange error: {other:?}"),
        }
    }
    assert_eq!(token_sets.len(), 1, "exactly one exchange succeeds");
    assert_eq!(invalid, N - 1);
    let claims = h.provider.verify(&token_sets[0].id_token).await.unwrap();
    assert_eq!(claims.sub, "alice");
}

#[tokio::test]
async fn ticket_with_another_sessions_binding_is_not_bound_and_burnt() {
    let h = Harness::new();
    let (binding_a, id_a, ticket_a) = h.confirmed().await;
    let (binding_b, _id_b, ticket_b) = h.confirmed().await;

    assert_not_bound(
        h.exchange(&ticket_a, &binding_b).await,
        "ticket A presented with binding B",
    );
    assert_invalid_ticket(
        h.exchange(&ticket_a, &binding_a).await,
        "burnt ticket A presented by its own browser",
    );
    // The leaked ticket cancelled session A: re-reading its status cannot mint it again.
    let status = h.poll(&id_a, &binding_a).await.unwrap();
    assert_eq!(status.state, QrState::Cancelled);
    assert!(status.ticket.is_none());
    assert_invalid_ticket(
        h.exchange(&ticket_a, &binding_a).await,
        "ticket A after a re-read of its cancelled session",
    );
    // The crossed attempt did not hurt flow B.
    let tokens = h.exchange(&ticket_b, &binding_b).await.unwrap();
    assert_eq!(
        h.provider.verify(&tokens.id_token).await.unwrap().sub,
        "alice"
    );
}

// ---------------------------------------------------------------------------------------------
// Lifetimes, on a manual clock

#[tokio::test]
async fn expired_qr_code_answers_expired_to_poll_and_scan() {
    let clock = ManualClock::starting_now();
    let lifetimes = Lifetimes::default()
        .qr_code(Duration::from_secs(5))
        .allow_short_for_tests();
    let h = Harness::build(lifetimes, Some(&clock));
    let (binding, id) = h.pending().await;
    let (binding2, id2) = h.pending().await;

    clock.advance(Duration::from_millis(4_999));
    assert_eq!(
        h.poll(&id, &binding).await.unwrap().state,
        QrState::Pending,
        "still alive just before the lifetime ends"
    );

    clock.advance(Duration::from_millis(2));
    assert_expired(h.poll(&id, &binding).await, "poll after expiry");
    assert_expired(h.scan(&id2, "alice").await, "scan after expiry");
    assert_expired(h.poll(&id2, &binding2).await, "poll of the other session");
}

#[tokio::test]
async fn ticket_exchange_after_the_ticket_ttl_is_invalid_ticket() {
    let clock = ManualClock::starting_now();
    let lifetimes = Lifetimes::default().ticket(Duration::from_secs(10));
    let h = Harness::build(lifetimes, Some(&clock));
    let (binding, id, ticket) = h.confirmed().await;

    clock.advance(Duration::from_secs(11));
    assert_invalid_ticket(
        h.exchange(&ticket, &binding).await,
        "exchange after the ticket TTL",
    );
    assert_expired(h.poll(&id, &binding).await, "poll after the ticket TTL");
}

// ---------------------------------------------------------------------------------------------
// Browser binding (no existence oracle)

#[tokio::test]
async fn poll_with_a_foreign_binding_on_a_confirmed_session_is_not_bound() {
    let h = Harness::new();
    let (_binding, id, _ticket) = h.confirmed().await;
    let stranger = BindingSecret::generate().unwrap();

    assert_not_bound(h.poll(&id, &stranger).await, "foreign poll");
    assert_not_bound(
        h.wait_for_change(&id, &stranger, 0, Duration::from_secs(5))
            .await,
        "foreign long-poll",
    );
    assert_eq!(
        h.store.live_waiters(),
        0,
        "an unbound caller never holds a waiter"
    );
}

#[tokio::test]
async fn poll_of_an_unknown_id_is_not_bound_like_a_foreign_one() {
    let h = Harness::new();
    let (binding, _id) = h.pending().await;
    let unknown = QrCodeId::generate().unwrap();
    assert_not_bound(h.poll(&unknown, &binding).await, "unknown id");
    assert_not_bound(
        h.poll(&unknown, &BindingSecret::generate().unwrap()).await,
        "unknown id, unknown binding",
    );
}

// ---------------------------------------------------------------------------------------------
// The phone side

#[tokio::test]
async fn second_scan_by_any_user_is_conflict() {
    let h = Harness::new();
    let (binding, id, _token) = h.scanned().await;
    assert_conflict(h.scan(&id, "bob").await, "scan by another user");
    assert_conflict(h.scan(&id, "alice").await, "scan again by the same user");
    let status = h.poll(&id, &binding).await.unwrap();
    assert_eq!(status.state, QrState::Scanned);
    assert_eq!(
        status.user.and_then(|u| u.nickname).as_deref(),
        Some("Alice"),
        "the first scanner keeps the session"
    );
}

#[tokio::test]
async fn confirm_or_cancel_by_a_user_who_did_not_scan_is_forbidden() {
    let h = Harness::new();
    let (binding, id, token) = h.scanned().await;
    assert_forbidden(
        h.confirm(&id, &token, "bob").await,
        "bob confirms alice's scan",
    );
    assert_forbidden(
        h.cancel(&id, &token, "bob").await,
        "bob cancels alice's scan",
    );
    assert_eq!(h.poll(&id, &binding).await.unwrap().state, QrState::Scanned);
    assert_eq!(
        h.confirm(&id, &token, "alice").await.unwrap(),
        QrState::Confirmed
    );
}

#[tokio::test]
async fn three_wrong_confirm_tokens_cancel_the_session_and_the_right_token_then_fails() {
    let h = Harness::new();
    let (binding, id, token) = h.scanned().await;
    for attempt in 1..=3 {
        let wrong = ConfirmToken::generate().unwrap();
        assert_forbidden(
            h.confirm(&id, &wrong, "alice").await,
            &format!("wrong confirm token #{attempt}"),
        );
        let expected = if attempt < 3 {
            QrState::Scanned
        } else {
            QrState::Cancelled
        };
        assert_eq!(
            h.poll(&id, &binding).await.unwrap().state,
            expected,
            "after {attempt} wrong token(s)"
        );
    }
    assert!(
        h.confirm(&id, &token, "alice").await.is_err(),
        "the right token no longer works"
    );
    assert_eq!(
        h.poll(&id, &binding).await.unwrap().state,
        QrState::Cancelled
    );
}

// ---------------------------------------------------------------------------------------------
// Waiting for a change

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_promptly_when_the_phone_scans() {
    let h = Arc::new(Harness::new());
    let (binding, id) = h.pending().await;
    let since = h.poll(&id, &binding).await.unwrap().version;

    let waiter = {
        let (h, id, binding) = (h.clone(), id.clone(), binding.clone());
        tokio::spawn(async move {
            let status = h
                .wait_for_change(&id, &binding, since, Duration::from_secs(5))
                .await;
            (status, Instant::now())
        })
    };
    assert!(
        eventually(Duration::from_secs(5), || h.store.live_waiters() == 1).await,
        "the waiter registered"
    );

    let scanned_at = Instant::now();
    h.scan(&id, "alice").await.unwrap();
    let (status, woke_at) = waiter.await.unwrap();
    let status = status.unwrap();
    let latency = woke_at.duration_since(scanned_at);
    assert_eq!(status.state, QrState::Scanned);
    assert!(status.version > since);
    assert!(
        latency < Duration::from_secs(1),
        "wake-up lost: the long-poll answered {latency:?} after the scan"
    );
    assert_eq!(h.store.live_waiters(), 0);
}

#[tokio::test]
async fn long_poll_without_change_returns_at_its_deadline_with_the_same_version() {
    let h = Harness::new();
    let (binding, id) = h.pending().await;
    let since = h.poll(&id, &binding).await.unwrap().version;

    // The shortest long-poll the query can ask for: one second.
    let wait = Duration::from_secs(1);
    let started = Instant::now();
    let status = h.wait_for_change(&id, &binding, since, wait).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(status.state, QrState::Pending);
    assert_eq!(status.version, since);
    assert!(elapsed >= wait, "returned early, after {elapsed:?}");
    assert!(
        elapsed < wait + Duration::from_secs(1),
        "overslept: {elapsed:?}"
    );
    assert_eq!(h.store.live_waiters(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_a_thousand_long_polls_returns_the_waiter_gauge_to_zero() {
    const N: usize = 1000;
    let h = Arc::new(Harness::new());
    let (binding, id) = h.pending().await;
    let since = h.poll(&id, &binding).await.unwrap().version;

    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let (h, id, binding) = (h.clone(), id.clone(), binding.clone());
            tokio::spawn(async move {
                let _ = h
                    .wait_for_change(&id, &binding, since, Duration::from_secs(30))
                    .await;
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(10), || h.store.live_waiters() == N).await,
        "all {N} waiters registered (have {})",
        h.store.live_waiters()
    );

    let dropped_at = Instant::now();
    for task in &tasks {
        task.abort();
    }
    let drained = eventually(Duration::from_secs(1), || h.store.live_waiters() == 0).await;
    assert!(
        drained,
        "{} waiters still live {:?} after the clients went away",
        h.store.live_waiters(),
        dropped_at.elapsed()
    );
    for task in tasks {
        assert!(task.await.unwrap_err().is_cancelled());
    }
}

// ---------------------------------------------------------------------------------------------
// What the store keeps

#[tokio::test]
async fn memory_store_never_holds_the_binding_secret_ticket_or_confirm_token() {
    let h = Harness::new();
    let (binding, id) = h.pending().await;
    let outcome = h.scan(&id, "alice").await.unwrap();
    h.confirm(&id, &outcome.confirm_token, "alice")
        .await
        .unwrap();
    let ticket = h.poll(&id, &binding).await.unwrap().ticket.unwrap();
    let secrets = [
        (
            "binding secret",
            h.client.cookie_binding(&binding).expose_secret().to_owned(),
        ),
        (
            "confirm token",
            outcome.confirm_token.expose_secret().to_owned(),
        ),
        ("ticket", ticket.expose_secret().to_owned()),
    ];
    let check = |when: &str| {
        let dump = h.store.dump().join("\n");
        assert!(!dump.is_empty(), "{when}: the store dump is empty");
        for (name, raw) in &secrets {
            assert!(
                !dump.contains(raw.as_str()),
                "{when}: the store holds the raw {name}"
            );
        }
    };
    check("confirmed, ticket handed out");
    h.exchange(&ticket, &binding).await.unwrap();
    check("after the exchange");
}

// ---------------------------------------------------------------------------------------------
// The HTTP service

fn with_cookie(service: &QrAuthService, mut request: ApiRequest, binding: &str) -> ApiRequest {
    let cookie = format!("{}={binding}", service.cookies().binding_name());
    request
        .headers
        .insert(COOKIE, HeaderValue::from_str(&cookie).unwrap());
    request
}

fn status_request(id: &str) -> ApiRequest {
    let mut request = ApiRequest::new(Method::GET);
    request.query = Some(format!("qrcodeId={id}"));
    request
}

fn phone_request(user: &str, body: &str) -> ApiRequest {
    let mut request = json_text_request(Method::POST, body);
    request.headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {user}")).unwrap(),
    );
    request
}

/// `POST /qrcode` from a browser without a binding: the id and the new binding secret.
async fn http_generate(service: &QrAuthService) -> (String, String) {
    let response = service
        .handle(Route::Generate, ApiRequest::new(Method::POST))
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
    qrauth_test_support::screen::show_answer(&body_json(&response));
    let id = body_json(&response)["qrcodeId"]
        .as_str()
        .unwrap()
        .to_owned();
    (id, binding_cookie(service, &response))
}

#[tokio::test]
async fn generate_route_answers_201_with_the_binding_cookie_and_no_store_headers() {
    let h = Harness::new();
    let service = h.service();
    let response = service
        .handle(Route::Generate, ApiRequest::new(Method::POST))
        .await;
    assert_eq!(response.status, StatusCode::CREATED);
    assert_eq!(response.headers[CACHE_CONTROL], "no-store");
    assert_eq!(response.headers[REFERRER_POLICY], "no-referrer");

    let set_cookie = response
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("__Host-qrauth_bind="))
        .expect("the binding cookie is set");
    for attribute in ["Path=/", "HttpOnly", "Secure", "SameSite=Lax"] {
        assert!(
            set_cookie.contains(attribute),
            "{set_cookie} lacks {attribute}"
        );
    }
    assert!(!set_cookie.contains("Domain"), "{set_cookie}");
    let binding = binding_cookie(&service, &response);
    assert!(BindingSecret::parse(&binding).is_ok());

    let body = body_json(&response);
    for field in [
        "qrcodeId",
        "qrcodeContent",
        "image",
        "expiresIn",
        "expireAt",
        "interval",
    ] {
        assert!(!body[field].is_null(), "{field} missing from {body}");
    }
    assert!(
        body["image"]
            .as_str()
            .unwrap()
            .starts_with("data:image/svg+xml")
    );
}

#[tokio::test]
async fn generate_body_naming_a_qrcode_id_or_ticket_is_invalid_request() {
    let h = Harness::new();
    let service = h.service();
    let chosen = QrCodeId::generate().unwrap();
    for body in [
        format!(r#"{{"qrcodeId":"{}"}}"#, chosen.as_str()),
        r#"{"ticket":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#.to_owned(),
        format!(r#"{{"scene":"APP_AUTH","qrcodeId":"{}"}}"#, chosen.as_str()),
    ] {
        let response = service
            .handle(Route::Generate, json_text_request(Method::POST, &body))
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body_json(&response)["error"], "invalid_request", "{body}");
        assert_eq!(response.headers[CACHE_CONTROL], "no-store");
        assert!(
            response.headers.get(SET_COOKIE).is_none(),
            "a refused request binds nothing"
        );
    }
    // The id the client chose was never created.
    assert_not_bound(
        h.poll(&chosen, &BindingSecret::generate().unwrap()).await,
        "client-chosen id",
    );
}

#[tokio::test]
async fn status_without_binding_is_the_same_403_for_unknown_pending_and_confirmed_ids() {
    let h = Harness::new();
    let service = h.service();

    let (pending_id, _pending_binding) = http_generate(&service).await;

    let (confirmed_id, confirmed_binding) = http_generate(&service).await;
    let scan = service
        .handle(
            Route::Scan,
            phone_request(
                "alice",
                &qrauth_test_support::screen::scan_body(&confirmed_id).to_string(),
            ),
        )
        .await;
    assert_eq!(scan.status, StatusCode::OK);
    let confirm_token = body_json(&scan)["confirmToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let confirm = service
        .handle(
            Route::Confirm,
            phone_request(
                "alice",
                &format!(r#"{{"qrcodeId":"{confirmed_id}","confirmToken":"{confirm_token}"}}"#),
            ),
        )
        .await;
    assert_eq!(confirm.status, StatusCode::OK);
    let bound = service
        .handle(
            Route::Status,
            with_cookie(&service, status_request(&confirmed_id), &confirmed_binding),
        )
        .await;
    assert_eq!(bound.status, StatusCode::OK);
    assert_eq!(body_json(&bound)["status"], "confirmed");
    assert!(
        body_json(&bound)["ticket"].is_string(),
        "the bound browser sees the ticket"
    );

    let unknown_id = QrCodeId::generate().unwrap().as_str().to_owned();
    let (_other_id, foreign_binding) = http_generate(&service).await;

    for (label, cookie) in [
        ("no cookie", None),
        ("foreign cookie", Some(&foreign_binding)),
    ] {
        let mut answers = Vec::new();
        for id in [&unknown_id, &pending_id, &confirmed_id] {
            let request = match cookie {
                Some(binding) => with_cookie(&service, status_request(id), binding),
                None => status_request(id),
            };
            let response = service.handle(Route::Status, request).await;
            assert_eq!(response.status, StatusCode::FORBIDDEN, "{label}");
            let body = body_json(&response);
            assert_eq!(body["error"], "not_bound", "{label}");
            assert!(body.get("ticket").is_none() && body.get("userInfo").is_none());
            answers.push((
                response.status,
                response.headers.clone(),
                response.body_bytes().unwrap().clone(),
            ));
        }
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "{label}: unknown, pending and confirmed ids must be indistinguishable: {answers:?}"
        );
    }
}

#[tokio::test]
async fn qr_content_holds_the_id_but_not_the_binding_secret() {
    let h = Harness::new();
    let service = h.service();
    let response = service
        .handle(Route::Generate, ApiRequest::new(Method::POST))
        .await;
    let body = body_json(&response);
    let binding = binding_cookie(&service, &response);
    let id = body["qrcodeId"].as_str().unwrap();
    let content = body["qrcodeContent"].as_str().unwrap();
    // The phone page's URL with the id and the rotating QR's scan token.
    let token = qrauth_test_support::screen::scan_token(content).expect("a scan token");
    assert_eq!(
        content,
        format!("{PHONE_URL}?qrcodeId={id}&scanToken={token}")
    );
    assert!(!content.contains(&binding));
    assert!(!body["image"].as_str().unwrap().contains(&binding));
    let whole_body = String::from_utf8(response.body_bytes().unwrap().to_vec()).unwrap();
    assert!(
        !whole_body.contains(&binding),
        "the binding secret travels only in the cookie"
    );
}

/// 23: the sign-in hook fires exactly once per successful exchange, with the signed-in
/// browser's description — not for a replayed exchange.
#[tokio::test]
async fn sign_in_hook_fires_once_per_successful_exchange() {
    let h = Harness::new();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let service = QrAuthService::builder(h.provider.clone())
        .on_sign_in(move |sign_in| {
            seen.lock()
                .unwrap()
                .push((sign_in.claims.sub.clone(), sign_in.browser.clone()));
        })
        .build()
        .unwrap();
    let (id, binding) = http_generate(&service).await;
    let scan = service
        .handle(
            Route::Scan,
            phone_request(
                "alice",
                &qrauth_test_support::screen::scan_body(&id).to_string(),
            ),
        )
        .await;
    let token = body_json(&scan)["confirmToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let confirm = service
        .handle(
            Route::Confirm,
            phone_request(
                "alice",
                &format!(r#"{{"qrcodeId":"{id}","confirmToken":"{token}"}}"#),
            ),
        )
        .await;
    assert_eq!(confirm.status, StatusCode::OK);
    let status = service
        .handle(
            Route::Status,
            with_cookie(&service, status_request(&id), &binding),
        )
        .await;
    let ticket = body_json(&status)["ticket"].as_str().unwrap().to_owned();
    let exchange = || {
        let mut request = json_text_request(Method::POST, &format!(r#"{{"ticket":"{ticket}"}}"#));
        request.headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
            ),
        );
        with_cookie(&service, request, &binding)
    };
    assert_eq!(
        service.handle(Route::Exchange, exchange()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        service.handle(Route::Exchange, exchange()).await.status,
        StatusCode::BAD_REQUEST
    );
    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "alice");
    assert_eq!(events[0].1, "Chrome on Windows");
}

/// 21 + 15: with number matching, the bound browser sees a two-digit code after scan; confirm
/// needs it; three wrong (or missing) codes cancel the session.
#[tokio::test]
async fn number_matching_requires_the_code_the_browser_shows() {
    let h = Harness::configure(Lifetimes::default(), None, true);
    let phone_api = &h.client;

    // The right code confirms.
    let binding = BindingSecret::generate().unwrap();
    let qr = h.generate(&binding).await;
    assert!(h.poll(&qr.id, &binding).await.unwrap().match_code.is_none());
    let scan = phone_api.scan(&qr.id, ALICE).await.unwrap();
    let code = h
        .poll(&qr.id, &binding)
        .await
        .unwrap()
        .match_code
        .expect("the bound browser sees the code");
    assert!(
        code.len() == 2 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    let state = phone_api
        .confirm_with_code(&qr.id, &scan.confirm_token, ALICE, Some(&code))
        .await
        .unwrap();
    assert_eq!(state, QrState::Confirmed);
    assert!(h.poll(&qr.id, &binding).await.unwrap().match_code.is_none());

    // Missing and wrong codes count; the third cancels; the right code then fails.
    let binding = BindingSecret::generate().unwrap();
    let qr = h.generate(&binding).await;
    let scan = phone_api.scan(&qr.id, ALICE).await.unwrap();
    let right = h.poll(&qr.id, &binding).await.unwrap().match_code.unwrap();
    let wrong = if right == "00" { "01" } else { "00" };
    for code in [None, Some(wrong), Some("999")] {
        let refused = phone_api
            .confirm_with_code(&qr.id, &scan.confirm_token, ALICE, code)
            .await;
        assert!(matches!(refused, Err(Error::Forbidden(_))), "{refused:?}");
    }
    assert_eq!(
        h.poll(&qr.id, &binding).await.unwrap().state,
        QrState::Cancelled
    );
    assert!(
        phone_api
            .confirm_with_code(&qr.id, &scan.confirm_token, ALICE, Some(&right))
            .await
            .is_err()
    );
}
