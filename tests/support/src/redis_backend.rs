//! One Redis or one Redis Cluster, behind one type, so that a `RedisStore` test runs on both
//! without being copied: `fn contract(backend: RedisBackend)` plus a line per backend.

use qrauth_core::store::{RedisStore, RedisStoreBuilder};

use crate::redis_cluster::RedisCluster;
use crate::redis_server::RedisServer;

/// Which Redis a test runs against.
pub enum RedisBackend {
    /// One `redis-server`.
    Single(RedisServer),
    /// A Redis Cluster (3 primaries unless a test asks for more).
    Cluster(RedisCluster),
}

impl RedisBackend {
    /// Starts one `redis-server`.
    pub fn single() -> Self {
        Self::Single(RedisServer::start())
    }

    /// Starts a cluster of 3 primaries without replicas.
    pub fn cluster() -> Self {
        Self::Cluster(RedisCluster::start(3, 0))
    }

    /// Starts the backend off the async runtime (starting a cluster blocks for a while).
    pub async fn start(cluster: bool) -> Self {
        tokio::task::spawn_blocking(move || {
            if cluster {
                Self::cluster()
            } else {
                Self::single()
            }
        })
        .await
        .expect("start Redis")
    }

    /// A store builder for this backend.
    pub fn builder(&self) -> RedisStoreBuilder {
        match self {
            Self::Single(server) => RedisStore::builder(server.url()),
            Self::Cluster(cluster) => RedisStore::cluster(cluster.urls()),
        }
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The one server, for tests that inspect or restart it.
    pub fn server(&self) -> Option<&RedisServer> {
        match self {
            Self::Single(server) => Some(server),
            Self::Cluster(_) => None,
        }
    }

    /// The cluster, for tests that inspect it.
    pub fn as_cluster(&self) -> Option<&RedisCluster> {
        match self {
            Self::Cluster(cluster) => Some(cluster),
            Self::Single(_) => None,
        }
    }
}
