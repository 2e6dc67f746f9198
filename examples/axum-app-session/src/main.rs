//! `cargo run -p axum-app-session`: QR login into the application's own session
//! (tower-sessions + axum-login) on http://127.0.0.1:3010.

use demo_common::DemoArgs;
use demo_common::app_session::QrSessions;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    demo_common::init_tracing();
    let args = DemoArgs::from_env(3010)?;
    if args.redis.is_some() || !args.redis_cluster.is_empty() || args.signing_key.is_some() {
        // The application's sessions live in this process's memory: one replica only.
        return Err(
            "this example keeps its sessions in memory: no --redis or --redis-cluster, no --signing-key".into(),
        );
    }
    let qr = QrSessions::new(&args.public_url)?;
    args.print_startup("qrauth axum app-session example");
    let secure = !args.public_url.starts_with("http://");
    let app = axum_app_session::app(qr.clone(), secure);
    demo_common::serve_axum_service(args.listen, app, qr.service().clone()).await?;
    Ok(())
}
