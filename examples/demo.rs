//! The server on embedded SQLite with a generated demo campaign (seed 002's size: 9 villages,
//! 9 work groups, interviews, meetings, questionnaires, evaluation forms, findings,
//! rectifications, assessments and two conflicts to review), and one-time codes to sign in to
//! the dashboard as the department, as a group leader and as the administrator.
//!
//! ```text
//! cargo run --release --example demo                     # http://127.0.0.1:8080
//! cargo run --release --example demo -- 127.0.0.1:9000 ./my-demo-data
//! ```
//!
//! The data stays in `./fieldsync-demo` (a second start reuses it and prints fresh codes). Stop
//! with Ctrl-C.

/// The server's allocator, as in `fieldsync-server` (server/src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use anyhow::{Context, Result};
use fieldsync::generator;
use fieldsync_client_core::HttpTransport;
use fieldsync_protocol::auth::Role;

fn main() -> Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let data = std::path::PathBuf::from(
        std::env::args()
            .nth(2)
            .unwrap_or_else(|| "fieldsync-demo".into()),
    );
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let dir = data.clone();
    let server = std::thread::spawn(move || -> Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let storage = fieldsync_server::open_storage(&dir).await?;
            let people = storage.people().await?;
            let admin = match people.into_iter().find(|p| p.name == "演示数据生成") {
                Some(p) => p,
                None => {
                    storage
                        .create_person("演示数据生成".into(), Role::Admin, None)
                        .await?
                }
            };
            let (code, _) = fieldsync_server::admin::issue(storage.as_ref(), admin.id, 1)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let fresh = storage.status().await?.records == 0;
            storage.close().await;
            drop(storage);
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            ready_tx.send((listener.local_addr()?, code, fresh))?;
            fieldsync_server::run(listener, fieldsync_server::Config::new(&dir), async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            Ok(())
        })
    });
    let Ok((addr, code, fresh)) = ready_rx.recv_timeout(Duration::from_secs(60)) else {
        // The server thread stopped before it listened: say why.
        return match server.join() {
            Ok(Err(e)) => Err(e.context("the server did not start")),
            _ => Err(anyhow::anyhow!("the server did not start")),
        };
    };
    let url = format!("http://{addr}");
    let mut admin = HttpTransport::new(&url)?;
    let token = admin
        .enroll(uuid::Uuid::new_v4(), &code, "演示数据生成")?
        .token;
    fieldsync::register_server(&url, &token);
    if fresh {
        println!("生成演示数据 / generating the demo campaign ...");
        let work = tempfile::tempdir()?;
        let generated = generator::generate(work.path(), &url, &generator::Config::default())?;
        println!(
            "工作任务 / campaign {} ({} records)",
            generated.campaign,
            generated.tally.by_kind.values().sum::<usize>()
        );
    }
    let (_, groups) = fieldsync::request(
        &url,
        &token,
        reqwest::Method::GET,
        "/v1/records?kind=work_group",
        None,
    )?;
    let first_group = groups
        .as_array()
        .and_then(|g| g.first())
        .and_then(|g| g["id"].as_str())
        .and_then(|id| uuid::Uuid::parse_str(id).ok());
    // On a second start the demo's people exist already: issue them new codes.
    let (_, people) =
        fieldsync::request(&url, &token, reqwest::Method::GET, "/v1/admin/people", None)?;
    let code_for = |name: &str, role: Role, group: Option<uuid::Uuid>| -> Result<String> {
        let existing = people.as_array().and_then(|p| {
            p.iter()
                .find(|x| x["name"] == name)
                .and_then(|x| x["id"].as_str())
                .and_then(|id| uuid::Uuid::parse_str(id).ok())
        });
        let person = match existing {
            Some(p) => p,
            None => fieldsync::add_person(&url, &token, name, role, group)?,
        };
        fieldsync::code_for(&url, &token, person)
    };
    let viewer = code_for("组织部（演示）", Role::Viewer, None)?;
    let leader = code_for("第一工作组组长（演示）", Role::Leader, first_group)?;
    let admin_code = code_for("管理员（演示）", Role::Admin, None)?;
    println!(
        "\nfieldsync 演示已启动 / demo running: {url}\n\
         打开 {url}/login 并输入登录码（每个只能用一次，72 小时内有效）/ open {url}/login and enter a code (once each, 72 h):\n  \
         部门查看人员 / department viewer: {viewer}\n  \
         第一工作组组长 / leader of work group 1: {leader}\n  \
         管理员 / administrator: {admin_code}\n\
         数据目录 / data: {}\n按 Ctrl-C 停止 / Ctrl-C to stop",
        data.display()
    );
    server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;
    Ok(())
}
