//! The `hf-hub` source. hf-hub's blocking client has no connect timeout of its own, so the
//! endpoint is first probed with a short TCP connect: with no route to the hub this fails in
//! about a second and the next source is tried.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use hf_hub::{Repo, RepoType};

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

fn repo(repo_id: &str, revision: Option<&str>) -> Repo {
    Repo::with_revision(
        repo_id.to_string(),
        RepoType::Model,
        revision.unwrap_or("main").to_string(),
    )
}

/// `$HF_ENDPOINT` or huggingface.co.
pub(crate) fn endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.into())
}

/// The file if it is already in the local Hugging Face cache (`$HF_HOME`); no network.
pub(crate) fn cached(repo_id: &str, file: &str, revision: Option<&str>) -> Option<PathBuf> {
    hf_hub::Cache::from_env()
        .repo(repo(repo_id, revision))
        .get(file)
}

/// Can we open a TCP connection to `endpoint` (a URL) within `timeout`? DNS resolution runs on
/// a helper thread so a hanging resolver cannot stall us either.
pub(crate) fn probe(endpoint: &str, timeout: Duration) -> std::result::Result<(), String> {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or(("https", endpoint));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let default_port = if scheme.eq_ignore_ascii_case("http") {
        80
    } else {
        443
    };
    let host_port = if authority.starts_with('[') {
        // [v6]:port
        match authority.rsplit_once("]:") {
            Some((h, p)) => format!("{h}]:{p}"),
            None => format!("{authority}:{default_port}"),
        }
    } else if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    let (tx, rx) = mpsc::channel();
    let hp = host_port.clone();
    std::thread::spawn(move || {
        let _ = tx.send(hp.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
    });
    let addrs = match rx.recv_timeout(timeout) {
        Ok(Ok(a)) if !a.is_empty() => a,
        Ok(Ok(_)) => return Err(format!("{host_port} resolved to no address")),
        Ok(Err(e)) => return Err(format!("cannot resolve {host_port}: {e}")),
        Err(_) => {
            return Err(format!(
                "resolving {host_port} took longer than {timeout:?}"
            ))
        }
    };
    let mut last = String::new();
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("cannot connect to {host_port} ({addr}): {e}"),
        }
    }
    Err(last)
}

/// Download (or reuse from the HF cache) `file` of `repo_id`. Returns the path in the HF cache.
pub(crate) fn download(
    repo_id: &str,
    file: &str,
    revision: Option<&str>,
    connect_timeout: Duration,
    progress: bool,
) -> std::result::Result<PathBuf, String> {
    if let Some(p) = cached(repo_id, file, revision) {
        return Ok(p);
    }
    let endpoint = endpoint();
    probe(&endpoint, connect_timeout).map_err(|e| format!("hub {endpoint} unreachable: {e}"))?;
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(progress)
        .with_retries(1)
        .build()
        .map_err(|e| format!("hf-hub client: {e}"))?;
    api.repo(repo(repo_id, revision))
        .get(file)
        .map_err(|e| format!("downloading {repo_id}/{file} from {endpoint}: {e}"))
}
