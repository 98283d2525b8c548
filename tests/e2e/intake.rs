//! The built-in intake answers like the Datadog intake: 202, 403, 413, 400.

use sidelog_devtools::intake::{Intake, IntakeOptions};
use sidelog_shipper::compress::{CodecKind, compress};

fn events(n: usize, size: usize) -> Vec<u8> {
    let msg = "x".repeat(size);
    let list: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"message":"{i} {msg}"}}"#))
        .collect();
    format!("[{}]", list.join(",")).into_bytes()
}

#[test]
fn intake_answers_like_datadog() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("key");
    std::fs::write(&key, "right\n").expect("key");
    let out = dir.path().join("out.jsonl");
    rt.block_on(async {
        let intake = Intake::start(IntakeOptions {
            api_key_file: Some(key.clone()),
            out: Some(out.clone()),
            keep_events: true,
            ..IntakeOptions::default()
        })
        .await
        .expect("start");
        let url = format!("{}/api/v2/logs", intake.endpoint());
        let client = reqwest::Client::new();
        let post = |body: Vec<u8>, key: &'static str, encoding: &'static str| {
            client
                .post(&url)
                .header("DD-API-KEY", key)
                .header("Content-Encoding", encoding)
                .body(body)
                .send()
        };
        let mut gz = Vec::new();
        compress(CodecKind::Gzip.at(Some(6)), &events(3, 10), &mut gz).expect("gzip");
        let r = post(gz, "right", "gzip").await.expect("send");
        assert_eq!(r.status(), 202);
        assert_eq!(r.text().await.expect("body"), "{}");
        assert_eq!(intake.event_count(), 3);

        let r = post(events(1, 1), "wrong", "identity").await.expect("send");
        assert_eq!(r.status(), 403);
        // The key file is read per request: rotating it takes effect at once.
        std::fs::write(&key, "rotated").expect("rotate");
        let r = post(events(1, 1), "rotated", "identity")
            .await
            .expect("send");
        assert_eq!(r.status(), 202);

        let mut zs = Vec::new();
        compress(CodecKind::Zstd.at(Some(3)), &events(10, 600_000), &mut zs).expect("zstd");
        let r = post(zs, "rotated", "zstd").await.expect("send");
        assert_eq!(r.status(), 413, "over 5,000,000 bytes uncompressed");

        let r = post(events(1001, 1), "rotated", "identity")
            .await
            .expect("send");
        assert_eq!(r.status(), 400, "over 1,000 entries");
        let r = post(b"[{\"message\":".to_vec(), "rotated", "identity")
            .await
            .expect("send");
        assert_eq!(r.status(), 400, "malformed JSON");
        let r = client
            .post(format!("{}/other", intake.endpoint()))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 404);

        intake.force_status(Some(503));
        let r = post(events(1, 1), "rotated", "identity")
            .await
            .expect("send");
        assert_eq!(r.status(), 503);
        intake.force_status(None);

        assert_eq!(intake.event_count(), 4, "only accepted events count");
        assert_eq!(intake.events().len(), 4);
    });
    let written = std::fs::read_to_string(&out).expect("out file");
    assert_eq!(written.lines().count(), 4);
    for line in written.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
        assert!(v["message"].is_string());
    }
}
