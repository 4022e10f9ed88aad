//! A webhook receiver for alert deliveries: on 127.0.0.1:0, it keeps (delivery id header,
//! signature header, raw body) of every post and answers 500 to the first `fail` of them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};

/// (delivery id header, signature header, raw body) of every post, in arrival order.
pub type Posts = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// Starts a receiver; its URL (`…/hook`) and what it got.
pub async fn receiver(fail: u32) -> (String, Posts) {
    use axum::routing::post;
    let posts: Posts = Arc::default();
    let n = Arc::new(AtomicU32::new(0));
    let p2 = posts.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |h: HeaderMap, body: bytes::Bytes| {
            let (posts, n) = (p2.clone(), n.clone());
            async move {
                let get = |k: &str| {
                    h.get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                posts.lock().unwrap_or_else(|p| p.into_inner()).push((
                    get("x-evald-delivery"),
                    get("x-evald-signature"),
                    body.to_vec(),
                ));
                if n.fetch_add(1, Ordering::SeqCst) < fail {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let url = format!(
        "http://{}/hook",
        l.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, posts)
}
