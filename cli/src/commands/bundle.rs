//! `fieldsync bundle state|export|import`: changes exchanged with another device by file.

use anyhow::{Context, Result, bail};
use fieldsync_client_core::Store;
use fieldsync_client_core::bundle::Export;

use crate::args::BundleCommand;
use crate::errors::UserError;
use crate::output::{print_json, t};

/// `fieldsync bundle …`.
pub(crate) fn bundle(store: &mut Store, command: BundleCommand, json: bool) -> Result<()> {
    match command {
        BundleCommand::State { file } => {
            std::fs::write(&file, store.bundle_state()?)
                .with_context(|| format!("{}", file.display()))?;
            out!(
                "{} {}",
                t("已写出本机状态：", "wrote this device's state to"),
                file.display()
            );
        }
        BundleCommand::Export {
            file,
            for_state,
            since,
        } => {
            let which = match (for_state, since) {
                (Some(_), Some(_)) => bail!(UserError(t(
                    "--for 与 --since 只能选一个",
                    "use --for or --since, not both"
                ))),
                (Some(p), None) => {
                    Export::Lacking(std::fs::read(&p).with_context(|| format!("{}", p.display()))?)
                }
                (None, Some(s)) => Export::Since(s),
                (None, None) => Export::All,
            };
            let (bytes, stats) = store.export_bundle(&which)?;
            std::fs::write(&file, &bytes).with_context(|| format!("{}", file.display()))?;
            if json {
                return print_json(
                    &serde_json::json!({"records": stats.records, "changes": stats.changes, "bytes": bytes.len(), "last_seq": stats.last_seq}),
                );
            }
            out!(
                "{}",
                t(
                    &format!(
                        "已导出 {} 条记录的 {} 条更改（{} 字节）到 {}；下次可用 --since {}",
                        stats.records,
                        stats.changes,
                        bytes.len(),
                        file.display(),
                        stats.last_seq
                    ),
                    &format!(
                        "exported {} changes of {} records ({} bytes) to {}; next time use --since {}",
                        stats.changes,
                        stats.records,
                        bytes.len(),
                        file.display(),
                        stats.last_seq
                    )
                )
            );
        }
        BundleCommand::Import { file } => {
            let bytes = std::fs::read(&file).with_context(|| format!("{}", file.display()))?;
            let stats = store.import_bundle(&bytes)?;
            if json {
                return print_json(
                    &serde_json::json!({"new_changes": stats.new_changes, "known_changes": stats.known_changes, "waiting": stats.waiting, "records_changed": stats.records_changed}),
                );
            }
            out!(
                "{}",
                t(
                    &format!(
                        "已导入：新更改 {} 条，已有 {} 条，{} 条记录有变化",
                        stats.new_changes, stats.known_changes, stats.records_changed
                    ),
                    &format!(
                        "imported: {} new changes, {} already here, {} records changed",
                        stats.new_changes, stats.known_changes, stats.records_changed
                    )
                )
            );
        }
    }
    Ok(())
}
