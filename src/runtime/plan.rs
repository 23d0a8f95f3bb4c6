//! What a new config changes in a running gateway, worked out before
//! anything is touched: which adapters stop and start, whether functions,
//! stream bounds or the uplink change, and what cannot change live.

use crate::config::{AdapterConfig, Config};
use crate::queue::stream_change_needs_restart;

/// The changes from one config to the next.
#[derive(Debug, Default)]
pub struct Plan {
    /// Adapters to stop: changed or removed.
    pub stop: Vec<&'static str>,
    /// Adapters to open and start: changed or added.
    pub start: Vec<AdapterConfig>,
    /// The functions or the pipeline changed.
    pub functions: bool,
    /// Stream bounds (records, bytes, overflow, TTL) changed.
    pub streams: bool,
    /// The uplink (or the gateway id, part of its topics) changed.
    pub uplink: bool,
}

impl Plan {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.stop.is_empty()
            && self.start.is_empty()
            && !self.functions
            && !self.streams
            && !self.uplink
    }

    /// What changes, in a few words for the log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for name in &self.stop {
            if self.start.iter().any(|a| a.name() == *name) {
                parts.push(format!("adapter {name} restarted"));
            } else {
                parts.push(format!("adapter {name} removed"));
            }
        }
        for a in &self.start {
            if !self.stop.contains(&a.name()) {
                parts.push(format!("adapter {} added", a.name()));
            }
        }
        if self.functions {
            parts.push("functions reloaded".into());
        }
        if self.streams {
            parts.push("stream bounds changed".into());
        }
        if self.uplink {
            parts.push("uplink restarted".into());
        }
        if parts.is_empty() {
            "nothing changed".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The plan from `old` to `new`, or every key that cannot change while
/// the gateway runs, each with why.
pub fn plan(old: &Config, new: &Config) -> Result<Plan, Vec<String>> {
    let fixed = fixed_changes(old, new);
    if !fixed.is_empty() {
        return Err(fixed);
    }
    let before = old.adapters();
    let after = new.adapters();
    let mut plan = Plan::default();
    for a in &before {
        if !after.contains(a) {
            plan.stop.push(a.name());
        }
    }
    for a in &after {
        if !before.contains(a) {
            plan.start.push(a.clone());
        }
    }
    plan.functions = old.functions != new.functions || old.pipeline != new.pipeline;
    plan.streams = old.queue.streams != new.queue.streams;
    plan.uplink = old.uplink != new.uplink || old.gateway.id != new.gateway.id;
    Ok(plan)
}

/// Keys whose change needs a restart.
fn fixed_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut changed = Vec::new();
    let mut fixed = |key: &str, differs: bool| {
        if differs {
            changed.push(format!(
                "`{key}` cannot change while running; restart the gateway"
            ));
        }
    };
    fixed(
        "gateway.data_dir",
        old.gateway.data_dir != new.gateway.data_dir,
    );
    fixed("queue.path", old.queue_path() != new.queue_path());
    fixed(
        "queue.durability",
        old.queue.durability != new.queue.durability,
    );
    fixed(
        "queue.max_batch",
        old.queue.max_batch != new.queue.max_batch,
    );
    fixed(
        "queue.ingest_capacity",
        old.queue.ingest_capacity != new.queue.ingest_capacity,
    );
    if let Some(why) = stream_change_needs_restart(&old.queue.streams, &new.queue.streams) {
        changed.push(format!("{why}; restart the gateway"));
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::parse(
            &format!("[gateway]\ndata_dir = \"/tmp/x\"\n{extra}"),
            "test.toml",
        )
        .expect("valid config")
    }

    const COAP: &str = "[coap]\nlisten = [\"127.0.0.1:5683\"]\n";
    const STREAM: &str = "[[queue.streams]]\nname = \"all\"\nsubjects = [\"#\"]\n";

    #[test]
    fn an_added_changed_and_removed_adapter() {
        let none = config("");
        let coap = config(COAP);
        let added = plan(&none, &coap).expect("plan");
        assert_eq!(added.start.len(), 1);
        assert!(added.stop.is_empty());
        assert_eq!(added.describe(), "adapter coap added");

        let changed =
            plan(&coap, &config("[coap]\nlisten = [\"127.0.0.1:5684\"]\n")).expect("plan");
        assert_eq!((changed.stop.len(), changed.start.len()), (1, 1));
        assert_eq!(changed.describe(), "adapter coap restarted");

        let removed = plan(&coap, &none).expect("plan");
        assert_eq!(removed.stop, vec!["coap"]);
        assert!(removed.start.is_empty());

        assert!(plan(&coap, &coap).expect("plan").is_empty());
    }

    #[test]
    fn bounds_change_live_and_layout_does_not() {
        let base = config(STREAM);
        let bounds = config(&format!("{STREAM}max_records = 10\nttl = \"1 h\"\n"));
        let p = plan(&base, &bounds).expect("bounds change live");
        assert!(p.streams && !p.uplink && !p.functions);

        let renamed = config("[[queue.streams]]\nname = \"other\"\nsubjects = [\"#\"]\n");
        let why = plan(&base, &renamed).expect_err("renaming needs a restart");
        assert!(why[0].contains("renamed"), "{why:?}");

        let priority = config(&format!("{STREAM}priority = 1\n"));
        let why = plan(&base, &priority).expect_err("priority needs a restart");
        assert!(why[0].contains("`priority` needs a restart"), "{why:?}");
    }

    #[test]
    fn the_data_dir_cannot_change_live() {
        let moved =
            Config::parse("[gateway]\ndata_dir = \"/tmp/y\"\n", "test.toml").expect("valid");
        let why = plan(&config(""), &moved).expect_err("refused");
        assert!(
            why.iter().any(|w| w.contains("gateway.data_dir")),
            "{why:?}"
        );
    }

    #[test]
    fn the_uplink_restarts_for_its_settings_and_the_gateway_id() {
        let p = plan(&config(""), &config("[uplink]\nlinger = \"0 s\"\n")).expect("plan");
        assert!(p.uplink);
        let renamed =
            Config::parse("[gateway]\ndata_dir = \"/tmp/x\"\nid = \"gw2\"\n", "t").expect("valid");
        assert!(plan(&config(""), &renamed).expect("plan").uplink);
    }
}
