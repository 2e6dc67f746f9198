//! `cargo run -p actix-app-session`: QR login into the application's own session
//! (actix-session) on http://127.0.0.1:3011.

use demo_common::DemoArgs;
use demo_common::app_session::QrSessions;

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    demo_common::init_tracing();
    let args = DemoArgs::from_env(3011)?;
    if args.redis.is_some() || !args.redis_cluster.is_empty() || args.signing_key.is_some() {
        // qrauth's sessions live in this process's memory: one replica only.
        return Err(
            "this example keeps its sessions in memory: no --redis or --redis-cluster, no --signing-key".into(),
        );
    }
    let qr = QrSessions::new(&args.public_url)?;
    args.print_startup("qrauth actix app-session example");
    // A fresh key per start: restarting signs everyone out, as the memory stores do anyway.
    let key = actix_web::cookie::Key::generate();
    let secure = !args.public_url.starts_with("http://");
    let listener = std::net::TcpListener::bind(args.listen)?;
    let app = actix_app_session::configure(qr.clone(), key, secure);
    demo_common::serve_actix(
        listener,
        app,
        qr.service().clone(),
        None,
        demo_common::shutdown_signal(),
    )
    .await?;
    Ok(())
}
