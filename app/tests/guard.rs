//! The local web app's guard, over a real app on 127.0.0.1:0: without the launch secret, with a
//! wrong `Host`, and a POST without its CSRF token, every request is refused.

mod common;

use anyhow::Result;
use common::{App, bare_client, csrf_in};
use reqwest::header::{COOKIE, HOST, LOCATION, SET_COOKIE};

#[test]
fn the_secret_is_handed_over_once_then_kept_in_a_strict_http_only_cookie() -> Result<()> {
    let app = App::start()?;
    let bare = bare_client()?;

    let r = bare.get(app.url("/")).send()?;
    assert_eq!(r.status(), 403);
    assert!(r.text()?.contains("启动密钥"));
    for path in ["/conflicts", &format!("/v/{}", common::A1), "/nothing"] {
        assert_eq!(bare.get(app.url(path)).send()?.status(), 403, "{path}");
    }
    let r = bare.get(app.url("/?secret=0000")).send()?;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get(SET_COOKIE).is_none());

    let r = bare.get(app.launch_url()).send()?;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/", "the secret leaves the address");
    let cookie = r.headers()[SET_COOKIE].to_str()?.to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap_or_default().to_string();
    assert_eq!(pair, format!("fieldsync_app_{}={}", app.port, app.secret));

    let r = bare.get(app.url("/")).header(COOKIE, &pair).send()?;
    assert_eq!(r.status(), 200);
    // The secret may come with any page of the app, and the redirect stays in the app.
    let r = bare
        .get(app.url(&format!("/conflicts?secret={}", app.secret)))
        .send()?;
    assert_eq!(r.headers()[LOCATION], "/conflicts");
    let r = bare
        .get(app.url(&format!("//evil.example/x?secret={}", app.secret)))
        .send()?;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/", "never to another site");
    let r = bare
        .get(app.url("/"))
        .header(COOKIE, format!("fieldsync_app_{}=wrong", app.port))
        .send()?;
    assert_eq!(r.status(), 403);
    Ok(())
}

#[test]
fn a_host_other_than_the_loopback_address_is_refused() -> Result<()> {
    let app = App::start()?;
    let bare = bare_client()?;
    let cookie = format!("fieldsync_app_{}={}", app.port, app.secret);
    for host in [
        "evil.example".to_string(),
        format!("evil.example:{}", app.port),
        format!("127.0.0.1:{}", app.port + 1),
    ] {
        let r = bare
            .get(app.url("/"))
            .header(HOST, &host)
            .header(COOKIE, &cookie)
            .send()?;
        assert_eq!(r.status(), 403, "{host}");
        let r = bare.get(app.launch_url()).header(HOST, &host).send()?;
        assert_eq!(r.status(), 403, "{host} with the secret");
        assert!(r.headers().get(SET_COOKIE).is_none());
    }
    let r = bare
        .get(app.url("/"))
        .header(HOST, format!("localhost:{}", app.port))
        .header(COOKIE, &cookie)
        .send()?;
    assert_eq!(r.status(), 200);
    Ok(())
}

#[test]
fn every_post_needs_the_csrf_token() -> Result<()> {
    let app = App::start()?;
    let bare = bare_client()?;
    let cookie = format!("fieldsync_app_{}={}", app.port, app.secret);
    let form_path = format!("/v/{}/k/interview/new", common::A1);
    let token = csrf_in(&app.page(&form_path)?).expect("a token");
    assert_eq!(token, app.csrf()?);
    assert_ne!(
        token, app.secret,
        "the page does not carry the secret itself"
    );
    for path in ["/sync", form_path.as_str()] {
        for body in [
            vec![("action", "draft")],
            vec![("csrf", "wrong"), ("action", "draft")],
            vec![("csrf", app.secret.as_str()), ("action", "draft")],
        ] {
            let r = bare
                .post(app.url(path))
                .header(COOKIE, &cookie)
                .form(&body)
                .send()?;
            assert_eq!(r.status(), 403, "{path} {body:?}");
        }
    }
    // Not a form at all: refused too.
    let r = bare
        .post(app.url("/sync"))
        .header(COOKIE, &cookie)
        .body("csrf=".to_string() + &token)
        .send()?;
    assert_eq!(r.status(), 403);
    assert_eq!(
        app.store()?
            .setting(&format!("draft:{}:{}:interview", app.campaign, common::A1))?,
        None,
        "nothing refused was saved"
    );
    let r = bare
        .post(app.url(&form_path))
        .header(COOKIE, &cookie)
        .form(&[("csrf", token.as_str()), ("action", "draft")])
        .send()?;
    assert_eq!(r.status(), 303);
    Ok(())
}
