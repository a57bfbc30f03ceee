//! The HTTP edge under attack: the sign-in brake stops guessers without locking out valid
//! devices at their address (also behind a trusted proxy, and not dodged by forged
//! X-Forwarded-For), stalled connections are closed and cannot starve the server, cross-site
//! dashboard writes are refused, every response carries the security headers, and the
//! framework's own errors are JSON.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_protocol::auth::Role;
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

fn client() -> Result<Client> {
    Ok(Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

fn send(req: RequestBuilder) -> Result<(u16, Value)> {
    let resp = req.send()?;
    let status = resp.status().as_u16();
    let text = resp.text()?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// GET /v1/me with `token`, as if from `forwarded_for` when given.
fn me(server: &TestServer, token: &str, forwarded_for: Option<&str>) -> Result<(u16, Value)> {
    let mut req = client()?
        .get(format!("{}/v1/me", server.url()))
        .bearer_auth(token);
    if let Some(f) = forwarded_for {
        req = req.header("x-forwarded-for", f);
    }
    send(req)
}

fn braked_at(failed_auth_per_minute: u32, proxy: bool) -> Result<TestServer> {
    TestServer::start_with_config(move |c| {
        c.limits.failed_auth_per_minute = failed_auth_per_minute;
        if proxy {
            c.trusted_proxies =
                vec![fieldsync_server::edge::parse_trusted_proxy("127.0.0.0/8").expect("a CIDR")];
        }
    })
}

#[test]
fn valid_tokens_and_codes_pass_after_many_bad_ones_from_the_same_address() -> Result<()> {
    let server = TestServer::start()?;
    let mut statuses = Vec::new();
    for i in 0..25 {
        statuses.push(me(&server, &format!("fst_guess{i}"), None)?);
    }
    assert_eq!(statuses[0].0, 401);
    assert_eq!(statuses[24].0, 429, "the 25th bad token is braked");
    // Over the limit, an unknown token learns nothing but "too many".
    assert_eq!(statuses[24].1["error"]["code"], "rate_limited");
    assert!(
        !statuses[24].1.to_string().contains("not valid"),
        "{:?}",
        statuses[24].1
    );
    // The valid token from the same address passes.
    let (status, body) = me(&server, &server.admin_token, None)?;
    assert_eq!(status, 200, "{body}");
    // So does a valid one-time code, while bad codes stay braked.
    let person = server.add_person("新同事", Role::Viewer, None)?;
    let code = server.code_for(person)?;
    let enroll = |code: &str| {
        send(
            client()?
                .post(format!("{}/v1/enroll", server.url()))
                .json(&json!({ "code": code, "device": uuid::Uuid::new_v4(), "name": "x" })),
        )
    };
    assert_eq!(enroll("AAAA-AAAA-AAAA")?.0, 429);
    let (status, body) = enroll(&code)?;
    assert_eq!(status, 200, "{body}");
    // A used code is a failure like a wrong one.
    assert_eq!(enroll(&code)?.0, 429);
    Ok(())
}

#[test]
fn behind_a_trusted_proxy_each_forwarded_client_is_braked_separately() -> Result<()> {
    let server = braked_at(3, true)?;
    for _ in 0..5 {
        me(&server, "fst_guess", Some("203.0.113.1"))?;
    }
    assert_eq!(me(&server, "fst_guess", Some("203.0.113.1"))?.0, 429);
    // Another client of the same proxy is not braked; the right-most untrusted address counts,
    // so the first client cannot pose as the second by prepending it.
    assert_eq!(me(&server, "fst_guess", Some("203.0.113.2"))?.0, 401);
    assert_eq!(
        me(&server, "fst_guess", Some("203.0.113.2, 203.0.113.1"))?.0,
        429
    );
    Ok(())
}

#[test]
fn from_an_untrusted_peer_forwarded_for_is_ignored() -> Result<()> {
    let server = braked_at(3, false)?;
    let mut last = 0;
    for i in 0..6 {
        last = me(&server, "fst_guess", Some(&format!("198.51.100.{i}")))?.0;
    }
    assert_eq!(
        last, 429,
        "spoofed X-Forwarded-For does not dodge the brake"
    );
    Ok(())
}

/// Reads until the server closes the connection; `false` when it is still open after `bound`.
fn closed_by_server(stream: &mut TcpStream, bound: Duration) -> bool {
    stream.set_read_timeout(Some(bound)).expect("read timeout");
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn stalled_connections_are_closed_after_the_header_timeout_and_health_still_answers() -> Result<()>
{
    let server = TestServer::start_with_config(|c| {
        c.conn.header_read_timeout = Duration::from_secs(1);
    })?;
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(server.addr)?;
        s.write_all(b"GET /hea")?;
        stalled.push(s);
    }
    let (status, body) = send(client()?.get(format!("{}/health", server.url())))?;
    assert_eq!((status, &body["status"]), (200, &json!("ok")));
    // An idle connection that sent nothing is closed too, and so is a kept-alive one idle
    // after its answer.
    let mut idle = TcpStream::connect(server.addr)?;
    let mut kept = TcpStream::connect(server.addr)?;
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
    for s in stalled.iter_mut().chain([&mut idle, &mut kept]) {
        assert!(
            closed_by_server(s, Duration::from_secs(30)),
            "a stalled connection was left open"
        );
    }
    Ok(())
}

#[test]
fn over_the_connection_limit_new_connections_wait_until_one_closes() -> Result<()> {
    let server = TestServer::start_with_config(|c| {
        c.conn.max_connections = 4;
        c.conn.header_read_timeout = Duration::from_secs(60);
    })?;
    // Let the fixture's own connection close, then take every slot.
    std::thread::sleep(Duration::from_millis(200));
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(server.addr)?;
        s.write_all(b"GET /hea")?;
        stalled.push(s);
    }
    let quick = Client::builder().timeout(Duration::from_secs(1)).build()?;
    let waited = quick.get(format!("{}/health", server.url())).send();
    assert!(waited.is_err(), "a fifth connection was served: {waited:?}");
    drop(stalled);
    // Once slots are free the server serves again (the accept loop survived).
    let (status, _) = send(client()?.get(format!("{}/health", server.url())))?;
    assert_eq!(status, 200);
    Ok(())
}

fn assert_security_headers(resp: &Response, what: &str) {
    let h = resp.headers();
    let csp = h
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{what}: CSP {csp:?}");
    assert!(
        csp.contains("frame-ancestors 'none'"),
        "{what}: CSP {csp:?}"
    );
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["referrer-policy"], "same-origin", "{what}");
}

/// POST /login with `code`, optional `Origin` and extra headers.
fn login(
    server: &TestServer,
    code: &str,
    origin: Option<&str>,
    extra: &[(&str, &str)],
) -> Result<Response> {
    let mut req = client()?
        .post(format!("{}/login", server.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("code={code}"));
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    Ok(req.send()?)
}

#[test]
fn responses_carry_security_headers_and_hsts_only_over_https() -> Result<()> {
    let server = braked_at(20, true)?;
    let api = client()?.get(format!("{}/health", server.url())).send()?;
    assert_security_headers(&api, "GET /health");
    assert!(api.headers().get("strict-transport-security").is_none());
    let page = client()?.get(format!("{}/login", server.url())).send()?;
    assert_security_headers(&page, "GET /login");
    let refused = client()?.get(format!("{}/v1/me", server.url())).send()?;
    assert_eq!(refused.status(), 401);
    assert_security_headers(&refused, "401");

    // Plain loopback HTTP: the session cookie is not Secure.
    let person = server.add_person("部门", Role::Viewer, None)?;
    let own = server.url();
    let resp = login(&server, &server.code_for(person)?, Some(&own), &[])?;
    assert_eq!(resp.status(), 303);
    let cookie = resp.headers()["set-cookie"].to_str()?.to_string();
    assert!(cookie.starts_with("fieldsync_session=fst_"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    // A trusted proxy that terminated HTTPS: Secure cookie and HSTS.
    let https_origin = format!("https://{}", server.addr);
    let resp = login(
        &server,
        &server.code_for(person)?,
        Some(&https_origin),
        &[("x-forwarded-proto", "https")],
    )?;
    assert_eq!(resp.status(), 303);
    assert!(resp.headers()["set-cookie"].to_str()?.contains("; Secure"));
    assert!(resp.headers().get("strict-transport-security").is_some());
    Ok(())
}

#[test]
fn cross_site_dashboard_and_cookie_writes_are_refused() -> Result<()> {
    let server = TestServer::start()?;
    let person = server.add_person("部门", Role::Admin, None)?;
    let code = server.code_for(person)?;
    let evil = login(&server, &code, Some("http://evil.example"), &[])?;
    assert_eq!(evil.status(), 403);
    assert!(evil.text()?.contains("cross-site"));
    let neither = login(&server, &code, None, &[])?;
    assert_eq!(neither.status(), 403);
    // A Referer of the server itself is enough when Origin is absent.
    let referer = format!("{}/login", server.url());
    let ok = login(&server, &code, None, &[("referer", &referer)])?;
    assert_eq!(
        ok.status(),
        303,
        "the refused attempts did not use up the code"
    );
    let cookie = ok.headers()["set-cookie"].to_str()?.to_string();
    let session = cookie.split(';').next().unwrap_or_default().to_string();

    // The cookie on an API write: refused cross-site, accepted from the own origin.
    let add = |origin: &str| {
        send(
            client()?
                .post(format!("{}/v1/admin/people", server.url()))
                .header("cookie", &session)
                .header("origin", origin)
                .json(&json!({ "name": "某人", "role": "viewer" })),
        )
    };
    let (status, body) = add("http://evil.example")?;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("cross_site"))
    );
    assert_eq!(add(&server.url())?.0, 201);
    // Bearer-token clients are not affected (they send no Origin at all).
    let (status, _) = server.request(
        reqwest::Method::POST,
        "/v1/admin/people",
        None,
        Some(json!({ "name": "另一人", "role": "viewer" })),
    )?;
    assert_eq!(status, 201);
    // Signing out cross-site is refused as well.
    let out = send(
        client()?
            .post(format!("{}/logout", server.url()))
            .header("cookie", &session)
            .header("origin", "http://evil.example"),
    )?;
    assert_eq!(out.0, 403);
    Ok(())
}

#[test]
fn framework_errors_are_json() -> Result<()> {
    let server = TestServer::start()?;
    let resp = client()?
        .delete(format!("{}/health", server.url()))
        .send()?;
    assert_eq!(resp.status(), 405);
    assert!(resp.headers().get("allow").is_some());
    let body: Value = serde_json::from_str(&resp.text()?)?;
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let (status, body) = send(
        client()?
            .post(format!("{}/login", server.url()))
            .header("origin", server.url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body("nothing=here"),
    )?;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["code"], "invalid_body", "{body}");
    Ok(())
}

#[test]
fn the_bearer_scheme_is_case_insensitive() -> Result<()> {
    let server = TestServer::start()?;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let (status, body) = send(
            client()?
                .get(format!("{}/v1/me", server.url()))
                .header("authorization", format!("{scheme}  {}", server.admin_token)),
        )?;
        assert_eq!(status, 200, "{scheme}: {body}");
    }
    Ok(())
}

#[test]
fn a_request_body_that_stalls_fails_after_the_body_timeout() -> Result<()> {
    let server = TestServer::start_with_config(|c| {
        c.conn.body_read_timeout = Duration::from_secs(1);
    })?;
    let mut s = TcpStream::connect(server.addr)?;
    write!(
        s,
        "POST /v1/enroll HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"code\":",
        server.addr
    )?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut answer = Vec::new();
    let read = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        read.is_ok(),
        "the connection was left open: {read:?} {answer}"
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    Ok(())
}
