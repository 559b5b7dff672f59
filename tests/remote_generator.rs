//! The remote OpenAI-compatible generator backend against a second zhengwu process on
//! loopback (the real 0.5B model serves on the far side): the same generator suite as the
//! local engine and the test fake, then a whole server whose chat model is remote.

mod common;

use common::{client, Server, CHAT_MODEL};
use serde_json::{json, Value};
use zhengwu_inference::remote::{RemoteGenerator, RemoteOptions};

fn greedy(server: &Server, stream: bool) -> (u16, Value) {
    let body = json!({
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": "用一句话介绍12345政务服务热线。"}],
        "temperature": 0,
        "max_tokens": 12,
        "stream": stream,
    });
    let resp = client().post(server.url("/v1/chat/completions")).json(&body).send().expect("request");
    let status = resp.status().as_u16();
    if stream {
        let text: String = common::sse_data(&resp.text().unwrap())
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect();
        (status, json!({"text": text}))
    } else {
        let v: Value = resp.json().unwrap();
        let text = v["choices"][0]["message"]["content"].clone();
        (status, if status == 200 { json!({"text": text}) } else { v })
    }
}

#[test]
fn a_remote_zhengwu_serves_as_the_chat_model() {
    let upstream = Server::start(&["--chat-model", CHAT_MODEL, "--embedding-model", "none", "--max-context", "2048"], true);
    let remote = RemoteGenerator::new(RemoteOptions { context_length: 2048, ..RemoteOptions::new(&upstream.base, CHAT_MODEL) }).unwrap();
    zhengwu_core::testing::generator_suite(&remote);

    // A whole server whose chat model is the upstream one answers as the upstream does.
    let front = Server::start(
        &["--chat-model", CHAT_MODEL, "--embedding-model", "none", "--max-context", "2048", "--chat-remote-url", upstream.base.as_str()],
        true,
    );
    let (status, direct) = greedy(&upstream, false);
    assert_eq!(status, 200, "{direct}");
    assert!(!direct["text"].as_str().unwrap_or("").is_empty());
    assert_eq!(greedy(&front, false), (200, direct.clone()), "same greedy answer through the remote backend");
    assert_eq!(greedy(&front, true), (200, direct), "and streamed");
    // Parameters are checked before anything is sent, with the parameter named.
    let resp = client()
        .post(front.url("/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "你好"}], "temperature": 7}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    assert_eq!(resp.json::<Value>().unwrap()["error"]["param"], "temperature");
    // The upstream gone: 503 not_ready, not a hang or a 500.
    drop(upstream);
    let (status, body) = greedy(&front, false);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "not_ready", "{body}");
}
