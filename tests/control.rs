//! Remote management end to end: the real binary under `sluice run`, a
//! real mosquitto, and every command sent with `sluice cmd` (signed, through
//! the broker) or through the local socket; refusals crafted by hand.

mod support;

use serde_json::{Value, json};
use sluice::control::envelope::{self, Purpose};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Broker, Collector, Gateway, config_text, process::binary, wait_until_blocking};

/// An operator key pair made with `sluice keygen`: (secret file, public key).
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let out = dir.join(name);
    let status = Command::new(binary())
        .args(["keygen", "--out"])
        .arg(&out)
        .output()
        .expect("keygen");
    assert!(status.status.success(), "{status:?}");
    let public = std::fs::read_to_string(out.with_extension("pub")).expect("pub");
    (out.with_extension("key"), public.trim().to_owned())
}

/// `sluice cmd` with `args`; its exit code and the replies it printed.
fn cmd(args: &[&str]) -> (i32, Vec<Value>) {
    let out = Command::new(binary())
        .arg("cmd")
        .args(args)
        .output()
        .expect("sluice cmd");
    let replies = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    if !out.stderr.is_empty() {
        eprintln!("[sluice cmd] {}", String::from_utf8_lossy(&out.stderr));
    }
    (out.status.code().unwrap_or(-1), replies)
}

/// A gateway under test: its folder, config file, operator key and process.
struct Managed {
    dir: tempfile::TempDir,
    config: PathBuf,
    key: PathBuf,
    gateway: Gateway,
    port: u16,
    id: String,
}

impl Managed {
    /// Starts a gateway with CoAP on a free port and `[control]` naming the
    /// operator key (all commands) and a second key limited to `ping`.
    fn start(broker: &Broker, id: &str, extra: &str) -> Managed {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, public) = keygen(dir.path(), "operator");
        let (_, limited) = keygen(dir.path(), "limited");
        let text = config_text(dir.path(), broker.port, "", &format!(
            "{extra}\n[control]\nmax_skew = \"30 s\"\n\
             [[control.operators]]\nname = \"ops\"\npublic_key = \"{public}\"\n\
             [[control.operators]]\nname = \"monitor\"\npublic_key = \"{limited}\"\ncommands = [\"ping\", \"status\"]\n"
        ))
        .replace("id = \"gw-test\"", &format!("id = \"{id}\""));
        let config = dir.path().join("sluice.toml");
        std::fs::write(&config, text).expect("config");
        let gateway = Gateway::spawn(&config);
        let m = Managed {
            dir,
            config,
            key,
            gateway,
            port: broker.port,
            id: id.to_owned(),
        };
        m.wait_ready();
        m
    }

    /// Waits until a signed ping is answered (connected and subscribed).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, _) = self.cmd_with(&["ping"], 1.0);
            if code == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway never answered a ping"
            );
        }
    }

    fn cmd_with(&self, args: &[&str], timeout: f64) -> (i32, Vec<Value>) {
        let port = format!("mqtt://127.0.0.1:{}", self.port);
        let key = self.key.display().to_string();
        let id = self.id.clone();
        let timeout = timeout.to_string();
        let mut all = vec![
            "--broker",
            &port,
            "--gateway",
            &id,
            "--key",
            &key,
            "--timeout",
            &timeout,
        ];
        all.extend_from_slice(args);
        cmd(&all)
    }

    /// A command through the broker that must succeed; its result.
    fn ok(&self, args: &[&str]) -> Value {
        let (code, replies) = self.cmd_with(args, 10.0);
        assert_eq!(code, 0, "{args:?}: {replies:?}");
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!(replies[0]["signature"], "valid");
        replies[0]["result"].clone()
    }

    /// A command through the broker that must fail; its error code and message.
    fn fails(&self, args: &[&str]) -> (String, String) {
        let (code, replies) = self.cmd_with(args, 10.0);
        assert_eq!(code, 1, "{args:?}: {replies:?}");
        let e = &replies[0]["error"];
        (
            e["code"].as_str().unwrap_or_default().to_owned(),
            e["message"].as_str().unwrap_or_default().to_owned(),
        )
    }

    fn local(&self, args: &[&str]) -> (i32, Vec<Value>) {
        let config = self.config.display().to_string();
        let mut all = vec!["--local", "--config", &config];
        all.extend_from_slice(args);
        cmd(&all)
    }

    fn hash(&self) -> String {
        self.ok(&["config.get"])["hash"]
            .as_str()
            .expect("hash")
            .to_owned()
    }

    fn coap_addr(&self) -> std::net::SocketAddr {
        let status = self.ok(&["status"]);
        let hold = status["adapters"]["coap"]["holds"][0]
            .as_str()
            .expect("coap holds a port")
            .to_owned();
        hold.trim_start_matches("UDP ")
            .parse()
            .unwrap_or_else(|e| panic!("{hold}: {e}"))
    }

    fn restart(&mut self) {
        self.gateway = Gateway::spawn(&self.config);
        self.wait_ready();
    }
}

const COAP: &str = "[coap]\nlisten = [\"127.0.0.1:0\"]\n";

fn module_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    support::wasm::write(dir, name, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_end_to_end_with_sluice_cmd() {
    let broker = Broker::start();
    let collector = Collector::start(broker.port).await;
    let m = tokio::task::block_in_place(|| Managed::start(&broker, "gw-all", COAP));
    tokio::task::block_in_place(|| {
        assert_eq!(m.ok(&["ping"])["pong"], true);
        let status = m.ok(&["status"]);
        assert_eq!(status["gateway"], "gw-all");
        assert_eq!(status["adapters"]["coap"]["state"], "running");
        let hash = m.hash();
        assert_eq!(status["config_hash"], hash.as_str());
        assert!(m.ok(&["queue.stats"])["streams"][0]["name"] == "telemetry");
        assert_eq!(m.ok(&["function.list"])["functions"], json!([]));
        assert_eq!(
            m.ok(&["log.level", r#"{"filter":"info,sluice::control=debug"}"#])["filter"],
            "info,sluice::control=debug"
        );

        // A function deployed is used by the next event.
        let module = module_file(m.dir.path(), "count", support::wasm::COUNT);
        let deployed = m.ok(&[
            "function.deploy",
            "--file",
            &module.display().to_string(),
            r#"{"name":"count","function":{"subscribe":["coap/#"]}}"#,
        ]);
        assert_eq!(deployed["complete"], true);
        let listed = m.ok(&["function.list"]);
        assert_eq!(listed["functions"][0]["name"], "count");
        let coap = m.coap_addr();
        let answer = support::coap::post(coap, "t1", 50, r#"{"temp": 21}"#);
        assert_eq!(answer.code, "2.04", "{answer:?}");
        wait_until_blocking(
            Duration::from_secs(10),
            "a record produced by the deployed function",
            || {
                collector
                    .received
                    .lock()
                    .expect("lock")
                    .records
                    .iter()
                    .any(|r| r["function"] == "count")
            },
        );
        assert_eq!(
            m.ok(&["function.list"])["functions"][0]["counters"]["calls"],
            1
        );
        assert!(m.ok(&["function.resume"])["resumed"].is_number());
        m.ok(&["function.remove", r#"{"name":"count"}"#]);
        assert_eq!(m.ok(&["function.list"])["functions"], json!([]));

        // A downlink reaches a CoAP device where it last posted from; its answer comes back.
        let device = UdpSocket::bind("127.0.0.1:0").expect("bind");
        device
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        device
            .send_to(&support::coap::con_post(9, "lamp", br#"{"on": 0}"#), coap)
            .expect("post");
        let mut buf = [0u8; 1500];
        device.recv_from(&mut buf).expect("ack");
        let answering = std::thread::spawn(move || {
            use coap_lite::{MessageClass, MessageType, Packet};
            let (n, from) = device.recv_from(&mut buf).expect("the downlink");
            let request = Packet::from_bytes(&buf[..n]).expect("valid request");
            let mut response = Packet::new();
            response.header.set_type(MessageType::Acknowledgement);
            response.header.code = MessageClass::Response(coap_lite::ResponseType::Changed);
            response.header.message_id = request.header.message_id;
            response.set_token(request.get_token().to_vec());
            response.payload = b"led is on".to_vec();
            device
                .send_to(&response.to_bytes().expect("encode"), from)
                .expect("answer");
            request.payload
        });
        let down = m.ok(&[
            "device.downlink",
            r#"{"adapter":"coap","device":"lamp","resource":"led","verb":"set","value":true}"#,
        ]);
        assert_eq!(down, json!({"status": "2.04", "payload": "led is on"}));
        assert_eq!(answering.join().expect("device"), b"true");

        // Queue purge of one stream, and the same id twice runs once.
        let (code, first) = m.cmd_with(
            &[
                "--id",
                "purge-1",
                "queue.purge",
                r#"{"stream":"telemetry"}"#,
            ],
            10.0,
        );
        assert_eq!(code, 0, "{first:?}");
        let (code, again) = m.cmd_with(
            &[
                "--id",
                "purge-1",
                "queue.purge",
                r#"{"stream":"telemetry"}"#,
            ],
            10.0,
        );
        assert_eq!(code, 0);
        assert_eq!(again[0]["cached"], true);
        assert_eq!(again[0]["result"], first[0]["result"]);
        assert_eq!(
            m.fails(&["queue.purge", r#"{"stream":"nope"}"#]).0,
            "not_found"
        );

        let restarted = m.ok(&["adapter.restart", r#"{"adapter":"coap"}"#]);
        assert_eq!(restarted["restarted"], true);

        // config.apply with a changed stream bound; config.get shows it.
        let mut text = m.ok(&["config.get"])["config"]
            .as_str()
            .expect("text")
            .to_owned();
        text.push_str(
            "\n[[queue.streams]]\nname = \"telemetry\"\nsubjects = [\"#\"]\nmax_records = 5000\n",
        );
        let file = m.dir.path().join("new.toml");
        std::fs::write(&file, &text).expect("write");
        let applied = m.ok(&["config.apply", "--file", &file.display().to_string()]);
        assert_ne!(applied["hash"], hash.as_str());
        assert!(
            m.ok(&["config.get"])["config"]
                .as_str()
                .expect("text")
                .contains("5000")
        );

        // The local socket: same commands, no key; `sluice status` uses it.
        let (code, local) = m.local(&["ping"]);
        assert_eq!(code, 0, "{local:?}");
        let out = Command::new(binary())
            .args(["status", "--config"])
            .arg(&m.config)
            .output()
            .expect("status");
        assert!(out.status.success(), "{out:?}");
        let status: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(status["result"]["config_hash"], applied["hash"]);
        let (code, unknown) = m.local(&["reboot"]);
        assert_eq!(code, 1);
        assert_eq!(unknown[0]["error"]["code"], "unknown_command");
    });
    drop(m);
    drop(collector);
}

/// A client that sends hand-made envelopes and reads the raw replies.
struct Raw {
    client: rumqttc::AsyncClient,
    replies: tokio::sync::mpsc::Receiver<Vec<u8>>,
}

impl Raw {
    async fn connect(port: u16, gateway: &str) -> Raw {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let mut o = MqttOptions::new(format!("raw-{gateway}"), "127.0.0.1", port);
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(o, 10);
        client
            .subscribe(format!("sluice/{gateway}/reply"), QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let (tx, replies) = tokio::sync::mpsc::channel(64);
        let (ready, subscribed) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut ready = Some(ready);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(p.payload.to_vec()).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        subscribed.await.expect("subscribed");
        Raw { client, replies }
    }

    /// Publishes `payload` to the gateway's command topic; the body of the
    /// reply with id `id` (`None`: a refusal that could not read the id).
    /// Replies to other clients' commands on the same topic are skipped.
    async fn send(&mut self, gateway: &str, payload: Vec<u8>, id: Option<&str>) -> Value {
        self.client
            .publish(
                format!("sluice/{gateway}/cmd"),
                rumqttc::QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .expect("publish");
        loop {
            let bytes = tokio::time::timeout(Duration::from_secs(10), self.replies.recv())
                .await
                .expect("a reply within 10 s")
                .expect("reply");
            let (env, _) =
                envelope::open(Purpose::Reply, &format!("sluice/{gateway}/reply"), &bytes)
                    .expect("signed reply");
            let body: Value = serde_json::from_str(&env.body).expect("body");
            if body["id"].as_str() == id {
                return body;
            }
        }
    }
}

fn signed(
    key: &ed25519_dalek::SigningKey,
    topic: &str,
    ts: i64,
    nonce: &str,
    body: &str,
) -> Vec<u8> {
    serde_json::to_vec(&envelope::seal(
        Purpose::Command,
        key,
        topic,
        ts,
        nonce,
        body.to_owned(),
    ))
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_forged_stale_replayed_and_not_permitted_commands_are_refused_and_change_nothing()
{
    let broker = Broker::start();
    let m = tokio::task::block_in_place(|| Managed::start(&broker, "gw-auth", COAP));
    let hash = tokio::task::block_in_place(|| m.hash());
    let op = sluice::control::keys::read_secret(&m.key).expect("key");
    let limited =
        sluice::control::keys::read_secret(&m.dir.path().join("limited.key")).expect("key");
    let stranger = sluice::control::keys::generate().expect("key");
    let topic = "sluice/gw-auth/cmd";
    let now = sluice::clock::now_ms();
    let purge = r#"{"id":"p","cmd":"queue.purge","args":{"stream":"telemetry"}}"#;
    let apply = r#"{"id":"a","cmd":"config.apply","args":{"config":"[gateway]\nid = \"evil\"\n"}}"#;
    let mut raw = Raw::connect(broker.port, "gw-auth").await;
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("none").to_owned();

    let r = raw
        .send("gw-auth", apply.as_bytes().to_vec(), Some("a"))
        .await;
    assert_eq!(code(&r), "unsigned");
    assert_eq!(r["id"], "a", "a readable body is named in the refusal");
    let mut forged = envelope::seal(
        Purpose::Command,
        &op,
        topic,
        now,
        &envelope::nonce(),
        purge.to_owned(),
    );
    forged.body = apply.to_owned();
    let r = raw
        .send("gw-auth", serde_json::to_vec(&forged).expect("json"), None)
        .await;
    assert_eq!(code(&r), "bad_signature");
    let r = raw
        .send(
            "gw-auth",
            signed(&op, "sluice/other/cmd", now, &envelope::nonce(), apply),
            None,
        )
        .await;
    assert_eq!(
        code(&r),
        "bad_signature",
        "signed for another gateway's topic"
    );
    let r = raw
        .send(
            "gw-auth",
            signed(&stranger, topic, now, &envelope::nonce(), apply),
            Some("a"),
        )
        .await;
    assert_eq!(code(&r), "unknown_key");
    let r = raw
        .send(
            "gw-auth",
            signed(&op, topic, now - 120_000, &envelope::nonce(), apply),
            Some("a"),
        )
        .await;
    assert_eq!(code(&r), "stale");
    let r = raw
        .send(
            "gw-auth",
            signed(&limited, topic, now, &envelope::nonce(), apply),
            Some("a"),
        )
        .await;
    assert_eq!(code(&r), "not_permitted");
    let ping = r#"{"id":"ping-1","cmd":"ping"}"#;
    let once = signed(
        &op,
        topic,
        sluice::clock::now_ms(),
        &envelope::nonce(),
        ping,
    );
    assert_eq!(
        raw.send("gw-auth", once.clone(), Some("ping-1")).await["ok"],
        true
    );
    assert_eq!(
        code(&raw.send("gw-auth", once.clone(), Some("ping-1")).await),
        "replayed"
    );
    assert_eq!(
        raw.send(
            "gw-auth",
            signed(
                &limited,
                topic,
                sluice::clock::now_ms(),
                &envelope::nonce(),
                ping
            ),
            Some("ping-1")
        )
        .await["ok"],
        true
    );

    // Nothing changed; the refusals are counted; a restart still knows the nonce.
    let mut m = m;
    tokio::task::block_in_place(|| {
        assert_eq!(m.hash(), hash);
        assert_eq!(m.ok(&["status"])["commands_refused"], 7);
        m.gateway.terminate();
        m.restart();
    });
    assert_eq!(
        code(&raw.send("gw-auth", once, Some("ping-1")).await),
        "replayed",
        "nonces outlive a restart"
    );
}

/// A CoAP port that is taken for as long as the returned socket lives.
fn taken_port() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = s.local_addr().expect("addr").port();
    (s, port)
}

#[test]
fn a_broken_config_is_refused_and_one_that_cannot_start_is_rolled_back() {
    let broker = Broker::start();
    let m = Managed::start(&broker, "gw-apply", COAP);
    let hash = m.hash();
    let coap = m.coap_addr();
    let text = m.ok(&["config.get"])["config"]
        .as_str()
        .expect("text")
        .to_owned();

    let broken = m.dir.path().join("broken.toml");
    std::fs::write(&broken, text.replace("[coap]", "[coap]\nlisten_typo = 1")).expect("write");
    let (code, message) = m.fails(&["config.apply", "--file", &broken.display().to_string()]);
    assert_eq!(code, "invalid_config");
    assert!(
        message.contains("candidate.toml:") && message.contains("listen_typo"),
        "{message}"
    );

    let (_holder, port) = taken_port();
    let busy = m.dir.path().join("busy.toml");
    std::fs::write(
        &busy,
        text.replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
    )
    .expect("write");
    let (code, message) = m.fails(&["config.apply", "--file", &busy.display().to_string()]);
    assert_eq!(code, "apply_failed", "{message}");
    assert!(message.contains(&port.to_string()), "{message}");

    assert_eq!(m.hash(), hash, "the old config keeps running");
    // Restored from its config (`127.0.0.1:0`), so on a new port of the OS's choosing.
    let restored = m.coap_addr();
    assert_ne!(restored.port(), port);
    let _ = coap;
    assert_eq!(
        support::coap::post(restored, "t1", 50, r#"{"temp": 1}"#).code,
        "2.04"
    );
    assert!(
        !m.dir.path().join("managed/config.toml").exists(),
        "nothing was saved"
    );
}

#[test]
fn a_restart_keeps_deployed_functions_and_the_applied_config() {
    let broker = Broker::start();
    let mut m = Managed::start(&broker, "gw-keep", COAP);
    let module = module_file(m.dir.path(), "count", support::wasm::COUNT);
    m.ok(&[
        "function.deploy",
        "--file",
        &module.display().to_string(),
        r#"{"name":"count","function":{"subscribe":["coap/#"]}}"#,
    ]);
    let hash = m.hash();
    m.gateway.terminate();
    m.restart();
    assert_eq!(m.hash(), hash);
    let listed = m.ok(&["function.list"]);
    assert_eq!(listed["functions"][0]["name"], "count");
    assert_eq!(
        listed["functions"][0]["sha256"],
        sluice::control::store::sha256_hex(&std::fs::read(&module).expect("read")).as_str()
    );
}

#[test]
fn a_sigkill_during_deploy_or_apply_leaves_the_old_or_the_new_version() {
    let broker = Broker::start();
    let mut m = Managed::start(&broker, "gw-kill", COAP);
    let module = module_file(m.dir.path(), "count", support::wasm::COUNT);
    let mut outcomes = Vec::new();
    for (round, delay_ms) in [0u64, 5, 20, 60].into_iter().enumerate() {
        let old = m.hash();
        let port = format!("mqtt://127.0.0.1:{}", m.port);
        let key = m.key.display().to_string();
        let deploy = round % 2 == 0;
        // The command's own arguments: a module and its settings, or a config file.
        let tail: Vec<std::ffi::OsString> = if deploy {
            vec![
                "function.deploy".into(),
                "--file".into(),
                module.clone().into(),
                format!(r#"{{"name":"f{round}","function":{{"subscribe":["coap/#"]}}}}"#).into(),
            ]
        } else {
            let mut text = m.ok(&["config.get"])["config"]
                .as_str()
                .expect("text")
                .to_owned();
            text.push_str(&format!(
                "\n[[queue.streams]]\nname = \"telemetry\"\nsubjects = [\"#\"]\nmax_records = {}\n",
                1000 + round
            ));
            let file = m.dir.path().join(format!("r{round}.toml"));
            std::fs::write(&file, text).expect("write");
            vec!["config.apply".into(), "--file".into(), file.into()]
        };
        let mut child = Command::new(binary())
            .args([
                "cmd",
                "--broker",
                &port,
                "--gateway",
                "gw-kill",
                "--key",
                &key,
                "--timeout",
                "5",
            ])
            .args(&tail)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("cmd");
        // Kill once the command is on its way, at a different moment each round.
        let name = if deploy {
            "command=function.deploy"
        } else {
            "command=config.apply"
        };
        wait_until_blocking(Duration::from_secs(10), "the command arrives", || {
            m.gateway.log_count(name) > 0
        });
        std::thread::sleep(Duration::from_millis(delay_ms));
        m.gateway.kill();
        let _ = child.wait();
        m.restart();
        let now = m.hash();
        let text = m.ok(&["config.get"])["config"]
            .as_str()
            .expect("text")
            .to_owned();
        let new = if deploy {
            text.contains(&format!("f{round}"))
        } else {
            text.contains(&format!("max_records = {}", 1000 + round))
        };
        assert!(
            now == old || new,
            "round {round}: neither the old config nor the new one"
        );
        assert_eq!(
            now != old,
            new,
            "round {round}: the hash and the text disagree"
        );
        // Whatever is there loads and runs: every module it names is whole.
        for f in m.ok(&["function.list"])["functions"]
            .as_array()
            .expect("list")
        {
            assert!(f["sha256"].is_string(), "{f}");
        }
        outcomes.push(new);
    }
    eprintln!("new version after each kill: {outcomes:?}");
}

#[test]
fn a_fleet_command_reaches_twenty_gateways_and_every_reply_arrives() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path(), "fleet-op");
    let mut gateways = Vec::new();
    for i in 0..20 {
        let data = dir.path().join(format!("gw{i}"));
        std::fs::create_dir_all(&data).expect("dir");
        let text = config_text(
            &data,
            broker.port,
            "",
            &format!(
                "[control]\n[[control.operators]]\nname = \"ops\"\npublic_key = \"{public}\"\n"
            ),
        )
        .replace("id = \"gw-test\"", &format!("id = \"fleet-{i:02}\""));
        let config = data.join("sluice.toml");
        std::fs::write(&config, text).expect("config");
        gateways.push(Gateway::spawn(&config));
    }
    let port = format!("mqtt://127.0.0.1:{}", broker.port);
    let key = key.display().to_string();
    // `sluice cmd` to the whole fleet, expecting 20 replies within `timeout` s.
    let fleet = |timeout: &str, command: &str| {
        cmd(&[
            "--broker",
            &port,
            "--fleet",
            "--expect",
            "20",
            "--key",
            &key,
            "--timeout",
            timeout,
            command,
        ])
    };
    // Each gateway says it is subscribed only by answering; wait until all do.
    let deadline = Instant::now() + Duration::from_secs(60);
    let replies = loop {
        let (code, replies) = fleet("5", "ping");
        if code == 0 && replies.len() == 20 {
            break replies;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of 20 gateways answered",
            replies.len()
        );
    };
    let mut names: Vec<&str> = replies
        .iter()
        .map(|r| r["gateway"].as_str().unwrap_or_default())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20);
    assert!(
        replies
            .iter()
            .all(|r| r["signature"] == "valid" && r["ok"] == true)
    );
    // A second fleet command: every gateway answers it too.
    let (code, replies) = fleet("10", "status");
    assert_eq!((code, replies.len()), (0, 20));
}
