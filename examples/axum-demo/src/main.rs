//! `cargo run -p axum-demo`: QR login on http://127.0.0.1:3000 with the built-in provider.

use demo_common::DemoArgs;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    demo_common::init_tracing();
    let args = DemoArgs::from_env(3000)?;
    let qrauth = demo_common::service_for(&args).await?;
    println!("qrauth axum demo: open {}/ in a browser", args.public_url);
    demo_common::serve_axum(args.listen, axum_demo::app(qrauth)).await?;
    Ok(())
}
