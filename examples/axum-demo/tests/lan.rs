//! `cargo run -p axum-demo -- --lan` as a user runs it: the real binary, with the LAN address
//! given as `127.0.0.1` so that every byte stays on loopback. It must listen on all interfaces
//! and put that address in the QR content and the issuer; `--public-url` alone must warn.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the demo may take to start (generous: it generates an RSA key; a busy machine).
const START: Duration = Duration::from_secs(60);

/// The demo process, killed when dropped, with its output lines as they come.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let mut command = Command::new(env!("CARGO_BIN_EXE_axum-demo"));
        command
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars() {
            if name.starts_with("QRAUTH_") || name == "REDIS_URL" {
                command.env_remove(name);
            }
        }
        let mut child = command.spawn().expect("run the axum-demo binary");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout is piped");
        let err = child.stderr.take().expect("stderr is piped");
        for stream in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Demo {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for an output line containing `needle` and returns it.
    fn line(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + START;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!("no line with {needle:?} ({e}); output: {:#?}", self.seen),
            }
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free on all interfaces right now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|l| l.local_addr())
        .expect("bind 0.0.0.0:0")
        .port()
}

/// One HTTP/1.1 request on a fresh connection; the response's status and body.
fn http(to: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(to).unwrap_or_else(|e| panic!("connect {to}: {e}"));
    tcp.set_read_timeout(Some(START))
        .expect("set a read timeout");
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: {to}\r\nUser-Agent: lan-test\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    tcp.read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// Waits until `to` accepts connections (the demo prints its URL just before binding).
fn wait_listening(to: SocketAddr) {
    let deadline = Instant::now() + START;
    while TcpStream::connect(to).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {to}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn lan_listens_on_all_interfaces_and_puts_the_lan_address_in_the_qr_and_the_issuer() {
    let port = free_port();
    let port_arg = port.to_string();
    let mut demo = Demo::start(&["--lan", "--lan-address", "127.0.0.1", "--port", &port_arg]);
    let public = format!("http://127.0.0.1:{port}");

    let open = demo.line("in a browser");
    assert_eq!(
        open,
        format!(
            "qrauth axum demo: open {public}/ in a browser on this machine \
             (listening on 0.0.0.0:{port})"
        )
    );
    assert!(
        demo.line("the phone must be on the same network")
            .contains(&public)
    );
    demo.line("warning: --lan: the demo is reachable from your local network");

    let lan = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    wait_listening(lan);
    // Bound to 0.0.0.0, not to 127.0.0.1: another address of this machine reaches it too.
    // On Linux the whole of 127.0.0.0/8 is local, so this stays on loopback.
    if cfg!(target_os = "linux") {
        let other = SocketAddr::from((IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), port));
        let (status, _) = http(other, "GET", "/");
        assert_eq!(status, 200, "the demo does not answer on {other}");
    }

    let (status, body) = http(lan, "GET", "/.well-known/openid-configuration");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["issuer"], public.as_str(), "{body}");

    let (status, body) = http(lan, "POST", "/qrcode");
    assert_eq!(status, 201, "{body}");
    let qr = json(&body);
    let content = qr["qrcodeContent"].as_str().expect("qrcodeContent");
    let id = qr["qrcodeId"].as_str().expect("qrcodeId");
    let prefix = format!("{public}/phone?qrcodeId={id}&scanToken=");
    assert!(content.starts_with(&prefix), "{content}");
}

#[test]
fn public_url_without_listen_warns_naming_the_missing_flag() {
    let port = free_port();
    let url = format!("http://192.168.1.23:{port}");
    let mut demo = Demo::start(&["--public-url", &url, "--port", &port.to_string()]);
    let warning = demo.line("warning:");
    assert!(
        warning.contains(&format!("--public-url {url} without --listen"))
            && warning.contains(&format!("add --listen 0.0.0.0:{port}")),
        "{warning}"
    );
    assert_eq!(
        demo.line("in a browser"),
        format!("qrauth axum demo: open {url}/ in a browser")
    );
}
