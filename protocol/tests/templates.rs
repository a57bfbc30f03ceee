//! Templates as data: every record kind of the built-in templates accepts a valid record and
//! refuses each kind of bad input with a message naming the field; broken templates are refused
//! with the line and the field named. Table-driven: each row is a case.

use std::collections::BTreeMap;

use fieldsync_protocol::FieldValue;
use fieldsync_protocol::template::{ProblemCode, RefPolicy, Template};
use serde_json::{Value, json};
use uuid::Uuid;

const MEMBER: &str = "0190f5c2-0000-7000-8000-000000000001";
const MEMBER2: &str = "0190f5c2-0000-7000-8000-000000000002";
const TEAM: &str = "0190f5c2-0000-7000-8000-000000000003";
const PLACE: &str = "0190f5c2-0000-7000-8000-000000000004";
const FINDING: &str = "0190f5c2-0000-7000-8000-000000000005";
const GROUP: &str = "0190f5c2-0000-7000-8000-000000000006";
const UNKNOWN: &str = "0190f5c2-0000-7000-8000-0000000000ff";

fn kind_of(id: Uuid) -> Option<String> {
    let id = id.to_string();
    Some(
        match id.as_str() {
            MEMBER | MEMBER2 => "member",
            TEAM => "team",
            PLACE => "place",
            FINDING => "finding",
            GROUP => "work_group",
            _ => return None,
        }
        .to_string(),
    )
}

fn fields(v: Value) -> BTreeMap<String, FieldValue> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), FieldValue::from_json(k, v).unwrap()))
        .collect()
}

/// One valid record of every kind both built-in templates define.
fn valid(kind: &str) -> Value {
    match kind {
        "interview" => json!({
            "date": "2026-05-18", "interviewer": "王明、李华", "interviewee_type": "member",
            "interviewee": MEMBER, "work_group": GROUP,
            "notes": {"text": "该同志认为班子团结，集体经济收入偏低，建议发展茶叶产业。"}
        }),
        "meeting" => json!({
            "date": "2026-05-19", "meeting_type": "party_member_rep", "participants": 32,
            "participant_categories": "party_member,villager_rep", "suggestions_collected": 6
        }),
        "questionnaire" => json!({
            "respondent_category": "party_member", "q_team_unity": "united",
            "q_secretary_leadership": "good", "q_affairs_open": "timely",
            "q_collective_economy": "some", "q_work_style": "practical", "q_integrity": "none",
            "q_service": "good", "q_contact_masses": "often", "q_development": "some",
            "q_overall": "satisfied"
        }),
        "evaluation" => json!({
            "respondent_category": "villager_rep", "team": TEAM, "team_rating": "satisfied",
            "member_ratings": {MEMBER: "satisfied", MEMBER2: "basically_satisfied"}
        }),
        "document_review" => json!({
            "date": "2026-05-20", "documents": "three_meetings_one_lesson,org_life_meeting",
            "compliant": false, "findings": {"text": "2020年组织生活会会议记录简单"}
        }),
        "prescreening" => json!({
            "source": "discipline", "member": MEMBER, "integrity_issue": false,
            "violation": false
        }),
        "finding" => json!({
            "level": "village_team", "category": "collective_economy",
            "text": {"text": "集体经济收入渠道单一"}, "team": TEAM
        }),
        "rectification" => json!({
            "finding": FINDING, "measure": {"text": "引进企业共建加工厂"}, "owner": "张书记",
            "deadline": "2026-12-31", "status": "in_progress"
        }),
        "assessment" => json!({
            "target_type": "team", "target": TEAM, "rating": "good",
            "reasons": {"text": "班子团结，战斗力强"}
        }),
        "star_rating" => json!({"village": PLACE, "year": 2026, "stars": "four"}),
        other => panic!("no valid example for {other}"),
    }
}

const KINDS: &[&str] = &[
    "interview",
    "meeting",
    "questionnaire",
    "evaluation",
    "document_review",
    "prescreening",
    "finding",
    "rectification",
    "assessment",
    "star_rating",
];

#[test]
fn every_kind_accepts_a_valid_record_in_both_templates() {
    for id in Template::builtin_ids() {
        let t = Template::builtin(id).unwrap();
        for kind in KINDS {
            let mut v = valid(kind);
            if *id == "lookback" && matches!(*kind, "questionnaire" | "evaluation") {
                v["level"] = json!("village_team");
            }
            if *id == "lookback" && *kind == "questionnaire" {
                for q in [
                    "q_election_process",
                    "q_election_discipline",
                    "q_team_structure",
                ] {
                    let def = t.kind(kind).unwrap().field(q).unwrap();
                    v[q] = json!(def.choices[0].value);
                }
                v.as_object_mut().unwrap().remove("q_contact_masses");
                v.as_object_mut().unwrap().remove("q_development");
                let def = t.kind(kind).unwrap().field("q_duty").unwrap();
                v["q_duty"] = json!(def.choices[0].value);
            }
            let result = t.validate(kind, &fields(v), &kind_of, RefPolicy::MustExist);
            assert_eq!(result, Ok(()), "{id}/{kind}");
        }
    }
}

/// (kind, change to the valid record, field named, code, Chinese part, English part)
type Case = (
    &'static str,
    Value,
    &'static str,
    ProblemCode,
    &'static str,
    &'static str,
);

fn invalid_cases() -> Vec<Case> {
    use ProblemCode::*;
    vec![
        (
            "interview",
            json!({"date": null}),
            "date",
            Required,
            "“谈话日期”（date）为必填项",
            "(date) is required",
        ),
        (
            "interview",
            json!({"date": "2026-02-30"}),
            "date",
            BadDate,
            "应为“年-月-日”格式的日期",
            "must be a date written YYYY-MM-DD",
        ),
        (
            "interview",
            json!({"date": "5月18日"}),
            "date",
            BadDate,
            "“5月18日”不是",
            "\"5月18日\" is not",
        ),
        (
            "interview",
            json!({"interviewee_type": "boss"}),
            "interviewee_type",
            NotAChoice,
            "“boss”不是可选项，可选：班子成员（member）",
            "\"boss\" is not one of the choices",
        ),
        (
            "interview",
            json!({"interviewee": UNKNOWN}),
            "interviewee",
            MissingReference,
            "不存在",
            "does not exist here",
        ),
        (
            "interview",
            json!({"interviewee": TEAM}),
            "interviewee",
            WrongReferenceKind,
            "应引用“member”记录",
            "must refer to a member record",
        ),
        (
            "interview",
            json!({"interviewee": "张三"}),
            "interviewee",
            BadReference,
            "应为记录编号，“张三”不是",
            "must be a record id",
        ),
        (
            "interview",
            json!({"notes": "   "}),
            "notes",
            Required,
            "为必填项",
            "is required",
        ),
        (
            "interview",
            json!({"interviewer": 7}),
            "interviewer",
            WrongType,
            "应为文字",
            "must be text",
        ),
        (
            "interview",
            json!({"interviewer": "很长".repeat(101)}),
            "interviewer",
            TooLong,
            "最多 200 个字，现有 202 个",
            "at most 200 characters, not 202",
        ),
        (
            "interview",
            json!({"mood": "好"}),
            "mood",
            UnknownField,
            "表单中没有字段 mood",
            "has no field \"mood\"",
        ),
        (
            "meeting",
            json!({"participants": 0}),
            "participants",
            BelowMin,
            "不能小于 1",
            "must be at least 1",
        ),
        (
            "meeting",
            json!({"participants": 12.5}),
            "participants",
            NotInteger,
            "应为整数",
            "must be a whole number",
        ),
        (
            "meeting",
            json!({"participants": "三十"}),
            "participants",
            WrongType,
            "应为数字",
            "must be a number",
        ),
        (
            "meeting",
            json!({"participant_categories": "party_member,aliens"}),
            "participant_categories",
            NotAChoice,
            "“aliens”不是可选项",
            "\"aliens\" is not one of the choices",
        ),
        (
            "meeting",
            json!({"meeting_type": null}),
            "meeting_type",
            Required,
            "为必填项",
            "is required",
        ),
        (
            "questionnaire",
            json!({"q_overall": "满意"}),
            "q_overall",
            NotAChoice,
            "“满意”不是可选项",
            "is not one of the choices",
        ),
        (
            "questionnaire",
            json!({"q_team_unity": null}),
            "q_team_unity",
            Required,
            "为必填项",
            "is required",
        ),
        (
            "evaluation",
            json!({"member_ratings": {MEMBER: "great"}}),
            "member_ratings",
            NotAChoice,
            "“great”不是可选项",
            "\"great\" is not one of the choices",
        ),
        (
            "evaluation",
            json!({"member_ratings": {TEAM: "satisfied"}}),
            "member_ratings",
            WrongReferenceKind,
            "应引用“member”记录",
            "must refer to a member record",
        ),
        (
            "evaluation",
            json!({"member_ratings": "satisfied"}),
            "member_ratings",
            WrongType,
            "应为对每名成员的评价",
            "must be a rating for each member",
        ),
        (
            "evaluation",
            json!({"member_ratings": {}}),
            "member_ratings",
            Required,
            "为必填项",
            "is required",
        ),
        (
            "document_review",
            json!({"documents": ""}),
            "documents",
            Required,
            "为必填项",
            "is required",
        ),
        (
            "document_review",
            json!({"compliant": "否"}),
            "compliant",
            WrongType,
            "应为是或否",
            "must be yes or no",
        ),
        (
            "prescreening",
            json!({"member": null}),
            "member",
            Required,
            "为必填项",
            "is required",
        ),
        (
            "prescreening",
            json!({"petitions": -1}),
            "petitions",
            BelowMin,
            "不能小于 0",
            "must be at least 0",
        ),
        (
            "finding",
            json!({"category": "weather"}),
            "category",
            NotAChoice,
            "“weather”不是可选项",
            "is not one of the choices",
        ),
        (
            "finding",
            json!({"level": null}),
            "level",
            Required,
            "为必填项",
            "is required",
        ),
        (
            "rectification",
            json!({"finding": MEMBER}),
            "finding",
            WrongReferenceKind,
            "应引用“finding”记录",
            "must refer to a finding record",
        ),
        (
            "rectification",
            json!({"deadline": "2026/12/31"}),
            "deadline",
            BadDate,
            "“2026/12/31”不是",
            "\"2026/12/31\" is not",
        ),
        (
            "rectification",
            json!({"status": "finished"}),
            "status",
            NotAChoice,
            "“finished”不是可选项",
            "is not one of the choices",
        ),
        (
            "assessment",
            json!({"rating": "excellent"}),
            "rating",
            NotAChoice,
            "可选：好（good）、正常（normal）、较差（poor）",
            "Good (good), Normal (normal), Poor (poor)",
        ),
        (
            "assessment",
            json!({"target": null}),
            "target",
            Required,
            "为必填项",
            "is required",
        ),
        (
            "star_rating",
            json!({"year": 1999}),
            "year",
            BelowMin,
            "不能小于 2000",
            "must be at least 2000",
        ),
        (
            "star_rating",
            json!({"stars": 5}),
            "stars",
            WrongType,
            "应为一个选项",
            "must be one of the choices",
        ),
        (
            "star_rating",
            json!({"village": MEMBER}),
            "village",
            WrongReferenceKind,
            "应引用“place”记录",
            "must refer to a place record",
        ),
    ]
}

#[test]
fn every_kind_refuses_bad_input_naming_the_field() {
    let t = Template::builtin("midterm").unwrap();
    for (kind, change, field, code, zh, en) in invalid_cases() {
        let mut v = valid(kind);
        for (k, x) in change.as_object().unwrap() {
            v[k] = x.clone();
        }
        let err = t
            .validate(kind, &fields(v), &kind_of, RefPolicy::MustExist)
            .expect_err(&format!("{kind} with {change} must be refused"));
        assert_eq!(err.problems.len(), 1, "{kind} {change}: {err}");
        let p = &err.problems[0];
        assert_eq!(
            (p.field.as_str(), p.code),
            (field, code),
            "{kind} {change}: {err}"
        );
        assert!(
            p.zh.contains(zh),
            "{kind} {change}: {:?} lacks {zh:?}",
            p.zh
        );
        assert!(
            p.en.contains(en),
            "{kind} {change}: {:?} lacks {en:?}",
            p.en
        );
        // The whole message names the field in both languages.
        let shown = err.to_string();
        assert!(shown.contains(field), "{shown}");
    }
}

#[test]
fn the_server_accepts_references_it_has_not_seen_yet() {
    let t = Template::builtin("midterm").unwrap();
    let mut v = valid("interview");
    v["interviewee"] = json!(UNKNOWN);
    assert_eq!(
        t.validate(
            "interview",
            &fields(v.clone()),
            &kind_of,
            RefPolicy::IfKnown
        ),
        Ok(())
    );
    assert!(
        t.validate("interview", &fields(v), &kind_of, RefPolicy::MustExist)
            .is_err()
    );
}

#[test]
fn several_problems_are_all_reported_in_form_order() {
    let t = Template::builtin("midterm").unwrap();
    let v = json!({"date": "yesterday", "interviewee_type": "member"});
    let err = t
        .validate("interview", &fields(v), &kind_of, RefPolicy::MustExist)
        .unwrap_err();
    let named: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(named, ["date", "interviewer", "notes"]);
}

#[test]
fn an_unknown_kind_is_named() {
    let t = Template::builtin("midterm").unwrap();
    let err = t
        .validate("picnic", &BTreeMap::new(), &kind_of, RefPolicy::MustExist)
        .unwrap_err();
    assert_eq!(err.problems[0].code, ProblemCode::UnknownKind);
    assert!(err.to_string().contains("picnic"));
}

const HEAD: &str = "id = \"t\"\nversion = 1\nname.zh = \"测试\"\nname.en = \"Test\"\n";

#[test]
fn broken_templates_name_the_line_and_the_field() {
    // (template after HEAD, line, path, part of the English message)
    let cases: &[(&str, usize, &str, &str)] = &[
        (
            "[kinds.visit]\nlabel = { zh = \"走访\", en = \"Visit\" }\n[[kinds.visit.fields]]\nname = \"mood\"\ntype = \"choice\"\nlabel = { zh = \"情绪\", en = \"Mood\" }\n",
            7,
            "kinds.visit.fields.mood",
            "a choice field needs choices",
        ),
        (
            "[kinds.visit]\nlabel = { zh = \"走访\", en = \"Visit\" }\n[[kinds.visit.fields]]\nname = \"when\"\ntype = \"date\"\nrequried = true\nlabel = { zh = \"日期\", en = \"Date\" }\n",
            10,
            "",
            "unknown field `requried`",
        ),
        (
            "[kinds.visit]\nlabel = { zh = \"走访\", en = \"Visit\" }\n[[kinds.visit.fields]]\nname = \"who\"\ntype = \"person\"\nlabel = { zh = \"人\", en = \"Who\" }\n",
            9,
            "",
            "unknown variant `person`",
        ),
        (
            "[kinds.visit]\nlabel = { zh = \"走访\", en = \"Visit\" }\n[[kinds.visit.fields]]\nname = \"who\"\ntype = \"ref\"\nto = \"person\"\nlabel = { zh = \"人\", en = \"Who\" }\n",
            7,
            "kinds.visit.fields.who",
            "refers to a kind \"person\"",
        ),
        (
            "[kinds.visit]\nlabel = { zh = \"走访\", en = \"Visit\" }\nkey = [\"day\"]\n[[kinds.visit.fields]]\nname = \"day\"\ntype = \"date\"\nlabel = { zh = \"日期\", en = \"Day\" }\n",
            5,
            "kinds.visit.key",
            "key field \"day\" must be a required",
        ),
        (
            "[kinds.member]\nlabel = { zh = \"成员\", en = \"Member\" }\n",
            5,
            "kinds.member",
            "built-in reference kind",
        ),
        (
            "[kinds.visit]\nlabel = { zh = \"走访\", en = \"Visit\" }\n[[kinds.visit.fields]]\nname = \"n\"\ntype = \"number\"\nmin = 5\nmax = 1\nlabel = { zh = \"数\", en = \"N\" }\n",
            7,
            "kinds.visit.fields.n",
            "min (5) is larger than max (1)",
        ),
        (
            "[kinds.visit]\nlabel = { zh = \"走访\", en = \"Visit\" }\n[[kinds.visit.fields]]\nname = \"Mood\"\ntype = \"text\"\nlabel = { zh = \"情绪\", en = \"Mood\" }\n",
            7,
            "kinds.visit.fields.Mood",
            "a field name takes lowercase letters",
        ),
        ("[kinds.visit\n", 5, "", "cannot be read"),
    ];
    for (body, line, path, en) in cases {
        let err = Template::parse(&format!("{HEAD}{body}")).expect_err(body);
        assert_eq!(err.line, Some(*line), "{err}");
        assert_eq!(err.path, *path, "{err}");
        assert!(err.en.contains(en), "{err} lacks {en:?}");
        let shown = err.to_string();
        assert!(shown.contains(&format!("模板第 {line} 行")), "{shown}");
        assert!(shown.contains(&format!("template line {line}")), "{shown}");
    }
    let err =
        Template::parse("id = \"t\"\nversion = 0\nname.zh = \"x\"\nname.en = \"x\"\n").unwrap_err();
    assert_eq!((err.line, err.path.as_str()), (Some(2), "version"));
}

#[test]
fn singleton_keys_come_from_the_key_fields() {
    let t = Template::builtin("midterm").unwrap();
    let f = fields(valid("star_rating"));
    assert_eq!(
        t.singleton_key("star_rating", &f),
        Some(format!("{PLACE}/2026"))
    );
    assert_eq!(
        t.singleton_key("interview", &fields(valid("interview"))),
        None
    );
}

#[test]
fn an_attachments_field_takes_references_of_the_accepted_types_and_sizes() {
    use fieldsync_protocol::attachment::{AttachmentRef, sha256_hex};
    use fieldsync_protocol::template::NoRecords;
    let t = Template::parse(&format!(
        "{HEAD}[kinds.visit]\nlabel = {{ zh = \"走访\", en = \"Visit\" }}\n[[kinds.visit.fields]]\nname = \"photos\"\ntype = \"attachments\"\naccept = [\"image/*\", \"application/pdf\"]\nmax_bytes = 1000\nlabel = {{ zh = \"照片\", en = \"Photos\" }}\n"
    ))
    .unwrap();
    let sha = sha256_hex(b"photo");
    let reference = |media_type: &str, size: u64| AttachmentRef {
        sha256: sha.clone(),
        media_type: media_type.into(),
        size,
        name: "会议记录.jpg".into(),
        by: "dev-1".into(),
        at: 1,
    };
    let with = |key: &str, description: String| {
        BTreeMap::from([(
            "photos".to_string(),
            FieldValue::Map(BTreeMap::from([(key.to_string(), description)])),
        )])
    };
    let check = |f: &BTreeMap<String, FieldValue>| {
        t.validate("visit", f, &NoRecords, RefPolicy::IfKnown)
            .map_err(|e| e.problems.into_iter().map(|p| p.code).collect::<Vec<_>>())
    };
    assert_eq!(
        check(&with(&sha, reference("image/jpeg", 999).description())),
        Ok(())
    );
    assert_eq!(
        check(&with(
            &sha,
            reference("application/pdf", 1000).description()
        )),
        Ok(())
    );
    assert_eq!(
        check(&with(&sha, reference("audio/mpeg", 10).description())),
        Err(vec![ProblemCode::AttachmentType])
    );
    assert_eq!(
        check(&with(&sha, reference("image/png", 1001).description())),
        Err(vec![ProblemCode::AttachmentTooLarge])
    );
    assert_eq!(
        check(&with("not-a-hash", reference("image/png", 1).description())),
        Err(vec![ProblemCode::BadAttachment])
    );
    assert_eq!(
        check(&with(&sha, "{}".into())),
        Err(vec![ProblemCode::BadAttachment])
    );
    // accept and max_bytes belong to attachments fields only, and must make sense.
    for (field, en) in [
        (
            "type = \"text\"\naccept = [\"image/*\"]",
            "takes no accept or max_bytes",
        ),
        (
            "type = \"attachments\"\naccept = [\"jpeg\"]",
            "is not a media type",
        ),
    ] {
        let err = Template::parse(&format!(
            "{HEAD}[kinds.visit]\nlabel = {{ zh = \"走访\", en = \"Visit\" }}\n[[kinds.visit.fields]]\nname = \"photos\"\n{field}\nlabel = {{ zh = \"照片\", en = \"Photos\" }}\n"
        ))
        .expect_err(field);
        assert!(err.en.contains(en), "{err} lacks {en:?}");
        assert_eq!(err.path, "kinds.visit.fields.photos");
    }
}
