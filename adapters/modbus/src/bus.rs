//! One task per serial bus or TCP connection, so requests on one line never
//! collide: it polls each device when due (earliest first), turns answers
//! into events, counts faults per device and reason, reports devices
//! offline and online, and performs writes between polls.

use crate::availability::{Availability, Change};
use crate::change::ChangeFilter;
use crate::config::{Publish, WriteFunction};
use crate::device::{Device, WriteData};
use crate::fault::{Exception, Fault};
use crate::link::{Link, Op};
use sluice_adapter_common::downlink::{Answer, Request, Verb};
use sluice_adapter_common::{Counters, DownlinkError, Rejection, Shutdown, Stage, clock};
use sluice_event::{Event, Meta, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A bus and the devices on it, ready to run.
pub struct BusPlan {
    /// Its name.
    pub name: String,
    /// The link to its devices.
    pub link: Link,
    /// Its devices.
    pub devices: Vec<Device>,
    /// Unanswered polls before a device is offline.
    pub offline_after: u32,
    /// Longest wait between polls of an offline device.
    pub backoff_max: Duration,
}

/// Events dropped because the adapter's submissions to the core were backed up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BacklogFull;

impl Rejection for BacklogFull {
    fn stage(self) -> Stage {
        Stage::Ingest
    }
    fn reason(self) -> &'static str {
        "backlog-full"
    }
}

/// Where a bus puts its events: a bounded queue to the adapter's
/// submitters, so a slow commit never holds up the bus's timing.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Vec<Event>>,
    counters: Arc<Counters>,
}

impl Outbox {
    /// An outbox feeding `tx`.
    pub fn new(tx: mpsc::Sender<Vec<Event>>, counters: Arc<Counters>) -> Outbox {
        Outbox { tx, counters }
    }

    /// Hands over `event` of `device`; if the submitters are backed up it
    /// is dropped, counted and logged (the next poll reads afresh).
    fn send(&self, device: &str, event: Event) {
        if self.tx.try_send(vec![event]).is_err() {
            self.counters.fault(device, BacklogFull);
            tracing::warn!(
                device,
                "Modbus reading dropped: submissions to the queue are backed up"
            );
        }
    }
}

/// One device's polling state.
struct Polled {
    device: Device,
    availability: Availability,
    filter: ChangeFilter,
    due: Instant,
    /// The exception each read got last time, so a persistent one is logged once.
    exceptions: Vec<Option<Exception>>,
}

/// Runs the bus until `shutdown` fires: polls and `writes`.
pub async fn run(
    plan: BusPlan,
    mut writes: mpsc::Receiver<Request>,
    outbox: Outbox,
    counters: Arc<Counters>,
    mut shutdown: Shutdown,
) {
    let BusPlan {
        name,
        mut link,
        devices,
        offline_after,
        backoff_max,
    } = plan;
    let now = Instant::now();
    let mut polled: Vec<Polled> = devices
        .into_iter()
        .map(|device| Polled {
            filter: ChangeFilter::new(device.points.len()),
            exceptions: vec![None; device.reads.len()],
            availability: Availability::new(offline_after, backoff_max),
            device,
            due: now,
        })
        .collect();
    let bus = Bus {
        name: &name,
        counters: &counters,
        outbox: &outbox,
    };
    let mut writes_open = true;
    loop {
        let Some(next) = (0..polled.len()).min_by_key(|&i| polled[i].due) else {
            return;
        };
        let due = polled[next].due;
        tokio::select! {
            biased;
            _ = shutdown.wait() => return,
            request = writes.recv(), if writes_open => match request {
                Some(request) => {
                    tokio::select! {
                        // A write cut short answers `Stopped` as its request is dropped.
                        _ = shutdown.wait() => return,
                        _ = bus.write(&mut link, &mut polled, request) => {}
                    }
                }
                None => writes_open = false,
            },
            _ = tokio::time::sleep_until(due.into()) => {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = bus.poll(&mut link, &mut polled[next]) => {}
                }
            }
        }
    }
}

/// What a bus's polls and writes share.
struct Bus<'a> {
    name: &'a str,
    counters: &'a Counters,
    outbox: &'a Outbox,
}

impl Bus<'_> {
    /// Polls one device: every read of its plan, then events.
    async fn poll(&self, link: &mut Link, p: &mut Polled) {
        let mut readings = Vec::new();
        let mut answered = false;
        let mut last_fault = None;
        let mut answered_ms = None;
        for (r, read) in p.device.reads.iter().enumerate() {
            let op = Op::Read {
                function: read.table.read_function(),
                start: read.start,
                count: read.count,
            };
            match link
                .request(p.device.unit, &op, |f| self.fault(&p.device.id, f))
                .await
            {
                Ok(answer) => {
                    answered = true;
                    answered_ms = Some(answer.at_ms);
                    p.exceptions[r] = None;
                    let decoded = answer
                        .data
                        .as_ref()
                        .and_then(|data| p.device.readings(read, data));
                    match decoded {
                        Some(r) => readings.extend(r),
                        None => self.fault(&p.device.id, Fault::Mismatch),
                    }
                }
                Err(fault) => {
                    self.fault(&p.device.id, fault);
                    last_fault = Some(fault);
                    if let Fault::Exception(e) = fault {
                        answered = true;
                        if p.exceptions[r] != Some(e) {
                            tracing::warn!(bus = self.name, device = %p.device.id, table = read.table.as_str(),
                                start = read.start, count = read.count, exception = %e,
                                "Modbus device refused a read");
                        }
                        p.exceptions[r] = Some(e);
                    }
                    if matches!(fault, Fault::Unreachable | Fault::LinkLost) {
                        break;
                    }
                }
            }
        }
        let change = if answered {
            p.availability.answered()
        } else {
            p.availability
                .unanswered(last_fault.unwrap_or(Fault::Timeout))
        };
        if let Some(change) = change {
            if matches!(change, Change::Online { .. }) {
                p.filter.reset();
            }
            self.status(&p.device, change);
        }
        if !readings.is_empty() {
            let publish = readings
                .into_iter()
                .filter(|(i, reading)| match p.device.publish {
                    Publish::EveryPoll => true,
                    Publish::OnChange => {
                        let deadband = p.device.points.get(*i).map_or(0.0, |pt| pt.deadband);
                        p.filter.changed(*i, &reading.value, deadband)
                    }
                })
                .map(|(_, reading)| reading)
                .collect::<Vec<_>>();
            if !publish.is_empty() {
                let mut event = self.event(&p.device, format!("modbus/{}", p.device.id));
                event.device_time_ms = answered_ms;
                event.readings = publish;
                self.outbox.send(&p.device.id, event);
            }
        }
        let now = Instant::now();
        let wait = p.availability.next_wait(p.device.poll);
        p.due = if p.availability.is_offline() {
            now + wait
        } else {
            // Keep the cadence; a poll that ran late does not bring a burst.
            (p.due + wait).max(now)
        };
    }

    /// Counts a fault of `device`.
    fn fault(&self, device: &str, fault: Fault) {
        self.counters.fault(device, fault);
        tracing::debug!(bus = self.name, device, fault = %fault, "Modbus request failed");
    }

    /// An event of `device` under `subject`, stamped now.
    fn event(&self, device: &Device, subject: String) -> Event {
        let mut event = Event::new(subject, device.id.clone(), clock::now_ms());
        event.meta = vec![
            Meta {
                key: "bus".into(),
                value: Value::Text(self.name.to_owned()),
            },
            Meta {
                key: "unit".into(),
                value: Value::Number(f64::from(device.unit)),
            },
        ];
        event
    }

    /// Reports a device offline or online, upstream and in the log.
    fn status(&self, device: &Device, change: Change) {
        let mut event = self.event(device, format!("modbus/{}/status", device.id));
        event.device_time_ms = Some(event.gateway_time_ms);
        let (online, failures, reason) = match change {
            Change::Offline { failures, last } => {
                tracing::warn!(bus = self.name, device = %device.id, failures, fault = %last,
                    "Modbus device offline");
                (false, failures, last.reason())
            }
            Change::Online { failures } => {
                tracing::info!(bus = self.name, device = %device.id, failures, "Modbus device online");
                (true, failures, "answered")
            }
        };
        event.readings.push(sluice_event::Reading {
            name: "online".into(),
            value: Value::Bool(online),
            unit: String::new(),
        });
        event.meta.push(Meta {
            key: "reason".into(),
            value: Value::Text(reason.to_owned()),
        });
        event.meta.push(Meta {
            key: "failures".into(),
            value: Value::Number(f64::from(failures)),
        });
        self.outbox.send(&device.id, event);
    }

    /// Performs one downlink: a typed value to a named point.
    async fn write(&self, link: &mut Link, polled: &mut [Polled], request: Request) {
        let result = self.perform(link, polled, &request).await;
        if let Err(error) = &result {
            tracing::warn!(bus = self.name, downlink = %request.downlink, error = %error, "Modbus write failed");
        }
        request.answer(result);
    }

    async fn perform(
        &self,
        link: &mut Link,
        polled: &mut [Polled],
        request: &Request,
    ) -> Result<Answer, DownlinkError> {
        let d = &request.downlink;
        let p = polled
            .iter_mut()
            .find(|p| p.device.id == d.device)
            .ok_or_else(|| DownlinkError::UnknownDevice(d.device.clone()))?;
        let point = p
            .device
            .point(&d.resource)
            .and_then(|i| p.device.points.get(i))
            .ok_or_else(|| {
                DownlinkError::Unsupported(format!(
                    "device `{}` has no point `{}`",
                    d.device, d.resource
                ))
            })?;
        if !point.writable {
            return Err(DownlinkError::Unsupported(format!(
                "point `{}` of `{}` is not writable",
                d.resource, d.device
            )));
        }
        if d.verb != Verb::Set {
            return Err(DownlinkError::Unsupported(
                "a Modbus point can only be set".into(),
            ));
        }
        let data = crate::device::encode(point, &d.value)
            .map_err(|e| DownlinkError::Unsupported(e.to_string()))?;
        let single = point.write_function == WriteFunction::Single;
        let function = match &data {
            WriteData::Bits(b) if single && b.len() == 1 => 5,
            WriteData::Bits(_) => 15,
            WriteData::Words(w) if single && w.len() == 1 => 6,
            WriteData::Words(_) => 16,
        };
        let op = Op::Write {
            function,
            start: point.address,
            data,
        };
        let unit = p.device.unit;
        let id = p.device.id.clone();
        match link
            .request(unit, &op, |f| self.counters.fault(&id, f))
            .await
        {
            Ok(_) => {
                // Read the new value back at once.
                p.due = Instant::now();
                Ok(Answer {
                    status: format!("FC{function:02}"),
                    payload: Vec::new(),
                })
            }
            Err(fault) => {
                self.counters.fault(&p.device.id, fault);
                Err(match fault {
                    Fault::Exception(e) => DownlinkError::Refused {
                        status: format!("{:02X}", e.code()),
                        message: e.to_string(),
                    },
                    Fault::Timeout => DownlinkError::Timeout(link.response_timeout()),
                    other => DownlinkError::Io(other.to_string()),
                })
            }
        }
    }
}
