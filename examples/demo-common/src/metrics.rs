//! The demos' `GET /metrics`: qrauth's series (and anything else recorded through the
//! `metrics` facade) as Prometheus text, from a `metrics-exporter-prometheus` recorder that
//! [`install`] sets up once per process.
//!
//! Only loopback peers get an answer, and only when the request did not come through a proxy
//! (a `Forwarded` or `X-Forwarded-For` header): a reverse proxy on the same host would
//! otherwise make every outside scrape look local. Everyone else gets `403`.

use std::net::IpAddr;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle)
/// with qrauth's histogram buckets and series descriptions. `None` if another `metrics`
/// recorder was installed first.
///
/// ```
/// let first = demo_common::metrics::install().is_some();
/// assert_eq!(demo_common::metrics::install().is_some(), first);
/// ```
pub fn install() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&qrauth_core::metrics::LATENCY_BUCKETS)
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            qrauth_core::metrics::describe();
            Some(handle)
        })
        .as_ref()
}

/// Whether a scrape from `peer` (the TCP peer address, `None` if unknown) may be answered:
/// a loopback address (IPv4, IPv6, or IPv4-mapped IPv6), and no proxy in between
/// (`forwarded`: the request carries `Forwarded` or `X-Forwarded-For`).
///
/// ```
/// use demo_common::metrics::may_scrape;
/// assert!(may_scrape(Some("127.0.0.1".parse().unwrap()), false));
/// assert!(may_scrape(Some("::1".parse().unwrap()), false));
/// assert!(!may_scrape(Some("127.0.0.1".parse().unwrap()), true));
/// assert!(!may_scrape(Some("192.168.1.20".parse().unwrap()), false));
/// assert!(!may_scrape(None, false));
/// ```
pub fn may_scrape(peer: Option<IpAddr>, forwarded: bool) -> bool {
    let loopback = match peer {
        Some(IpAddr::V4(v4)) => v4.is_loopback(),
        Some(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    };
    loopback && !forwarded
}

/// Whether request headers named by `names` show a proxy in between (`Forwarded`,
/// `X-Forwarded-For`), for [`may_scrape`].
///
/// ```
/// assert!(demo_common::metrics::forwarded(["Host", "X-Forwarded-For"]));
/// assert!(!demo_common::metrics::forwarded(["host", "accept"]));
/// ```
pub fn forwarded<'a>(names: impl IntoIterator<Item = &'a str>) -> bool {
    names
        .into_iter()
        .any(|n| n.eq_ignore_ascii_case("forwarded") || n.eq_ignore_ascii_case("x-forwarded-for"))
}

/// The answer to `GET /metrics` from `peer`: `(status, body)`: `200` with the Prometheus
/// text, `403` for anyone but a direct loopback peer, `503` if the recorder could not be
/// installed. Serve the body with [`CONTENT_TYPE`].
///
/// ```
/// let (status, _) = demo_common::metrics::scrape(Some("10.0.0.1".parse().unwrap()), false);
/// assert_eq!(status, 403);
/// let (status, _) = demo_common::metrics::scrape(Some("127.0.0.1".parse().unwrap()), false);
/// assert!(status == 200 || status == 503);
/// ```
pub fn scrape(peer: Option<IpAddr>, forwarded: bool) -> (u16, String) {
    if !may_scrape(peer, forwarded) {
        return (
            403,
            "metrics are served to loopback clients only\n".to_owned(),
        );
    }
    match install() {
        Some(handle) => (200, handle.render()),
        None => (503, "another metrics recorder is installed\n".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_direct_loopback_peers_may_scrape() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(may_scrape(ip("127.0.0.1"), false));
        assert!(may_scrape(ip("127.8.9.10"), false));
        assert!(may_scrape(ip("::1"), false));
        assert!(may_scrape(ip("::ffff:127.0.0.1"), false));
        assert!(!may_scrape(ip("::ffff:10.0.0.1"), false));
        assert!(!may_scrape(ip("0.0.0.0"), false));
        assert!(!may_scrape(ip("10.0.0.1"), false));
        assert!(!may_scrape(ip("fe80::1"), false));
        assert!(!may_scrape(ip("::1"), true));
        assert!(!may_scrape(None, false));
        assert_eq!(scrape(ip("192.0.2.1"), false).0, 403);
    }

    #[test]
    fn the_recorder_renders_qrauth_series() {
        assert!(install().is_some(), "the Prometheus recorder installs");
        metrics::counter!("qrauth_sessions_total", "provider" => "unit", "outcome" => "started")
            .increment(1);
        let (status, text) = scrape(Some(IpAddr::from([127, 0, 0, 1])), false);
        assert_eq!(status, 200);
        assert!(
            text.contains(r#"qrauth_sessions_total{provider="unit",outcome="started"} 1"#),
            "{text}"
        );
        // describe() ran: the help text is there.
        assert!(text.contains("# HELP qrauth_sessions_total"), "{text}");
    }
}
