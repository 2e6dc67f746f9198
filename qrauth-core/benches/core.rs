//! Benchmarks of the core.
//!
//! - `verify/*`: an RS256 id_token from the built-in provider, verified by `IdTokenVerifier`
//!   with its verified-token cache, by one with the cache disabled
//!   (`token_cache_capacity(0)`), and by a bare `jsonwebtoken::decode` with the same checks
//!   (signature, `exp`, `iss`, `aud`). `verify/async_noop` is the cost of driving one future on
//!   the bench runtime, which the two verifier figures include and the bare decode does not.
//! - `flow/builtin_rs256`: one whole login per iteration (generate → scan → confirm → poll →
//!   exchange), each step one request through `QrAuthService::handle` (no abuse limits), on
//!   the built-in provider with its default RS256 key; throughput is flows/s.
//!   `flow_part/sign_one_rs256_jwt` is one of the two signatures each flow makes;
//!   `flow_part/generate` is `POST /qrcode` alone (a new session and its QR image).
//! - Before criterion runs, the net heap cost of a pending session in a `MemoryStore`, measured
//!   by a counting global allocator over 100 000 new sessions inserted the way the service
//!   creates them (`SessionRecord::new` + `SessionStore::insert`, retained for the QR and ticket
//!   lifetimes plus the retention grace).
//!
//! `cargo bench -p qrauth-core --bench core -- --warm-up-time 1 --measurement-time 3`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use criterion::{Criterion, Throughput};
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderValue, Method, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use qrauth_core::provider::builtin::{BuiltinProvider, PhoneAuthenticator, PhoneUser};
use qrauth_core::store::{MemoryStore, SessionRecord, SessionStore, SignedInSession};
use qrauth_core::verify::{IdTokenVerifier, IssuerConfig};
use qrauth_core::{
    ApiRequest, Claims, Clock, Error, Limits, QrAuthService, QrCodeId, Route, SystemClock, TokenSet,
};
use qrauth_test_support::service_client::{binding_cookie, body_json, json_request};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

// ---------------------------------------------------------------------------------------------
// Counting allocator

/// Net bytes currently allocated through the global allocator (requested sizes).
static NET_ALLOCATED: AtomicUsize = AtomicUsize::new(0);

/// The same in the chunks glibc's malloc hands out for them (8 bytes of header, 16-byte
/// steps, 32 at least): what the allocations cost in resident memory.
static NET_CHUNKS: AtomicUsize = AtomicUsize::new(0);

/// Live allocations.
static NET_BLOCKS: AtomicUsize = AtomicUsize::new(0);

fn chunk(size: usize) -> usize {
    (size + 8).next_multiple_of(16).max(32)
}

fn count_alloc(size: usize) {
    NET_ALLOCATED.fetch_add(size, Ordering::Relaxed);
    NET_CHUNKS.fetch_add(chunk(size), Ordering::Relaxed);
    NET_BLOCKS.fetch_add(1, Ordering::Relaxed);
}

fn count_dealloc(size: usize) {
    NET_ALLOCATED.fetch_sub(size, Ordering::Relaxed);
    NET_CHUNKS.fetch_sub(chunk(size), Ordering::Relaxed);
    NET_BLOCKS.fetch_sub(1, Ordering::Relaxed);
}

/// `System`, counting the bytes it hands out and takes back.
struct CountingAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counter
// is only bookkeeping.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count_alloc(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count_alloc(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        count_dealloc(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count_alloc(new_size);
            count_dealloc(layout.size());
        }
        new
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

// ---------------------------------------------------------------------------------------------
// Fixtures

const ISSUER: &str = "https://login.example.com/auth";
const AUDIENCE: &str = "example-web";
const PHONE: &str = "Bearer alice";

struct BenchPhones;

#[async_trait]
impl PhoneAuthenticator for BenchPhones {
    async fn authenticate(&self, authorization: &str) -> qrauth_core::Result<PhoneUser> {
        match authorization {
            "Bearer alice" => Ok(PhoneUser::new("alice")
                .nickname("Alice")
                .claim("email", "alice@example.com")),
            _ => Err(Error::Unauthenticated),
        }
    }
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The built-in provider with its defaults (RS256).
fn builtin_rs256() -> Arc<BuiltinProvider> {
    Arc::new(
        BuiltinProvider::builder(Arc::new(BenchPhones))
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .build()
            .expect("provider"),
    )
}

/// A service on `provider` over an in-memory store, without abuse limits.
fn service(provider: &Arc<BuiltinProvider>) -> QrAuthService {
    QrAuthService::builder(provider.clone())
        .limits(Limits::unlimited())
        .build()
        .expect("service")
}

fn bound(service: &QrAuthService, mut request: ApiRequest, binding: &str) -> ApiRequest {
    let cookie = format!("{}={binding}", service.cookies().binding_name());
    request
        .headers
        .insert(COOKIE, HeaderValue::from_str(&cookie).unwrap());
    request
}

fn phone(body: Value) -> ApiRequest {
    let mut request = json_request(&body);
    request
        .headers
        .insert(AUTHORIZATION, HeaderValue::from_static(PHONE));
    request
}

/// One whole login through the HTTP handlers: generate → scan → confirm → poll → exchange.
async fn one_flow(service: &QrAuthService) -> TokenSet {
    let generated = service
        .handle(Route::Generate, ApiRequest::new(Method::POST))
        .await;
    assert_eq!(generated.status, StatusCode::CREATED);
    let binding = binding_cookie(service, &generated);
    let id = body_json(&generated)["qrcodeId"]
        .as_str()
        .expect("qrcodeId")
        .to_owned();
    let content = body_json(&generated)["qrcodeContent"]
        .as_str()
        .expect("qrcodeContent")
        .to_owned();
    let scan = service
        .handle(
            Route::Scan,
            phone(qrauth_test_support::screen::scan_body_of(&content)),
        )
        .await;
    assert_eq!(scan.status, StatusCode::OK);
    let token = body_json(&scan)["confirmToken"]
        .as_str()
        .expect("confirmToken")
        .to_owned();
    let confirm = service
        .handle(
            Route::Confirm,
            phone(json!({ "qrcodeId": id, "confirmToken": token })),
        )
        .await;
    assert_eq!(confirm.status, StatusCode::OK);
    let mut status = ApiRequest::new(Method::GET);
    status.query = Some(format!("qrcodeId={id}"));
    let status = service
        .handle(Route::Status, bound(service, status, &binding))
        .await;
    let ticket = body_json(&status)["ticket"]
        .as_str()
        .expect("confirmed")
        .to_owned();
    let exchange = service
        .handle(
            Route::Exchange,
            bound(
                service,
                json_request(&json!({ "ticket": ticket })),
                &binding,
            ),
        )
        .await;
    assert_eq!(exchange.status, StatusCode::OK);
    serde_json::from_value(body_json(&exchange)).expect("a token set")
}

// ---------------------------------------------------------------------------------------------
// (c) Memory per pending session

fn memory_per_pending_session() {
    const N: usize = 100_000;
    let rt = current_thread();
    rt.block_on(async {
        let store = MemoryStore::builder().max_sessions(2 * N as u64).build();
        let service = QrAuthService::builder(builtin_rs256())
            .store(store.clone())
            .limits(Limits::unlimited())
            .build()
            .expect("service");
        let generate = || {
            let mut request = ApiRequest::new(Method::POST);
            request.headers.insert(
                http::header::USER_AGENT,
                HeaderValue::from_static(
                    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                     (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                ),
            );
            request.peer = Some("203.0.113.7".parse().unwrap());
            let service = &service;
            async move {
                let answer = service.handle(Route::Generate, request).await;
                assert_eq!(answer.status, StatusCode::CREATED);
                let id = body_json(&answer)["qrcodeId"].as_str().unwrap().to_owned();
                QrCodeId::parse(&id).unwrap()
            }
        };
        // The first session pays for one-off set-up (tracing callsites, cache internals).
        let first = generate().await;

        let counters =
            || [&NET_ALLOCATED, &NET_CHUNKS, &NET_BLOCKS].map(|c| c.load(Ordering::SeqCst));
        let before = counters();
        let mut last = None;
        for _ in 0..N {
            last = Some(generate().await);
        }
        // Let the cache apply its pending write log (it does so on later operations after
        // ~300 ms), so its per-entry bookkeeping is counted too.
        let last = last.unwrap();
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(350));
            assert!(store.load(&first).await.unwrap().is_some());
            assert!(store.load(&last).await.unwrap().is_some());
        }
        let after = counters();
        let [bytes, chunks, blocks] =
            [0, 1, 2].map(|i| after[i].saturating_sub(before[i]) as f64 / N as f64);

        println!(
            "memory per pending session (POST /qrcode on the built-in provider): {bytes:.0} \
             bytes allocated, {chunks:.0} bytes in malloc chunks, {blocks:.1} allocations \
             ({N} sessions; size_of::<SessionRecord>() = {} bytes)",
            std::mem::size_of::<SessionRecord>(),
        );
        drop(service);
        drop(store);
    });
}

/// Memory per signed-in session in a `MemoryStore` (record, subject index, cache bookkeeping),
/// one subject per session as in real traffic.
fn memory_per_signed_in_session() {
    const N: usize = 100_000;
    let rt = current_thread();
    rt.block_on(async {
        let store = MemoryStore::builder()
            .max_signed_in_sessions(2 * N as u64)
            .build();
        let signed_in = store.signed_in();
        let now = SystemClock.now_millis();
        let first = SignedInSession::sample("user-0", now).unwrap();
        signed_in.create(&first).await.unwrap();
        let before = NET_ALLOCATED.load(Ordering::SeqCst);
        let mut last = None;
        for i in 0..N {
            let session = SignedInSession::sample(&format!("user-{}", i + 1), now).unwrap();
            signed_in.create(&session).await.unwrap();
            last = Some(session.id);
        }
        let last = last.unwrap();
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(350));
            assert!(signed_in.is_active(&first.id, now).await.unwrap());
            assert!(signed_in.is_active(&last, now).await.unwrap());
        }
        let after = NET_ALLOCATED.load(Ordering::SeqCst);
        let per_session = after.saturating_sub(before) as f64 / N as f64;
        println!(
            "memory per signed-in session: {per_session:.0} bytes ({N} sessions, {:.1} MiB net)",
            after.saturating_sub(before) as f64 / (1024.0 * 1024.0),
        );
        assert_eq!(store.stored_signed_in_sessions(), N as u64 + 1);
    });
}

// ---------------------------------------------------------------------------------------------
// (a) id_token verification

fn verify(c: &mut Criterion) {
    let rt = current_thread();
    let provider = builtin_rs256();
    let signed_in = service(&provider);
    let tokens = rt.block_on(one_flow(&signed_in));
    let token = tokens.id_token;
    let jwks = provider.keys().jwks(SystemClock.now_secs());
    let config = || IssuerConfig::new(ISSUER, AUDIENCE).static_jwks(jwks.clone());
    let cached = IdTokenVerifier::builder()
        .issuer(config())
        .build()
        .expect("verifier");
    let uncached = IdTokenVerifier::builder()
        .issuer(config())
        .token_cache_capacity(0)
        .build()
        .expect("verifier");

    let jwk = provider.keys().current().public_jwk().clone();
    let key = DecodingKey::from_jwk(&jwk).expect("decoding key");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.validate_exp = true;
    validation.leeway = 60;

    // All three agree before anything is timed.
    let by_cached = rt.block_on(cached.verify(&token)).expect("cached verify");
    let by_uncached = rt
        .block_on(uncached.verify(&token))
        .expect("uncached verify");
    let by_raw = jsonwebtoken::decode::<Claims>(&token, &key, &validation)
        .expect("raw decode")
        .claims;
    assert_eq!(by_cached, by_uncached);
    assert_eq!(by_cached.sub, by_raw.sub);
    assert_eq!(by_cached.sub, "alice");

    let mut group = c.benchmark_group("verify");
    group.bench_function("cached", |b| {
        b.to_async(&rt)
            .iter(|| async { cached.verify(black_box(&token)).await.unwrap() })
    });
    group.bench_function("uncached", |b| {
        b.to_async(&rt)
            .iter(|| async { uncached.verify(black_box(&token)).await.unwrap() })
    });
    group.bench_function("raw_jsonwebtoken_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<Claims>(black_box(&token), &key, &validation)
                .unwrap()
                .claims
        })
    });
    // What `AuthenticatedUser` costs: the cached verify plus the signed-in session check.
    let mut headers = http::HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    let by_service = rt
        .block_on(signed_in.authenticate(&headers))
        .expect("authenticate");
    assert_eq!(by_service.sub, "alice");
    group.bench_function("authenticate_with_session_check", |b| {
        b.to_async(&rt)
            .iter(|| async { signed_in.authenticate(black_box(&headers)).await.unwrap() })
    });
    group.bench_function("async_noop", |b| {
        b.to_async(&rt).iter(|| async { black_box(0u8) })
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// (b) Whole flows

fn flow(c: &mut Criterion) {
    let rt = current_thread();
    let provider = builtin_rs256();
    let service = service(&provider);
    let mut group = c.benchmark_group("flow");
    group.throughput(Throughput::Elements(1));
    group.bench_function("builtin_rs256", |b| {
        b.to_async(&rt).iter(|| one_flow(&service))
    });
    group.finish();

    // `POST /qrcode` alone: a new session, its QR rendered as an SVG image.
    c.bench_function("flow_part/generate", |b| {
        b.to_async(&rt).iter(|| async {
            let generated = service
                .handle(Route::Generate, ApiRequest::new(Method::POST))
                .await;
            assert_eq!(generated.status, StatusCode::CREATED);
            generated
        })
    });

    // What dominates a flow: it signs two RS256 JWTs (access token and id_token).
    let key = provider.keys().current();
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "iat": 1, "exp": 2, "jti": "x",
    });
    c.bench_function("flow_part/sign_one_rs256_jwt", |b| {
        b.iter(|| key.sign("JWT", black_box(&claims)).unwrap())
    });
}

fn main() {
    memory_per_pending_session();
    memory_per_signed_in_session();
    let mut criterion = Criterion::default().configure_from_args();
    verify(&mut criterion);
    flow(&mut criterion);
    criterion.final_summary();
}
