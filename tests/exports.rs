//! Exports a spreadsheet opens safely and whole: a note longer than an Excel cell continues in
//! the next column, text that looks like a formula stays text (CSV and XLSX), and the audit log
//! records an export only once the file exists.

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_client_core::{FieldValue, SyncOptions, sync::sync};
use fieldsync_protocol::template::Template;

/// Values a spreadsheet would run as formulas if written verbatim.
const FORMULAS: [&str; 5] = [
    "=HYPERLINK(\"http://127.0.0.1/x\",\"点击\")",
    "+1+1",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1,2)",
    "\t=1+1",
];

/// A campaign with one village, a 40,000-character interview note and notes that look like
/// formulas, synced to a fresh server.
fn campaign(long_note: &str) -> Result<(TestServer, uuid::Uuid)> {
    use fieldsync_client_core::import::ImportKind;
    let server = TestServer::start()?;
    let mut d = fieldsync_client_core::Store::open_in_memory()?;
    let c = uuid::Uuid::from_u128(0x2026_0912);
    d.create_campaign(c, "导出测试", &Template::builtin("midterm").unwrap(), 2026)?;
    d.import_csv(
        c,
        ImportKind::Places,
        "代码,名称,层级,上级代码\n510100001,示范镇,乡镇,\n510100001001,青龙社区,社区,510100001\n"
            .as_bytes(),
    )?;
    d.create(
        "interview",
        c,
        "510100001001",
        &[
            ("notes", FieldValue::Text(long_note.into())),
            ("interviewer", FieldValue::Text("张三".into())),
        ],
    )?;
    for f in FORMULAS {
        d.create(
            "interview",
            c,
            "510100001001",
            &[
                ("notes", FieldValue::Text(f.into())),
                ("interviewer", FieldValue::Text(f.into())),
            ],
        )?;
    }
    let mut t = server.connect(&d)?;
    sync(&mut d, &mut t, &SyncOptions::default())?;
    server.wait_merged()?;
    Ok((server, c))
}

fn exports_logged(server: &TestServer, file: &str) -> Result<usize> {
    let audit = server.get_json("/v1/admin/audit?action=export")?;
    Ok(audit
        .as_array()
        .map(|a| a.iter().filter(|l| l["detail"]["file"] == file).count())
        .unwrap_or(0))
}

#[test]
fn a_note_longer_than_an_excel_cell_continues_in_the_next_column_and_formulas_stay_text()
-> Result<()> {
    use calamine::{Data, Reader, Xlsx};
    let long_note: String = "谈话记录第一段内容。".repeat(4_000);
    assert_eq!(long_note.chars().count(), 40_000);
    let (server, c) = campaign(&long_note)?;
    assert_eq!(exports_logged(&server, "export.xlsx")?, 0);

    let resp = server.get(&format!("/v1/campaigns/{c}/export.xlsx"))?;
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes()?.to_vec();
    let mut book = Xlsx::new(std::io::Cursor::new(bytes))?;
    let range = book.worksheet_range("谈心谈话")?;
    let header: Vec<String> = range
        .rows()
        .next()
        .unwrap()
        .iter()
        .map(|d| d.to_string())
        .collect();
    let at = header
        .iter()
        .position(|h| h == "谈话记录")
        .expect("a notes column");
    assert_eq!(header[at + 1], "谈话记录（续）", "{header:?}");
    let row = range
        .rows()
        .find(|r| r[at].to_string().starts_with("谈话记录第一段"))
        .expect("the long note's row");
    let first = row[at].to_string();
    let rest = row[at + 1].to_string();
    assert!(first.chars().count() <= 32_767);
    assert_eq!(
        format!("{first}{rest}"),
        long_note,
        "the note is whole across two cells"
    );
    // Formula-looking text reads back as strings, and the sheet holds no formula at all.
    let interviewer = header.iter().position(|h| h == "谈话人").unwrap();
    for f in FORMULAS {
        let row = range
            .rows()
            .find(|r| r[interviewer] == Data::String(f.to_string()))
            .unwrap_or_else(|| panic!("{f:?} is not a string cell"));
        assert_eq!(row[at], Data::String(f.to_string()));
    }
    let formulas = book.worksheet_formula("谈心谈话")?;
    assert!(
        formulas.used_cells().all(|(_, _, f)| f.is_empty()),
        "the sheet has formulas"
    );
    // Logged once, after it was built.
    assert_eq!(exports_logged(&server, "export.xlsx")?, 1);

    // The CSV: every formula-looking cell starts with a quote, inside quotes.
    let csv = server.get(&format!("/v1/campaigns/{c}/export/interview.csv"))?;
    assert_eq!(csv.status(), 200);
    let csv = csv.text()?;
    for f in FORMULAS {
        let cell = format!("\"'{}\"", f.replace('"', "\"\""));
        assert!(csv.contains(&cell), "{cell} missing from the CSV");
    }
    let mut reader =
        csv::ReaderBuilder::new().from_reader(csv.trim_start_matches('\u{feff}').as_bytes());
    for record in reader.records() {
        for cell in record?.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell:?} would run as a formula"
            );
        }
    }
    // tallies.csv goes through the same cells.
    let tallies = server.get(&format!("/v1/campaigns/{c}/tallies.csv"))?;
    assert_eq!(tallies.status(), 200);
    assert!(tallies.text()?.contains("\r\n谈心谈话人次,6\r\n"));
    // An export that fails is not logged.
    let missing = server.get(&format!("/v1/campaigns/{c}/export/picnic.csv"))?;
    assert_eq!(missing.status(), 404);
    assert_eq!(exports_logged(&server, "picnic.csv")?, 0);
    assert_eq!(exports_logged(&server, "interview.csv")?, 1);
    Ok(())
}
