//! A field worker's day in the app, over a real app on 127.0.0.1:0 and a store in a temp dir:
//! the home page, an interview with a long Chinese note, a questionnaire with a wrong answer
//! then corrected, an evaluation grid, save-and-new, a draft, a conflict, a sync with a real
//! server, a deletion reaching the server and another device, a returned record and its fix,
//! and enrollment with a wrong, a used and an expired code (each said in its own words).

mod common;

use anyhow::{Context, Result};
use common::{A1, App};
use fieldsync::TestServer;
use fieldsync_client_core::bundle::Export;
use fieldsync_client_core::{FieldValue, Filter, Store, SyncOptions, sync::sync};
use fieldsync_protocol::auth::Role;

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

#[test]
fn home_lists_the_villages_with_their_counts() -> Result<()> {
    let app = App::start()?;
    let home = app.page("/")?;
    assert!(home.contains("应用测试届中分析"), "{home}");
    assert!(home.contains("甲村") && home.contains("乙村"));
    assert!(home.contains(&format!("href=\"/v/{A1}\"")));
    // 甲村 has two members, 乙村 one.
    let a = &home[home.find("甲村").context("甲村")?..home.find("乙村").context("乙村")?];
    assert!(a.contains("已谈话班子成员 <b>0 / 2</b>"), "{a}");
    assert!(a.contains("整改 未完成 <b>0</b>"), "{a}");
    assert!(a.contains("班子分析研判："), "{a}");
    assert!(home.contains("id=\"pending\">"));
    let en = app.page("/lang/en")?;
    assert!(
        en.contains("Villages") && en.contains("Members interviewed <b>0 / 2</b>"),
        "{en}"
    );
    Ok(())
}

#[test]
fn an_interview_with_a_long_chinese_note_reads_back_in_the_store() -> Result<()> {
    let app = App::start()?;
    let note: String = "村集体经济收入不高，群众希望发展产业项目。"
        .chars()
        .cycle()
        .take(500)
        .collect();
    let zhang = app.member("张一")?.to_string();
    let r = app.post(
        &format!("/v/{A1}/k/interview/new"),
        &[
            ("f.date", "2026-05-18"),
            ("f.interviewer", "王组长、赵干事"),
            ("f.interviewee_type", "member"),
            ("f.interviewee", &zhang),
            ("f.notes", &note),
            ("action", "save"),
        ],
    )?;
    assert_eq!(r.status(), 200);
    let url = r.url().path().to_string();
    let page = r.text()?;
    assert!(url.starts_with("/r/"), "{url}");
    assert!(
        page.contains(&note) && page.contains("张一"),
        "names, not ids: {page}"
    );
    let list = app.records("interview")?;
    assert_eq!(list.len(), 1);
    let r = &list[0];
    assert_eq!(r.header.scope, A1);
    assert_eq!(r.fields["notes"], FieldValue::Text(note.clone()));
    assert_eq!(r.fields["interviewee"], s(&zhang));
    assert_eq!(format!("/r/{}", r.header.id), url);
    let listed = app.page(&format!("/v/{A1}/k/interview"))?;
    assert!(listed.contains(&url));
    Ok(())
}

#[test]
fn a_wrong_answer_is_shown_at_its_field_and_nothing_is_saved_until_corrected() -> Result<()> {
    let app = App::start()?;
    let form = app.page(&format!("/v/{A1}/k/questionnaire/new"))?;
    let tpl = fieldsync_protocol::template::Template::builtin("midterm").context("midterm")?;
    let kind = tpl.kind("questionnaire").context("questionnaire")?;
    let mut answers: Vec<(String, String)> = Vec::new();
    for f in kind.fields.iter().filter(|f| f.required) {
        assert!(
            form.contains(&format!("name=\"f.{}\"", f.name)),
            "{}",
            f.name
        );
        answers.push((format!("f.{}", f.name), f.choices[0].value.clone()));
    }
    let wrong = answers.clone().into_iter().map(|(k, v)| {
        if k == "f.q_team_unity" {
            (k, "maybe".to_string())
        } else {
            (k, v)
        }
    });
    let mut body: Vec<(String, String)> = wrong.collect();
    body.retain(|(k, _)| k != "f.q_overall");
    body.push(("f.suggestions".into(), "希望多开会".into()));
    let refs: Vec<(&str, &str)> = body.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = app.post(&format!("/v/{A1}/k/questionnaire/new"), &refs)?;
    assert_eq!(r.status(), 422);
    let page = r.text()?;
    let at = |field: &str| -> Result<String> {
        let start = page
            .find(&format!("id=\"at-{field}\""))
            .with_context(|| field.to_string())?;
        let rest = &page[start..];
        let end = rest[1..].find("id=\"at-").map_or(rest.len(), |e| e + 1);
        Ok(rest[..end].to_string())
    };
    let unity = at("q_team_unity")?;
    assert!(unity.contains("不是可选项"), "{unity}");
    let overall = at("q_overall")?;
    assert!(overall.contains("为必填项"), "{overall}");
    assert!(
        !overall.contains("（q_overall）"),
        "the field's internal name shown to the cadre: {overall}"
    );
    assert!(!at("q_integrity")?.contains("problem"));
    assert!(page.contains("有 2 处需要修改，未保存"));
    assert!(page.contains("希望多开会"), "typed values stay");
    assert!(app.records("questionnaire")?.is_empty(), "nothing saved");

    let refs: Vec<(&str, &str)> = answers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = app.post(&format!("/v/{A1}/k/questionnaire/new"), &refs)?;
    assert_eq!(r.status(), 200);
    assert!(r.url().path().starts_with("/r/"));
    let saved = app.records("questionnaire")?;
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].fields["q_team_unity"], s("united"));
    Ok(())
}

#[test]
fn an_evaluation_is_a_grid_of_the_villages_members() -> Result<()> {
    let app = App::start()?;
    let (zhang, wang, li) = (
        app.member("张一")?,
        app.member("王二")?,
        app.member("李三")?,
    );
    let form = app.page(&format!("/v/{A1}/k/evaluation/new"))?;
    assert!(form.contains("<table class=\"grid\""));
    assert!(form.contains("张一") && form.contains("王二"));
    assert!(
        !form.contains("李三"),
        "a member of another village is not rated here"
    );
    assert!(form.contains(&format!("name=\"f.member_ratings.{zhang}\"")));
    let (rz, rw) = (
        format!("f.member_ratings.{zhang}"),
        format!("f.member_ratings.{wang}"),
    );
    let r = app.post(
        &format!("/v/{A1}/k/evaluation/new"),
        &[
            ("f.respondent_category", "party_member"),
            ("f.team_rating", "satisfied"),
            (&rz, "satisfied"),
            (&rw, "unsatisfied"),
            ("action", "save"),
        ],
    )?;
    assert_eq!(r.status(), 200);
    let page = r.text()?;
    assert!(
        page.contains("张一：满意") && page.contains("王二：不满意"),
        "{page}"
    );
    let e = &app.records("evaluation")?[0];
    let FieldValue::Map(m) = &e.fields["member_ratings"] else {
        panic!("{:?}", e.fields)
    };
    assert_eq!(m.len(), 2);
    assert_eq!(m[&zhang.to_string()], "satisfied");
    assert_eq!(m[&wang.to_string()], "unsatisfied");
    assert!(!m.contains_key(&li.to_string()));
    Ok(())
}

#[test]
fn save_and_new_three_times_gives_three_records_and_keeps_the_category() -> Result<()> {
    let app = App::start()?;
    let tpl = fieldsync_protocol::template::Template::builtin("midterm").context("midterm")?;
    let kind = tpl.kind("questionnaire").context("questionnaire")?;
    let path = format!("/v/{A1}/k/questionnaire/new");
    let mut last = String::new();
    for i in 0..3 {
        let mut body: Vec<(String, String)> = kind
            .fields
            .iter()
            .filter(|f| f.required && f.name != "respondent_category")
            .map(|f| {
                (
                    format!("f.{}", f.name),
                    f.choices[i % f.choices.len()].value.clone(),
                )
            })
            .collect();
        body.push(("f.respondent_category".into(), "villager".into()));
        body.push(("action".into(), "save_new".into()));
        body.push(("saved".into(), i.to_string()));
        let refs: Vec<(&str, &str)> = body.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = app.post(&path, &refs)?;
        assert_eq!(r.status(), 200);
        assert_eq!(r.url().path(), path);
        last = r.text()?;
        assert!(
            last.contains(&format!("本次共录入 <b>{}</b>", i + 1)),
            "count after {}: {last}",
            i + 1
        );
    }
    assert_eq!(app.records("questionnaire")?.len(), 3);
    assert!(
        last.contains(r#"value="villager" checked"#),
        "category kept"
    );
    assert!(
        !last.contains(r#"name="f.q_team_unity" value="united" checked"#),
        "answers cleared"
    );
    Ok(())
}

#[test]
fn a_draft_survives_a_closed_tab_and_is_never_a_record() -> Result<()> {
    let app = App::start()?;
    let before = app.store()?.pending_upload()?;
    let path = format!("/v/{A1}/k/interview/new");
    let r = app.post(
        &path,
        &[
            ("f.interviewer", "王组长"),
            ("f.notes", "谈到一半，明天继续"),
            ("action", "draft"),
        ],
    )?;
    assert_eq!(r.status(), 200);
    assert!(r.text()?.contains("草稿已暂存"));
    // A new tab (a new client with the same cookie: the app does not care which tab).
    let fresh = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .build()?;
    fresh.get(app.launch_url()).send()?;
    let form = fresh.get(app.url(&path)).send()?.text()?;
    assert!(form.contains("谈到一半，明天继续") && form.contains("value=\"王组长\""));
    assert!(form.contains("已恢复上次未完成的草稿"));
    assert!(app.records("interview")?.is_empty());
    assert_eq!(
        app.store()?.pending_upload()?,
        before,
        "a draft does not sync"
    );
    // Saved: the draft is gone.
    app.post(
        &path,
        &[
            ("f.date", "2026-05-19"),
            ("f.interviewer", "王组长"),
            ("f.interviewee_type", "party_member"),
            ("f.notes", "谈完了"),
            ("action", "save"),
        ],
    )?;
    assert_eq!(app.records("interview")?.len(), 1);
    assert!(!app.page(&path)?.contains("谈到一半"));
    Ok(())
}

#[test]
fn a_conflict_shows_both_values_and_one_is_kept() -> Result<()> {
    let mut id = None;
    let app = App::start_with(|store, campaign| {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("date".to_string(), s("2026-05-18"));
        fields.insert("interviewer".to_string(), s("王"));
        fields.insert("interviewee_type".to_string(), s("other"));
        fields.insert("notes".to_string(), FieldValue::Text("记录".into()));
        let rid = store.create_form(campaign, "interview", A1, &fields)?;
        let mut other = Store::open_in_memory()?;
        other.import_bundle(&store.export_bundle(&Export::All)?.0)?;
        store.set(rid, "interviewer", s("王甲"))?;
        other.set(rid, "interviewer", s("王乙"))?;
        store.import_bundle(&other.export_bundle(&Export::All)?.0)?;
        assert_eq!(store.conflicts(rid)?.len(), 1);
        id = Some(rid);
        Ok(())
    })?;
    let id = id.context("record")?;
    let page = app.page("/conflicts")?;
    assert!(page.contains("王甲") && page.contains("王乙"), "{page}");
    let values = app.store()?.conflicts(id)?.remove(0).values;
    let keep = values
        .iter()
        .position(|v| v.value == s("王乙"))
        .context("王乙")?;
    let r = app.post(
        &format!("/r/{id}/resolve"),
        &[("field", "interviewer"), ("index", &keep.to_string())],
    )?;
    assert_eq!(r.status(), 200);
    let page = r.text()?;
    assert!(
        page.contains("冲突已解决") && page.contains("没有待处理的冲突"),
        "{page}"
    );
    let store = app.store()?;
    assert!(store.conflicts(id)?.is_empty());
    assert_eq!(store.get(id)?.fields["interviewer"], s("王乙"));
    Ok(())
}

#[test]
fn sync_moves_the_records_to_a_real_server_and_says_so() -> Result<()> {
    let server = TestServer::start()?;
    let app = App::start_with(|store, _| {
        server.enroll(store, "外业测试", Role::Admin, None)?;
        Ok(())
    })?;
    app.post(
        &format!("/v/{A1}/k/interview/new"),
        &[
            ("f.date", "2026-05-18"),
            ("f.interviewer", "王组长"),
            ("f.interviewee_type", "other"),
            ("f.notes", "同步测试谈话"),
            ("action", "save"),
        ],
    )?;
    let pending = app.store()?.pending_upload()?;
    assert!(pending > 0);
    let home = app.sync()?;
    assert!(home.contains(&format!("已上传 {pending} 条修改")), "{home}");
    assert_eq!(app.store()?.pending_upload()?, 0);
    server.wait_merged()?;
    // Another device receives the interview.
    let mut other = Store::open_in_memory()?;
    let mut t = server.connect(&other)?;
    sync(&mut other, &mut t, &SyncOptions::default())?;
    let got = other.list(&Filter {
        kind: Some("interview".into()),
        ..Default::default()
    })?;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].fields["notes"],
        FieldValue::Text("同步测试谈话".into())
    );

    // The server gone: an honest offline message, nothing lost.
    drop(server);
    app.post(
        &format!("/r/{}/edit", got[0].header.id),
        &[
            ("f.date", "2026-05-18"),
            ("f.interviewer", "王组长"),
            ("f.interviewee_type", "other"),
            ("f.notes", "同步测试谈话，补充"),
        ],
    )?;
    let home = app.sync()?;
    assert!(home.contains("离线，稍后再试，数据未丢失"), "{home}");
    assert!(app.store()?.pending_upload()? > 0);
    Ok(())
}

#[test]
fn a_deletion_in_the_app_syncs_to_the_server_and_another_device() -> Result<()> {
    let server = TestServer::start()?;
    let app = App::start_with(|store, _| {
        server.enroll(store, "外业测试", Role::Admin, None)?;
        Ok(())
    })?;
    let r = app.post(
        &format!("/v/{A1}/k/interview/new"),
        &[
            ("f.date", "2026-05-18"),
            ("f.interviewer", "王组长"),
            ("f.interviewee_type", "other"),
            ("f.notes", "录错了村的谈话"),
            ("action", "save"),
        ],
    )?;
    assert_eq!(r.status(), 200);
    let id = app.records("interview")?[0].header.id;
    app.sync()?;
    server.wait_merged()?;
    assert_eq!(
        server.get_json(&format!("/v1/records/{id}"))?["deleted"],
        false
    );
    let tallies = format!("/v1/campaigns/{}/tallies", app.campaign);
    assert_eq!(server.get_json(&tallies)?["interviews"], 1);
    let mut other = Store::open_in_memory()?;
    let mut t = server.connect(&other)?;
    sync(&mut other, &mut t, &SyncOptions::default())?;
    assert!(!other.get(id)?.deleted);

    let r = app.post(&format!("/r/{id}/delete"), &[])?;
    assert!(r.text()?.contains("已删除"));
    assert_eq!(
        app.store()?.pending_upload()?,
        1,
        "the deletion waits to upload"
    );
    let home = app.sync()?;
    assert!(home.contains("已上传 1 条修改"), "{home}");
    assert_eq!(app.store()?.pending_upload()?, 0);
    server.wait_merged()?;
    let merged = server.get_json(&format!("/v1/records/{id}"))?;
    assert_eq!(merged["deleted"], true, "{merged}");
    let counted = server.get_json(&tallies)?;
    assert_eq!(
        counted["interviews"], 0,
        "the department no longer counts it"
    );
    sync(&mut other, &mut t, &SyncOptions::default())?;
    assert!(
        other.get(id)?.deleted,
        "the other device has it deleted too"
    );
    Ok(())
}

#[test]
fn lists_are_newest_first_and_records_are_edited_and_deleted() -> Result<()> {
    let app = App::start()?;
    let path = format!("/v/{A1}/k/interview/new");
    for who in ["第一位", "第二位"] {
        let r = app.post(
            &path,
            &[
                ("f.date", "2026-05-18"),
                ("f.interviewer", "王组长"),
                ("f.interviewee_type", "other"),
                ("f.interviewee_name", who),
                ("f.interviewee_position", "退休教师"),
                ("f.notes", "记录"),
                ("action", "save"),
            ],
        )?;
        assert_eq!(r.status(), 200);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let list = app.page(&format!("/v/{A1}/k/interview"))?;
    let (a, b) = (list.find("第二位"), list.find("第一位"));
    assert!(a.is_some() && a < b, "newest first: {list}");
    let found = app.page(&format!("/v/{A1}/k/interview?q=第二"))?;
    assert!(found.contains("第二位") && !found.contains("第一位"));

    let id = app.records("interview")?[0].header.id;
    let edit = app.page(&format!("/r/{id}/edit"))?;
    assert!(edit.contains("value=\"退休教师\""), "the form is filled in");
    let wrong = app.post(
        &format!("/r/{id}/edit"),
        &[
            ("f.date", "5月18日"),
            ("f.interviewer", "李组长"),
            ("f.interviewee_type", "other"),
            ("f.notes", "记录"),
        ],
    )?;
    assert_eq!(wrong.status(), 422);
    assert!(wrong.text()?.contains("年-月-日"));
    assert_eq!(
        app.store()?.get(id)?.fields["interviewer"],
        s("王组长"),
        "nothing saved"
    );
    let r = app.post(
        &format!("/r/{id}/edit"),
        &[
            ("f.date", "2026-05-19"),
            ("f.interviewer", "李组长"),
            ("f.interviewee_type", "other"),
            ("f.interviewee_name", "第二位"),
            ("f.notes", "记录，已补充"),
        ],
    )?;
    assert_eq!(r.status(), 200);
    let rec = app.store()?.get(id)?;
    assert_eq!(rec.fields["interviewer"], s("李组长"));
    assert!(
        !rec.fields.contains_key("interviewee_position"),
        "an emptied field is cleared"
    );
    // The record's page tells its history: what changed from what to what, written here.
    let page = app.page(&format!("/r/{id}"))?;
    let history = &page[page.find("修改记录（").expect("a history")..];
    assert!(history.starts_with("修改记录（3 次）"), "{history:.300}");
    assert!(history.contains("谈话人：王组长 → 李组长"), "{history}");
    assert!(
        history.contains("谈话记录：记录 → 记录，已补充"),
        "{history}"
    );
    assert!(
        history.contains("本机") && history.contains("（记录建立）"),
        "{history}"
    );
    // Newest first: the edit before the creation.
    assert!(
        history.find("李组长") < history.find("（记录建立）"),
        "{history}"
    );

    let confirm = app.page(&format!("/r/{id}/delete"))?;
    assert!(confirm.contains("删除这条记录？"));
    assert!(app.store()?.exists(id)?, "asking deletes nothing");
    let r = app.post(&format!("/r/{id}/delete"), &[])?;
    assert_eq!(r.status(), 200);
    assert!(r.text()?.contains("已删除"));
    assert!(app.store()?.get(id)?.deleted);
    assert_eq!(app.records("interview")?.len(), 1);
    Ok(())
}

#[test]
fn first_start_enrolls_with_a_code_and_downloads_the_campaign() -> Result<()> {
    let server = TestServer::start()?;
    // The department's device: the campaign and its villages, on the server.
    let mut admin = Store::open_in_memory()?;
    common::seed(&mut admin)?;
    let mut t = server.connect(&admin)?;
    sync(&mut admin, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;

    let app = App::start_empty()?;
    let home = app.page("/")?;
    assert!(home.contains("href=\"/enroll\""), "{home}");
    let r = app.post(
        "/enroll",
        &[
            ("server", &server.url()),
            ("code", "AAAA-BBBB-CCCC"),
            ("name", "测试平板"),
        ],
    )?;
    assert_eq!(r.status(), 422);
    let page = r.text()?;
    assert!(page.contains("登记码不正确：请核对后重新输入"), "{page}");
    assert!(page.contains("AAAA-BBBB-CCCC"), "what was typed stays");
    assert!(app.store()?.credentials()?.is_none());

    let r = app.post(
        "/enroll",
        &[("server", "http://127.0.0.1:9"), ("code", "AAAA-BBBB-CCCC")],
    )?;
    assert!(r.text()?.contains("无法连接服务器"));

    let person = server.add_person("外业人员", Role::Admin, None)?;
    let code = server.code_for(person)?;
    let r = app.post(
        "/enroll",
        &[
            ("server", &server.url()),
            ("code", &code),
            ("name", "测试平板"),
        ],
    )?;
    assert_eq!(r.status(), 200);
    let home = r.text()?;
    assert!(
        home.contains("本机已登记") && home.contains("已下载"),
        "{home}"
    );
    assert!(
        home.contains("甲村") && home.contains("应用测试届中分析"),
        "{home}"
    );
    assert!(app.store()?.credentials()?.is_some());
    Ok(())
}

#[test]
fn a_used_code_and_an_expired_code_are_each_said_at_enrollment() -> Result<()> {
    let server = TestServer::start()?;
    let person = server.add_person("外业人员", Role::Worker, None)?;
    let used = server.code_for(person)?;
    let mut elsewhere = Store::open_in_memory()?;
    fieldsync_client_core::account::enroll(
        &mut elsewhere,
        &server.url(),
        &used,
        "另一台",
        &Default::default(),
    )?;
    // An expired code, issued straight into the server's storage already past its time.
    let expired = "ZZZZ-ZZZZ-ZZZZ";
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let storage = fieldsync_server::open_storage(server.data_dir()).await?;
            storage
                .issue_code(person, fieldsync_protocol::auth::code_hash(expired), 1)
                .await?;
            storage.close().await;
            anyhow::Ok(())
        })?;

    let app = App::start_empty()?;
    let enroll = |code: &str| -> Result<String> {
        let r = app.post("/enroll", &[("server", &server.url()), ("code", code)])?;
        assert_eq!(r.status(), 422);
        Ok(r.text()?)
    };
    let page = enroll(&used)?;
    assert!(
        page.contains("这个登记码已经用过：每个登记码只能登记一台设备。请向管理员索取新的登记码"),
        "{page}"
    );
    assert!(!page.contains("已过期"), "{page}");
    let page = enroll(expired)?;
    assert!(
        page.contains(
            "这个登记码已过期：登记码只在发出后的一段时间内有效。请向管理员索取新的登记码"
        ),
        "{page}"
    );
    assert!(!page.contains("已经用过"), "{page}");
    assert!(page.contains(expired), "what was typed stays");
    app.page("/lang/en")?;
    assert!(
        enroll(&used)?.contains("this code has already been used: each code enrolls one device")
    );
    assert!(enroll(expired)?.contains("this code has expired"));
    assert!(app.store()?.credentials()?.is_none(), "not enrolled");
    Ok(())
}

#[test]
fn what_people_type_is_shown_as_text_never_as_markup() -> Result<()> {
    let app = App::start()?;
    let evil = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let r = app.post(
        &format!("/v/{A1}/k/interview/new"),
        &[
            ("f.date", "2026-05-18"),
            ("f.interviewer", evil),
            ("f.interviewee_type", "other"),
            ("f.notes", evil),
            ("action", "save"),
        ],
    )?;
    let page = r.text()?;
    assert!(
        !page.contains("<script>alert") && !page.contains("<img src=x"),
        "{page}"
    );
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let list = app.page(&format!("/v/{A1}/k/interview"))?;
    assert!(!list.contains("<script>alert"));
    Ok(())
}

#[test]
fn the_template_notice_goes_once_seen() -> Result<()> {
    let app = App::start()?;
    let home = app.page("/")?;
    assert!(home.contains("id=\"template-notice\""), "{home}");
    let r = app.post("/template/seen", &[("version", "1")])?;
    assert_eq!(r.status(), 200);
    assert!(!r.text()?.contains("template-notice"));
    assert_eq!(app.store()?.new_template_version(app.campaign)?, None);
    Ok(())
}

#[test]
fn a_returned_record_shows_the_reviewers_comment_and_an_edit_sends_it_back() -> Result<()> {
    use fieldsync_protocol::approval::{self, State};
    let mut id = None;
    let app = App::start_with(|store, campaign| {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("date".to_string(), s("2026-05-18"));
        fields.insert("interviewer".to_string(), s("王"));
        fields.insert("interviewee_type".to_string(), s("other"));
        fields.insert("notes".to_string(), FieldValue::Text("记录".into()));
        let rid = store.create_form(campaign, "interview", A1, &fields)?;
        // What a reviewer's change brings in a sync.
        for (field, value) in approval::decision(State::Returned, "请补充谈话对象姓名", "张组长", 1)
        {
            store.set(rid, &field, value)?;
        }
        id = Some(rid);
        Ok(())
    })?;
    let id = id.context("record")?;
    let page = app.page(&format!("/r/{id}"))?;
    assert!(
        page.contains("退回修改") && page.contains("请补充谈话对象姓名") && page.contains("张组长"),
        "{page}"
    );
    let r = app.post(
        &format!("/r/{id}/edit"),
        &[
            ("f.date", "2026-05-18"),
            ("f.interviewer", "王"),
            ("f.interviewee_type", "other"),
            ("f.interviewee_name", "刘大爷"),
            ("f.notes", "记录"),
        ],
    )?;
    assert_eq!(r.status(), 200);
    assert!(r.text()?.contains("待审核"));
    assert_eq!(app.store()?.review(id)?.state, State::Pending);
    Ok(())
}

#[test]
fn a_revoked_device_enrolled_again_in_the_same_launch_uploads_what_it_records() -> Result<()> {
    let server = TestServer::start()?;
    let mut admin = Store::open_in_memory()?;
    common::seed(&mut admin)?;
    let mut t = server.connect(&admin)?;
    sync(&mut admin, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    let app = App::start_empty()?;
    let enroll = |name: &str| -> Result<()> {
        let code = server.code_for(server.add_person(name, Role::Admin, None)?)?;
        let r = app.post(
            "/enroll",
            &[("server", &server.url()), ("code", &code), ("name", name)],
        )?;
        anyhow::ensure!(r.status() == 200, "enroll: {}", r.status());
        Ok(())
    };
    enroll("第一次")?;
    let device = app.store()?.device_id();
    let (status, _) = server.request(
        reqwest::Method::POST,
        &format!("/v1/admin/devices/{device}/revoke"),
        None,
        None,
    )?;
    assert_eq!(status, 200);
    app.sync()?;
    assert!(
        app.store()?.credentials()?.is_none(),
        "the sync wiped the store"
    );

    // Enrolled again without restarting the app: what it records now must upload, so the pages'
    // handle must have followed the wiped file to its new device id.
    enroll("第二次")?;
    assert_ne!(app.store()?.device_id(), device);
    app.post(
        &format!("/v/{A1}/k/interview/new"),
        &[
            ("f.date", "2026-05-18"),
            ("f.interviewer", "王组长"),
            ("f.interviewee_type", "other"),
            ("f.notes", "重新登记后的谈话"),
            ("action", "save"),
        ],
    )?;
    let pending = app.store()?.pending_upload()?;
    assert!(pending > 0);
    let home = app.sync()?;
    assert!(home.contains(&format!("已上传 {pending} 条修改")), "{home}");
    assert_eq!(app.store()?.pending_upload()?, 0);
    Ok(())
}
