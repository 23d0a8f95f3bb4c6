//! A real mosquitto broker on loopback, started, stopped, frozen and thawed by tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A mosquitto process with its own config and persistence folder.
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra: String,
}

impl Broker {
    /// Starts a plain broker on a free port, with persistence (so persistent
    /// sessions of the test subscriber survive a restart).
    pub fn start() -> Broker {
        Broker::start_with(super::free_port(), "")
    }

    /// Starts a broker on `port` with extra config lines (e.g. a TLS listener).
    pub fn start_with(port: u16, extra: &str) -> Broker {
        let dir = tempfile::tempdir().expect("broker tempdir");
        let mut broker = Broker {
            port,
            dir,
            child: None,
            extra: extra.to_owned(),
        };
        broker.resume();
        broker
    }

    /// A broker that is configured but not running yet.
    pub fn not_started() -> Broker {
        let dir = tempfile::tempdir().expect("broker tempdir");
        Broker {
            port: super::free_port(),
            dir,
            child: None,
            extra: String::new(),
        }
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.conf")
    }

    /// Starts (again) on the same port; waits until it accepts connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/\n\
             autosave_interval 1\nuser root\nmax_queued_messages 0\nmax_inflight_messages 0\nlog_dest stderr\nlog_type error\nlog_type warning\n{extra}\n",
            port = self.port,
            dir = self.dir.path().display(),
            extra = self.extra
        );
        std::fs::write(self.conf_path(), conf).expect("write broker config");
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.conf_path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto is installed (apt-get install mosquitto)");
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("[mosquitto] {line}");
                }
            });
        }
        self.child = Some(child);
        let port = self.port;
        super::wait_until_blocking(Duration::from_secs(10), "mosquitto's port", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Stops the broker (SIGTERM, so it saves its sessions) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "TERM");
            let _ = child.wait();
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) {
        if let Some(child) = &self.child {
            signal(child, "STOP");
        }
    }

    /// Thaws a frozen broker (SIGCONT).
    pub fn thaw(&self) {
        if let Some(child) = &self.child {
            signal(child, "CONT");
        }
    }

    /// The folder holding the broker's config (for TLS material too).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
