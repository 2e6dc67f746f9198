//! Property tests of what an upstream IdP may answer: the Authing provider talks to a real
//! HTTP server on loopback whose every answer (status, body) is drawn by proptest. Whatever it
//! says, the provider answers with a typed error of the documented kind (502/504 for Authing's
//! fault, the mapped 4xx for Authing's documented refusals), never a panic and never a 500.
//!
//! `PROPTEST_CASES=5000 cargo test -p qrauth-core --features authing --release --test
//! upstream_responses` for a longer run.
#![cfg(feature = "authing")]

use std::time::Duration;

use proptest::prelude::*;
use qrauth_core::provider::authing::{ApiVersion, AuthingProvider};
use qrauth_core::provider::{GenerateRequest, QrAuthProvider};
use qrauth_core::session::Initiator;
use qrauth_core::{BindingSecret, Error};

#[path = "support/scripted_upstream.rs"]
mod scripted_upstream;

use scripted_upstream::{ScriptedUpstream as Upstream, http_status};

trait AuthingUpstream {
    fn provider(&self, version: ApiVersion) -> AuthingProvider;
}

impl AuthingUpstream for Upstream {
    fn provider(&self, version: ApiVersion) -> AuthingProvider {
        let _guard = self.runtime.enter();
        AuthingProvider::builder(
            "app-id-0000",
            "app-secret-0000",
            self.base_url(),
            "pool-0000",
        )
        .allow_insecure_http(true)
        .api_version(version)
        .poll_interval(Duration::from_millis(100))
        .timeouts(Duration::from_secs(2), Duration::from_secs(1))
        .build()
        .expect("provider")
    }
}

/// `default` cases, or `PROPTEST_CASES`.
fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any small JSON value, with Authing's field names and status words likely.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    scripted_upstream::json_value(
        &[
            "status",
            "ticket",
            "qrcodeId",
            "random",
            "scannedResult",
            "userInfo",
            "nickname",
            "photo",
        ],
        &[
            "PENDING",
            "SCANNED",
            "AUTHORIZED",
            "CANCELLED",
            "EXPIRED",
            "MOBILE_APP",
        ],
    )
}

/// An Authing-like envelope (V3 `statusCode`/`apiCode`, V2 `code`) around any data, or bytes.
fn upstream_body() -> impl Strategy<Value = Vec<u8>> {
    let code = prop_oneof![
        Just(200i64),
        Just(400),
        Just(401),
        Just(403),
        Just(404),
        Just(500),
        Just(2241),
        any::<i64>()
    ];
    prop_oneof![
        (
            code.clone(),
            proptest::option::of(code.clone()),
            json_value(),
            "[ -~]{0,20}"
        )
            .prop_map(|(status, api, data, message)| {
                let mut envelope = serde_json::json!({
                    "statusCode": status, "code": status, "message": message,
                    "requestId": "r", "data": data,
                });
                if let (Some(api), Some(obj)) = (api, envelope.as_object_mut()) {
                    obj.insert("apiCode".into(), api.into());
                }
                serde_json::to_vec(&envelope).unwrap_or_default()
            }),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

/// The errors an upstream answer may legitimately turn into.
fn acceptable(error: &Error) -> bool {
    let status = error.status().as_u16();
    status != 500 && (status == 502 || status == 504 || (400..500).contains(&status))
}

fn valid_gene(version: ApiVersion) -> Vec<u8> {
    let data = match version {
        ApiVersion::V2 => serde_json::json!({ "random": "upstream-qr-1", "expiresIn": 120 }),
        _ => serde_json::json!({ "qrcodeId": "upstream-qr-1" }),
    };
    serde_json::to_vec(&serde_json::json!({
        "statusCode": 200, "code": 200, "message": "ok", "data": data,
    }))
    .unwrap_or_default()
}

fn version(v2: bool) -> ApiVersion {
    if v2 { ApiVersion::V2 } else { ApiVersion::V3 }
}

proptest! {
    #![proptest_config(config(128))]

    /// gene-qrcode answered with anything: a QR, or a typed error.
    #[test]
    fn any_gene_answer_gives_a_qr_or_a_typed_error(
        v2 in any::<bool>(), status in http_status(), body in upstream_body(),
    ) {
        let upstream = Upstream::start();
        let provider = upstream.provider(version(v2));
        upstream.answer(status, body);
        let result = upstream.runtime.block_on(async {
            let binding = BindingSecret::generate().expect("binding");
            provider.generate(GenerateRequest::new(binding, Initiator::default())).await
        });
        match result {
            Ok(qr) => prop_assert!(!qr.content.is_empty()),
            Err(e) => prop_assert!(acceptable(&e), "{e:?} → {}", e.status()),
        }
    }
}

proptest! {
    // Each case waits for a few upstream rounds: fewer cases by default.
    #![proptest_config(config(40))]

    /// check-qrcode-status answered with anything: the browser's poll gives a valid state or
    /// a typed error, and the session is never corrupted (a second poll agrees with itself).
    #[test]
    fn any_status_answer_gives_a_state_or_a_typed_error(
        v2 in any::<bool>(), status in http_status(), body in upstream_body(),
    ) {
        let upstream = Upstream::start();
        let api = version(v2);
        let provider = upstream.provider(api);
        upstream.answer(200, valid_gene(api));
        let outcome = upstream.runtime.block_on(async {
            let binding = BindingSecret::generate().expect("binding");
            let qr = provider
                .generate(GenerateRequest::new(binding.clone(), Initiator::default()))
                .await
                .expect("generate against a valid gene answer");
            upstream.answer(status, body);
            // A couple of upstream rounds at the 100 ms interval (with one retry each).
            tokio::time::sleep(Duration::from_millis(350)).await;
            let first = provider.poll(&qr.id, &binding).await;
            let second = provider.poll(&qr.id, &binding).await;
            (first, second)
        });
        for result in [outcome.0, outcome.1] {
            match result {
                Ok(s) => prop_assert!(
                    s.version >= 1 && (s.ticket.is_none() || s.state == qrauth_core::QrState::Confirmed),
                    "{s:?}"
                ),
                Err(e) => prop_assert!(acceptable(&e), "{e:?} → {}", e.status()),
            }
        }
    }
}
