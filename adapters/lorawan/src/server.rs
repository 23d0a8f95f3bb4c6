//! The I/O loop: one task owns the UDP socket, the gateways' downlink
//! paths, the deduplication window and the downlinks in flight; the
//! network's decisions come from [`Network`]. Commits go to a few
//! submitter tasks, each device always to the same one, so one device's
//! state changes commit in order; an answer goes out only once its commit
//! is durable.

use crate::config::LorawanConfig;
use crate::gateways::{self, Gateways};
use crate::gwmp::{self, RxPk, TxError, TxPk, Upstream};
use crate::keys::Eui64;
use crate::network::{AppDownlink, Network, Reception, Reply};
use crate::region::Modulation;
use crate::rejection::Reject;
use crate::session::Session;
use sluice_adapter_common::downlink::{Answer, Request, Verb};
use sluice_adapter_common::{
    Context, Counters, DownlinkError, Figures, LogLimit, Random, RunError, Sink, StateChange,
};
use sluice_event::{Event, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Submitter tasks; a device always uses the same one.
const SUBMITTERS: usize = 8;
/// Commits waiting per submitter before frames are refused as busy.
const SUBMIT_QUEUE: usize = 256;
/// Commits a submitter merges into one submission at most: while one
/// submission becomes durable, the next ones gather.
const MERGE: usize = 64;
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

/// A frame in its deduplication window.
struct Pending {
    deadline: Instant,
    first: Instant,
    receptions: Vec<Reception>,
}

/// The frames in their deduplication windows: the window is the same for
/// all, so they close in the order they opened; a frame every live
/// concentrator has reported closes at once.
#[derive(Default)]
struct Windows {
    frames: HashMap<Vec<u8>, Pending>,
    /// Frames by deadline (a key may be stale: closed early, or reopened).
    order: VecDeque<(Instant, Vec<u8>)>,
    /// Frames closed early, to be handled now.
    complete: Vec<Vec<u8>>,
}

impl Windows {
    /// Adds one reception of `phy`; false if too many frames are open.
    fn add(
        &mut self,
        phy: Vec<u8>,
        r: Reception,
        window: Duration,
        live: usize,
        now: Instant,
    ) -> bool {
        if let Some(p) = self.frames.get_mut(&phy) {
            p.receptions.push(r);
            if p.deadline > now && distinct_gateways(&p.receptions) >= live {
                p.deadline = now;
                self.complete.push(phy);
            }
            return true;
        }
        if self.frames.len() >= MAX_PENDING {
            return false;
        }
        let complete = live <= 1;
        let deadline = if complete { now } else { now + window };
        let receptions = vec![r];
        if complete {
            self.complete.push(phy.clone());
        } else {
            self.order.push_back((deadline, phy.clone()));
        }
        self.frames.insert(
            phy,
            Pending {
                deadline,
                first: now,
                receptions,
            },
        );
        true
    }

    /// When the next frame closes, if any is open.
    fn next(&self) -> Option<Instant> {
        if !self.complete.is_empty() {
            return Some(Instant::now());
        }
        self.order.front().map(|(t, _)| *t)
    }

    /// Takes every frame whose window has closed by `now`.
    fn closed(&mut self, now: Instant) -> Vec<(Vec<u8>, Pending)> {
        let mut out = Vec::new();
        for phy in self.complete.drain(..) {
            if let Some(p) = self.frames.remove(&phy) {
                out.push((phy, p));
            }
        }
        while let Some((deadline, _)) = self.order.front() {
            if *deadline > now {
                break;
            }
            let Some((deadline, phy)) = self.order.pop_front() else {
                break;
            };
            if self
                .frames
                .get(&phy)
                .is_some_and(|p| p.deadline == deadline)
                && let Some(p) = self.frames.remove(&phy)
            {
                out.push((phy, p));
            }
        }
        out
    }
}

/// How many concentrators heard these receptions.
fn distinct_gateways(receptions: &[Reception]) -> usize {
    let mut n = 0;
    for (i, r) in receptions.iter().enumerate() {
        if receptions[..i].iter().all(|o| o.gateway != r.gateway) {
            n += 1;
        }
    }
    n
}

struct InFlight {
    dev_eui: Eui64,
    reply: Reply,
    received: Instant,
    in_rx2: bool,
    request: Option<(Request, bool)>,
}

/// Starts the submitter tasks; each merges what has gathered into one
/// submission, so a commit carries many frames while their order per
/// device is kept.
fn submitters<S: Sink>(
    sink: &S,
    counters: &Arc<Counters>,
    done_tx: &mpsc::Sender<Done>,
) -> Vec<mpsc::Sender<Job>> {
    (0..SUBMITTERS)
        .map(|_| {
            let (tx, mut rx) = mpsc::channel::<Job>(SUBMIT_QUEUE);
            let sink = sink.clone();
            let done_tx = done_tx.clone();
            let counters = counters.clone();
            tokio::spawn(async move {
                let mut jobs = Vec::with_capacity(MERGE);
                while rx.recv_many(&mut jobs, MERGE).await > 0 {
                    let mut events = Vec::new();
                    let mut changes = Vec::new();
                    let mut dones = Vec::with_capacity(jobs.len());
                    for job in jobs.drain(..) {
                        events.extend(job.events);
                        changes.extend(job.changes);
                        dones.extend(job.done);
                    }
                    let n = events.len() as u64;
                    let ok = match sink.accept_with_state(events, changes).await {
                        Ok(_) => {
                            Counters::add(&counters.events_accepted, n);
                            true
                        }
                        Err(refusal) => {
                            tracing::warn!(frames = dones.len(), error = %refusal.message, "LoRaWAN frames refused by the queue");
                            Counters::add(&counters.events_refused, n);
                            false
                        }
                    };
                    for mut done in dones {
                        done.ok = ok;
                        if done_tx.send(done).await.is_err() {
                            return;
                        }
                    }
                }
            });
            tx
        })
        .collect()
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
    let submitters = submitters(&context.sink, &counters, &done_tx);
    drop(done_tx);
    let mut gateways = Gateways::default();
    let mut windows = Windows::default();
    let mut queues: HashMap<Eui64, VecDeque<(AppDownlink, Request)>> = HashMap::new();
    let mut awaiting_ack: HashMap<Eui64, Request> = HashMap::new();
    let mut in_flight: HashMap<[u8; 2], InFlight> = HashMap::new();
    let mut random = Random::seeded();
    let mut shutdown = context.shutdown.clone();
    let mut buf = vec![0u8; gwmp::MAX_DATAGRAM];
    let window = config.dedup_window.get();
    let mut busy_log = LogLimit::new(Duration::from_secs(10));
    loop {
        let next = windows.next();
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
                        gateways.heard(Eui64(gateway), Some(from), Instant::now(), &counters);
                        let _ = socket.send_to(&gwmp::ack(token, gwmp::ident::PULL_ACK), from).await;
                    }
                    Ok(Upstream::PushData { token, gateway, push }) => {
                        let _ = socket.send_to(&gwmp::ack(token, gwmp::ident::PUSH_ACK), from).await;
                        let gateway = Eui64(gateway);
                        let now = Instant::now();
                        gateways.heard(gateway, None, now, &counters);
                        if let Some(stat) = push.stat {
                            let figures = gateways::figures(&stat);
                            // Committed by a submitter: the loop never waits for a commit.
                            let job = Job { events: vec![stat_event(gateway, &figures)], changes: Vec::new(), done: None };
                            counters.report(&gateway.hex(), figures);
                            if submitters[submitter(gateway)].try_send(job).is_err() {
                                counters.reject(Reject::Busy);
                            }
                        }
                        let live = gateways.live(now);
                        for rx in &push.rxpk {
                            match reception(&network, gateway, rx) {
                                Ok((phy, r)) => {
                                    if !windows.add(phy, r, window, live, now) {
                                        counters.reject(Reject::Busy);
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
                for (phy, mut p) in windows.closed(Instant::now()) {
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
                                events: outcome.events,
                                changes: outcome.changes,
                                done: Some(Done { dev_eui: outcome.dev_eui, fcnt, reply: outcome.reply, joined: outcome.joined, carried: outcome.carried, received: p.first, ok: true }),
                            };
                            if submitters[idx].try_send(job).is_err() {
                                if let Some(f) = fcnt { network.roll_back(outcome.dev_eui, f); }
                                counters.reject(Reject::Busy);
                                if let Some(more) = busy_log.allow(Instant::now()) {
                                    tracing::warn!(dev_eui = %outcome.dev_eui, more, "LoRaWAN frame dropped: the queue is not keeping up (`more`: dropped since the last line)");
                                }
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
    gateways: &Gateways,
    in_flight: &mut HashMap<[u8; 2], InFlight>,
    random: &mut Random,
    counters: &Counters,
    dev_eui: Eui64,
    reply: Reply,
    received: Instant,
    force_rx2: bool,
    request: Option<(Request, bool)>,
) {
    let Some(addr) = gateways.downlink(&reply.gateway) else {
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
fn stat_event(gateway: Eui64, figures: &Figures) -> Event {
    let mut e = Event::new(
        format!("lorawan/gateway/{}/stat", gateway.hex()),
        gateway.hex(),
        sluice_adapter_common::clock::now_ms(),
    );
    for (name, value) in figures.iter().filter(|(n, _)| **n != "reported_ms") {
        let unit = match *name {
            "ack_ratio" => "%",
            "latitude" | "longitude" => "deg",
            _ => "",
        };
        e = e.with_number(*name, *value, unit);
    }
    tracing::info!(gateway = %gateway, rx = figures.get("rx_received"), rx_ok = figures.get("rx_ok"), tx = figures.get("tx_sent"), "Gateway status");
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::Region;
    use sluice_adapter_common::downlink::{self, Downlink, Value};

    fn heard_by(gateway: u8) -> Reception {
        Reception {
            gateway: Eui64([gateway; 8]),
            tmst: 0,
            freq_hz: 868_100_000,
            modulation: Modulation { sf: 7, bw: 125 },
            dr: 5,
            rssi: -50.0,
            snr: 9.0,
        }
    }

    #[test]
    fn with_one_live_concentrator_a_frame_closes_at_once() {
        let mut w = Windows::default();
        let now = Instant::now();
        assert!(w.add(vec![1], heard_by(1), Duration::from_secs(1), 1, now));
        assert!(w.next().is_some_and(|t| t <= Instant::now()));
        let closed = w.closed(now);
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].1.receptions.len(), 1);
        assert_eq!(w.next(), None);
    }

    #[test]
    fn a_frame_closes_when_every_live_concentrator_reported_it_or_at_its_deadline() {
        let mut w = Windows::default();
        let now = Instant::now();
        let window = Duration::from_millis(200);
        assert!(w.add(vec![1], heard_by(1), window, 2, now));
        assert!(w.add(vec![2], heard_by(1), window, 2, now));
        assert_eq!(w.next(), Some(now + window));
        assert!(w.closed(now).is_empty());
        // The same concentrator twice is still one.
        assert!(w.add(vec![1], heard_by(1), window, 2, now));
        assert!(w.closed(now).is_empty());
        assert!(w.add(vec![1], heard_by(2), window, 2, now));
        let early = w.closed(now);
        assert_eq!(early.len(), 1);
        assert_eq!(
            (early[0].0.clone(), early[0].1.receptions.len()),
            (vec![1], 3)
        );
        let late = w.closed(now + window);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].0, vec![2]);
        // The closed-early frame's stale deadline entry yields nothing; a new copy opens a new window.
        assert!(w.add(vec![1], heard_by(1), window, 2, now + window));
        assert!(w.closed(now + window).is_empty());
        assert_eq!(w.closed(now + window * 2).len(), 1);
        assert_eq!(w.next(), None);
    }

    #[test]
    fn frames_past_the_bound_are_refused() {
        let mut w = Windows::default();
        let now = Instant::now();
        for i in 0..MAX_PENDING as u32 {
            assert!(w.add(
                i.to_be_bytes().to_vec(),
                heard_by(1),
                Duration::from_secs(1),
                2,
                now
            ));
        }
        assert!(!w.add(vec![9; 5], heard_by(1), Duration::from_secs(1), 2, now));
        assert!(w.add(
            0u32.to_be_bytes().to_vec(),
            heard_by(2),
            Duration::from_secs(1),
            2,
            now
        ));
    }

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
