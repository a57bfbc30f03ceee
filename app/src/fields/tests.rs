//! Rendering and parsing of every field type.

use super::*;
use fieldsync_protocol::template::Template;

fn kind(name: &str) -> KindDef {
    Template::builtin("midterm")
        .expect("built-in")
        .kind(name)
        .expect("kind")
        .clone()
}

fn field(kind_name: &str, field: &str) -> FieldDef {
    kind(kind_name).field(field).expect("field").clone()
}

fn typed(pairs: &[(&str, &str)]) -> Typed {
    typed_from_pairs(
        pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect(),
    )
}

fn render(f: &FieldDef, t: &Typed, o: &Options, p: &Problems) -> String {
    render_field(Lang::default(), f, t, o, p).into_string()
}

const M1: &str = "0190c5f0-0000-7000-8000-000000000001";
const M2: &str = "0190c5f0-0000-7000-8000-000000000002";

fn members() -> Options {
    let mut o = Options::new();
    let list = vec![
        (M1.to_string(), "张一".to_string()),
        (M2.to_string(), "李二".to_string()),
    ];
    o.insert("member_ratings".into(), list.clone());
    o.insert("interviewee".into(), list.clone());
    o.insert("villages".into(), list);
    o
}

#[test]
fn only_prefixed_inputs_are_fields() {
    let t = typed_from_pairs(vec![
        ("csrf".into(), "x".into()),
        ("action".into(), "save".into()),
        ("f.notes".into(), "a".into()),
        ("f.cats".into(), "1".into()),
        ("f.cats".into(), "2".into()),
    ]);
    assert_eq!(t.len(), 2);
    assert_eq!(t["cats"], vec!["1", "2"]);
}

#[test]
fn text_renders_escaped_and_parses_as_a_string() {
    let f = field("interview", "interviewer");
    let t = typed(&[("interviewer", "王\"><script>")]);
    let html = render(&f, &t, &Options::new(), &Problems::new());
    assert!(html.contains(r#"type="text""#) && html.contains(r#"name="f.interviewer""#));
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("span class=\"req\""), "required mark: {html}");
    assert!(
        html.contains("工作组参加谈话的人员姓名"),
        "help text: {html}"
    );
    let k = kind("interview");
    let (v, p) = parse(&k, &t);
    assert!(p.is_empty());
    assert_eq!(v["interviewer"], FieldValue::Str("王\"><script>".into()));
}

#[test]
fn long_text_is_a_big_textarea_and_an_automerge_text() {
    let f = field("interview", "notes");
    let note = "村集体经济收入不高，".repeat(50);
    let t = typed(&[("notes", &note)]);
    let html = render(&f, &t, &Options::new(), &Problems::new());
    assert!(html.contains("<textarea class=\"long\""), "{html}");
    assert!(html.contains(&note));
    let (v, _) = parse(&kind("interview"), &t);
    assert_eq!(v["notes"], FieldValue::Text(note));
}

#[test]
fn number_has_its_range_and_refuses_words() {
    let f = field("meeting", "participants");
    let html = render(&f, &Typed::new(), &Options::new(), &Problems::new());
    assert!(html.contains(r#"type="number""#) && html.contains(r#"min="1""#));
    assert!(html.contains(r#"step="1""#));
    let k = kind("meeting");
    let (v, p) = parse(&k, &typed(&[("participants", "12")]));
    assert!(p.is_empty());
    assert_eq!(v["participants"], FieldValue::Int(12));
    let (v, p) = parse(&k, &typed(&[("participants", "十二")]));
    assert!(!v.contains_key("participants"));
    let (zh, en) = &p["participants"][0];
    assert!(zh.contains("参会人数") && zh.contains("不是数字"), "{zh}");
    assert!(en.contains("not a number"), "{en}");
}

#[test]
fn date_is_a_date_input() {
    let f = field("interview", "date");
    let t = typed(&[("date", "2026-05-18")]);
    let html = render(&f, &t, &Options::new(), &Problems::new());
    assert!(html.contains(r#"type="date""#) && html.contains(r#"value="2026-05-18""#));
    let (v, _) = parse(&kind("interview"), &t);
    assert_eq!(v["date"], FieldValue::Str("2026-05-18".into()));
}

#[test]
fn bool_is_yes_no_and_optional_may_stay_unanswered() {
    let f = field("document_review", "compliant");
    let html = render(
        &f,
        &typed(&[("compliant", "no")]),
        &Options::new(),
        &Problems::new(),
    );
    assert!(html.contains(r#"value="no" checked"#), "{html}");
    assert_eq!(f.required, html.matches("不填").count() == 0);
    let k = kind("document_review");
    assert_eq!(
        parse(&k, &typed(&[("compliant", "yes")])).0["compliant"],
        FieldValue::Bool(true)
    );
    assert_eq!(
        parse(&k, &typed(&[("compliant", "no")])).0["compliant"],
        FieldValue::Bool(false)
    );
    assert!(
        !parse(&k, &typed(&[("compliant", "")]))
            .0
            .contains_key("compliant")
    );
}

#[test]
fn choice_is_radios_by_label_and_stores_the_value() {
    let f = field("questionnaire", "respondent_category");
    let html = render(
        &f,
        &typed(&[("respondent_category", "villager")]),
        &Options::new(),
        &Problems::new(),
    );
    assert!(html.contains(r#"value="villager" checked"#), "{html}");
    assert!(html.contains("普通群众"));
    let k = kind("questionnaire");
    let (v, _) = parse(&k, &typed(&[("respondent_category", "party_member")]));
    assert_eq!(
        v["respondent_category"],
        FieldValue::Str("party_member".into())
    );
    let (_, p) = parse(&k, &typed(&[("respondent_category", "alien")]));
    assert!(p["respondent_category"][0].0.contains("不是可选项"));
    let en = render_field(
        Lang { en: true },
        &f,
        &Typed::new(),
        &Options::new(),
        &Problems::new(),
    )
    .into_string();
    assert!(en.contains("Villager") && !en.contains("普通群众"));
}

#[test]
fn multi_choice_is_check_boxes_joined_in_template_order() {
    let f = field("meeting", "participant_categories");
    let t = typed(&[
        ("participant_categories", "villager_rep"),
        ("participant_categories", "party_member"),
    ]);
    let html = render(&f, &t, &Options::new(), &Problems::new());
    assert_eq!(html.matches(r#"type="checkbox""#).count(), f.choices.len());
    assert_eq!(html.matches("checked").count(), 2);
    let (v, _) = parse(&kind("meeting"), &t);
    assert_eq!(
        v["participant_categories"],
        FieldValue::Str("villager_rep,party_member".into())
    );
    assert_eq!(
        typed_from_record(&kind("meeting"), &v)["participant_categories"],
        vec!["villager_rep", "party_member"]
    );
}

#[test]
fn ratings_are_a_grid_of_members_by_choice() {
    let f = field("evaluation", "member_ratings");
    let o = members();
    let t = typed(&[
        (&format!("member_ratings.{M1}"), "satisfied"),
        (&format!("member_ratings.{M2}"), "unsatisfied"),
    ]);
    let html = render(&f, &t, &o, &Problems::new());
    assert!(html.contains("<table class=\"grid\""), "{html}");
    assert!(html.contains("张一") && html.contains("李二"));
    for c in &f.choices {
        assert!(html.contains(&c.zh), "column {}", c.zh);
    }
    assert_eq!(html.matches(r#"type="radio""#).count(), 2 * f.choices.len());
    assert!(html.contains(&format!(
        r#"name="f.member_ratings.{M1}" value="satisfied" checked"#
    )));
    let k = kind("evaluation");
    let (v, p) = parse(&k, &t);
    assert!(p.is_empty(), "{p:?}");
    let FieldValue::Map(m) = &v["member_ratings"] else {
        panic!("{v:?}")
    };
    assert_eq!(m[M1], "satisfied");
    assert_eq!(m[M2], "unsatisfied");
    assert_eq!(typed_from_record(&k, &v), t);
    let shown = display_value(Lang::default(), &f, &v["member_ratings"], &|id| {
        (id == M1).then(|| "张一".to_string())
    });
    assert!(shown.contains("张一：满意"), "{shown}");
}

#[test]
fn ref_is_a_select_of_records_by_name() {
    let f = field("interview", "interviewee");
    let o = members();
    let html = render(&f, &typed(&[("interviewee", M2)]), &o, &Problems::new());
    assert!(html.contains("<select"));
    assert!(
        html.contains(&format!(r#"<option value="{M2}" selected>李二</option>"#)),
        "{html}"
    );
    let (v, _) = parse(&kind("interview"), &typed(&[("interviewee", M2)]));
    assert_eq!(v["interviewee"], FieldValue::Str(M2.into()));
    let shown = display_value(Lang::default(), &f, &v["interviewee"], &|_| {
        Some("李二".into())
    });
    assert_eq!(shown, "李二");
}

#[test]
fn refs_are_check_boxes_joined() {
    let wg = Template::builtin("midterm")
        .expect("built-in")
        .kind("work_group")
        .expect("k")
        .clone();
    let f = wg.field("villages").expect("field").clone();
    let t = typed(&[("villages", M1), ("villages", M2)]);
    let html = render(&f, &t, &members(), &Problems::new());
    assert_eq!(html.matches("checked").count(), 2, "{html}");
    let (v, _) = parse(&wg, &t);
    assert_eq!(v["villages"], FieldValue::Str(format!("{M1},{M2}")));
}

#[test]
fn problems_show_at_their_field() {
    let f = field("interview", "date");
    let mut p = Problems::new();
    p.insert("date".into(), vec![("日期不对".into(), "bad date".into())]);
    let html = render(&f, &typed(&[("date", "5月18日")]), &Options::new(), &p);
    assert!(html.contains("class=\"field bad\""), "{html}");
    assert!(html.contains("日期不对") && html.contains("5月18日"));
    let clean = render(&f, &Typed::new(), &Options::new(), &Problems::new());
    assert!(!clean.contains("bad") && !clean.contains("problem"));
}
