//! What each command does. Each returns a result value or a [`Failure`];
//! the controller signs and sends the reply. Commands that wait on a device
//! (`device.downlink`) or on storage (`queue.stats`) answer from a task of
//! their own, so the next command is not held up.

use super::command::{Code, Failure, Reply, Request};
use super::{Controller, Origin};
use crate::Runtime;
use base64::Engine as _;
use serde_json::{Value, json};
use sluice_adapter_common::downlink::{self, Downlink, Verb};

/// Runs `request` and replies to `origin`.
pub(super) async fn run(
    c: &mut Controller,
    runtime: &mut Runtime,
    request: Request,
    origin: Origin,
    cache_key: String,
) {
    let replier = c.replier.clone();
    let gateway = replier.gateway();
    let (id, cmd) = (request.id.clone(), request.cmd.clone());
    let answer = move |outcome: Result<Value, Failure>| {
        let replier = replier.clone();
        async move {
            if let Err(f) = &outcome {
                tracing::warn!(id = %id, command = %cmd, code = ?f.code, error = %f.message, "Command failed");
            }
            let reply = Reply::to(&gateway, Some(&id), Some(&cmd), outcome);
            replier.send(origin, Some(&cache_key), reply).await;
        }
    };
    let outcome = match request.cmd.as_str() {
        "ping" => Ok(json!({ "pong": true, "time_ms": crate::clock::now_ms() })),
        "status" => Ok(status(c, runtime)),
        "config.get" => Ok(json!({ "config": c.current.text, "hash": c.current.hash })),
        "config.apply" => match request.str_arg("config") {
            Ok(text) => c.apply_text(runtime, text.to_owned()).await,
            Err(f) => Err(f),
        },
        "function.deploy" => deploy(c, runtime, &request).await,
        "function.remove" => remove(c, runtime, &request).await,
        "function.list" => Ok(function_list(c, runtime)),
        "function.resume" => resume(c, runtime).await,
        "device.downlink" => match downlink_of(&request) {
            Ok((adapter, d)) => {
                let pending = runtime.downlink(&adapter, d);
                tokio::spawn(async move { answer(downlink_outcome(pending.await)).await });
                return;
            }
            Err(f) => Err(f),
        },
        "queue.stats" => {
            let path = c.config.queue_path();
            tokio::spawn(async move {
                let stats =
                    tokio::task::spawn_blocking(move || crate::queue::inspect::stats(&path)).await;
                let outcome = match stats {
                    Ok(Ok(s)) => Ok(json!({ "streams": s })),
                    Ok(Err(e)) => Err(Failure::new(
                        Code::Internal,
                        format!("cannot read the queue: {e}"),
                    )),
                    Err(e) => Err(Failure::new(Code::Internal, e.to_string())),
                };
                answer(outcome).await
            });
            return;
        }
        "queue.purge" => match request.str_arg("stream") {
            Ok(stream) => match runtime.purge(stream).await {
                Ok(Some(n)) => {
                    tracing::warn!(stream, records = n, "Stream purged by command");
                    Ok(json!({ "stream": stream, "purged": n }))
                }
                Ok(None) => Err(Failure::new(
                    Code::NotFound,
                    format!("no stream `{stream}`"),
                )),
                Err(e) => Err(Failure::new(Code::Internal, e.to_string())),
            },
            Err(f) => Err(f),
        },
        "adapter.restart" => match request.str_arg("adapter") {
            Ok(name) => match runtime.restart_adapter(name).await {
                Ok(true) => Ok(json!({ "adapter": name, "restarted": true })),
                Ok(false) => Err(Failure::new(
                    Code::NotFound,
                    format!("no adapter `{name}` is running"),
                )),
                Err(e) => Err(Failure::new(Code::ApplyFailed, e.to_string())),
            },
            Err(f) => Err(f),
        },
        "log.level" => match (request.str_arg("filter"), &c.log_level) {
            (Ok(filter), Some(set)) => set(filter)
                .map(|()| json!({ "filter": filter }))
                .map_err(|e| Failure::new(Code::BadRequest, format!("args.filter: {e}"))),
            (Ok(_), None) => Err(Failure::new(
                Code::Internal,
                "this process cannot change its log level",
            )),
            (Err(f), _) => Err(f),
        },
        other => Err(Failure::new(
            Code::UnknownCommand,
            format!(
                "unknown command `{other}`; known: {}",
                crate::config::COMMANDS.join(", ")
            ),
        )),
    };
    answer(outcome).await;
}

/// `status`: who, what version and config, how long up, adapters, queue, counters.
pub(super) fn status(c: &Controller, runtime: &Runtime) -> Value {
    let m = runtime.metrics().snapshot();
    json!({
        "gateway": c.config.gateway.id.as_str(),
        "version": env!("CARGO_PKG_VERSION"),
        "config_hash": c.current.hash,
        "public_key": c.public_key,
        "uptime_s": c.started.elapsed().as_secs(),
        "adapters": runtime.adapter_states(),
        "functions": c.config.functions.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
        "functions_suspended": m.functions_suspended,
        "queue": { "records": m.queue_records, "bytes": m.queue_bytes },
        "commands_refused": c.refused(),
        "counters": m,
    })
}

fn function_list(c: &Controller, runtime: &Runtime) -> Value {
    let per = runtime.metrics().functions();
    let list: Vec<Value> = c
        .config
        .functions
        .iter()
        .map(|f| {
            let sha = std::fs::read(&f.module)
                .map(|b| super::store::sha256_hex(&b))
                .ok();
            json!({
                "name": f.name,
                "module": f.module.display().to_string(),
                "sha256": sha,
                "subscribe": f.subscribe.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                "every": f.every.map(|e| e.to_string()),
                "counters": per.get(&f.name),
            })
        })
        .collect();
    json!({ "functions": list })
}

/// `function.deploy`: a chunk of a module; once whole and matching its
/// digest, the config with this function's module replaced (or the
/// function added, with `args.function` as its `[[functions]]` entry) goes
/// through the same path as `config.apply`.
async fn deploy(c: &mut Controller, runtime: &mut Runtime, r: &Request) -> Result<Value, Failure> {
    let name = r.str_arg("name")?.to_owned();
    let sha = r.str_arg("sha256")?.to_ascii_lowercase();
    let size = r
        .args
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| Failure::new(Code::BadRequest, "args.size: a byte count is required"))?;
    let offset = r.args.get("offset").and_then(Value::as_u64).unwrap_or(0);
    let data = base64::engine::general_purpose::STANDARD
        .decode(r.str_arg("data")?)
        .map_err(|e| Failure::new(Code::BadRequest, format!("args.data: not base64: {e}")))?;
    const MAX_MODULE: u64 = 16 << 20;
    if size > MAX_MODULE {
        return Err(Failure::new(
            Code::BadRequest,
            format!("args.size: at most {MAX_MODULE} bytes"),
        ));
    }
    let store = c.store.clone();
    let (have, done) = {
        let sha = sha.clone();
        tokio::task::spawn_blocking(move || store.upload(&sha, size, offset, &data))
            .await
            .map_err(|e| Failure::new(Code::Internal, e.to_string()))??
    };
    let Some(module) = done else {
        return Ok(json!({ "name": name, "received": have, "size": size, "complete": false }));
    };
    let entry = r.args.get("function").cloned();
    let text = with_function(&c.current.text, &name, &module, entry)?;
    let mut result = c.apply_text(runtime, text).await?;
    result["name"] = json!(name);
    result["sha256"] = json!(sha);
    result["complete"] = json!(true);
    Ok(result)
}

/// The config text with function `name`'s module set to `module`; a new
/// entry is made from `entry` (its fields as in `[[functions]]`).
fn with_function(
    text: &str,
    name: &str,
    module: &std::path::Path,
    entry: Option<Value>,
) -> Result<String, Failure> {
    let bad = |m: String| Failure::new(Code::BadRequest, m);
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e| Failure::new(Code::Internal, e.to_string()))?;
    let functions = table
        .entry("functions")
        .or_insert_with(|| toml::Value::Array(Vec::new()));
    let toml::Value::Array(list) = functions else {
        return Err(Failure::new(
            Code::Internal,
            "`functions` is not an array".to_string(),
        ));
    };
    let existing = list
        .iter()
        .position(|f| f.get("name").and_then(toml::Value::as_str) == Some(name));
    let mut f: toml::Table = match (entry, existing) {
        (Some(v), _) => {
            let t: toml::Table =
                serde_json::from_value(v).map_err(|e| bad(format!("args.function: {e}")))?;
            t
        }
        (None, Some(i)) => match &list[i] {
            toml::Value::Table(t) => t.clone(),
            _ => {
                return Err(Failure::new(
                    Code::Internal,
                    "a `functions` entry is not a table".to_string(),
                ));
            }
        },
        (None, None) => {
            return Err(bad(format!(
                "no function `{name}` is configured: give args.function (at least `subscribe`) to add it"
            )));
        }
    };
    f.insert("name".into(), toml::Value::String(name.to_owned()));
    f.insert(
        "module".into(),
        toml::Value::String(module.display().to_string()),
    );
    match existing {
        Some(i) => list[i] = toml::Value::Table(f),
        None => list.push(toml::Value::Table(f)),
    }
    toml::to_string(&table).map_err(|e| Failure::new(Code::Internal, e.to_string()))
}

/// `function.remove`: the config without the function, applied.
async fn remove(c: &mut Controller, runtime: &mut Runtime, r: &Request) -> Result<Value, Failure> {
    let name = r.str_arg("name")?.to_owned();
    let mut table: toml::Table =
        toml::from_str(&c.current.text).map_err(|e| Failure::new(Code::Internal, e.to_string()))?;
    let found = match table.get_mut("functions") {
        Some(toml::Value::Array(list)) => {
            let before = list.len();
            list.retain(|f| f.get("name").and_then(toml::Value::as_str) != Some(name.as_str()));
            before != list.len()
        }
        _ => false,
    };
    if !found {
        return Err(Failure::new(
            Code::NotFound,
            format!("no function `{name}`"),
        ));
    }
    let text = toml::to_string(&table).map_err(|e| Failure::new(Code::Internal, e.to_string()))?;
    let mut result = c.apply_text(runtime, text).await?;
    result["removed"] = json!(name);
    Ok(result)
}

/// `function.resume`: suspended functions start again (a reload of the same config).
async fn resume(c: &mut Controller, runtime: &mut Runtime) -> Result<Value, Failure> {
    let suspended = runtime.metrics().snapshot().functions_suspended;
    runtime
        .apply(c.config.clone())
        .await
        .map_err(|e| Failure::new(Code::ApplyFailed, e.to_string()))?;
    Ok(json!({ "resumed": suspended }))
}

/// `device.downlink` arguments: adapter, device, resource, verb, value.
fn downlink_of(r: &Request) -> Result<(String, Downlink), Failure> {
    let bad = |m: &str| Failure::new(Code::BadRequest, m.to_owned());
    let verb = match r.args.get("verb").and_then(Value::as_str).unwrap_or("set") {
        "set" => Verb::Set,
        "invoke" => Verb::Invoke,
        _ => return Err(bad("args.verb: `set` or `invoke`")),
    };
    let value = match r.args.get("value") {
        None | Some(Value::Null) => downlink::Value::Empty,
        Some(Value::Bool(b)) => downlink::Value::Bool(*b),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => downlink::Value::Int(i),
            None => downlink::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Some(Value::String(s)) => downlink::Value::Text(s.clone()),
        Some(Value::Object(o)) => match o.get("base64").and_then(Value::as_str) {
            Some(b) => downlink::Value::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|_| bad("args.value.base64: not base64"))?,
            ),
            None => return Err(bad("args.value: a scalar, or {\"base64\": …}")),
        },
        Some(_) => return Err(bad("args.value: a scalar, or {\"base64\": …}")),
    };
    let d = Downlink::new(r.str_arg("device")?, r.str_arg("resource")?, verb, value);
    Ok((r.str_arg("adapter")?.to_owned(), d))
}

fn downlink_outcome(
    result: Result<downlink::Answer, downlink::DownlinkError>,
) -> Result<Value, Failure> {
    match result {
        Ok(a) => Ok(match String::from_utf8(a.payload.clone()) {
            Ok(text) => json!({ "status": a.status, "payload": text }),
            Err(_) => {
                json!({ "status": a.status, "payload_base64": base64::engine::general_purpose::STANDARD.encode(&a.payload) })
            }
        }),
        Err(downlink::DownlinkError::NoAdapter(a)) => Err(Failure::new(
            Code::NotFound,
            format!("no adapter `{a}` is running"),
        )),
        Err(e) => Err(Failure::new(Code::DownlinkFailed, e.to_string())),
    }
}
