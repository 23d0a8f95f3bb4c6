//! Control: what authenticating a command costs. Signature verification of
//! one command envelope against the bare ed25519 verify (the floor), the
//! whole check including the durable nonce, and a fleet command checked by
//! 100 simulated gateways (each with its own nonce book).
//!
//! `cargo bench --bench control`

use ed25519_dalek::{Signer, Verifier};
use sluice::config::Config;
use sluice::control::{auth, envelope};
use std::time::Instant;

fn per_op(n: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let key = sluice::control::keys::generate().expect("key");
    let topic = "sluice/gw/cmd";
    let body = r#"{"id":"b1","cmd":"ping","args":{}}"#.to_string();
    let env = envelope::seal(
        envelope::Purpose::Command,
        &key,
        topic,
        1,
        &envelope::nonce(),
        body.clone(),
    );
    let payload = serde_json::to_vec(&env).expect("json");
    let sig = key.sign(body.as_bytes());
    let vk = key.verifying_key();
    let bare = per_op(20_000, || {
        vk.verify(body.as_bytes(), &sig).expect("verifies");
    });
    let open = per_op(20_000, || {
        envelope::open(envelope::Purpose::Command, topic, &payload).expect("verifies");
    });
    println!("| bare ed25519 verify (floor) | {bare:.1} µs |");
    println!("| envelope parse + verify per command | {open:.1} µs |");

    // Full authorization with a durable nonce, per gateway, 100 gateways.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let dir = tempfile::tempdir().expect("tempdir");
    let public = sluice::control::keys::public_of(&key).to_base64();
    let mut gateways = Vec::new();
    for i in 0..100 {
        let text = format!(
            "[gateway]\nid = \"gw{i}\"\ndata_dir = \"{}/gw{i}\"\n[control]\n[[control.operators]]\nname = \"ops\"\npublic_key = \"{public}\"\n",
            dir.path().display()
        );
        let config = Config::parse(&text, "bench").expect("config");
        let queue =
            rt.block_on(async { sluice::Runtime::start(config.clone()).await.expect("start") });
        let book = sluice::queue::NonceBook::open(&config.queue_path()).expect("book");
        gateways.push((config, book, queue));
    }
    let fleet_topic = "sluice/fleet/cmd";
    let mut total = 0.0;
    let rounds = 20;
    for _ in 0..rounds {
        let env = envelope::seal(
            envelope::Purpose::Command,
            &key,
            fleet_topic,
            sluice::clock::now_ms(),
            &envelope::nonce(),
            body.clone(),
        );
        let payload = serde_json::to_vec(&env).expect("json");
        let t = Instant::now();
        rt.block_on(async {
            for (config, book, _) in &gateways {
                auth::authorize(
                    &config.control,
                    book,
                    fleet_topic,
                    &payload,
                    sluice::clock::now_ms(),
                )
                .await
                .expect("authorized");
            }
        });
        total += t.elapsed().as_secs_f64() * 1e3;
    }
    println!(
        "| fleet command authorized by 100 gateways (signature, skew, durable nonce), one core | {:.1} ms total, {:.0} µs per gateway |",
        total / rounds as f64,
        total * 1e3 / rounds as f64 / 100.0
    );
    rt.block_on(async {
        for (_, _, r) in gateways {
            r.shutdown().await;
        }
    });
}
