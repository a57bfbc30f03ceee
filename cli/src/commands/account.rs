//! The device and its account: `init`, `enroll`, `whoami`, `status`; the device's TLS settings
//! and its campaign taken from its scope.

use anyhow::{Context, Result};
use fieldsync_client_core::{Filter, HttpOptions, HttpTransport, Store, account};
use fieldsync_protocol::auth::WireScope;
use uuid::Uuid;

use crate::output::{print_json, t};

/// `fieldsync init`: sets the server and the campaign, then shows the status.
pub(crate) fn init(
    store: &mut Store,
    server: Option<String>,
    campaign: Option<Uuid>,
    json: bool,
) -> Result<()> {
    if let Some(s) = server {
        HttpTransport::new(&s)?; // refuse a bad or insecure address now
        store.set_setting("server", &s)?;
    }
    if let Some(c) = campaign {
        store.set_setting("campaign", &c.to_string())?;
    }
    status(store, json)
}

/// What `fieldsync enroll` was given.
pub(crate) struct Enrolment {
    /// The server's address.
    pub(crate) server: String,
    /// The one-time code.
    pub(crate) code: String,
    /// The device's name.
    pub(crate) name: String,
    /// A certificate to trust.
    pub(crate) ca_cert: Option<std::path::PathBuf>,
    /// Plain http to another machine allowed.
    pub(crate) insecure_http: bool,
    /// Sync once right after (the default).
    pub(crate) sync: bool,
}

/// `fieldsync enroll`: a one-time code becomes this device's token; the campaign follows
/// from the scope; then one sync downloads the campaign (unless `--no-sync`).
pub(crate) fn enroll(store: &mut Store, e: Enrolment, json: bool) -> Result<()> {
    let Enrolment {
        server,
        code,
        name,
        ca_cert,
        insecure_http,
        sync,
    } = e;
    if let Some(path) = &ca_cert {
        store.set_setting("ca_cert", &path.display().to_string())?;
    }
    if insecure_http {
        store.set_setting("insecure_http", "true")?;
    }
    let options = http_options(store)?;
    let e = account::enroll(store, &server, &code, &name, &options)?;
    store.set_setting("server", &server)?;
    store.set_setting("person", &e.person.name)?;
    store.set_setting("role", e.person.role.as_str())?;
    // A work group's device works in its group's campaign: set it now.
    if let Ok(me) = account::whoami(store, &options) {
        store.apply_scope(&me.scope)?;
        campaign_from_scope(store)?;
    }
    // Then one sync at once: the campaign's templates and the villages' reference data arrive,
    // so that the device records offline from now on. A failure loses nothing: said, not fatal.
    let first = if sync {
        account::transport(store, &options)
            .map_err(anyhow::Error::from)
            .and_then(|mut t| {
                fieldsync_client_core::sync::sync(
                    store,
                    &mut t,
                    &fieldsync_client_core::SyncOptions::default(),
                )
                .map_err(anyhow::Error::from)
            })
            .map(Some)
    } else {
        Ok(None)
    };
    if first.is_ok() {
        campaign_from_scope(store)?;
    }
    if json {
        return print_json(&serde_json::json!({
            "device": e.device, "person": e.person, "server": server,
            "first_sync": match &first {
                Ok(None) => serde_json::Value::Null,
                Ok(Some(r)) => serde_json::json!({ "received": r.received }),
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            },
        }));
    }
    out!(
        "{}",
        t(
            &format!(
                "登记成功：本机属于 {}（{}），服务器 {server}",
                e.person.name,
                e.person.role.zh()
            ),
            &format!(
                "enrolled: this device belongs to {} ({}), server {server}",
                e.person.name, e.person.role
            )
        )
    );
    match first {
        Ok(None) => {}
        Ok(Some(r)) => out!(
            "{}",
            t(
                &format!(
                    "已从服务器下载 {} 项（模板和基础数据），可以离线记录了",
                    r.received
                ),
                &format!(
                    "downloaded {} changes (templates and reference data): this device records offline now",
                    r.received
                )
            )
        ),
        Err(e) => eprintln!(
            "{}",
            t(
                &format!(
                    "首次同步没有完成（{e}）：登记已保存，什么也没有丢；有网络时运行 fieldsync sync"
                ),
                &format!(
                    "the first sync did not finish ({e}): the enrollment is kept and nothing is lost; run fieldsync sync when the network is back"
                )
            )
        ),
    }
    Ok(())
}

/// `fieldsync whoami`: who this device belongs to and what it may see, from the server.
pub(crate) fn whoami(store: &mut Store, json: bool) -> Result<()> {
    let me = account::whoami(store, &http_options(store)?)?;
    store.apply_scope(&me.scope)?;
    if json {
        return print_json(&serde_json::to_value(&me)?);
    }
    out!("{}：{}", t("本机", "device"), me.device);
    out!(
        "{}：{}（{}）",
        t("使用人", "person"),
        me.person.name,
        t(me.person.role.zh(), me.person.role.as_str())
    );
    out!("{}：{}", t("范围", "scope"), scope_text(&me.scope));
    Ok(())
}

/// TLS and plain-http settings of this device.
pub(crate) fn http_options(store: &Store) -> Result<HttpOptions> {
    let mut options = HttpOptions {
        allow_plain_http: store.setting("insecure_http")?.as_deref() == Some("true"),
        ..Default::default()
    };
    if let Some(path) = store.setting("ca_cert")? {
        let pem = std::fs::read(&path).with_context(|| {
            t(
                &format!("无法读取证书文件 {path}"),
                &format!("cannot read the certificate {path}"),
            )
        })?;
        options.root_certificates.push(pem);
    }
    Ok(options)
}

/// Sets the campaign from the device's scope when none is set and the scope names one.
pub(crate) fn campaign_from_scope(store: &mut Store) -> Result<()> {
    if store.setting("campaign")?.is_some() {
        return Ok(());
    }
    if let Some(c) = store.scope()?.and_then(|s| s.campaign) {
        store.set_setting("campaign", &c)?;
        return Ok(());
    }
    // A device that sees every campaign works in the only one it holds, if there is one.
    let campaigns = store.list(&fieldsync_client_core::Filter {
        kind: Some("campaign".into()),
        ..Default::default()
    })?;
    if let [only] = campaigns.as_slice() {
        store.set_setting("campaign", &only.header.campaign.to_string())?;
    }
    Ok(())
}

fn scope_text(scope: &WireScope) -> String {
    if scope.all {
        return t("全部记录", "every record");
    }
    match &scope.campaign {
        None => t(
            "尚未分配工作组，看不到任何村的记录",
            "no work group assigned yet: no village's records",
        ),
        Some(c) => format!(
            "{} {c}，{}：{}{}",
            t("工作任务", "campaign"),
            t("村（社区）", "places"),
            scope.places.join("、"),
            if scope.write {
                String::new()
            } else {
                t("（只读）", " (read only)")
            }
        ),
    }
}

/// `fieldsync status`: who and what this device is, what waits to upload.
pub(crate) fn status(store: &Store, json: bool) -> Result<()> {
    let server = store.setting("server")?;
    let campaign = store.setting("campaign")?;
    let pending = store.pending_upload()?;
    let last = store.last_sync_at()?;
    let conflicted = store
        .list(&Filter {
            conflicted: true,
            ..Default::default()
        })?
        .len();
    let new_template = match campaign.as_deref().and_then(|c| Uuid::parse_str(c).ok()) {
        Some(c) => store.new_template_version(c).unwrap_or(None),
        None => None,
    };
    let enrolled = store.credentials()?.is_some();
    let person = store.setting("person")?;
    let scope = store.scope()?;
    let held = store.held_changes()?;
    if json {
        return print_json(&serde_json::json!({
            "device": store.device_id(), "actor": store.actor().to_hex_string(),
            "enrolled": enrolled, "person": person, "role": store.setting("role")?,
            "scope": scope, "held_changes": held,
            "server": server, "campaign": campaign, "records": store.count()?,
            "pending_upload": pending, "waiting_for_dependencies": store.waiting_for_dependencies()?,
            "last_sync_ms": last, "conflicted_records": conflicted, "new_template_version": new_template,
        }));
    }
    let none = t("未设置", "not set");
    out!("{}：{}", t("本机", "device"), store.device_id());
    out!(
        "{}：{}",
        t("服务器", "server"),
        server.unwrap_or(none.clone())
    );
    out!(
        "{}：{}",
        t("登记", "enrolled"),
        match (&person, enrolled) {
            (Some(p), true) => p.clone(),
            _ => t(
                "未登记（fieldsync enroll --server <地址> --code <登记码>）",
                "no (fieldsync enroll --server <address> --code <code>)",
            ),
        }
    );
    if let Some(scope) = &scope {
        out!("{}：{}", t("范围", "scope"), scope_text(scope));
    }
    out!(
        "{}：{}",
        t("工作任务", "campaign"),
        campaign.unwrap_or(none)
    );
    if held > 0 {
        out!(
            "{}",
            t(
                &format!(
                    "{held} 条更改属于已不再分配给本机的村，保留在本机未上传；可用 fieldsync bundle export 交给负责的同志"
                ),
                &format!(
                    "{held} changes belong to villages no longer assigned to this device; they are kept here, not uploaded: hand them over with fieldsync bundle export"
                )
            )
        );
    }
    out!("{}：{}", t("记录", "records"), store.count()?);
    out!(
        "{}：{pending}",
        t("待上传更改", "changes waiting to upload")
    );
    out!(
        "{}：{}",
        t("上次同步", "last sync"),
        last.map(|ms| {
            let s = (now_ms() - ms) / 1000;
            t(&format!("{s} 秒前"), &format!("{s} s ago"))
        })
        .unwrap_or_else(|| t("从未", "never"))
    );
    if conflicted > 0 {
        out!("{}：{conflicted}", t("有冲突的记录", "records in conflict"));
    }
    if let Some(v) = new_template {
        out!(
            "{}",
            t(
                &format!("表单已更新到第 {v} 版"),
                &format!("the forms were updated to version {v}")
            )
        );
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
