//! `orders-bare-server`: the reference of benches/servers. The orders handler's own work (read the
//! body, parse the order, fingerprint the API key, answer 201 `{"accepted", "items", "key_id"}`)
//! on a plain hyper HTTP/1.1 server, with no perimeter: what the guarded servers
//! (`gcp-orders`, `azure-orders`) are compared with. Listens on 127.0.0.1:`PORT` (default 8080);
//! the key is `GUARD_SECRET_ORDERS_API_KEY`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

async fn orders(
    req: Request<Incoming>,
    key: Arc<str>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        Ok(r)
    };
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return reply(StatusCode::BAD_REQUEST, "{}".into());
    };
    let Ok(order) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return reply(StatusCode::BAD_REQUEST, "{}".into());
    };
    let digest = Sha256::digest(key.as_bytes());
    let body = serde_json::json!({
        "accepted": order["order_id"],
        "items": order["items"].as_array().map_or(0, Vec::len),
        "key_id": hex::encode(&digest[..4]),
    });
    reply(StatusCode::CREATED, body.to_string())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let key: Arc<str> = std::env::var("GUARD_SECRET_ORDERS_API_KEY")
        .unwrap_or_default()
        .into();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let key = key.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| orders(req, key.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
