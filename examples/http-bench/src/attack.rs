//! The hostile clients of `soak` with `ATTACK=1`, and the legitimate logins they run beside.
//!
//! Every client here has its own loopback source address (Linux routes all of 127.0.0.0/8 to
//! `lo`), so that the server's per-address limits see what they would see on the Internet:
//! many browsers with an address each, and two attackers with one address each.
//!
//! - [`stream_flood`]: one client holds as many long-polls as it can on one session, retrying
//!   every refusal after `retry` instead of honouring `Retry-After`.
//! - [`phone_flood`]: one client posts `scan` with a fresh random credential and qrcodeId at
//!   `rate` requests per second (each one new to every per-credential and per-session budget).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use crate::{BoxError, login, percentile};

/// The address of the `n`-th legitimate client: 127.1.0.1, 127.1.0.2, …
fn browser_address(n: usize) -> IpAddr {
    let n = n + 1;
    IpAddr::V4(Ipv4Addr::new(127, 1, (n >> 8) as u8, n as u8))
}

const STREAM_ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const PHONE_ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

fn client_from(address: IpAddr, idle: usize) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .local_address(address)
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(idle)
        .build()
}

/// Legitimate browsers (with their phones), one source address each.
pub(crate) struct Browsers(Vec<reqwest::Client>);

impl Browsers {
    /// `count` clients from the `first`-th browser address on; at most 65 000 addresses in
    /// all (127.1.x.y). Phases of one run take separate ranges, so that one phase's use of
    /// the per-address limits does not spend another's.
    pub(crate) fn new(first: usize, count: usize) -> reqwest::Result<Self> {
        let first = first.min(64_999);
        (first..(first + count.max(1)).min(65_000))
            .map(|n| client_from(browser_address(n), 8))
            .collect::<reqwest::Result<_>>()
            .map(Self)
    }

    /// The client of the `i`-th browser (in turn).
    pub(crate) fn client(&self, i: usize) -> &reqwest::Client {
        &self.0[i % self.0.len()]
    }

    /// `rate` full logins per second for `seconds`, spread over the browsers in turn; returns
    /// the sorted login times, the errors and the seconds it took.
    pub(crate) async fn logins(
        &self,
        base: &str,
        rate: u64,
        seconds: u64,
    ) -> (Vec<Duration>, usize, f64) {
        let total = (rate * seconds) as usize;
        let mut times = Vec::with_capacity(total);
        let mut errors = 0usize;
        let start = Instant::now();
        let mut flows = futures_util::stream::iter((0..total).map(|i| {
            let client = self.client(i).clone();
            async move {
                let due = start + Duration::from_micros(i as u64 * 1_000_000 / rate.max(1));
                tokio::time::sleep_until(due.into()).await;
                let t = Instant::now();
                login(&client, base).await.map(|_| t.elapsed())
            }
        }))
        .buffer_unordered(512);
        while let Some(result) = flows.next().await {
            match result {
                Ok(d) => times.push(d),
                Err(e) => {
                    errors += 1;
                    if errors <= 3 {
                        eprintln!("login failed: {e}");
                    }
                }
            }
        }
        times.sort();
        (times, errors, start.elapsed().as_secs_f64())
    }
}

/// What one attacker got: answers by status code.
#[derive(Default)]
pub(crate) struct Tally {
    ok: AtomicU64,
    refused_429: AtomicU64,
    unauthorized: AtomicU64,
    other: AtomicU64,
}

impl Tally {
    fn count(&self, status: Option<u16>) {
        match status {
            Some(200..=299) => &self.ok,
            Some(429) => &self.refused_429,
            Some(401) => &self.unauthorized,
            _ => &self.other,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn summary(&self) -> String {
        format!(
            "2xx {}, 429 {}, 401 {}, other/failed {}",
            Self::get(&self.ok),
            Self::get(&self.refused_429),
            Self::get(&self.unauthorized),
            Self::get(&self.other)
        )
    }

    /// Answers that were not a refusal by a limit.
    pub(crate) fn admitted(&self) -> u64 {
        Self::get(&self.ok) + Self::get(&self.unauthorized)
    }
}

/// Until `stop`: `streams` concurrent long-polls on one session from one address and one
/// binding, each retried `retry` after a refusal.
pub(crate) async fn stream_flood(
    base: String,
    streams: usize,
    retry: Duration,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Result<(), BoxError> {
    let client = client_from(STREAM_ATTACKER, streams)?;
    let (cookie, id) = crate::prepare(&client, &base).await?;
    let url = format!("{base}/qrcode/status?qrcodeId={id}&wait=30&since=1");
    let workers: Vec<_> = (0..streams)
        .map(|_| {
            let (client, url, cookie) = (client.clone(), url.clone(), cookie.clone());
            let (stop, tally) = (stop.clone(), tally.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let answer = client.get(&url).header("cookie", &cookie).send();
                    // Bounded by the flood's end: a held long-poll is dropped then.
                    let status = tokio::select! {
                        r = answer => r.ok().map(|r| r.status().as_u16()),
                        () = wait_for(&stop) => break,
                    };
                    tally.count(status);
                    if status != Some(200) {
                        tokio::time::sleep(retry).await;
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    Ok(())
}

/// Until `stop`: `scan` with a random credential and a random well-formed qrcodeId, `rate`
/// per second, from one address.
pub(crate) async fn phone_flood(
    base: String,
    rate: u64,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Result<(), BoxError> {
    let client = client_from(PHONE_ATTACKER, 64)?;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    while !stop.load(Ordering::Relaxed) {
        let due = start + Duration::from_micros(sent * 1_000_000 / rate.max(1));
        tokio::select! {
            () = tokio::time::sleep_until(due.into()), if in_flight.len() < 256 => {
                sent += 1;
                let request = client
                    .post(format!("{base}/qrcode/scan"))
                    .header("authorization", format!("Bearer {}", random_token()?))
                    .json(&json!({ "qrcodeId": random_token()? }))
                    .send();
                in_flight.push(request);
            }
            Some(answer) = in_flight.next() => {
                tally.count(answer.ok().map(|r| r.status().as_u16()));
            }
            () = wait_for(&stop) => break,
        }
    }
    while let Some(answer) = in_flight.next().await {
        tally.count(answer.ok().map(|r| r.status().as_u16()));
    }
    Ok(())
}

/// 16 random bytes, base64url: a credential or qrcodeId nobody issued.
fn random_token() -> Result<String, BoxError> {
    Ok(qrauth_core::QrCodeId::generate()?.as_str().to_owned())
}

async fn wait_for(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The p99 of sorted login times, in ms.
pub(crate) fn p99_ms(times: &[Duration]) -> f64 {
    percentile(times, 0.99)
}
