//! Captures every tracing event, at every level, as text: tests search it for secrets.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, Once};

use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;

thread_local! {
    /// This thread's capture, if it captures.
    static CURRENT: RefCell<Option<LogCapture>> = const { RefCell::new(None) };
}

/// Ends a capture of this thread when dropped.
pub struct CaptureGuard {
    previous: Option<LogCapture>,
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

fn capturing() -> bool {
    CURRENT.with(|c| c.borrow().is_some())
}

/// The global subscriber of the test process: every level, decided per event (so no callsite
/// is ever cached as disabled), written to the capture of the thread it happens on.
fn install_subscriber() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_span_events(FmtSpan::CLOSE)
            .with_writer(ThreadCapture)
            .with_filter(filter_fn(|_| capturing()));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global tracing subscriber in a test process that captures logs");
    });
}

/// Writes to this thread's capture, or nowhere.
struct ThreadCapture;

impl<'a> MakeWriter<'a> for ThreadCapture {
    type Writer = Box<dyn std::io::Write + 'a>;

    fn make_writer(&'a self) -> Self::Writer {
        match CURRENT.with(|c| c.borrow().clone()) {
            Some(capture) => Box::new(capture),
            None => Box::new(std::io::sink()),
        }
    }
}

/// A buffer that a tracing subscriber writes into. Cheap to clone.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Captures every event of this thread (TRACE and up, no colours), and every span of it
    /// with its fields when it closes, until the guard drops. Run the test on a current-thread
    /// runtime, so that every event is on this thread.
    ///
    /// One process-wide subscriber serves every capture: it writes only on threads that
    /// capture. (A per-test `set_default` subscriber races with `tracing`'s callsite cache:
    /// a callsite first hit on another thread meanwhile can be cached as disabled, and its
    /// events go missing from the capture.)
    pub fn start() -> (Self, CaptureGuard) {
        install_subscriber();
        let capture = Self::default();
        let previous = CURRENT.with(|c| c.replace(Some(capture.clone())));
        (capture, CaptureGuard { previous })
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
