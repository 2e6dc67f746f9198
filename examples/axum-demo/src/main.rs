//! `cargo run -p axum-demo`: QR login on http://127.0.0.1:3000 with the built-in provider.

use demo_common::DemoArgs;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    demo_common::init_tracing();
    let args = DemoArgs::from_env(3000)?;
    let qrauth = demo_common::service_for(&args).await?;
    args.print_startup("qrauth axum demo");
    // Ctrl-C or SIGTERM: held connections let go at once, exit within the shutdown grace.
    demo_common::serve_axum_service(args.listen, axum_demo::app(qrauth.clone()), qrauth).await?;
    Ok(())
}
