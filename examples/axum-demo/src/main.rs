//! `cargo run -p axum-demo`: QR login on http://127.0.0.1:3000 with the built-in provider.

use std::net::SocketAddr;

use axum::serve::ListenerExt;
use demo_common::DemoArgs;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = DemoArgs::from_env(3000)?;
    let qrauth = demo_common::service_for(&args).await?;
    let app = axum_demo::app(qrauth);
    // No Nagle delay: SSE events and long-poll answers are small writes that must leave at once.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await?
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    println!("qrauth axum demo: open {}/ in a browser", args.public_url);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
