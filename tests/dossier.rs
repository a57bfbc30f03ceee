//! A village's dossier at a glance and as a Word document: the team's rating, stars,
//! satisfaction split and rate, rectification progress and the questionnaire's answers as
//! percentages at the top; long lists folded; the village's analysis (村情分析) as a 公文-layout
//! DOCX, audited, and refused for a village outside the user's scope.

use std::collections::BTreeMap;

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync::fixtures::{A1, B1};
use fieldsync_client_core::{FieldValue, Filter, Store, SyncOptions, sync::sync};
use fieldsync_protocol::{auth::Role, template::Template};

fn get(server: &TestServer, token: &str, path: &str) -> Result<reqwest::blocking::Response> {
    Ok(reqwest::blocking::Client::new()
        .get(format!("{}{path}", server.url()))
        .header("cookie", format!("fieldsync_session={token}"))
        .send()?)
}

fn fields(pairs: &[(&str, FieldValue)]) -> BTreeMap<String, FieldValue> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.into())
}

#[test]
fn the_dossier_sums_the_village_up_folds_long_lists_and_downloads_as_a_gongwen() -> Result<()> {
    let server = TestServer::start()?;
    let dir = tempfile::tempdir()?;
    let (mut d, c) = fieldsync::fixtures::two_villages(dir.path(), "城关镇届中分析")?;
    let list = |d: &Store, kind: &str| -> Result<Vec<fieldsync_client_core::Record>> {
        Ok(d.list(&Filter {
            kind: Some(kind.into()),
            ..Default::default()
        })?)
    };
    let team = list(&d, "team")?
        .into_iter()
        .find(|t| t.header.scope == A1)
        .expect("青龙社区's team")
        .header
        .id;
    let secretary = list(&d, "member")?
        .into_iter()
        .find(|m| m.header.scope == A1)
        .expect("a member of 青龙社区")
        .header
        .id;
    let ratings = FieldValue::Map(BTreeMap::from([(
        secretary.to_string(),
        "satisfied".to_string(),
    )]));
    // Five evaluation forms: 3 satisfied, 1 basically, 1 not: 80% satisfied.
    for answer in [
        "satisfied",
        "satisfied",
        "satisfied",
        "basically_satisfied",
        "unsatisfied",
    ] {
        d.create_form(
            c,
            "evaluation",
            A1,
            &fields(&[
                ("respondent_category", s("party_member")),
                ("team", s(&team.to_string())),
                ("team_rating", s(answer)),
                ("member_ratings", ratings.clone()),
            ]),
        )?;
    }
    // Twelve questionnaires (a long list, folded): 团结 8, 比较团结 4.
    for i in 0..12 {
        let mut answers = vec![("respondent_category", s("villager"))];
        for q in [
            "q_secretary_leadership",
            "q_affairs_open",
            "q_collective_economy",
            "q_work_style",
            "q_integrity",
            "q_service",
            "q_contact_masses",
            "q_party_education",
            "q_development",
            "q_overall",
        ] {
            let first = Template::builtin("midterm")
                .unwrap()
                .kind("questionnaire")
                .unwrap()
                .field(q)
                .unwrap()
                .choices[0]
                .value
                .clone();
            answers.push((q, FieldValue::Str(first)));
        }
        answers.push((
            "q_team_unity",
            s(if i < 8 { "united" } else { "fairly_united" }),
        ));
        d.create_form(c, "questionnaire", A1, &fields(&answers))?;
    }
    let place = list(&d, "place")?
        .into_iter()
        .find(|p| p.header.scope == A1)
        .unwrap()
        .header
        .id;
    d.create_form(
        c,
        "star_rating",
        A1,
        &fields(&[
            ("village", s(&place.to_string())),
            ("year", FieldValue::Int(2025)),
            ("stars", s("five")),
        ]),
    )?;
    d.create_form(
        c,
        "assessment",
        A1,
        &fields(&[
            ("target_type", s("team")),
            ("target", s(&team.to_string())),
            ("rating", s("good")),
            (
                "summary",
                FieldValue::Text("班子团结，集体经济稳步增长".into()),
            ),
        ]),
    )?;
    let finding = d.create_form(
        c,
        "finding",
        A1,
        &fields(&[
            ("level", s("village_team")),
            ("category", s("collective_economy")),
            ("text", s("集体经济收入渠道单一")),
        ]),
    )?;
    for (measure, status, deadline) in [
        ("引进合作社", "done", "2099-06-30"),
        ("盘活闲置校舍", "in_progress", "2099-06-30"),
        // Not started and past its deadline: overdue.
        ("整治村容", "planned", "2020-01-31"),
    ] {
        d.create_form(
            c,
            "rectification",
            A1,
            &fields(&[
                ("finding", s(&finding.to_string())),
                ("measure", s(measure)),
                ("owner", s("李一")),
                ("deadline", s(deadline)),
                ("status", s(status)),
            ]),
        )?;
    }
    let mut t = server.connect(&d)?;
    sync(&mut d, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    let admin = server.admin_token.clone();

    // The summary at the top.
    let html = get(&server, &admin, &format!("/ui/c/{c}/v/{A1}"))?.text()?;
    for card in [
        "<b>好</b>",
        "<b>五星（2025年）</b>",
        "<b>80%</b>",
        "<b>1 / 3</b>",
    ] {
        assert!(html.contains(card), "{card}: {html}");
    }
    assert!(
        html.contains("满意 3（60%），基本满意 1（20%），不满意 1（20%）"),
        "{html}"
    );
    assert!(
        html.contains(
            "整改措施：已完成 1，整改中 1，未开始 1，<span class=\"overdue\">其中逾期未完成 1</span>。"
        ),
        "{html}"
    );
    assert!(
        html.contains("团结 66.7%；比较团结 33.3%；不够团结 0%"),
        "{html}"
    );
    // Each member's satisfaction in numbers too: the secretary, rated satisfied on all five.
    let members = &html[html.find("成员满意度明细").expect("the members' table")..];
    assert!(
        members.contains("<td data-label=\"满意\">5</td><td data-label=\"基本满意\">0</td>")
            && members.contains("<td data-label=\"满意率\">100%</td>"),
        "{members:.600}"
    );
    // The findings with their measures' deadlines, the overdue marked, and the village's ledger.
    for part in [
        "引进合作社（李一，已完成，时限 2099-06-30）",
        "整治村容（李一，未开始，时限 2020-01-31，<span class=\"overdue\">已逾期</span>）",
        &format!(
            "<a href=\"/ui/c/{c}/ledger?village={A1}\">在整改台账中查看本村的问题和整改措施 →</a>"
        ),
    ] {
        assert!(html.contains(part), "{part}: {html}");
    }
    // Twelve questionnaires are folded, five evaluations are not.
    let questionnaires = &html[html.find("问卷调查（12）").expect("the list")..];
    assert!(
        questionnaires.starts_with("问卷调查（12）</h2><details><summary>展开 12 条记录"),
        "{}",
        &questionnaires[..200.min(questionnaires.len())]
    );
    let evaluations = &html[html.find("（5）</h2>").expect("the evaluations")..];
    assert!(
        evaluations.starts_with("（5）</h2><table class=\"sortable\">"),
        "{evaluations:.80}"
    );

    // The village's analysis as a Word document.
    let answer = get(&server, &admin, &format!("/ui/c/{c}/v/{A1}/dossier.docx"))?;
    assert_eq!(answer.status(), 200);
    let disposition = answer.headers()["content-disposition"]
        .to_str()?
        .to_string();
    assert!(
        disposition.contains("%E6%9D%91%E6%83%85%E5%88%86%E6%9E%90%2Edocx"),
        "named …村情分析.docx: {disposition}"
    );
    let docx = answer.bytes()?.to_vec();
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("report");
    std::fs::create_dir_all(&artifacts)?;
    std::fs::write(artifacts.join("village-dossier.docx"), &docx)?;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(docx))?;
    let mut xml = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("word/document.xml")?, &mut xml)?;
    for part in [
        "青龙社区“两委”班子运行情况分析",
        "班子团结，集体经济稳步增长",
        "班子定性评价为“好”，星级评定为五星（2025年）。",
        "满意率80%",
        "“团结”占66.7%，“比较团结”占33.3%",
        "（一）集体经济方面。",
        "引进合作社（已完成，责任人李一，时限2099-06-30）",
        "整治村容（未开始，责任人李一，时限2020-01-31，已逾期）",
        "梳理问题1个，制定整改措施3项，已完成1项，整改中1项，未开始1项，其中逾期未完成1项。",
        r#"<w:pStyle w:val="GongwenTitle" />"#,
    ] {
        assert!(xml.contains(part), "{part} in the DOCX");
    }
    let audit = server.get_json("/v1/admin/audit?action=export&limit=20")?;
    assert!(audit.to_string().contains("dossier.docx"), "{audit}");

    // In English, the summary's labels and punctuation are English too.
    let english = reqwest::blocking::Client::new()
        .get(format!("{}/ui/c/{c}/v/{A1}", server.url()))
        .header(
            "cookie",
            format!("fieldsync_session={admin}; fieldsync_lang=en"),
        )
        .send()?
        .text()?;
    for part in [
        "<b>Good</b>",
        "<b>Five stars (2025)</b>",
        "Evaluation forms 5: Satisfied 3 (60%), Basically satisfied 1 (20%), Unsatisfied 1 (20%)",
        "Rectifications: 1 done, 1 in progress, 1 not started, <span class=\"overdue\">1 of them overdue</span>.",
    ] {
        assert!(english.contains(part), "{part}: {english}");
    }

    // A period that ends before it starts: said in the page's language, with the way back.
    let answer = get(
        &server,
        &admin,
        &format!("/ui/c/{c}/v/{A1}?from=2023-06-01&to=2023-05-01"),
    )?;
    assert_eq!(answer.status(), 400);
    let html = answer.text()?;
    assert!(
        html.contains("统计时段的起始日期 2023-06-01 晚于截止日期 2023-05-01")
            && !html.contains("after it ends")
            && html.contains(&format!(
                "<a href=\"/ui/c/{c}/v/{A1}\">重新选择统计时段</a>"
            )),
        "{html}"
    );

    // A mistyped village code is not found, not an empty dossier.
    for path in ["", "/dossier.docx"] {
        let answer = get(&server, &admin, &format!("/ui/c/{c}/v/510100009999{path}"))?;
        assert_eq!(answer.status(), 404, "{path}");
    }

    // A leader of the other group gets neither the dossier nor its document.
    let second = list(&d, "work_group")?
        .into_iter()
        .find(|g| g.fields["name"] == s("第二组"))
        .unwrap()
        .header
        .id;
    let mut leader = Store::open_in_memory()?;
    server.enroll(&mut leader, "钱组长", Role::Leader, Some(second))?;
    let token = server.token_for(&leader)?;
    assert_eq!(
        get(&server, &token, &format!("/ui/c/{c}/v/{A1}/dossier.docx"))?.status(),
        404
    );
    assert_eq!(
        get(&server, &token, &format!("/ui/c/{c}/v/{B1}/dossier.docx"))?.status(),
        200
    );
    Ok(())
}
