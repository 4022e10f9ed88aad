//! The web crate's error: what a request could not get, as a response. A response never shows
//! internal text (a store's error, a panic): that goes to the log, and the page gets its status
//! and a fixed sentence.

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::pages;
use crate::read::ReadError;

/// Why a request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No such page, job or run: (title, sentence).
    #[error("not found: {0}")]
    NotFound(&'static str, &'static str),
    /// A query parameter is wrong; the text names it and is the client's own input.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The store could not be read.
    #[error("reading the store: {0}")]
    Read(#[from] ReadError),
    /// A blocking task panicked or was cancelled.
    #[error("a blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// An HTML error page.
pub fn page(status: StatusCode, title: &str, detail: &str) -> Response {
    (
        status,
        Html(pages::error_page(status.as_u16(), title, detail)),
    )
        .into_response()
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::NotFound(title, detail) => page(StatusCode::NOT_FOUND, title, detail),
            WebError::BadRequest(msg) => (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::json!({ "error": msg }).to_string(),
            )
                .into_response(),
            internal => {
                tracing::error!(error = %internal, "request failed");
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    "The page could not be read from the store; the daemon's log says why.",
                )
            }
        }
    }
}

/// axum's query extractor, but a query it cannot read (a repeated or malformed parameter) gets
/// the answer every other bad parameter gets: JSON for the API and the exports, a page for a
/// page — not axum's plain-text 400.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for Query<T>
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(Query(q.0)),
            Err(e) => {
                let path = parts.uri.path();
                let msg = e.body_text();
                Err(
                    if path.starts_with("/api/") || path.starts_with("/export.") {
                        WebError::BadRequest(msg).into_response()
                    } else {
                        page(StatusCode::BAD_REQUEST, "Bad request", &msg)
                    },
                )
            }
        }
    }
}
