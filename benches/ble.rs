//! BLE advertisements decoded and de-duplicated on one core, and memory per
//! tracked device.
//!
//! 1. Throughput (criterion): a stream of advertisements from 1000 sensors
//!    (Ruuvi RAWv2, plain BTHome, encrypted BTHome, pvvx), each
//!    measurement advertised three times as sensors do, through
//!    `Pipeline::hear` (map by MAC, decode, judge). The baseline in the
//!    same run: the same stream only mapped (the hash lookup every
//!    advertisement costs before any decoding).
//! 2. Memory per tracked device: heap bytes held by the tracker after
//!    100 000 devices were heard, over 100 000 (counted by a global
//!    allocator that tallies live bytes).
//!
//! `CARGO_TARGET_DIR=/tmp/sluice-bench cargo bench --bench ble`

use criterion::{Criterion, Throughput, black_box};
use sluice_ble::advertisement::{Advertisement, uuid16};
use sluice_ble::config::BleConfig;
use sluice_ble::decode::bthome;
use sluice_ble::devices::DeviceMap;
use sluice_ble::mac::Mac;
use sluice_ble::pipeline::{Outcome, Pipeline};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

/// Live heap bytes.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const KEY: &str = "231d39c1d7cc1ab1aee224cd096db932";
const KEY_BYTES: [u8; 16] = [
    0x23, 0x1d, 0x39, 0xc1, 0xd7, 0xcc, 0x1a, 0xb1, 0xae, 0xe2, 0x24, 0xcd, 0x09, 0x6d, 0xb9, 0x32,
];

fn mac(i: u32) -> Mac {
    let b = i.to_be_bytes();
    Mac([0xc0, 0xde, b[0], b[1], b[2], b[3]])
}

/// `devices` sensors of four kinds in `[ble]` form.
fn config(devices: u32) -> BleConfig {
    let mut text = String::from("source = \"replay\"\nreplay = \"x\"\n");
    for i in 0..devices {
        let key = if i % 4 == 2 {
            format!("bind_key = \"{KEY}\"\n")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "[[devices]]\nid = \"d{i}\"\nmac = \"{}\"\n{key}",
            mac(i)
        ));
    }
    toml::from_str(&text).expect("config")
}

/// Measurement `m` of sensor `i`.
fn advertisement(i: u32, m: u32) -> Advertisement {
    let address = mac(i);
    let mut ad = Advertisement {
        time_ms: i64::from(m) * 1000,
        address,
        rssi: Some(-70),
        ..Advertisement::default()
    };
    match i % 4 {
        0 => {
            let mut d =
                hex::decode("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F").expect("hex");
            d[16..18].copy_from_slice(&(m as u16).to_be_bytes());
            ad.manufacturer_data.push((0x0499, d));
        }
        1 => ad.service_data.push((
            uuid16(0xfcd2),
            vec![
                0x40, 0x00, m as u8, 0x01, 0x61, 0x02, 0xca, 0x09, 0x03, 0xbf, 0x13,
            ],
        )),
        2 => {
            let objects = [0x00, m as u8, 0x02, 0xca, 0x09, 0x03, 0xbf, 0x13];
            let frame = [
                vec![0x41],
                bthome::encrypt(&objects, &address, 0x41, m, &KEY_BYTES),
            ]
            .concat();
            ad.service_data.push((uuid16(0xfcd2), frame));
        }
        _ => {
            let mut d = vec![
                0xa5, 0x80, 0x8f, 0x38, 0xc1, 0xa4, 0x1a, 0x08, 0x8e, 0x13, 0x8c, 0x0b, 0x55,
                m as u8, 0x04,
            ];
            d[..6].copy_from_slice(&address.0);
            ad.service_data.push((uuid16(0x181a), d));
        }
    }
    ad
}

/// 1000 sensors × 4 measurements × 3 copies, interleaved as heard.
fn stream() -> Vec<Advertisement> {
    let mut ads = Vec::new();
    for m in 0..4 {
        for copy in 0..3 {
            for i in 0..1000 {
                let mut ad = advertisement(i, m);
                ad.time_ms += copy;
                ads.push(ad);
            }
        }
    }
    ads
}

fn throughput(c: &mut Criterion) {
    let config = config(1000);
    let ads = stream();
    let mut group = c.benchmark_group("ble");
    group.throughput(Throughput::Elements(ads.len() as u64));
    group.measurement_time(Duration::from_secs(5));
    let map = DeviceMap::new(&config);
    group.bench_function("baseline: map only", |b| {
        b.iter(|| {
            ads.iter()
                .filter(|ad| map.resolve(black_box(ad)).is_some())
                .count()
        })
    });
    group.bench_function("decode + dedup, mixed formats", |b| {
        b.iter_batched(
            || Pipeline::new(&config),
            |mut p| {
                let mut accepted = 0u32;
                for ad in &ads {
                    if matches!(p.hear(black_box(ad)).outcome, Outcome::Accept(_)) {
                        accepted += 1;
                    }
                }
                assert_eq!(accepted, 4000, "one per measurement");
                accepted
            },
            criterion::BatchSize::LargeInput,
        )
    });
    let plain: Vec<Advertisement> = ads
        .iter()
        .filter(|ad| ad.address.0[5] % 4 != 2)
        .cloned()
        .collect();
    group.throughput(Throughput::Elements(plain.len() as u64));
    group.bench_function("decode + dedup, without the encrypted sensors", |b| {
        b.iter_batched(
            || Pipeline::new(&config),
            |mut p| {
                plain
                    .iter()
                    .filter(|ad| matches!(p.hear(black_box(ad)).outcome, Outcome::Accept(_)))
                    .count()
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn memory() {
    const N: u32 = 100_000;
    let config = config(N);
    let mut p = Pipeline::new(&config);
    let ads: Vec<Advertisement> = (0..N).map(|i| advertisement(i, 0)).collect();
    let before = LIVE.load(Ordering::Relaxed);
    for ad in &ads {
        black_box(p.hear(ad));
    }
    let after = LIVE.load(Ordering::Relaxed);
    let per = (after - before) as f64 / f64::from(N);
    println!(
        "memory per tracked device: {per:.1} B ({N} devices heard, tracker heap {} B)",
        after - before
    );
    assert_eq!(p.tracked(), N as usize);
}

fn main() {
    memory();
    let mut c = Criterion::default().configure_from_args();
    throughput(&mut c);
    c.final_summary();
}
