//! `cargo run -p actix-demo`: QR login on http://127.0.0.1:3001 with the built-in provider.

use actix_web::{App, HttpServer};
use demo_common::DemoArgs;

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    demo_common::init_tracing();
    let args = DemoArgs::from_env(3001)?;
    let qrauth = demo_common::service_for(&args).await?;
    println!("qrauth actix demo: open {}/ in a browser", args.public_url);
    HttpServer::new(move || App::new().configure(actix_demo::configure(qrauth.clone())))
        .on_connect(qrauth_actix::tcp_nodelay)
        .bind(args.listen)?
        .run()
        .await?;
    Ok(())
}
