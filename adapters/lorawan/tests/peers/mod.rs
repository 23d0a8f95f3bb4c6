//! The test concentrator the LoRaWAN tests talk through: `concentrator.js`
//! (Node.js with lora-packet 0.9.3, installed by scripts/install-test-deps.sh)
//! builds frames independently and sends them as GWMP datagrams. Included by
//! the adapter's tests and by the gateway's.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Runs the concentrator against the GWMP server on `port` with `args` (a
/// scenario and its numbers, see `concentrator.js`); returns the JSON lines
/// it printed, one per step.
pub async fn concentrator(port: u16, args: &[&str]) -> Vec<serde_json::Value> {
    let dir = peers_dir();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .arg(dir.join("concentrator.js"))
            .arg(port.to_string())
            .args(args)
            .current_dir(&dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("concentrator finishes")
    .expect("node runs (scripts/install-test-deps.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "concentrator {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// This folder, from the manifest folder of the crate whose test includes
/// it (the adapter's or the gateway's).
fn peers_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let own = manifest.join("tests/peers");
    if own.join("concentrator.js").exists() {
        own
    } else {
        manifest.join("adapters/lorawan/tests/peers")
    }
}
