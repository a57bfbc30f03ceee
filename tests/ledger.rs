//! The ledger of findings and rectifications on the dashboard: a finding without a measure is
//! listed as such, owners, progress and completion dates show, filters (village, work group,
//! category, status, overdue) and sorting work, a group leader sees only the group's villages,
//! and the workbook holds the filtered lines with typed dates and is audited.

use std::collections::BTreeMap;

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync::fixtures::{A1, B1};
use fieldsync_client_core::{FieldValue, Filter, Store, SyncOptions, sync::sync};
use fieldsync_protocol::auth::Role;

fn page(server: &TestServer, token: &str, path: &str) -> Result<String> {
    let answer = reqwest::blocking::Client::new()
        .get(format!("{}{path}", server.url()))
        .header("cookie", format!("fieldsync_session={token}"))
        .send()?;
    assert_eq!(answer.status(), 200, "{path}");
    Ok(answer.text()?)
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, FieldValue> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), FieldValue::Str(v.to_string())))
        .collect()
}

/// The rows of the ledger's table, as their HTML.
fn rows(html: &str) -> Vec<&str> {
    match html.find("<tbody>") {
        Some(at) => html[at..].split("<tr>").skip(1).collect(),
        None => Vec::new(),
    }
}

#[test]
fn the_ledger_lists_filters_sorts_scopes_and_exports_findings_with_their_measures() -> Result<()> {
    let server = TestServer::start()?;
    let dir = tempfile::tempdir()?;
    let (mut d, c) = fieldsync::fixtures::two_villages(dir.path(), "城关镇届中分析")?;
    let finding = |d: &mut Store, village: &str, category: &str, text: &str| {
        d.create_form(
            c,
            "finding",
            village,
            &fields(&[
                ("level", "village_team"),
                ("category", category),
                ("text", text),
            ]),
        )
    };
    let late = finding(&mut d, A1, "collective_economy", "集体经济收入渠道单一。")?;
    let done = finding(&mut d, A1, "style", "会议记录不规范。")?;
    finding(&mut d, B1, "party_building", "党建工作标准不高。")?;
    let b_late = finding(&mut d, B1, "collective_economy", "闲置资产未盘活。")?;
    d.create_form(
        c,
        "rectification",
        A1,
        &fields(&[
            ("finding", &late.to_string()),
            ("measure", "引进合作社发展产业"),
            ("owner", "李书记"),
            ("supervisor", "王组长"),
            ("deadline", "2024-06-30"),
            ("status", "in_progress"),
            ("progress", "已对接两家合作社"),
        ]),
    )?;
    d.create_form(
        c,
        "rectification",
        A1,
        &fields(&[
            ("finding", &done.to_string()),
            ("measure", "规范会议记录"),
            ("owner", "周委员"),
            ("deadline", "2024-05-31"),
            ("status", "done"),
            ("done_date", "2024-05-20"),
        ]),
    )?;
    d.create_form(
        c,
        "rectification",
        B1,
        &fields(&[
            ("finding", &b_late.to_string()),
            ("measure", "出租闲置校舍"),
            ("owner", "吴主任"),
            ("deadline", "2024-03-31"),
            ("status", "planned"),
        ]),
    )?;
    let mut t = server.connect(&d)?;
    sync(&mut d, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    let admin = server.admin_token.clone();
    let ledger =
        |token: &str, query: &str| page(&server, token, &format!("/ui/c/{c}/ledger?{query}"));

    // Every finding, the one without a measure too; owners, progress, completion date.
    let html = ledger(&admin, "")?;
    assert_eq!(rows(&html).len(), 4, "{html}");
    assert!(
        html.contains("问题 4 个，整改措施 3 条：已完成 1，整改中 1，未开始 1，<span class=\"overdue\">其中逾期未完成 2</span>；尚未制定措施的问题 1 个。"),
        "{html}"
    );
    assert!(html.contains("尚未制定整改措施"), "{html}");
    assert!(html.contains("李书记<br>督导：王组长"), "{html}");
    assert!(
        html.contains("已对接两家合作社") && html.contains("2024-05-20"),
        "{html}"
    );
    assert!(html.contains("第一组") && html.contains("第二组"), "{html}");

    // Filters: overdue only, no measure yet, one category, one group, one village.
    let only = |query: &str| -> Result<Vec<String>> {
        let html = ledger(&admin, query)?;
        Ok(rows(&html).iter().map(|r| r.to_string()).collect())
    };
    let overdue = only("overdue=1")?;
    assert_eq!(overdue.len(), 2);
    assert!(overdue.iter().all(|r| r.contains("已逾期")), "{overdue:?}");
    let none = only("status=none")?;
    assert_eq!(none.len(), 1);
    assert!(none[0].contains("党建工作标准不高"));
    assert_eq!(only("category=collective_economy")?.len(), 2);
    let groups: Vec<_> = d
        .list(&Filter {
            kind: Some("work_group".into()),
            ..Default::default()
        })?
        .into_iter()
        .map(|g| (g.fields["name"].clone(), g.header.id))
        .collect();
    let second = groups
        .iter()
        .find(|(n, _)| *n == FieldValue::Str("第二组".into()))
        .expect("第二组")
        .1;
    let b = only(&format!("group={second}"))?;
    assert_eq!(b.len(), 2);
    assert!(b.iter().all(|r| r.contains("花溪山村")), "{b:?}");
    assert_eq!(only(&format!("village={A1}&status=done"))?.len(), 1);

    // Sorted by deadline: the earliest first, lines without a deadline last.
    let by_deadline = only("sort=deadline")?;
    assert!(by_deadline[0].contains("2024-03-31"), "{by_deadline:?}");
    assert!(
        by_deadline[3].contains("尚未制定整改措施"),
        "{by_deadline:?}"
    );
    // By status: the overdue first.
    let by_status = only("sort=status")?;
    assert!(by_status[0].contains("已逾期") && by_status[1].contains("已逾期"));

    // A leader of the first group sees the first group's village only, in the query.
    let first = groups
        .iter()
        .find(|(n, _)| *n == FieldValue::Str("第一组".into()))
        .expect("第一组")
        .1;
    let mut leader = Store::open_in_memory()?;
    server.enroll(&mut leader, "王组长", Role::Leader, Some(first))?;
    let token = server.token_for(&leader)?;
    let html = ledger(&token, "")?;
    assert_eq!(rows(&html).len(), 2, "{html}");
    assert!(
        !html.contains("花溪山村</td>") && !html.contains("闲置资产"),
        "{html}"
    );

    // The workbook: the filtered lines, dates as dates, audited.
    let answer = reqwest::blocking::Client::new()
        .get(format!("{}/ui/c/{c}/ledger.xlsx?overdue=1", server.url()))
        .header("cookie", format!("fieldsync_session={admin}"))
        .send()?;
    assert_eq!(answer.status(), 200);
    let disposition = answer.headers()["content-disposition"]
        .to_str()?
        .to_string();
    assert!(disposition.contains("filename*=UTF-8''"), "{disposition}");
    let bytes = answer.bytes()?.to_vec();
    let path = dir.path().join("ledger.xlsx");
    std::fs::write(&path, bytes)?;
    {
        use calamine::{Data, Reader, Xlsx, open_workbook};
        let mut book: Xlsx<_> = open_workbook(&path)?;
        assert_eq!(book.sheet_names(), vec!["问题整改台账".to_string()]);
        let range = book.worksheet_range("问题整改台账")?;
        let mut lines = range.rows();
        let header: Vec<String> = lines
            .next()
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(header[0], "村（社区）");
        let deadline = header.iter().position(|h| h == "整改时限").unwrap();
        let overdue = header.iter().position(|h| h == "是否逾期").unwrap();
        let lines: Vec<_> = lines.collect();
        assert_eq!(lines.len(), 2);
        for line in lines {
            assert!(matches!(line[deadline], Data::DateTime(_)), "{line:?}");
            assert_eq!(line[overdue].to_string(), "是");
        }
    }
    let audit = server.get_json("/v1/admin/audit?limit=50")?;
    assert!(
        audit.to_string().contains("ledger.xlsx"),
        "the export is audited: {audit}"
    );
    Ok(())
}
