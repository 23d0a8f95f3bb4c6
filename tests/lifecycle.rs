//! The runtime's lifecycle as a user meets it: start-up errors before
//! ready, SIGHUP applying a new config to the same process (adapters and
//! functions added and removed, a config that cannot start rolled back),
//! readings acknowledged during reloads never lost, and a watchdog that
//! pings only while the queue writer makes progress.

mod support;

use sluice::Runtime;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{Broker, Collector, Gateway, config, config_text, free_port, wait_until};

/// A UDP port on loopback that was free a moment ago.
fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind a free UDP port")
}

fn coap_section(addr: SocketAddr) -> String {
    format!("[coap]\nlisten = [\"{addr}\"]\n")
}

fn scale_section() -> String {
    let module = support::functions::dist().join("scale.wasm");
    format!(
        "[[functions]]\nname = \"scale\"\nmodule = \"{}\"\nsubscribe = [\"coap/+\"]\n\
         [functions.config]\nreading = \"temperature\"\nfactor = 1.8\noffset = 32\nunit = \"degF\"\n",
        module.display()
    )
}

/// Waits until the gateway says it is running.
async fn ready(gateway: &Gateway) {
    wait_until(Duration::from_secs(10), "ready", || {
        gateway.log_count("Sluice running") == 1
    })
    .await;
}

/// Writes `text` as the gateway's config, sends SIGHUP, and waits for one
/// more log line with `outcome` in it.
async fn reload(gateway: &Gateway, path: &Path, text: String, outcome: &str) {
    let before = gateway.log_count(outcome);
    std::fs::write(path, text).expect("write config");
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(gateway.pid().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
    wait_until(Duration::from_secs(10), outcome, || {
        gateway.log_count(outcome) == before + 1
    })
    .await;
}

#[test]
fn a_port_in_use_at_start_is_a_clear_error_naming_coap_and_the_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let path = dir.path().join("gw.toml");
    std::fs::write(
        &path,
        config_text(dir.path(), free_port(), "", &coap_section(addr)),
    )
    .expect("write config");
    let began = Instant::now();
    let out = Command::new(support::process::binary())
        .args(["run", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .expect("run sluice");
    let took = began.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started anyway:\n{stderr}");
    assert!(
        stderr.contains(&format!("coap adapter: cannot open UDP {addr}"))
            && stderr.contains("in use"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Sluice running"),
        "reported ready first:\n{stderr}"
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_and_removes_the_coap_server_and_adds_a_function_in_the_same_process() {
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gw.toml");
    let text = |extra: &str| config_text(dir.path(), broker.port, "", extra);
    std::fs::write(&path, text("")).expect("write config");
    let gateway = Gateway::spawn(&path);
    ready(&gateway).await;

    // Add the CoAP server.
    let coap = free_udp();
    reload(
        &gateway,
        &path,
        text(&coap_section(coap)),
        "adapter coap added",
    )
    .await;
    let answer = support::coap::post(coap, "t1", 50, r#"{"temperature": 21.5}"#);
    assert_eq!(answer.code, "2.04", "{answer:?}");
    wait_until(Duration::from_secs(10), "the reading upstream", || {
        collector.unique() == 1
    })
    .await;

    // Remove it: the port is free again.
    reload(&gateway, &path, text(""), "adapter coap removed").await;
    UdpSocket::bind(coap).expect("the CoAP port is released");

    // Add it back, with a function on its readings.
    let both = format!("{}{}", coap_section(coap), scale_section());
    reload(
        &gateway,
        &path,
        text(&both),
        "adapter coap added, functions reloaded",
    )
    .await;
    let answer = support::coap::post(coap, "t1", 50, r#"{"temperature": 20}"#);
    assert_eq!(answer.code, "2.04", "{answer:?}");
    wait_until(
        Duration::from_secs(10),
        "the scaled reading upstream",
        || {
            let r = collector.received.lock().expect("lock");
            r.records
                .iter()
                .any(|rec| rec["subject"] == "fn/scale/t1" && rec["readings"][0]["value"] == 68.0)
        },
    )
    .await;
    assert_eq!(
        gateway.log_count("Sluice running"),
        1,
        "one process throughout"
    );
    assert_eq!(gateway.log_count("Reload refused"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_cannot_start_is_rolled_back_and_the_old_config_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gw.toml");
    let port = free_port();
    let serving = free_udp();
    std::fs::write(
        &path,
        config_text(dir.path(), port, "", &coap_section(serving)),
    )
    .expect("write");
    let gateway = Gateway::spawn(&path);
    ready(&gateway).await;

    let taken = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let busy = taken.local_addr().expect("addr");
    let text = config_text(dir.path(), port, "", &coap_section(busy));
    reload(&gateway, &path, text, "Reload refused").await;
    let log = gateway.log.lock().expect("lock").join("\n");
    assert!(
        log.contains(&format!("cannot open UDP {busy}")) && log.contains("restored"),
        "{log}"
    );
    let answer = support::coap::post(serving, "t1", 0, "21.5");
    assert_eq!(answer.code, "2.04", "the old server answers: {answer:?}");
}

/// Submits readings in a loop until told to stop; counts and returns the
/// ids acknowledged.
async fn stream_readings(
    ingest: sluice::ingest::Ingest,
    mut stop: tokio::sync::watch::Receiver<bool>,
    count: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut acknowledged = Vec::new();
    let mut n = 0;
    let mut pace = tokio::time::interval(Duration::from_millis(2));
    while !*stop.borrow() {
        tokio::select! {
            _ = pace.tick() => {}
            _ = stop.changed() => break,
        }
        // A subject no function takes, so each reading itself goes upstream.
        let reading = sluice_event::Event::new("test/other", "other", 1_764_000_000_000 + n);
        let ids = support::commit(&ingest, vec![reading])
            .await
            .expect("accepted");
        acknowledged.extend(ids.iter().map(|id| id.to_string()));
        count.fetch_add(1, Ordering::Relaxed);
        n += 1;
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_acknowledged_during_reloads_all_arrive() {
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = config(dir.path(), broker.port, "", "");
    let mut runtime = Runtime::start(base.clone()).await.expect("start");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let count = Arc::new(AtomicUsize::new(0));
    let producer = tokio::spawn(stream_readings(runtime.ingest(), stopped, count.clone()));

    let coap = free_udp();
    let steps = [
        (coap_section(coap), "adapter coap added"),
        (String::new(), "adapter coap removed"),
        (
            format!("{}{}", coap_section(coap), scale_section()),
            "adapter coap added, functions reloaded",
        ),
        (coap_section(coap), "functions reloaded"),
    ];
    for (extra, expected) in steps {
        let next = config(dir.path(), broker.port, "", &extra);
        let changes = runtime.apply(next).await.expect("applied");
        assert_eq!(changes, expected);
        let before = count.load(Ordering::Relaxed);
        wait_until(Duration::from_secs(10), "readings between reloads", || {
            count.load(Ordering::Relaxed) >= before + 5
        })
        .await;
    }
    let _ = stop.send(true);
    let acknowledged = producer.await.expect("producer");
    assert!(
        acknowledged.len() > 10,
        "readings flowed: {}",
        acknowledged.len()
    );
    wait_until(
        Duration::from_secs(20),
        "every acknowledged reading upstream",
        || {
            let r = collector.received.lock().expect("lock");
            acknowledged.iter().all(|id| r.copies.contains_key(id))
        },
    )
    .await;
    runtime.shutdown().await;
}

/// Watchdog messages a fake systemd receives on its notify socket.
fn notify_socket(dir: &Path) -> (std::os::unix::net::UnixDatagram, std::path::PathBuf) {
    let path = dir.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    (socket, path)
}

/// Messages received on `socket` within `window`.
fn messages(socket: &std::os::unix::net::UnixDatagram, window: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let until = Instant::now() + window;
    let mut buf = [0u8; 256];
    while Instant::now() < until {
        if let Ok(n) = socket.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    out
}

#[test]
fn the_watchdog_is_pinged_only_while_the_queue_writer_makes_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (notify, notify_path) = notify_socket(dir.path());
    let coap = free_udp();
    let config_path = dir.path().join("gw.toml");
    std::fs::write(
        &config_path,
        config_text(dir.path(), free_port(), "", &coap_section(coap)),
    )
    .expect("write");
    let mut child = Command::new(support::process::binary())
        .args(["run", "--config"])
        .arg(&config_path)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "1000000")
        .env("SLUICE_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sluice");
    let healthy = messages(&notify, Duration::from_secs(2));
    assert!(healthy.iter().any(|m| m.contains("READY=1")), "{healthy:?}");
    assert!(
        healthy.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2,
        "{healthy:?}"
    );

    // Another process holds the database's write lock: the writer's next
    // commit waits for it, and the pings stop.
    let db = rusqlite::Connection::open(dir.path().join("queue.db")).expect("open queue");
    db.execute_batch("BEGIN EXCLUSIVE")
        .expect("lock the database");
    let device = std::thread::spawn(move || support::coap::post(coap, "t1", 0, "1"));
    // Pings come every 500 ms while healthy; the writer waits up to 5 s for
    // the lock. Within that, a whole window of 1.2 s must pass without one.
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let window = messages(&notify, Duration::from_millis(1200));
        if !window.iter().any(|m| m.contains("WATCHDOG=1")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still pinged while the writer was stuck: {window:?}"
        );
    }
    db.execute_batch("ROLLBACK").expect("unlock");
    let _ = device.join();
    let recovered = messages(&notify, Duration::from_secs(2));
    assert!(
        recovered.iter().any(|m| m.contains("WATCHDOG=1")),
        "{recovered:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
