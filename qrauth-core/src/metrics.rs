//! Metrics and traces of the QR login flow.
//!
//! With the `metrics` feature, qrauth records counters, gauges and histograms through the
//! [`metrics`](https://docs.rs/metrics/0.24) facade: install any `metrics` recorder (for
//! Prometheus, `metrics-exporter-prometheus`) and they are collected; without a recorder, or
//! without the feature, every call is a no-op. [`SERIES`] lists what is recorded; call
//! [`describe`] once after installing the recorder to give each series its help text and unit.
//!
//! Every series carries the label `provider`, set with
//! [`QrAuthServiceBuilder::metrics_label`](crate::QrAuthServiceBuilder::metrics_label)
//! (default `"qrauth"`). Labels only ever hold that name, a session outcome, an error code
//! ([`Error::code`]), a limit name or an upstream result: never a secret, an id, a ticket, an
//! address or a user.
//!
//! Independently of the feature, [`QrAuthService::handle`](crate::QrAuthService::handle) runs
//! each request in a `tracing` span `qrauth.request` with the fields `route` and `status`.
//!
//! ```
//! // Every series is named `qrauth_…`, counters end in `_total`, histograms in `_seconds`.
//! for series in qrauth_core::metrics::SERIES {
//!     assert!(series.name.starts_with("qrauth_"));
//!     assert!(series.labels.contains(&"provider"));
//! }
//! qrauth_core::metrics::describe();
//! ```

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result, TokenError};
use crate::handler::Route;
use crate::record::SessionRecord;
use crate::types::QrState;

/// What kind of series a [`Series`] is.
///
/// ```
/// use qrauth_core::metrics::{Kind, SERIES};
/// assert!(SERIES.iter().any(|s| s.kind == Kind::Histogram));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A monotonic counter (`_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution of durations, in seconds (`_seconds`).
    Histogram,
}

impl Kind {
    /// The Prometheus type name: `counter`, `gauge` or `histogram`.
    ///
    /// ```
    /// assert_eq!(qrauth_core::metrics::Kind::Gauge.as_str(), "gauge");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One series qrauth records.
///
/// ```
/// let sessions = &qrauth_core::metrics::SERIES[0];
/// assert_eq!(sessions.name, "qrauth_sessions_total");
/// assert_eq!(sessions.labels, &["provider", "outcome"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Series {
    /// The series name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Its label names.
    pub labels: &'static [&'static str],
    /// What it counts (the Prometheus `# HELP` text).
    pub help: &'static str,
}

const SESSIONS: &str = "qrauth_sessions_total";
const EXCHANGE_FAILURES: &str = "qrauth_exchange_failures_total";
const VERIFICATION_FAILURES: &str = "qrauth_verification_failures_total";
const LIMIT_REFUSALS: &str = "qrauth_limit_refusals_total";
const LIVE_WAITERS: &str = "qrauth_live_waiters";
const UPSTREAM_LOOPS: &str = "qrauth_upstream_loops";
const CONFIRM_NOTIFY: &str = "qrauth_confirm_notify_seconds";
const UPSTREAM_CHECK: &str = "qrauth_upstream_check_seconds";

/// Every series qrauth records with the `metrics` feature.
///
/// ```
/// use qrauth_core::metrics::{Kind, SERIES};
/// let gauges: Vec<_> = SERIES.iter().filter(|s| s.kind == Kind::Gauge).map(|s| s.name).collect();
/// assert_eq!(gauges, ["qrauth_live_waiters", "qrauth_upstream_loops"]);
/// ```
pub const SERIES: [Series; 8] = [
    Series {
        name: SESSIONS,
        kind: Kind::Counter,
        labels: &["provider", "outcome"],
        help: "QR login sessions by outcome: started (QR code created), scanned, confirmed, \
               cancelled (by the phone user, the IdP, too many failed confirms, or a ticket \
               presented by a foreign browser), expired (a browser was told its QR code or \
               ticket expired), exchanged (ticket redeemed: login complete)",
    },
    Series {
        name: EXCHANGE_FAILURES,
        kind: Kind::Counter,
        labels: &["provider", "error"],
        help: "Refused ticket exchanges (POST /qrcode/exchange) by error code",
    },
    Series {
        name: VERIFICATION_FAILURES,
        kind: Kind::Counter,
        labels: &["provider", "error", "reason"],
        help: "Failed id_token checks of AuthenticatedUser by error code, and for invalid_token \
               by reason (missing, expired, bad_signature, ...)",
    },
    Series {
        name: LIMIT_REFUSALS,
        kind: Kind::Counter,
        labels: &["provider", "limit"],
        help: "Requests refused with 429 slow_down by abuse limit: generate (QR codes per \
               client address), binding (live QR codes per browser), poll (plain polls faster \
               than the interval), phone (phone requests per credential), extension (a \
               provider's own routes)",
    },
    Series {
        name: LIVE_WAITERS,
        kind: Kind::Gauge,
        labels: &["provider"],
        help: "Long-polls and event streams waiting for a session change now",
    },
    Series {
        name: UPSTREAM_LOOPS,
        kind: Kind::Gauge,
        labels: &["provider"],
        help: "Upstream IdP status loops running now (providers confirmed at an IdP)",
    },
    Series {
        name: CONFIRM_NOTIFY,
        kind: Kind::Histogram,
        labels: &["provider"],
        help: "Time from a session's confirmation to a waiting long-poll or event stream \
               delivering it to the browser",
    },
    Series {
        name: UPSTREAM_CHECK,
        kind: Kind::Histogram,
        labels: &["provider", "result"],
        help: "Duration of one upstream IdP status check, by result (ok, or the error code)",
    },
];

/// Histogram buckets (seconds) that suit both histograms: from 5 ms to 30 s.
///
/// ```
/// let buckets = qrauth_core::metrics::LATENCY_BUCKETS;
/// assert!(buckets.windows(2).all(|w| w[0] < w[1]));
/// ```
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
];

/// Gives every series of [`SERIES`] its help text (and histograms their unit) in the
/// installed `metrics` recorder. Call it once, after installing the recorder; a no-op without
/// the `metrics` feature.
///
/// ```
/// // With no recorder installed this does nothing, and it is safe to call again.
/// qrauth_core::metrics::describe();
/// qrauth_core::metrics::describe();
/// ```
pub fn describe() {
    #[cfg(feature = "metrics")]
    for series in SERIES {
        match series.kind {
            Kind::Counter => ::metrics::describe_counter!(series.name, series.help),
            Kind::Gauge => ::metrics::describe_gauge!(series.name, series.help),
            Kind::Histogram => {
                ::metrics::describe_histogram!(series.name, ::metrics::Unit::Seconds, series.help)
            }
        }
    }
}

/// The `tracing` span of one request: its route, and its status once answered. Nothing else:
/// no query, no header, no body.
pub(crate) fn request_span(route: Route) -> tracing::Span {
    tracing::info_span!(
        "qrauth.request",
        route = ?route,
        status = tracing::field::Empty
    )
}

/// The abuse limits, as named in the `limit` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    Generate,
    Binding,
    Poll,
    Phone,
    Extension,
}

impl Limit {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            Limit::Generate => "generate",
            Limit::Binding => "binding",
            Limit::Poll => "poll",
            Limit::Phone => "phone",
            Limit::Extension => "extension",
        }
    }
}

/// The session outcome of a transition to `to` (`None`: not one the counter reports).
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn outcome(to: QrState) -> Option<&'static str> {
    match to {
        QrState::Scanned => Some("scanned"),
        QrState::Confirmed => Some("confirmed"),
        QrState::Cancelled => Some("cancelled"),
        QrState::Consumed => Some("exchanged"),
        // Expiry is lazy (no write): counted when a browser is told, see `Metrics::expired`.
        QrState::Pending | QrState::Expired => None,
    }
}

/// The `reason` label of a verification failure.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn token_reason(error: &Error) -> &'static str {
    let Error::InvalidToken(reason) = error else {
        return "none";
    };
    match reason {
        TokenError::Missing => "missing",
        TokenError::TooLarge => "too_large",
        TokenError::Malformed => "malformed",
        TokenError::AlgorithmNotAllowed => "algorithm_not_allowed",
        TokenError::UnknownKey => "unknown_key",
        TokenError::BadSignature => "bad_signature",
        TokenError::Expired => "expired",
        TokenError::NotYetValid => "not_yet_valid",
        TokenError::WrongIssuer => "wrong_issuer",
        TokenError::WrongAudience => "wrong_audience",
        TokenError::InvalidClaim(_) => "invalid_claim",
        TokenError::SessionEnded => "session_ended",
    }
}

/// The recording handle of one service: its `provider` label. Copied into the session flow,
/// the handlers and the upstream loops; every method is a no-op without the feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Metrics {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    provider: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(DEFAULT_LABEL)
    }
}

/// The `provider` label of a service that sets none.
pub(crate) const DEFAULT_LABEL: &str = "qrauth";

/// Adds one to a counter.
macro_rules! count {
    ($name:expr, $($label:expr => $value:expr),+) => {
        #[cfg(feature = "metrics")]
        ::metrics::counter!($name, $($label => $value),+).increment(1);
    };
}

impl Metrics {
    pub(crate) const fn new(provider: &'static str) -> Self {
        Self { provider }
    }

    /// The `provider` label: also what tells apart the signed-in sessions of several services
    /// on one store.
    pub(crate) fn provider(self) -> &'static str {
        self.provider
    }

    /// A QR session was created.
    pub(crate) fn started(self) {
        count!(SESSIONS, "provider" => self.provider, "outcome" => "started");
    }

    /// A stored session moved from `from` to `to`.
    pub(crate) fn transition(self, from: QrState, to: QrState) {
        if from == to {
            return;
        }
        if let Some(_outcome) = outcome(to) {
            count!(SESSIONS, "provider" => self.provider, "outcome" => _outcome);
        }
    }

    /// A browser was told its session expired (QR code, confirm window or ticket).
    pub(crate) fn expired(self) {
        count!(SESSIONS, "provider" => self.provider, "outcome" => "expired");
    }

    /// A ticket exchange failed with `error`.
    pub(crate) fn exchange_failed(self, _error: &Error) {
        count!(EXCHANGE_FAILURES, "provider" => self.provider, "error" => _error.code());
    }

    /// An `AuthenticatedUser` check failed with `error`.
    pub(crate) fn verification_failed(self, _error: &Error) {
        count!(
            VERIFICATION_FAILURES,
            "provider" => self.provider,
            "error" => _error.code(),
            "reason" => token_reason(_error)
        );
    }

    /// Counts `error` as a refusal by `limit` if it is the limit's `slow_down` (a failing
    /// limiter store is not a refusal).
    pub(crate) fn limit_refused(self, _limit: Limit, error: &Error) {
        if matches!(error, Error::SlowDown { .. }) {
            count!(LIMIT_REFUSALS, "provider" => self.provider, "limit" => _limit.as_str());
        }
    }

    /// One more live waiter (long-poll or event stream) until the guard drops.
    pub(crate) fn waiter(self) -> GaugeGuard {
        GaugeGuard::up(self.provider, LIVE_WAITERS)
    }

    /// One more running upstream loop until the guard drops.
    pub(crate) fn upstream_loop(self) -> GaugeGuard {
        GaugeGuard::up(self.provider, UPSTREAM_LOOPS)
    }

    /// A waiting long-poll or event stream is about to deliver `record`, read at `now_ms`
    /// after a wait that began at `waited_from_ms` for a change after `since`: when that
    /// delivers the confirmation, records how long ago it happened.
    pub(crate) fn delivered(
        self,
        record: &SessionRecord,
        since: Option<u64>,
        waited_from_ms: u64,
        now_ms: u64,
        ticket_lifetime: Duration,
    ) {
        if record.effective_state(now_ms) != QrState::Confirmed {
            return;
        }
        let ticket_ms = u64::try_from(ticket_lifetime.as_millis()).unwrap_or(u64::MAX);
        let confirmed_at_ms = record.ticket_expire_at_ms.saturating_sub(ticket_ms);
        let news = match since {
            Some(version) => version != record.version,
            // Waiting from "now": only a confirmation during the wait is news.
            None => confirmed_at_ms >= waited_from_ms,
        };
        if !news {
            return;
        }
        let _seconds = Duration::from_millis(now_ms.saturating_sub(confirmed_at_ms)).as_secs_f64();
        #[cfg(feature = "metrics")]
        ::metrics::histogram!(CONFIRM_NOTIFY, "provider" => self.provider).record(_seconds);
    }

    /// Runs one upstream status check, timing it.
    pub(crate) async fn upstream_check<T>(
        self,
        check: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        let checked = check.await;
        #[cfg(feature = "metrics")]
        {
            let result = match &checked {
                Ok(_) => "ok",
                Err(e) => e.code(),
            };
            ::metrics::histogram!(UPSTREAM_CHECK, "provider" => self.provider, "result" => result)
                .record(started.elapsed().as_secs_f64());
        }
        checked
    }
}

/// Holds a gauge one higher while it lives.
#[must_use]
pub(crate) struct GaugeGuard {
    #[cfg(feature = "metrics")]
    gauge: ::metrics::Gauge,
}

impl GaugeGuard {
    fn up(_provider: &'static str, _name: &'static str) -> Self {
        #[cfg(feature = "metrics")]
        {
            let gauge = ::metrics::gauge!(_name, "provider" => _provider);
            gauge.increment(1.0);
            Self { gauge }
        }
        #[cfg(not(feature = "metrics"))]
        Self {}
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        self.gauge.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_follow_prometheus_conventions() {
        for s in SERIES {
            assert!(s.name.starts_with("qrauth_"), "{}", s.name);
            assert_eq!(s.labels[0], "provider", "{}", s.name);
            match s.kind {
                Kind::Counter => assert!(s.name.ends_with("_total"), "{}", s.name),
                Kind::Histogram => assert!(s.name.ends_with("_seconds"), "{}", s.name),
                Kind::Gauge => assert!(
                    !s.name.ends_with("_total") && !s.name.ends_with("_seconds"),
                    "{}",
                    s.name
                ),
            }
        }
        let mut names: Vec<_> = SERIES.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SERIES.len(), "series names are unique");
    }

    #[test]
    fn outcomes_and_reasons_are_fixed_names() {
        assert_eq!(outcome(QrState::Consumed), Some("exchanged"));
        assert_eq!(outcome(QrState::Scanned), Some("scanned"));
        assert_eq!(outcome(QrState::Pending), None);
        assert_eq!(outcome(QrState::Expired), None);
        assert_eq!(
            token_reason(&Error::InvalidToken(TokenError::Expired)),
            "expired"
        );
        assert_eq!(
            token_reason(&Error::InvalidToken(TokenError::InvalidClaim("sub"))),
            "invalid_claim"
        );
        assert_eq!(
            token_reason(&Error::StoreUnavailable("down".into())),
            "none"
        );
        assert_eq!(Limit::Binding.as_str(), "binding");
    }
}

/// What the methods record, through a local recorder.
#[cfg(all(test, feature = "metrics"))]
mod recorded {
    use std::time::Duration;

    use futures_util::FutureExt;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;
    use crate::record::{Initiator, SessionRecord};
    use crate::secret::{QrCodeId, SecretHash};

    type Labels = Vec<(String, String)>;
    type Sample = (String, Labels, DebugValue);

    /// (name, labels, value) of every series `f` recorded.
    fn recorded(f: impl FnOnce()) -> Vec<Sample> {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, f);
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let (_, key) = key.into_parts();
                let labels = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                (key.name().to_owned(), labels, value)
            })
            .collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn counter(name: &str, pairs: &[(&str, &str)], n: u64) -> Sample {
        (name.to_owned(), labels(pairs), DebugValue::Counter(n))
    }

    const P: (&str, &str) = ("provider", "test");

    #[test]
    fn outcomes_count_once_per_transition() {
        let m = Metrics::new("test");
        let got = recorded(|| {
            m.started();
            m.transition(QrState::Pending, QrState::Scanned);
            m.transition(QrState::Scanned, QrState::Scanned); // a failed attempt, no move
            m.transition(QrState::Scanned, QrState::Confirmed);
            m.transition(QrState::Confirmed, QrState::Consumed);
            m.transition(QrState::Scanned, QrState::Cancelled);
            m.transition(QrState::Pending, QrState::Expired); // lazy: counted when told
            m.expired();
        });
        let outcome = |o| counter(SESSIONS, &[P, ("outcome", o)], 1);
        assert_eq!(
            got,
            [
                outcome("started"),
                outcome("scanned"),
                outcome("confirmed"),
                outcome("exchanged"),
                outcome("cancelled"),
                outcome("expired"),
            ]
        );
    }

    #[test]
    fn failures_and_refusals_are_labelled_by_code_and_limit() {
        let m = Metrics::new("test");
        let slow = Error::SlowDown {
            retry_after: Duration::from_secs(1),
        };
        let got = recorded(|| {
            m.exchange_failed(&Error::InvalidTicket);
            m.verification_failed(&Error::InvalidToken(TokenError::BadSignature));
            m.limit_refused(Limit::Poll, &slow);
            // A failing limiter store is not a refusal.
            m.limit_refused(Limit::Generate, &Error::StoreUnavailable("down".into()));
        });
        assert_eq!(
            got,
            [
                counter(EXCHANGE_FAILURES, &[P, ("error", "invalid_ticket")], 1),
                counter(
                    VERIFICATION_FAILURES,
                    &[P, ("error", "invalid_token"), ("reason", "bad_signature")],
                    1
                ),
                counter(LIMIT_REFUSALS, &[P, ("limit", "poll")], 1),
            ]
        );
    }

    #[test]
    fn gauges_go_back_down_when_the_guard_drops() {
        let m = Metrics::new("test");
        let got = recorded(|| {
            let _a = m.waiter();
            let b = m.waiter();
            drop(b);
            let _loop = m.upstream_loop();
        });
        // The waiters' gauge was snapshotted with `_a` dropped too: back to zero.
        let gauge = |name: &str| {
            got.iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, l, v)| (l.clone(), format!("{v:?}")))
        };
        assert_eq!(
            gauge(LIVE_WAITERS),
            Some((labels(&[P]), "Gauge(0.0)".into()))
        );
        assert_eq!(
            gauge(UPSTREAM_LOOPS),
            Some((labels(&[P]), "Gauge(0.0)".into()))
        );
        let held = recorded(|| std::mem::forget(m.waiter()));
        assert_eq!(held[0].2, DebugValue::Gauge(1.0.into()));
    }

    fn confirmed(version: u64, confirmed_at_ms: u64, ticket: Duration) -> SessionRecord {
        let id = QrCodeId::parse("AAAAAAAAAAAAAAAAAAAAAA").expect("id");
        let mut r = SessionRecord::new(
            id,
            SecretHash::from_bytes([0; 32]),
            0,
            60_000,
            Initiator::default(),
        );
        r.state = QrState::Confirmed;
        r.version = version;
        r.ticket_expire_at_ms = confirmed_at_ms + ticket.as_millis() as u64;
        r
    }

    #[test]
    fn only_news_of_a_confirmation_is_timed() {
        let m = Metrics::new("test");
        let ticket = Duration::from_secs(60);
        let record = confirmed(3, 10_000, ticket);
        let got = recorded(|| {
            // A stream that had version 2 learns of the confirmation 250 ms after it.
            m.delivered(&record, Some(2), 9_000, 10_250, ticket);
            // Already seen, or confirmed before a wait "from now" began: no news.
            m.delivered(&record, Some(3), 9_000, 10_300, ticket);
            m.delivered(&record, None, 10_100, 12_000, ticket);
            // Confirmed during a wait from now.
            m.delivered(&record, None, 9_900, 10_500, ticket);
            // Not confirmed: nothing.
            let mut scanned = record.clone();
            scanned.state = QrState::Scanned;
            m.delivered(&scanned, Some(1), 9_000, 10_000, ticket);
        });
        assert_eq!(got.len(), 1, "{got:?}");
        let (name, l, value) = &got[0];
        assert_eq!((name.as_str(), l), (CONFIRM_NOTIFY, &labels(&[P])));
        assert_eq!(value, &DebugValue::Histogram(vec![0.25.into(), 0.5.into()]));
    }

    #[test]
    fn upstream_checks_are_timed_by_result() {
        let m = Metrics::new("test");
        let got = recorded(|| {
            let ok = m.upstream_check(async { Ok(1) }).now_or_never();
            assert_eq!(ok.map(|r| r.ok()), Some(Some(1)));
            let failed = m
                .upstream_check(async { Err::<(), _>(Error::UpstreamTimeout) })
                .now_or_never();
            assert!(matches!(failed, Some(Err(Error::UpstreamTimeout))));
        });
        let results: Vec<_> = got
            .iter()
            .map(|(n, l, v)| {
                (
                    n.as_str(),
                    l.clone(),
                    matches!(v, DebugValue::Histogram(s) if s.len() == 1),
                )
            })
            .collect();
        assert_eq!(
            results,
            [
                (UPSTREAM_CHECK, labels(&[P, ("result", "ok")]), true),
                (
                    UPSTREAM_CHECK,
                    labels(&[P, ("result", "upstream_unavailable")]),
                    true
                ),
            ]
        );
    }
}
