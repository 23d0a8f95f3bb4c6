//! `[pipeline]` and `[[functions]]`: which wasm functions run on which
//! events, with which limits, and what happens to the events they consume.

use super::{ByteSize, HumanDuration, Problem};
use crate::subject::SubjectPattern;
use serde::Deserialize;
use sluice_event::{Meta, Value};
use std::path::PathBuf;

/// `[pipeline]`: what reaches the queue.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Which events are queued for the uplink besides function outputs.
    #[serde(default = "default_forward")]
    pub forward: Forward,
    /// Most rows kept in the dead-letter table; the oldest go first.
    #[serde(default = "default_dead_letter_max")]
    pub dead_letter_max: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            forward: default_forward(),
            dead_letter_max: default_dead_letter_max(),
        }
    }
}

/// `unclaimed`: an event a function takes is replaced by that function's output.
fn default_forward() -> Forward {
    Forward::Unclaimed
}

/// Enough to inspect a misbehaving function; about a few MiB of SQLite at most.
fn default_dead_letter_max() -> u64 {
    10_000
}

/// Which events (device readings and function outputs alike) go to the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forward {
    /// Events no function subscribes to are queued; the others only through
    /// what their functions emit.
    Unclaimed,
    /// Every event is queued, whether or not a function also takes it.
    All,
    /// Only events no function subscribes to would be queued, and they are
    /// not either: nothing reaches the queue but what functions decide to
    /// keep, which makes the uplink carry only aggregates and alerts.
    None,
}

/// `[[functions]]`: one wasm function.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    /// Unique name, one subject level: outputs are published as `fn/<name>/…`.
    pub name: String,
    /// The `.wasm` file. A relative path is relative to the config file.
    pub module: PathBuf,
    /// Subject patterns of the events the function runs on.
    #[serde(default)]
    pub subscribe: Vec<SubjectPattern>,
    /// Calls the function's tick entry point this often.
    pub every: Option<HumanDuration>,
    /// Fuel per call (about one unit per wasm instruction).
    #[serde(default = "default_fuel")]
    pub fuel: u64,
    /// Cap on the instance's linear memory.
    #[serde(default = "default_memory_max")]
    pub memory_max: ByteSize,
    /// Most events one call may emit.
    #[serde(default = "default_max_emit")]
    pub max_emit: u32,
    /// Most encoded bytes one call may emit.
    #[serde(default = "default_max_emit_bytes")]
    pub max_emit_bytes: ByteSize,
    /// Cap on the function's durable state (keys plus values).
    #[serde(default = "default_state_max")]
    pub state_max: ByteSize,
    /// Consecutive failures after which the function is suspended until reload.
    #[serde(default = "default_suspend_after")]
    pub suspend_after: u32,
    /// The function's own settings, handed to its init entry point.
    #[serde(default)]
    pub config: toml::Table,
}

/// About 10 ms of interpretation on a Raspberry Pi 4: plenty for decoding and aggregating.
fn default_fuel() -> u64 {
    10_000_000
}

/// Room for a small Rust function's heap and stack.
fn default_memory_max() -> ByteSize {
    ByteSize(4 << 20)
}

/// An event in, a handful out is typical; 64 bounds a runaway loop.
fn default_max_emit() -> u32 {
    64
}

/// 64 KiB of encoded events per call.
fn default_max_emit_bytes() -> ByteSize {
    ByteSize(64 << 10)
}

/// 64 KiB of state: thousands of per-device values.
fn default_state_max() -> ByteSize {
    ByteSize(64 << 10)
}

/// Five failures in a row is a pattern, not bad luck.
fn default_suspend_after() -> u32 {
    5
}

/// Longest a chain of functions feeding functions may be.
pub const MAX_CHAIN: usize = 8;

impl FunctionConfig {
    /// The function's `config` table as ABI v1 hands it over: one entry per
    /// scalar, nested tables flattened with `.`.
    pub fn settings(&self) -> Result<Vec<Meta>, String> {
        let mut out = Vec::new();
        flatten("", &self.config, &mut out)?;
        Ok(out)
    }

    /// The subject prefix of this function's outputs, `fn/<name>`.
    pub fn output_prefix(&self) -> String {
        format!("fn/{}", self.name)
    }

    /// Whether an output of `producer` could match one of this function's subscriptions.
    fn listens_to(&self, producer: &FunctionConfig) -> bool {
        self.subscribe
            .iter()
            .any(|p| p.may_match_below(&["fn", producer.name.as_str()]))
    }
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<Meta>) -> Result<(), String> {
    for (key, value) in table {
        let key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let value = match value {
            toml::Value::String(s) => Value::Text(s.clone()),
            toml::Value::Integer(i) => Value::Number(*i as f64),
            toml::Value::Float(f) => Value::Number(*f),
            toml::Value::Boolean(b) => Value::Bool(*b),
            toml::Value::Table(t) => {
                flatten(&key, t, out)?;
                continue;
            }
            toml::Value::Array(_) | toml::Value::Datetime(_) => {
                return Err(format!(
                    "`{key}`: only strings, numbers, booleans and tables can be handed to a function"
                ));
            }
        };
        out.push(Meta { key, value });
    }
    Ok(())
}

/// Problems with the functions section, each with its key path.
pub(super) fn validate(functions: &[FunctionConfig], pipeline: &PipelineConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut at = |key: String, msg: String| problems.push(Problem::at_key(key, msg));
    if pipeline.dead_letter_max == 0 {
        at(
            "pipeline.dead_letter_max".into(),
            "must be at least 1".into(),
        );
    }
    for (i, f) in functions.iter().enumerate() {
        let key = |field: &str| format!("functions[{i}].{field}");
        let valid_name = !f.name.is_empty()
            && f.name.len() <= 64
            && f.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            at(
                key("name"),
                "must be 1–64 characters of letters, digits, `-` and `_`".into(),
            );
        }
        if functions[..i].iter().any(|o| o.name == f.name) {
            at(
                key("name"),
                format!("function `{}` is defined twice", f.name),
            );
        }
        if f.subscribe.is_empty() && f.every.is_none() {
            at(
                key("subscribe"),
                format!(
                    "function `{}` subscribes nothing and has no schedule (`every`), so it would never run",
                    f.name
                ),
            );
        }
        if let Some(every) = f.every
            && every.get() < std::time::Duration::from_millis(100)
        {
            at(key("every"), "must be at least 100 ms".into());
        }
        if f.fuel < 1000 {
            at(key("fuel"), "must be at least 1000".into());
        }
        if !(64 << 10..=(1 << 30)).contains(&f.memory_max.bytes()) {
            at(
                key("memory_max"),
                "must be between 64 KiB (one wasm page) and 1 GiB".into(),
            );
        }
        if f.max_emit == 0 {
            at(key("max_emit"), "must be at least 1".into());
        }
        if f.max_emit_bytes.bytes() < 256 {
            at(key("max_emit_bytes"), "must be at least 256 B".into());
        }
        if f.state_max.bytes() > 16 << 20 {
            at(
                key("state_max"),
                "must be at most 16 MiB (the state is kept in memory)".into(),
            );
        }
        if f.suspend_after == 0 {
            at(key("suspend_after"), "must be at least 1".into());
        }
        if let Err(e) = f.settings() {
            at(key("config"), e);
        }
    }
    if let Some(cycle) = find_cycle(functions) {
        at(
            format!("functions[{}].subscribe", cycle[0]),
            format!(
                "functions feed each other in a cycle: {}",
                cycle
                    .iter()
                    .chain(std::iter::once(&cycle[0]))
                    .map(|&i| functions[i].name.as_str())
                    .collect::<Vec<_>>()
                    .join(" → ")
            ),
        );
    }
    problems
}

/// A cycle in the graph "outputs of A can reach B", as function indices.
fn find_cycle(functions: &[FunctionConfig]) -> Option<Vec<usize>> {
    let edges: Vec<Vec<usize>> = functions
        .iter()
        .map(|from| {
            functions
                .iter()
                .enumerate()
                .filter(|(_, to)| to.listens_to(from))
                .map(|(j, _)| j)
                .collect()
        })
        .collect();
    // 0 unvisited, 1 on the current path, 2 done.
    let mut mark = vec![0u8; functions.len()];
    let mut path = Vec::new();
    fn visit(
        n: usize,
        edges: &[Vec<usize>],
        mark: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        mark[n] = 1;
        path.push(n);
        for &m in &edges[n] {
            if mark[m] == 1 {
                let start = path.iter().position(|&p| p == m).unwrap_or(0);
                return Some(path[start..].to_vec());
            }
            if mark[m] == 0
                && let Some(c) = visit(m, edges, mark, path)
            {
                return Some(c);
            }
        }
        path.pop();
        mark[n] = 2;
        None
    }
    (0..functions.len()).find_map(|n| {
        if mark[n] == 0 {
            visit(n, &edges, &mut mark, &mut path)
        } else {
            None
        }
    })
}
