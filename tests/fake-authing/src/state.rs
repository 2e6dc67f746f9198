//! The fake's mutable state: QR codes, tickets, counters, faults.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use tokio::time::Instant;

use crate::faults::Faults;
use crate::record::RecordedRequest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gen {
    V2,
    V3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QrStatus {
    Pending,
    Scanned,
    Authorized,
    Cancelled,
}

#[derive(Debug, Clone)]
pub(crate) struct Qr {
    pub generation: Gen,
    pub status: QrStatus,
    /// Index into the users.
    pub user: Option<usize>,
    pub ticket: Option<String>,
    pub expires: Instant,
}

impl Qr {
    /// Pending and scanned QR codes expire; authorized and cancelled ones keep their status.
    pub fn expired(&self, now: Instant) -> bool {
        matches!(self.status, QrStatus::Pending | QrStatus::Scanned) && now >= self.expires
    }
}

#[derive(Debug, Clone)]
pub(crate) struct TicketRecord {
    pub user: usize,
    pub expires: Instant,
    pub used: bool,
}

#[derive(Default)]
pub(crate) struct State {
    pub qrs: HashMap<String, Qr>,
    pub tickets: HashMap<String, TicketRecord>,
    pub access_tokens: HashSet<String>,
    pub counts: HashMap<String, u64>,
    pub log: Vec<String>,
    pub recorded: Vec<RecordedRequest>,
    pub faults: Faults,
    pub last_gene_body: Option<Value>,
    pub last_fastpass_options: Option<Value>,
}
