//! Modbus RTU on the wire, as far as Sluice needs it beside tokio-modbus's
//! codec: character and frame timing (Modbus over serial line V1.02 §2.5.1.1),
//! frame sizes, the CRC, and what the bytes of an unanswered request were.
//! Pure.
//!
//! tokio-modbus drops an answer whose CRC is wrong and keeps waiting, so the
//! call only times out; the bytes that did arrive (seen by the bus's tap)
//! tell a CRC error or a broken frame from silence.

use crate::config::{Parity, Table};
use std::time::Duration;

/// A serial line's character framing and speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    /// Bits per second.
    pub baud: u32,
    /// Data bits per character.
    pub data_bits: u8,
    /// Parity bit, if any.
    pub parity: Parity,
    /// Stop bits.
    pub stop_bits: u8,
}

impl Framing {
    /// Bits on the wire per character: start, data, parity, stop.
    pub fn bits_per_char(self) -> u32 {
        let parity = u32::from(self.parity != Parity::None);
        1 + u32::from(self.data_bits) + parity + u32::from(self.stop_bits)
    }

    /// Time one character takes on the wire.
    pub fn char_time(self) -> Duration {
        Duration::from_nanos(u64::from(self.bits_per_char()) * 1_000_000_000 / u64::from(self.baud))
    }

    /// Silence that ends a frame (t3.5): 3.5 characters, or the fixed
    /// 1.75 ms the specification prescribes above 19200 baud.
    pub fn frame_gap(self) -> Duration {
        if self.baud > 19_200 {
            Duration::from_micros(1750)
        } else {
            self.char_time() * 7 / 2
        }
    }

    /// Time `bytes` take on the wire.
    pub fn wire_time(self, bytes: usize) -> Duration {
        self.char_time() * bytes as u32
    }

    /// The shortest time one request and its answer can take on this line:
    /// both frames, the gap that ends the request (the device may answer
    /// only after it), and the gap after the answer before the next request.
    pub fn exchange_time(self, request: usize, response: usize) -> Duration {
        self.wire_time(request + response) + self.frame_gap() * 2
    }
}

/// Bytes of a read request: unit, function, address, quantity, CRC.
pub const READ_REQUEST_LEN: usize = 8;

/// Bytes of the answer to a read of `count` registers or bits of `table`:
/// unit, function, byte count, data, CRC.
pub fn read_response_len(table: Table, count: u16) -> usize {
    let data = if table.is_bits() {
        usize::from(count).div_ceil(8)
    } else {
        usize::from(count) * 2
    };
    5 + data
}

/// CRC-16/MODBUS (polynomial 0xA001 reflected, initial 0xFFFF), as sent:
/// low byte first.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xffff;
    for &byte in data {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xa001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// What came back for a request that got no valid answer in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// Nothing at all.
    Silence,
    /// A whole frame whose CRC does not match.
    Crc,
    /// Bytes that make no whole frame (cut short, noise).
    Garbled,
}

/// Sorts the bytes received after a request that timed out.
pub fn classify(received: &[u8]) -> Unanswered {
    if received.is_empty() {
        return Unanswered::Silence;
    }
    let Some(&function) = received.get(1) else {
        return Unanswered::Garbled;
    };
    let expected = match function {
        f if f & 0x80 != 0 => Some(5),
        1..=4 => received.get(2).map(|&n| 5 + usize::from(n)),
        5 | 6 | 15 | 16 => Some(8),
        _ => None,
    };
    match expected {
        Some(len) if received.len() >= len => {
            let (frame, crc) = received[..len].split_at(len - 2);
            if crc16(frame).to_le_bytes() == [crc[0], crc[1]] {
                // A good frame tokio-modbus did not take: not ours to judge as CRC.
                Unanswered::Garbled
            } else {
                Unanswered::Crc
            }
        }
        _ => Unanswered::Garbled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N81_9600: Framing = Framing {
        baud: 9600,
        data_bits: 8,
        parity: Parity::None,
        stop_bits: 1,
    };

    #[test]
    fn crc16_modbus_check_value() {
        // The catalogue's check value for CRC-16/MODBUS.
        assert_eq!(crc16(b"123456789"), 0x4b37);
        // Read holding registers 0..2 of unit 1: 01 03 00 00 00 02, CRC C4 0B on the wire.
        assert_eq!(crc16(&[1, 3, 0, 0, 0, 2]).to_le_bytes(), [0xc4, 0x0b]);
    }

    #[test]
    fn character_and_gap_times() {
        assert_eq!(N81_9600.bits_per_char(), 10);
        assert_eq!(N81_9600.char_time(), Duration::from_nanos(1_041_666));
        assert_eq!(N81_9600.frame_gap(), Duration::from_nanos(3_645_831));
        let e81 = Framing {
            parity: Parity::Even,
            ..N81_9600
        };
        assert_eq!(e81.bits_per_char(), 11);
        let fast = Framing {
            baud: 115_200,
            ..N81_9600
        };
        assert_eq!(fast.frame_gap(), Duration::from_micros(1750));
    }

    #[test]
    fn exchange_time_of_a_ten_register_read_at_9600() {
        // Request 8 bytes, answer 5 + 20 = 25 bytes: 33 characters and two gaps.
        assert_eq!(read_response_len(Table::Holding, 10), 25);
        assert_eq!(read_response_len(Table::Coil, 10), 7);
        let t = N81_9600.exchange_time(READ_REQUEST_LEN, 25);
        assert_eq!(t, N81_9600.char_time() * 33 + N81_9600.frame_gap() * 2);
        assert!((41.6..41.8).contains(&(t.as_secs_f64() * 1000.0)), "{t:?}");
    }

    #[test]
    fn unanswered_requests_are_sorted() {
        assert_eq!(classify(&[]), Unanswered::Silence);
        // 01 03 02 00 2a + good CRC would be a frame; a flipped CRC byte is a CRC error.
        let mut frame = vec![1, 3, 2, 0, 0x2a];
        let crc = crc16(&frame).to_le_bytes();
        frame.extend(crc);
        assert_eq!(classify(&frame), Unanswered::Garbled);
        frame[5] ^= 0xff;
        assert_eq!(classify(&frame), Unanswered::Crc);
        // Cut short.
        assert_eq!(classify(&frame[..4]), Unanswered::Garbled);
        assert_eq!(classify(&[0x01]), Unanswered::Garbled);
        // An exception frame (5 bytes) with a bad CRC.
        assert_eq!(classify(&[1, 0x83, 2, 0, 0]), Unanswered::Crc);
    }
}
