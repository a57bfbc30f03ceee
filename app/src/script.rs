//! The one bundled script, `/app.js` (`app/assets/app.js`, compiled into the binary: no asset
//! from the internet): autosave of forms and the live progress of a sync. Every page works
//! without it; the content security policy allows scripts from the app itself only.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The script's source.
pub const SOURCE: &str = include_str!("../assets/app.js");

/// `GET /app.js`.
pub async fn serve() -> Response {
    let mut r = SOURCE.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    r
}
