//! A push that is small on the wire but decodes to millions of tiny elements (a "decompression
//! bomb" for the decoder) is refused early, and decoding it never costs much memory. A test
//! binary of its own: the global allocator counts every allocation, so nothing else may run in
//! it while it measures.

use std::alloc::System;

use anyhow::Result;
use fieldsync::TestServer;
use fieldsync_protocol::wire::{self, CBOR_CONTENT_TYPE, MAX_PUSH_BYTES, PUSH_PATH};
use fieldsync_server::error::ApiError;
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};

#[global_allocator]
static GLOBAL: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A push message whose `actors` array holds `n` empty byte strings (1 byte of CBOR each).
fn bomb(n: usize) -> Vec<u8> {
    let mut body = vec![0xa4];
    body.extend_from_slice(b"\x61v\x01");
    body.extend_from_slice(b"\x66device\x78\x24");
    body.extend_from_slice(uuid::Uuid::from_u128(1).hyphenated().to_string().as_bytes());
    body.extend_from_slice(b"\x66actors\x9a");
    body.extend_from_slice(&(n as u32).to_be_bytes());
    body.extend(std::iter::repeat_n(0x40u8, n));
    body.extend_from_slice(b"\x67records\x80");
    body
}

#[test]
fn a_small_gzip_push_that_claims_millions_of_actors_is_refused_with_little_memory() -> Result<()> {
    // 16.7 million empty actor ids: just under the decompressed limit, ~16 KB compressed.
    let n = MAX_PUSH_BYTES - 100;
    let raw = bomb(n);
    assert!(raw.len() <= MAX_PUSH_BYTES);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, &raw)?;
    let gz = enc.finish()?;
    drop(raw);
    assert!(
        gz.len() < 64 << 10,
        "the bomb is {} bytes compressed",
        gz.len()
    );

    GLOBAL.reset_peak_memory();
    let before = GLOBAL.get_peak_memory();
    let refused = fieldsync_server::sync::check_push(&gz, true);
    let peak = GLOBAL.get_peak_memory().saturating_sub(before);
    match refused {
        Err(ApiError::Client {
            status,
            code,
            message,
            ..
        }) => {
            assert_eq!(
                (status.as_u16(), code),
                (413, "limit_exceeded"),
                "{message}"
            );
            assert!(message.contains("1024 actor ids"), "{message}");
        }
        other => panic!("the bomb was not refused as too large: {other:?}"),
    }
    println!("peak heap while decoding the bomb: {peak} bytes");
    assert!(
        peak < 8 << 20,
        "decoding the bomb took {} MiB of heap",
        peak >> 20
    );

    // The same through a real server: a 413 with a code that says what was wrong.
    let server = TestServer::start()?;
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}{}", server.url(), PUSH_PATH))
        .bearer_auth(&server.admin_token)
        .header("content-type", CBOR_CONTENT_TYPE)
        .header("content-encoding", "gzip")
        .body(gz.clone())
        .send()?;
    assert_eq!(resp.status().as_u16(), 413);
    let body: serde_json::Value = resp.json()?;
    assert_eq!(body["error"]["code"], "limit_exceeded", "{body}");
    // And identity-encoded, the same bound holds.
    let small = bomb(5_000);
    let err = wire::decode_with::<wire::PushRequest>(&small, "push", wire::DecodeLimits::PUSH)
        .unwrap_err();
    assert!(err.to_string().contains("actor ids"), "{err}");
    assert_eq!(server.get_json("/health")?["status"], "ok");
    Ok(())
}
