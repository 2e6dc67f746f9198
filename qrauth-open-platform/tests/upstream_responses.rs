//! Property tests of what the open platform may answer: the client talks to a real HTTP server
//! on loopback whose every answer (status, body) is drawn by proptest. Whatever it says, each
//! call gives its value or an [`OpenPlatformError`] that turns into the documented HTTP answer
//! (401/403 for the platform's documented refusals, 502/504 for its faults), never a panic and
//! never a 500.
//!
//! `PROPTEST_CASES=5000 cargo test -p qrauth-open-platform --release --test upstream_responses`
//! for a longer run.

use std::time::Duration;

use proptest::prelude::*;
use qrauth_open_platform::{CodeKind, OpenPlatformClient, OpenPlatformError};
use qrauth_test_support::scripted_upstream::{self, ScriptedUpstream, http_status};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(128),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any small JSON value, with the platform's field names likely (numbers also as strings).
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    scripted_upstream::json_value(
        &[
            "open_id",
            "access_token",
            "refresh_token",
            "ticket",
            "expires_in",
            "scope",
        ],
        &["2000", "4102", "sns_base"],
    )
}

/// A `{status, message, data}` reply of any shape (status as number or string), or bytes.
fn upstream_body() -> impl Strategy<Value = Vec<u8>> {
    let status = prop_oneof![
        Just(2000i64),
        Just(2011),
        Just(4000),
        Just(4102),
        Just(4103),
        Just(4104),
        any::<i64>()
    ];
    prop_oneof![
        (status, any::<bool>(), json_value(), "[ -~]{0,20}").prop_map(
            |(status, as_string, data, message)| {
                let status = if as_string {
                    serde_json::Value::from(status.to_string())
                } else {
                    serde_json::Value::from(status)
                };
                serde_json::to_vec(&serde_json::json!({
                    "status": status, "message": message, "data": data,
                }))
                .unwrap_or_default()
            }
        ),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

/// The HTTP answer an error turns into is one of the documented ones.
fn acceptable(error: OpenPlatformError) -> Result<(), String> {
    let description = error.to_string();
    let core: qrauth_core::Error = error.into();
    match core.status().as_u16() {
        401 | 403 | 502 | 504 => Ok(()),
        other => Err(format!("{description} → HTTP {other}")),
    }
}

proptest! {
    #![proptest_config(config())]

    /// Every endpoint, answered with anything.
    #[test]
    fn any_answer_gives_a_value_or_a_documented_error(
        status in http_status(), body in upstream_body(),
    ) {
        let upstream = ScriptedUpstream::start();
        upstream.answer(status, body);
        let client = OpenPlatformClient::builder("app-0000", "secret-0000")
            .base_url(upstream.base_url())
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let outcomes = upstream.runtime.block_on(async {
            let code = client.exchange_code("code-1").await.map(|user| {
                assert!(!user.open_id.is_empty(), "a user without open_id was accepted");
            });
            let token = client.server_access_token().await.map(|c| {
                assert!(!c.expose().is_empty(), "an empty access_token was accepted");
            });
            let ticket = client.js_ticket("server-token").await.map(|c| {
                assert!(!c.expose().is_empty(), "an empty js_ticket was accepted");
            });
            let check = client
                .check_code(CodeKind::JsTicket, "ticket-1", None)
                .await
                .map(|_| ());
            [code, token, ticket, check]
        });
        for outcome in outcomes {
            if let Err(e) = outcome {
                let verdict = acceptable(e);
                prop_assert!(verdict.is_ok(), "{:?}", verdict);
            }
        }
    }
}
