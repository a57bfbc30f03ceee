//! The push pipeline on plain facts: each refusal for the reason it names, duplicates counted
//! once, and later records of a push seeing what earlier ones stored.

use automerge::{ActorId, transaction::CommitOptions};
use fieldsync_protocol::{FieldValue, RecordHeader, record};
use uuid::Uuid;

use super::*;
use crate::storage::{CheckedPush, CheckedRecord};

const VILLAGE: &str = "510100001001";

fn header(scope: &str) -> RecordHeader {
    RecordHeader {
        id: Uuid::now_v7(),
        kind: "interview".into(),
        campaign: Uuid::from_u128(7),
        scope: scope.into(),
    }
}

/// A record's genesis and one edit by `actor`, checked as a push would be.
fn record_with_edit(header: &RecordHeader, actor: &ActorId, note: &str) -> CheckedRecord {
    let (mut doc, genesis) = record::genesis_change(header).unwrap();
    doc.set_actor(actor.clone());
    let fields = record::fields_obj(&doc).unwrap();
    let mut tx = doc.transaction();
    record::put_field(&mut tx, &fields, "notes", &FieldValue::Text(note.into())).unwrap();
    tx.commit_with(CommitOptions::default().with_time(1));
    let edit = doc.get_last_local_change().unwrap().raw_bytes().to_vec();
    let changes = decode::changes(header, vec![genesis.into(), edit.into()]).unwrap();
    CheckedRecord {
        header: header.clone(),
        changes,
    }
}

fn push_of(device: Uuid, actor: &ActorId, records: Vec<CheckedRecord>) -> CheckedPush {
    CheckedPush {
        device,
        actors: vec![actor.to_bytes().to_vec()],
        records,
    }
}

fn run(pusher: &Pusher, push: CheckedPush, facts: &Facts) -> Result<Plan, PushRefused> {
    let keys = keys(&push, facts);
    plan(pusher, push, facts, &keys)
}

#[test]
fn a_new_push_is_stored_whole_and_its_actor_registered() {
    let device = Uuid::now_v7();
    let actor = ActorId::random();
    let push = push_of(
        device,
        &actor,
        vec![record_with_edit(&header(VILLAGE), &actor, "一")],
    );
    let w = wanted(&push);
    assert_eq!(w.records.len(), 1);
    assert_eq!(w.hashes.len(), 2);
    assert_eq!(w.actors, vec![actor.to_bytes().to_vec()]);
    let plan = run(&Pusher::admin(device), push, &Facts::default()).unwrap();
    assert_eq!((plan.stored, plan.duplicates), (2, 0));
    assert_eq!(plan.actors, vec![(actor.to_bytes().to_vec(), device)]);
    assert!(plan.records[0].new);
    assert!(plan.rejected.is_empty());
}

#[test]
fn stored_and_repeated_changes_are_duplicates() {
    let device = Uuid::now_v7();
    let actor = ActorId::random();
    let rec = record_with_edit(&header(VILLAGE), &actor, "一");
    let mut facts = Facts::default();
    facts.known.insert(rec.changes[0].hash);
    facts.headers.insert(rec.header.id, rec.header.clone());
    let again = rec.clone();
    let plan = run(
        &Pusher::admin(device),
        push_of(device, &actor, vec![rec, again]),
        &facts,
    )
    .unwrap();
    assert_eq!((plan.stored, plan.duplicates), (1, 3));
    assert_eq!(plan.records.len(), 1);
    assert!(!plan.records[0].new);
}

#[test]
fn a_contradicting_header_or_a_reused_sequence_number_refuses_that_record_alone() {
    let device = Uuid::now_v7();
    let actor = ActorId::random();
    let moved = record_with_edit(&header(VILLAGE), &actor, "一");
    let reused = record_with_edit(&header(VILLAGE), &actor, "二");
    let fine = record_with_edit(&header(VILLAGE), &actor, "三");
    let mut facts = Facts::default();
    let mut elsewhere = moved.header.clone();
    elsewhere.scope = "510100001002".into();
    facts.headers.insert(moved.header.id, elsewhere);
    let edit = &reused.changes[1];
    facts
        .sequences
        .insert((reused.header.id, edit.actor.clone(), edit.seq), [9; 32]);
    let (moved_id, reused_id) = (moved.header.id, reused.header.id);
    let plan = run(
        &Pusher::admin(device),
        push_of(device, &actor, vec![moved, reused, fine]),
        &facts,
    )
    .unwrap();
    let codes: Vec<(String, &str)> = plan
        .rejected
        .iter()
        .map(|r| (r.id.clone(), r.code.as_str()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (moved_id.to_string(), "header_mismatch"),
            (reused_id.to_string(), "duplicate_sequence_number")
        ]
    );
    assert_eq!(plan.stored, 2, "the third record is stored");
}

#[test]
fn a_claimed_actor_or_a_record_outside_the_scope_refuses_the_whole_push() {
    let device = Uuid::now_v7();
    let actor = ActorId::random();
    let rec = record_with_edit(&header(VILLAGE), &actor, "一");
    let mut facts = Facts::default();
    facts
        .owners
        .insert(actor.to_bytes().to_vec(), Uuid::now_v7());
    let err = run(
        &Pusher::admin(device),
        push_of(device, &actor, vec![rec.clone()]),
        &facts,
    )
    .unwrap_err();
    assert_eq!(err.code, "forged_actor");

    let leader = Pusher {
        device,
        name: "组长".into(),
        role: Role::Leader,
        scope: WireScope {
            all: false,
            campaign: Some(rec.header.campaign.to_string()),
            places: vec!["510100001002".into()],
            write: true,
        },
    };
    let push = push_of(device, &actor, vec![rec.clone()]);
    assert_eq!(admit(&leader, &push).unwrap_err().code, "out_of_scope");
    let err = run(&leader, push, &Facts::default()).unwrap_err();
    assert_eq!(err.code, "out_of_scope");
    assert!(err.hint.is_some());
    let other = push_of(Uuid::now_v7(), &actor, vec![rec]);
    assert_eq!(
        run(&Pusher::admin(device), other, &Facts::default())
            .unwrap_err()
            .code,
        "device_mismatch"
    );
}

#[test]
fn another_devices_untagged_change_is_refused_unless_the_recovery_window_is_open() {
    let device = Uuid::now_v7();
    let author = Uuid::now_v7();
    let own = ActorId::random();
    let theirs = ActorId::random();
    let rec = record_with_edit(&header(VILLAGE), &theirs, "别人写的");
    let mut facts = Facts::default();
    facts.owners.insert(theirs.to_bytes().to_vec(), author);
    let plan = run(
        &Pusher::admin(device),
        push_of(device, &own, vec![rec.clone()]),
        &facts,
    )
    .unwrap();
    assert_eq!(plan.rejected[0].code, "unverified_relay");
    assert_eq!(plan.stored, 0);

    facts.recovering = true;
    let plan = run(
        &Pusher::admin(device),
        push_of(device, &own, vec![rec]),
        &facts,
    )
    .unwrap();
    assert!(plan.rejected.is_empty());
    assert_eq!((plan.stored, plan.unverified_relays), (2, 1));
}

/// A record's genesis by another device and a review decision on it by `actor`.
fn record_with_decision(header: &RecordHeader, actor: &ActorId, also_edit: bool) -> CheckedRecord {
    let (mut doc, genesis) = record::genesis_change(header).unwrap();
    doc.set_actor(actor.clone());
    let fields = record::fields_obj(&doc).unwrap();
    let mut tx = doc.transaction();
    for (k, v) in fieldsync_protocol::approval::decision(
        fieldsync_protocol::approval::State::Approved,
        "",
        "组织部干部科",
        1,
    ) {
        record::put_field(&mut tx, &fields, &k, &v).unwrap();
    }
    if also_edit {
        record::put_field(&mut tx, &fields, "topic", &FieldValue::Str("改过".into())).unwrap();
    }
    tx.commit_with(CommitOptions::default().with_time(1));
    let edit = doc.get_last_local_change().unwrap().raw_bytes().to_vec();
    let mut changes = decode::changes(header, vec![genesis.into(), edit.into()]).unwrap();
    // The record is on the server already: the viewer sends only its decision.
    changes.remove(0);
    CheckedRecord {
        header: header.clone(),
        changes,
    }
}

#[test]
fn a_viewer_writes_review_decisions_only_and_only_where_the_template_lets_viewers_review() {
    use fieldsync_protocol::template::{MIDTERM_SOURCE, Template};
    let device = Uuid::now_v7();
    let actor = ActorId::random();
    let viewer = Pusher {
        device,
        name: "组织部干部科".into(),
        role: fieldsync_protocol::auth::Role::Viewer,
        scope: fieldsync_protocol::auth::WireScope::everything(false),
    };
    assert!(may_write(&viewer).is_ok(), "a viewer's push is looked at");
    let h = header(VILLAGE);
    let mut facts = Facts::default();
    facts.headers.insert(h.id, h.clone());
    let decision = || {
        push_of(
            device,
            &actor,
            vec![record_with_decision(&h, &actor, false)],
        )
    };

    // No template, or one that keeps review to leaders: refused whole, read only.
    let e = run(&viewer, decision(), &facts).unwrap_err();
    assert_eq!(e.code, "read_only");
    facts.templates.insert(
        h.campaign,
        std::sync::Arc::new(Template::parse(MIDTERM_SOURCE).unwrap()),
    );
    let e = run(&viewer, decision(), &facts).unwrap_err();
    assert_eq!(e.code, "read_only");
    assert!(e.message.contains("viewers review"), "{}", e.message);

    // Where the template lets viewers review: the decision is stored.
    let open = format!("{MIDTERM_SOURCE}\n[review]\nviewers = true\n");
    facts.templates.insert(
        h.campaign,
        std::sync::Arc::new(Template::parse(&open).unwrap()),
    );
    let plan = run(&viewer, decision(), &facts).unwrap();
    assert_eq!(plan.stored, 1);
    assert!(plan.rejected.is_empty(), "{:?}", plan.rejected);

    // A decision with another field in the same change, or a new record: refused whole.
    let mixed = push_of(device, &actor, vec![record_with_decision(&h, &actor, true)]);
    let e = run(&viewer, mixed, &facts).unwrap_err();
    assert!(e.message.contains("nothing else"), "{}", e.message);
    let fresh = header(VILLAGE);
    facts.templates.insert(
        fresh.campaign,
        std::sync::Arc::new(Template::parse(&open).unwrap()),
    );
    let created = push_of(
        device,
        &actor,
        vec![record_with_edit(&fresh, &actor, "查看人员新建")],
    );
    assert_eq!(run(&viewer, created, &facts).unwrap_err().code, "read_only");
    // A decision alone on a record the server does not hold would make it: refused.
    let phantom = push_of(
        device,
        &actor,
        vec![record_with_decision(&fresh, &actor, false)],
    );
    let e = run(&viewer, phantom, &facts).unwrap_err();
    assert!(e.message.contains("already holds"), "{}", e.message);
    // Nor are the department's reference data reviewed.
    let member = RecordHeader {
        kind: "member".into(),
        ..header(VILLAGE)
    };
    facts.headers.insert(member.id, member.clone());
    let on_member = push_of(
        device,
        &actor,
        vec![record_with_decision(&member, &actor, false)],
    );
    assert_eq!(
        run(&viewer, on_member, &facts).unwrap_err().code,
        "read_only"
    );
}
