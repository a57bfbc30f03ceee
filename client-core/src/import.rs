//! Importing reference data (places, members, work groups) from the department's spreadsheets:
//! CSV in UTF-8 or GBK/GB18030 (as Excel saves it on Chinese Windows), checked row by row, and
//! written all at once or not at all.
//!
//! Columns are found by their Chinese or English header (see `docs/TEMPLATES.md`); choice
//! columns take the choice's value or its Chinese or English label (`书记`, `secretary`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use fieldsync_protocol::template::{CAMPAIGN_SCOPE, FORM_VERSION_FIELD, RefPolicy};
use fieldsync_protocol::{FieldValue, RecordHeader, singleton_id};
use uuid::Uuid;

use crate::forms::FormError;
use crate::store::{Filter, Store, StoreError};

/// What a CSV file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    /// Districts, townships, villages and communities: 代码, 名称, 层级, 上级代码.
    Places,
    /// Team members: 村代码, 姓名, 职务, 性别, 年龄, 学历, 党员, 编号 (optional). Each place's team
    /// is created with its first member.
    Members,
    /// Work groups: 名称, 组长, 成员, 负责村 (place codes separated by `、`, `,` or `;`).
    WorkGroups,
}

/// One bad row (or cell) of a CSV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The line in the file (1 is the header).
    pub line: usize,
    /// The column, when one cell is at fault.
    pub column: Option<String>,
    /// The problem in Chinese.
    pub zh: String,
    /// The problem in English.
    pub en: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(c) => write!(
                f,
                "第 {} 行“{c}”列：{} / line {}, column {c}: {}",
                self.line, self.zh, self.line, self.en
            ),
            None => write!(
                f,
                "第 {} 行：{} / line {}: {}",
                self.line, self.zh, self.line, self.en
            ),
        }
    }
}

/// Why an import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The bytes are neither UTF-8 nor GB18030.
    #[error(
        "文件既不是 UTF-8 也不是 GBK/GB18030 编码，请在 Excel 中另存为“CSV UTF-8” / the file is \
         neither UTF-8 nor GBK/GB18030: save it from Excel as \"CSV UTF-8\""
    )]
    Encoding,
    /// Required columns are missing from the header line.
    #[error(
        "缺少列：{} / missing columns: {}（表头应包含 / the header needs: {}）",
        .missing.join("、"), .missing.join(", "), .expected.join(", ")
    )]
    MissingColumns {
        /// The missing columns (Chinese name).
        missing: Vec<String>,
        /// Every column the import reads.
        expected: Vec<String>,
    },
    /// Rows with errors: nothing was imported.
    #[error("{} 行有错误，未导入任何数据 / {} rows have errors; nothing was imported:\n{}",
        .0.len(), .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Rows(Vec<RowError>),
    /// The CSV itself cannot be read.
    #[error("CSV 格式错误 / the CSV cannot be read: {0}")]
    Csv(String),
    /// No template (or a bad one) for the campaign.
    #[error(transparent)]
    Form(#[from] FormError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an import wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Rows read.
    pub rows: usize,
    /// Records created or updated (teams included).
    pub records: usize,
}

/// Decodes a CSV file's bytes: UTF-8 (with or without a byte-order mark), else GB18030 (a
/// superset of GBK).
pub fn decode(bytes: &[u8]) -> Result<String, ImportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Ok(s.to_string());
    }
    let (text, had_errors) = encoding_rs::GB18030.decode_without_bom_handling(bytes);
    if had_errors {
        return Err(ImportError::Encoding);
    }
    Ok(text.into_owned())
}

/// The columns of each import: (field, Chinese header, English header, required).
fn columns(kind: ImportKind) -> &'static [(&'static str, &'static str, &'static str, bool)] {
    match kind {
        ImportKind::Places => &[
            ("code", "代码", "code", true),
            ("name", "名称", "name", true),
            ("level", "层级", "level", true),
            ("parent", "上级代码", "parent_code", false),
        ],
        ImportKind::Members => &[
            ("place", "村代码", "place_code", true),
            ("name", "姓名", "name", true),
            ("position", "职务", "position", true),
            ("sex", "性别", "sex", true),
            ("age", "年龄", "age", false),
            ("education", "学历", "education", false),
            ("party_member", "党员", "party_member", false),
            ("code", "编号", "code", false),
        ],
        ImportKind::WorkGroups => &[
            ("name", "名称", "name", true),
            ("leader", "组长", "leader", true),
            ("members", "成员", "members", false),
            ("villages", "负责村", "villages", true),
        ],
    }
}

impl Store {
    /// Imports a CSV file of reference data into `campaign` (which must have a template).
    /// Every row is checked first; if any is wrong, nothing is written and every bad row is
    /// reported. Importing the same file again changes nothing (records are keyed by code).
    pub fn import_csv(
        &mut self,
        campaign: Uuid,
        what: ImportKind,
        bytes: &[u8],
    ) -> Result<ImportReport, ImportError> {
        let template = self
            .template(campaign)?
            .ok_or(FormError::NoTemplate(campaign))?;
        let text = decode(bytes)?;
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| ImportError::Csv(e.to_string()))?
            .clone();
        let cols = columns(what);
        let mut index = HashMap::new();
        let mut missing = Vec::new();
        for (field, zh, en, required) in cols {
            match headers
                .iter()
                .position(|h| h == *zh || h.eq_ignore_ascii_case(en))
            {
                Some(i) => {
                    index.insert(*field, i);
                }
                None if *required => missing.push(zh.to_string()),
                None => {}
            }
        }
        if !missing.is_empty() {
            return Err(ImportError::MissingColumns {
                missing,
                expected: cols.iter().map(|c| format!("{}/{}", c.1, c.2)).collect(),
            });
        }
        // Places this import can refer to: those already stored, and those in the file.
        let mut places: HashMap<String, (Uuid, String, String)> = HashMap::new(); // code → (id, name, level)
        for r in self.list(&Filter {
            kind: Some("place".into()),
            campaign: Some(campaign),
            ..Default::default()
        })? {
            if let (Some(FieldValue::Str(code)), Some(FieldValue::Str(name))) =
                (r.fields.get("code"), r.fields.get("name"))
            {
                let level = match r.fields.get("level") {
                    Some(FieldValue::Str(l)) => l.clone(),
                    _ => String::new(),
                };
                places.insert(code.clone(), (r.header.id, name.clone(), level));
            }
        }
        let mut rows: Vec<(usize, csv::StringRecord)> = Vec::new();
        for (i, row) in reader.records().enumerate() {
            let row = row.map_err(|e| ImportError::Csv(e.to_string()))?;
            if row.iter().all(|c| c.trim().is_empty()) {
                continue;
            }
            rows.push((i + 2, row));
        }
        if what == ImportKind::Places {
            for (_, row) in &rows {
                let get = |f: &str| index.get(f).and_then(|i| row.get(*i)).unwrap_or("");
                let code = get("code");
                if !code.is_empty() {
                    let level = template
                        .kind("place")
                        .and_then(|k| k.field("level"))
                        .and_then(|d| crate::forms::parse_input(d, get("level")).ok())
                        .map(|v| match v {
                            FieldValue::Str(s) => s,
                            _ => String::new(),
                        })
                        .unwrap_or_default();
                    places.insert(
                        code.to_string(),
                        (
                            singleton_id(campaign, "place", code),
                            get("name").to_string(),
                            level,
                        ),
                    );
                }
            }
        }
        let mut errors = Vec::new();
        let mut out: Vec<(usize, RecordHeader, BTreeMap<String, FieldValue>)> = Vec::new();
        let mut pending_kinds: HashMap<Uuid, String> = HashMap::new();
        for (line, row) in &rows {
            let line = *line;
            let get = |f: &str| index.get(f).and_then(|i| row.get(*i)).unwrap_or("");
            let mut cell_error = |column: &str, (zh, en): (String, String)| {
                let header = cols
                    .iter()
                    .find(|c| c.0 == column)
                    .map(|c| c.1)
                    .unwrap_or(column);
                errors.push(RowError {
                    line,
                    column: Some(header.to_string()),
                    zh,
                    en,
                });
            };
            let place_of = |code: &str| places.get(code.trim()).cloned();
            let unknown_place = |code: &str| {
                (
                    format!("找不到代码为“{code}”的村（社区），请先导入地点"),
                    format!("no place with code {code:?}: import places first"),
                )
            };
            let kind = match what {
                ImportKind::Places => "place",
                ImportKind::Members => "member",
                ImportKind::WorkGroups => "work_group",
            };
            let def = template
                .kind(kind)
                .expect("reference kinds are in every template");
            let mut fields = BTreeMap::new();
            let mut scope = CAMPAIGN_SCOPE.to_string();
            let mut bad = false;
            for (field, _, _, _) in columns(what) {
                let cell = get(field);
                if cell.is_empty() {
                    continue;
                }
                match (what, *field) {
                    (ImportKind::Places, "parent") => match place_of(cell) {
                        Some((id, _, _)) => {
                            fields.insert("parent".into(), FieldValue::Str(id.to_string()));
                        }
                        None => {
                            cell_error(field, unknown_place(cell));
                            bad = true;
                        }
                    },
                    (ImportKind::Members, "place") => match place_of(cell) {
                        Some((place_id, place_name, level)) => {
                            scope = cell.to_string();
                            let team_id = singleton_id(campaign, "team", &place_id.to_string());
                            fields.insert("team".into(), FieldValue::Str(team_id.to_string()));
                            if let std::collections::hash_map::Entry::Vacant(slot) =
                                pending_kinds.entry(team_id)
                            {
                                let township = level == "township" || level == "district";
                                let mut team = BTreeMap::new();
                                team.insert("place".into(), FieldValue::Str(place_id.to_string()));
                                team.insert(
                                    "name".into(),
                                    FieldValue::Str(if township {
                                        format!("{place_name}领导班子")
                                    } else {
                                        format!("{place_name}“两委”班子")
                                    }),
                                );
                                team.insert(
                                    "level".into(),
                                    FieldValue::Str(
                                        if township {
                                            "township_team"
                                        } else {
                                            "village_team"
                                        }
                                        .into(),
                                    ),
                                );
                                slot.insert("team".into());
                                out.push((
                                    line,
                                    RecordHeader {
                                        id: team_id,
                                        kind: "team".into(),
                                        campaign,
                                        scope: cell.to_string(),
                                    },
                                    team,
                                ));
                            }
                        }
                        None => {
                            cell_error(field, unknown_place(cell));
                            bad = true;
                        }
                    },
                    (ImportKind::WorkGroups, "villages") => {
                        let mut ids = Vec::new();
                        for code in cell
                            .split(['、', ',', '，', ';', '；'])
                            .map(str::trim)
                            .filter(|c| !c.is_empty())
                        {
                            match place_of(code) {
                                Some((id, _, _)) => ids.push(id.to_string()),
                                None => {
                                    cell_error(field, unknown_place(code));
                                    bad = true;
                                }
                            }
                        }
                        fields.insert("villages".into(), FieldValue::Str(ids.join(",")));
                    }
                    _ => {
                        let Some(fdef) = def.field(field) else {
                            continue;
                        };
                        match crate::forms::parse_input(fdef, cell) {
                            Ok(v) => {
                                fields.insert(field.to_string(), v);
                            }
                            Err(e) => {
                                cell_error(field, e);
                                bad = true;
                            }
                        }
                    }
                }
            }
            if bad {
                continue;
            }
            if what == ImportKind::Places && !get("code").is_empty() {
                scope = get("code").to_string();
            }
            if what == ImportKind::Members && !fields.contains_key("code") {
                fields.insert(
                    "code".into(),
                    FieldValue::Str(format!("{}/{}", get("place"), get("name"))),
                );
            }
            let key = template.singleton_key(kind, &fields).unwrap_or_default();
            let id = singleton_id(campaign, kind, &key);
            if pending_kinds.insert(id, kind.into()).is_some() {
                errors.push(RowError {
                    line,
                    column: None,
                    zh: format!("与前面的行重复（{key}）"),
                    en: format!("repeats an earlier row ({key})"),
                });
                continue;
            }
            let header = RecordHeader {
                id,
                kind: kind.into(),
                campaign,
                scope,
            };
            if let Err(e) = header.validate() {
                errors.push(RowError {
                    line,
                    column: None,
                    zh: format!("代码不能用作范围：{e}"),
                    en: e.to_string(),
                });
                continue;
            }
            out.push((line, header, fields));
        }
        // The records as the template sees them, with references to this file's records.
        let places_in_file: HashMap<Uuid, &str> =
            places.values().map(|(id, _, _)| (*id, "place")).collect();
        for (line, header, fields) in &out {
            let lookup = |id: Uuid| {
                pending_kinds
                    .get(&id)
                    .cloned()
                    .or_else(|| places_in_file.get(&id).map(|k| k.to_string()))
                    .or_else(|| {
                        self.get(id)
                            .ok()
                            .filter(|r| !r.deleted)
                            .map(|r| r.header.kind)
                    })
            };
            if let Err(invalid) =
                template.validate(&header.kind, fields, &lookup, RefPolicy::MustExist)
            {
                for p in invalid.problems {
                    // Name the spreadsheet's column where the field came from one.
                    let source = match p.field.as_str() {
                        "team" => "place",
                        f => f,
                    };
                    let column = cols
                        .iter()
                        .find(|c| c.0 == source)
                        .map(|c| c.1.to_string())
                        .unwrap_or(p.field.clone());
                    errors.push(RowError {
                        line: *line,
                        column: Some(column),
                        zh: p.zh,
                        en: p.en,
                    });
                }
            }
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.line);
            return Err(ImportError::Rows(errors));
        }
        let version = FieldValue::Int(i64::from(template.version));
        let records: Vec<(RecordHeader, Vec<(String, FieldValue)>)> = out
            .into_iter()
            .map(|(_, h, mut f)| {
                f.insert(FORM_VERSION_FIELD.into(), version.clone());
                (h, f.into_iter().collect())
            })
            .collect();
        self.ensure_all(&records)?;
        Ok(ImportReport {
            rows: rows.len(),
            records: records.len(),
        })
    }
}
