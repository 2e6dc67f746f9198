//! A real HTTP server on a loopback port that answers every request with the answer a test
//! sets (status and body), or per path: the upstream IdP of the property tests of upstream
//! answers. [`FaultyUpstream`] is the one that misbehaves below HTTP: it cuts connections, cuts
//! answers short, or answers too late.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The answer to every request.
#[derive(Clone)]
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// The server and the runtime it runs on (also the runtime the test drives its client on).
pub struct ScriptedUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its runtime.
    pub runtime: tokio::runtime::Runtime,
    answer: Arc<Mutex<Answer>>,
    paths: Arc<Mutex<HashMap<String, Answer>>>,
}

impl ScriptedUpstream {
    /// Starts a server answering `200` with an empty body until told otherwise.
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let answer = Arc::new(Mutex::new(Answer {
            status: 200,
            body: Vec::new(),
        }));
        let shared = answer.clone();
        let paths: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let shared_paths = paths.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let by_path = shared_paths
                .lock()
                .ok()
                .and_then(|p| p.get(uri.path()).cloned());
            let answer = by_path.unwrap_or_else(|| {
                shared.lock().map(|a| a.clone()).unwrap_or(Answer {
                    status: 500,
                    body: Vec::new(),
                })
            });
            async move {
                let status = axum::http::StatusCode::from_u16(answer.status)
                    .unwrap_or(axum::http::StatusCode::OK);
                (
                    status,
                    [("content-type", "application/json; charset=utf-8")],
                    answer.body,
                )
            }
        });
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            runtime,
            answer,
            paths,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, every request gets `status` and `body`.
    pub fn answer(&self, status: u16, body: Vec<u8>) {
        if let Ok(mut a) = self.answer.lock() {
            *a = Answer { status, body };
        }
    }
}

impl ScriptedUpstream {
    /// From now on, requests to `path` get `status` and `body` (other paths keep the general
    /// answer).
    pub fn answer_path(&self, path: &str, status: u16, body: Vec<u8>) {
        if let Ok(mut p) = self.paths.lock() {
            p.insert(path.to_owned(), Answer { status, body });
        }
    }
}

/// How a [`FaultyUpstream`] misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Accepts, reads the request, closes without a byte.
    Cut,
    /// Starts a 200 answer and closes halfway through its body.
    Truncated,
    /// Answers `200 {}` after this long.
    Slow(Duration),
}

/// A raw TCP server on a loopback port that misbehaves on every connection.
pub struct FaultyUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FaultyUpstream {
    /// Starts one on the current runtime.
    pub async fn start(fault: Fault) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    match fault {
                        Fault::Cut => {}
                        Fault::Truncated => {
                            let _ = socket
                                .write_all(
                                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                      content-length: 400\r\n\r\n{\"access_token\":\"a",
                                )
                                .await;
                        }
                        Fault::Slow(delay) => {
                            tokio::time::sleep(delay).await;
                            let _ = socket
                                .write_all(
                                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                      content-length: 2\r\n\r\n{}",
                                )
                                .await;
                        }
                    }
                });
            }
        });
        Self { addr, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Upstream HTTP statuses: the usual ones, and any.
pub fn http_status() -> impl proptest::strategy::Strategy<Value = u16> {
    use proptest::prelude::*;
    prop_oneof![
        Just(200u16),
        Just(400),
        Just(404),
        Just(500),
        Just(503),
        100u16..600
    ]
}

/// Any small JSON value an upstream might send: scalars (numbers also as strings, and the
/// given `words`), arrays, and objects whose keys are mostly the given `keys`, nested a few
/// levels.
pub fn json_value(
    keys: &'static [&'static str],
    words: &'static [&'static str],
) -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    use proptest::sample::select;
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        "[ -~]{0,30}".prop_map(serde_json::Value::from),
        (0u64..5_000_000_000).prop_map(|n| serde_json::Value::from(n.to_string())),
        select(words).prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        let key = prop_oneof![
            3 => select(keys).prop_map(str::to_owned),
            1 => "[a-zA-Z_]{1,12}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(key, inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
