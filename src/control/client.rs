//! The operator's tool behind `sluice cmd`: builds a command, signs it
//! with an operator key, sends it (in chunks for a module) to one gateway
//! or the fleet through the broker, or bare to the local socket, and
//! collects the replies, checking the gateway's signature on each.

use super::command::{Reply, Request};
use super::envelope::{self, Purpose};
use crate::clock::now_ms;
use crate::config::{BrokerUrl, PublicKey};
use crate::uplink::operator::{self, Target};
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// Raw module bytes per `function.deploy` chunk (about 43 KiB of base64:
/// well inside the gateway's 64 KiB incoming packet limit).
pub const CHUNK: usize = 32 << 10;

/// Where and how to send.
pub struct Remote {
    /// The broker.
    pub broker: BrokerUrl,
    /// Username and password for the broker.
    pub credentials: Option<(String, String)>,
    /// The topic root.
    pub root: String,
    /// One gateway or the fleet.
    pub target: Target,
    /// The operator's key.
    pub key: SigningKey,
    /// Gateway keys to trust; empty: report signatures without judging the signer.
    pub trusted: Vec<PublicKey>,
    /// Replies to wait for from the fleet (one gateway: 1).
    pub expect: Option<usize>,
}

/// One reply as printed: the reply body plus what its signature says.
#[derive(Debug, Clone)]
pub struct Received {
    /// The reply body.
    pub reply: Value,
    /// Whether it is a success.
    pub ok: bool,
}

/// The command's body: `args` (JSON object text) with `extra` merged in.
pub fn request(id: &str, cmd: &str, args: Value) -> Request {
    Request {
        id: id.to_owned(),
        cmd: cmd.to_owned(),
        args,
    }
}

/// Splits a module into the `function.deploy` commands that carry it.
pub fn deploy_chunks(id: &str, args: &Value, module: &[u8]) -> Vec<Request> {
    let sha = super::store::sha256_hex(module);
    let b64 = base64::engine::general_purpose::STANDARD;
    let pieces: Vec<&[u8]> = if module.is_empty() {
        vec![&[]]
    } else {
        module.chunks(CHUNK).collect()
    };
    let n = pieces.len();
    let mut offset = 0;
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            let mut a = args.clone();
            if !a.is_object() {
                a = json!({});
            }
            a["sha256"] = json!(sha);
            a["size"] = json!(module.len());
            a["offset"] = json!(offset);
            a["data"] = json!(b64.encode(piece));
            offset += piece.len();
            let chunk_id = if i + 1 == n {
                id.to_owned()
            } else {
                format!("{id}.{i}")
            };
            request(&chunk_id, "function.deploy", a)
        })
        .collect()
}

/// Sends each request in turn through the broker, waiting for its replies
/// before the next; returns the replies to the last one (or to the first
/// that failed somewhere).
pub async fn send_remote(
    remote: &Remote,
    requests: Vec<Request>,
    timeout: Duration,
) -> Result<Vec<Received>, String> {
    let mut session = operator::connect(
        &remote.broker,
        remote.credentials.clone(),
        &remote.root,
        &remote.target,
        timeout,
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut last = Vec::new();
    for r in requests {
        let body = serde_json::to_string(&r).map_err(|e| e.to_string())?;
        let env = envelope::seal(
            Purpose::Command,
            &remote.key,
            &session.cmd_topic,
            now_ms(),
            &envelope::nonce(),
            body,
        );
        let payload = serde_json::to_vec(&env).map_err(|e| e.to_string())?;
        session.send(payload).await?;
        last = collect(&mut session, remote, &r.id, timeout).await;
        if last.iter().any(|x| !x.ok) {
            break;
        }
    }
    session.close().await;
    Ok(last)
}

/// Replies to `id` until the expected number or the timeout.
async fn collect(
    session: &mut operator::OperatorSession,
    remote: &Remote,
    id: &str,
    timeout: Duration,
) -> Vec<Received> {
    let deadline = tokio::time::Instant::now() + timeout;
    let want = match remote.target {
        Target::Gateway(_) => Some(1),
        Target::Fleet => remote.expect,
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    while want.is_none_or(|w| out.len() < w) {
        let Some((topic, payload)) = session.next_reply(deadline).await else {
            break;
        };
        let (mut value, ok) = match envelope::open(Purpose::Reply, &topic, &payload) {
            Ok((env, key)) => {
                let Ok(reply) = serde_json::from_str::<Reply>(&env.body) else {
                    continue;
                };
                if reply.id.as_deref() != Some(id) {
                    continue;
                }
                let mut v = serde_json::to_value(&reply).unwrap_or(Value::Null);
                v["signed_by"] = json!(key.to_base64());
                let trusted = remote.trusted.is_empty() || remote.trusted.contains(&key);
                v["signature"] = json!(if trusted { "valid" } else { "untrusted key" });
                (v, reply.ok && trusted)
            }
            Err(e) => (json!({ "topic": topic, "signature": e.to_string() }), false),
        };
        let gateway = value["gateway"].as_str().unwrap_or_default().to_owned();
        if !seen.insert(gateway) {
            continue;
        }
        value["topic"] = json!(topic);
        out.push(Received { reply: value, ok });
    }
    out
}

/// Sends each request in turn to the local socket; returns the last reply.
pub async fn send_local(
    socket: &std::path::Path,
    requests: Vec<Request>,
) -> Result<Vec<Received>, String> {
    let mut last = Vec::new();
    for r in requests {
        let body = serde_json::to_string(&r).map_err(|e| e.to_string())?;
        let line = super::local::request(socket, &body)
            .await
            .map_err(|e| e.to_string())?;
        let reply: Value =
            serde_json::from_str(&line).map_err(|e| format!("reply is not JSON: {e}: {line}"))?;
        let ok = reply["ok"].as_bool().unwrap_or(false);
        last = vec![Received { reply, ok }];
        if !ok {
            break;
        }
    }
    Ok(last)
}
