//! The yardstick for `scripts/bench`: a bare hyper server that reads the request body and
//! answers "200 OK", on the same runtime and HTTP stack as the receiver. Whatever the receiver
//! does beyond this (auth, parsing, routing, queueing, rendering, delivery) is its own cost.
//!
//! `cargo run --release --example bare_hyper -- 127.0.0.1:9198`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

async fn ok(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the body as the receiver must, so both sides do the same I/O.
    let _ = req.into_body().collect().await;
    Ok(Response::new(Full::new(Bytes::from_static(b"OK\n"))))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9198".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("bare hyper listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(ok))
                .await;
        });
    }
}
