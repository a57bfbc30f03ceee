//! `fieldsync app` through the real binary: it serves the field app over the device's store on
//! 127.0.0.1, prints the address with the launch secret, opens the browser unless `--no-open`
//! (a stand-in `xdg-open` on `PATH` notes what it was asked to open), answers only with the
//! secret, shares the store with other commands run while it serves (both ways), and stops on
//! Ctrl-C (SIGINT) with exit code 0; over an encrypted store started without `--key-file`, its
//! first page asks for the key file and opens the store with it.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::{Device, VILLAGE};

/// A running `fieldsync app` and what it printed before its address.
struct Running {
    child: Child,
    said: String,
    url: String,
}

impl Running {
    fn start(d: &Device, args: &[&str], opener_dir: &Path, opened: &Path) -> Result<Running> {
        let path = format!(
            "{}:{}",
            opener_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_fieldsync"))
            .env("FIELDSYNC_STORE", d.path("store.sqlite3"))
            .env_remove("FIELDSYNC_LANG")
            .env("PATH", path)
            .env("OPENED", opened)
            .arg("app")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let said = lines.next().context("nothing printed")??;
        let url = lines.next().context("no address printed")??;
        Ok(Running { child, said, url })
    }

    /// Ctrl-C, then the exit code (within ten seconds).
    fn interrupt(mut self) -> Result<i32> {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()?;
        ensure!(status.success(), "kill -INT failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                anyhow::bail!("the app did not stop on Ctrl-C");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A stand-in for the desktop's opener: appends what it is asked to open to `$OPENED`.
fn fake_opener(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for name in ["xdg-open", "open"] {
        let script = dir.join(name);
        std::fs::write(&script, "#!/bin/sh\necho \"$1\" >> \"$OPENED\"\n")?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// The CSRF token in a page's form.
fn csrf_in(html: &str) -> Option<String> {
    let at = html.find(r#"name="csrf" value=""#)? + r#"name="csrf" value=""#.len();
    Some(html[at..].split('"').next()?.to_string())
}

#[test]
fn the_app_serves_the_store_prints_its_address_and_shares_the_store_with_other_commands()
-> Result<()> {
    let (d, _campaign) = Device::department()?;
    let bin = tempfile::tempdir()?;
    fake_opener(bin.path())?;
    let opened = bin.path().join("opened.txt");

    let app = Running::start(&d, &["--no-open"], bin.path(), &opened)?;
    assert_eq!(
        app.said,
        "外业记录应用已启动（仅限本机），用浏览器打开（按 Ctrl-C 退出）："
    );
    let rest = app
        .url
        .strip_prefix("http://127.0.0.1:")
        .with_context(|| format!("not a loopback address: {}", app.url))?;
    let (port, secret) = rest.split_once("/?secret=").context("no secret")?;
    let port: u16 = port.parse()?;
    assert!(port > 0);
    assert!(secret.len() >= 32, "a guessable secret: {secret}");
    let base = format!("http://127.0.0.1:{port}");

    // Nothing without the secret; the secret opens the home page with the store's campaign.
    let bare = reqwest::blocking::Client::new();
    assert_eq!(bare.get(format!("{base}/")).send()?.status(), 403);
    let browser = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .build()?;
    let home = browser.get(&app.url).send()?;
    assert_eq!(home.status(), 200);
    assert_eq!(
        home.url().as_str(),
        format!("{base}/"),
        "the secret left the address"
    );
    let home = home.text()?;
    assert!(
        home.contains("示范镇届中分析") && home.contains("青龙社区"),
        "{home}"
    );

    // Another command writes to the store while the app serves it: the app shows the record.
    let created = d.new_interview("命令行记录的谈话。");
    let from_cli = created["id"].as_str().context("id")?.to_string();
    let list = browser
        .get(format!("{base}/v/{VILLAGE}/k/interview"))
        .send()?
        .text()?;
    assert!(list.contains(&format!("/r/{from_cli}")), "{list}");

    // The app writes: another command reads it.
    let form = browser
        .get(format!("{base}/v/{VILLAGE}/k/interview/new"))
        .send()?
        .text()?;
    let csrf = csrf_in(&form).context("no CSRF token on the form")?;
    let saved = browser
        .post(format!("{base}/v/{VILLAGE}/k/interview/new"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("f.date", "2026-05-19"),
            ("f.interviewer", "王组长"),
            ("f.interviewee_type", "other"),
            ("f.notes", "应用里记录的谈话。"),
            ("action", "save"),
        ])
        .send()?;
    assert_eq!(saved.status(), 200);
    let listed = d.json(&["list", "--kind", "interview"]);
    let notes: Vec<&str> = listed
        .as_array()
        .context("a list")?
        .iter()
        .filter_map(|r| r["fields"]["notes"].as_str())
        .collect();
    assert_eq!(notes.len(), 2, "{listed}");
    assert!(notes.contains(&"应用里记录的谈话。"), "{listed}");

    assert!(!opened.exists(), "--no-open opened a browser");
    assert_eq!(app.interrupt()?, 0, "Ctrl-C stops the app cleanly");
    assert!(
        bare.get(format!("{base}/")).send().is_err(),
        "nothing answers after Ctrl-C"
    );

    // Without --no-open, the browser is asked to open the printed address.
    let app = Running::start(&d, &[], bin.path(), &opened)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !opened.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let asked = std::fs::read_to_string(&opened).context("the browser was not opened")?;
    assert_eq!(asked.trim(), app.url);
    assert_eq!(app.interrupt()?, 0);
    Ok(())
}

#[test]
fn an_encrypted_store_without_its_key_asks_for_the_key_file_on_the_first_page() -> Result<()> {
    let d = Device::new()?;
    let key = d.path("store.key");
    std::fs::write(&key, "33".repeat(32))?;
    d.json(&[
        "--key-file",
        key.to_str().context("path")?,
        "campaign-create",
        "--template",
        "midterm",
        "--name",
        "加密的届中分析",
        "--year",
        "2026",
    ]);
    let bin = tempfile::tempdir()?;
    let app = Running::start(&d, &["--no-open"], bin.path(), &bin.path().join("opened"))?;
    let browser = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .build()?;
    let first = browser.get(&app.url).send()?;
    assert_eq!(first.url().path(), "/unlock");
    let page = first.text()?;
    assert!(page.contains("本机数据已加密"), "{page}");
    assert!(!page.contains("加密的届中分析"), "{page}");
    let base = app.url.split("/?").next().context("base")?.to_string();
    let csrf = csrf_in(&page).unwrap_or_default();
    // The upload form carries its token in the address; it is the launch's CSRF token.
    let action = page
        .split("action=\"")
        .nth(1)
        .and_then(|a| a.split('"').next())
        .context("the key form")?
        .replace("&amp;", "&");
    assert!(action.starts_with("/unlock?csrf="), "{action} {csrf}");
    let form = reqwest::blocking::multipart::Form::new().part(
        "key",
        reqwest::blocking::multipart::Part::bytes(std::fs::read(&key)?).file_name("store.key"),
    );
    let home = browser
        .post(format!("{base}{action}"))
        .multipart(form)
        .send()?;
    assert_eq!(home.url().path(), "/");
    let home = home.text()?;
    assert!(
        home.contains("本机数据已打开") && home.contains("加密的届中分析"),
        "{home}"
    );
    assert_eq!(app.interrupt()?, 0);
    Ok(())
}
