//! The dashboard's record page and conflicts list read as a department user needs them: the
//! value shown is the one preselected, people who may not decide see the values without a form,
//! the list names both values and who wrote them, the history says what changed from what to
//! what (an appended note too) and when the record was created, titles use names, yes/no for
//! booleans.

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_client_core::{FieldValue, Store, SyncOptions, sync::sync};
use fieldsync_protocol::auth::Role;
use uuid::Uuid;

const VILLAGE: &str = "510100001";

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

fn page(server: &TestServer, token: &str, path: &str) -> Result<String> {
    Ok(reqwest::blocking::Client::new()
        .get(format!("{}{path}", server.url()))
        .header("cookie", format!("fieldsync_session={token}"))
        .send()?
        .text()?)
}

#[test]
fn a_conflicted_record_reads_right_for_those_who_decide_and_those_who_do_not() -> Result<()> {
    let server = TestServer::start()?;
    let campaign = Uuid::now_v7();
    let mut one = Store::open_in_memory()?;
    let mut two = Store::open_in_memory()?;
    let mut t1 = server.enroll(&mut one, "张组长", Role::Admin, None)?;
    let mut t2 = server.enroll(&mut two, "李组员", Role::Admin, None)?;
    let place = one.create(
        "place",
        campaign,
        VILLAGE,
        &[("code", s(VILLAGE)), ("name", s("甲村"))],
    )?;
    let id = one.create(
        "meeting",
        campaign,
        VILLAGE,
        &[
            ("topic", s("党员代表座谈会")),
            ("village", s(&place.to_string())),
            ("rating", s("good")),
            ("party_members_present", FieldValue::Bool(true)),
            ("notes", FieldValue::Text("第一段记录".into())),
        ],
    )?;
    sync(&mut one, &mut t1, &SyncOptions::default())?;
    sync(&mut two, &mut t2, &SyncOptions::default())?;
    // Offline on both: two ratings at once; one appends to the note.
    one.set(id, "rating", s("normal"))?;
    two.set(id, "rating", s("poor"))?;
    one.edit(id, |e| e.append_text("notes", "，补充第二段"))?;
    sync(&mut one, &mut t1, &SyncOptions::default())?;
    sync(&mut two, &mut t2, &SyncOptions::default())?;
    server.wait_merged()?;

    let shown = server.get_json(&format!("/v1/records/{id}"))?["fields"]["rating"]
        .as_str()
        .unwrap()
        .to_string();
    let html = page(&server, &server.admin_token, &format!("/ui/r/{id}"))?;
    // The title and the fields.
    assert!(html.contains("<title>meeting · 党员代表座谈会"), "{html}");
    assert!(html.contains("\">是</td>"), "a boolean reads 是: {html}");
    assert!(
        html.contains("有冲突"),
        "the conflicted field is marked: {html}"
    );
    // The preselected value is the one shown above.
    let checked = html
        .split("<input type=\"radio\"")
        .skip(1)
        .find(|part| part.contains(" checked>"))
        .expect("a preselected value");
    assert!(checked.contains(&format!("> {shown} —")), "{checked}");
    // History: from what to what, the appended note, the creation time.
    assert!(html.contains("rating：good → "), "{html}");
    assert!(
        html.contains("notes：第一段记录 → 第一段记录，补充第二段"),
        "{html}"
    );
    let history = &html[html.find("修改记录").expect("a history")..];
    let row = &history[history.find("<tr><td").expect("a row")..];
    let first_row = &row[row.find('>').expect("the row's tag") + 1..];
    let first_row = &first_row[first_row.find('>').expect("the cell's tag") + 1..];
    assert!(
        !first_row.starts_with("</td>"),
        "the creation row has a time: {first_row:.200}"
    );

    // A viewer sees both values and who wrote them, but no form to pick one.
    let mut viewer = Store::open_in_memory()?;
    server.enroll(&mut viewer, "部门同志", Role::Viewer, None)?;
    let token = server.token_for(&viewer)?;
    let html = page(&server, &token, &format!("/ui/r/{id}"))?;
    assert!(!html.contains("type=\"radio\""), "{html}");
    assert!(html.contains("张组长") && html.contains("李组员"), "{html}");

    // The conflicts list names the field, both values and who wrote them.
    let list = page(&server, &token, &format!("/ui/c/{campaign}/conflicts"))?;
    assert!(list.contains("党员代表座谈会"), "by name, not id: {list}");
    assert!(list.contains("normal — 张组长"), "{list}");
    assert!(list.contains("poor — 李组员"), "{list}");
    Ok(())
}
