//! Who is really at the other end of a request: the client address and scheme (through trusted
//! reverse proxies only), and the same-origin check that refuses cross-site writes made with
//! the browser's session cookie.

use std::net::{IpAddr, SocketAddr};
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use ipnet::IpNet;

use crate::{AppState, auth::SESSION_COOKIE, error::ApiError};

/// What the server trusts about the network in front of it.
#[derive(Debug, Clone, Default)]
pub struct Edge {
    /// Reverse proxies whose `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host` are
    /// believed (when the TCP peer is one of them); nobody else's are.
    pub trusted_proxies: Vec<IpNet>,
}

impl Edge {
    /// Whether `ip` is a configured trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// Parses a `--trusted-proxy` value: an address (`10.0.0.5`, `::1`) or a CIDR (`10.0.0.0/8`).
pub fn parse_trusted_proxy(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!(
                "{s:?} 不是 IP 地址或网段 / is not an IP address or CIDR (e.g. 10.0.0.5 or 10.0.0.0/8)"
            )
        })
}

/// An IPv4 address that arrived mapped into IPv6 (`::ffff:a.b.c.d`) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// How the connection a request came on was made, set by [`crate::net`] per connection.
#[derive(Debug, Clone, Copy)]
pub struct Transport {
    /// The connection is TLS (the server itself terminated it).
    pub tls: bool,
}

/// Set by [`crate::net`] on a request whose body stopped arriving for longer than the body
/// read timeout; [`resolve`] then answers 408 whatever the handler made of the cut body.
#[derive(Debug, Clone, Default)]
pub struct BodyTimedOut(pub Arc<AtomicBool>);

impl BodyTimedOut {
    /// Whether the body timed out.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Records that the body timed out.
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The request's client as the server understands it, resolved once per request by
/// [`resolve`] and kept in the request's extensions.
#[derive(Debug, Clone)]
pub struct Client {
    /// The client address: the TCP peer, or what a trusted proxy forwarded.
    pub ip: Option<IpAddr>,
    /// The client reached the server over HTTPS (directly, or a trusted proxy says so).
    pub https: bool,
    /// The host the client asked for (`Host`, or a trusted proxy's `X-Forwarded-Host`).
    pub host: Option<String>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(match parts.extensions.get::<Client>() {
            Some(c) => c.clone(),
            None => client(
                &Edge::default(),
                parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip()),
                false,
                &parts.headers,
            ),
        })
    }
}

impl Client {
    /// `; Secure` for a cookie set on this request when it came over HTTPS, else nothing.
    pub fn secure_attr(&self) -> &'static str {
        if self.https { "; Secure" } else { "" }
    }
}

/// Values of a comma-separated header across all its lines, in order.
fn list<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

/// One `X-Forwarded-For` entry as an address (`1.2.3.4`, `1.2.3.4:5678`, `[::1]:5678`, `::1`).
fn forwarded_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(canonical)
}

/// Works out the client of a request that arrived from `peer`.
pub fn client(edge: &Edge, peer: Option<IpAddr>, tls: bool, headers: &HeaderMap) -> Client {
    let peer = peer.map(canonical);
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(p) = peer.filter(|p| edge.is_trusted(*p)) else {
        return Client {
            ip: peer,
            https: tls,
            host,
        };
    };
    // Right to left: the first address that is not one of our proxies is the client; an entry
    // that is not an address ends the walk at the last hop we trust.
    let mut ip = p;
    for entry in list(headers, "x-forwarded-for").into_iter().rev() {
        match forwarded_ip(entry) {
            Some(a) if edge.is_trusted(a) => ip = a,
            Some(a) => {
                ip = a;
                break;
            }
            None => break,
        }
    }
    let https = tls
        || list(headers, "x-forwarded-proto")
            .last()
            .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let host = list(headers, "x-forwarded-host")
        .last()
        .map(|h| h.to_string())
        .or(host);
    Client {
        ip: Some(ip),
        https,
        host,
    }
}

/// Middleware around every route: resolves the request's [`Client`], refuses cross-site writes
/// (see [`cross_site`]) and finishes every response with [`crate::headers::finish`].
pub async fn resolve(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let tls = req.extensions().get::<Transport>().is_some_and(|t| t.tls);
    let client = client(&state.edge, peer, tls, req.headers());
    let (method, path, https) = (
        req.method().clone(),
        req.uri().path().to_string(),
        client.https,
    );
    let timed_out = req.extensions().get::<BodyTimedOut>().cloned();
    let mut response = match cross_site(&method, &path, req.headers(), &client) {
        Some(why) => refuse_cross_site(&path, req.headers(), &why),
        None => {
            req.extensions_mut().insert(client);
            next.run(req).await
        }
    };
    if timed_out.is_some_and(|t| t.get()) {
        response = ApiError::client(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "请求体发送过慢 / the request body stopped arriving; send it again",
        )
        .into_response();
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    crate::headers::finish(response, https, &method, &path).await
}

/// Whether a path belongs to the dashboard (pages and forms authenticated by the cookie).
pub fn is_dashboard_path(path: &str) -> bool {
    path == "/login" || path == "/logout" || path == "/ui" || path.starts_with("/ui/")
}

/// `scheme://host` with the scheme's default port left out, lower case.
fn origin_of(scheme: &str, host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    let default = if scheme == "https" { ":443" } else { ":80" };
    let host = host.strip_suffix(default).unwrap_or(&host);
    format!("{scheme}://{host}")
}

/// The origin (`scheme://host[:port]`) of a URL such as a `Referer`.
fn url_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty()).then(|| origin_of(&scheme, host))
}

/// Why a request is a cross-site write to refuse, or `None` to let it through.
///
/// Checked: every request that is not GET, HEAD or OPTIONS and either goes to the dashboard
/// (`/login`, `/logout`, `/ui…`) or carries the session cookie without an `Authorization`
/// header (so the cookie is what would authenticate it). Such a request must name the server's
/// own origin in `Origin`, or in `Referer` when `Origin` is absent. Bearer-token requests are not
/// checked: a cross-site page cannot attach an `Authorization` header.
pub fn cross_site(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    client: &Client,
) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let cookie_auth = !headers.contains_key(header::AUTHORIZATION)
        && headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .any(|kv| kv.trim().split_once('=').map(|(k, _)| k) == Some(SESSION_COOKIE));
    if !is_dashboard_path(path) && !cookie_auth {
        return None;
    }
    let Some(host) = client.host.as_deref() else {
        return Some("the request has no Host header".into());
    };
    let own = origin_of(if client.https { "https" } else { "http" }, host);
    let header_str = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let (what, claimed) = match (header_str(header::ORIGIN), header_str(header::REFERER)) {
        (Some(o), _) => ("Origin", url_origin(o)),
        (None, Some(r)) => ("Referer", url_origin(r)),
        (None, None) => {
            return Some("the request names neither its Origin nor a Referer".into());
        }
    };
    match claimed {
        Some(c) if c == own => None,
        Some(c) => Some(format!("its {what} is {c}, not this server ({own})")),
        None => Some(format!("its {what} is not an http(s) origin")),
    }
}

fn refuse_cross_site(path: &str, headers: &HeaderMap, why: &str) -> Response {
    let zh = "跨站请求已拒绝：请从本系统的页面提交";
    let en =
        format!("cross-site request refused: {why}; submit the form from this server's own pages");
    if is_dashboard_path(path) {
        let lang = crate::ui::page::Lang {
            en: crate::auth::cookie_in(headers, "fieldsync_lang").as_deref() == Some("en"),
        };
        crate::ui::error_page(
            lang,
            StatusCode::FORBIDDEN,
            "cross_site",
            &format!("{zh} / {en}"),
        )
    } else {
        ApiError::client(StatusCode::FORBIDDEN, "cross_site", format!("{zh} / {en}"))
            .with_hint("send the device token as Authorization: Bearer <token> instead of a cookie")
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn edge(nets: &[&str]) -> Edge {
        Edge {
            trusted_proxies: nets
                .iter()
                .map(|n| parse_trusted_proxy(n).unwrap())
                .collect(),
        }
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 10.0.0.7")]);
        let e = edge(&["10.0.0.0/8"]);
        let proxy = Some("10.0.0.1".parse().unwrap());
        let stranger = Some("198.51.100.4".parse().unwrap());
        // Right-most address that is not a trusted proxy.
        assert_eq!(
            client(&e, proxy, false, &h).ip,
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(client(&e, stranger, false, &h).ip, stranger);
        // A client cannot hide behind a forged left-most entry.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(
            client(&e, proxy, false, &h).ip,
            Some("203.0.113.9".parse().unwrap())
        );
        // Garbage stops the walk at the last trusted hop.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, junk, 10.0.0.9")]);
        assert_eq!(
            client(&e, proxy, false, &h).ip,
            Some("10.0.0.9".parse().unwrap())
        );
        // An IPv4-mapped IPv6 peer is the IPv4 address.
        let mapped = Some("::ffff:10.0.0.1".parse().unwrap());
        assert!(
            client(
                &e,
                mapped,
                false,
                &headers(&[("x-forwarded-proto", "https")])
            )
            .https
        );
    }

    #[test]
    fn trusted_proxy_values_parse_as_addresses_or_networks() {
        assert!(parse_trusted_proxy("10.0.0.5").is_ok());
        assert!(parse_trusted_proxy("fd00::/8").is_ok());
        assert!(parse_trusted_proxy("10.0.0.0/33").is_err());
        assert!(parse_trusted_proxy("proxy.local").is_err());
    }

    #[test]
    fn writes_must_come_from_the_own_origin() {
        let c = Client {
            ip: None,
            https: false,
            host: Some("127.0.0.1:8080".into()),
        };
        let post = Method::POST;
        let own = headers(&[("origin", "http://127.0.0.1:8080")]);
        assert_eq!(cross_site(&post, "/login", &own, &c), None);
        let evil = headers(&[("origin", "http://evil.example")]);
        assert!(cross_site(&post, "/login", &evil, &c).is_some());
        let referer = headers(&[("referer", "http://127.0.0.1:8080/ui/r/1")]);
        assert_eq!(cross_site(&post, "/logout", &referer, &c), None);
        assert!(cross_site(&post, "/logout", &HeaderMap::new(), &c).is_some());
        // The scheme counts: an http page may not post to the https dashboard.
        let https = Client {
            https: true,
            ..c.clone()
        };
        assert!(cross_site(&post, "/login", &own, &https).is_some());
        // API: a cookie without a bearer token is checked, a bearer token is not.
        let cookie = headers(&[("cookie", "fieldsync_session=fst_x"), ("origin", "null")]);
        assert!(cross_site(&post, "/v1/sync/push", &cookie, &c).is_some());
        let bearer = headers(&[
            ("cookie", "fieldsync_session=fst_x"),
            ("authorization", "Bearer fst_y"),
        ]);
        assert_eq!(cross_site(&post, "/v1/sync/push", &bearer, &c), None);
        assert_eq!(cross_site(&post, "/v1/enroll", &HeaderMap::new(), &c), None);
        assert_eq!(cross_site(&Method::GET, "/login", &evil, &c), None);
    }
}
