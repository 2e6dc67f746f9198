//! Caps on the long-polls and event streams one caller holds open at once.
//!
//! A held stream costs a connection, a waiter and, for upstream providers, keeps the upstream
//! poll loop of its session alive; without a cap one client could open hundreds on one session.
//! The counts are per process (a replica bounds what it holds itself); nothing is stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};

/// When a refused caller may try again: one of its streams may have ended by then.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Open streams per key (`s:` session, `b:` binding, `a:` client network).
#[derive(Default)]
pub(crate) struct StreamSlots {
    open: Mutex<HashMap<String, u32>>,
}

/// One open stream; its slots are given back when it drops (the request ends, the client
/// goes away).
pub(crate) struct StreamSlot {
    slots: Arc<StreamSlots>,
    keys: Vec<String>,
}

impl StreamSlots {
    /// Takes a slot under every `(key, cap)`, or none: `429 slow_down` (retry after
    /// [`RETRY_AFTER`]) when any key is at its cap. A cap of `u32::MAX` is no cap.
    pub(crate) fn acquire(self: &Arc<Self>, keys: Vec<(String, u32)>) -> Result<StreamSlot> {
        let keys: Vec<(String, u32)> = keys.into_iter().filter(|(_, c)| *c != u32::MAX).collect();
        let mut open = self
            .open
            .lock()
            .map_err(|_| Error::Internal("stream slots poisoned".into()))?;
        if keys
            .iter()
            .any(|(key, cap)| open.get(key).copied().unwrap_or(0) >= *cap)
        {
            return Err(Error::SlowDown {
                retry_after: RETRY_AFTER,
            });
        }
        for (key, _) in &keys {
            *open.entry(key.clone()).or_default() += 1;
        }
        Ok(StreamSlot {
            slots: self.clone(),
            keys: keys.into_iter().map(|(k, _)| k).collect(),
        })
    }

    /// Open streams under `key` (for tests and gauges).
    #[cfg(test)]
    fn count(&self, key: &str) -> u32 {
        self.open
            .lock()
            .map(|o| o.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let Ok(mut open) = self.slots.open.lock() else {
            return;
        };
        for key in &self.keys {
            if let Some(n) = open.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_at_its_cap_refuses_and_a_dropped_slot_frees_it() {
        let slots = Arc::new(StreamSlots::default());
        let keys = |s: &str| vec![(format!("s:{s}"), 2), ("a:net".to_owned(), 3)];
        let one = slots.acquire(keys("x")).unwrap();
        let _two = slots.acquire(keys("x")).unwrap();
        assert!(matches!(
            slots.acquire(keys("x")),
            Err(Error::SlowDown { .. })
        ));
        let _three = slots.acquire(keys("y")).unwrap();
        // The address is full now, whatever the session.
        assert!(matches!(
            slots.acquire(keys("z")),
            Err(Error::SlowDown { .. })
        ));
        assert_eq!(slots.count("s:z"), 0, "a refused acquire takes nothing");
        drop(one);
        assert_eq!(slots.count("a:net"), 2);
        let _four = slots.acquire(keys("x")).unwrap();
        assert!(slots.acquire(vec![("s:x".into(), u32::MAX)]).is_ok());
    }

    proptest::proptest! {
        // Issue 16: whatever the order of opens and closes, no key ever holds more than its
        // cap, a refused open takes nothing, and every slot is given back.
        #[test]
        fn stream_counts_never_exceed_their_caps(
            ops in proptest::collection::vec((0u8..4, 0u8..3, proptest::bool::ANY), 0..200),
            session_cap in 1u32..4,
            address_cap in 1u32..6,
        ) {
            let slots = Arc::new(StreamSlots::default());
            let mut held: Vec<(u8, StreamSlot)> = Vec::new();
            for (session, network, open) in ops {
                if open {
                    let keys = vec![
                        (format!("s:{session}"), session_cap),
                        (format!("a:{network}"), address_cap),
                    ];
                    let before = (slots.count(&format!("s:{session}")), slots.count(&format!("a:{network}")));
                    match slots.acquire(keys) {
                        Ok(slot) => held.push((session, slot)),
                        Err(_) => {
                            proptest::prop_assert!(before.0 >= session_cap || before.1 >= address_cap);
                            let after = (slots.count(&format!("s:{session}")), slots.count(&format!("a:{network}")));
                            proptest::prop_assert_eq!(before, after);
                        }
                    }
                } else if let Some(i) = held.iter().position(|(s, _)| *s == session) {
                    held.swap_remove(i);
                }
                for k in 0..4u8 {
                    let open = slots.count(&format!("s:{k}"));
                    proptest::prop_assert!(open <= session_cap);
                }
                for k in 0..3u8 {
                    let open = slots.count(&format!("a:{k}"));
                    proptest::prop_assert!(open <= address_cap);
                }
            }
            drop(held);
            proptest::prop_assert!(slots.open.lock().map(|o| o.is_empty()).unwrap_or(false));
        }
    }
}
