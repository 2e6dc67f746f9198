//! The client against the fake platform over loopback: each quirk and status → its typed
//! result.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qrauth_fake_open_platform::{Endpoint, Fault, Style, UserState};
use qrauth_open_platform::{CodeCheck, CodeKind, OpenPlatformError};
use support::{client_for, fake};

const T: Duration = Duration::from_secs(5);

type Check = fn(&OpenPlatformError) -> bool;

#[tokio::test]
async fn code_exchange_with_status_as_number_and_as_string() {
    let fake = fake().await;
    let client = client_for(&fake, T);
    for style in [Style::Seed, Style::Numbers, Style::Strings] {
        fake.set_style(style);
        let code = fake.mint_code("open-id-alice");
        let user = client.exchange_code(&code).await.expect("exchange");
        assert_eq!(user.open_id, "open-id-alice", "{style:?}");
        assert_eq!(
            user.expires_in,
            Some(Duration::from_secs(7200)),
            "{style:?}"
        );
        assert_eq!(user.scope.as_deref(), Some("sns_base"));
        assert!(user.access_token().is_some_and(|t| !t.is_empty()));
        assert!(!format!("{user:?}").contains(user.access_token().unwrap_or("x")));
    }
    assert_eq!(fake.counters().token, 3);
}

#[tokio::test]
async fn codes_are_single_use_and_expire() {
    let fake = fake().await;
    let client = client_for(&fake, T);
    let code = fake.mint_code("u1");
    client.exchange_code(&code).await.expect("first use");
    let again = client.exchange_code(&code).await;
    assert!(
        matches!(again, Err(OpenPlatformError::InvalidCode { ref message }) if message == "authorization_code is invalid"),
        "{again:?}"
    );

    let code = fake.mint_code("u1");
    fake.advance(Duration::from_secs(301));
    assert!(matches!(
        client.exchange_code(&code).await,
        Err(OpenPlatformError::InvalidCode { .. })
    ));
    assert!(matches!(
        client.exchange_code("never-issued").await,
        Err(OpenPlatformError::InvalidCode { .. })
    ));
}

#[tokio::test]
async fn no_permission_and_app_not_added_are_distinct() {
    let fake = fake().await;
    let client = client_for(&fake, T);
    fake.set_user("u-np", UserState::NoPermission);
    fake.set_user("u-na", UserState::NotAdded);
    let e = client.exchange_code(&fake.mint_code("u-np")).await;
    assert!(
        matches!(e, Err(OpenPlatformError::NoPermission { .. })),
        "{e:?}"
    );
    let e = client.exchange_code(&fake.mint_code("u-na")).await;
    assert!(
        matches!(e, Err(OpenPlatformError::AppNotAdded { .. })),
        "{e:?}"
    );
    let e = client
        .exchange_code(&fake.mint_code("u-na"))
        .await
        .unwrap_err();
    assert_eq!(e.upstream_status(), Some(4104));
}

#[tokio::test]
async fn wrong_secret_is_an_api_error() {
    let fake = fake().await;
    let client = qrauth_open_platform::OpenPlatformClient::builder(fake.app_id(), "wrong")
        .base_url(fake.base_url())
        .build()
        .expect("client");
    let e = client.exchange_code(&fake.mint_code("u")).await;
    assert!(
        matches!(e, Err(OpenPlatformError::Api { status: 4000, .. })),
        "{e:?}"
    );
}

#[tokio::test]
async fn faults_map_to_typed_errors() {
    let fake = fake().await;
    let client = client_for(&fake, Duration::from_millis(300));
    let cases: Vec<(Fault, Check)> = vec![
        (Fault::ServerError, |e| {
            matches!(e, OpenPlatformError::Http { status: 500, .. })
        }),
        (Fault::Malformed, |e| {
            matches!(e, OpenPlatformError::Malformed { .. })
        }),
        (Fault::EmptyData, |e| {
            matches!(e, OpenPlatformError::MissingData { .. })
        }),
        (Fault::Status(4102), |e| {
            matches!(e, OpenPlatformError::InvalidCode { .. })
        }),
        (Fault::Status(4999), |e| {
            matches!(e, OpenPlatformError::Api { status: 4999, .. })
        }),
        (Fault::Slow(Duration::from_secs(2)), |e| {
            matches!(e, OpenPlatformError::Timeout { .. })
        }),
    ];
    for (fault, check) in cases {
        fake.set_fault(Endpoint::Token, Some(fault.clone()));
        let e = client
            .exchange_code(&fake.mint_code("u"))
            .await
            .unwrap_err();
        assert!(check(&e), "{fault:?} gave {e:?}");
    }
    fake.set_fault(Endpoint::Token, None);
    assert!(client.exchange_code(&fake.mint_code("u")).await.is_ok());
}

#[tokio::test]
async fn unreachable_platform_is_a_transport_error() {
    let fake = fake().await;
    let base = fake.base_url().to_owned();
    drop(fake);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let client = qrauth_open_platform::OpenPlatformClient::builder("a", "b")
        .base_url(base)
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let e = client.exchange_code("c").await.unwrap_err();
    assert!(
        matches!(
            e,
            OpenPlatformError::Transport { .. } | OpenPlatformError::Timeout { .. }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_core().status(),
        if matches!(e, OpenPlatformError::Timeout { .. }) {
            504
        } else {
            502
        }
    );
}

#[tokio::test]
async fn check_code_expires_in_is_absolute_and_4102_is_invalid() {
    let fake = fake().await;
    let client = client_for(&fake, T);
    for style in [Style::Seed, Style::Strings] {
        fake.set_style(style);
        let token = client.server_access_token().await.expect("access token");
        let ticket = client.js_ticket(token.expose()).await.expect("ticket");
        assert_eq!(ticket.expires_in, Duration::from_secs(7200));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        match client
            .check_code(CodeKind::JsTicket, ticket.expose(), None)
            .await
        {
            Ok(CodeCheck::Valid {
                expires_at: Some(at),
            }) => {
                let at = at.duration_since(UNIX_EPOCH).unwrap().as_secs();
                assert!((now + 7190..=now + 7210).contains(&at), "{at} vs {now}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            client
                .check_code(CodeKind::AccessToken, token.expose(), None)
                .await,
            Ok(CodeCheck::Valid {
                expires_at: Some(_)
            })
        ));
    }
    assert_eq!(
        client.check_code(CodeKind::JsTicket, "nope", None).await,
        Ok(CodeCheck::Invalid)
    );
    // A user's access token needs the open_id.
    let user = client
        .exchange_code(&fake.mint_code("u9"))
        .await
        .expect("user");
    let at = user.access_token().expect("user token").to_owned();
    assert!(matches!(
        client
            .check_code(CodeKind::AccessToken, &at, Some("u9"))
            .await,
        Ok(CodeCheck::Valid { .. })
    ));
    assert_eq!(
        client
            .check_code(CodeKind::AccessToken, &at, Some("someone-else"))
            .await,
        Ok(CodeCheck::Invalid)
    );
}

#[tokio::test]
async fn ticket_with_a_revoked_access_token_is_invalid_code() {
    let fake = fake().await;
    let client = client_for(&fake, T);
    let token = client.server_access_token().await.expect("token");
    fake.revoke_access_tokens();
    let e = client.js_ticket(token.expose()).await;
    assert!(
        matches!(e, Err(OpenPlatformError::InvalidCode { .. })),
        "{e:?}"
    );
}
