//! Measures the field app: the time to render a village's list of 500 interviews, to open the
//! form and to save an interview, over a real app on 127.0.0.1:0, and the process's memory.
//! `cargo run -p fieldsync-app --example bench_app` prints them.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use fieldsync_app::{AppOptions, Secret};
use fieldsync_client_core::import::ImportKind;
use fieldsync_client_core::{FieldValue, Store};
use fieldsync_protocol::template::Template;
use uuid::Uuid;

const VILLAGE: &str = "510100001";

fn rss_kib() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(dir.path().join("device.sqlite3"))?;
    let campaign = Uuid::now_v7();
    let template = Template::builtin("midterm").context("midterm")?;
    store.create_campaign(campaign, "测量", &template, 2026)?;
    store.import_csv(
        campaign,
        ImportKind::Places,
        format!("代码,名称,层级,上级代码\n{VILLAGE},甲村,村,\n").as_bytes(),
    )?;
    store.set_setting("campaign", &campaign.to_string())?;
    let note: String = "村集体经济收入不高，群众希望发展产业项目。".repeat(20);
    for i in 0..500 {
        let mut f = BTreeMap::new();
        f.insert("date".to_string(), FieldValue::Str("2026-05-18".into()));
        f.insert("interviewer".to_string(), FieldValue::Str(format!("王{i}")));
        f.insert(
            "interviewee_type".to_string(),
            FieldValue::Str("other".into()),
        );
        f.insert("notes".to_string(), FieldValue::Text(note.clone()));
        store.create_form(campaign, "interview", VILLAGE, &f)?;
    }
    let options = AppOptions::default();
    let secret = options.secret.expose().to_string();
    let rt = tokio::runtime::Runtime::new()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    rt.spawn(fieldsync_app::serve(
        listener,
        store,
        options,
        std::future::pending(),
    ));
    let client = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .build()?;
    client
        .get(format!("http://{addr}/?secret={secret}"))
        .send()?;
    let csrf = Secret::from_string(secret).csrf_token();
    let time = |f: &dyn Fn() -> Result<()>| -> Result<f64> {
        let mut v = Vec::new();
        for _ in 0..21 {
            let t = Instant::now();
            f()?;
            v.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(median(v))
    };
    let list = time(&|| {
        let r = client
            .get(format!("http://{addr}/v/{VILLAGE}/k/interview"))
            .send()?;
        anyhow::ensure!(r.status() == 200);
        r.bytes()?;
        Ok(())
    })?;
    let form = time(&|| {
        let r = client
            .get(format!("http://{addr}/v/{VILLAGE}/k/interview/new"))
            .send()?;
        anyhow::ensure!(r.status() == 200);
        r.bytes()?;
        Ok(())
    })?;
    let save = time(&|| {
        let r = client
            .post(format!("http://{addr}/v/{VILLAGE}/k/interview/new"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("f.date", "2026-05-19"),
                ("f.interviewer", "赵"),
                ("f.interviewee_type", "other"),
                ("f.notes", note.as_str()),
                ("action", "save_new"),
            ])
            .send()?;
        anyhow::ensure!(r.status() == 200);
        Ok(())
    })?;
    println!("list of 500 interviews: {list:.1} ms (median of 21)");
    println!("open the form: {form:.1} ms");
    println!("save an interview (POST, 303, the next form): {save:.1} ms");
    println!(
        "memory (VmRSS of this process, app and client): {} KiB",
        rss_kib()
    );
    Ok(())
}
