//! The real `sluice` binary, run as a user runs it, with its log captured.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

/// A running `sluice run --config FILE`.
pub struct Gateway {
    child: Option<Child>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Every line the process wrote to stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// The path of the built binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

impl Gateway {
    /// Starts `sluice run --config <config>` with info logging.
    pub fn spawn(config: &Path) -> Gateway {
        Gateway::spawn_logging(config, "info")
    }

    /// Starts `sluice run --config <config>` with log filter `filter`
    /// (`SLUICE_LOG`, e.g. `info,sluice::ingest=debug` for a line per durable event).
    pub fn spawn_logging(config: &Path, filter: &str) -> Gateway {
        let mut child = Command::new(binary())
            .args(["run", "--config"])
            .arg(config)
            .env("SLUICE_LOG", filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice");
        let log = Arc::new(Mutex::new(Vec::new()));
        let reader = child.stderr.take().map(|stderr| {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("[sluice] {line}");
                    sink.lock().expect("lock").push(line);
                }
            })
        });
        Gateway {
            child: Some(child),
            reader,
            log,
        }
    }

    /// Every log line containing `needle`, so far.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        let log = self.log.lock().expect("lock");
        log.iter().filter(|l| l.contains(needle)).cloned().collect()
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: no chance to clean up, like a power cut for the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().ok()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}
