//! The dashboard's search page as a department user needs it: words separated by a space each
//! match, the words are highlighted in the hits, kind and village filters narrow in the query,
//! and a search that finds nothing says so and what to try.

use std::collections::BTreeMap;

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_client_core::{FieldValue, SyncOptions, sync::sync};

fn page(server: &TestServer, path: &str) -> Result<String> {
    let answer = reqwest::blocking::Client::new()
        .get(format!("{}{path}", server.url()))
        .header(
            "cookie",
            format!("fieldsync_session={}", server.admin_token),
        )
        .send()?;
    assert_eq!(answer.status(), 200, "{path}");
    Ok(answer.text()?)
}

fn q(words: &str) -> String {
    words.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[test]
fn words_each_match_are_highlighted_filters_narrow_and_nothing_found_says_what_to_try() -> Result<()>
{
    let server = TestServer::start()?;
    let dir = tempfile::tempdir()?;
    let (mut d, c) = fieldsync::fixtures::two_villages(dir.path(), "城关镇届中分析")?;
    let fields = |notes: &str| -> BTreeMap<String, FieldValue> {
        [
            ("date", FieldValue::Str("2026-03-09".into())),
            ("interviewer", FieldValue::Str("工作组".into())),
            ("interviewee_type", FieldValue::Str("villager_rep".into())),
            ("notes", FieldValue::Text(notes.into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    };
    for (village, notes) in [
        ("510100001001", "群众希望壮大集体经济，增加村民收入。"),
        ("510100001001", "集体资产管理<b>不够规范</b>。"),
        ("510100001002", "经济发展思路不多，集体收入单一。"),
        ("510100001002", "道路硬化已完成。"),
    ] {
        d.create_form(c, "interview", village, &fields(notes))?;
    }
    let mut t = server.connect(&d)?;
    sync(&mut d, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    let search = |words: &str, extra: &str| {
        page(&server, &format!("/ui/c/{c}/search?q={}{extra}", q(words)))
    };

    // Two words: the records holding both, in either order, each word marked.
    let html = search("集体 经济", "")?;
    assert!(html.contains("找到 2 条记录。"), "{html}");
    assert!(
        html.contains("<mark>集体</mark><mark>经济</mark>"),
        "{html}"
    );
    assert!(
        html.contains("<mark>经济</mark>发展思路不多，<mark>集体</mark>收入"),
        "{html}"
    );
    assert!(!html.contains("道路硬化"), "{html}");
    // What was typed is escaped in the hit as anywhere else.
    let html = search("集体 规范", "")?;
    assert!(
        html.contains("&lt;b&gt;不够<mark>规范</mark>&lt;/b&gt;"),
        "{html}"
    );
    assert!(!html.contains("<b>不够"), "{html}");

    // The village filter narrows in the query, and the form keeps what was chosen.
    let html = search("集体", "&village=510100001002")?;
    assert!(html.contains("找到 1 条记录。"), "{html}");
    assert!(
        html.contains("<option value=\"510100001002\" selected>花溪山村</option>"),
        "{html}"
    );
    assert!(
        html.contains("<option value=\"interview\">谈心谈话</option>"),
        "{html}"
    );
    let html = search("集体", "&kind=meeting")?;
    assert!(html.contains("没有找到同时包含“集体”的记录"), "{html}");

    // Nothing found: said, with what to try.
    let html = search("集体 财务", "")?;
    assert!(
        html.contains("没有找到同时包含“集体”“财务”的记录。可以减少关键词"),
        "{html}"
    );
    assert!(!html.contains("<table"), "{html}");
    Ok(())
}
