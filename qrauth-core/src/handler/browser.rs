//! The browser's routes: `POST /qrcode`, `GET /qrcode/status`, `GET /qrcode/events`,
//! `POST /qrcode/exchange`.

use std::time::Duration;

use http::StatusCode;
use http::header::{SET_COOKIE, USER_AGENT};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::request::{body_is_empty, header_str, hex_sha256, parse_json, query_param};
use super::status::{needs_new_qr, status_for};
use super::{ApiRequest, ApiResponse, QrAuthService, events};
use crate::error::{Error, Result};
use crate::flow::waits_for_upstream;
use crate::metrics::Limit;
use crate::provider::SessionStart;
use crate::record::Initiator;
use crate::secret::{BindingSecret, QrCodeId, Ticket};
use crate::types::QrStatus;

/// A long-poll answered sooner than this after it started did not wait: it counts as a poll.
const AT_ONCE: Duration = Duration::from_millis(250);

/// How long after a rotation a wait for it ends: timers and the clock may disagree by a
/// millisecond or two, and the re-read must see the new rotation.
const ROTATION_SLACK_MS: u64 = 20;

/// The rotation of the QR the browser shows (`rotation`), if it says.
fn shown_rotation(request: &ApiRequest) -> Result<Option<u64>> {
    query_param(request, "rotation")
        .map(|r| {
            r.parse::<u64>()
                .map_err(|_| Error::InvalidRequest("rotation must be a number".into()))
        })
        .transpose()
}

/// The longest `nonce` `POST /qrcode` accepts, in bytes.
pub(crate) const MAX_NONCE_BYTES: usize = 256;

/// `POST /qrcode`: qrauth reads `nonce`; every other field belongs to the provider.
#[derive(Deserialize, Default)]
struct GenerateBody {
    nonce: Option<String>,
    #[serde(flatten)]
    extensions: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExchangeBody {
    ticket: String,
}

impl QrAuthService {
    pub(super) async fn generate(&self, request: &ApiRequest) -> Result<ApiResponse> {
        let limits = self.inner.limits;
        let flow = &self.inner.flow;
        // First: a foreign page must neither replace this visitor's binding cookie nor spend
        // the visitor's address budget.
        self.check_not_cross_site(&request.headers)?;
        self.limit_client(
            "gen",
            request,
            limits.generate_per_minute,
            Duration::from_secs(60),
        )
        .await
        .inspect_err(|e| self.metrics().limit_refused(Limit::Generate, e))?;
        let body: GenerateBody = if body_is_empty(request) {
            GenerateBody::default()
        } else {
            parse_json(request)?
        };
        // The nonce is stored with the session and copied into the id_token: bounded, so that
        // a client cannot make its pending session (and the token) arbitrarily large.
        if body
            .nonce
            .as_ref()
            .is_some_and(|n| n.len() > MAX_NONCE_BYTES)
        {
            return Err(Error::InvalidRequest(format!(
                "nonce longer than {MAX_NONCE_BYTES} bytes"
            )));
        }
        // Reuse the browser's binding so its other tabs keep working, but only one qrauth
        // minted for this client's network: a value planted in the browser (all zeros, another
        // party's own binding) would hand that party this browser's ticket.
        let key = &self.inner.binding_key;
        let network = self.client_network(request).unwrap_or_default();
        let binding = match self.binding(&request.headers) {
            Some(b) if b.is_minted(key, &network) => b,
            _ => BindingSecret::mint(key, &network)?,
        };
        self.limit(
            format!("bind:{}", binding.hash().to_hex()),
            limits.sessions_per_binding,
            flow.lifetimes().qr_code,
        )
        .await
        .inspect_err(|e| self.metrics().limit_refused(Limit::Binding, e))?;
        let user_agent = header_str(&request.headers, USER_AGENT).unwrap_or("");
        let initiator = Initiator {
            ip: self.client_ip(request),
            device: crate::user_agent::describe(user_agent).to_string(),
        };
        let id = QrCodeId::generate()?;
        let now_ms = flow.clock().now_millis();
        let expire_at_ms = now_ms.saturating_add(flow.lifetimes().qr_code.as_millis() as u64);
        let content = self
            .inner
            .provider
            .start(SessionStart {
                id: &id,
                initiator: &initiator,
                nonce: body.nonce.as_deref(),
                extensions: &body.extensions,
                now_ms,
                expire_at_ms,
            })
            .await?;
        // The phone app scans through qrauth: its QR rotates, so the content is kept to be shown
        // again with each rotation's scan token.
        let rotates = self.rotates();
        let record = flow
            .create(
                id,
                &binding,
                initiator,
                body.nonce,
                (
                    content.provider_data,
                    rotates.then(|| content.content.clone()),
                ),
            )
            .await?;
        if self.inner.provider.capabilities().upstream.is_some() {
            // Start watching the IdP at once: the browser's first poll follows.
            self.inner.upstream_loops.interest(&record.id);
        }
        let now = flow.clock().now_millis();
        let shown = rotates.then(|| flow.rotation().shown(&record.id, &content.content, now));
        let qr_text = shown.as_ref().map_or(&content.content, |qr| &qr.content);
        let image = crate::qr::svg_data_url(qr_text)?;
        let expires_in = record.expire_at_ms.saturating_sub(now).div_ceil(1000);
        let mut answer = json!({
            "qrcodeId": record.id.as_str(),
            "qrcodeContent": qr_text,
            "image": image,
            "expiresIn": expires_in,
            "expireAt": record.expire_at_ms,
            "interval": flow.poll_interval().as_secs().max(1),
        });
        if let Some(obj) = answer.as_object_mut() {
            if let Some(code) = content.user_code {
                obj.insert("userCode".into(), json!(code));
            }
            if let Some(qr) = &shown {
                obj.insert("rotation".into(), json!(qr.rotation));
                obj.insert("rotatesAt".into(), json!(qr.rotates_at_ms));
            }
        }
        // Re-sent every time so that it outlives the newest QR (plus a ticket's lifetime).
        let cookie = self
            .inner
            .cookies
            .set_binding(binding.expose_secret(), expires_in + 300);
        Ok(ApiResponse::json(StatusCode::CREATED, &answer).with_header(SET_COOKIE, &cookie))
    }

    fn query_id(&self, request: &ApiRequest) -> Result<Option<QrCodeId>> {
        match query_param(request, "qrcodeId") {
            None => Err(Error::InvalidRequest("qrcodeId is required".into())),
            Some(raw) => Ok(QrCodeId::parse(&raw).ok()),
        }
    }

    /// Plain polls may come once per advertised interval, with some slack for network jitter.
    fn poll_window(&self) -> Duration {
        self.inner
            .flow
            .poll_interval()
            .saturating_sub(Duration::from_millis(250))
            .max(Duration::from_millis(100))
    }

    pub(super) async fn status(&self, request: &ApiRequest) -> Result<ApiResponse> {
        let id = self.query_id(request)?;
        let wait = match query_param(request, "wait") {
            None => None,
            Some(w) if w.is_empty() => Some(self.inner.default_wait),
            Some(w) => Some(
                w.parse::<u64>()
                    .map(|s| Duration::from_secs(s).min(self.inner.max_wait))
                    .map_err(|_| {
                        Error::InvalidRequest("wait must be a number of seconds".into())
                    })?,
            ),
        };
        let since = match query_param(request, "since") {
            None => None,
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| Error::InvalidRequest("since must be a version number".into()))?,
            ),
        };
        let shown = shown_rotation(request)?;
        let long_poll = wait.filter(|w| !w.is_zero());
        if long_poll.is_none() {
            // Before any lookup: unknown, foreign and expired ids cost the same budget.
            self.limit_poll(request).await?;
        }
        let binding = self.require_binding(&request.headers);
        let id = id.ok_or(Error::NotBound);
        let Some(wait) = long_poll else {
            let status = self.poll(&id?, &binding?).await?;
            return Ok(ApiResponse::json(
                StatusCode::OK,
                &status_for(&status, shown)?,
            ));
        };
        // A long-poll that answers at once (a stale `since`, an unknown, foreign or expired
        // id) is a plain poll in disguise: it spends the same budget, or a client could loop
        // on it as fast as it likes. One that really waited spends nothing. Told apart by how
        // soon it answered, so that a long-poll still costs one store call: a real change
        // within `AT_ONCE` of the wait's start would need a phone user faster than that.
        let started = Instant::now();
        let answer = match (id, binding) {
            (Ok(id), Ok(binding)) => {
                let _slot = self.stream_slot(request, &id, &binding)?;
                self.wait_for_news(&id, &binding, (since, shown), started + wait)
                    .await
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        if started.elapsed() < AT_ONCE && !self.is_shutting_down() {
            self.limit_poll(request).await?;
        }
        let status = answer?;
        Ok(ApiResponse::json(
            StatusCode::OK,
            &status_for(&status, shown)?,
        ))
    }

    /// Whether the QR rotates: the provider's phone app scans through qrauth's phone routes.
    pub(super) fn rotates(&self) -> bool {
        self.inner.provider.capabilities().phone.is_some()
    }

    /// Waits like [`Self::wait_for_change`] for a browser showing rotation `shown` of the QR,
    /// which also needs to hear of the next rotation: at once when it shows an old one, else at
    /// the rotation (when the session is still pending then).
    pub(super) async fn wait_for_news(
        &self,
        id: &QrCodeId,
        binding: &BindingSecret,
        (since, shown): (Option<u64>, Option<u64>),
        mut deadline: Instant,
    ) -> Result<QrStatus> {
        if let Some(shown) = shown.filter(|_| self.rotates()) {
            let rotation = self.inner.flow.rotation();
            let now = self.inner.flow.clock().now_millis();
            if shown != rotation.rotation(id, now) {
                let status = self.poll(id, binding).await?;
                if needs_new_qr(&status, Some(shown)) {
                    return Ok(status);
                }
            }
            // A little after the rotation, so that the re-read sees the new one.
            let until = rotation.rotates_at_ms(id, now).saturating_sub(now) + ROTATION_SLACK_MS;
            deadline = deadline.min(Instant::now() + Duration::from_millis(until));
        }
        self.wait_for_change(id, binding, since, deadline).await
    }

    /// A slot for one more long-poll or event stream of this caller, held until it drops.
    fn stream_slot(
        &self,
        request: &ApiRequest,
        id: &QrCodeId,
        binding: &BindingSecret,
    ) -> Result<super::streams::StreamSlot> {
        let limits = &self.inner.limits;
        let mut keys = vec![
            (format!("s:{}", id.as_str()), limits.streams_per_session),
            (
                format!("b:{}", binding.hash().to_hex()),
                limits.streams_per_binding,
            ),
        ];
        if let Some(network) = self.caller_key(request) {
            keys.push((format!("a:{network}"), limits.streams_per_address));
        }
        self.inner.streams.acquire(keys)
    }

    /// The poll-interval limit: one status answer per advertised interval, per client address
    /// and presented id. Keyed on what the caller cannot vary for free: a fresh binding cookie
    /// per request buys nothing (it is not in the key), a fresh id only polls an id nobody
    /// owns.
    async fn limit_poll(&self, request: &ApiRequest) -> Result<()> {
        if !self.inner.limits.enforce_poll_interval {
            return Ok(());
        }
        let presented = hex_sha256(&query_param(request, "qrcodeId").unwrap_or_default());
        // Without a peer address, the binding the caller presents is all there is to key on.
        let caller = match self.caller_key(request) {
            Some(network) => network,
            None => match self.binding(&request.headers) {
                Some(b) => b.hash().to_hex(),
                None => String::new(),
            },
        };
        self.limit(format!("poll:{caller}:{presented}"), 1, self.poll_window())
            .await
            .inspect_err(|e| self.metrics().limit_refused(Limit::Poll, e))
    }

    /// The session's status for its bound browser; keeps the upstream loop of a session that
    /// waits for the IdP alive, and reports the IdP's failure while it lasts.
    pub(super) async fn poll(&self, id: &QrCodeId, binding: &BindingSecret) -> Result<QrStatus> {
        let status = self.inner.flow.status(id, binding).await?;
        if self.inner.provider.capabilities().upstream.is_some()
            && waits_for_upstream(status.state)
            && let Some(failure) = self.inner.upstream_loops.interest(id).failure()
        {
            return Err(failure);
        }
        Ok(status)
    }

    /// Waits for the next change after `since` (the current version when `None`), as long-poll
    /// and event streams do; an upstream failure ends the wait with its error. From
    /// [`shutdown`](QrAuthService::shutdown) on it answers at once with the current status.
    pub(super) async fn wait_for_change(
        &self,
        id: &QrCodeId,
        binding: &BindingSecret,
        since: Option<u64>,
        deadline: Instant,
    ) -> Result<QrStatus> {
        let shutdown = &self.inner.shutdown;
        if shutdown.is_signalled() {
            return self.poll(id, binding).await;
        }
        tokio::select! {
            changed = self.wait_until(id, binding, since, deadline) => changed,
            () = shutdown.started() => self.poll(id, binding).await,
        }
    }

    async fn wait_until(
        &self,
        id: &QrCodeId,
        binding: &BindingSecret,
        since: Option<u64>,
        deadline: Instant,
    ) -> Result<QrStatus> {
        let flow = &self.inner.flow;
        let _waiting = self.metrics().waiter();
        if self.inner.provider.capabilities().upstream.is_none() {
            return flow.wait_for_change(id, binding, since, deadline).await;
        }
        let guard = self.inner.upstream_loops.wait(id);
        if let Some(failure) = guard.lp.failure() {
            return Err(failure);
        }
        tokio::select! {
            changed = flow.wait_for_change(id, binding, since, deadline) => changed,
            failure = guard.lp.next_failure() => Err(failure),
        }
    }

    pub(super) async fn events(&self, request: &ApiRequest) -> Result<ApiResponse> {
        let id = self.query_id(request)?;
        let binding = self.require_binding(&request.headers)?;
        let id = id.ok_or(Error::NotBound)?;
        let last_event_id = header_str(&request.headers, "last-event-id")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let shown = shown_rotation(request)?;
        // Check binding and existence before committing to a stream.
        let first = self.poll(&id, &binding).await?;
        let slot = self.stream_slot(request, &id, &binding)?;
        Ok(events::stream(
            self.clone(),
            (id, binding, slot),
            first,
            (last_event_id, shown),
            self.inner.keep_alive,
        ))
    }

    pub(super) async fn exchange(&self, request: &ApiRequest) -> Result<ApiResponse> {
        let body: ExchangeBody = parse_json(request)?;
        let binding = self.require_binding(&request.headers)?;
        let ticket = Ticket::parse(&body.ticket).map_err(|_| Error::InvalidTicket)?;
        let flow = &self.inner.flow;
        let redeemed = flow.redeem(&ticket, &binding).await?;
        match self.sign_in(request, &redeemed.record).await {
            Err(e) if e.is_transient() => {
                // Nothing was issued: let the browser try again with the same ticket rather
                // than lose the login to an upstream hiccup.
                if let Err(restore) = flow.restore(&ticket, &redeemed).await {
                    tracing::warn!(error = %restore, "exchange failed and its ticket could not be restored");
                }
                Err(e)
            }
            answer => answer,
        }
    }
}
