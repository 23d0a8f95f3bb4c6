//! Upgrades as a package manager does them, with the real binary: a stop
//! (SIGTERM) while readings flow, then the next binary on the same queue;
//! a database of the first schema version migrated on open; a database of
//! a newer build refused without being touched.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use support::{Broker, Collector, Gateway, config_text, prefill, wait_until};

/// The tables of schema version 1; later versions only added tables.
const VERSION_1_TABLES: [&str; 5] = [
    "meta",
    "streams",
    "records",
    "function_state",
    "dead_letters",
];

fn queue(dir: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("queue.db")).expect("open queue")
}

fn user_version(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version")
}

fn records(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0))
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_readings_flow_then_the_next_binary_loses_no_acknowledged_reading() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The broker is away while the first binary runs: what it acknowledges
    // stays in its queue, for the next binary to deliver.
    let mut broker = support::absent_broker_with_subscriber().await;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let extra = format!("[coap]\nlisten = [\"127.0.0.1:{port}\"]\nrate_per_device = 100000\n");
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, config_text(dir.path(), broker.port, "", &extra))
        .expect("write config");
    let mut gateway = Gateway::spawn(&config);
    wait_until(Duration::from_secs(20), "the CoAP server", || {
        gateway.log_count("CoAP server listening") > 0
    })
    .await;

    // A device posts reading n as soon as n-1 is answered (2.04 means durable).
    let server: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let acked = Arc::new(AtomicU64::new(0));
    let device = support::coap::posting_device(server, "d", 50_000, acked.clone());
    wait_until(
        Duration::from_secs(30),
        "1000 acknowledged readings",
        || acked.load(Ordering::SeqCst) >= 1000,
    )
    .await;
    // The package's prerm: systemctl stop, i.e. SIGTERM.
    let status = gateway.terminate().expect("exit status");
    assert!(status.success(), "a clean exit on SIGTERM, got {status}");
    device.join().expect("device");
    let acked = acked.load(Ordering::SeqCst);

    // The postinst: the new binary starts on the same queue.
    broker.resume();
    let collector = Collector::start(broker.port).await;
    let mut gateway = Gateway::spawn(&config);
    wait_until(
        Duration::from_secs(60),
        "every acknowledged reading upstream",
        || {
            let got = collector.received.lock().expect("lock").readings_of("d");
            (0..acked).all(|n| got.binary_search(&n).is_ok())
        },
    )
    .await;
    assert_eq!(collector.received.lock().expect("lock").duplicates(), 0);
    assert!(gateway.terminate().is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_queue_is_migrated_on_open_and_its_records_delivered() {
    const RECORDS: u64 = 2_000;
    let dir = tempfile::tempdir().expect("tempdir");
    prefill(dir.path(), RECORDS, "").await;
    {
        // What a version 1 build left: its tables only, user_version 1.
        let conn = queue(dir.path());
        let later: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .expect("tables")
            .into_iter()
            .filter(|t| !VERSION_1_TABLES.contains(&t.as_str()))
            .collect();
        assert!(
            !later.is_empty(),
            "the current schema has tables version 1 lacked"
        );
        for table in later {
            conn.execute_batch(&format!("DROP TABLE {table}"))
                .expect("drop");
        }
        conn.execute_batch("PRAGMA user_version = 1")
            .expect("downgrade");
    }

    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, config_text(dir.path(), broker.port, "", "")).expect("write config");
    let mut gateway = Gateway::spawn(&config);
    wait_until(
        Duration::from_secs(60),
        "every migrated record upstream",
        || collector.unique() as u64 == RECORDS,
    )
    .await;
    assert!(gateway.terminate().is_some_and(|s| s.success()));
    let conn = queue(dir.path());
    assert!(user_version(&conn) > 1, "migrated to the current version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_from_a_newer_build_is_refused_with_a_clear_error_and_left_as_it_was() {
    const RECORDS: u64 = 100;
    let dir = tempfile::tempdir().expect("tempdir");
    prefill(dir.path(), RECORDS, "").await;
    let newer = {
        let conn = queue(dir.path());
        let newer = user_version(&conn) + 1;
        conn.execute_batch(&format!("PRAGMA user_version = {newer}"))
            .expect("upgrade");
        newer
    };

    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        config_text(dir.path(), support::free_port(), "", ""),
    )
    .expect("write config");
    let mut gateway = Gateway::spawn(&config);
    wait_until(Duration::from_secs(20), "the gateway to give up", || {
        !gateway.is_running()
    })
    .await;
    let status = gateway.terminate().expect("exit status");
    assert!(
        !status.success(),
        "a newer queue must stop the start, got {status}"
    );
    assert_eq!(
        gateway.log_count(&format!(
            "queue schema version {newer} is newer than this build understands"
        )),
        1,
        "the error names both versions"
    );
    let conn = queue(dir.path());
    assert_eq!(user_version(&conn), newer, "the version is left as it was");
    assert_eq!(
        records(&conn),
        RECORDS as i64,
        "the records are left as they were"
    );
}
