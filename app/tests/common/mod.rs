//! The fixture of the app's integration tests: a device store in a temp dir holding a 届中分析
//! campaign (two villages, their members), the app serving it on 127.0.0.1:0 on its own
//! runtime, and a reqwest client that keeps cookies.

#![allow(dead_code)]

use std::path::PathBuf;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use fieldsync_app::AppOptions;
use fieldsync_client_core::import::ImportKind;
use fieldsync_client_core::{FieldValue, Filter, Record, Store};
use fieldsync_protocol::template::Template;
use reqwest::blocking::{Client, Response};
use uuid::Uuid;

/// The first village's code.
pub const A1: &str = "510100001";
/// The second village's code.
pub const B1: &str = "510100002";

/// Creates the campaign in `store` and makes it the device's campaign.
pub fn seed(store: &mut Store) -> Result<Uuid> {
    let template = Template::builtin("midterm").context("built-in template")?;
    seed_with(store, &template)
}

/// [`seed`] with a template of the test's own.
pub fn seed_with(store: &mut Store, template: &Template) -> Result<Uuid> {
    let campaign = Uuid::now_v7();
    store.create_campaign(campaign, "应用测试届中分析", template, 2026)?;
    store.import_csv(
        campaign,
        ImportKind::Places,
        format!("代码,名称,层级,上级代码\n{A1},甲村,村,\n{B1},乙村,村,\n").as_bytes(),
    )?;
    store.import_csv(
        campaign,
        ImportKind::Members,
        format!(
            "村代码,姓名,职务,性别,年龄,学历,党员\n{A1},张一,书记,男,45,本科,是\n\
             {A1},王二,委员,女,38,大专,是\n{B1},李三,书记,女,41,大专,是\n"
        )
        .as_bytes(),
    )?;
    store.set_setting("campaign", &campaign.to_string())?;
    Ok(campaign)
}

/// A running app over a store file.
pub struct App {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The port.
    pub port: u16,
    /// The launch secret.
    pub secret: String,
    /// The store file (open it again to check what was saved).
    pub path: PathBuf,
    /// The campaign.
    pub campaign: Uuid,
    /// A client that keeps cookies and follows redirects, signed in with the secret.
    pub client: Client,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl App {
    /// Seeds a store, lets `prepare` change it, and serves it.
    pub fn start_with(prepare: impl FnOnce(&mut Store, Uuid) -> Result<()>) -> Result<App> {
        Self::start_inner(true, prepare)
    }

    /// Serves a new, empty store (a device on its first start).
    pub fn start_empty() -> Result<App> {
        Self::start_inner(false, |_, _| Ok(()))
    }

    fn start_inner(
        seeded: bool,
        prepare: impl FnOnce(&mut Store, Uuid) -> Result<()>,
    ) -> Result<App> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("device.sqlite3");
        let mut store = Store::open(&path)?;
        let campaign = if seeded {
            seed(&mut store)?
        } else {
            Uuid::nil()
        };
        prepare(&mut store, campaign)?;
        Self::launch(dir, path, campaign, Ok(store))
    }

    /// Seeds a store encrypted with `key` and serves it without the key: the app asks for it.
    pub fn start_locked(key: &[u8; 32]) -> Result<App> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("device.sqlite3");
        let campaign = seed(&mut Store::open_encrypted(&path, key)?)?;
        let locked = path.clone();
        Self::launch(dir, path, campaign, Err(locked))
    }

    /// Serves the store (`Err`: the encrypted file, locked) and signs the client in.
    fn launch(
        dir: tempfile::TempDir,
        path: PathBuf,
        campaign: Uuid,
        store: std::result::Result<Store, PathBuf>,
    ) -> Result<App> {
        let options = AppOptions::default();
        let secret = options.secret.expose().to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                tx.send(listener.local_addr()?).expect("test waits");
                let shutdown = async move {
                    let _ = stopped.await;
                };
                match store {
                    Ok(store) => fieldsync_app::serve(listener, store, options, shutdown).await,
                    Err(locked) => {
                        fieldsync_app::serve_locked(listener, locked, options, shutdown).await
                    }
                }
            })
        });
        let addr = rx.recv().context("the app did not start")?;
        let client = Client::builder().cookie_store(true).build()?;
        let app = App {
            base: format!("http://{addr}"),
            port: addr.port(),
            secret,
            path,
            campaign,
            client,
            _dir: dir,
            shutdown: Some(stop),
            thread: Some(thread),
        };
        let r = app.client.get(app.launch_url()).send()?;
        anyhow::ensure!(r.status() == 200, "sign-in answered {}", r.status());
        Ok(app)
    }

    /// Seeds a store and serves it.
    pub fn start() -> Result<App> {
        Self::start_with(|_, _| Ok(()))
    }

    /// The address the CLI would open.
    pub fn launch_url(&self) -> String {
        format!("{}/?secret={}", self.base, self.secret)
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A page's text (asserting it answered 200).
    pub fn page(&self, path: &str) -> Result<String> {
        let r = self.client.get(self.url(path)).send()?;
        anyhow::ensure!(r.status() == 200, "GET {path} answered {}", r.status());
        Ok(r.text()?)
    }

    /// The CSRF token the pages carry (derived from the secret as the app does).
    pub fn csrf(&self) -> Result<String> {
        Ok(fieldsync_app::Secret::from_string(self.secret.clone()).csrf_token())
    }

    /// Posts a form with the CSRF token added.
    pub fn post(&self, path: &str, fields: &[(&str, &str)]) -> Result<Response> {
        let mut all: Vec<(String, String)> = vec![("csrf".into(), self.csrf()?)];
        all.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Ok(self.client.post(self.url(path)).form(&all).send()?)
    }

    /// Presses Sync and waits for the background sync to end (as the page's script does:
    /// polling `/sync/progress`), then returns the pages that may tell the result.
    pub fn sync(&self) -> Result<String> {
        let r = self.post("/sync", &[])?;
        anyhow::ensure!(r.status() == 200, "POST /sync answered {}", r.status());
        // A sync that ends at once (no server) tells its result on the page the POST was
        // redirected to; a longer one on the next page. Both are returned.
        let first = r.text()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let p: serde_json::Value =
                self.client.get(self.url("/sync/progress")).send()?.json()?;
            if p["running"] == false {
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the sync did not end: {p}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(format!("{first}\n{}", self.page("/")?))
    }

    /// Opens the store file again (as the CLI can while the app runs).
    pub fn store(&self) -> Result<Store> {
        Ok(Store::open(&self.path)?)
    }

    /// Records of `kind` in the store, newest first.
    pub fn records(&self, kind: &str) -> Result<Vec<Record>> {
        Ok(self.store()?.list(&Filter {
            kind: Some(kind.into()),
            ..Default::default()
        })?)
    }

    /// The id of member `name`.
    pub fn member(&self, name: &str) -> Result<Uuid> {
        self.records("member")?
            .into_iter()
            .find(|r| r.fields.get("name") == Some(&FieldValue::Str(name.into())))
            .map(|r| r.header.id)
            .context("no such member")
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The CSRF token in a page.
pub fn csrf_in(html: &str) -> Option<String> {
    let at = html.find(r#"name="csrf" value=""#)? + r#"name="csrf" value=""#.len();
    Some(html[at..].split('"').next()?.to_string())
}

/// Posts `bytes` as the file `file_name` in the multipart field `field` to `path`, with the
/// CSRF token in the address when `with_token` (multipart bodies carry it there): the answer,
/// or why the client could not send the whole body.
pub fn post_file(
    app: &App,
    path: &str,
    field: &str,
    file_name: &str,
    bytes: Vec<u8>,
    with_token: bool,
) -> Result<reqwest::Result<Response>> {
    let form = reqwest::blocking::multipart::Form::new().part(
        field.to_string(),
        reqwest::blocking::multipart::Part::bytes(bytes).file_name(file_name.to_string()),
    );
    let url = if with_token {
        app.url(&format!("{path}?csrf={}", app.csrf()?))
    } else {
        app.url(path)
    };
    Ok(app.client.post(url).multipart(form).send())
}

/// Asserts that an upload was refused before its body was read: the answer is 403, or the
/// client saw the connection closed while it was still sending (the app does not wait for the
/// rest of a body it refuses, and a blocking client may then report the send, not the answer).
pub fn refused_unread(sent: reqwest::Result<Response>, what: &str) {
    match sent {
        Ok(r) => assert_eq!(r.status(), 403, "{what}"),
        Err(e) => assert!(e.is_request() || e.is_body(), "{what}: {e}"),
    }
}

/// A client that neither keeps cookies nor follows redirects.
pub fn bare_client() -> Result<Client> {
    Ok(Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}
