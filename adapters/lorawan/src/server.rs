//! The I/O loop: one task owns the UDP socket, the gateways' downlink
//! paths, the deduplication window and the downlinks in flight; the
//! network's decisions come from [`Network`]. Commits go to a few
//! submitter tasks, each device always to the same one, so one device's
//! state changes commit in order; an answer goes out only once its commit
//! is durable.

use crate::config::LorawanConfig;
use crate::gwmp::{self, RxPk, TxError, TxPk, Upstream};
use crate::keys::Eui64;
use crate::network::{AppDownlink, Network, Reception, Reply};
use crate::region::Modulation;
use crate::rejection::Reject;
use crate::session::Session;
use sluice_adapter_common::downlink::{Answer, Request, Verb};
use sluice_adapter_common::{
    Context, Counters, DownlinkError, Random, RunError, Sink, StateChange,
};
use sluice_event::{Event, Value};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Submitter tasks; a device always uses the same one.
const SUBMITTERS: usize = 8;
/// Commits waiting per submitter before frames are refused as busy.
const SUBMIT_QUEUE: usize = 256;
/// Frames gathered in the deduplication window at once.
const MAX_PENDING: usize = 4096;
/// How long before a window opens the forwarder must have the downlink.
const LEAD: Duration = Duration::from_millis(100);
/// Downlinks awaiting their TX_ACK at most; beyond, the oldest is given up.
const MAX_IN_FLIGHT: usize = 1024;
/// A TX_ACK later than this after its uplink (RX2 of the longest RX1 delay,
/// 16 s, has passed) will not come: the downlink is given up.
const TX_ACK_EXPIRY: Duration = Duration::from_secs(20);

/// A commit for a submitter: a device's frame (with what to do once it
/// is durable) or a gateway's status report (nothing waits for it).
struct Job {
    dev_eui: Eui64,
    events: Vec<Event>,
    changes: Vec<StateChange>,
    done: Option<Done>,
}

/// What comes back once a commit is durable (or refused).
struct Done {
    dev_eui: Eui64,
    fcnt: Option<u32>,
    reply: Option<Reply>,
    joined: Option<Session>,
    carried: bool,
    received: Instant,
    ok: bool,
}

struct Pending {
    deadline: Instant,
    first: Instant,
    receptions: Vec<Reception>,
}

struct InFlight {
    dev_eui: Eui64,
    reply: Reply,
    received: Instant,
    in_rx2: bool,
    request: Option<(Request, bool)>,
}

/// Runs the server on `socket` until shutdown.
pub async fn serve(
    socket: UdpSocket,
    config: LorawanConfig,
    context: Context,
) -> Result<(), RunError> {
    let socket = Arc::new(socket);
    let stored = context
        .sink
        .load_state()
        .await
        .map_err(|e| Box::new(e) as RunError)?;
    let mut network = Network::new(&config, stored);
    let counters = context.counters.clone();
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(SUBMITTERS * SUBMIT_QUEUE);
    let mut submitters = Vec::with_capacity(SUBMITTERS);
    for _ in 0..SUBMITTERS {
        let (tx, mut rx) = mpsc::channel::<Job>(SUBMIT_QUEUE);
        let sink = context.sink.clone();
        let done_tx = done_tx.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let n = job.events.len() as u64;
                let mut done = job.done;
                match sink.accept_with_state(job.events, job.changes).await {
                    Ok(_) => Counters::add(&counters.events_accepted, n),
                    Err(refusal) => {
                        tracing::warn!(eui = %job.dev_eui, error = %refusal.message, "LoRaWAN frame refused by the queue");
                        Counters::add(&counters.events_refused, n);
                        if let Some(d) = done.as_mut() {
                            d.ok = false;
                        }
                    }
                }
                if let Some(done) = done
                    && done_tx.send(done).await.is_err()
                {
                    break;
                }
            }
        });
        submitters.push(tx);
    }
    drop(done_tx);
    let mut gateways: HashMap<Eui64, SocketAddr> = HashMap::new();
    let mut pending: HashMap<Vec<u8>, Pending> = HashMap::new();
    let mut queues: HashMap<Eui64, VecDeque<(AppDownlink, Request)>> = HashMap::new();
    let mut awaiting_ack: HashMap<Eui64, Request> = HashMap::new();
    let mut in_flight: HashMap<[u8; 2], InFlight> = HashMap::new();
    let mut random = Random::seeded();
    let mut shutdown = context.shutdown.clone();
    let mut buf = vec![0u8; gwmp::MAX_DATAGRAM];
    let window = config.dedup_window.get();
    loop {
        let next = pending.values().map(|p| p.deadline).min();
        let sleep = async {
            match next {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.wait() => break,
            received = socket.recv_from(&mut buf) => {
                let (n, from) = match received {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(error = %e, "LoRaWAN receive failed");
                        continue;
                    }
                };
                Counters::add(&counters.bytes_in, n as u64);
                Counters::add(&counters.messages_in, 1);
                match gwmp::parse(&buf[..n]) {
                    Err(e) => {
                        let why = match e {
                            gwmp::GwmpError::Truncated(_) => Reject::Truncated,
                            gwmp::GwmpError::Version(_) => Reject::WrongVersion,
                            gwmp::GwmpError::Ident(_) => Reject::UnknownIdent,
                            gwmp::GwmpError::Json(_) => Reject::InvalidJson,
                        };
                        counters.reject(why);
                        tracing::debug!(peer = %from, error = %e, "GWMP datagram rejected");
                        // Acknowledge a PUSH_DATA we could not read, so the forwarder does not count us as down.
                        if why == Reject::InvalidJson && buf[3] == gwmp::ident::PUSH_DATA {
                            let _ = socket.send_to(&gwmp::ack([buf[1], buf[2]], gwmp::ident::PUSH_ACK), from).await;
                        }
                    }
                    Ok(Upstream::PullData { token, gateway }) => {
                        gateways.insert(Eui64(gateway), from);
                        let _ = socket.send_to(&gwmp::ack(token, gwmp::ident::PULL_ACK), from).await;
                    }
                    Ok(Upstream::PushData { token, gateway, push }) => {
                        let _ = socket.send_to(&gwmp::ack(token, gwmp::ident::PUSH_ACK), from).await;
                        let gateway = Eui64(gateway);
                        if let Some(stat) = push.stat {
                            // Committed by a submitter: the loop never waits for a commit.
                            let job = Job { dev_eui: gateway, events: vec![stat_event(gateway, &stat)], changes: Vec::new(), done: None };
                            if submitters[submitter(gateway)].try_send(job).is_err() {
                                counters.reject(Reject::Busy);
                            }
                        }
                        for rx in &push.rxpk {
                            match reception(&network, gateway, rx) {
                                Ok((phy, r)) => {
                                    let now = Instant::now();
                                    if let Some(p) = pending.get_mut(&phy) {
                                        p.receptions.push(r);
                                    } else if pending.len() >= MAX_PENDING {
                                        counters.reject(Reject::Busy);
                                    } else {
                                        pending.insert(phy, Pending { deadline: now + window, first: now, receptions: vec![r] });
                                    }
                                }
                                Err(why) => counters.reject(why),
                            }
                        }
                    }
                    Ok(Upstream::TxAck { token, gateway, error }) => {
                        let Some(f) = in_flight.remove(&token) else { continue };
                        if error == TxError::None {
                            if let Some((request, confirmed)) = f.request {
                                if confirmed {
                                    awaiting_ack.insert(f.dev_eui, request);
                                } else {
                                    request.answer(Ok(Answer { status: "sent".into(), payload: Vec::new() }));
                                }
                            }
                            continue;
                        }
                        counters.reject(Reject::TxRefused);
                        tracing::warn!(gateway = %Eui64(gateway), error = error.as_str(), "Concentrator refused a downlink");
                        if !f.in_rx2 {
                            // Retry in RX2 if there is still time.
                            send_reply(&socket, &gateways, &mut in_flight, &mut random, &counters, f.dev_eui, f.reply, f.received, true, f.request).await;
                        } else if let Some((request, _)) = f.request {
                            request.answer(Err(DownlinkError::Io(format!("concentrator refused: {}", error.as_str()))));
                        }
                    }
                }
            }
            Some(done) = done_rx.recv() => {
                if !done.ok {
                    if let Some(f) = done.fcnt { network.roll_back(done.dev_eui, f); }
                    counters.reject(Reject::Refused);
                    continue;
                }
                if let Some(s) = done.joined {
                    tracing::info!(dev_eui = %done.dev_eui, dev_addr = format!("{:08x}", s.dev_addr), "LoRaWAN device joined");
                    network.install(done.dev_eui, s);
                }
                if let Some(reply) = done.reply {
                    let request = if done.carried {
                        queues.get_mut(&done.dev_eui).and_then(|q| q.pop_front()).map(|(a, r)| (r, a.confirmed))
                    } else { None };
                    send_reply(&socket, &gateways, &mut in_flight, &mut random, &counters, done.dev_eui, reply, done.received, false, request).await;
                }
            }
            _ = sleep => {
                let now = Instant::now();
                let due: Vec<Vec<u8>> = pending.iter().filter(|(_, p)| p.deadline <= now).map(|(k, _)| k.clone()).collect();
                for phy in due {
                    let Some(mut p) = pending.remove(&phy) else { continue };
                    p.receptions.sort_by(|a, b| b.snr.total_cmp(&a.snr).then(b.rssi.total_cmp(&a.rssi)));
                    let owner = network.owner(&phy);
                    let app = owner.and_then(|d| queues.get(&d)).and_then(|q| q.front()).map(|(a, _)| a.clone());
                    match network.uplink(&phy, &p.receptions, app.as_ref(), sluice_adapter_common::clock::now_ms()) {
                        Err(why) => {
                            counters.reject(why);
                            tracing::debug!(reason = sluice_adapter_common::Rejection::reason(why), "LoRaWAN frame rejected");
                        }
                        Ok(outcome) => {
                            for note in &outcome.notes { counters.reject(*note); }
                            if outcome.acked && let Some(r) = awaiting_ack.remove(&outcome.dev_eui) {
                                r.answer(Ok(Answer { status: "acknowledged".into(), payload: Vec::new() }));
                            }
                            let fcnt = outcome.events.first().and_then(|e| e.meta.iter().find(|m| m.key == "fcnt")).and_then(|m| match m.value { Value::Number(n) => Some(n as u32), _ => None });
                            let idx = submitter(outcome.dev_eui);
                            let job = Job {
                                dev_eui: outcome.dev_eui,
                                events: outcome.events,
                                changes: outcome.changes,
                                done: Some(Done { dev_eui: outcome.dev_eui, fcnt, reply: outcome.reply, joined: outcome.joined, carried: outcome.carried, received: p.first, ok: true }),
                            };
                            if submitters[idx].try_send(job).is_err() {
                                if let Some(f) = fcnt { network.roll_back(outcome.dev_eui, f); }
                                counters.reject(Reject::Busy);
                            }
                        }
                    }
                }
            }
            Some(request) = context.downlinks.recv() => {
                queue_downlink(&network, &mut queues, request, config.downlink_queue);
            }
        }
    }
    // Frames still in the window are dropped: nothing was answered for them.
    for (_, q) in queues.drain() {
        for (_, r) in q {
            r.answer(Err(DownlinkError::Stopped));
        }
    }
    drop(submitters);
    // Resolve what is being committed.
    while let Some(done) = done_rx.recv().await {
        if let Some(s) = done.joined {
            network.install(done.dev_eui, s);
        }
    }
    Ok(())
}

/// An application downlink to the queue of its device: `resource` is the
/// FPort (1-223), `Invoke` sends it confirmed, `Set` unconfirmed.
fn queue_downlink(
    network: &Network,
    queues: &mut HashMap<Eui64, VecDeque<(AppDownlink, Request)>>,
    request: Request,
    max: usize,
) {
    let d = request.downlink.clone();
    let Ok(eui) = crate::keys::parse_hex::<8>(&d.device).map(Eui64) else {
        let device = d.device.clone();
        return request.answer(Err(DownlinkError::UnknownDevice(device)));
    };
    if !network.knows(&eui) {
        let device = d.device.clone();
        return request.answer(Err(DownlinkError::UnknownDevice(device)));
    }
    let Some(f_port) = d
        .resource
        .parse::<u8>()
        .ok()
        .filter(|p| (1..=223).contains(p))
    else {
        return request.answer(Err(DownlinkError::Unsupported(format!(
            "resource `{}` is not an FPort 1-223",
            d.resource
        ))));
    };
    let payload = match &d.value {
        sluice_adapter_common::downlink::Value::Bytes(b) => b.clone(),
        other => other.to_text_bytes(),
    };
    let queue = queues.entry(eui).or_default();
    if queue.len() >= max {
        return request.answer(Err(DownlinkError::Busy));
    }
    let app = AppDownlink {
        f_port,
        payload,
        confirmed: d.verb == Verb::Invoke,
    };
    queue.push_back((app, request));
}

/// Sends `reply` in RX1 if there is still time, else RX2; counts a miss.
#[allow(clippy::too_many_arguments)]
async fn send_reply(
    socket: &UdpSocket,
    gateways: &HashMap<Eui64, SocketAddr>,
    in_flight: &mut HashMap<[u8; 2], InFlight>,
    random: &mut Random,
    counters: &Counters,
    dev_eui: Eui64,
    reply: Reply,
    received: Instant,
    force_rx2: bool,
    request: Option<(Request, bool)>,
) {
    let Some(addr) = gateways.get(&reply.gateway) else {
        counters.reject(Reject::NoDownlinkPath);
        if let Some((r, _)) = request {
            r.answer(Err(DownlinkError::Io(
                "no PULL_DATA from the gateway yet".into(),
            )));
        }
        return;
    };
    let elapsed = received.elapsed();
    let rx2_at = reply.delay + Duration::from_secs(1);
    let (window, offset, in_rx2) = match reply.rx1 {
        Some(w) if !force_rx2 && elapsed + LEAD < reply.delay => (w, reply.delay, false),
        _ if elapsed + LEAD < rx2_at => (reply.rx2, rx2_at, true),
        _ => {
            counters.reject(Reject::TooLate);
            if let Some((r, _)) = request {
                r.answer(Err(DownlinkError::Timeout(rx2_at)));
            }
            return;
        }
    };
    let tmst = reply.tmst.wrapping_add(offset.as_micros() as u32);
    let txpk = TxPk::lora(
        &reply.phy,
        tmst,
        window.freq_hz,
        window.modulation.datr(),
        reply.power,
    );
    let token = [random.next_u64() as u8, random.next_u64() as u8];
    let datagram = gwmp::pull_resp(token, &txpk);
    if let Err(e) = socket.send_to(&datagram, addr).await {
        tracing::warn!(error = %e, "Cannot send PULL_RESP");
    }
    make_room(in_flight, MAX_IN_FLIGHT - 1);
    in_flight.insert(
        token,
        InFlight {
            dev_eui,
            reply,
            received,
            in_rx2,
            request,
        },
    );
}

/// The submitter of a device or gateway: always the same one.
fn submitter(eui: Eui64) -> usize {
    eui.0.iter().fold(0usize, |a, b| {
        a.wrapping_mul(31).wrapping_add(usize::from(*b))
    }) % SUBMITTERS
}

/// Leaves at most `max` downlinks awaiting a TX_ACK: those whose TX_ACK can
/// no longer come go first, then the oldest; an application downlink among
/// them is answered with a timeout.
fn make_room(in_flight: &mut HashMap<[u8; 2], InFlight>, max: usize) {
    if in_flight.len() <= max {
        return;
    }
    in_flight.retain(|_, f| {
        let expired = f.received.elapsed() > TX_ACK_EXPIRY;
        if expired && let Some((r, _)) = f.request.take() {
            r.answer(Err(DownlinkError::Timeout(TX_ACK_EXPIRY)));
        }
        !expired
    });
    // Bounded: one removal per entry over `max`.
    while in_flight.len() > max {
        let Some(oldest) = in_flight
            .iter()
            .min_by_key(|(_, f)| f.received)
            .map(|(t, _)| *t)
        else {
            break;
        };
        if let Some(f) = in_flight.remove(&oldest)
            && let Some((r, _)) = f.request
        {
            r.answer(Err(DownlinkError::Timeout(f.received.elapsed())));
        }
    }
}

/// One rxpk as a reception, with its PHYPayload.
fn reception(network: &Network, gateway: Eui64, rx: &RxPk) -> Result<(Vec<u8>, Reception), Reject> {
    if rx.stat == -1 || rx.modu != "LORA" {
        return Err(Reject::BadPacket);
    }
    let phy = rx.payload().ok_or(Reject::BadPacket)?;
    let modulation = rx
        .datr_str()
        .and_then(Modulation::parse)
        .ok_or(Reject::BadDataRate)?;
    let dr = network
        .region()
        .uplink_dr(modulation)
        .ok_or(Reject::BadDataRate)?;
    Ok((
        phy,
        Reception {
            gateway,
            tmst: rx.tmst,
            freq_hz: rx.freq_hz(),
            modulation,
            dr,
            rssi: rx.rssi,
            snr: rx.lsnr.unwrap_or(0.0),
        },
    ))
}

/// A gateway's `stat` as an event upstream: `lorawan/gateway/<eui>/stat`.
fn stat_event(gateway: Eui64, stat: &gwmp::Stat) -> Event {
    let mut e = Event::new(
        format!("lorawan/gateway/{}/stat", gateway.hex()),
        gateway.hex(),
        sluice_adapter_common::clock::now_ms(),
    )
    .with_number("rx_received", stat.rxnb as f64, "")
    .with_number("rx_ok", stat.rxok as f64, "")
    .with_number("rx_forwarded", stat.rxfw as f64, "")
    .with_number("ack_ratio", stat.ackr, "%")
    .with_number("downlinks_received", stat.dwnb as f64, "")
    .with_number("tx_sent", stat.txnb as f64, "");
    if let (Some(lat), Some(lon)) = (stat.lati, stat.long) {
        e = e
            .with_number("latitude", lat, "deg")
            .with_number("longitude", lon, "deg");
    }
    tracing::info!(gateway = %gateway, rx = stat.rxnb, rx_ok = stat.rxok, tx = stat.txnb, "Gateway status");
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::Region;
    use sluice_adapter_common::downlink::{self, Downlink, Value};

    fn awaiting(age: Duration, request: Option<(Request, bool)>) -> InFlight {
        InFlight {
            dev_eui: Eui64([0; 8]),
            reply: Reply {
                phy: Vec::new(),
                gateway: Eui64([0; 8]),
                delay: Duration::from_secs(1),
                tmst: 0,
                rx1: None,
                rx2: Region::default().rx2(),
                power: 14,
            },
            received: Instant::now().checked_sub(age).expect("uptime"),
            in_rx2: false,
            request,
        }
    }

    #[tokio::test]
    async fn expired_downlinks_go_first_then_the_oldest_and_their_senders_hear_a_timeout() {
        let (sender, receiver) = downlink::channel();
        let waiting = tokio::spawn(async move {
            sender
                .send(Downlink::new("d", "1", Verb::Set, Value::Empty))
                .await
        });
        let request = receiver.recv().await.expect("a request");
        let mut in_flight = HashMap::new();
        in_flight.insert(
            [0, 1],
            awaiting(Duration::from_secs(30), Some((request, false))),
        );
        in_flight.insert([0, 2], awaiting(Duration::from_secs(3), None));
        in_flight.insert([0, 3], awaiting(Duration::from_secs(1), None));
        in_flight.insert([0, 4], awaiting(Duration::ZERO, None));
        make_room(&mut in_flight, 2);
        let mut left: Vec<[u8; 2]> = in_flight.keys().copied().collect();
        left.sort_unstable();
        assert_eq!(left, [[0, 3], [0, 4]], "the expired, then the oldest");
        let answer = waiting.await.expect("no panic");
        assert!(
            matches!(answer, Err(DownlinkError::Timeout(_))),
            "{answer:?}"
        );
        make_room(&mut in_flight, 2);
        assert_eq!(in_flight.len(), 2, "nothing dropped below the bound");
    }
}
