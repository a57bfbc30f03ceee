//! `fieldsync app`: the field app served over this store on 127.0.0.1.

use std::path::PathBuf;

use anyhow::{Context, Result};
use fieldsync_client_core::Store;

use crate::output::t;

/// What the app serves.
pub(crate) enum Opened {
    /// The open store.
    Store(Box<Store>),
    /// An encrypted store's file, opened with no key: the app's first page asks for it.
    Locked(PathBuf),
}

/// `fieldsync app`: serves the field app over this store on 127.0.0.1 until Ctrl-C, prints
/// its address (with the launch secret) and opens the browser unless `no_open`.
pub(crate) fn app(opened: Opened, port: u16, no_open: bool) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| {
                t(
                    &format!("无法使用端口 {port}"),
                    &format!("cannot listen on port {port}"),
                )
            })?;
        let options = fieldsync_app::AppOptions::default();
        let url = options.launch_url(listener.local_addr()?);
        println!(
            "{}\n{url}",
            t(
                "外业记录应用已启动（仅限本机），用浏览器打开（按 Ctrl-C 退出）：",
                "the field app is running (this machine only); open in a browser (Ctrl-C to stop):"
            )
        );
        if matches!(opened, Opened::Locked(_)) {
            eprintln!(
                "{}",
                t(
                    "本机数据已加密：请在打开的页面上选择密钥文件（或用 --key-file 指定）",
                    "this device's data is encrypted: choose the key file on the page (or give --key-file)"
                )
            );
        }
        if !no_open {
            let opener = if cfg!(target_os = "macos") {
                "open"
            } else {
                "xdg-open"
            };
            if std::process::Command::new(opener)
                .arg(&url)
                .spawn()
                .is_err()
            {
                eprintln!(
                    "{}",
                    t(
                        "无法自动打开浏览器，请手动打开上面的地址",
                        "could not open a browser: open the address above"
                    )
                );
            }
        }
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match opened {
            Opened::Store(store) => fieldsync_app::serve(listener, *store, options, shutdown).await?,
            Opened::Locked(path) => {
                fieldsync_app::serve_locked(listener, path, options, shutdown).await?
            }
        }
        Ok(())
    })
}
