//! The simulated LoRaWAN site: one concentrator (a packet forwarder speaking
//! GWMP v2 to the real adapter over loopback UDP) and two Class A devices it
//! hears, whose frames are built, signed and encrypted with the `lorawan`
//! crate as a device would: an OTAA device that joins first (it decrypts the
//! JoinAccept from the PULL_RESP and derives its session keys) and an ABP
//! device. Both send Cayenne LPP, decoded by the `cayenne-lpp` function. The
//! concentrator also sends a `stat` report now and then (gateway health).

use base64::Engine as _;
use lorawan::creator::{DataPayloadCreator, JoinRequestCreator};
use lorawan::keys::{AES128, AppKey, AppSKey, NewSKey};
use lorawan::parser::{DevNonce, JoinAcceptPayload, PhyPayload, parse};
use sluice_adapter_common::{Random, Shutdown};
use sluice_lorawan::gwmp;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// The concentrator's gateway EUI.
pub const GATEWAY_EUI: [u8; 8] = [0xaa, 0x55, 0x5a, 0x00, 0x00, 0x00, 0xde, 0x01];
/// The OTAA device (its DevEUI, JoinEUI and AppKey are in `demo.toml`).
pub const OTAA_EUI: &str = "70b3d57ed0000001";
const OTAA_JOIN_EUI: [u8; 8] = [0x70, 0xb3, 0xd5, 0x7e, 0xd0, 0x00, 0x00, 0x00];
const OTAA_APP_KEY: [u8; 16] = [
    0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c,
];
/// The ABP device (its DevAddr and session keys are in `demo.toml`).
pub const ABP_EUI: &str = "70b3d57ed0000002";
const ABP_DEV_ADDR: u32 = 0x2601_1b02;
const ABP_NWK_SKEY: [u8; 16] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
];
const ABP_APP_SKEY: [u8; 16] = [
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
];

/// Between two uplinks of one device (a real device sends every minutes).
const UPLINK_EVERY: Duration = Duration::from_secs(2);
/// Between the concentrator's `stat` reports (a forwarder's default is 30 s).
const STAT_EVERY: Duration = Duration::from_secs(5);
/// How long the OTAA device waits for its JoinAccept before asking again.
const JOIN_TIMEOUT: Duration = Duration::from_secs(3);
/// Join attempts before the device gives up.
const JOIN_TRIES: u32 = 5;
/// The uplink channel (EU868 868.1 MHz) and data rate.
const FREQ_MHZ: f64 = 868.1;
const DATR: &str = "SF7BW125";

/// What the simulated LoRaWAN site did, counted as it goes.
#[derive(Debug, Default)]
pub struct LoraStats {
    /// JoinRequests sent.
    pub join_requests: AtomicU64,
    /// JoinAccepts received, decrypted and with a valid MIC.
    pub joined: AtomicU64,
    /// Data uplinks sent (both devices).
    pub uplinks: AtomicU64,
    /// PUSH_ACKs received.
    pub push_acks: AtomicU64,
    /// PULL_RESPs (downlinks) received.
    pub downlinks: AtomicU64,
}

/// A copy of [`LoraStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct LoraTotals {
    pub join_requests: u64,
    pub joined: u64,
    pub uplinks: u64,
    pub push_acks: u64,
    pub downlinks: u64,
}

impl LoraStats {
    /// The counts so far.
    pub fn totals(&self) -> LoraTotals {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LoraTotals {
            join_requests: n(&self.join_requests),
            joined: n(&self.joined),
            uplinks: n(&self.uplinks),
            push_acks: n(&self.push_acks),
            downlinks: n(&self.downlinks),
        }
    }
}

/// A device's session: DevAddr, keys and its next uplink counter.
struct Session {
    dev_addr: u32,
    nwk_skey: [u8; 16],
    app_skey: [u8; 16],
    fcnt: u32,
}

/// Starts the concentrator and its devices against the adapter at `server`.
pub async fn start(
    server: SocketAddr,
    seed: u64,
    stats: &Arc<LoraStats>,
    shutdown: &Shutdown,
) -> std::io::Result<JoinHandle<()>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(server).await?;
    let stats = stats.clone();
    let mut shutdown = shutdown.clone();
    Ok(tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.wait() => {}
            r = run(socket, seed, &stats) => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "Simulated LoRaWAN concentrator stopped");
                }
            }
        }
    }))
}

/// The concentrator's life: PULL_DATA, the OTAA join, then uplinks from
/// both devices in turn and a `stat` report now and then.
async fn run(socket: UdpSocket, seed: u64, stats: &LoraStats) -> std::io::Result<()> {
    let mut random = Random::from_seed(seed);
    let mut concentrator = Concentrator {
        socket,
        token: random.next_u64() as u16,
        tmst: random.next_u64() as u32,
        stats,
        stat_due: tokio::time::Instant::now() + STAT_EVERY,
    };
    concentrator.pull_data().await?;
    let mut otaa = None;
    for _ in 0..JOIN_TRIES {
        let dev_nonce = random.next_u64() as u16;
        if let Some(s) = concentrator.join(dev_nonce).await? {
            otaa = Some(s);
            break;
        }
    }
    let mut abp = Session {
        dev_addr: ABP_DEV_ADDR,
        nwk_skey: ABP_NWK_SKEY,
        app_skey: ABP_APP_SKEY,
        fcnt: 1,
    };
    let mut tick = tokio::time::interval(UPLINK_EVERY);
    // Bounded: about a day of demo.
    for _ in 0..50_000u32 {
        tick.tick().await;
        // ABP: temperature (channel 1) and relative humidity (channel 2).
        let temperature = (random.between(18.0, 26.0) * 10.0) as i16;
        let humidity = random.range(70, 110) as u8;
        let mut lpp = vec![0x01, 0x67];
        lpp.extend_from_slice(&temperature.to_be_bytes());
        lpp.extend_from_slice(&[0x02, 0x68, humidity]);
        concentrator.uplink(&mut abp, &lpp).await?;
        if let Some(s) = otaa.as_mut() {
            // OTAA: illuminance (channel 3) and a digital input (channel 4).
            let lux = random.range(200, 900) as u16;
            let mut lpp = vec![0x03, 0x65];
            lpp.extend_from_slice(&lux.to_be_bytes());
            lpp.extend_from_slice(&[0x04, 0x00, (random.next_u64() & 1) as u8]);
            concentrator.uplink(s, &lpp).await?;
        }
        concentrator.answer_pending().await?;
    }
    Ok(())
}

struct Concentrator<'a> {
    socket: UdpSocket,
    token: u16,
    /// The concentrator's microsecond counter.
    tmst: u32,
    stats: &'a LoraStats,
    stat_due: tokio::time::Instant,
}

impl Concentrator<'_> {
    fn next_token(&mut self) -> [u8; 2] {
        self.token = self.token.wrapping_add(1);
        self.token.to_be_bytes()
    }

    async fn pull_data(&mut self) -> std::io::Result<()> {
        let token = self.next_token();
        self.socket
            .send(&gwmp::pull_data(token, GATEWAY_EUI))
            .await?;
        Ok(())
    }

    /// Sends `phy` as heard now; the `stat` report rides along when due.
    async fn push(&mut self, phy: &[u8]) -> std::io::Result<()> {
        self.tmst = self.tmst.wrapping_add(UPLINK_EVERY.as_micros() as u32);
        let rx = gwmp::rxpk_json(phy, self.tmst, FREQ_MHZ, DATR, -57, 9.5);
        let now = tokio::time::Instant::now();
        let json = if now >= self.stat_due {
            self.stat_due = now + STAT_EVERY;
            let up = self.stats.uplinks.load(Ordering::Relaxed);
            let down = self.stats.downlinks.load(Ordering::Relaxed);
            let rx_body = rx.trim_start_matches('{').trim_end_matches('}');
            format!(
                "{{{rx_body},\"stat\":{{\"time\":\"2026-01-01 00:00:00 GMT\",\"rxnb\":{up},\"rxok\":{up},\"rxfw\":{up},\"ackr\":100.0,\"dwnb\":{down},\"txnb\":{down}}}}}"
            )
        } else {
            rx
        };
        let token = self.next_token();
        self.socket
            .send(&gwmp::push_data(token, GATEWAY_EUI, &json))
            .await?;
        Ok(())
    }

    /// Reads what the server sent within `wait`: acknowledgements are
    /// counted, a PULL_RESP is acknowledged (TX_ACK) and its PHYPayload returned.
    async fn receive(&mut self, wait: Duration) -> std::io::Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; gwmp::MAX_DATAGRAM];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let n = match tokio::time::timeout_at(deadline, self.socket.recv(&mut buf)).await {
                Err(_) => return Ok(None),
                Ok(r) => r?,
            };
            let Some(&ident) = buf.get(3).filter(|_| n >= 4) else {
                continue;
            };
            match ident {
                gwmp::ident::PUSH_ACK => {
                    self.stats.push_acks.fetch_add(1, Ordering::Relaxed);
                }
                gwmp::ident::PULL_RESP => {
                    self.stats.downlinks.fetch_add(1, Ordering::Relaxed);
                    let mut ack = vec![2, buf[1], buf[2], gwmp::ident::TX_ACK];
                    ack.extend_from_slice(&GATEWAY_EUI);
                    self.socket.send(&ack).await?;
                    let phy = serde_json::from_slice::<serde_json::Value>(&buf[4..n])
                        .ok()
                        .and_then(|v| {
                            let data = v["txpk"]["data"].as_str()?.to_owned();
                            base64::engine::general_purpose::STANDARD.decode(data).ok()
                        });
                    return Ok(phy);
                }
                _ => {}
            }
        }
    }

    /// Takes in what arrived since the last uplinks (acks, downlinks).
    async fn answer_pending(&mut self) -> std::io::Result<()> {
        // Bounded: a handful of datagrams per round.
        for _ in 0..16 {
            if self.receive(Duration::from_millis(1)).await?.is_none() {
                break;
            }
        }
        Ok(())
    }

    /// A JoinRequest with `dev_nonce`; the session if a valid JoinAccept came.
    async fn join(&mut self, dev_nonce: u16) -> std::io::Result<Option<Session>> {
        let nonce = dev_nonce.to_le_bytes();
        let mut eui = eui_bytes(OTAA_EUI);
        eui.reverse();
        let mut join_eui = OTAA_JOIN_EUI;
        join_eui.reverse();
        let mut creator = JoinRequestCreator::new();
        creator
            .set_app_eui(&join_eui)
            .set_dev_eui(&eui)
            .set_dev_nonce(&nonce);
        let phy = creator.build(&AppKey::from(OTAA_APP_KEY)).to_vec();
        self.stats.join_requests.fetch_add(1, Ordering::Relaxed);
        self.push(&phy).await?;
        let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
        // Bounded by the deadline; a data downlink is not for this device.
        while let Some(left) = deadline.checked_duration_since(tokio::time::Instant::now()) {
            let Some(down) = self.receive(left).await? else {
                return Ok(None);
            };
            if let Some(session) = accept(down, &nonce) {
                self.stats.joined.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(session));
            }
        }
        Ok(None)
    }

    /// A data uplink of `session` carrying `payload` on FPort 1.
    async fn uplink(&mut self, session: &mut Session, payload: &[u8]) -> std::io::Result<()> {
        let mut creator = DataPayloadCreator::new();
        creator
            .set_uplink(true)
            .set_confirmed(false)
            .set_dev_addr(&session.dev_addr.to_le_bytes())
            .set_fcnt(session.fcnt)
            .set_f_port(1);
        let phy = match creator.build(
            payload,
            &[],
            &NewSKey::from(session.nwk_skey),
            &AppSKey::from(session.app_skey),
        ) {
            Ok(p) => p.to_vec(),
            Err(e) => {
                tracing::warn!(error = ?e, "Simulated device cannot build its frame");
                return Ok(());
            }
        };
        session.fcnt = session.fcnt.wrapping_add(1);
        self.stats.uplinks.fetch_add(1, Ordering::Relaxed);
        self.push(&phy).await
    }
}

/// The DevEUI text as bytes, most significant first.
fn eui_bytes(hex: &str) -> [u8; 8] {
    sluice_lorawan::keys::parse_hex::<8>(hex).unwrap_or_default()
}

/// The session from a JoinAccept, as the device derives it, if `phy` is
/// one with a valid MIC under the AppKey.
fn accept(phy: Vec<u8>, dev_nonce: &[u8; 2]) -> Option<Session> {
    let Ok(PhyPayload::JoinAccept(JoinAcceptPayload::Encrypted(encrypted))) = parse(phy) else {
        return None;
    };
    let key = AppKey::from(OTAA_APP_KEY);
    let clear = encrypted.decrypt(&key);
    if !clear.validate_mic(&key) {
        return None;
    }
    let nonce = DevNonce::new(&dev_nonce[..])?;
    let nwk: AES128 = *clear.derive_newskey(&nonce, &key).inner();
    let app: AES128 = *clear.derive_appskey(&nonce, &key).inner();
    let addr: [u8; 4] = clear.dev_addr().as_ref().try_into().ok()?;
    Some(Session {
        dev_addr: u32::from_le_bytes(addr),
        nwk_skey: nwk.0,
        app_skey: app.0,
        fcnt: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_accept_built_by_the_adapter_gives_the_device_the_adapters_keys() {
        let params = sluice_lorawan::join::AcceptParams {
            app_nonce: 0x00ab_cdef,
            net_id: 0x13,
            dev_addr: 0x2600_0042,
            dl_settings: 0,
            rx_delay: 1,
            cflist: None,
        };
        let nonce = 0x0102u16;
        let built =
            sluice_lorawan::join::accept(&sluice_lorawan::keys::Key(OTAA_APP_KEY), nonce, &params)
                .expect("built");
        let s = accept(built.phy, &nonce.to_le_bytes()).expect("decrypted, MIC valid");
        assert_eq!(s.dev_addr, 0x2600_0042);
        assert_eq!(s.nwk_skey, built.nwk_skey.0);
        assert_eq!(s.app_skey, built.app_skey.0);
    }
}
