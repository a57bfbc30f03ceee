//! The field app (fieldsync-app) on this store, for a WebView shell: started on 127.0.0.1 on a
//! thread and runtime of its own, over a second handle of the store, and stopped again; its
//! address carries the per-launch secret the WebView hands over once.

use std::sync::mpsc;
use std::thread::JoinHandle;

use fieldsync_app::AppOptions;

use crate::error::{FieldsyncError, Result};
use crate::store::FieldStore;

/// A running field app.
pub(crate) struct RunningApp {
    url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RunningApp {
    /// Stops the app and waits for its thread (pages being served finish first).
    pub(crate) fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn failed(e: impl std::fmt::Display) -> FieldsyncError {
    FieldsyncError::storage(
        format!("外业应用无法启动：{e}"),
        format!("the field app cannot start: {e}"),
    )
}

#[uniffi::export]
impl FieldStore {
    /// Starts the field app on this store at `127.0.0.1:port` (0: any free port) and returns
    /// the address to load in the WebView, secret included (`http://127.0.0.1:PORT/?secret=…`;
    /// the app keeps it in a cookie from the first page on). Starting it again while it runs
    /// returns the same address.
    pub fn start_app(&self, port: u16) -> Result<String> {
        let mut running = self.app.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(app) = running.as_ref() {
            return Ok(app.url.clone());
        }
        let (second, http) = self.with(|s| Ok((s.reopen()?, Self::http_options(s)?)))?;
        let options = AppOptions {
            http,
            ..AppOptions::default()
        };
        let (addr_tx, addr_rx) = mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fieldsync-app".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = addr_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let url = listener
                        .local_addr()
                        .map(|a| options.launch_url(a))
                        .map_err(|e| e.to_string());
                    let _ = addr_tx.send(url);
                    let shutdown = async move {
                        let _ = shutdown_rx.await;
                    };
                    if let Err(e) = fieldsync_app::serve(listener, second, options, shutdown).await
                    {
                        tracing::warn!("the field app stopped: {e}");
                    }
                });
            })
            .map_err(failed)?;
        let url = addr_rx
            .recv()
            .map_err(|_| failed("the app's thread ended"))?
            .map_err(failed)?;
        *running = Some(RunningApp {
            url: url.clone(),
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        });
        Ok(url)
    }

    /// Stops the field app if it runs.
    pub fn stop_app(&self) {
        let app = self.app.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(app) = app {
            app.stop();
        }
    }

    /// The running field app's address (with its secret), if it runs.
    pub fn app_url(&self) -> Option<String> {
        self.app
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|a| a.url.clone())
    }
}
