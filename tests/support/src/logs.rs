//! Captures every tracing event, at every level, as text: tests search it for secrets.

use std::sync::{Arc, Mutex};

use tracing::subscriber::DefaultGuard;

/// A buffer that a tracing subscriber writes into. Cheap to clone.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Captures every event of this thread (TRACE and up, no colours) until the guard drops.
    /// Run the test on a current-thread runtime, so that every event is on this thread.
    pub fn start() -> (Self, DefaultGuard) {
        let capture = Self::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (capture, tracing::subscriber::set_default(subscriber))
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Panics if the log holds any of `secrets` (or a 16-byte prefix of one), naming it; also
    /// if nothing at DEBUG was logged, since then the capture proves nothing.
    pub fn assert_holds_none(&self, secrets: &[(String, String)]) {
        let log = self.text();
        assert!(
            !log.trim().is_empty(),
            "nothing was logged: the capture cannot prove anything"
        );
        assert!(
            log.contains("DEBUG"),
            "below-INFO events were not captured:\n{log}"
        );
        for (name, raw) in secrets {
            assert!(raw.len() >= 16, "{name} is too short to search for");
            assert!(
                !log.contains(raw.as_str()),
                "the log contains the {name}:\n{log}"
            );
            // A truncated secret is still a leak.
            assert!(
                !log.contains(&raw[..16]),
                "the log contains a prefix of the {name}:\n{log}"
            );
        }
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
