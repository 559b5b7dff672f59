//! The official `openai` Python package talks to the server (stream, non-stream, embeddings).
//! Needs a Python with `openai` installed: `$ZHENGWU_TEST_PYTHON` (scripts/test sets up a
//! virtualenv) or `python3`.

mod common;

use std::process::Command;

use common::{Server, CHAT_MODEL, EMBED_MODEL};

#[test]
fn official_openai_python_client_works() {
    let python = std::env::var("ZHENGWU_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let check = Command::new(&python).args(["-c", "import openai; print(openai.__version__)"]).output();
    match check {
        Ok(o) if o.status.success() => eprintln!("openai package {}", String::from_utf8_lossy(&o.stdout).trim()),
        _ => panic!(
            "`{python}` cannot import the openai package; run scripts/test (it creates the virtualenv) \
             or set ZHENGWU_TEST_PYTHON to a Python that has `pip install openai`"
        ),
    }
    let server = Server::start(&["--chat-model", CHAT_MODEL, "--embedding-model", EMBED_MODEL], true);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py");
    let out = Command::new(&python).arg(script).args([&server.base, CHAT_MODEL, EMBED_MODEL]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openai client failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("openai client OK"), "{stdout}");
}
