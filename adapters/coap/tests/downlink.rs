//! Downlinks through the whole adapter, opened as the core opens it, to a
//! real CoAP device (aiocoap, `tests/peers/observable_server.py`) that the
//! adapter also observes.

mod peers;

use peers::{Device, free_port};
use sluice_adapter_common::downlink::{Answer, Value, Verb};
use sluice_adapter_common::testing::{CollectingSink, context};
use sluice_adapter_common::{Adapter, Downlink, DownlinkError, HumanDuration};
use sluice_coap::CoapConfig;
use sluice_coap::config::ObserveConfig;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downlinks_reach_an_observed_device_and_bring_its_answer_back() {
    let port = free_port();
    let _device = Device::start(port, 0).await;
    let config = CoapConfig {
        listen: Vec::new(),
        observe: vec![ObserveConfig {
            device: "lamp".into(),
            uri: format!("coap://127.0.0.1:{port}/sensors/temp"),
            observe: true,
            poll: HumanDuration::secs(30),
        }],
        ..CoapConfig::default()
    };
    let opened = config.open().await.expect("opens");
    let (context, controls) = context(CollectingSink::new());
    let adapter = tokio::spawn(opened.run(context));

    let set = Downlink::new("lamp", "actuators/led", Verb::Set, Value::Bool(true));
    assert_eq!(
        controls.downlinks.send(set).await,
        Ok(Answer {
            status: "2.04".into(),
            payload: b"PUT true cf=0".to_vec(),
        })
    );
    let invoke = Downlink::new(
        "lamp",
        "actuators/led",
        Verb::Invoke,
        Value::Bytes(vec![0x41]),
    );
    let answer = controls.downlinks.send(invoke).await.expect("answered");
    assert_eq!(answer.payload, b"POST A cf=42");
    let empty = Downlink::new("lamp", "actuators/led", Verb::Invoke, Value::Empty);
    let answer = controls.downlinks.send(empty).await.expect("answered");
    assert_eq!(answer.payload, b"POST  cf=none");

    // Several at once, all answered.
    let many = (0..12).map(|i| {
        let tx = controls.downlinks.clone();
        let d = Downlink::new("lamp", "actuators/led", Verb::Set, Value::Int(i));
        async move { tx.send(d).await }
    });
    let answers = all_at_once(many).await;
    for (i, a) in answers.into_iter().enumerate() {
        let a = a.expect("answered");
        assert_eq!(a.payload, format!("PUT {i} cf=0").into_bytes());
    }

    let locked = Downlink::new("lamp", "actuators/lock", Verb::Set, Value::Int(1));
    assert!(
        matches!(
            controls.downlinks.send(locked).await,
            Err(DownlinkError::Refused { status, .. }) if status == "4.05"
        ),
        "a resource without PUT answers 4.05"
    );
    let stranger = Downlink::new("stranger", "led", Verb::Set, Value::Int(1));
    assert_eq!(
        controls.downlinks.send(stranger).await,
        Err(DownlinkError::UnknownDevice("stranger".into()))
    );

    controls.stop.send(true).expect("the adapter listens");
    tokio::time::timeout(Duration::from_secs(5), adapter)
        .await
        .expect("the adapter stops promptly")
        .expect("no panic")
        .expect("runs cleanly");
}

/// Awaits every future, concurrently, in order.
async fn all_at_once<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("no panic"));
    }
    out
}
