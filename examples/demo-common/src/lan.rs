//! Where a demo listens and which URL it puts in the QR: `--listen`, `--port`, `--public-url`,
//! and `--lan`, which serves the demo to a real phone on the same network in one flag.
//!
//! `--lan` (or `QRAUTH_DEMO_LAN=1`) listens on all interfaces (`0.0.0.0:<port>`) and uses
//! `http://<LAN address>:<port>` as the public URL, the LAN address being the first IPv4
//! address of an interface that is up, not point-to-point, not loopback and not link-local
//! ([`lan_address`]); `--lan-address IP` (or `QRAUTH_DEMO_LAN_ADDRESS`) names it instead, and
//! implies `--lan`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Where a demo listens and the URL browsers and phones use, with what to tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The address to bind.
    pub listen: SocketAddr,
    /// The URL in the QR and the issuer, without a trailing `/`.
    pub public_url: String,
    /// Whether `--lan` is on: the demo is meant to be reached from other machines.
    pub lan: bool,
    /// Start-up warnings (a `--public-url` a phone cannot reach, …), one line each.
    pub warnings: Vec<String>,
}

impl Endpoint {
    /// Reads `--lan`, `--lan-address IP`, `--listen ADDR`, `--port PORT` and
    /// `--public-url URL` from the command line, and `QRAUTH_DEMO_LAN`,
    /// `QRAUTH_DEMO_LAN_ADDRESS`, `listen_env`, `QRAUTH_DEMO_PORT` and
    /// `QRAUTH_DEMO_PUBLIC_URL` from the environment (flags win), for demos that take no other
    /// flag. Listens on `127.0.0.1:<default_port>` by default.
    pub fn from_env(default_port: u16, listen_env: &str) -> Result<Self, String> {
        Self::from_env_with(default_port, listen_env, "", |_, _| Ok(false))
    }

    /// Like [`Endpoint::from_env`], for demos with flags of their own: `extra` is offered
    /// every other argument (with the rest, to take its value) and answers whether it took
    /// it; `extra_usage` is added to the usage text.
    pub fn from_env_with(
        default_port: u16,
        listen_env: &str,
        extra_usage: &str,
        mut extra: impl FnMut(&str, &mut dyn Iterator<Item = String>) -> Result<bool, String>,
    ) -> Result<Self, String> {
        let env = |name: &str| std::env::var(name).ok();
        let mut flags = EndpointFlags::from_env(&env, listen_env)?;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                return Err(format!("usage: {extra_usage}{USAGE}"));
            }
            if !flags.take(&arg, &mut args)? && !extra(&arg, &mut args)? {
                return Err(format!("unknown argument {arg}; try --help"));
            }
        }
        flags.resolve(default_port, interface_addresses)
    }

    /// What to print at start: the URL to open on this machine and, with `--lan`, that the
    /// phone must be on the same network, then the warnings (`warning: …`).
    pub fn startup_lines(&self, demo: &str) -> Vec<String> {
        startup_lines(
            demo,
            self.listen,
            &self.public_url,
            self.lan,
            &self.warnings,
        )
    }

    /// Prints [`Endpoint::startup_lines`]: the URLs on stdout, the warnings on stderr.
    pub fn print_startup(&self, demo: &str) {
        print_lines(&self.startup_lines(demo));
    }
}

/// The usage text of the endpoint flags.
pub(crate) const USAGE: &str = "[--lan] [--lan-address IP] [--listen 127.0.0.1:PORT] \
                                [--port PORT] [--public-url http://HOST:PORT]";

/// The endpoint flags as given, before [`EndpointFlags::resolve`].
#[derive(Debug, Default, Clone)]
pub(crate) struct EndpointFlags {
    listen: Option<String>,
    port: Option<String>,
    public_url: Option<String>,
    lan: bool,
    lan_address: Option<String>,
}

impl EndpointFlags {
    /// The settings from the environment: `QRAUTH_DEMO_LAN` (`1`/`true`/`yes` or
    /// `0`/`false`/`no`), `QRAUTH_DEMO_LAN_ADDRESS`, `listen_env`, `QRAUTH_DEMO_PORT`,
    /// `QRAUTH_DEMO_PUBLIC_URL`. Empty values count as unset.
    pub(crate) fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        listen_env: &str,
    ) -> Result<Self, String> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let lan = match get("QRAUTH_DEMO_LAN").map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => true,
            Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => false,
            Some(v) => return Err(format!("QRAUTH_DEMO_LAN={v}: expected 1 or 0")),
        };
        Ok(Self {
            listen: get(listen_env),
            port: get("QRAUTH_DEMO_PORT"),
            public_url: get("QRAUTH_DEMO_PUBLIC_URL"),
            lan,
            lan_address: get("QRAUTH_DEMO_LAN_ADDRESS"),
        })
    }

    /// Takes `arg` (and its value, from `rest`) if it is an endpoint flag: `Ok(false)` if it
    /// is not one.
    pub(crate) fn take(
        &mut self,
        arg: &str,
        rest: &mut dyn Iterator<Item = String>,
    ) -> Result<bool, String> {
        let mut value = || rest.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg {
            "--lan" => self.lan = true,
            "--lan-address" => self.lan_address = Some(value()?),
            "--listen" => self.listen = Some(value()?),
            "--port" => self.port = Some(value()?),
            "--public-url" => self.public_url = Some(value()?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The endpoint: `interfaces` lists this machine's addresses, asked only when `--lan`
    /// has to detect the LAN address.
    pub(crate) fn resolve(
        self,
        default_port: u16,
        interfaces: impl FnOnce() -> io::Result<Vec<IpAddr>>,
    ) -> Result<Endpoint, String> {
        let lan = self.lan || self.lan_address.is_some();
        let port = match &self.port {
            Some(p) => Some(
                p.trim()
                    .parse::<u16>()
                    .map_err(|e| format!("--port {p}: {e}"))?,
            ),
            None => None,
        };
        let listen = match &self.listen {
            Some(l) => {
                let listen: SocketAddr =
                    l.trim().parse().map_err(|e| format!("--listen {l}: {e}"))?;
                if port.is_some_and(|p| p != listen.port()) {
                    return Err(format!(
                        "--port and --listen {listen} disagree: give only one of them"
                    ));
                }
                listen
            }
            None => {
                let ip = if lan {
                    Ipv4Addr::UNSPECIFIED
                } else {
                    Ipv4Addr::LOCALHOST
                };
                SocketAddr::from((ip, port.unwrap_or(default_port)))
            }
        };
        if lan && listen.ip().is_loopback() {
            return Err(format!(
                "--lan with --listen {listen}: a phone cannot reach a loopback address; drop \
                 --listen (--lan listens on 0.0.0.0:{})",
                listen.port()
            ));
        }
        let explicit_url = self.public_url.is_some();
        let public_url = match self.public_url {
            Some(url) => url,
            None if lan => {
                let ip = match &self.lan_address {
                    Some(a) => a
                        .trim()
                        .parse::<IpAddr>()
                        .map_err(|e| format!("--lan-address {a}: {e}"))?,
                    None => {
                        let addrs = interfaces().map_err(|e| {
                            format!(
                                "--lan: cannot list the network interfaces ({e}); give \
                                 --lan-address IP"
                            )
                        })?;
                        IpAddr::V4(lan_address(addrs).ok_or(
                            "--lan: this machine has no LAN IPv4 address (only loopback or \
                             link-local ones); join a network or give --lan-address IP",
                        )?)
                    }
                };
                format!("http://{}", SocketAddr::new(ip, listen.port()))
            }
            None => format!("http://{listen}"),
        };
        let public_url = public_url.trim_end_matches('/').to_owned();
        let host = url::Url::parse(&public_url)
            .map_err(|e| format!("--public-url {public_url}: {e}"))?
            .host()
            .map(|h| h.to_owned());
        let mut warnings = Vec::new();
        let loopback_url = match &host {
            Some(url::Host::Domain(d)) => {
                d.eq_ignore_ascii_case("localhost")
                    || d.to_ascii_lowercase().ends_with(".localhost")
            }
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        if explicit_url && !loopback_url && listen.ip().is_loopback() {
            warnings.push(format!(
                "warning: --public-url {public_url} without --listen: the demo listens on \
                 {listen} only, so a phone gets \"connection refused\"; add --listen 0.0.0.0:{} \
                 (or use --lan instead of both)",
                listen.port()
            ));
        }
        if !explicit_url && !lan && listen.ip().is_unspecified() {
            warnings.push(format!(
                "warning: --listen {listen} without --public-url: the QR points to \
                 {public_url}, which a phone cannot open; add --public-url \
                 http://<LAN address>:{} (or use --lan instead of both)",
                listen.port()
            ));
        }
        if lan {
            warnings.push(format!(
                "warning: --lan: the demo is reachable from your local network on port {}; \
                 stop it with Ctrl-C when done",
                listen.port()
            ));
        }
        Ok(Endpoint {
            listen,
            public_url,
            lan,
            warnings,
        })
    }
}

/// The LAN address among `addrs`: the first IPv4 address that is not loopback
/// (`127.0.0.0/8`), link-local (`169.254.0.0/16`), unspecified, broadcast or multicast. IPv6
/// addresses are skipped (phones on a home network reach IPv4 most reliably).
pub fn lan_address(addrs: impl IntoIterator<Item = IpAddr>) -> Option<Ipv4Addr> {
    addrs.into_iter().find_map(|ip| match ip {
        IpAddr::V4(v4)
            if !(v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()) =>
        {
            Some(v4)
        }
        _ => None,
    })
}

/// This machine's interface addresses, in the system's order, without those of interfaces
/// that are down or point-to-point (VPN tunnels a phone on the LAN cannot reach).
pub fn interface_addresses() -> io::Result<Vec<IpAddr>> {
    Ok(if_addrs::get_if_addrs()?
        .into_iter()
        .filter(|i| i.oper_status != if_addrs::IfOperStatus::Down && !i.is_p2p())
        .map(|i| i.ip())
        .collect())
}

/// The start-up lines: see [`Endpoint::startup_lines`].
pub(crate) fn startup_lines(
    demo: &str,
    listen: SocketAddr,
    public_url: &str,
    lan: bool,
    warnings: &[String],
) -> Vec<String> {
    let mut lines = if lan {
        vec![
            format!(
                "{demo}: open {public_url}/ in a browser on this machine (listening on {listen})"
            ),
            format!(
                "{demo}: the phone must be on the same network as this machine, to reach \
                 {public_url}"
            ),
        ]
    } else {
        vec![format!("{demo}: open {public_url}/ in a browser")]
    };
    lines.extend(warnings.iter().cloned());
    lines
}

/// Prints start-up lines: warnings on stderr, the rest on stdout.
pub(crate) fn print_lines(lines: &[String]) {
    for line in lines {
        if line.starts_with("warning:") {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DemoArgs;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn detection_skips_loopback_link_local_unspecified_and_ipv6() {
        let addrs = [
            "127.0.0.1",
            "::1",
            "169.254.10.20",
            "0.0.0.0",
            "fe80::1",
            "2001:db8::5",
            "192.168.1.23",
            "10.0.0.7",
        ]
        .map(ip);
        assert_eq!(lan_address(addrs), Some(Ipv4Addr::new(192, 168, 1, 23)));
        // The first usable one wins, whatever its range.
        assert_eq!(
            lan_address(["10.0.0.7", "192.168.1.23"].map(ip)),
            Some(Ipv4Addr::new(10, 0, 0, 7))
        );
        assert_eq!(
            lan_address(["127.0.1.1", "169.254.0.1", "fe80::2", "2001:db8::1"].map(ip)),
            None
        );
        assert_eq!(lan_address([]), None);
    }

    /// Parses `args` with the environment `env` and the interfaces `ifaces`.
    fn parse(args: &[&str], env: &[(&str, &str)], ifaces: &[&str]) -> Result<DemoArgs, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let ifaces: Vec<IpAddr> = ifaces.iter().map(|s| ip(s)).collect();
        DemoArgs::parse(
            args.iter().map(|s| (*s).to_owned()),
            &|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
            3000,
            move || Ok(ifaces),
        )
    }

    const IFACES: &[&str] = &["127.0.0.1", "169.254.3.4", "192.168.1.23"];

    #[test]
    fn redis_cluster_nodes_come_from_the_flag_or_the_environment() {
        let nodes = ["redis://127.0.0.1:7000/", "redis://127.0.0.1:7001/"];
        for a in [
            parse(
                &[
                    "--redis-cluster",
                    "redis://127.0.0.1:7000/, redis://127.0.0.1:7001/",
                ],
                &[],
                IFACES,
            )
            .unwrap(),
            parse(
                &[],
                &[(
                    "REDIS_CLUSTER_URLS",
                    "redis://127.0.0.1:7000/,redis://127.0.0.1:7001/,",
                )],
                IFACES,
            )
            .unwrap(),
        ] {
            assert_eq!(a.redis_cluster, nodes);
        }
        assert!(parse(&[], &[], IFACES).unwrap().redis_cluster.is_empty());
        let e = parse(&["--redis-cluster", ","], &[], IFACES).unwrap_err();
        assert!(e.contains("URL,URL"), "{e}");
    }

    #[test]
    fn default_is_loopback_without_warnings() {
        let a = parse(&[], &[], IFACES).unwrap();
        assert_eq!(a.listen, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(a.public_url, "http://127.0.0.1:3000");
        assert!(!a.lan);
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    }

    #[test]
    fn lan_listens_on_all_interfaces_and_uses_the_detected_address() {
        for a in [
            parse(&["--lan"], &[], IFACES).unwrap(),
            parse(&[], &[("QRAUTH_DEMO_LAN", "1")], IFACES).unwrap(),
        ] {
            assert_eq!(a.listen, "0.0.0.0:3000".parse().unwrap());
            assert_eq!(a.public_url, "http://192.168.1.23:3000");
            assert!(a.lan);
            assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
            assert!(a.warnings[0].contains("reachable from your local network"));
        }
        let a = parse(&["--lan", "--port", "4000"], &[], IFACES).unwrap();
        assert_eq!(a.listen, "0.0.0.0:4000".parse().unwrap());
        assert_eq!(a.public_url, "http://192.168.1.23:4000");
    }

    #[test]
    fn lan_address_overrides_detection_and_implies_lan() {
        let never = &["127.0.0.1"];
        for a in [
            parse(&["--lan", "--lan-address", "10.1.2.3"], &[], never).unwrap(),
            parse(&["--lan-address", "10.1.2.3"], &[], never).unwrap(),
            parse(&[], &[("QRAUTH_DEMO_LAN_ADDRESS", "10.1.2.3")], never).unwrap(),
        ] {
            assert_eq!(a.listen, "0.0.0.0:3000".parse().unwrap());
            assert_eq!(a.public_url, "http://10.1.2.3:3000");
        }
        let e = parse(&["--lan-address", "not-an-ip"], &[], IFACES).unwrap_err();
        assert!(e.contains("--lan-address not-an-ip"), "{e}");
    }

    #[test]
    fn lan_without_a_lan_address_fails_naming_the_override() {
        let e = parse(&["--lan"], &[], &["127.0.0.1", "169.254.1.1", "::1"]).unwrap_err();
        assert!(e.contains("--lan-address IP"), "{e}");
        let e = DemoArgs::parse(["--lan".to_owned()].into_iter(), &|_| None, 3000, || {
            Err(io::Error::other("no netlink"))
        })
        .unwrap_err();
        assert!(
            e.contains("no netlink") && e.contains("--lan-address"),
            "{e}"
        );
    }

    #[test]
    fn lan_refuses_a_loopback_listen_and_accepts_an_explicit_public_url() {
        let e = parse(&["--lan", "--listen", "127.0.0.1:3000"], &[], IFACES).unwrap_err();
        assert!(e.contains("drop --listen"), "{e}");
        let a = parse(
            &["--lan", "--public-url", "http://demo.example:3000/"],
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(a.public_url, "http://demo.example:3000");
        assert_eq!(a.listen, "0.0.0.0:3000".parse().unwrap());
    }

    #[test]
    fn public_url_alone_warns_naming_listen() {
        for a in [
            parse(&["--public-url", "http://192.168.1.23:3000"], &[], IFACES).unwrap(),
            parse(
                &[],
                &[("QRAUTH_DEMO_PUBLIC_URL", "http://192.168.1.23:3000")],
                IFACES,
            )
            .unwrap(),
        ] {
            assert_eq!(a.listen, "127.0.0.1:3000".parse().unwrap());
            assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
            assert!(
                a.warnings[0].contains("without --listen")
                    && a.warnings[0].contains("add --listen 0.0.0.0:3000"),
                "{}",
                a.warnings[0]
            );
        }
        // Matching --listen, or a loopback public URL (e.g. a replica behind another's
        // origin): no warning.
        for args in [
            &[
                "--public-url",
                "http://192.168.1.23:3000",
                "--listen",
                "0.0.0.0:3000",
            ][..],
            &["--public-url", "http://127.0.0.1:3001"][..],
            &["--public-url", "http://localhost:3000"][..],
        ] {
            let a = parse(args, &[], IFACES).unwrap();
            assert!(a.warnings.is_empty(), "{args:?}: {:?}", a.warnings);
        }
    }

    #[test]
    fn listen_on_all_interfaces_alone_warns_naming_public_url() {
        let a = parse(&["--listen", "0.0.0.0:3000"], &[], IFACES).unwrap();
        assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
        assert!(
            a.warnings[0].contains("without --public-url"),
            "{:?}",
            a.warnings
        );
    }

    #[test]
    fn flags_win_over_the_environment_and_bad_input_is_an_error() {
        let a = parse(
            &["--listen", "127.0.0.1:4001"],
            &[
                ("QRAUTH_DEMO_LISTEN", "127.0.0.1:4000"),
                ("QRAUTH_DEMO_LAN", "0"),
            ],
            IFACES,
        )
        .unwrap();
        assert_eq!(a.listen, "127.0.0.1:4001".parse().unwrap());
        assert!(!a.lan);
        for (args, env, needle) in [
            (&["--listen"][..], &[][..], "--listen needs a value"),
            (&["--listen", "nowhere"][..], &[][..], "--listen nowhere"),
            (&["--port", "70000"][..], &[][..], "--port 70000"),
            (
                &["--port", "1", "--listen", "127.0.0.1:2"][..],
                &[][..],
                "disagree",
            ),
            (&["--public-url", "not a url"][..], &[][..], "--public-url"),
            (&["--bogus"][..], &[][..], "unknown argument --bogus"),
            (
                &[][..],
                &[("QRAUTH_DEMO_LAN", "maybe")][..],
                "QRAUTH_DEMO_LAN=maybe",
            ),
        ] {
            let e = parse(args, env, IFACES).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn startup_lines_say_where_to_go_and_warn_with_lan() {
        let a = parse(&["--lan"], &[], IFACES).unwrap();
        let lines = a.startup_lines("qrauth axum demo");
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(
            lines[0],
            "qrauth axum demo: open http://192.168.1.23:3000/ in a browser on this machine \
             (listening on 0.0.0.0:3000)"
        );
        assert!(lines[1].contains("same network"), "{}", lines[1]);
        assert!(lines[2].starts_with("warning: --lan"), "{}", lines[2]);
        let a = parse(&[], &[], IFACES).unwrap();
        assert_eq!(
            a.startup_lines("qrauth axum demo"),
            ["qrauth axum demo: open http://127.0.0.1:3000/ in a browser"]
        );
    }
}
