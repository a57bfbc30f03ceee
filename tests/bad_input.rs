//! Bad input gets a clear 4xx JSON error, nothing of it is stored, and the server keeps serving.

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_client_core::{FieldValue, Store};
use fieldsync_protocol::wire::{self, CBOR_CONTENT_TYPE, PUSH_PATH, PushRequest};
use reqwest::blocking::Client;
use serde_bytes::ByteBuf;
use uuid::Uuid;

fn a_valid_push() -> Result<PushRequest> {
    let mut store = Store::open_in_memory()?;
    store.create(
        "interview",
        Uuid::from_u128(9),
        "350102001",
        &[("notes", FieldValue::Text("谈话记录".into()))],
    )?;
    Ok(store.outbox_batch(0, 1 << 20)?.unwrap().request)
}

struct Refusal {
    status: u16,
    code: String,
    message: String,
}

fn post(
    server: &TestServer,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> Result<Refusal> {
    let mut req = Client::new()
        .post(format!("{}{}", server.url(), PUSH_PATH))
        .bearer_auth(&server.admin_token)
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    let resp = req.send()?;
    let status = resp.status().as_u16();
    assert_eq!(
        resp.headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("")),
        Some("application/json"),
        "errors are JSON"
    );
    let body: serde_json::Value = resp.json()?;
    Ok(Refusal {
        status,
        code: body["error"]["code"].as_str().unwrap_or_default().into(),
        message: body["error"]["message"].as_str().unwrap_or_default().into(),
    })
}

fn assert_nothing_stored_and_still_serving(server: &TestServer) -> Result<()> {
    let status = server.get_json("/v1/status")?;
    assert_eq!(status["changes"], 0);
    assert_eq!(status["records"], 0);
    assert_eq!(server.get_json("/health")?["status"], "ok");
    Ok(())
}

#[test]
fn a_body_that_is_not_cbor_is_a_400() -> Result<()> {
    let server = TestServer::start()?;
    let r = post(
        &server,
        CBOR_CONTENT_TYPE,
        None,
        b"{\"records\": []}".to_vec(),
    )?;
    assert_eq!((r.status, r.code.as_str()), (400, "invalid_body"));
    assert!(
        r.message.contains("not a valid push message"),
        "{}",
        r.message
    );
    let r = post(
        &server,
        CBOR_CONTENT_TYPE,
        Some("gzip"),
        b"not gzip at all".to_vec(),
    )?;
    assert_eq!((r.status, r.code.as_str()), (400, "invalid_body"));
    assert!(r.message.contains("gzip"), "{}", r.message);
    assert_nothing_stored_and_still_serving(&server)
}

#[test]
fn bytes_that_are_not_an_automerge_change_are_a_422_and_nothing_of_the_push_is_stored() -> Result<()>
{
    let server = TestServer::start()?;
    let mut push = a_valid_push()?;
    // The first change is fine; the second is corrupted by one byte.
    let last = push.records[0].changes.len() - 1;
    let bytes = push.records[0].changes[last].as_mut();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    let r = post(
        &server,
        CBOR_CONTENT_TYPE,
        Some("gzip"),
        wire::gzip(&wire::encode(&push)),
    )?;
    assert_eq!((r.status, r.code.as_str()), (422, "invalid_change"));
    assert!(
        r.message.contains(&format!("change {last} of record")),
        "{}",
        r.message
    );

    let mut push = a_valid_push()?;
    push.records[0]
        .changes
        .push(ByteBuf::from(b"hello".to_vec()));
    let r = post(&server, CBOR_CONTENT_TYPE, None, wire::encode(&push))?;
    assert_eq!((r.status, r.code.as_str()), (422, "invalid_change"));
    assert!(
        r.message.contains("not an Automerge change"),
        "{}",
        r.message
    );
    assert_nothing_stored_and_still_serving(&server)
}

#[test]
fn a_forged_genesis_or_a_bad_header_is_refused() -> Result<()> {
    let server = TestServer::start()?;
    // Same changes, but the header claims another village: the genesis no longer matches.
    let mut push = a_valid_push()?;
    push.records[0].scope = "350102999".into();
    let r = post(&server, CBOR_CONTENT_TYPE, None, wire::encode(&push))?;
    assert_eq!((r.status, r.code.as_str()), (422, "invalid_change"));
    assert!(
        r.message
            .contains("no dependencies but is not the record's genesis"),
        "{}",
        r.message
    );

    let mut push = a_valid_push()?;
    push.records[0].kind = "Interview Notes".into();
    let r = post(&server, CBOR_CONTENT_TYPE, None, wire::encode(&push))?;
    assert_eq!((r.status, r.code.as_str()), (422, "invalid_record"));
    assert!(r.message.contains("kind"), "{}", r.message);

    let mut push = a_valid_push()?;
    push.device = "my phone".into();
    let r = post(&server, CBOR_CONTENT_TYPE, None, wire::encode(&push))?;
    assert_eq!((r.status, r.code.as_str()), (400, "invalid_body"));
    assert!(r.message.contains("not a UUID"), "{}", r.message);

    let mut push = a_valid_push()?;
    push.v = 99;
    let r = post(&server, CBOR_CONTENT_TYPE, None, wire::encode(&push))?;
    assert_eq!((r.status, r.code.as_str()), (400, "unsupported_version"));
    assert!(r.message.contains("version 99"), "{}", r.message);
    assert_nothing_stored_and_still_serving(&server)
}

#[test]
fn a_compact_creation_that_is_cut_short_altered_or_not_this_records_is_refused() -> Result<()> {
    let server = TestServer::start()?;
    let compact = || -> Result<PushRequest> {
        let mut push = a_valid_push()?;
        assert_eq!(push.compact_creations(), 1);
        assert_eq!(push.v, wire::COMPACT_VERSION);
        Ok(push)
    };
    // In a push that says version 1: a server of version 1 would have ignored it.
    let mut push = compact()?;
    push.v = wire::PROTOCOL_VERSION;
    let r = post(&server, CBOR_CONTENT_TYPE, None, wire::encode(&push))?;
    assert_eq!((r.status, r.code.as_str()), (400, "unsupported_version"));
    assert!(r.message.contains("\"v\": 2"), "{}", r.message);
    // Shorter than its checksum.
    let mut push = compact()?;
    push.records[0].created = Some(ByteBuf::from(vec![1, 2]));
    let r = post(&server, CBOR_CONTENT_TYPE, None, wire::encode(&push))?;
    assert_eq!((r.status, r.code.as_str()), (422, "invalid_change"));
    assert!(r.message.contains("4-byte checksum"), "{}", r.message);
    // One character of the note altered (谈 to 谊, still UTF-8): the rebuilt change's checksum
    // no longer matches.
    let mut push = compact()?;
    let created = push.records[0].created.as_mut().unwrap();
    let at = created
        .windows(3)
        .position(|w| w == "谈".as_bytes())
        .expect("the note's first character");
    created[at + 2] ^= 0x01;
    let r = post(&server, CBOR_CONTENT_TYPE, None, wire::encode(&push))?;
    assert_eq!((r.status, r.code.as_str()), (422, "invalid_change"));
    assert!(r.message.contains("checksum"), "{}", r.message);
    // Sent under another record's id: rebuilt on that record's genesis, whose hash the change
    // does not depend on, so its checksum fails too.
    let mut push = compact()?;
    push.records[0].id = Uuid::now_v7().to_string();
    let r = post(&server, CBOR_CONTENT_TYPE, None, wire::encode(&push))?;
    assert_eq!((r.status, r.code.as_str()), (422, "invalid_change"));
    // The same push whole is stored (sent as the administrator's device, whose token it is).
    let mut push = compact()?;
    push.device = server.admin_device.to_string();
    let r = Client::new()
        .post(format!("{}{}", server.url(), PUSH_PATH))
        .bearer_auth(&server.admin_token)
        .header("content-type", CBOR_CONTENT_TYPE)
        .body(wire::encode(&push))
        .send()?;
    assert_eq!(r.status(), 200);
    let answer: wire::PushResponse = wire::decode(&r.bytes()?, "push response")?;
    assert_eq!((answer.stored, answer.duplicates), (2, 0));
    Ok(())
}

#[test]
fn a_wrong_content_type_or_encoding_is_a_415() -> Result<()> {
    let server = TestServer::start()?;
    let body = wire::encode(&a_valid_push()?);
    let r = post(&server, "application/json", None, body.clone())?;
    assert_eq!((r.status, r.code.as_str()), (415, "unsupported_media_type"));
    assert!(r.message.contains("application/cbor"), "{}", r.message);
    let r = post(&server, CBOR_CONTENT_TYPE, Some("br"), body)?;
    assert_eq!((r.status, r.code.as_str()), (415, "unsupported_encoding"));
    assert_nothing_stored_and_still_serving(&server)
}

#[test]
fn an_oversized_push_is_a_413() -> Result<()> {
    let server = TestServer::start()?;
    // Past the compressed limit.
    let big = vec![7u8; wire::MAX_COMPRESSED_PUSH_BYTES + 1024];
    let r = post(&server, CBOR_CONTENT_TYPE, None, big)?;
    assert_eq!((r.status, r.code.as_str()), (413, "too_large"));
    // A small gzip body that inflates past the decompressed limit (a zip bomb).
    let bomb = wire::gzip(&vec![0u8; wire::MAX_PUSH_BYTES + 1]);
    assert!(bomb.len() < 1 << 20);
    let r = post(&server, CBOR_CONTENT_TYPE, Some("gzip"), bomb)?;
    assert_eq!((r.status, r.code.as_str()), (413, "too_large"));
    assert_nothing_stored_and_still_serving(&server)
}

#[test]
fn bad_pull_queries_and_unknown_paths_are_clear_errors() -> Result<()> {
    let server = TestServer::start()?;
    let get = |path: &str| -> Result<(u16, serde_json::Value)> {
        server.request(reqwest::Method::GET, path, None, None)
    };
    let (status, body) = get("/v1/sync/pull")?;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("device="),
        "{body}"
    );
    let device = server.admin_device;
    let (status, body) = get(&format!("/v1/sync/pull?device={device}&after=minus-one"))?;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("after"),
        "{body}"
    );
    let (status, body) = get(&format!(
        "/v1/sync/pull?device={device}&after=1&after_hash=zz"
    ))?;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("hex"),
        "{body}"
    );
    let (status, body) = get("/v1/records/not-a-uuid")?;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_body");
    let (status, body) = get(&format!("/v1/records/{device}"))?;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = get("/v2/nothing")?;
    assert_eq!(status, 404);
    assert_nothing_stored_and_still_serving(&server)
}

#[test]
fn reusing_an_actor_sequence_number_refuses_its_record_and_stores_nothing_of_it() -> Result<()> {
    let server = TestServer::start()?;
    // Two different stores forced to write with the same actor: the second push would put two
    // different changes under one (actor, seq) and poison the record on every device.
    let header = fieldsync_client_core::RecordHeader {
        id: fieldsync_client_core::singleton_id(Uuid::from_u128(9), "assessment", "v1"),
        kind: "assessment".into(),
        campaign: Uuid::from_u128(9),
        scope: "v1".into(),
    };
    let (mut d1, _) = fieldsync_protocol::genesis_change(&header)?;
    let (mut d2, _) = fieldsync_protocol::genesis_change(&header)?;
    let actor = automerge::ActorId::from([5u8; 16]);
    let push_of = |doc: &mut automerge::Automerge, rating: &str| -> Result<PushRequest> {
        doc.set_actor(actor.clone());
        let fields = fieldsync_protocol::record::fields_obj(doc)?;
        let mut tx = doc.transaction();
        fieldsync_protocol::record::put_field(
            &mut tx,
            &fields,
            "rating",
            &FieldValue::Str(rating.into()),
        )?;
        tx.commit();
        let mut rec = wire::WireRecord::new(&header);
        for c in doc.get_changes(&[]) {
            rec.changes.push(ByteBuf::from(c.raw_bytes().to_vec()));
        }
        Ok(PushRequest {
            v: wire::PROTOCOL_VERSION,
            device: server.admin_device.to_string(),
            actors: vec![ByteBuf::from(actor.to_bytes().to_vec())],
            records: vec![rec],
        })
    };
    let first = push_of(&mut d1, "好")?;
    let second = push_of(&mut d2, "较差")?;
    let ok = Client::new()
        .post(format!("{}{}", server.url(), PUSH_PATH))
        .bearer_auth(&server.admin_token)
        .header("content-type", CBOR_CONTENT_TYPE)
        .body(wire::encode(&first))
        .send()?;
    assert_eq!(ok.status(), 200);
    // The record is refused alone (the rest of a push would be stored), with the reason.
    let answer = Client::new()
        .post(format!("{}{}", server.url(), PUSH_PATH))
        .bearer_auth(&server.admin_token)
        .header("content-type", CBOR_CONTENT_TYPE)
        .body(wire::encode(&second))
        .send()?;
    assert_eq!(answer.status(), 200);
    let answer: wire::PushResponse = wire::decode(&answer.bytes()?, "push response")?;
    assert_eq!(answer.rejected.len(), 1, "{answer:?}");
    assert_eq!(answer.rejected[0].code, "duplicate_sequence_number");
    assert!(
        answer.rejected[0].message.contains("actor id was reused"),
        "{}",
        answer.rejected[0].message
    );
    assert_eq!(server.get_json("/v1/status")?["changes"], 2);
    Ok(())
}
