//! Reading back what the server stored, for the checks after an abuse
//! run: an NDJSON export, `/v1/stats`, and the failed authentications
//! written one by one and summarized.

use bytes::Bytes;
use http_body_util::BodyExt as _;
use sealog_testkit::client::{Client, Method};
use serde_json::Value;

/// Streams `GET path` as NDJSON, calling `line` with each record.
pub(super) async fn export(
    client: &mut Client,
    path: &str,
    mut line: impl FnMut(Value),
) -> Result<(), String> {
    let response = client
        .send(
            Method::GET,
            path,
            &[("accept", "application/x-ndjson")],
            Bytes::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != 200 {
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    let mut body = response.into_body();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the export: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        let mut start = 0;
        while let Some(i) = pending
            .get(start..)
            .and_then(|p| p.iter().position(|&b| b == b'\n'))
        {
            if let Some(text) = pending.get(start..start + i)
                && let Ok(v) = serde_json::from_slice::<Value>(text)
            {
                if v.get("error").is_some() {
                    return Err(format!("the export failed: {v}"));
                }
                line(v);
            }
            start += i + 1;
        }
        pending.drain(..start);
    }
    Ok(())
}

pub(super) fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(super) async fn server_stats(client: &mut Client) -> Option<Value> {
    let r = client.get("/v1/stats").await.ok()?;
    (r.status == 200).then(|| r.json())
}

/// The failed authentications the server wrote since `from`: one by one,
/// and summarized (events, and the refusals they count).
pub(super) async fn refusal_events(
    client: &mut Client,
    from: &str,
) -> Result<(u64, u64, u64), String> {
    let path = format!(
        "/v1/events?action={}&from={}&order=oldest",
        enc("auth.*"),
        enc(from)
    );
    let (mut failed, mut summaries, mut summarized) = (0, 0, 0);
    export(client, &path, |v| match v["action"].as_str() {
        Some("auth.failed") => failed += 1,
        Some("auth.refusals_summarized") => {
            summaries += 1;
            summarized += v["metadata"]["count"].as_u64().unwrap_or(0);
        }
        _ => {}
    })
    .await?;
    Ok((failed, summaries, summarized))
}
