//! Reading `text/event-stream` bodies.

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` (none for the default `message`).
    pub event: Option<String>,
    /// `id:`.
    pub id: Option<String>,
    /// `data:` lines joined by `\n`.
    pub data: Option<String>,
    /// `retry:`.
    pub retry: Option<String>,
    /// Comment lines (`: …`).
    pub comments: Vec<String>,
}

/// Reads a `text/event-stream` body event by event.
#[derive(Debug)]
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
    eof: bool,
}

impl SseReader {
    /// Reads events from `response` (whose headers the caller has checked).
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: String::new(),
            eof: false,
        }
    }

    /// The next event block, or `None` at the end of the stream. Panics on transport errors
    /// (including the client timeout) and on a stream that ends mid-event.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            let normalized = self.buffer.replace("\r\n", "\n");
            if let Some(end) = normalized.find("\n\n") {
                let block = normalized[..end].to_owned();
                self.buffer = normalized[end + 2..].to_owned();
                return Some(parse_event(&block));
            }
            if self.eof {
                assert!(
                    self.buffer.trim().is_empty(),
                    "stream ended inside an event: {:?}",
                    self.buffer
                );
                return None;
            }
            match self.response.chunk().await.expect("reading event stream") {
                Some(chunk) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                None => self.eof = true,
            }
        }
    }

    /// Every remaining event up to the end of the stream.
    pub async fn rest(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }

    /// The next event that carries `data:`, skipping `retry:`-only blocks and comments.
    pub async fn next_data(&mut self) -> Option<SseEvent> {
        while let Some(event) = self.next().await {
            if event.data.is_some() {
                return Some(event);
            }
        }
        None
    }
}

fn parse_event(block: &str) -> SseEvent {
    let mut event = SseEvent::default();
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            event.comments.push(comment.trim().to_owned());
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event.event = Some(value.to_owned()),
            "id" => event.id = Some(value.to_owned()),
            "retry" => event.retry = Some(value.to_owned()),
            "data" => {
                event.data = Some(match event.data.take() {
                    Some(previous) => format!("{previous}\n{value}"),
                    None => value.to_owned(),
                })
            }
            other => panic!("unexpected SSE field {other:?} in {block:?}"),
        }
    }
    event
}
