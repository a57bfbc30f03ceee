//! `fieldsync sync`: push then pull with a progress bar, retrying after network failures and
//! waiting when the server is busy; what the sync did, in words or JSON.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Result, anyhow};
use fieldsync_client_core::sync::{Progress, sync_with_progress};
use fieldsync_client_core::{Store, SyncError, SyncOptions, TransportError, account};

use super::account::{campaign_from_scope, http_options};
use crate::errors::user;
use crate::output::{print_json, t};

/// How many times one `fieldsync sync` waits for a busy server's `Retry-After` before such waits
/// count against `--retries`.
const MAX_BUSY_WAITS: u32 = 5;

/// `fieldsync sync`.
pub(crate) fn sync_command(store: &mut Store, retries: u32, json: bool) -> Result<()> {
    if store.credentials()?.is_none() {
        return Err(user(
            "本机尚未登记：运行 fieldsync enroll --server <地址> --code <登记码>（登记码向管理员索取）",
            "this device is not enrolled: run fieldsync enroll --server <address> --code <code> (ask the administrator for a code)",
        ));
    }
    let options = http_options(store)?;
    let bar = indicatif::ProgressBar::new(0);
    if json || !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut attempt = 0;
    let mut busy_waits = 0;
    let report = loop {
        let mut transport = account::transport(store, &options)?;
        let mut progress = |p: Progress| match p {
            Progress::Pushing { sent, total } => {
                bar.set_message(t("上传", "sending"));
                bar.set_length(total);
                bar.set_position(sent);
            }
            Progress::Pulling { from, at, head } => {
                bar.set_message(t("接收", "receiving"));
                bar.set_length(head.saturating_sub(from));
                bar.set_position(at.saturating_sub(from));
            }
        };
        match sync_with_progress(
            store,
            &mut transport,
            &SyncOptions::default(),
            &mut progress,
        ) {
            Ok(r) => break r,
            // The server is busy and said how long to wait: wait that long (capped by the
            // transport) and try again, without using up the network retries, a few times.
            Err(SyncError::Transport(e, waiting))
                if e.retry_after().is_some() && busy_waits < MAX_BUSY_WAITS =>
            {
                busy_waits += 1;
                let wait = e
                    .retry_after()
                    .unwrap_or_default()
                    .max(Duration::from_secs(1));
                eprintln!(
                    "{}",
                    t(
                        &format!(
                            "服务器繁忙，按其要求 {} 秒后重试（第 {busy_waits} 次），{waiting} 条更改等待上传",
                            wait.as_secs()
                        ),
                        &format!(
                            "the server is busy and asked to wait; retrying in {} s (wait {busy_waits}); {waiting} changes wait to upload",
                            wait.as_secs()
                        )
                    )
                );
                std::thread::sleep(wait);
            }
            Err(SyncError::Transport(e, waiting)) if e.is_retryable() && attempt < retries => {
                attempt += 1;
                let wait = e
                    .retry_after()
                    .unwrap_or(Duration::from_secs(1 << attempt.min(5)));
                eprintln!(
                    "{}",
                    t(
                        &format!(
                            "网络中断（{e}），{} 秒后重试（第 {attempt} 次），{waiting} 条更改等待上传",
                            wait.as_secs()
                        ),
                        &format!(
                            "network trouble ({e}); retrying in {} s (attempt {attempt}); {waiting} changes wait to upload",
                            wait.as_secs()
                        )
                    )
                );
                std::thread::sleep(wait);
            }
            Err(SyncError::Transport(e, waiting)) => {
                bar.finish_and_clear();
                let msg = match &e {
                    TransportError::Unreachable(_) | TransportError::Interrupted(_) => t(
                        &format!(
                            "无法连接服务器，数据没有丢失：{waiting} 条更改保存在本机，等待上传；有网络时再运行 fieldsync sync"
                        ),
                        &format!(
                            "cannot reach the server; nothing was lost: {waiting} changes are kept on this device and wait to upload; run fieldsync sync again when there is a network"
                        ),
                    ),
                    _ => String::new(),
                };
                if !msg.is_empty() {
                    eprintln!("{msg}");
                }
                return Err(anyhow!(SyncError::Transport(e, waiting)));
            }
            Err(SyncError::Revoked) => {
                bar.finish_and_clear();
                return Err(anyhow!(SyncError::Revoked));
            }
            Err(e) => return Err(e.into()),
        }
    };
    bar.finish_and_clear();
    campaign_from_scope(store)?;
    if json {
        return print_json(&serde_json::json!({
            "sent": report.pushed, "received": report.received, "conflicted_records": report.conflicted_records,
            "waiting": report.waiting, "server_reset": report.server_reset,
            "held": report.held, "removed_records": report.removed_records,
            "rejected": report.rejected.iter().map(|r| serde_json::json!({
                "record": r.id, "code": r.code, "message": r.message,
            })).collect::<Vec<_>>(),
        }));
    }
    // Records the server refused while it stored the rest: kept here, offered again next time.
    let mut rejected = report.rejected.clone();
    rejected.sort_by(|a, b| a.id.cmp(&b.id));
    rejected.dedup_by(|a, b| a.id == b.id);
    for r in &rejected {
        out!(
            "{}",
            t(
                &format!("服务器未接收记录 {}：{}（保留在本机）", r.id, r.message),
                &format!(
                    "the server refused record {}: {} (kept on this device)",
                    r.id, r.message
                )
            )
        );
    }
    if report.removed_records > 0 {
        out!(
            "{}",
            t(
                &format!(
                    "工作范围已调整：{} 条不再属于本机的记录已从本机移除",
                    report.removed_records
                ),
                &format!(
                    "your scope changed: {} records you may no longer see were removed from this device",
                    report.removed_records
                )
            )
        );
    }
    if report.held > 0 {
        out!(
            "{}",
            t(
                &format!(
                    "{} 条更改属于已不再分配给本机的村，保留在本机未上传；可用 fieldsync bundle export 交给负责的同志",
                    report.held
                ),
                &format!(
                    "{} changes belong to villages no longer assigned to this device: kept here, not uploaded; hand them over with fieldsync bundle export",
                    report.held
                )
            )
        );
    }
    out!(
        "{}",
        t(
            &format!(
                "同步完成：上传 {} 条更改，收到 {} 条，{} 条记录有冲突",
                report.pushed, report.received, report.conflicted_records
            ),
            &format!(
                "synced: sent {} changes, received {}, {} records in conflict",
                report.pushed, report.received, report.conflicted_records
            )
        )
    );
    Ok(())
}
