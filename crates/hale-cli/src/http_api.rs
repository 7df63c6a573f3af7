//! The HTTP API on `[hale] http`: the control socket's router on a TCP address, behind an
//! optional bearer token.
//!
//! A loopback address needs no token. Any other address needs `http_token` (or
//! `HALE_HTTP_TOKEN`), or `hale up` refuses to start; once a token is set, every request except
//! `GET /livez` and `GET /readyz` (which load balancers and Kubernetes probe without
//! credentials) must carry `Authorization: Bearer TOKEN` or gets 401. The comparison takes the
//! same time wherever the first wrong byte is.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

use crate::config::DaemonSettings;

/// The environment variable that can carry the token instead of the config file.
pub const TOKEN_VAR: &str = "HALE_HTTP_TOKEN";

/// A bound HTTP listener and the token its requests must carry.
pub struct HttpApi {
    /// The listener, bound before any child starts.
    pub listener: TcpListener,
    /// Required bearer token, if any.
    pub token: Option<Arc<str>>,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The token from the config file, else from `HALE_HTTP_TOKEN` (empty counts as unset).
pub fn token(settings: &DaemonSettings) -> Option<String> {
    settings.http_token.clone().or_else(|| std::env::var(TOKEN_VAR).ok()).filter(|t| !t.is_empty())
}

/// Bind `[hale] http`, or refuse a non-loopback address that has no token.
pub async fn bind(settings: &DaemonSettings) -> Result<Option<HttpApi>> {
    let Some(http) = &settings.http else { return Ok(None) };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(http.as_str())
        .await
        .with_context(|| format!("[hale] http = {http:?}: cannot resolve the address"))?
        .collect();
    let Some(&addr) = addrs.first() else {
        bail!("[hale] http = {http:?}: the name resolves to no address");
    };
    let token = token(settings);
    if !addr.ip().is_loopback() && token.is_none() {
        bail!(
            "[hale] http = {http:?} is reachable from other machines, and no token is set: \
             set [hale] http_token (or {TOKEN_VAR}) so that requests must carry \
             `Authorization: Bearer TOKEN`, or bind a loopback address such as \"127.0.0.1:9464\""
        );
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("[hale] http = {http:?}: binding {addr}"))?;
    let addr = listener.local_addr().unwrap_or(addr);
    Ok(Some(HttpApi { listener, token: token.map(Arc::from), addr }))
}

/// `router`, requiring the bearer `token` (when set) on everything but the two health checks.
pub fn guard(router: Router, token: Option<Arc<str>>) -> Router {
    match token {
        None => router,
        Some(token) => router.layer(axum::middleware::from_fn_with_state(token, require_token)),
    }
}

async fn require_token(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    let open = matches!(req.uri().path(), "/livez" | "/readyz");
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if open || presented.is_some_and(|p| same(p.as_bytes(), token.as_bytes())) {
        return next.run(req).await;
    }
    let body = axum::Json(serde_json::json!({
        "error": "missing or wrong bearer token: send `Authorization: Bearer TOKEN` with the daemon's http_token"
    }));
    let mut resp = (StatusCode::UNAUTHORIZED, body).into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// Equal bytes, compared in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_compares_whole_tokens() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }
}
