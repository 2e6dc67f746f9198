//! What qrauth's tests share, in one `publish = false` crate:
//!
//! - [`serve`]: a real axum or actix-web server on a loopback port for any app, stopped on drop;
//! - [`logs`]: capture every tracing event at every level, to prove no secret is logged;
//! - [`oidc_provider`]: a real OpenID Provider (npm `oidc-provider`, device flow) per test, and
//!   a phone that approves or denies on its pages;
//! - [`redis_server`]: a throwaway `redis-server` per test (a missing binary fails with the
//!   install command);
//! - [`redis_backend`]: one Redis or one cluster behind one type, for tests run on both;
//! - [`redis_cluster`]: a throwaway Redis Cluster per test (3 primaries, optionally with
//!   replicas), with slot migration and node kills;
//! - [`scripted_upstream`]: a loopback HTTP server that answers what a property test says;
//! - [`programs`]: the repository root and outside programs (Node.js, Chromium) on `PATH`;
//! - [`phone`]: the phone users the tests log in with;
//! - [`screen`]: the QR each test browser shows, which the test phones scan;
//! - [`service_client`]: an in-process browser and phone that call `QrAuthService::handle`;
//! - [`provider`]: a test-only upstream-confirmed provider, written on qrauth-core's public API.
#![forbid(unsafe_code)]

pub mod logs;
pub mod oidc_provider;
pub mod phone;
pub mod programs;
pub mod provider;
pub mod redis_backend;
pub mod redis_cluster;
pub mod redis_server;
pub mod screen;
pub mod scripted_upstream;
pub mod serve;
pub mod service_client;

pub use logs::LogCapture;
pub use oidc_provider::{DevicePhone, OidcProvider};
pub use redis_backend::RedisBackend;
pub use redis_cluster::RedisCluster;
pub use redis_server::RedisServer;
pub use serve::{Framework, Served};
