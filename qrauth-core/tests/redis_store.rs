//! `RedisStore` against a real `redis-server` (requirements 34–37 of
//! `reference/qr-login-security.md` §7): the `SessionStore` contract directly, and whole flows
//! through `QrAuthService` replicas sharing one server.
//!
//! Every test starts its own server on a free loopback port (see `support/redis_server.rs`);
//! a missing `redis-server` binary fails the test with the install command.
//!
//! Run with `cargo test -p qrauth-core --features redis,test-util --test redis_store`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use qrauth_core::provider::builtin::{BuiltinProvider, SigningAlgorithm, SigningKey};
use qrauth_core::store::RedisStoreBuilder;
use qrauth_core::store::{Initiator, RedisStore, Scanner, SessionRecord, SessionStore};
use qrauth_core::{
    BindingSecret, ConfirmToken, Error, Lifetimes, Limits, QrAuthProvider, QrAuthService, QrCodeId,
    QrState, SecretHash, Ticket, TokenSet, UserInfo,
};
use qrauth_test_support::RedisBackend;
use qrauth_test_support::phone::TestPhones;
use qrauth_test_support::redis_server::RedisServer;
use qrauth_test_support::service_client::{CHROME_ON_WINDOWS, Client, Status};
use redis::aio::MultiplexedConnection;
use tokio::sync::Barrier;
use tokio::time::Instant;

const ISSUER: &str = "https://login.example.com/auth";
const AUDIENCE: &str = "example-web";
const ALICE: &str = "Bearer alice";
const BOB: &str = "Bearer bob";

// ---------------------------------------------------------------------------------------------
// Fixtures

/// One application replica: its own `RedisStore` (own connections, own subscriber), a
/// built-in provider, and a service over both (without abuse limits: these tests are about
/// the sessions), driven through its HTTP handlers by `client`.
struct Replica {
    store: RedisStore,
    provider: Arc<BuiltinProvider>,
    client: Client,
}

impl Replica {
    async fn new(
        server: &impl Target,
        prefix: &str,
        lifetimes: Lifetimes,
        key: &SigningKey,
    ) -> Self {
        Self::with_timeout(server, prefix, lifetimes, key, Duration::from_secs(2)).await
    }

    async fn with_timeout(
        server: &impl Target,
        prefix: &str,
        lifetimes: Lifetimes,
        key: &SigningKey,
        timeout: Duration,
    ) -> Self {
        let store = server
            .builder()
            .key_prefix(prefix)
            .command_timeout(timeout)
            .connect()
            .await
            .expect("connect to redis-server");
        Self::with_store(store, lifetimes, key)
    }

    fn with_store(store: RedisStore, lifetimes: Lifetimes, key: &SigningKey) -> Self {
        let provider = Arc::new(
            BuiltinProvider::builder(Arc::new(TestPhones))
                .signing_key(key.clone())
                .issuer(ISSUER)
                .audience(AUDIENCE)
                .phone_url("https://login.example.com/m/confirm")
                .app_name("Example")
                .build()
                .expect("provider"),
        );
        let service = QrAuthService::builder(provider.clone())
            .store(store.clone())
            .lifetimes(lifetimes)
            .limits(Limits::unlimited())
            .build()
            .expect("service");
        Self {
            store,
            provider,
            client: Client::new(service),
        }
    }

    /// A 20 s long-poll of this replica from the session's current version, in a task.
    async fn spawn_long_poll(
        &self,
        id: &QrCodeId,
        binding: &BindingSecret,
    ) -> tokio::task::JoinHandle<qrauth_core::Result<Status>> {
        let since = self.client.poll(id, binding).await.unwrap().version;
        let client = self.client.clone();
        let (id, binding) = (id.clone(), binding.clone());
        tokio::spawn(async move {
            client
                .wait_for_change(&id, &binding, since, Duration::from_secs(20))
                .await
        })
    }

    /// A pending session, started by Chrome on Windows at 203.0.113.9.
    async fn pending(&self) -> (BindingSecret, QrCodeId) {
        let binding = BindingSecret::generate().unwrap();
        let qr = self
            .client
            .generate_from(
                &binding,
                None,
                Some("203.0.113.9".parse().unwrap()),
                Some(CHROME_ON_WINDOWS),
            )
            .await
            .expect("generate");
        (binding, qr.id)
    }

    async fn scanned(&self) -> (BindingSecret, QrCodeId, ConfirmToken) {
        let (binding, id) = self.pending().await;
        let outcome = self.client.scan(&id, ALICE).await.expect("scan");
        (binding, id, outcome.confirm_token)
    }

    async fn confirmed(&self) -> (BindingSecret, QrCodeId, ConfirmToken, Ticket) {
        let (binding, id, token) = self.scanned().await;
        let state = self
            .client
            .confirm(&id, &token, ALICE)
            .await
            .expect("confirm");
        assert_eq!(state, QrState::Confirmed);
        let status = self.client.poll(&id, &binding).await.expect("poll");
        assert_eq!(status.state, QrState::Confirmed);
        let ticket = status.ticket.expect("the bound browser sees the ticket");
        (binding, id, token, ticket)
    }

    /// The stored session (read from the store directly).
    async fn stored(&self, id: &QrCodeId) -> SessionRecord {
        self.store
            .load(id)
            .await
            .expect("load")
            .expect("the session is stored")
    }
}

fn es256() -> SigningKey {
    SigningKey::generate(SigningAlgorithm::Es256).expect("ES256 key")
}

/// Where a test's stores connect: one `redis-server`, or either backend.
trait Target {
    fn builder(&self) -> RedisStoreBuilder;
    /// The URL of every primary (one for a single server).
    fn primaries(&self) -> Vec<String>;
    fn cluster(&self) -> Option<Vec<String>>;
}

impl Target for RedisServer {
    fn builder(&self) -> RedisStoreBuilder {
        RedisStore::builder(self.url())
    }
    fn primaries(&self) -> Vec<String> {
        vec![self.url()]
    }
    fn cluster(&self) -> Option<Vec<String>> {
        None
    }
}

impl Target for RedisBackend {
    fn builder(&self) -> RedisStoreBuilder {
        RedisBackend::builder(self)
    }
    fn primaries(&self) -> Vec<String> {
        match self {
            RedisBackend::Single(server) => vec![server.url()],
            RedisBackend::Cluster(cluster) => cluster
                .primaries()
                .iter()
                .map(|n| format!("redis://127.0.0.1:{}/", n.port))
                .collect(),
        }
    }
    fn cluster(&self) -> Option<Vec<String>> {
        self.as_cluster().map(|c| c.urls())
    }
}

/// A test's own view of Redis: key commands routed by slot (on a cluster), plus one
/// connection per primary to list keys.
enum Admin {
    Single(MultiplexedConnection),
    Cluster(
        redis::cluster_async::ClusterConnection,
        Vec<MultiplexedConnection>,
    ),
}

impl redis::aio::ConnectionLike for Admin {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Admin::Single(c) => c.req_packed_command(cmd),
            Admin::Cluster(c, _) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Admin::Single(c) => c.req_packed_commands(cmd, offset, count),
            Admin::Cluster(c, _) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        0
    }
}

async fn node(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection")
}

async fn admin(server: &impl Target) -> Admin {
    let mut primaries = Vec::new();
    for url in server.primaries() {
        primaries.push(node(&url).await);
    }
    match server.cluster() {
        None => Admin::Single(primaries.remove(0)),
        Some(urls) => Admin::Cluster(
            redis::cluster::ClusterClient::new(urls)
                .expect("cluster urls")
                .get_async_connection()
                .await
                .expect("cluster admin connection"),
            primaries,
        ),
    }
}

/// Every key of the server (of every primary), by `SCAN`.
async fn all_keys(admin: &mut Admin) -> Vec<String> {
    let nodes: Vec<MultiplexedConnection> = match admin {
        Admin::Single(c) => vec![c.clone()],
        Admin::Cluster(_, primaries) => primaries.clone(),
    };
    let mut keys = Vec::new();
    for mut conn in nodes {
        keys.extend(node_keys(&mut conn).await);
    }
    keys
}

async fn node_keys(conn: &mut MultiplexedConnection) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .expect("SCAN");
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Every key with its value (hash fields and values, or the string).
async fn dump(conn: &mut Admin) -> Vec<u8> {
    let mut out = Vec::new();
    for key in all_keys(conn).await {
        out.extend_from_slice(key.as_bytes());
        out.push(b'\n');
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(conn)
            .await
            .unwrap();
        match kind.as_str() {
            "hash" => {
                let fields: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(conn)
                    .await
                    .unwrap();
                for (k, v) in fields {
                    out.extend_from_slice(&k);
                    out.push(b'=');
                    out.extend_from_slice(&v);
                    out.push(b'\n');
                }
            }
            "string" => {
                let v: Option<Vec<u8>> =
                    redis::cmd("GET").arg(&key).query_async(conn).await.unwrap();
                out.extend_from_slice(&v.unwrap_or_default());
                out.push(b'\n');
            }
            "zset" => {
                let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(conn)
                    .await
                    .unwrap();
                for m in members {
                    out.extend_from_slice(&m);
                    out.push(b'\n');
                }
            }
            "none" => {} // expired between SCAN and TYPE
            other => panic!("unexpected key type {other} for {key}"),
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_unavailable<T>(result: qrauth_core::Result<T>, what: &str) {
    match result {
        Err(Error::StoreUnavailable(_)) => {}
        Err(other) => panic!("{what}: expected StoreUnavailable, got {other:?}"),
        Ok(_) => panic!("{what}: expected StoreUnavailable, got a success"),
    }
}

fn record(version: u64) -> SessionRecord {
    let mut r = SessionRecord::new(
        QrCodeId::generate().unwrap(),
        BindingSecret::generate().unwrap().hash(),
        now_ms(),
        60_000,
        Initiator {
            ip: Some(IpAddr::from([192, 0, 2, 1])),
            device: "Firefox on Linux".into(),
        },
    );
    r.version = version;
    r
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Debug text plus the hashes (which `Debug` redacts): equal iff the records are.
fn fingerprint(r: &SessionRecord) -> String {
    format!(
        "{r:?} {} {:?} {}",
        r.binding_hash.to_hex(),
        r.confirm_token_hash.map(|h| h.to_hex()),
        r.id.as_str()
    )
}

async fn store(server: &impl Target, prefix: &str) -> RedisStore {
    server
        .builder()
        .key_prefix(prefix)
        .connect()
        .await
        .expect("connect")
}

/// Polls `check` every 10 ms until it holds or `within` passes.
async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The store contract (the same as MemoryStore's)

async fn store_contract_insert_load_compare_and_swap_and_collision(server: RedisBackend) {
    let store = store(&server, "qrtest:").await;
    let mut admin = admin(&server).await;

    let unknown = QrCodeId::generate().unwrap();
    assert!(store.load(&unknown).await.unwrap().is_none());

    let r1 = record(1);
    let retain = now_ms() + 90_000;
    store.insert(&r1, retain).await.expect("insert");
    let loaded = store.load(&r1.id).await.unwrap().expect("stored");
    assert_eq!(fingerprint(&loaded), fingerprint(&r1));
    let pexpiretime: i64 = redis::cmd("PEXPIRETIME")
        .arg(store.key_of_session(&r1.id))
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(pexpiretime, retain as i64, "PEXPIREAT = retain_until_ms");

    // Collision: Conflict, nothing overwritten.
    let mut clash = record(1);
    clash.id = r1.id.clone();
    match store.insert(&clash, retain).await {
        Err(Error::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(
        fingerprint(&store.load(&r1.id).await.unwrap().unwrap()),
        fingerprint(&r1)
    );

    // Every field changes (and optional ones appear).
    let mut r2 = r1.clone();
    r2.version = 2;
    r2.state = QrState::Scanned;
    r2.scanner = Some(Scanner {
        subject: "alice".into(),
        user: UserInfo {
            nickname: Some("Alice".into()),
            photo: None,
        },
        claims: serde_json::Map::new(),
        ip: Some(IpAddr::from([198, 51, 100, 4])),
    });
    r2.confirm_token_hash = Some(ConfirmToken::generate().unwrap().hash());
    r2.confirm_expire_at_ms = now_ms() + 60_000;
    r2.failed_attempts = 1;
    r2.match_code = Some("42".into());
    r2.nonce = Some("nonce-1".into());
    r2.provider_data = Some("upstream".into());

    // Wrong expected version: false, nothing written.
    assert!(!store.compare_and_swap(7, &r2).await.unwrap());
    assert_eq!(
        fingerprint(&store.load(&r1.id).await.unwrap().unwrap()),
        fingerprint(&r1)
    );
    assert!(store.compare_and_swap(1, &r2).await.unwrap());
    assert_eq!(
        fingerprint(&store.load(&r1.id).await.unwrap().unwrap()),
        fingerprint(&r2)
    );
    // Stale version now: false, nothing written.
    let mut stale = r2.clone();
    stale.version = 3;
    stale.state = QrState::Cancelled;
    assert!(!store.compare_and_swap(1, &stale).await.unwrap());
    assert_eq!(
        fingerprint(&store.load(&r1.id).await.unwrap().unwrap()),
        fingerprint(&r2)
    );

    // Optional fields that become empty disappear; the expiry stays.
    let mut r3 = r2.clone();
    r3.version = 3;
    r3.state = QrState::Confirmed;
    r3.confirm_token_hash = None;
    r3.match_code = None;
    r3.ticket_nonce = Some([5; 16]);
    r3.ticket_expire_at_ms = now_ms() + 30_000;
    assert!(store.compare_and_swap(2, &r3).await.unwrap());
    assert_eq!(
        fingerprint(&store.load(&r1.id).await.unwrap().unwrap()),
        fingerprint(&r3)
    );
    let after: i64 = redis::cmd("PEXPIRETIME")
        .arg(store.key_of_session(&r1.id))
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(after, retain as i64, "compare_and_swap keeps the expiry");

    // A missing session: false, and the key is not created.
    let ghost = record(1);
    let mut ghost2 = ghost.clone();
    ghost2.version = 2;
    assert!(!store.compare_and_swap(1, &ghost2).await.unwrap());
    let exists: i64 = redis::cmd("EXISTS")
        .arg(store.key_of_session(&ghost.id))
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(exists, 0);

    // wait_for_change: unknown → None; a version that already differs → at once; a foreign
    // binding → at once (only the bound browser may wait); the same version, or none given
    // (the version read first) → at the deadline, unchanged.
    let binding = r1.binding_hash;
    let soon = Instant::now() + Duration::from_millis(300);
    assert!(
        store
            .wait_for_change(&unknown, &binding, Some(1), soon)
            .await
            .unwrap()
            .is_none()
    );
    let started = Instant::now();
    let now = store
        .wait_for_change(&r1.id, &binding, Some(1), soon)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.version, 3);
    assert!(started.elapsed() < Duration::from_millis(200));
    let started = Instant::now();
    let foreign = BindingSecret::generate().unwrap().hash();
    let now = store
        .wait_for_change(&r1.id, &foreign, Some(3), soon)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.version, 3);
    assert!(started.elapsed() < Duration::from_millis(200));
    let now = store
        .wait_for_change(&r1.id, &binding, Some(3), soon)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.version, 3);
    assert!(Instant::now() >= soon);
    let later = Instant::now() + Duration::from_millis(300);
    let now = store
        .wait_for_change(&r1.id, &binding, None, later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.version, 3);
    assert!(Instant::now() >= later);
    assert_eq!(store.live_waiters(), 0);
    assert_eq!(store.watched_sessions(), 0);
}

async fn store_contract_put_ticket_is_idempotent_and_take_ticket_is_exactly_once(
    server: RedisBackend,
) {
    let store = store(&server, "qrtest:").await;

    // take_ticket hands back the session the handle names, as it is now: the sessions exist.
    let first = record(1);
    let second = record(1);
    for r in [&first, &second] {
        store.insert(r, now_ms() + 90_000).await.unwrap();
    }
    let handle = SecretHash::from_bytes([7; 32]);
    let exp = now_ms() + 60_000;
    store.put_ticket(&handle, &first.id, exp).await.unwrap();
    store.put_ticket(&handle, &first.id, exp).await.unwrap();
    // Registering the same handle again is a no-op, even with another id.
    store.put_ticket(&handle, &second.id, exp).await.unwrap();
    let taken = store.take_ticket(&handle).await.unwrap().expect("ticket");
    assert_eq!(taken.id.as_str(), first.id.as_str());
    assert_eq!(fingerprint(&taken), fingerprint(&first));
    assert!(store.take_ticket(&handle).await.unwrap().is_none());

    // An expired handle is gone.
    let short = SecretHash::from_bytes([8; 32]);
    store
        .put_ticket(&short, &first.id, now_ms() + 100)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(store.take_ticket(&short).await.unwrap().is_none());

    // A handle whose session is gone gives nothing, and is burnt all the same.
    let orphan = SecretHash::from_bytes([9; 32]);
    let ghost = QrCodeId::generate().unwrap();
    store
        .put_ticket(&orphan, &ghost, now_ms() + 60_000)
        .await
        .unwrap();
    assert!(store.take_ticket(&orphan).await.unwrap().is_none());
    let mut admin = admin(&server).await;
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("qrtest:t:*")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(left.is_empty(), "ticket handles left: {left:?}");

    // 50 concurrent takers, several rounds: exactly one winner each time.
    for round in 0..5u8 {
        let handle = SecretHash::from_bytes([round + 10; 32]);
        let session = record(1);
        store.insert(&session, now_ms() + 90_000).await.unwrap();
        let id = session.id.clone();
        store
            .put_ticket(&handle, &id, now_ms() + 60_000)
            .await
            .unwrap();
        let barrier = Arc::new(Barrier::new(50));
        let takers: Vec<_> = (0..50)
            .map(|_| {
                let store = store.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.take_ticket(&handle).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in takers {
            if let Some(record) = t.await.unwrap().expect("take_ticket") {
                winners.push(record.id);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one taker wins");
        assert_eq!(winners[0].as_str(), id.as_str());
    }
}

async fn store_contract_rate_limiter_counts_in_redis_for_every_replica(server: RedisBackend) {
    let a = store(&server, "qrauth:").await;
    let b = store(&server, "qrauth:").await;
    let mut admin = admin(&server).await;
    let (on_a, on_b) = (a.rate_limiter(), b.rate_limiter());
    let window = Duration::from_secs(60);

    // One budget for the key, whichever replica counts the hit.
    assert_eq!(on_a.hit("gen:203.0.113.9", 2, window).await.unwrap(), None);
    assert_eq!(on_b.hit("gen:203.0.113.9", 2, window).await.unwrap(), None);
    let retry = on_a
        .hit("gen:203.0.113.9", 2, window)
        .await
        .unwrap()
        .expect("the third hit, on A after hits on A and B, is over the limit");
    assert!(retry > Duration::ZERO && retry <= window, "{retry:?}");
    assert!(
        on_b.hit("gen:203.0.113.9", 2, window)
            .await
            .unwrap()
            .is_some()
    );
    // Another key has its own budget.
    assert_eq!(on_b.hit("gen:198.51.100.1", 2, window).await.unwrap(), None);

    // The counters live under the store's prefix and do not name the client.
    let keys = all_keys(&mut admin).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("qrauth:")), "{keys:?}");
    assert!(keys.iter().all(|k| !k.contains("203.0.113.9")), "{keys:?}");

    // Services on the store use it: two replicas share one generate budget per address.
    let key = es256();
    let limited = |store: RedisStore| {
        let provider = BuiltinProvider::builder(Arc::new(TestPhones))
            .signing_key(key.clone())
            .build()
            .expect("provider");
        let service = QrAuthService::builder(Arc::new(provider))
            .store(store)
            .limits(Limits::default().generate_per_minute(2))
            .build()
            .expect("service");
        Client::new(service)
    };
    let (replica_a, replica_b) = (limited(a), limited(b));
    let peer: Option<IpAddr> = Some("192.0.2.77".parse().unwrap());
    for replica in [&replica_a, &replica_b] {
        let binding = BindingSecret::generate().unwrap();
        replica
            .generate_from(&binding, None, peer, None)
            .await
            .expect("within the shared budget");
    }
    let binding = BindingSecret::generate().unwrap();
    match replica_a.generate_from(&binding, None, peer, None).await {
        Err(Error::SlowDown { retry_after }) => assert!(retry_after > Duration::ZERO),
        other => panic!("expected SlowDown after two generates on two replicas, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The whole flow on Redis

async fn full_flow_through_the_builtin_provider_and_one_exchange_of_fifty(server: RedisBackend) {
    let replica = Replica::new(&server, "qrauth:", Lifetimes::default(), &es256()).await;

    let (binding, id) = replica.pending().await;
    let status = replica.client.poll(&id, &binding).await.unwrap();
    assert_eq!(status.state, QrState::Pending);
    assert!(status.ticket.is_none());

    let outcome = replica.client.scan(&id, ALICE).await.unwrap();
    assert_eq!(outcome.context.browser, "Chrome on Windows");
    assert_eq!(outcome.context.ip.as_deref(), Some("203.0.113.9"));
    assert!(matches!(
        replica.client.scan(&id, BOB).await,
        Err(Error::Conflict(_))
    ));
    let status = replica.client.poll(&id, &binding).await.unwrap();
    assert_eq!(status.state, QrState::Scanned);
    assert_eq!(
        status.user.and_then(|u| u.nickname).as_deref(),
        Some("Alice")
    );
    // Someone else's binding learns nothing.
    let stranger = BindingSecret::generate().unwrap();
    assert!(matches!(
        replica.client.poll(&id, &stranger).await,
        Err(Error::NotBound)
    ));

    let state = replica
        .client
        .confirm(&id, &outcome.confirm_token, ALICE)
        .await
        .unwrap();
    assert_eq!(state, QrState::Confirmed);
    let status = replica.client.poll(&id, &binding).await.unwrap();
    assert_eq!(status.state, QrState::Confirmed);
    let ticket = status.ticket.expect("ticket for the bound browser");

    // 50 concurrent exchanges of the one ticket: exactly one token set.
    let barrier = Arc::new(Barrier::new(50));
    let exchanges: Vec<_> = (0..50)
        .map(|_| {
            let client = replica.client.clone();
            let (ticket, binding, barrier) = (ticket.clone(), binding.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                client.exchange(&ticket, &binding).await
            })
        })
        .collect();
    let mut tokens: Vec<TokenSet> = Vec::new();
    for e in exchanges {
        match e.await.unwrap() {
            Ok(t) => tokens.push(t),
            Err(Error::InvalidTicket) => {}
            Err(other) => panic!("a losing exchange must be invalid_ticket, got {other:?}"),
        }
    }
    assert_eq!(tokens.len(), 1, "exactly one exchange wins");
    let claims = replica.provider.verify(&tokens[0].id_token).await.unwrap();
    assert_eq!(claims.sub, "alice");

    // Consumed: no second login from the same QR.
    let after = replica.stored(&id).await;
    assert_eq!(after.state, QrState::Consumed);
    assert!(matches!(
        replica.client.exchange(&ticket, &binding).await,
        Err(Error::InvalidTicket)
    ));
}

// ---------------------------------------------------------------------------------------------
// Two replicas on one Redis

async fn two_replicas_confirm_versus_cancel_has_exactly_one_winner(server: RedisBackend) {
    let key = es256();
    let a = Arc::new(Replica::new(&server, "qrauth:", Lifetimes::default(), &key).await);
    let b = Arc::new(Replica::new(&server, "qrauth:", Lifetimes::default(), &key).await);

    for round in 0..5 {
        let (binding, id, token) = a.scanned().await;
        let barrier = Arc::new(Barrier::new(100));
        let racers: Vec<_> = (0..100)
            .map(|i| {
                let replica = if i % 2 == 0 { a.clone() } else { b.clone() };
                let (id, token, barrier) = (id.clone(), token.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let phone_api = &replica.client;
                    let result = if i % 4 < 2 {
                        phone_api.confirm(&id, &token, ALICE).await
                    } else {
                        phone_api.cancel(&id, &token, ALICE).await
                    };
                    result.ok()
                })
            })
            .collect();
        let mut winners = Vec::new();
        for r in racers {
            if let Some(state) = r.await.unwrap() {
                winners.push(state);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let stored = b.stored(&id).await;
        assert_eq!(stored.state, winners[0], "the store agrees with the winner");
        assert_eq!(stored.version, 3, "exactly one transition after scan");
        let status = b.client.poll(&id, &binding).await.unwrap();
        assert_eq!(status.state, winners[0]);
    }
}

async fn two_replicas_waiter_on_b_wakes_when_a_confirms(server: RedisBackend) {
    let key = es256();
    let a = Replica::new(&server, "qrauth:", Lifetimes::default(), &key).await;
    let b = Arc::new(Replica::new(&server, "qrauth:", Lifetimes::default(), &key).await);

    let mut latencies = Vec::new();
    for _ in 0..20 {
        let (binding, id, token) = a.scanned().await;
        let since = b.client.poll(&id, &binding).await.unwrap().version;
        let waiter = {
            let b = b.clone();
            let (id, binding) = (id.clone(), binding.clone());
            tokio::spawn(async move {
                let status = b
                    .client
                    .wait_for_change(&id, &binding, since, Duration::from_secs(5))
                    .await;
                (status, Instant::now())
            })
        };
        assert!(
            eventually(Duration::from_secs(2), || b.store.live_waiters() == 1).await,
            "the waiter registers on B"
        );
        let confirm_started = Instant::now();
        a.client.confirm(&id, &token, ALICE).await.unwrap();
        let (status, woke_at) = waiter.await.unwrap();
        let status = status.expect("status");
        let latency = woke_at.duration_since(confirm_started);
        assert_eq!(status.state, QrState::Confirmed);
        assert!(
            status.ticket.is_some(),
            "B hands the ticket to the bound browser"
        );
        assert!(
            latency < Duration::from_secs(1),
            "lost wake-up: B answered after {latency:?}"
        );
        latencies.push(latency);
        assert!(eventually(Duration::from_secs(1), || b.store.live_waiters() == 0).await);
    }
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "confirm on A -> waiter on B answers: p50 {:?}, p99 {:?}, max {:?} ({} runs)",
        pct(50),
        pct(99),
        latencies[latencies.len() - 1],
        latencies.len()
    );
    assert_eq!(b.store.watched_sessions(), 0);
}

async fn two_replicas_fifty_exchanges_spread_over_both_give_one_token_set(server: RedisBackend) {
    let key = es256();
    let a = Arc::new(Replica::new(&server, "qrauth:", Lifetimes::default(), &key).await);
    let b = Arc::new(Replica::new(&server, "qrauth:", Lifetimes::default(), &key).await);

    // The phone confirms on A; the browser polls B and exchanges on both.
    let (binding, id, token) = a.scanned().await;
    a.client.confirm(&id, &token, ALICE).await.unwrap();
    let ticket = b
        .client
        .poll(&id, &binding)
        .await
        .unwrap()
        .ticket
        .expect("ticket");
    let barrier = Arc::new(Barrier::new(50));
    let exchanges: Vec<_> = (0..50)
        .map(|i| {
            let replica = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (ticket, binding, barrier) = (ticket.clone(), binding.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                replica.client.exchange(&ticket, &binding).await
            })
        })
        .collect();
    let mut won = 0;
    for e in exchanges {
        match e.await.unwrap() {
            Ok(tokens) => {
                won += 1;
                // Both replicas share the signing key: either verifies.
                a.provider.verify(&tokens.id_token).await.unwrap();
                b.provider.verify(&tokens.id_token).await.unwrap();
            }
            Err(Error::InvalidTicket) => {}
            Err(other) => panic!("expected invalid_ticket, got {other:?}"),
        }
    }
    assert_eq!(won, 1);
}

// ---------------------------------------------------------------------------------------------
// Losing the subscriber, losing Redis

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_subscriber_still_gives_the_final_state_and_reconnects() {
    let server = RedisServer::start();
    let store = store(&server, "qrauth:").await;
    let mut admin = admin(&server).await;
    assert!(store.subscriber_connected());

    let r1 = record(1);
    store.insert(&r1, now_ms() + 60_000).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let waiter = {
        let (store, id, binding) = (store.clone(), r1.id.clone(), r1.binding_hash);
        tokio::spawn(async move {
            store
                .wait_for_change(&id, &binding, Some(1), deadline)
                .await
        })
    };
    assert!(eventually(Duration::from_secs(2), || store.live_waiters() == 1).await);
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Kill the subscriber and change the session in one atomic step: the change is never
    // published to this store's subscriber.
    let started = Instant::now();
    let _: redis::Value = redis::pipe()
        .atomic()
        .cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .cmd("HSET")
        .arg(store.key_of_session(&r1.id))
        .arg("version")
        .arg("2")
        .arg("state")
        .arg("scanned")
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL + HSET");
    let seen = waiter.await.unwrap().expect("wait").expect("record");
    let took = started.elapsed();
    assert_eq!(seen.version, 2);
    assert_eq!(seen.state, QrState::Scanned);
    assert!(Instant::now() <= deadline + Duration::from_millis(200));
    assert!(
        took < Duration::from_secs(2),
        "the lost subscriber must make waiters re-read, took {took:?}"
    );
    println!("waiter saw the unpublished change {took:?} after the subscriber was killed");

    // The subscriber comes back by itself, and later changes wake waiters again.
    let mut resubscribed = false;
    for _ in 0..300 {
        let numpat: i64 = redis::cmd("PUBSUB")
            .arg("NUMPAT")
            .query_async(&mut admin)
            .await
            .unwrap();
        if numpat == 1 && store.subscriber_connected() {
            resubscribed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(resubscribed, "the subscriber reconnects");
    let waiter = {
        let (store, id, binding) = (store.clone(), r1.id.clone(), r1.binding_hash);
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            let r = store
                .wait_for_change(&id, &binding, Some(2), deadline)
                .await;
            (r, Instant::now())
        })
    };
    assert!(eventually(Duration::from_secs(2), || store.live_waiters() == 1).await);
    let mut r3 = store.load(&r1.id).await.unwrap().unwrap();
    r3.version = 3;
    r3.state = QrState::Cancelled;
    let changed_at = Instant::now();
    assert!(store.compare_and_swap(2, &r3).await.unwrap());
    let (seen, woke_at) = waiter.await.unwrap();
    let seen = seen.unwrap().unwrap();
    assert_eq!(seen.version, 3);
    assert_eq!(seen.state, QrState::Cancelled);
    let latency = woke_at.duration_since(changed_at);
    assert!(latency < Duration::from_secs(1), "woke after {latency:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_poll_while_the_subscriber_cannot_resubscribe() {
    let server = RedisServer::start();
    let store = store(&server, "qrauth:").await;
    let mut admin = admin(&server).await;
    let r1 = record(1);
    store.insert(&r1, now_ms() + 60_000).await.unwrap();
    let waiter = {
        let (store, id, binding) = (store.clone(), r1.id.clone(), r1.binding_hash);
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            let r = store
                .wait_for_change(&id, &binding, Some(1), deadline)
                .await;
            (r, Instant::now())
        })
    };
    assert!(eventually(Duration::from_secs(2), || store.live_waiters() == 1).await);

    // Revoking channel access drops the subscriber and keeps it from coming back.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("resetchannels")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(2), || !store.subscriber_connected()).await,
        "the subscriber notices it is gone"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A change nobody can publish: the waiter finds it by polling.
    let changed_at = Instant::now();
    let _: () = redis::cmd("HSET")
        .arg(store.key_of_session(&r1.id))
        .arg("version")
        .arg("2")
        .query_async(&mut admin)
        .await
        .unwrap();
    let (seen, woke_at) = waiter.await.unwrap();
    assert_eq!(seen.unwrap().unwrap().version, 2);
    let latency = woke_at.duration_since(changed_at);
    assert!(
        latency < Duration::from_millis(1500),
        "polling took {latency:?}"
    );
    println!("without a subscriber, a waiter saw the change after {latency:?}");

    // Access back: the subscriber resubscribes by itself and pushes again.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("allchannels")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || store.subscriber_connected()).await,
        "the subscriber comes back"
    );
    let waiter = {
        let (store, id, binding) = (store.clone(), r1.id.clone(), r1.binding_hash);
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            let r = store
                .wait_for_change(&id, &binding, Some(2), deadline)
                .await;
            (r, Instant::now())
        })
    };
    assert!(eventually(Duration::from_secs(2), || store.live_waiters() == 1).await);
    let mut next = store.load(&r1.id).await.unwrap().unwrap();
    next.version = 3;
    let changed_at = Instant::now();
    assert!(store.compare_and_swap(2, &next).await.unwrap());
    let (seen, woke_at) = waiter.await.unwrap();
    assert_eq!(seen.unwrap().unwrap().version, 3);
    assert!(woke_at.duration_since(changed_at) < Duration::from_millis(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_is_store_unavailable_and_restart_recovers() {
    let mut server = RedisServer::start();
    let timeout = Duration::from_millis(500);
    let replica =
        Replica::with_timeout(&server, "qrauth:", Lifetimes::default(), &es256(), timeout).await;
    let (binding, id, token) = replica.scanned().await;
    let handle = SecretHash::from_bytes([1; 32]);

    server.stop();

    let bound = timeout + Duration::from_millis(300);
    for attempt in 0..2 {
        macro_rules! check {
            ($what:expr, $call:expr) => {{
                let started = Instant::now();
                let result = $call.await;
                let took = started.elapsed();
                assert_unavailable(result, $what);
                assert!(took <= bound, "{} (attempt {attempt}) took {took:?}", $what);
            }};
        }
        check!("generate", replica.client.generate(&binding));
        check!("poll", replica.client.poll(&id, &binding));
        check!("confirm", replica.client.confirm(&id, &token, ALICE));
        check!(
            "wait_for_change",
            replica
                .client
                .wait_for_change(&id, &binding, 2, Duration::from_secs(3))
        );
        check!(
            "put_ticket",
            replica.store.put_ticket(&handle, &id, now_ms() + 1000)
        );
        check!("take_ticket", replica.store.take_ticket(&handle));
        check!("load", replica.store.load(&id));
        let e = Error::StoreUnavailable(String::new());
        assert_eq!(e.status().as_u16(), 503);
        assert_eq!(e.code(), "store_unavailable");
        assert_eq!(e.retry_after(), Some(1));
    }

    server.restart();

    // The same store instance recovers by itself: new flows work.
    let started = Instant::now();
    let mut recovered = false;
    while started.elapsed() < Duration::from_secs(10) {
        let binding = BindingSecret::generate().unwrap();
        if replica.client.generate(&binding).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "no recovery 10 s after Redis came back");
    println!("recovered {:?} after restart", started.elapsed());
    let (binding, id, _token, ticket) = replica.confirmed().await;
    let tokens = replica.client.exchange(&ticket, &binding).await.unwrap();
    assert!(!tokens.id_token.is_empty());
    assert!(matches!(
        replica.client.exchange(&ticket, &binding).await,
        Err(Error::InvalidTicket)
    ));
    let _ = id;

    // And the subscriber is back: a waiter wakes on a change.
    assert!(
        eventually(Duration::from_secs(5), || replica
            .store
            .subscriber_connected())
        .await,
        "subscriber reconnects after the restart"
    );
    let (binding, id, token) = replica.scanned().await;
    let since = replica.client.poll(&id, &binding).await.unwrap().version;
    let waiter = {
        let client = replica.client.clone();
        let (id, binding) = (id.clone(), binding.clone());
        tokio::spawn(async move {
            let s = client
                .wait_for_change(&id, &binding, since, Duration::from_secs(5))
                .await;
            (s, Instant::now())
        })
    };
    assert!(eventually(Duration::from_secs(2), || replica.store.live_waiters() == 1).await);
    let confirmed_at = Instant::now();
    replica.client.confirm(&id, &token, ALICE).await.unwrap();
    let (status, woke_at) = waiter.await.unwrap();
    assert_eq!(status.unwrap().state, QrState::Confirmed);
    assert!(woke_at.duration_since(confirmed_at) < Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------------
// What Redis holds

async fn keys_expire_five_seconds_after_the_qr_lifetime(server: RedisBackend) {
    let prefix = "qrexp:";
    let lifetimes = Lifetimes::default()
        .allow_short_for_tests()
        .qr_code(Duration::from_secs(2))
        .confirm_token(Duration::from_secs(1))
        .ticket(Duration::from_secs(1))
        .retention_grace(Duration::from_secs(1));
    let replica = Replica::new(&server, prefix, lifetimes, &es256()).await;
    let mut admin = admin(&server).await;
    let first_created = Instant::now();

    // Left pending, left scanned, left confirmed with a ticket handle, completed.
    let _pending = replica.pending().await;
    let _scanned = replica.scanned().await;
    let _confirmed = replica.confirmed().await;
    let (binding, _, _, ticket) = replica.confirmed().await;
    replica.client.exchange(&ticket, &binding).await.unwrap();

    let keys = all_keys(&mut admin).await;
    assert_eq!(
        keys.iter().filter(|k| k.starts_with("qrexp:s:")).count(),
        4,
        "{keys:?}"
    );
    assert_eq!(
        keys.iter().filter(|k| k.starts_with("qrexp:t:")).count(),
        1,
        "{keys:?}"
    );
    for key in &keys {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut admin)
            .await
            .unwrap();
        assert!(pttl > 0, "{key} has no expiry ({pttl})");
    }

    tokio::time::sleep_until(first_created + Duration::from_secs(2 + 5)).await;
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut admin)
        .await
        .unwrap();
    // What outlives the QR: the signed-in session of the exchange (with its expiry, checked
    // above) and its subject's index.
    let qr_keys: Vec<&String> = left
        .iter()
        .filter(|k| !k.starts_with("qrexp:si:") && !k.starts_with("qrexp:su:"))
        .collect();
    assert!(qr_keys.is_empty(), "keys left behind: {left:?}");
    assert_eq!(
        left.len(),
        2,
        "one signed-in session and its index: {left:?}"
    );
}

async fn store_dump_holds_no_binding_secret_ticket_or_confirm_token(server: RedisBackend) {
    let replica = Replica::new(&server, "qrauth:", Lifetimes::default(), &es256()).await;
    let mut admin = admin(&server).await;

    // A completed login, a confirmed one whose ticket the browser fetched, a scanned one.
    let (b1, _, c1, t1) = replica.confirmed().await;
    let tokens = replica.client.exchange(&t1, &b1).await.unwrap();
    let (b2, id2, c2, t2) = replica.confirmed().await;
    let (b3, id3, c3) = replica.scanned().await;
    // The binding cookies the service minted for the three browsers: what must not leak.
    let [b1, b2, b3] = [&b1, &b2, &b3].map(|b| replica.client.cookie_binding(b));

    let dump = dump(&mut admin).await;
    // The dump is real: it holds the sessions, their binding hashes and a ticket handle.
    for (id, binding) in [(&id2, &b2), (&id3, &b3)] {
        assert!(contains(&dump, id.as_str().as_bytes()));
        assert!(contains(&dump, binding.hash().to_hex().as_bytes()));
    }
    assert!(contains(&dump, t2.hash().to_hex().as_bytes()));

    let secrets: Vec<(&str, &str)> = vec![
        ("binding secret", b1.expose_secret()),
        ("binding secret", b2.expose_secret()),
        ("binding secret", b3.expose_secret()),
        ("confirm token", c1.expose_secret()),
        ("confirm token", c2.expose_secret()),
        ("confirm token", c3.expose_secret()),
        ("ticket", t1.expose_secret()),
        ("ticket", t2.expose_secret()),
        ("id_token", &tokens.id_token),
        ("access_token", &tokens.access_token),
    ];
    for (what, secret) in secrets {
        assert!(
            !contains(&dump, secret.as_bytes()),
            "the Redis dump contains a raw {what}"
        );
    }
}

async fn dropped_waiters_leave_no_trace(server: RedisBackend) {
    let store = store(&server, "qrauth:").await;
    let mut records = Vec::new();
    for _ in 0..20 {
        let r = record(1);
        store.insert(&r, now_ms() + 60_000).await.unwrap();
        records.push(r);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            let r = &records[i % records.len()];
            let (id, binding) = (r.id.clone(), r.binding_hash);
            tokio::spawn(async move {
                store
                    .wait_for_change(&id, &binding, Some(1), deadline)
                    .await
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(5), || store.live_waiters() == 200).await,
        "200 waiters register (got {})",
        store.live_waiters()
    );
    assert_eq!(store.watched_sessions(), 20);

    let dropped_at = Instant::now();
    for t in &tasks {
        t.abort();
    }
    assert!(
        eventually(Duration::from_secs(1), || store.live_waiters() == 0
            && store.watched_sessions() == 0)
        .await,
        "waiters left: {}, sessions watched: {}",
        store.live_waiters(),
        store.watched_sessions()
    );
    println!("200 aborted waiters gone in {:?}", dropped_at.elapsed());
    for t in tasks {
        assert!(t.await.unwrap_err().is_cancelled());
    }

    // A change to a session nobody waits for any more is harmless.
    let mut next = records[0].clone();
    next.version = 2;
    assert!(store.compare_and_swap(1, &next).await.unwrap());
    assert_eq!(store.live_waiters(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_usage_of_a_pending_session() {
    let server = RedisServer::start();
    let replica = Replica::new(&server, "qrauth:", Lifetimes::default(), &es256()).await;
    let mut admin = admin(&server).await;

    let (_, pending) = replica.pending().await;
    let (_, scanned, _) = replica.scanned().await;
    let mut usage = Vec::new();
    for (what, id) in [("pending", &pending), ("scanned", &scanned)] {
        let key = replica.store.key_of_session(id);
        let bytes: i64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut admin)
            .await
            .unwrap();
        let encoding: String = redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(&key)
            .query_async(&mut admin)
            .await
            .unwrap();
        println!("MEMORY USAGE of a {what} session hash: {bytes} bytes ({encoding})");
        usage.push(bytes);
    }
    assert!(
        usage[0] < 2048,
        "a pending session takes {} bytes",
        usage[0]
    );
    assert!(
        usage[1] < 4096,
        "a scanned session takes {} bytes",
        usage[1]
    );
}

// ---------------------------------------------------------------------------------------------
// Connecting

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_rejects_bad_configuration_and_unreachable_servers() {
    assert!(matches!(
        RedisStore::connect("no-such-scheme://x").await,
        Err(Error::Config(_))
    ));
    assert!(matches!(
        RedisStore::builder("redis://127.0.0.1:1/")
            .key_prefix("qr*:")
            .connect()
            .await,
        Err(Error::Config(_))
    ));
    // Nothing listens there: unavailable, quickly.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let result = RedisStore::builder(format!("redis://127.0.0.1:{port}/"))
        .command_timeout(Duration::from_millis(300))
        .connect()
        .await;
    assert_unavailable(result, "connect to a closed port");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_fails_clearly_without_getdel() {
    let server = RedisServer::start_with_args(&["--rename-command", "GETDEL", ""]);
    match RedisStore::connect(&server.url()).await {
        Err(Error::Config(message)) => {
            assert!(message.contains("GETDEL"), "{message}");
            assert!(message.contains("6.2"), "{message}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// One holder at a time across stores on one Redis: renewing is the holder's alone, a release
/// hands over at once, an unrenewed lease lapses after its TTL. `MemoryStore` keeps the same
/// contract within a process.
async fn leases_have_one_holder_across_replicas(server: RedisBackend) {
    let a = store(&server, "qrtest:").await;
    let b = store(&server, "qrtest:").await;
    let memory = qrauth_core::store::MemoryStore::new();
    let stores: [(&dyn SessionStore, &dyn SessionStore); 2] = [(&a, &b), (&memory, &memory)];
    for (first, second) in stores {
        // Long enough that the steps before the lapse never outlast it on a loaded machine.
        let ttl = Duration::from_millis(1500);
        assert!(first.lease("up:x", "loop-a", ttl).await.unwrap());
        assert!(!second.lease("up:x", "loop-b", ttl).await.unwrap());
        assert!(
            first.lease("up:x", "loop-a", ttl).await.unwrap(),
            "the holder renews"
        );
        assert!(
            second.lease("up:y", "loop-b", ttl).await.unwrap(),
            "leases are per name"
        );
        // A release by someone else changes nothing; the holder's hands over at once.
        second.release_lease("up:x", "loop-b").await.unwrap();
        assert!(!second.lease("up:x", "loop-b", ttl).await.unwrap());
        first.release_lease("up:x", "loop-a").await.unwrap();
        assert!(second.lease("up:x", "loop-b", ttl).await.unwrap());
        // Unrenewed, it lapses.
        tokio::time::sleep(ttl + Duration::from_millis(500)).await;
        assert!(first.lease("up:x", "loop-a", ttl).await.unwrap());
    }
    // The layout: `{prefix}l:{name}` holds the holder.
    assert!(
        a.lease("up:z", "loop-a", Duration::from_secs(30))
            .await
            .unwrap()
    );
    let mut admin = admin(&server).await;
    let holder: Option<String> = redis::cmd("GET")
        .arg("qrtest:l:up:z")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(holder.as_deref(), Some("loop-a"));
}

/// Signed-in sessions: the per-subject cap ends the oldest, `list` reads sessions from every
/// slot, a revocation on one store is seen by another.
async fn signed_in_contract_cap_list_and_revoke(server: RedisBackend) {
    use qrauth_core::store::{MAX_SESSIONS_PER_SUBJECT, SignedInSession};
    let a = store(&server, "qrauth:").await;
    let b = store(&server, "qrauth:").await;
    let (on_a, on_b) = (a.signed_in(), b.signed_in());
    let now = now_ms();
    let mut ids = Vec::new();
    for i in 0..MAX_SESSIONS_PER_SUBJECT + 2 {
        let session = SignedInSession::sample("alice", now + i as u64).expect("sample");
        let on = if i % 2 == 0 { &on_a } else { &on_b };
        on.create(&session).await.expect("create");
        ids.push(session.id);
    }
    let other = SignedInSession::sample("bob", now).expect("sample");
    on_a.create(&other).await.expect("create");
    let at = now + ids.len() as u64;

    let listed = on_b.list("alice", at).await.expect("list");
    assert_eq!(listed.len(), MAX_SESSIONS_PER_SUBJECT);
    assert_eq!(
        listed[0].id.as_str(),
        ids[ids.len() - 1].as_str(),
        "newest first"
    );
    for old in &ids[..2] {
        assert!(
            on_a.load(old, at).await.unwrap().is_none(),
            "over the cap: ended"
        );
        assert!(!on_b.is_active(old, at).await.unwrap());
    }
    assert!(on_b.is_active(&ids[2], at).await.unwrap());
    assert_eq!(on_a.list("bob", at).await.unwrap().len(), 1);

    // Revoked on A: B's answer (even one cached as alive) turns within a second.
    assert!(on_b.is_active(&ids[5], at).await.unwrap());
    assert!(on_a.revoke(&ids[5]).await.unwrap());
    let mut refused = false;
    for _ in 0..50 {
        if !on_b.is_active(&ids[5], at).await.unwrap() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "B still accepts a session revoked on A");
    assert!(!on_b.revoke(&ids[5]).await.unwrap(), "idempotent");
    assert_eq!(
        on_b.list("alice", at).await.unwrap().len(),
        MAX_SESSIONS_PER_SUBJECT - 1
    );

    if let Some(nodes) = server.as_cluster() {
        for primary in nodes.primaries() {
            let held = nodes
                .keys_on(primary.port)
                .iter()
                .filter(|k| k.starts_with("qrauth:si:"))
                .count();
            assert!(
                held > 0,
                "primary {} holds no signed-in session",
                primary.port
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests above that take a backend, on one Redis and on a 3-primary cluster

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod single {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(qrauth_test_support::RedisBackend::start(false).await).await
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(qrauth_test_support::RedisBackend::start(true).await).await
                }
            )*
        }
    };
}

on_both_backends!(
    leases_have_one_holder_across_replicas,
    signed_in_contract_cap_list_and_revoke,
    store_contract_insert_load_compare_and_swap_and_collision,
    store_contract_put_ticket_is_idempotent_and_take_ticket_is_exactly_once,
    store_contract_rate_limiter_counts_in_redis_for_every_replica,
    full_flow_through_the_builtin_provider_and_one_exchange_of_fifty,
    two_replicas_confirm_versus_cancel_has_exactly_one_winner,
    two_replicas_waiter_on_b_wakes_when_a_confirms,
    two_replicas_fifty_exchanges_spread_over_both_give_one_token_set,
    keys_expire_five_seconds_after_the_qr_lifetime,
    store_dump_holds_no_binding_secret_ticket_or_confirm_token,
    dropped_waiters_leave_no_trace,
);

// ---------------------------------------------------------------------------------------------
// Cluster only: slots, failover, migration

/// Starts a cluster off the runtime (it blocks while the nodes agree).
async fn cluster(primaries: usize, replicas: usize) -> RedisBackend {
    tokio::task::spawn_blocking(move || {
        RedisBackend::Cluster(qrauth_test_support::RedisCluster::start(
            primaries, replicas,
        ))
    })
    .await
    .expect("start the cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_keys_of_one_session_share_a_slot_and_sessions_spread_over_all_primaries() {
    let backend = cluster(3, 0).await;
    let nodes = backend.as_cluster().expect("a cluster");
    let replica = Replica::new(&backend, "qrauth:", Lifetimes::default(), &es256()).await;
    assert!(replica.store.is_cluster());

    let mut ids = Vec::new();
    for _ in 0..60 {
        let (_, id) = replica.pending().await;
        ids.push(id);
    }
    // Each session's hash and channel hash to one slot (the id is the hash tag).
    for id in &ids {
        let key = replica.store.key_of_session(id);
        assert_eq!(key, format!("qrauth:s:{{{}}}", id.as_str()));
        let channel = format!("qrauth:ev:{{{}}}", id.as_str());
        assert_eq!(nodes.slot_of(&key), nodes.slot_of(&channel), "{key}");
    }
    // 60 random ids over 3 primaries: every primary holds some (a miss has odds 3·(2/3)^60).
    let primaries = nodes.primaries();
    assert_eq!(primaries.len(), 3);
    for primary in &primaries {
        let held = nodes
            .keys_on(primary.port)
            .iter()
            .filter(|k| k.starts_with("qrauth:s:"))
            .count();
        assert!(held > 0, "primary {} holds no session", primary.port);
        println!("primary {} holds {held} of 60 sessions", primary.port);
    }

    // A completed login's signed-in session also lives in the slot of its own id.
    let (binding, _, _, ticket) = replica.confirmed().await;
    replica.client.exchange(&ticket, &binding).await.unwrap();
    let mut admin = admin(&backend).await;
    let signed_in: Vec<String> = all_keys(&mut admin)
        .await
        .into_iter()
        .filter(|k| k.starts_with("qrauth:si:"))
        .collect();
    assert_eq!(signed_in.len(), 1, "{signed_in:?}");
    let sid = signed_in[0]
        .strip_prefix("qrauth:si:{")
        .and_then(|k| k.strip_suffix('}'))
        .expect("si:{sid}");
    assert_eq!(
        nodes.slot_of(&signed_in[0]),
        nodes.slot_of(&format!("qrauth:ev:~out:{{{sid}}}"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_slot_migrated_during_a_long_poll_still_wakes_the_waiter() {
    let backend = cluster(3, 0).await;
    let nodes = backend.as_cluster().expect("a cluster");
    let key = es256();
    let a = Replica::new(&backend, "qrauth:", Lifetimes::default(), &key).await;
    let b = Replica::new(&backend, "qrauth:", Lifetimes::default(), &key).await;

    for round in 0..3 {
        let (binding, id, token) = a.scanned().await;
        let waiter = b.spawn_long_poll(&id, &binding).await;
        assert!(eventually(Duration::from_secs(2), || b.store.live_waiters() == 1).await);

        // Move the session's slot (with its hash) to another primary while B waits.
        let slot = nodes.slot_of(&a.store.key_of_session(&id));
        let from = nodes.primary_of_slot(slot);
        let to = nodes
            .primaries()
            .into_iter()
            .find(|n| n.port != from.port)
            .expect("another primary");
        tokio::task::block_in_place(|| nodes.migrate_slot(slot, to.port));
        assert_eq!(nodes.primary_of_slot(slot).port, to.port, "round {round}");

        // Both replicas follow the move (MOVED): the confirm lands, the waiter wakes.
        let status = confirm_wakes(&a, waiter, &id, &token).await;
        assert!(status.ticket.is_some(), "round {round}");
        let stored = b.stored(&id).await;
        assert_eq!(stored.state, QrState::Confirmed);
    }
}

/// Confirms on `a` and returns what `waiter` (a long-poll elsewhere) answers: it must wake
/// with the confirmed state within 2 s, by the change message and not by a timeout.
async fn confirm_wakes(
    a: &Replica,
    waiter: tokio::task::JoinHandle<qrauth_core::Result<Status>>,
    id: &QrCodeId,
    token: &ConfirmToken,
) -> Status {
    let started = Instant::now();
    a.client.confirm(id, token, ALICE).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter wakes")
        .unwrap()
        .expect("status");
    assert_eq!(status.state, QrState::Confirmed);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "woken by the message, not by a timeout: {:?}",
        started.elapsed()
    );
    status
}

/// `PUBSUB {sub} {channel}` on one node: the channel's subscriber count there.
async fn subscribers_on(port: u16, sub: &str, channel: &str) -> i64 {
    let mut conn = node(&format!("redis://127.0.0.1:{port}/")).await;
    let reply: (String, i64) = redis::cmd("PUBSUB")
        .arg(sub)
        .arg(channel)
        .query_async(&mut conn)
        .await
        .expect("PUBSUB");
    reply.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_wake_ups_use_the_shard_channel_of_each_waited_session_and_drop_it_after() {
    let backend = cluster(3, 0).await;
    let nodes = backend.as_cluster().expect("a cluster");
    let key = es256();
    let a = Replica::new(&backend, "qrauth:", Lifetimes::default(), &key).await;
    let b = Replica::new(&backend, "qrauth:", Lifetimes::default(), &key).await;
    assert!(a.store.uses_sharded_pubsub() && b.store.uses_sharded_pubsub());

    for round in 0..3 {
        let (binding, id, token) = a.scanned().await;
        let channel = format!("qrauth:ev:{{{}}}", id.as_str());
        let owner = nodes.primary_of_slot(nodes.slot_of(&channel)).port;
        let waiter = b.spawn_long_poll(&id, &binding).await;
        // B subscribes to this session's shard channel, on the primary of its slot only.
        let mut subscribed = false;
        for _ in 0..200 {
            if subscribers_on(owner, "SHARDNUMSUB", &channel).await == 1 {
                subscribed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            subscribed,
            "round {round}: no SSUBSCRIBE {channel} on {owner}"
        );
        for primary in nodes.primaries() {
            if primary.port != owner {
                assert_eq!(
                    subscribers_on(primary.port, "SHARDNUMSUB", &channel).await,
                    0
                );
            }
            assert_eq!(subscribers_on(primary.port, "NUMSUB", &channel).await, 0);
        }

        // A's confirm (SPUBLISH inside the transition's script) wakes B at once.
        confirm_wakes(&a, waiter, &id, &token).await;

        // Nobody waits on it any more: the reaper unsubscribes it (about once a second).
        let mut dropped = false;
        for _ in 0..100 {
            if subscribers_on(owner, "SHARDNUMSUB", &channel).await == 0 {
                dropped = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(dropped, "round {round}: {channel} still subscribed");
        assert_eq!(b.store.watched_sessions(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_with_plain_pubsub_still_wakes_waiters_across_replicas() {
    let backend = cluster(3, 0).await;
    let key = es256();
    let plain = || async {
        let store = backend
            .builder()
            .sharded_pubsub(false)
            .connect()
            .await
            .expect("connect");
        assert!(store.is_cluster() && !store.uses_sharded_pubsub());
        Replica::with_store(store, Lifetimes::default(), &key)
    };
    let a = plain().await;
    let b = plain().await;
    let (binding, id, token) = a.scanned().await;
    let waiter = b.spawn_long_poll(&id, &binding).await;
    assert!(eventually(Duration::from_secs(2), || b.store.live_waiters() == 1).await);
    confirm_wakes(&a, waiter, &id, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_primary_killed_mid_flow_fails_over_without_losing_or_doubling_a_login() {
    let mut backend = cluster(3, 1).await;
    let key = es256();
    // A short command timeout: calls to the dead primary's slots give up well before its
    // replica takes over (cluster-node-timeout 2 s, plus the election).
    let timeout = Duration::from_millis(700);
    let a = Replica::with_timeout(&backend, "qrauth:", Lifetimes::default(), &key, timeout).await;
    let b = Replica::with_timeout(&backend, "qrauth:", Lifetimes::default(), &key, timeout).await;

    // Confirmed logins (tickets shown, not yet exchanged) and scanned ones, on every primary.
    let mut confirmed = Vec::new();
    for _ in 0..24 {
        confirmed.push(a.confirmed().await);
    }
    let mut scanned = Vec::new();
    for _ in 0..24 {
        scanned.push(a.scanned().await);
    }
    let (victim, on_victim) = {
        let nodes = backend.as_cluster().expect("a cluster");
        // What the primaries acknowledged has reached their replicas.
        tokio::task::block_in_place(|| nodes.wait_replicated(Duration::from_secs(10)));
        let slot = nodes.slot_of(&a.store.key_of_session(&confirmed[0].1));
        let victim = nodes.primary_of_slot(slot);
        let on_victim = |id: &QrCodeId| {
            let slot = nodes.slot_of(&a.store.key_of_session(id));
            victim.slots.iter().any(|&(x, y)| x <= slot && slot <= y)
        };
        let on_victim: Vec<bool> = confirmed.iter().map(|c| on_victim(&c.1)).collect();
        (victim, on_victim)
    };
    assert!(on_victim.iter().any(|&v| v) && on_victim.iter().any(|&v| !v));

    let RedisBackend::Cluster(nodes) = &mut backend else {
        unreachable!()
    };
    nodes.kill(victim.port);

    // Until the replica takes over: the dead primary's slots are unavailable (503), the
    // others work as before.
    let dead = confirmed
        .iter()
        .zip(&on_victim)
        .find(|(_, v)| **v)
        .map(|(c, _)| c.1.clone())
        .unwrap();
    let alive = confirmed
        .iter()
        .zip(&on_victim)
        .find(|(_, v)| !**v)
        .map(|(c, _)| c.1.clone())
        .unwrap();
    match b.store.load(&dead).await {
        Err(Error::StoreUnavailable(_)) => {}
        // The client retries a failed node for a while: on a loaded machine its retries can
        // outlast the failover. A success is right only if a replica serves the slot by now.
        // The node asked for the slot map may not have heard of the promotion yet (the
        // promoted replica, which answered, has): its view must follow within seconds.
        Ok(_) => {
            let slot = nodes.slot_of(&a.store.key_of_session(&dead));
            let started = Instant::now();
            loop {
                let serving = tokio::task::block_in_place(|| nodes.serving_primary(slot));
                if serving.is_some_and(|n| n.port != victim.port) {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "a session on the dead primary was read, and no replica took over"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Err(other) => {
            panic!("a session on the dead primary: expected StoreUnavailable, got {other:?}")
        }
    }
    assert_eq!(b.stored(&alive).await.state, QrState::Confirmed);

    tokio::task::block_in_place(|| nodes.wait_until_ok(3, Duration::from_secs(30)));
    assert!(
        nodes.primaries().iter().all(|p| p.port != victim.port),
        "a replica took over"
    );

    // After the failover every confirmed login is still there and is exchanged exactly once
    // (on B, whichever replica showed the ticket); the scanned ones confirm.
    let mut exchanged = 0;
    for (binding, id, _, ticket) in &confirmed {
        // As a browser would: read the status again (which shows the ticket again while the
        // session is confirmed) and exchange.
        let result = eventually_ok(|| async {
            b.client.poll(id, binding).await?;
            b.client.exchange(ticket, binding).await
        })
        .await;
        result.unwrap_or_else(|e| panic!("exchange of {id:?} after the failover: {e:?}"));
        exchanged += 1;
        assert!(matches!(
            a.client.exchange(ticket, binding).await,
            Err(Error::InvalidTicket)
        ));
        assert_eq!(b.stored(id).await.state, QrState::Consumed);
    }
    assert_eq!(exchanged, confirmed.len());
    for (binding, id, token) in &scanned {
        eventually_ok(|| b.client.confirm(id, token, ALICE))
            .await
            .unwrap_or_else(|e| panic!("confirm of {id:?} after the failover: {e:?}"));
        let status = a.client.poll(id, binding).await.unwrap();
        assert_eq!(status.state, QrState::Confirmed);
    }
}

/// Retries `call` while it fails with `StoreUnavailable` (the client re-reads the slot map
/// after a failover), for at most 10 s.
async fn eventually_ok<T, F, Fut>(mut call: F) -> qrauth_core::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = qrauth_core::Result<T>>,
{
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match call().await {
            Err(Error::StoreUnavailable(_)) if Instant::now() < end => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}
