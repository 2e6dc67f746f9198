//! `cargo run -p actix-demo`: QR login on http://127.0.0.1:3001 with the built-in provider.

use demo_common::DemoArgs;

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    demo_common::init_tracing();
    let args = DemoArgs::from_env(3001)?;
    let qrauth = demo_common::service_for(&args).await?;
    args.print_startup("qrauth actix demo");
    // Ctrl-C or SIGTERM: held connections let go at once, exit within the shutdown grace.
    let listener = std::net::TcpListener::bind(args.listen)?;
    let app = {
        let qrauth = qrauth.clone();
        move |config: &mut actix_web::web::ServiceConfig| {
            actix_demo::configure(qrauth.clone())(config)
        }
    };
    demo_common::serve_actix(listener, app, qrauth, None, demo_common::shutdown_signal()).await?;
    Ok(())
}
