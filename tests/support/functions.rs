//! The standard functions as the tests load them: `functions/dist/*.wasm`,
//! built by `functions/build.sh` once per test binary.

use std::path::PathBuf;
use std::sync::Once;

/// The folder of the built standard functions, built first if needed.
pub fn dist() -> PathBuf {
    static BUILD: Once = Once::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    BUILD.call_once(|| {
        // The script is quick when nothing changed, and builds in its own target folder.
        let out = std::process::Command::new("bash")
            .arg(root.join("functions/build.sh"))
            .output()
            .expect("run functions/build.sh");
        assert!(
            out.status.success(),
            "functions/build.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
    root.join("functions/dist")
}
