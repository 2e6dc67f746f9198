//! A throwaway Redis Cluster for one test: `redis-server --cluster-enabled yes` processes on
//! free loopback ports (each with its own bus port, so parallel tests never collide), joined
//! with `redis-cli --cluster create`, killed on drop. Admin steps (slot owners, slot
//! migration, failover checks) go through `redis-cli`, like an operator's would.
//!
//! A missing binary fails the test with the install command; it never skips.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::redis_server::{RedisServer, free_port};

/// How long `redis-cli --cluster create` and the slot map's agreement may take.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
/// `cluster-node-timeout`: how long a primary may be unreachable before its replica takes over.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(2000);

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// One node as `CLUSTER NODES` describes it.
#[derive(Clone, Debug)]
pub struct ClusterNode {
    /// The node id.
    pub id: String,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    /// Whether it is a primary now (and not failed).
    pub primary: bool,
    /// The slot ranges it serves (empty for replicas).
    pub slots: Vec<(u16, u16)>,
}

/// A running Redis Cluster on loopback.
pub struct RedisCluster {
    servers: Vec<RedisServer>,
    dirs: Vec<PathBuf>,
}

impl RedisCluster {
    /// Starts `primaries` primaries with `replicas` replicas each and waits until every node
    /// reports `cluster_state:ok` with all 16384 slots assigned.
    ///
    /// Panics with the install command when `redis-server` or `redis-cli` is missing.
    pub fn start(primaries: usize, replicas: usize) -> Self {
        let count = primaries * (1 + replicas);
        let mut servers = Vec::with_capacity(count);
        let mut dirs = Vec::with_capacity(count);
        for _ in 0..count {
            let dir = std::env::temp_dir().join(format!(
                "qrauth-cluster-{}-{}",
                std::process::id(),
                NEXT_DIR.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("cluster node directory");
            let bus = free_port().to_string();
            let timeout = NODE_TIMEOUT.as_millis().to_string();
            let dir_arg = dir.to_string_lossy().into_owned();
            servers.push(RedisServer::start_with_args(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-port",
                &bus,
                "--cluster-node-timeout",
                &timeout,
                "--dir",
                &dir_arg,
            ]));
            dirs.push(dir);
        }
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(servers.iter().map(|s| format!("127.0.0.1:{}", s.port())));
        args.extend([
            "--cluster-replicas".into(),
            replicas.to_string(),
            "--cluster-yes".into(),
        ]);
        let out = redis_cli(&args);
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { servers, dirs };
        cluster.wait_until_ok(primaries, FORM_TIMEOUT);
        cluster
    }

    /// Seed URLs of every node started (`redis://127.0.0.1:{port}/`).
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(RedisServer::url).collect()
    }

    /// The seed URLs joined with commas, as the demos' `--redis-cluster` takes them.
    pub fn urls_joined(&self) -> String {
        self.urls().join(",")
    }

    /// Ports of the nodes that are still running.
    pub fn live_ports(&self) -> Vec<u16> {
        self.servers
            .iter()
            .filter(|s| s.is_running())
            .map(RedisServer::port)
            .collect()
    }

    /// The nodes as a running node sees them.
    pub fn nodes(&self) -> Vec<ClusterNode> {
        let port = *self.live_ports().first().expect("a running node");
        parse_nodes(&cli_text(port, &["CLUSTER", "NODES"]))
    }

    /// The current primaries.
    pub fn primaries(&self) -> Vec<ClusterNode> {
        self.nodes().into_iter().filter(|n| n.primary).collect()
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> u16 {
        let port = *self.live_ports().first().expect("a running node");
        cli_text(port, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT answers a number")
    }

    /// The primary serving `slot` now.
    pub fn primary_of_slot(&self, slot: u16) -> ClusterNode {
        self.serving_primary(slot)
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// The primary serving `slot` in the node's current view, if any (none while a failover
    /// is under way).
    pub fn serving_primary(&self, slot: u16) -> Option<ClusterNode> {
        self.primaries()
            .into_iter()
            .find(|n| n.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
    }

    /// Keys stored on the node at `port` (`KEYS *`: test data only).
    pub fn keys_on(&self, port: u16) -> Vec<String> {
        cli_text(port, &["KEYS", "*"])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// SIGKILLs the node on `port` (no goodbye to clients or to the cluster).
    pub fn kill(&mut self, port: u16) {
        let server = self
            .servers
            .iter_mut()
            .find(|s| s.port() == port)
            .unwrap_or_else(|| panic!("no node on port {port}"));
        server.stop();
    }

    /// Waits until a running node reports `cluster_state:ok` and `primaries` primaries
    /// serve all 16384 slots, agreed on by every running node.
    pub fn wait_until_ok(&self, primaries: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ports = self.live_ports();
            let agreed = ports.iter().all(|&p| {
                let info = cli_text(p, &["CLUSTER", "INFO"]);
                let nodes = parse_nodes(&cli_text(p, &["CLUSTER", "NODES"]));
                let serving: Vec<_> = nodes
                    .iter()
                    .filter(|n| n.primary && !n.slots.is_empty())
                    .collect();
                let slots: u32 = serving
                    .iter()
                    .flat_map(|n| &n.slots)
                    .map(|&(a, b)| u32::from(b - a) + 1)
                    .sum();
                info.contains("cluster_state:ok")
                    && serving.len() == primaries
                    && slots == 16384
                    && serving.iter().all(|n| ports.contains(&n.port))
            });
            if agreed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not settle within {within:?}: {}",
                cli_text(ports[0], &["CLUSTER", "NODES"])
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every running primary's replicas have received all it acknowledged
    /// (`INFO replication`: each replica's `offset` equals `master_repl_offset`).
    pub fn wait_replicated(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let caught_up = self.primaries().iter().all(|p| {
                let info = cli_text(p.port, &["INFO", "replication"]);
                let master = info
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("master_repl_offset:"))
                    .map(str::to_owned);
                let replicas: Vec<&str> = info
                    .lines()
                    .filter(|l| l.starts_with("slave") && l.contains("offset="))
                    .collect();
                !replicas.is_empty()
                    && replicas.iter().all(|l| {
                        l.split(',')
                            .find_map(|kv| kv.strip_prefix("offset="))
                            .map(str::trim)
                            == master.as_deref()
                    })
            });
            if caught_up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replicas did not catch up within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Moves `slot` with its keys from its primary to the primary on `to` the way
    /// `redis-cli --cluster reshard` does: `IMPORTING`/`MIGRATING`, `MIGRATE` key batches,
    /// then `SETSLOT NODE` on every primary. Clients see `ASK` during the move and `MOVED`
    /// after it.
    pub fn migrate_slot(&self, slot: u16, to: u16) {
        let from = self.primary_of_slot(slot);
        let target = self
            .primaries()
            .into_iter()
            .find(|n| n.port == to)
            .unwrap_or_else(|| panic!("no primary on port {to}"));
        assert_ne!(from.port, to, "slot {slot} is already on {to}");
        let s = slot.to_string();
        cli_ok(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from.id]);
        cli_ok(
            from.port,
            &["CLUSTER", "SETSLOT", &s, "MIGRATING", &target.id],
        );
        loop {
            let keys: Vec<String> = cli_text(from.port, &["CLUSTER", "GETKEYSINSLOT", &s, "100"])
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            if keys.is_empty() {
                break;
            }
            let to_s = to.to_string();
            let mut args = vec![
                "MIGRATE",
                "127.0.0.1",
                to_s.as_str(),
                "",
                "0",
                "5000",
                "KEYS",
            ];
            args.extend(keys.iter().map(String::as_str));
            cli_ok(from.port, &args);
        }
        for node in self.primaries() {
            cli_ok(node.port, &["CLUSTER", "SETSLOT", &s, "NODE", &target.id]);
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            server.stop();
        }
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn redis_cli(args: &[String]) -> Output {
    match Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("redis-cli not found: apt-get install -y redis-tools")
        }
        Err(e) => panic!("cannot run redis-cli: {e}"),
    }
}

/// `redis-cli -p {port} {args}`'s standard output (an error reply is printed there too).
fn cli_text(port: u16, args: &[&str]) -> String {
    let mut all = vec!["-p".to_owned(), port.to_string()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let out = redis_cli(&all);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cli_ok(port: u16, args: &[&str]) {
    let text = cli_text(port, args);
    assert!(
        text.trim() == "OK" || text.trim() == "NOKEY",
        "redis-cli -p {port} {args:?}: {text}"
    );
}

/// Parses `CLUSTER NODES`: `id ip:port@bus flags master-id ping pong epoch link slot…`.
fn parse_nodes(text: &str) -> Vec<ClusterNode> {
    let mut nodes = Vec::new();
    let mut seen = HashMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() < 8 {
            continue;
        }
        let Some(port) = parts[1]
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok())
        else {
            continue;
        };
        let flags = parts[2];
        let primary = flags.contains("master") && !flags.contains("fail");
        let slots = parts[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|a| (a, a)),
            })
            .collect();
        if seen.insert(port, ()).is_none() {
            nodes.push(ClusterNode {
                id: parts[0].to_owned(),
                port,
                primary,
                slots,
            });
        }
    }
    nodes
}
