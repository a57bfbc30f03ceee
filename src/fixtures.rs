//! Small campaigns the dashboard's tests share: one township with two villages, their team
//! members and two work groups, as the department would import them from its spreadsheets; and
//! what the attachment tests share (a template with a files field, bytes that do not compress).

use std::path::Path;

use fieldsync_client_core::{Filter, Record, Store, import::ImportKind};
use fieldsync_protocol::template::Template;
use uuid::Uuid;

/// 青龙社区, in 第一组's care, with members 李一 and 周二.
pub const A1: &str = "510100001001";
/// 花溪山村, in 第二组's care, with member 吴三.
pub const B1: &str = "510100001002";

/// A department store in `dir` with a `midterm` campaign named `name`: district 510100,
/// township 城关镇, villages [`A1`] and [`B1`], their members and the two work groups. Nothing
/// is synced yet.
pub fn two_villages(dir: &Path, name: &str) -> anyhow::Result<(Store, Uuid)> {
    let mut d = Store::open(dir.join("department.sqlite3"))?;
    let c = Uuid::now_v7();
    d.create_campaign(
        c,
        name,
        &Template::builtin("midterm").expect("the built-in template"),
        2026,
    )?;
    d.import_csv(
        c,
        ImportKind::Places,
        format!(
            "代码,名称,层级,上级代码\n510100,示范区,区,\n510100001,城关镇,乡镇,510100\n\
             {A1},青龙社区,社区,510100001\n{B1},花溪山村,村,510100001\n"
        )
        .as_bytes(),
    )?;
    d.import_csv(
        c,
        ImportKind::Members,
        format!("村代码,姓名,职务,性别\n{A1},李一,书记,男\n{A1},周二,委员,女\n{B1},吴三,书记,男\n")
            .as_bytes(),
    )?;
    d.import_csv(
        c,
        ImportKind::WorkGroups,
        format!("名称,组长,成员,负责村\n第一组,王组长,赵,{A1}\n第二组,钱组长,孙,{B1}\n").as_bytes(),
    )?;
    Ok((d, c))
}

/// The records of `kind` in `store`.
pub fn records(store: &Store, kind: &str) -> anyhow::Result<Vec<Record>> {
    Ok(store.list(&Filter {
        kind: Some(kind.into()),
        ..Default::default()
    })?)
}

/// The id of the work group named `name`.
pub fn group(store: &Store, name: &str) -> anyhow::Result<Uuid> {
    records(store, "work_group")?
        .into_iter()
        .find(|g| {
            g.fields.get("name") == Some(&fieldsync_client_core::FieldValue::Str(name.into()))
        })
        .map(|g| g.header.id)
        .ok_or_else(|| anyhow::anyhow!("no work group {name}"))
}

/// A template with one form, a document review (`visit`), whose `photos` field takes pictures
/// and recordings of up to 30 MB: what the attachment tests record.
pub const ATTACHMENT_TEMPLATE: &str = r#"
id = "photos"
version = 1
name.zh = "附件测试"
name.en = "Attachment test"
[kinds.visit]
label = { zh = "查阅资料", en = "Document review" }
[[kinds.visit.fields]]
name = "what"
type = "text"
label = { zh = "资料", en = "Document" }
[[kinds.visit.fields]]
name = "photos"
type = "attachments"
accept = ["image/*", "audio/*"]
max_bytes = 30000000
label = { zh = "照片和录音", en = "Photos and recordings" }
"#;

/// `len` bytes that do not compress (a photo's would not either), the same for the same `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
