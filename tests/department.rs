//! The department's view of a generated seed-002 campaign: every tally, full-text search over
//! Chinese notes, CSV exports and the draft report, each checked against figures computed
//! independently (the generator's own count, or the field devices' stores).

use std::collections::BTreeMap;

use anyhow::Result;
use fieldsync::{TestServer, generator};
use fieldsync_client_core::{FieldValue, Filter};
use serde_json::Value;

fn counts(v: &Value) -> BTreeMap<String, usize> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap() as usize))
        .collect()
}

#[test]
fn the_department_reads_the_seed_numbers_searches_exports_and_drafts_the_report() -> Result<()> {
    let server = TestServer::start()?;
    let dir = tempfile::tempdir()?;
    let config = generator::Config::default();
    let g = generator::generate(dir.path(), &server.url(), &config)?;
    server.wait_merged()?;
    let t = &g.tally;
    let c = g.campaign;

    // Tallies.
    let tallies = server.get_json(&format!("/v1/campaigns/{c}/tallies"))?;
    let num = |k: &str| tallies[k].as_u64().unwrap() as usize;
    assert_eq!(tallies["name"], "示范镇村（社区）“两委”班子届中分析");
    assert_eq!(num("villages"), config.villages);
    assert_eq!(num("townships"), 1);
    assert_eq!(num("work_groups"), config.villages);
    assert_eq!(num("members"), t.village_members);
    assert_eq!(num("members_interviewed"), t.village_members);
    assert_eq!(num("interviews"), t.interviews);
    assert_eq!(num("meetings"), t.meetings);
    assert_eq!(tallies["meeting_participants"], t.meeting_participants);
    assert_eq!(tallies["suggestions"], t.suggestions);
    for (key, kind) in [
        ("questionnaires", "questionnaire"),
        ("evaluations", "evaluation"),
        ("document_reviews", "document_review"),
        ("prescreenings", "prescreening"),
        ("findings", "finding"),
    ] {
        assert_eq!(num(key), t.by_kind[kind], "{key}");
    }
    assert_eq!(num("prescreening_violations"), 0);
    assert_eq!(
        counts(&tallies["findings_by_category"]),
        t.findings_by_category
    );
    assert_eq!(
        counts(&tallies["findings_by_level"]),
        BTreeMap::from([("village_team".to_string(), t.by_kind["finding"])])
    );
    assert_eq!(counts(&tallies["team_ratings"]), t.team_ratings);
    assert_eq!(counts(&tallies["member_ratings"]), t.member_ratings);
    assert_eq!(num("conflicted_assessments"), t.conflicts);
    assert_eq!(counts(&tallies["star_ratings"]), t.star_ratings);
    assert_eq!(counts(&tallies["rectifications"]), t.rectifications);
    // The generator's deadlines are in 2023: every rectification not done is overdue.
    let not_done: usize = t
        .rectifications
        .iter()
        .filter(|(s, _)| *s != "done")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(num("overdue_rectifications"), not_done);
    assert_eq!(counts(&tallies["team_satisfaction"]), t.team_satisfaction);
    let members = tallies["member_satisfaction"].as_object().unwrap();
    assert_eq!(members.len(), t.member_satisfaction.len());
    for (member, answers) in &t.member_satisfaction {
        assert_eq!(&counts(&members[member]), answers, "member {member}");
    }
    let villages = tallies["villages_detail"].as_array().unwrap();
    assert_eq!(villages.len(), config.villages);
    assert_eq!(villages[0]["code"], g.villages[0].as_str());
    let questionnaires: u64 = villages
        .iter()
        .map(|v| v["questionnaires"].as_u64().unwrap())
        .sum();
    assert_eq!(questionnaires as usize, t.by_kind["questionnaire"]);

    // Full-text search finds 集体经济 inside any note, exactly where a device's store has it.
    // (Field devices hold only their group's village: read everything on an administrator's.)
    let mut all = fieldsync_client_core::Store::open_in_memory()?;
    let mut t_all = server.connect(&all)?;
    fieldsync_client_core::sync::sync(&mut all, &mut t_all, &Default::default())?;
    let device = &all;
    let mut expected: Vec<String> = device
        .list(&Filter {
            campaign: Some(c),
            ..Default::default()
        })?
        .into_iter()
        .filter(|r| r.header.kind != "template")
        .filter(|r| {
            r.fields.iter().any(|(k, v)| {
                !k.starts_with('_')
                    && matches!(v, FieldValue::Str(s) | FieldValue::Text(s) if s.contains("集体经济"))
            })
        })
        .map(|r| r.header.id.to_string())
        .collect();
    expected.sort();
    assert!(expected.len() > 10, "the generator writes the phrase often");
    let hits = server.get_json(&format!(
        "/v1/search?q=%E9%9B%86%E4%BD%93%E7%BB%8F%E6%B5%8E&campaign={c}&limit=1000"
    ))?;
    let mut found: Vec<String> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect();
    found.sort();
    assert_eq!(found, expected);
    assert!(hits[0]["snippet"].as_str().unwrap().contains("集体经济"));
    // A two-character word works too (below the trigram length), and kinds filter.
    let two = server.get_json(&format!(
        "/v1/search?q=%E5%90%8E%E5%A4%87&campaign={c}&kind=finding&limit=1000"
    ))?;
    assert!(
        two.as_array()
            .unwrap()
            .iter()
            .all(|h| h["kind"] == "finding")
    );
    assert!(!two.as_array().unwrap().is_empty());
    // LIKE's wildcards are words like any other: `%` alone finds nothing, `集体%经济` nothing.
    for q in [
        "%25",
        "%25%25",
        "_",
        "%E9%9B%86%E4%BD%93%25%E7%BB%8F%E6%B5%8E",
    ] {
        let hits = server.get_json(&format!("/v1/search?q={q}&campaign={c}"))?;
        assert_eq!(hits.as_array().unwrap().len(), 0, "q={q}: {hits}");
    }

    // CSV export: one row per record, Chinese headers and choice labels, Excel's BOM.
    let csv = server.get(&format!("/v1/campaigns/{c}/export/assessment.csv"))?;
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()?
            .starts_with("text/csv")
    );
    let body = csv.text()?;
    assert!(body.starts_with('\u{feff}'));
    let lines: Vec<&str> = body.trim_end().split("\r\n").collect();
    assert_eq!(lines.len() - 1, t.by_kind["assessment"]);
    assert!(
        lines[0].contains("评价对象类型") && lines[0].contains("定性评价"),
        "{}",
        lines[0]
    );
    // The 定性评价 column shows 好 exactly where a device's store holds rating "good".
    let column = lines[0]
        .split(',')
        .position(|h| h == "定性评价")
        .expect("a rating column");
    let good_rows = lines[1..]
        .iter()
        .filter(|l| l.split(',').nth(column) == Some("好"))
        .count();
    let good_in_store = device
        .list(&Filter {
            kind: Some("assessment".into()),
            campaign: Some(c),
            ..Default::default()
        })?
        .iter()
        .filter(|r| r.fields.get("rating") == Some(&FieldValue::Str("good".into())))
        .count();
    assert_eq!(good_rows, good_in_store);
    let missing = server.get(&format!("/v1/campaigns/{c}/export/picnic.csv"))?;
    assert_eq!(missing.status(), 404);

    // The tallies as CSV, row by row the same numbers.
    let tallies_csv = server
        .get(&format!("/v1/campaigns/{c}/tallies.csv"))?
        .text()?;
    assert!(tallies_csv.starts_with('\u{feff}'));
    assert!(tallies_csv.contains(&format!("\r\n谈心谈话人次,{}\r\n", t.interviews)));
    assert!(tallies_csv.contains(&format!(
        "\r\n问卷调查表,{}\r\n",
        t.by_kind["questionnaire"]
    )));
    let good = tallies["team_ratings"]["good"].as_u64().unwrap_or(0);
    assert!(tallies_csv.contains(&format!("\r\n班子定性评价：好,{good}\r\n")));

    // The workbook: a sheet of tallies, then one sheet per kind with Chinese headers.
    let xlsx = server.get(&format!("/v1/campaigns/{c}/export.xlsx"))?;
    assert_eq!(xlsx.status(), 200);
    let xlsx = xlsx.bytes()?.to_vec();
    std::fs::write(dir.path().join("campaign.xlsx"), &xlsx)?;
    {
        use calamine::{Reader, Xlsx, open_workbook};
        let mut book: Xlsx<_> = open_workbook(dir.path().join("campaign.xlsx"))?;
        let names = book.sheet_names().to_vec();
        assert_eq!(names[0], "统计");
        for (sheet, kind) in [
            ("谈心谈话", "interview"),
            ("问卷调查", "questionnaire"),
            ("满意度测评", "evaluation"),
        ] {
            let name = names
                .iter()
                .find(|n| n.starts_with(sheet) || n.contains(sheet))
                .unwrap_or_else(|| panic!("no sheet for {kind} in {names:?}"))
                .clone();
            let range = book.worksheet_range(&name)?;
            assert_eq!(range.height() - 1, t.by_kind[kind], "{name}");
        }
        let stats = book.worksheet_range("统计")?;
        let row = stats
            .rows()
            .find(|r| r[0] == "谈心谈话人次")
            .expect("interviews in the tallies sheet");
        assert_eq!(row[1].to_string(), t.interviews.to_string());
        // Typed cells: a 序号 (never a record id), dates as dates, numbers as numbers.
        let meetings = names.iter().find(|n| n.contains("会议")).expect("meetings");
        let range = book.worksheet_range(meetings)?;
        let header: Vec<String> = range
            .rows()
            .next()
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(header[0], "序号");
        let column = |label: &str| {
            header
                .iter()
                .position(|h| h == label)
                .unwrap_or_else(|| panic!("no {label} in {header:?}"))
        };
        let (date, people) = (column("会议日期"), column("参会人数"));
        let mut participants = 0.0;
        for (i, row) in range.rows().skip(1).enumerate() {
            assert_eq!(row[0], calamine::Data::Float((i + 1) as f64), "{row:?}");
            assert!(
                matches!(row[date], calamine::Data::DateTime(_)),
                "the date is a date cell: {:?}",
                row[date]
            );
            match row[people] {
                calamine::Data::Float(n) => participants += n,
                ref other => panic!("the number of participants is a number cell: {other:?}"),
            }
        }
        assert_eq!(participants as i64, t.meeting_participants);
        // No internal words anywhere: no record ids, no `campaign`, no template names.
        for name in &names {
            let range = book.worksheet_range(name)?;
            for cell in range.cells().map(|(_, _, c)| c.to_string()) {
                assert!(
                    uuid::Uuid::parse_str(&cell).is_err()
                        && !cell.contains("campaign")
                        && !cell.contains("midterm"),
                    "{name}: {cell}"
                );
            }
        }
    }
    // Every kind's sheet has its header row frozen and filterable.
    for part in ["xl/worksheets/sheet2.xml", "xl/worksheets/sheet3.xml"] {
        let xml = docx_part(&xlsx, part)?;
        assert!(
            xml.contains(r#"ySplit="1""#) && xml.contains(r#"state="frozen""#),
            "{part}"
        );
        assert!(xml.contains("<autoFilter ref=\"A1:"), "{part}");
        assert!(xml.contains("<col "), "{part} sets column widths");
    }
    // The Word document says the same as the Markdown.
    let docx = server.get(&format!("/v1/campaigns/{c}/report.docx"))?;
    assert_eq!(docx.status(), 200);
    let docx = docx.bytes()?.to_vec();
    let xml = docx_part(&docx, "word/document.xml")?;
    assert!(
        xml.contains(&format!("谈心谈话{}人次", t.interviews)),
        "the DOCX lacks the interviews"
    );
    assert!(xml.contains("二、分析研判情况"));
    assert_gongwen_layout(&docx)?;
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("report");
    std::fs::create_dir_all(&artifacts)?;
    std::fs::write(artifacts.join("draft-report.docx"), &docx)?;
    // The PDF, where LibreOffice is installed (`.ci/run` installs it): A4 pages, more than one.
    let pdf = server.get(&format!("/v1/campaigns/{c}/report.pdf"))?;
    if fieldsync_server::pdf::Converter::new(None).available() {
        assert_eq!(pdf.status(), 200);
        assert_eq!(pdf.headers()["content-type"], "application/pdf");
        let pdf = pdf.bytes()?.to_vec();
        assert!(pdf.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&pdf);
        let pages = text.matches("/Type/Page").count() - text.matches("/Type/Pages").count();
        assert!(pages >= 2, "{pages} pages");
        assert!(text.contains("/MediaBox[0 0 595"), "A4 pages");
        std::fs::write(artifacts.join("draft-report.pdf"), &pdf)?;
    } else {
        assert_eq!(pdf.status(), 503);
        assert_eq!(pdf.json::<Value>()?["error"]["code"], "pdf_unavailable");
    }

    // The overview shows every number the report quotes, each a link to its records; the
    // devices have their own page.
    let html = reqwest::blocking::Client::new()
        .get(format!("{}/ui/c/{c}", server.url()))
        .header(
            "cookie",
            format!("fieldsync_session={}", server.admin_token),
        )
        .send()?
        .text()?;
    for (value, label, kind) in [
        (t.meeting_participants.to_string(), "参会人次", "meeting"),
        (t.suggestions.to_string(), "收集问题建议", "interview"),
        (
            t.by_kind["prescreening"].to_string(),
            "提前摸底（人次）",
            "prescreening",
        ),
        (t.meetings.to_string(), "座谈会", "meeting"),
    ] {
        let card = format!(
            "<a class=\"card\" href=\"/ui/c/{c}/review?state=all&amp;kind={kind}\"><b>{value}</b><span class=\"muted\">{label}</span></a>"
        );
        assert!(html.contains(&card), "{card} on the overview");
    }
    assert!(
        html.contains("群众满意率"),
        "the satisfaction rate is on the overview"
    );
    assert!(
        !html.contains("最近同步"),
        "the device table left the overview"
    );
    let devices = reqwest::blocking::Client::new()
        .get(format!("{}/ui/c/{c}/devices", server.url()))
        .header(
            "cookie",
            format!("fieldsync_session={}", server.admin_token),
        )
        .send()?
        .text()?;
    assert!(
        devices.contains("最近同步") && devices.contains("<tbody><tr>"),
        "{devices}"
    );

    // The draft report: seed 002's structure with every number filled.
    let report = server
        .get(&format!("/v1/campaigns/{c}/report.md"))?
        .text()?;
    for expected in [
        format!("成立{}个分析研判工作组", config.villages),
        format!("召开党员群众代表会议{}场次", t.meetings),
        format!("谈心谈话{}人次", t.interviews),
        format!(
            "发放并收回问卷调查表{}份，满意度测评表{}份",
            t.by_kind["questionnaire"], t.by_kind["evaluation"]
        ),
        format!("收集问题建议{}条", t.suggestions),
        format!(
            "评价出“好”的村{}个，“正常”村{}个",
            t.team_ratings.get("good").copied().unwrap_or(0),
            t.team_ratings.get("normal").copied().unwrap_or(0)
        ),
        format!("“好”的班子成员{}名", t.member_ratings["good"]),
        format!("另有{}份评价意见不一致", t.conflicts),
        "## 二、分析研判情况".to_string(),
        "## 三、存在的问题".to_string(),
        "（一）青龙社区存在的问题。".to_string(),
        // Seed 002's four steps, the third included, and coverage said as a person would.
        "（三）科学分析研判。".to_string(),
        "（四）强化结果运用。".to_string(),
        format!(
            "谈心谈话{}人次，覆盖全部{}名班子成员",
            t.interviews, t.village_members
        ),
        // No team assessment has a summary: each village's paragraph quotes its notes.
        "（一）青龙社区“两委”班子运行情况。据谈心谈话和会议记录：".to_string(),
        "该同志认为村“两委”班子总体团结，分工明确。".to_string(),
    ] {
        assert!(
            report.contains(&expected),
            "the report lacks {expected:?}:\n{report}"
        );
    }
    assert!(!report.contains('*'), "no number is left as *");
    assert_eq!(
        report
            .matches("“两委”班子运行情况。据谈心谈话和会议记录：")
            .count(),
        config.villages,
        "every village's paragraph is drafted from its notes:\n{report}"
    );
    assert!(!report.contains("尚无班子运行情况分析"), "{report}");
    Ok(())
}

/// One part of a Word document or workbook (both are ZIP files), as text.
fn docx_part(docx: &[u8], name: &str) -> Result<String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(docx))?;
    let mut xml = String::new();
    std::io::Read::read_to_string(&mut zip.by_name(name)?, &mut xml)?;
    Ok(xml)
}

/// The XML element of `xml` that opens with `start`, up to the first `end` after it.
fn element<'a>(xml: &'a str, start: &str, end: &str) -> &'a str {
    let at = xml
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in {xml}"));
    let len = xml[at..].find(end).expect("element end") + end.len();
    &xml[at..at + len]
}

/// GB/T 9704-2012 as the draft's DOCX should have it: A4, the standard's margins, 三号 仿宋 body
/// with two-character indents at fixed 29 pt lines, a 二号 小标宋 centred title, 黑体 and 楷体
/// headings, and page numbers “— N —” outside on odd and even pages.
fn assert_gongwen_layout(docx: &[u8]) -> Result<()> {
    let document = docx_part(docx, "word/document.xml")?;
    let size = element(&document, "<w:pgSz", "/>");
    assert!(
        size.contains(r#"w:w="11906""#) && size.contains(r#"w:h="16838""#),
        "{size}"
    );
    let margins = element(&document, "<w:pgMar", "/>");
    for margin in [
        r#"w:top="2098""#,
        r#"w:bottom="1984""#,
        r#"w:left="1587""#,
        r#"w:right="1474""#,
    ] {
        assert!(margins.contains(margin), "{margin} in {margins}");
    }
    let styles = docx_part(docx, "word/styles.xml")?;
    let body = element(&styles, r#"w:styleId="GongwenBody""#, "</w:style>");
    for part in [
        r#"<w:name w:val="公文正文" />"#,
        r#"w:eastAsia="仿宋""#,
        r#"<w:sz w:val="32" />"#,
        r#"w:firstLine="640""#,
        r#"w:lineRule="exact""#,
        r#"w:line="580""#,
        r#"<w:jc w:val="both" />"#,
    ] {
        assert!(body.contains(part), "{part} in {body}");
    }
    let title = element(&styles, r#"w:styleId="GongwenTitle""#, "</w:style>");
    for part in [
        r#"w:eastAsia="方正小标宋简体""#,
        r#"<w:sz w:val="44" />"#,
        r#"<w:jc w:val="center" />"#,
    ] {
        assert!(title.contains(part), "{part} in {title}");
    }
    let heading = element(&styles, r#"w:styleId="GongwenHeading1""#, "</w:style>");
    assert!(heading.contains(r#"w:eastAsia="黑体""#), "{heading}");
    // The title and the headings use their styles; a run-in （一） heading is set in 楷体.
    assert!(document.contains(r#"<w:pStyle w:val="GongwenTitle" />"#));
    assert!(document.contains(r#"<w:pStyle w:val="GongwenHeading1" />"#));
    let lead = document
        .find("（一）提前摸底谋划。")
        .expect("the first step");
    let run = &document[document[..lead].rfind("<w:r>").expect("its run")..lead];
    assert!(run.contains(r#"w:eastAsia="楷体""#), "{run}");
    // The date of writing closes the text, four characters in from the right: 2026年12月4日.
    let date_style = element(&styles, r#"w:styleId="GongwenDate""#, "</w:style>");
    assert!(date_style.contains(r#"w:right="1280""#), "{date_style}");
    let date = element(&document, r#"<w:pStyle w:val="GongwenDate" />"#, "</w:p>");
    let text = &date[date.find("<w:t").expect("date text")..];
    let text = &text[text.find('>').unwrap() + 1..text.find("</w:t>").unwrap()];
    let numbers: Vec<&str> = text.split(['年', '月', '日']).collect();
    assert!(
        numbers.len() == 4 && numbers[..3].iter().all(|n| n.parse::<u32>().is_ok()),
        "{text}"
    );
    // Page numbers: odd pages on the right, even pages on the left, “— N —”.
    let settings = docx_part(docx, "word/settings.xml")?;
    assert!(settings.contains("<w:evenAndOddHeaders"), "{settings}");
    let mut sides = Vec::new();
    for footer in ["word/footer1.xml", "word/footer2.xml"] {
        let xml = docx_part(docx, footer)?;
        assert!(xml.contains(">PAGE<"), "{footer}: {xml}");
        assert!(
            xml.contains(">— <") && xml.contains("> —<"),
            "{footer}: {xml}"
        );
        assert!(xml.contains(r#"<w:pStyle w:val="GongwenPageNumber" />"#));
        sides.push(element(&xml, "<w:jc", "/>").to_string());
    }
    sides.sort();
    assert_eq!(
        sides,
        [r#"<w:jc w:val="left" />"#, r#"<w:jc w:val="right" />"#]
    );
    Ok(())
}

/// A department store with a `midterm` campaign named `name` holding one township and its
/// village 510100001001 (not synced yet).
fn one_village_campaign(
    id: u128,
    name: &str,
) -> Result<(fieldsync_client_core::Store, uuid::Uuid)> {
    use fieldsync_client_core::import::ImportKind;
    use fieldsync_protocol::template::Template;
    let mut d = fieldsync_client_core::Store::open_in_memory()?;
    let c = uuid::Uuid::from_u128(id);
    d.create_campaign(c, name, &Template::builtin("midterm").unwrap(), 2026)?;
    d.import_csv(
        c,
        ImportKind::Places,
        "代码,名称,层级,上级代码\n510100001,示范镇,乡镇,\n510100001001,青龙社区,社区,510100001\n"
            .as_bytes(),
    )?;
    Ok((d, c))
}

#[test]
fn cached_tallies_follow_data_merged_after_them() -> Result<()> {
    use fieldsync_client_core::{SyncOptions, sync::sync};

    let server = TestServer::start()?;
    let (mut d, c) = one_village_campaign(0x0000_2026_0001, "缓存测试")?;
    let mut t = server.connect(&d)?;
    sync(&mut d, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    let path = format!("/v1/campaigns/{c}/tallies");
    let before = server.get_json(&path)?;
    assert_eq!(before["questionnaires"], 0);
    // Served twice from the cache: the same numbers.
    assert_eq!(server.get_json(&path)?, before);
    for _ in 0..3 {
        d.create(
            "questionnaire",
            c,
            "510100001001",
            &[("q_overall", FieldValue::Str("satisfied".into()))],
        )?;
    }
    sync(&mut d, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    let after = server.get_json(&path)?;
    assert_eq!(
        after["questionnaires"], 3,
        "the cache was dropped by the merge"
    );
    let csv = server
        .get(&format!("/v1/campaigns/{c}/tallies.csv"))?
        .text()?;
    assert!(csv.contains("\r\n问卷调查表,3\r\n"), "{csv}");
    Ok(())
}

#[test]
fn a_village_with_many_records_shows_fifty_of_a_kind_and_pages_the_rest_and_unknown_pages_are_html()
-> Result<()> {
    use fieldsync_client_core::{SyncOptions, sync::sync};

    let server = TestServer::start()?;
    let (mut d, c) = one_village_campaign(0x0000_2026_0002, "分页测试")?;
    for i in 0..130 {
        d.create(
            "questionnaire",
            c,
            "510100001001",
            &[
                ("q_overall", FieldValue::Str("satisfied".into())),
                ("suggestion", FieldValue::Str(format!("第{i}份问卷的建议"))),
            ],
        )?;
    }
    let mut t = server.connect(&d)?;
    sync(&mut d, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    let rows = |html: &str| html.matches("<a href=\"/ui/r/").count();
    let dossier = format!("/ui/c/{c}/v/510100001001");
    let page = server.get(&dossier)?.text()?;
    assert!(page.contains("（130）"), "the heading counts every record");
    assert_eq!(rows(&page), 50, "fifty rows of the kind on the dossier");
    assert!(page.contains("href=\"?kind=questionnaire\">查看全部 130 条"));
    let second = server
        .get(&format!("{dossier}?kind=questionnaire&page=2"))?
        .text()?;
    assert!(second.contains("（共 130 条，第 2/2 页）"), "{second}");
    assert_eq!(rows(&second), 30);
    assert!(second.contains("?kind=questionnaire&amp;page=1"));
    assert!(!second.contains("下一页"));
    let first = server
        .get(&format!("{dossier}?kind=questionnaire"))?
        .text()?;
    assert_eq!(rows(&first), 100);
    assert!(first.contains("?kind=questionnaire&amp;page=2\">下一页"));
    // Together the two pages list every questionnaire once.
    let ids = |html: &str| -> std::collections::BTreeSet<String> {
        html.split("<a href=\"/ui/r/")
            .skip(1)
            .map(|s| s.split('"').next().unwrap_or_default().to_string())
            .collect()
    };
    let all: std::collections::BTreeSet<String> =
        ids(&first).union(&ids(&second)).cloned().collect();
    assert_eq!(all.len(), 130);
    // A dashboard path that does not exist is a page, not JSON; an API path stays JSON.
    let missing = server.get("/ui/search?q=x")?;
    assert_eq!(missing.status(), 404);
    assert!(
        missing.headers()["content-type"]
            .to_str()?
            .starts_with("text/html")
    );
    assert!(missing.text()?.contains("没有这个页面"));
    let api = server.get("/v1/nope")?;
    assert_eq!(api.status(), 404);
    assert_eq!(api.json::<Value>()?["error"]["code"], "not_found");
    // An unknown kind shows the dossier, a page past the end the last page.
    assert_eq!(
        rows(&server.get(&format!("{dossier}?kind=nope"))?.text()?),
        50
    );
    assert_eq!(
        rows(
            &server
                .get(&format!("{dossier}?kind=questionnaire&page=9"))?
                .text()?
        ),
        30
    );
    Ok(())
}

#[test]
fn a_long_merge_moves_the_data_version_a_few_times_not_after_every_chunk() -> Result<()> {
    // Tallies are cached until the data version moves; a bulk merge of ten chunks of 64
    // records must not make every dashboard request in between recompute them.
    use fieldsync_client_core::Store;
    use fieldsync_server::{
        ingest::Pusher,
        storage::{ChangeLog, Storage, sqlite::SqliteStorage},
    };

    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;
    let storage = SqliteStorage::open(dir.path())?;
    let mut store = Store::open_in_memory()?;
    let campaign = uuid::Uuid::from_u128(0x0000_2026_0003);
    for i in 0..640 {
        store.create(
            "interview",
            campaign,
            "510100001001",
            &[("duration_min", FieldValue::Int(i))],
        )?;
    }
    let batch = store.outbox_batch(0, usize::MAX)?.expect("changes to push");
    assert_eq!(batch.request.records.len(), 640);
    let body = fieldsync_protocol::wire::encode(&batch.request);
    let checked =
        fieldsync_server::sync::check_push(&body, false).map_err(|e| anyhow::anyhow!("{e}"))?;
    let before = storage.data_version();
    rt.block_on(storage.push(Pusher::admin(checked.device), checked))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while rt.block_on(storage.status())?.unmerged_records > 0 || storage.data_version() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "merging did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let moves = storage.data_version() - before;
    assert!(
        moves < 10,
        "the version moved {moves} times for 10 chunks: once a chunk"
    );
    rt.block_on(storage.close());
    Ok(())
}
