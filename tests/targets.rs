//! The campaign's targets on the dashboard: an administrator sets them on the overview (a real
//! change to the campaign record, audited, synced to devices), the overview shows each village
//! against them and the groups behind, bad numbers and dates are refused with what was wrong,
//! and only administrators may set them.

use std::collections::BTreeMap;

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync::fixtures::A1;
use fieldsync_client_core::{FieldValue, Filter, Store, SyncOptions, sync::sync};
use fieldsync_protocol::auth::Role;

fn get(server: &TestServer, token: &str, path: &str) -> Result<String> {
    Ok(reqwest::blocking::Client::new()
        .get(format!("{}{path}", server.url()))
        .header("cookie", format!("fieldsync_session={token}"))
        .send()?
        .text()?)
}

/// Posts a dashboard form as the browser would (same origin), without following the redirect.
fn post(server: &TestServer, token: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let r = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .post(format!("{}{path}", server.url()))
        .header("cookie", format!("fieldsync_session={token}"))
        .header("origin", server.url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()?;
    let status = r.status().as_u16();
    Ok((status, r.text()?))
}

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

#[test]
fn targets_set_on_the_overview_show_who_is_behind_and_sync_to_devices() -> Result<()> {
    let server = TestServer::start()?;
    let dir = tempfile::tempdir()?;
    let (mut d, c) = fieldsync::fixtures::two_villages(dir.path(), "城关镇届中分析")?;
    // 青龙社区: both members and two villagers interviewed, one meeting. 花溪山村: nothing yet.
    let members = d.list(&Filter {
        kind: Some("member".into()),
        scope: Some(A1.into()),
        ..Default::default()
    })?;
    let interview = |who: (&str, Option<String>)| -> BTreeMap<String, FieldValue> {
        let mut f = BTreeMap::from([
            ("date".to_string(), s("2026-11-20")),
            ("interviewer".to_string(), s("工作组")),
            ("interviewee_type".to_string(), s(who.0)),
            ("notes".to_string(), FieldValue::Text("谈话记录".into())),
        ]);
        match who.1 {
            Some(id) => f.insert("interviewee".into(), s(&id)),
            None => f.insert("interviewee_name".into(), s("村民")),
        };
        f
    };
    for m in &members {
        d.create_form(
            c,
            "interview",
            A1,
            &interview(("member", Some(m.header.id.to_string()))),
        )?;
    }
    // The same member twice counts once for coverage.
    d.create_form(
        c,
        "interview",
        A1,
        &interview(("member", Some(members[0].header.id.to_string()))),
    )?;
    for _ in 0..2 {
        d.create_form(c, "interview", A1, &interview(("villager_rep", None)))?;
    }
    d.create_form(
        c,
        "meeting",
        A1,
        &BTreeMap::from([
            ("date".to_string(), s("2026-11-21")),
            ("meeting_type".to_string(), s("villager_forum")),
            ("participants".to_string(), FieldValue::Int(30)),
        ]),
    )?;
    let mut t = server.connect(&d)?;
    sync(&mut d, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    let admin = server.admin_token.clone();

    // Before: no targets, and the overview says how to get them.
    let html = get(&server, &admin, &format!("/ui/c/{c}"))?;
    assert!(html.contains("尚未设置工作目标"), "{html}");
    assert!(
        html.contains("设置工作目标"),
        "the admin gets the form: {html}"
    );
    assert!(!html.contains("目标完成情况"), "{html}");
    // Coverage counts members, not interviews: 2/2 in 青龙社区.
    assert!(html.contains("</svg> 2/2"), "{html}");

    // Bad input is refused with what was wrong, and nothing is written.
    let (status, body) = post(
        &server,
        &admin,
        &format!("/ui/c/{c}/targets"),
        "target_meetings=two&deadline=2026-12-31",
    )?;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("每村座谈会（场）") && body.contains("two"),
        "{body}"
    );
    let (status, body) = post(
        &server,
        &admin,
        &format!("/ui/c/{c}/targets"),
        "target_meetings=1&deadline=2026-02-30x",
    )?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("完成时限应为日期"), "{body}");

    // Set: every member, two villagers, one meeting, a deadline already past.
    let (status, _) = post(
        &server,
        &admin,
        &format!("/ui/c/{c}/targets"),
        "target_all_members=1&target_villagers=2&target_meetings=1&target_questionnaires=&deadline=2026-01-31",
    )?;
    assert_eq!(status, 303);
    server.wait_merged()?;
    let tallies = server.get_json(&format!("/v1/campaigns/{c}/tallies"))?;
    assert_eq!(tallies["targets"]["meetings"], 1, "{}", tallies["targets"]);
    assert_eq!(
        tallies["targets"]["questionnaires"],
        serde_json::Value::Null
    );
    assert_eq!(tallies["targets"]["deadline"], "2026-01-31");
    let html = get(&server, &admin, &format!("/ui/c/{c}"))?;
    assert!(html.contains("目标完成情况"), "{html}");
    assert!(
        html.contains(">已完成</td>"),
        "青龙社区 met every target: {html}"
    );
    assert!(
        html.contains(
            "<span class=\"overdue\">已逾期：谈话成员 0/1、谈话群众 0/2、座谈会 0/1</span>"
        ),
        "花溪山村 is behind: {html}"
    );
    assert!(
        html.contains("1 个村（社区）已完成全部目标；1 个落后"),
        "{html}"
    );
    assert!(html.contains("完成时限 2026-01-31，已过"), "{html}");
    let audit = server.get_json("/v1/admin/audit?action=targets")?;
    assert_eq!(audit.as_array().map(Vec::len), Some(1), "{audit}");

    // The targets are fields of the campaign record: they reach the devices.
    sync(&mut d, &mut t, &SyncOptions::default())?;
    let campaign = d
        .list(&Filter {
            kind: Some("campaign".into()),
            ..Default::default()
        })?
        .remove(0);
    assert_eq!(campaign.fields["target_meetings"], FieldValue::Int(1));
    assert_eq!(campaign.fields["deadline"], s("2026-01-31"));

    // A group leader sees the targets but gets no form and may not set them.
    let groups = d.list(&Filter {
        kind: Some("work_group".into()),
        ..Default::default()
    })?;
    let second = groups
        .iter()
        .find(|g| g.fields["name"] == s("第二组"))
        .unwrap()
        .header
        .id;
    let mut leader = Store::open_in_memory()?;
    server.enroll(&mut leader, "钱组长", Role::Leader, Some(second))?;
    let token = server.token_for(&leader)?;
    let html = get(&server, &token, &format!("/ui/c/{c}"))?;
    assert!(
        html.contains("目标完成情况") && !html.contains("设置工作目标"),
        "{html}"
    );
    assert!(
        !html.contains("青龙社区"),
        "the leader's overview holds its group's village only"
    );
    let (status, _) = post(
        &server,
        &token,
        &format!("/ui/c/{c}/targets"),
        "target_meetings=9",
    )?;
    assert_eq!(status, 403);
    // Nor the devices page, which is the department's.
    let devices = reqwest::blocking::Client::new()
        .get(format!("{}/ui/c/{c}/devices", server.url()))
        .header("cookie", format!("fieldsync_session={token}"))
        .send()?;
    assert_eq!(devices.status(), 403);
    Ok(())
}

#[test]
fn a_templates_default_targets_apply_where_the_campaign_sets_none() -> Result<()> {
    use fieldsync_protocol::template::{MIDTERM_SOURCE, Template};
    let server = TestServer::start()?;
    let dir = tempfile::tempdir()?;
    let (mut d, c) = fieldsync::fixtures::two_villages(dir.path(), "城关镇届中分析")?;
    // The department's template, version 2, sets what every village should reach.
    let source = format!(
        "{}\n[targets]\nall_members = true\nvillagers = 5\nmeetings = 2\ndeadline = \"2026-12-31\"\n",
        MIDTERM_SOURCE.replacen("version = 1", "version = 2", 1)
    );
    let template = Template::parse(&source)?;
    assert_eq!(template.targets.meetings, Some(2));
    d.publish_template(c, &template)?;
    let mut t = server.connect(&d)?;
    sync(&mut d, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    let tallies = server.get_json(&format!("/v1/campaigns/{c}/tallies"))?;
    let targets = &tallies["targets"];
    assert_eq!(targets["all_members"], true, "{targets}");
    assert_eq!(targets["villagers"], 5, "{targets}");
    assert_eq!(targets["meetings"], 2, "{targets}");
    assert_eq!(targets["deadline"], "2026-12-31", "{targets}");
    assert!(targets["questionnaires"].is_null(), "{targets}");
    let admin = server.admin_token.clone();
    let html = get(&server, &admin, &format!("/ui/c/{c}"))?;
    assert!(html.contains("目标完成情况"), "{html}");
    assert!(html.contains("沿用模板的默认目标"), "{html}");
    // The form shows the template's numbers beside empty boxes: saving keeps them defaults.
    assert!(
        html.contains("name=\"target_villagers\" value=\"\" placeholder=\"5\""),
        "{html}"
    );
    assert!(html.contains("模板默认：2026-12-31"), "{html}");

    // The campaign's own target wins over the template's; the others stay the template's.
    let (status, _) = post(
        &server,
        &admin,
        &format!("/ui/c/{c}/targets"),
        "target_meetings=3&deadline=2027-01-15",
    )?;
    assert_eq!(status, 303);
    server.wait_merged()?;
    let targets = server.get_json(&format!("/v1/campaigns/{c}/tallies"))?["targets"].clone();
    assert_eq!(targets["meetings"], 3, "{targets}");
    assert_eq!(targets["deadline"], "2027-01-15", "{targets}");
    assert_eq!(targets["villagers"], 5, "{targets}");

    // A template whose deadline is not a date is refused with where and what to write.
    let bad = format!("{MIDTERM_SOURCE}\n[targets]\ndeadline = \"12月底\"\n");
    let e = Template::parse(&bad).unwrap_err();
    assert_eq!(e.path, "targets.deadline");
    assert!(e.to_string().contains("2026-12-31"), "{e}");
    Ok(())
}
