//! Reading and changing records by id: `list`, `show`, `conflicts`, `append`, `delete`; finding a
//! record by a piece of its id; records as lines and as JSON.

use anyhow::{Result, anyhow};
use fieldsync_client_core::{FieldValue, Filter, Record, Store, StoreError};
use fieldsync_protocol::approval;
use uuid::Uuid;

use super::forms::template;
use crate::errors::{UsageError, user};
use crate::output::{label, print_json, t};

/// `fieldsync append`: text appended to a long text field (it merges with others' edits).
pub(crate) fn append(store: &mut Store, id: String, field: String, text: String) -> Result<()> {
    let id = find(store, &id)?;
    store.edit(id, |e| e.append_text(&field, &text))?;
    out!("{} {id}", t("已追加", "appended to"));
    Ok(())
}

/// `fieldsync delete`: a tombstone that syncs.
pub(crate) fn delete(store: &mut Store, id: String) -> Result<()> {
    let id = find(store, &id)?;
    store.delete(id)?;
    out!("{} {id}", t("已删除", "deleted"));
    Ok(())
}

/// `fieldsync list`: records of the campaign, newest first.
pub(crate) fn list(
    store: &Store,
    kind: Option<String>,
    village: Option<String>,
    member: Option<String>,
    text: Option<String>,
    conflicted: bool,
    json: bool,
) -> Result<()> {
    let all_kinds = kind.is_none();
    if let Some(k) = &kind
        && let Ok(tpl) = template(store)
        && tpl.kind(k).is_none()
    {
        let mut kinds: Vec<&str> = tpl.kinds.keys().map(String::as_str).collect();
        kinds.sort();
        return Err(anyhow!(UsageError(format!(
            "{} {k:?}; {}{}",
            t("没有这种记录", "no record kind"),
            t("可选：", "use one of: "),
            kinds.join(", ")
        ))));
    }
    let mut records = store.list(&Filter {
        kind,
        scope: village,
        campaign: store
            .setting("campaign")?
            .and_then(|c| Uuid::parse_str(&c).ok()),
        text: text.or(member.clone()),
        conflicted,
        ..Default::default()
    })?;
    if all_kinds {
        // Template versions are records too, but not ones people look for.
        records.retain(|r| r.header.kind != fieldsync_protocol::template::TEMPLATE_KIND);
    }
    if let Some(m) = &member {
        records.retain(|r| {
            r.fields
                .values()
                .any(|v| value_text(v).contains(m.as_str()))
        });
    }
    if json {
        return print_json(&serde_json::Value::Array(
            records.iter().map(record_json).collect(),
        ));
    }
    for r in &records {
        let returned = if store.review(r.header.id)?.state == approval::State::Returned {
            t("  ↩退回修改", "  ↩returned")
        } else {
            String::new()
        };
        out!(
            "{}  {:<16} {:<14} {}{}{returned}",
            &r.header.id.to_string()[28..],
            r.header.kind,
            r.header.scope,
            summary(r),
            if r.conflicts > 0 {
                t("  ⚠冲突", "  ⚠conflict")
            } else {
                String::new()
            }
        );
    }
    out!(
        "{}",
        t(
            &format!("共 {} 条", records.len()),
            &format!("{} records", records.len())
        )
    );
    Ok(())
}

/// `fieldsync show`: one record with its fields' labels.
pub(crate) fn show(store: &Store, id: String, json: bool) -> Result<()> {
    let id = find(store, &id)?;
    let r = store.get(id)?;
    if json {
        return print_json(&record_json(&r));
    }
    out!("{}  {}  {}", r.header.id, r.header.kind, r.header.scope);
    let tpl = store.template(r.header.campaign)?;
    let def = tpl.as_ref().and_then(|t| t.kind(&r.header.kind));
    for (k, v) in &r.fields {
        if approval::is_review_field(k) {
            continue;
        }
        let name = def
            .and_then(|d| d.field(k))
            .map(|f| label(&f.label.zh, &f.label.en).to_string())
            .unwrap_or_else(|| k.clone());
        let value = value_text(v);
        out!(
            "{}",
            t(
                &format!("  {name}（{k}）：{value}"),
                &format!("  {name} ({k}): {value}")
            )
        );
    }
    let review = store.review(id)?;
    let mut line = t(
        &format!("审核状态：{}", review.state.zh()),
        &format!("Review: {}", review.state.en()),
    );
    if review.at.is_some() {
        line.push_str(&t(
            &format!("（{}）", review.by),
            &format!(" ({})", review.by),
        ));
    }
    if !review.comment.is_empty() {
        line.push_str(&t(
            &format!("，意见：{}", review.comment),
            &format!(", comment: {}", review.comment),
        ));
    }
    out!("{line}");
    if r.conflicts > 0 {
        out!(
            "{}",
            t(
                &format!(
                    "有 {} 个字段冲突，运行 fieldsync conflicts {}",
                    r.conflicts, r.header.id
                ),
                &format!(
                    "{} fields in conflict: run fieldsync conflicts {}",
                    r.conflicts, r.header.id
                )
            )
        );
    }
    Ok(())
}

/// `fieldsync conflicts`: the fields two people set to different values.
pub(crate) fn conflicts(store: &Store, id: String, json: bool) -> Result<()> {
    let id = find(store, &id)?;
    let conflicts = store.conflicts(id)?;
    if json {
        let v: Vec<serde_json::Value> = conflicts
            .iter()
            .map(|c| serde_json::json!({
                "field": c.field,
                "values": c.values.iter().map(|v| serde_json::json!({"value": v.value.to_json(), "actor": v.actor, "time": v.time})).collect::<Vec<_>>(),
            }))
            .collect();
        return print_json(&serde_json::Value::Array(v));
    }
    if conflicts.is_empty() {
        out!("{}", t("没有冲突", "no conflicts"));
    }
    for c in conflicts {
        out!("{}:", c.field);
        for v in c.values {
            out!(
                "  {}  ({} {})",
                value_text(&v.value),
                t("设备", "device"),
                &v.actor[..8.min(v.actor.len())]
            );
        }
    }
    Ok(())
}

/// Finds a record by full id or by a unique prefix.
pub(crate) fn find(store: &Store, id: &str) -> Result<Uuid> {
    if let Ok(u) = Uuid::parse_str(id) {
        return Ok(u);
    }
    let matches: Vec<Uuid> = store
        .list(&Filter {
            include_deleted: true,
            ..Default::default()
        })?
        .into_iter()
        .map(|r| r.header.id)
        .filter(|u| {
            // v7 ids start with the time, so their ends are what tells them apart.
            let full = u.to_string();
            full.starts_with(id) || full.ends_with(id)
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(anyhow!(StoreError::NotFound(Uuid::nil()))
            .context(format!("{} {id}", t("没有这条记录：", "no record")))),
        _ => Err(user(
            &format!("“{id}”对应多条记录，请多写几位"),
            &format!("{id:?} matches several records; give more of the id"),
        )),
    }
}

fn value_text(v: &FieldValue) -> String {
    match v {
        FieldValue::Str(s) | FieldValue::Text(s) => s.clone(),
        other => other.to_json().to_string(),
    }
}

pub(crate) fn record_json(r: &Record) -> serde_json::Value {
    serde_json::json!({
        "id": r.header.id,
        "kind": r.header.kind,
        "campaign": r.header.campaign,
        "village": r.header.scope,
        "deleted": r.deleted,
        "conflicts": r.conflicts,
        "fields": r.fields.iter().map(|(k, v)| (k.clone(), v.to_json())).collect::<serde_json::Map<_, _>>(),
    })
}

fn summary(r: &Record) -> String {
    let text: String = [
        "notes",
        "text",
        "measure",
        "name",
        "rating",
        "interviewee_name",
    ]
    .iter()
    .find_map(|k| r.fields.get(*k))
    .map(value_text)
    .unwrap_or_default();
    let mut short: String = text.chars().take(24).collect();
    if text.chars().count() > 24 {
        short.push('…');
    }
    short
}

/// `fieldsync attach`: keeps a file with the record, to be uploaded at the next sync.
pub(crate) fn attach(
    store: &mut Store,
    id: String,
    file: std::path::PathBuf,
    field: Option<String>,
    media_type: Option<String>,
    json: bool,
) -> Result<()> {
    let id = find(store, &id)?;
    let record = store.get(id)?;
    let field = match field {
        Some(f) => f,
        None => store
            .template(record.header.campaign)?
            .and_then(|t| {
                t.kind(&record.header.kind)?
                    .fields
                    .iter()
                    .find(|f| f.field_type == fieldsync_protocol::template::FieldType::Attachments)
                    .map(|f| f.name.clone())
            })
            .ok_or_else(|| {
                user(
                    &format!("“{}”表单没有附件字段，不能添加文件", record.header.kind),
                    &format!(
                        "the {} form has no attachments field to add a file to",
                        record.header.kind
                    ),
                )
            })?,
    };
    let bytes = std::fs::read(&file).map_err(|e| {
        user(
            &format!("读不到文件 {}：{e}", file.display()),
            &format!("cannot read {}: {e}", file.display()),
        )
    })?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "attachment".into());
    let r = store.attach(id, &field, &name, media_type.as_deref(), &bytes)?;
    if json {
        return print_json(&serde_json::json!({
            "record": id, "field": field, "sha256": r.sha256, "type": r.media_type,
            "size": r.size, "name": r.name,
        }));
    }
    out!(
        "{}",
        t(
            &format!(
                "已添加附件 {}（{}，{} 字节），下次同步时上传",
                r.name, r.media_type, r.size
            ),
            &format!(
                "attached {} ({}, {} bytes); it is uploaded at the next sync",
                r.name, r.media_type, r.size
            )
        )
    );
    Ok(())
}

/// `fieldsync attachments`: a record's files and where each stands.
pub(crate) fn attachments(
    store: &mut Store,
    id: String,
    save: Option<std::path::PathBuf>,
    json: bool,
) -> Result<()> {
    let id = find(store, &id)?;
    if let Some(dir) = &save {
        save_files(store, id, dir)?;
    }
    let all = store.attachments_of(id)?;
    let waiting: std::collections::HashSet<String> = store
        .attachments_to_upload()?
        .into_iter()
        .map(|a| a.sha256)
        .collect();
    let state = |sha: &str| -> (&str, String) {
        if waiting.contains(sha) {
            ("waiting", t("等待上传", "waiting to upload"))
        } else if store.stored_attachment(sha).ok().flatten().is_some() {
            ("uploaded", t("已上传", "uploaded"))
        } else {
            (
                "on_server",
                t("在服务器上（未下载）", "on the server (not downloaded)"),
            )
        }
    };
    if json {
        return print_json(&serde_json::Value::Array(
            all.iter()
                .map(|r| {
                    serde_json::json!({
                        "sha256": r.sha256, "type": r.media_type, "size": r.size,
                        "name": r.name, "state": state(&r.sha256).0,
                    })
                })
                .collect(),
        ));
    }
    if all.is_empty() {
        out!(
            "{}",
            t("这条记录没有附件", "this record has no attachments")
        );
    }
    for r in &all {
        out!(
            "{}  {}  {}  {}",
            r.name,
            r.media_type,
            r.size,
            state(&r.sha256).1
        );
    }
    Ok(())
}

/// Writes each file of record `id` into `dir` under its own name (cleaned of path parts),
/// fetching from the server those this device does not hold.
fn save_files(store: &mut Store, id: Uuid, dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let files = store.attachments_of(id)?;
    let mut transport = None;
    for f in files {
        let bytes = match store.attachment_bytes(&f.sha256)? {
            Some(b) => b,
            None => {
                if transport.is_none() {
                    let options = super::account::http_options(store)?;
                    transport = Some(fieldsync_client_core::account::transport(store, &options)?);
                }
                let t = transport.as_mut().expect("made above");
                fieldsync_client_core::attachments::download_attachment(store, t, id, &f.sha256)?
            }
        };
        let path = dir.join(fieldsync_protocol::attachment::safe_file_name(&f.name));
        std::fs::write(&path, bytes)?;
        eprintln!(
            "{}",
            t(
                &format!("已保存 {}", path.display()),
                &format!("saved {}", path.display())
            )
        );
    }
    Ok(())
}

/// `fieldsync fetch-files --village CODE`: every file of the village's records onto this device.
pub(crate) fn fetch_files(store: &mut Store, village: &str, json: bool) -> Result<()> {
    let campaign = super::forms::campaign(store)?;
    let options = super::account::http_options(store)?;
    let mut transport = fieldsync_client_core::account::transport(store, &options)?;
    let report = fieldsync_client_core::attachments::fetch_village(
        store,
        &mut transport,
        (campaign, village),
        &mut |done, all| eprint!("\r{done} / {all}"),
    )?;
    eprintln!();
    if json {
        return print_json(&serde_json::json!({
            "fetched": report.fetched, "bytes": report.bytes, "here": report.here,
            "failed": report.failed.iter().map(|(n, e)| serde_json::json!({"name": n, "error": e})).collect::<Vec<_>>(),
        }));
    }
    out!(
        "{}",
        t(
            &format!(
                "已下载 {} 个附件（{} 字节），本机原有 {} 个",
                report.fetched, report.bytes, report.here
            ),
            &format!(
                "{} files downloaded ({} bytes), {} were here already",
                report.fetched, report.bytes, report.here
            )
        )
    );
    for (name, e) in &report.failed {
        out!(
            "{}",
            t(
                &format!("未能下载 {name}：{e}"),
                &format!("could not download {name}: {e}")
            )
        );
    }
    Ok(())
}
