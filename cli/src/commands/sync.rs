//! `fieldsync sync`: push then pull with a progress bar, trying again after network failures
//! (jittered exponential backoff, capped) until it succeeds, the user stops it or their bound
//! (`--tries`, `--give-up-after`) runs out, and waiting as long as a busy server asks; what the
//! sync did, in words or JSON.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use fieldsync_client_core::attachments::upload_attachments;
use fieldsync_client_core::sync::{Progress, sync_with_progress};
use fieldsync_client_core::{Store, SyncError, SyncOptions, TransportError, account};

use super::account::{campaign_from_scope, http_options};
use crate::errors::user;
use crate::output::{print_json, t};

/// When one `fieldsync sync` stops trying (`--tries`, `--give-up-after`); without either it
/// tries until it succeeds or the user stops it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bound {
    /// The most tries.
    pub(crate) tries: Option<u32>,
    /// The longest time from the first try.
    pub(crate) give_up_after: Option<Duration>,
}

impl Bound {
    /// "(try n of max, until 10m)", in the chosen language.
    fn try_text(&self, n: u32) -> String {
        let limit = self
            .give_up_after
            .map(|d| humantime::format_duration(d).to_string());
        match (self.tries, limit) {
            (None, None) => t(&format!("第 {n} 次尝试"), &format!("(try {n})")),
            (Some(max), None) => t(
                &format!("第 {n} 次尝试（最多 {max} 次）"),
                &format!("(try {n} of {max})"),
            ),
            (None, Some(l)) => t(
                &format!("第 {n} 次尝试（最长 {l}）"),
                &format!("(try {n}, until {l})"),
            ),
            (Some(max), Some(l)) => t(
                &format!("第 {n} 次尝试（最多 {max} 次，最长 {l}）"),
                &format!("(try {n} of {max}, until {l})"),
            ),
        }
    }
}

/// The first wait after a failed try; each further failure doubles it, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The longest wait between two tries (a server's own `Retry-After` may ask for more, up to
/// `http::MAX_RETRY_AFTER`).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The wait before try `next` (2, 3, …): exponential, capped, and jittered to between half and
/// all of it, so that devices cut off together do not come back together.
fn backoff(next: u32) -> Duration {
    let exp = FIRST_BACKOFF
        .saturating_mul(1u32 << (next.saturating_sub(2)).min(16))
        .min(MAX_BACKOFF);
    exp.mul_f64(0.5 + 0.5 * fastrand::f64())
}

/// `fieldsync sync`: tries until the sync succeeds, a failure that trying again cannot mend
/// (refused, revoked, a broken store), or `bound` runs out.
pub(crate) fn sync_command(store: &mut Store, bound: Bound, json: bool) -> Result<()> {
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
    let started = Instant::now();
    // Tries that failed on the network; a busy server's answer (it says when to come back) is
    // not counted against `--tries`, only against `--give-up-after`.
    let mut tries: u32 = 0;
    let mut busy_waits: u32 = 0;
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
        let (e, waiting) = match sync_with_progress(
            store,
            &mut transport,
            &SyncOptions::default(),
            &mut progress,
        ) {
            Ok(r) => break r,
            Err(SyncError::Transport(e, waiting)) if e.is_retryable() => (e, waiting),
            Err(SyncError::Transport(e, waiting)) => {
                bar.finish_and_clear();
                return Err(anyhow!(SyncError::Transport(e, waiting)));
            }
            Err(SyncError::Revoked) => {
                bar.finish_and_clear();
                return Err(anyhow!(SyncError::Revoked));
            }
            Err(e) => return Err(e.into()),
        };
        let busy = e.retry_after();
        if busy.is_some() {
            busy_waits += 1;
        } else {
            tries += 1;
        }
        let elapsed = started.elapsed();
        let out_of_tries = busy.is_none() && bound.tries.is_some_and(|max| tries >= max);
        let out_of_time = bound.give_up_after.is_some_and(|limit| elapsed >= limit);
        if out_of_tries || out_of_time {
            bar.finish_and_clear();
            let spent = humantime::format_duration(Duration::from_secs(elapsed.as_secs()));
            let all = tries + busy_waits;
            eprintln!(
                "{}",
                t(
                    &format!("已尝试 {all} 次（用时 {spent}），仍未同步完成"),
                    &format!(
                        "gave up after {all} {} ({spent})",
                        if all == 1 { "try" } else { "tries" }
                    )
                )
            );
            if matches!(
                e,
                TransportError::Unreachable(_) | TransportError::Interrupted(_)
            ) {
                eprintln!(
                    "{}",
                    t(
                        &format!(
                            "无法连接服务器，数据没有丢失：{waiting} 条更改保存在本机，等待上传；有网络时再运行 fieldsync sync"
                        ),
                        &format!(
                            "cannot reach the server; nothing was lost: {waiting} changes are kept on this device and wait to upload; run fieldsync sync again when there is a network"
                        ),
                    )
                );
            }
            return Err(anyhow!(SyncError::Transport(e, waiting)));
        }
        // Wait as the server asked, or back off; never past the time bound.
        let mut wait = match busy {
            Some(after) => after.max(Duration::from_secs(1)),
            None => backoff(tries + 1),
        };
        if let Some(limit) = bound.give_up_after {
            wait = wait.min(limit.saturating_sub(elapsed));
        }
        let next = tries + 1;
        let secs = wait.as_secs_f64();
        let line = match busy {
            Some(_) => t(
                &format!(
                    "服务器繁忙，按其要求 {secs:.0} 秒后再试（第 {busy_waits} 次等待）；{waiting} 条更改保存在本机等待上传，按 Ctrl-C 可停止"
                ),
                &format!(
                    "the server is busy and asked to wait; trying again in {secs:.0} s (wait {busy_waits}); {waiting} changes wait to upload; Ctrl-C stops"
                ),
            ),
            None => t(
                &format!(
                    "网络中断（{e}），{secs:.1} 秒后{}；{waiting} 条更改保存在本机等待上传，按 Ctrl-C 可停止",
                    bound.try_text(next)
                ),
                &format!(
                    "network trouble ({e}); trying again in {secs:.1} s {}; {waiting} changes wait to upload; Ctrl-C stops",
                    bound.try_text(next)
                ),
            ),
        };
        bar.suspend(|| eprintln!("{line}"));
        std::thread::sleep(wait);
    };
    bar.finish_and_clear();
    campaign_from_scope(store)?;
    // Records first, files after: a slow photo never holds up the numbers.
    let files = {
        let mut transport = account::transport(store, &options)?;
        upload_attachments(store, &mut transport, 50)
    };
    if json {
        let (uploaded, files_waiting) = match &files {
            Ok(f) => (
                f.uploaded + f.already_there,
                store.attachments_to_upload()?.len(),
            ),
            Err(_) => (0, store.attachments_to_upload()?.len()),
        };
        return print_json(&serde_json::json!({
            "attachments_uploaded": uploaded, "attachments_waiting": files_waiting,
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
    let files_waiting = store.attachments_to_upload()?.len();
    match files {
        Ok(f) if f.uploaded + f.already_there > 0 || files_waiting > 0 => out!(
            "{}",
            t(
                &format!(
                    "附件：上传 {} 个，{files_waiting} 个等待下次同步",
                    f.uploaded + f.already_there
                ),
                &format!(
                    "attachments: {} uploaded, {files_waiting} waiting for the next sync",
                    f.uploaded + f.already_there
                )
            )
        ),
        Ok(_) => {}
        Err(e) => out!(
            "{}",
            t(
                &format!(
                    "附件未能全部上传（{e}），{files_waiting} 个保存在本机，下次同步时从断点继续"
                ),
                &format!(
                    "not every attachment was uploaded ({e}); {files_waiting} are kept here and resume from where they stopped at the next sync"
                )
            )
        ),
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
