//! `EventView` and `EventWriter` against postcard itself: on random events
//! they agree with `postcard` byte for byte, and on corrupted encodings they
//! accept exactly what postcard accepts.

use sluice_event::{
    Event, EventId, EventView, EventWriter, LazyView, Meta, Reading, Value, decode_meta_list,
};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Mostly short text; now and then 120 bytes or more, past the
    /// readers' one-byte-length fast paths.
    fn text(&mut self) -> String {
        const LONG: &str = concat!(
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        );
        const PIECES: [&str; 7] = ["a", "temp", "é", "/", "", "0123456789abcdef", LONG];
        (0..self.below(4))
            .map(|_| {
                let pieces = if self.below(8) == 0 { 7 } else { 6 };
                PIECES[self.below(pieces) as usize]
            })
            .collect()
    }

    fn int(&mut self) -> i64 {
        match self.below(4) {
            0 => 0,
            1 => -(self.below(300) as i64),
            2 => self.next() as i64,
            _ => 1_764_000_000_000 + self.below(1 << 20) as i64,
        }
    }

    fn value(&mut self) -> Value {
        match self.below(4) {
            0 => Value::Number(self.int() as f64 / 7.0),
            1 => Value::Bool(self.below(2) == 1),
            2 => Value::Text(self.text()),
            _ => Value::Bytes((0..self.below(20)).map(|_| self.next() as u8).collect()),
        }
    }

    fn event(&mut self) -> Event {
        let mut e = Event::new(self.text(), self.text(), self.int());
        if self.below(2) == 1 {
            e.id = EventId(self.next());
            e.cause = Some(EventId(self.next() >> self.below(64)));
        }
        e.device_time_ms = (self.below(2) == 1).then(|| self.int());
        for _ in 0..self.below(5) {
            e.readings.push(Reading {
                name: self.text(),
                value: self.value(),
                unit: self.text(),
            });
        }
        for _ in 0..self.below(4) {
            e.meta.push(Meta {
                key: self.text(),
                value: self.value(),
            });
        }
        if self.below(2) == 1 {
            e.raw = Some((0..self.below(40)).map(|_| self.next() as u8).collect());
        }
        if self.below(3) == 1 {
            e.function = Some(self.text());
        }
        e
    }
}

fn postcard_decode(bytes: &[u8]) -> Option<Event> {
    match bytes.first() {
        Some(1) => postcard::from_bytes(bytes).ok(),
        _ => None,
    }
}

#[test]
fn view_reads_what_postcard_wrote() {
    let mut rng = Rng(0x5eed);
    for _ in 0..5000 {
        let event = rng.event();
        let bytes = postcard::to_allocvec(&event).unwrap();
        let view = EventView::parse(&bytes).unwrap();
        assert_eq!(view.to_event(), event);
        assert_eq!(view.reading_count(), event.readings.len());
        assert_eq!(view.meta_count(), event.meta.len());
        for r in &event.readings {
            let first = event.readings.iter().find(|x| x.name == r.name).unwrap();
            assert_eq!(view.reading(&r.name).unwrap().value, first.value.as_ref());
        }
        assert_eq!(Event::decode(&bytes).unwrap(), event);
        assert_eq!(event.encode(), bytes);
    }
}

#[test]
fn writer_writes_what_postcard_writes() {
    let mut rng = Rng(0xfeed);
    for _ in 0..5000 {
        let event = rng.event();
        let mut w = EventWriter::new(&event.subject, &event.device);
        w.id(event.id)
            .cause(event.cause)
            .function(event.function.as_deref())
            .device_time_ms(event.device_time_ms)
            .gateway_time_ms(event.gateway_time_ms);
        // Readings and meta half written entry by entry, half copied from a view.
        let (by_entry, copied) = event.readings.split_at(event.readings.len() / 2);
        for r in by_entry {
            w.reading(&r.name, r.value.as_ref(), &r.unit);
        }
        let mut source = Event::new("s", "d", 0);
        source.readings = copied.to_vec();
        let source_bytes = source.encode();
        w.readings_from(&EventView::parse(&source_bytes).unwrap());
        let (by_entry, copied) = event.meta.split_at(event.meta.len() / 2);
        for m in by_entry {
            w.meta(&m.key, m.value.as_ref());
        }
        let mut source = Event::new("s", "d", 0);
        source.meta = copied.to_vec();
        let source_bytes = source.encode();
        w.meta_from(&EventView::parse(&source_bytes).unwrap());
        if let Some(raw) = &event.raw {
            w.raw(raw);
        }
        assert_eq!(w.finish(), postcard::to_allocvec(&event).unwrap());
    }
}

/// Counts past one byte, with every header field at its longest: the
/// writer's room for what it appends unchecked holds.
#[test]
fn writer_writes_long_counts_and_headers_as_postcard_does() {
    let mut event = Event::new("s", "d", i64::MIN);
    event.id = EventId(u64::MAX);
    event.cause = Some(EventId(u64::MAX));
    event.device_time_ms = Some(i64::MIN);
    for i in 0..300 {
        event.readings.push(Reading {
            name: format!("r{i}"),
            value: Value::Number(f64::from(i)),
            unit: String::new(),
        });
    }
    for i in 0..200 {
        event.meta.push(Meta {
            key: format!("m{i}"),
            value: Value::Bool(i % 2 == 0),
        });
    }
    for meta in [&event.meta[..0], &event.meta[..1], &event.meta[..]] {
        let mut event = event.clone();
        event.meta = meta.to_vec();
        let mut w = EventWriter::new(&event.subject, &event.device);
        w.id(event.id)
            .cause(event.cause)
            .device_time_ms(event.device_time_ms)
            .gateway_time_ms(event.gateway_time_ms);
        for r in &event.readings {
            w.reading(&r.name, r.value.as_ref(), &r.unit);
        }
        for m in &event.meta {
            w.meta(&m.key, m.value.as_ref());
        }
        let bytes = w.finish();
        assert_eq!(bytes, postcard::to_allocvec(&event).unwrap());
        let view = LazyView::parse(&bytes).unwrap();
        assert_eq!(read_lazily(&view), event);
    }
}

/// What a function's outputs leave unset (id, cause, times) has a short way
/// of its own through the writer; each field set alone takes the long one.
#[test]
fn writer_writes_unset_and_single_fields_as_postcard_does() {
    let base = Event::new("s", "d", 0).with_number("t", 1.5, "Cel");
    let mut variants = vec![base.clone()];
    let mut e = base.clone();
    e.id = EventId::new(3, 1);
    variants.push(e);
    let mut e = base.clone();
    e.cause = Some(EventId::new(0, 200));
    variants.push(e);
    let mut e = base.clone();
    e.device_time_ms = Some(-1);
    variants.push(e);
    let mut e = base;
    e.gateway_time_ms = 1_764_000_000_000;
    variants.push(e);
    for event in variants {
        let mut w = EventWriter::new(&event.subject, &event.device);
        w.id(event.id)
            .cause(event.cause)
            .device_time_ms(event.device_time_ms)
            .gateway_time_ms(event.gateway_time_ms)
            .number("t", 1.5, "Cel");
        assert_eq!(
            w.finish(),
            postcard::to_allocvec(&event).unwrap(),
            "{event:?}"
        );
    }
}

#[test]
fn corrupted_bytes_are_refused_exactly_when_postcard_refuses_them() {
    let mut rng = Rng(0xbad);
    let mut refused = 0;
    for _ in 0..20_000 {
        let mut bytes = postcard::to_allocvec(&rng.event()).unwrap();
        match rng.below(3) {
            0 => {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] = rng.next() as u8;
            }
            1 => bytes.truncate(rng.below(bytes.len() as u64) as usize),
            _ => {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= 0x80;
            }
        }
        let ours = EventView::parse(&bytes).ok().map(|v| v.to_event());
        let theirs = postcard_decode(&bytes);
        // NaN payloads compare unequal; compare encodings instead.
        assert_eq!(
            ours.as_ref().map(|e| postcard::to_allocvec(e).unwrap()),
            theirs.as_ref().map(|e| postcard::to_allocvec(e).unwrap()),
            "bytes {bytes:02x?}"
        );
        refused += usize::from(theirs.is_none());
    }
    // The corruptions must exercise both sides.
    assert!(refused > 1000 && refused < 19_000, "{refused} refused");
}

#[test]
fn config_lists_decode_as_postcard_does() {
    let mut rng = Rng(0xc0f);
    for _ in 0..1000 {
        let list: Vec<Meta> = (0..rng.below(6))
            .map(|_| Meta {
                key: rng.text(),
                value: rng.value(),
            })
            .collect();
        let bytes = postcard::to_allocvec(&list).unwrap();
        assert_eq!(decode_meta_list(&bytes).unwrap(), list);
    }
    assert!(decode_meta_list(&[2, 0]).is_err());
}

/// Reads everything a `LazyView` offers, as an owned event.
fn read_lazily<const CHECKED: bool>(view: &LazyView<'_, CHECKED>) -> Event {
    let mut event = Event::new(view.subject, view.device, view.gateway_time_ms);
    event.id = view.id;
    event.cause = view.cause;
    event.device_time_ms = view.device_time_ms;
    event.readings = view
        .readings()
        .map(|r| Reading {
            name: r.name.into(),
            value: r.value.to_value(),
            unit: r.unit.into(),
        })
        .collect();
    event.meta = view
        .meta()
        .map(|m| Meta {
            key: m.key.into(),
            value: m.value.to_value(),
        })
        .collect();
    event.raw = view.raw().map(<[u8]>::to_vec);
    event.function = view.function().map(String::from);
    event
}

#[test]
fn lazy_view_reads_what_postcard_wrote() {
    let mut rng = Rng(0x1a2e);
    for _ in 0..5000 {
        let event = rng.event();
        let bytes = postcard::to_allocvec(&event).unwrap();
        let view = LazyView::parse(&bytes).unwrap();
        assert_eq!(read_lazily(&view), event);
        assert_eq!(view.to_event().unwrap(), event);
        // SAFETY: postcard wrote the bytes from Rust strings.
        let trusted = unsafe { LazyView::parse_trusted(&bytes) }.unwrap();
        assert_eq!(read_lazily(&trusted), event);
        assert!(!trusted.is_malformed());
        // Meta read before and after the readings alike.
        let fresh = LazyView::parse(&bytes).unwrap();
        assert_eq!(fresh.meta().count(), event.meta.len());
        assert!(!view.is_malformed() && !fresh.is_malformed());
        // Copied whole, as the eager view copies them.
        let mut a = EventWriter::new("s", "d");
        a.readings_from(&view).meta_from(&view);
        let eager = EventView::parse(&bytes).unwrap();
        let mut b = EventWriter::new("s", "d");
        b.readings_from(&eager).meta_from(&eager);
        assert_eq!(a.finish(), b.finish());
    }
}

#[test]
fn lazy_view_marks_what_postcard_refuses() {
    let mut rng = Rng(0xbad2);
    let mut marked = 0;
    for _ in 0..20_000 {
        let mut bytes = postcard::to_allocvec(&rng.event()).unwrap();
        let at = rng.below(bytes.len() as u64) as usize;
        match rng.below(2) {
            0 => bytes[at] = rng.next() as u8,
            _ => bytes.truncate(at),
        }
        let theirs = postcard_decode(&bytes);
        let ours = LazyView::parse(&bytes).ok().and_then(|view| {
            let event = read_lazily(&view);
            (!view.is_malformed()).then_some(event)
        });
        match (&ours, &theirs) {
            // Read in full, the lazy view refuses what postcard refuses...
            (Some(_), None) => panic!("accepted {bytes:02x?}"),
            // ...and reads the same from what it accepts.
            (Some(a), Some(b)) => assert_eq!(
                postcard::to_allocvec(a).unwrap(),
                postcard::to_allocvec(b).unwrap()
            ),
            (None, Some(_)) => panic!("refused {bytes:02x?}"),
            (None, None) => marked += 1,
        }
    }
    assert!(marked > 1000, "{marked} refused");
}
