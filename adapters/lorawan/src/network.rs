//! The network server's state and decisions, without I/O: devices,
//! sessions, used DevNonces, and what an uplink or a JoinRequest turns
//! into (events, state changes to commit, and the downlink to send once
//! they are durable). The server owns the socket and the timing.

use crate::config::{Device, DeviceKeys, LorawanConfig};
use crate::frame::{self, DownFrame, FrameError, Kind};
use crate::join::{self, AcceptParams};
use crate::keys::Eui64;
use crate::mac::{self, UpCommand};
use crate::region::{Modulation, Region, Window};
use crate::rejection::Reject;
use crate::session::{self, Session, StoredKey};
use sluice_adapter_common::{Random, StateChange, StateEntry};
use sluice_event::{Event, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// One gateway's reception of a frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Reception {
    /// The concentrator.
    pub gateway: Eui64,
    /// Its counter at the end of reception (µs).
    pub tmst: u32,
    /// Frequency in Hz.
    pub freq_hz: u32,
    /// Spreading factor and bandwidth.
    pub modulation: Modulation,
    /// The region's data rate index.
    pub dr: u8,
    /// RSSI in dBm.
    pub rssi: f64,
    /// SNR in dB.
    pub snr: f64,
}

/// A downlink to send once what it depends on is durable.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// The PHYPayload.
    pub phy: Vec<u8>,
    /// Through this gateway (the best reception).
    pub gateway: Eui64,
    /// RX1 opens this long after `tmst`.
    pub delay: Duration,
    /// The uplink's `tmst`.
    pub tmst: u32,
    /// RX1, if the uplink's channel allows one.
    pub rx1: Option<Window>,
    /// RX2, one second after RX1.
    pub rx2: Window,
    /// Power in dBm.
    pub power: u8,
}

/// What a frame became.
#[derive(Debug)]
pub struct Outcome {
    /// The device.
    pub dev_eui: Eui64,
    /// Events to ingest (none for a join or a retransmission).
    pub events: Vec<Event>,
    /// State to commit with them, before `reply` is sent.
    pub changes: Vec<StateChange>,
    /// The downlink, if one is due.
    pub reply: Option<Reply>,
    /// A session to install once committed (a join).
    pub joined: Option<Session>,
    /// The device acknowledged the last confirmed downlink.
    pub acked: bool,
    /// The application downlink this reply carries, if any.
    pub carried: bool,
    /// Counted and ignored things along the way (MAC commands).
    pub notes: Vec<Reject>,
}

/// An application downlink waiting for a device's next uplink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppDownlink {
    /// FPort 1-223.
    pub f_port: u8,
    /// Payload in clear.
    pub payload: Vec<u8>,
    /// Must be acknowledged by the device.
    pub confirmed: bool,
}

struct DeviceState {
    keys: DeviceKeys,
    session: Option<Session>,
    nonces: HashSet<u16>,
    uplinks: u32,
}

/// Devices and sessions.
pub struct Network {
    region: Region,
    net_id: u32,
    rx1_delay: Duration,
    power: u8,
    dev_status_every: u32,
    devices: HashMap<Eui64, DeviceState>,
    by_addr: HashMap<u32, Eui64>,
    random: Random,
}

impl Network {
    /// From the config and what the sink had stored.
    pub fn new(config: &LorawanConfig, stored: Vec<StateEntry>) -> Network {
        let mut devices: HashMap<Eui64, DeviceState> = config
            .devices()
            .into_iter()
            .map(|Device { dev_eui, keys }| {
                let session = match &keys {
                    DeviceKeys::Abp {
                        dev_addr,
                        nwk_skey,
                        app_skey,
                    } => Some(Session {
                        dev_addr: *dev_addr,
                        nwk_skey: *nwk_skey,
                        app_skey: *app_skey,
                        fcnt_up: None,
                        fcnt_down: 0,
                    }),
                    DeviceKeys::Otaa { .. } => None,
                };
                let state = DeviceState {
                    keys,
                    session,
                    nonces: HashSet::new(),
                    uplinks: 0,
                };
                (dev_eui, state)
            })
            .collect();
        for (key, value) in stored {
            match session::parse_key(&key) {
                Some(StoredKey::Session(eui)) => {
                    if let (Some(d), Some(s)) = (devices.get_mut(&eui), Session::decode(&value)) {
                        // An ABP device whose keys changed in the config starts afresh.
                        let same_abp = match &d.keys {
                            DeviceKeys::Abp {
                                dev_addr,
                                nwk_skey,
                                app_skey,
                            } => {
                                s.dev_addr == *dev_addr
                                    && s.nwk_skey == *nwk_skey
                                    && s.app_skey == *app_skey
                            }
                            DeviceKeys::Otaa { .. } => true,
                        };
                        if same_abp {
                            d.session = Some(s);
                        }
                    }
                }
                Some(StoredKey::Nonce(eui, nonce)) => {
                    if let Some(d) = devices.get_mut(&eui) {
                        d.nonces.insert(nonce);
                    }
                }
                None => {}
            }
        }
        let by_addr = devices
            .iter()
            .filter_map(|(eui, d)| Some((d.session.as_ref()?.dev_addr, *eui)))
            .collect();
        Network {
            region: config.region,
            net_id: config.net_id(),
            rx1_delay: config.rx1_delay.get(),
            power: config.tx_power.unwrap_or(config.region.tx_power()),
            dev_status_every: config.dev_status_every,
            devices,
            by_addr,
            random: Random::seeded(),
        }
    }

    /// Whether `dev_eui` is one of the devices.
    pub fn knows(&self, dev_eui: &Eui64) -> bool {
        self.devices.contains_key(dev_eui)
    }

    /// The device a frame belongs to, without checking it (for routing).
    pub fn owner(&self, phy: &[u8]) -> Option<Eui64> {
        match frame::kind(phy) {
            Kind::DataUp => self.by_addr.get(&frame::header(phy)?.0).copied(),
            Kind::JoinRequest => join::parse_request(phy).map(|r| r.dev_eui),
            Kind::Other => None,
        }
    }

    /// Handles one frame heard by `receptions` (best first), with the
    /// application downlink waiting for its device, if any.
    pub fn uplink(
        &mut self,
        phy: &[u8],
        receptions: &[Reception],
        app: Option<&AppDownlink>,
        now_ms: i64,
    ) -> Result<Outcome, Reject> {
        match frame::kind(phy) {
            Kind::DataUp => self.data(phy, receptions, app, now_ms),
            Kind::JoinRequest => self.join(phy, receptions),
            Kind::Other => Err(Reject::MalformedFrame),
        }
    }

    fn reply(&self, phy: Vec<u8>, best: &Reception, delay: Duration) -> Reply {
        Reply {
            phy,
            gateway: best.gateway,
            delay,
            tmst: best.tmst,
            rx1: self.region.rx1(best.freq_hz, best.dr, 0),
            rx2: self.region.rx2(),
            power: self.power,
        }
    }

    fn data(
        &mut self,
        phy: &[u8],
        receptions: &[Reception],
        app: Option<&AppDownlink>,
        now_ms: i64,
    ) -> Result<Outcome, Reject> {
        let best = receptions.first().ok_or(Reject::MalformedFrame)?;
        let (addr, _) = frame::header(phy).ok_or(Reject::MalformedFrame)?;
        let dev_eui = *self.by_addr.get(&addr).ok_or(Reject::UnknownDevAddr)?;
        let device = self
            .devices
            .get_mut(&dev_eui)
            .ok_or(Reject::UnknownDevAddr)?;
        let session = device.session.as_mut().ok_or(Reject::UnknownDevAddr)?;
        let up = frame::open_uplink(phy, session).map_err(|e| match e {
            FrameError::Malformed => Reject::MalformedFrame,
            FrameError::BadMic => Reject::BadMic,
            FrameError::Replay { .. } => Reject::ReplayedFcnt,
        })?;
        if up.repeat && !up.confirmed {
            return Err(Reject::Retransmission);
        }
        let mut notes = Vec::new();
        let (commands, whole) = mac::parse_up(&up.mac);
        if !whole {
            notes.push(Reject::UnknownMacCommand);
        }
        let mut answers: Vec<Vec<u8>> = Vec::new();
        let mut status = None;
        for c in commands {
            match c {
                UpCommand::LinkCheckReq => answers.push(
                    mac::link_check_ans(best.snr, best.modulation.sf, receptions.len()).to_vec(),
                ),
                UpCommand::DevStatusAns { battery, margin } => status = Some((battery, margin)),
                UpCommand::Ignored(_) => notes.push(Reject::IgnoredMacCommand),
            }
        }
        device.uplinks = device.uplinks.wrapping_add(1);
        if self.dev_status_every > 0 && device.uplinks % self.dev_status_every == 0 {
            answers.push(mac::DEV_STATUS_REQ.to_vec());
        }
        let carry = app.filter(|_| !up.repeat);
        let needs_reply = up.confirmed || !answers.is_empty() || carry.is_some();
        let mut reply = None;
        if needs_reply {
            let down = DownFrame {
                ack: up.confirmed,
                confirmed: carry.is_some_and(|a| a.confirmed),
                data: carry.map(|a| (a.f_port, a.payload.clone())),
                mac: answers,
            };
            if let Some(bytes) = frame::build_downlink(session, session.fcnt_down, &down) {
                session.fcnt_down = session.fcnt_down.wrapping_add(1);
                reply = Some(bytes);
            }
        }
        session.fcnt_up = Some(up.fcnt);
        let changes = vec![StateChange {
            key: session::session_key(dev_eui),
            value: Some(session.encode()),
        }];
        let carried = carry.is_some() && reply.is_some();
        let events = if up.repeat {
            Vec::new()
        } else {
            vec![up_event(dev_eui, &up, receptions, status, now_ms)]
        };
        if up.repeat {
            notes.push(Reject::Retransmission);
        }
        let delay = self.rx1_delay;
        Ok(Outcome {
            dev_eui,
            events,
            changes,
            reply: reply.map(|phy| self.reply(phy, best, delay)),
            joined: None,
            acked: up.ack,
            carried,
            notes,
        })
    }

    fn join(&mut self, phy: &[u8], receptions: &[Reception]) -> Result<Outcome, Reject> {
        let best = receptions.first().ok_or(Reject::MalformedFrame)?;
        let req = join::parse_request(phy).ok_or(Reject::MalformedFrame)?;
        let device = self
            .devices
            .get_mut(&req.dev_eui)
            .ok_or(Reject::UnknownDevEui)?;
        let DeviceKeys::Otaa { join_eui, app_key } = &device.keys else {
            return Err(Reject::UnknownDevEui);
        };
        if *join_eui != req.join_eui {
            return Err(Reject::WrongJoinEui);
        }
        if !join::request_mic_ok(phy, app_key) {
            return Err(Reject::BadMic);
        }
        if !device.nonces.insert(req.dev_nonce) {
            return Err(Reject::ReplayedDevNonce);
        }
        let app_key = *app_key;
        let dev_addr = self.allocate_addr(req.dev_eui);
        let params = AcceptParams {
            app_nonce: (self.random.next_u64() & 0xff_ffff) as u32,
            net_id: self.net_id,
            dev_addr,
            dl_settings: self.region.dl_settings(),
            rx_delay: self.rx1_delay.as_secs() as u8,
            cflist: self.region.cflist(),
        };
        let accept =
            join::accept(&app_key, req.dev_nonce, &params).ok_or(Reject::MalformedFrame)?;
        let session = Session {
            dev_addr,
            nwk_skey: accept.nwk_skey,
            app_skey: accept.app_skey,
            fcnt_up: None,
            fcnt_down: 0,
        };
        let changes = vec![
            StateChange {
                key: session::nonce_key(req.dev_eui, req.dev_nonce),
                value: Some(Vec::new()),
            },
            StateChange {
                key: session::session_key(req.dev_eui),
                value: Some(session.encode()),
            },
        ];
        let delay = self.region.join_accept_delay1();
        Ok(Outcome {
            dev_eui: req.dev_eui,
            events: Vec::new(),
            changes,
            reply: Some(self.reply(accept.phy, best, delay)),
            joined: Some(session),
            acked: false,
            carried: false,
            notes: Vec::new(),
        })
    }

    /// A DevAddr no other device holds: NwkID (NetID's low 7 bits) on top, random below.
    fn allocate_addr(&mut self, dev_eui: Eui64) -> u32 {
        let nwk_id = self.net_id & 0x7f;
        loop {
            let addr = (nwk_id << 25) | (self.random.next_u64() as u32 & 0x01ff_ffff);
            match self.by_addr.get(&addr) {
                Some(owner) if *owner != dev_eui => continue,
                _ => return addr,
            }
        }
    }

    /// Installs a joined session once its commit is durable.
    pub fn install(&mut self, dev_eui: Eui64, session: Session) {
        if let Some(d) = self.devices.get_mut(&dev_eui) {
            if let Some(old) = &d.session {
                self.by_addr.remove(&old.dev_addr);
            }
            self.by_addr.insert(session.dev_addr, dev_eui);
            d.session = Some(session);
        }
    }

    /// Takes back an uplink counter whose commit failed, so the device's
    /// retransmission is ingested rather than taken for a repeat.
    pub fn roll_back(&mut self, dev_eui: Eui64, fcnt: u32) {
        if let Some(s) = self
            .devices
            .get_mut(&dev_eui)
            .and_then(|d| d.session.as_mut())
            && s.fcnt_up == Some(fcnt)
        {
            s.fcnt_up = fcnt.checked_sub(1);
        }
    }

    /// The region.
    pub fn region(&self) -> Region {
        self.region
    }
}

/// The uplink event: `lorawan/<dev_eui>/up`, FPort, FCnt, payload in
/// `raw`, and every receiver's metadata (`gw<i>_…`, best first).
fn up_event(
    dev_eui: Eui64,
    up: &frame::Uplink,
    receptions: &[Reception],
    status: Option<(u8, i8)>,
    now_ms: i64,
) -> Event {
    let hex = dev_eui.hex();
    let mut e = Event::new(format!("lorawan/{hex}/up"), hex, now_ms)
        .with_meta("fcnt", Value::Number(f64::from(up.fcnt)))
        .with_meta("confirmed", Value::Bool(up.confirmed))
        .with_meta("gateways", Value::Number(receptions.len() as f64));
    if let Some(port) = up.f_port {
        e = e.with_meta("fport", Value::Number(f64::from(port)));
    }
    for (i, r) in receptions.iter().enumerate() {
        let p = if i == 0 {
            String::new()
        } else {
            format!("gw{i}_")
        };
        e = e
            .with_meta(format!("{p}gateway"), Value::Text(r.gateway.hex()))
            .with_meta(format!("{p}rssi"), Value::Number(r.rssi))
            .with_meta(format!("{p}snr"), Value::Number(r.snr))
            .with_meta(format!("{p}frequency"), Value::Number(f64::from(r.freq_hz)))
            .with_meta(format!("{p}data_rate"), Value::Text(r.modulation.datr()))
            .with_meta(format!("{p}tmst"), Value::Number(f64::from(r.tmst)));
    }
    if let Some((battery, margin)) = status {
        e = e
            .with_number("battery", f64::from(battery), "")
            .with_number("margin", f64::from(margin), "dB");
    }
    if !up.payload.is_empty() {
        e.raw = Some(up.payload.clone());
    }
    e
}
