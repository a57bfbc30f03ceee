//! Records written through the campaign's forms: `campaign-create`, `import`, `forms`, `new`
//! (with `--set`, `--file`, `--prompt`), `edit`, `resolve`; reading typed input through the form.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use fieldsync_client_core::forms::{parse_input, parse_json_input};
use fieldsync_client_core::import::ImportKind;
use fieldsync_client_core::{FieldValue, FormError, Store};
use fieldsync_protocol::template::{FieldType, RefPolicy, Template};
use uuid::Uuid;

use super::records::{find, record_json};
use crate::args::ImportWhat;
use crate::errors::{UserError, user};
use crate::output::{label, print_json, t};

/// The campaign this device works in (`fieldsync init --campaign`).
pub(crate) fn campaign(store: &Store) -> Result<Uuid> {
    let id = store.setting("campaign")?.ok_or_else(|| {
        user(
            "尚未设置工作任务：运行 fieldsync init --campaign <编号>",
            "no campaign set: run fieldsync init --campaign <id>",
        )
    })?;
    Ok(Uuid::parse_str(&id)?)
}

/// The template of this device's campaign.
pub(crate) fn template(store: &Store) -> Result<Template> {
    let c = campaign(store)?;
    Ok(store.template(c)?.ok_or(FormError::NoTemplate(c))?)
}

/// `fieldsync campaign-create`: a campaign from a built-in template or a TOML file.
pub(crate) fn campaign_create(
    store: &mut Store,
    template: String,
    name: String,
    year: i64,
    json: bool,
) -> Result<()> {
    let tpl = match Template::builtin(&template) {
        Some(t) => t,
        None => {
            let source = std::fs::read_to_string(&template).with_context(|| {
                format!(
                    "{} {template}",
                    t(
                        "不是内置模板，也无法读取文件",
                        "not a built-in template nor a readable file:"
                    )
                )
            })?;
            Template::parse(&source).map_err(|e| anyhow!(UserError(e.to_string())))?
        }
    };
    let id = fieldsync_protocol::new_record_id();
    store.create_campaign(id, &name, &tpl, year)?;
    store.set_setting("campaign", &id.to_string())?;
    if json {
        print_json(&serde_json::json!({"campaign": id, "template": tpl.id, "version": tpl.version}))
    } else {
        out!(
            "{} {id}（{} {} v{}）",
            t("已新建工作任务", "created campaign"),
            name,
            tpl.id,
            tpl.version
        );
        Ok(())
    }
}

/// `fieldsync import`: places, members or work groups from a CSV file, all or nothing.
pub(crate) fn import(store: &mut Store, what: ImportWhat, file: PathBuf, json: bool) -> Result<()> {
    let c = campaign(store)?;
    let bytes = std::fs::read(&file).with_context(|| format!("{}", file.display()))?;
    let kind = match what {
        ImportWhat::Places => ImportKind::Places,
        ImportWhat::Members => ImportKind::Members,
        ImportWhat::Groups => ImportKind::WorkGroups,
    };
    let report = store.import_csv(c, kind, &bytes)?;
    if json {
        print_json(&serde_json::json!({"rows": report.rows, "records": report.records}))
    } else {
        out!(
            "{}",
            t(
                &format!("已导入 {} 行，写入 {} 条记录", report.rows, report.records),
                &format!(
                    "imported {} rows into {} records",
                    report.rows, report.records
                )
            )
        );
        Ok(())
    }
}

/// `fieldsync forms`: the campaign's forms and their fields.
pub(crate) fn forms(store: &Store, kind: Option<String>, json: bool) -> Result<()> {
    let tpl = template(store)?;
    let kinds: Vec<_> = tpl
        .kinds
        .values()
        .filter(|k| kind.as_deref().is_none_or(|want| k.name == want))
        .collect();
    if json {
        return print_json(&serde_json::to_value(&kinds)?);
    }
    out!("{} v{}", label(&tpl.name.zh, &tpl.name.en), tpl.version);
    for k in kinds {
        out!("\n{}  {}", k.name, label(&k.label.zh, &k.label.en));
        for f in &k.fields {
            // Either the value or the label may be typed.
            let choices: Vec<String> = f
                .choices
                .iter()
                .map(|c| format!("{} {}", c.value, label(&c.zh, &c.en)))
                .collect();
            out!(
                "  {:<24} {:<12} {}{}{}",
                f.name,
                format!("{:?}", f.field_type).to_lowercase(),
                label(&f.label.zh, &f.label.en),
                if f.required {
                    t(" *必填", " *required")
                } else {
                    String::new()
                },
                if choices.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", choices.join("|"))
                }
            );
        }
    }
    Ok(())
}

/// `fieldsync new`: a record from `--file`, `--prompt` and `--set`, checked by its form.
pub(crate) fn new(
    store: &mut Store,
    kind: String,
    village: String,
    set: Vec<String>,
    file: Option<PathBuf>,
    ask: bool,
    json: bool,
) -> Result<()> {
    let c = campaign(store)?;
    let tpl = template(store)?;
    let mut fields = BTreeMap::new();
    if let Some(file) = file {
        let text = std::fs::read_to_string(&file).with_context(|| format!("{}", file.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            user(
                &format!("JSON 文件有误：{e}"),
                &format!("the JSON file is invalid: {e}"),
            )
        })?;
        let obj = v
            .as_object()
            .ok_or_else(|| user("JSON 应为一个对象", "the JSON must be an object"))?;
        let def = tpl.kind(&kind);
        for (k, v) in obj {
            // A field of the form is read as --set reads it (choices by their labels);
            // a name the form lacks is left for the form check to refuse.
            let value = match def.and_then(|d| d.field(k)) {
                Some(f) => parse_json_input(f, v).map_err(|(zh, en)| {
                    user(
                        &format!("“{}”（{}）：{zh}", f.label.zh, f.name),
                        &format!("{} ({}): {en}", f.label.en, f.name),
                    )
                })?,
                None => {
                    FieldValue::from_json(k, v).map_err(|e| anyhow!(UserError(e.to_string())))?
                }
            };
            fields.insert(k.clone(), value);
        }
    }
    if ask {
        fields.extend(prompt(store, &tpl, &kind)?);
    }
    fields.extend(parse_sets(&tpl, &kind, &set)?);
    fields.retain(|_, v| *v != FieldValue::Null);
    let id = store.create_form(c, &kind, &village, &fields)?;
    if json {
        print_json(&record_json(&store.get(id)?))
    } else {
        out!("{} {id}", t("已保存", "saved"));
        Ok(())
    }
}

/// `fieldsync edit`: fields of a record, the whole record checked again.
pub(crate) fn edit(store: &mut Store, id: String, set: Vec<String>) -> Result<()> {
    let id = find(store, &id)?;
    let tpl = template(store)?;
    let kind = store.get(id)?.header.kind;
    let changes = parse_sets(&tpl, &kind, &set)?;
    store.edit_form(id, &changes)?;
    out!("{} {id}", t("已修改", "changed"));
    Ok(())
}

/// `fieldsync resolve`: settles a conflict by writing the value to keep.
pub(crate) fn resolve(store: &mut Store, id: String, field: String, value: String) -> Result<()> {
    let id = find(store, &id)?;
    let tpl = template(store)?;
    let kind = store.get(id)?.header.kind;
    let changes = parse_sets(&tpl, &kind, &[format!("{field}={value}")])?;
    store.edit_form(id, &changes)?;
    out!("{} {field} = {value}", t("已解决冲突：", "resolved:"));
    Ok(())
}

/// Reads `field=value` pairs through the kind's form.
fn parse_sets(
    template: &Template,
    kind: &str,
    sets: &[String],
) -> Result<BTreeMap<String, FieldValue>> {
    let def = template.kind(kind).ok_or_else(|| {
        user(
            &format!("没有“{kind}”这种表单，运行 fieldsync forms 查看"),
            &format!("there is no form {kind:?}; run fieldsync forms"),
        )
    })?;
    let mut out = BTreeMap::new();
    for s in sets {
        let (name, value) = s.split_once('=').ok_or_else(|| {
            user(
                &format!("“{s}”应写成 字段=值"),
                &format!("{s:?} must be written field=value"),
            )
        })?;
        let f = def.field(name.trim()).ok_or_else(|| {
            user(
                &format!("“{}”表单中没有字段 {name}", def.label.zh),
                &format!("the {} form has no field {name:?}", def.label.en),
            )
        })?;
        if value.trim().is_empty() {
            out.insert(f.name.clone(), FieldValue::Null);
            continue;
        }
        let v = parse_input(f, value).map_err(|(zh, en)| {
            user(
                &format!("“{}”（{}）：{zh}", f.label.zh, f.name),
                &format!("{} ({}): {en}", f.label.en, f.name),
            )
        })?;
        out.insert(f.name.clone(), v);
    }
    Ok(out)
}

/// Asks for each field of the form in turn, checking every answer at once.
fn prompt(store: &Store, template: &Template, kind: &str) -> Result<BTreeMap<String, FieldValue>> {
    let def = template.kind(kind).ok_or_else(|| {
        user(
            &format!("没有“{kind}”这种表单"),
            &format!("there is no form {kind:?}"),
        )
    })?;
    let campaign = campaign(store)?;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut out = BTreeMap::new();
    let mut err = std::io::stderr();
    for f in &def.fields {
        // Files are added after saving, with `fieldsync attach`, not typed in.
        if f.field_type == FieldType::Attachments {
            let name = label(&f.label.zh, &f.label.en);
            writeln!(
                err,
                "{}",
                t(
                    &format!(
                        "{name}（{}）：保存后用 fieldsync attach <记录> <文件> 添加",
                        f.name
                    ),
                    &format!(
                        "{name} ({}): add files after saving, with fieldsync attach <record> <file>",
                        f.name
                    )
                )
            )?;
            continue;
        }
        loop {
            let need = if f.required {
                t("必填", "required")
            } else {
                t("可跳过，直接回车", "optional: press Enter to skip")
            };
            let name = label(&f.label.zh, &f.label.en);
            writeln!(
                err,
                "{}",
                t(
                    &format!("{name}（{}，{need}）", f.name),
                    &format!("{name} ({}, {need})", f.name)
                )
            )?;
            for (i, c) in f.choices.iter().enumerate() {
                writeln!(err, "  {}) {} {}", i + 1, label(&c.zh, &c.en), c.value)?;
            }
            if f.field_type == FieldType::Date {
                writeln!(err, "  {}", t("格式：2026-05-18", "as 2026-05-18"))?;
            }
            write!(err, "> ")?;
            err.flush()?;
            let Some(line) = lines.next() else {
                return Err(user("输入已结束，未保存", "input ended; nothing was saved"));
            };
            let line = line?;
            let answer = line.trim();
            if answer.is_empty() {
                if f.required {
                    writeln!(err, "{}", t("此项必填。", "this field is required."))?;
                    continue;
                }
                break;
            }
            // A number picks a choice.
            let answer = match answer.parse::<usize>() {
                Ok(n)
                    if f.field_type == FieldType::Choice && (1..=f.choices.len()).contains(&n) =>
                {
                    f.choices[n - 1].value.clone()
                }
                _ => answer.to_string(),
            };
            let value = match parse_input(f, &answer) {
                Ok(v) => v,
                Err((zh, en)) => {
                    writeln!(err, "{}", label(&zh, &en))?;
                    continue;
                }
            };
            let mut trial = out.clone();
            trial.insert(f.name.clone(), value.clone());
            let lookup = |id: Uuid| store.get(id).ok().map(|r| r.header.kind);
            let problem = match template.validate(kind, &trial, &lookup, RefPolicy::MustExist) {
                Ok(()) => None,
                Err(invalid) => invalid.problems.into_iter().find(|p| p.field == f.name),
            };
            if let Some(p) = problem {
                writeln!(err, "{}", label(&p.zh, &p.en))?;
                continue;
            }
            out.insert(f.name.clone(), value);
            break;
        }
    }
    let _ = campaign;
    Ok(out)
}
