//! Block-wise uploads (RFC 7959 Block1): the option value with all 20 bits
//! of NUM, and an assembler of uploads keyed by peer and path. Pure: time
//! comes in as an argument.
//!
//! The hazard it guards against: memory. Every upload in progress holds up
//! to `max_payload` bytes, so at most `max_uploads` are kept, each for
//! `lifetime` after its last block; a new upload beyond that is refused
//! (`5.03`), never let in by forgetting another.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A Block1 (or Block2) option value (RFC 7959 §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Block number: 0 to 2^20 - 1.
    pub num: u32,
    /// More blocks follow.
    pub more: bool,
    /// Size exponent: the block holds 2^(szx + 4) bytes; 0 to 6.
    pub szx: u8,
}

/// Why an option value is no block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadBlock {
    /// Longer than 3 bytes.
    TooLong,
    /// SZX 7, reserved (RFC 7959 §2.2).
    ReservedSize,
}

impl std::fmt::Display for BadBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BadBlock::TooLong => "Block1 option longer than 3 bytes",
            BadBlock::ReservedSize => "Block1 SZX 7 is reserved",
        })
    }
}

impl Block {
    /// Parses an option value of 0 to 3 bytes (big-endian: NUM, then M,
    /// then SZX in the last 4 bits).
    pub fn parse(raw: &[u8]) -> Result<Block, BadBlock> {
        if raw.len() > 3 {
            return Err(BadBlock::TooLong);
        }
        let n = raw.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        let szx = (n & 0x7) as u8;
        if szx == 7 {
            return Err(BadBlock::ReservedSize);
        }
        Ok(Block {
            num: n >> 4,
            more: n & 0x8 != 0,
            szx,
        })
    }

    /// The option value, as short as it can be.
    pub fn encode(self) -> Vec<u8> {
        let n = (self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx & 0x7);
        crate::option::encode_uint(n)
    }

    /// Bytes per block.
    pub fn size(self) -> usize {
        16 << self.szx
    }

    /// Where this block's payload starts in the whole body.
    pub fn offset(self) -> u64 {
        u64::from(self.num) * self.size() as u64
    }
}

/// What an accepted block leads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// More blocks to come: answer `2.31 Continue` with this Block1 echoed.
    Continue(Block),
    /// The last block: the whole body. Answer with this Block1 echoed.
    Complete(Vec<u8>, Block),
}

/// Why a block is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Out of sequence, or no upload to continue: `4.08`.
    Incomplete,
    /// The body would exceed the limit: `4.13` with Size1.
    TooLarge,
    /// A block with more to follow whose payload is not the block size, or
    /// a last block larger than it: `4.00`.
    BadSize,
    /// As many uploads in progress as allowed: `5.03`.
    Busy,
}

struct Upload {
    body: Vec<u8>,
    touched: Instant,
}

/// Uploads in progress, by key (peer and path).
pub struct Assembler<K> {
    uploads: HashMap<K, Upload>,
    max_uploads: usize,
    max_payload: usize,
    lifetime: Duration,
}

impl<K: Hash + Eq + Clone> Assembler<K> {
    /// At most `max_uploads` uploads of at most `max_payload` bytes each,
    /// each forgotten `lifetime` after its last block.
    pub fn new(max_uploads: usize, max_payload: usize, lifetime: Duration) -> Assembler<K> {
        Assembler {
            uploads: HashMap::new(),
            max_uploads: max_uploads.max(1),
            max_payload,
            lifetime,
        }
    }

    /// Forgets uploads idle for `lifetime`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.uploads.len();
        let lifetime = self.lifetime;
        self.uploads
            .retain(|_, u| now.saturating_duration_since(u.touched) < lifetime);
        before - self.uploads.len()
    }

    /// Uploads in progress.
    pub fn len(&self) -> usize {
        self.uploads.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.uploads.is_empty()
    }

    /// Takes one block of the upload `key`. Block 0 starts (or restarts)
    /// an upload; every later block must start where the body ends. A
    /// refused block ends its upload.
    pub fn offer(
        &mut self,
        key: K,
        block: Block,
        payload: &[u8],
        now: Instant,
    ) -> Result<Step, Refused> {
        let fits = if block.more {
            payload.len() == block.size()
        } else {
            payload.len() <= block.size()
        };
        if !fits {
            self.uploads.remove(&key);
            return Err(Refused::BadSize);
        }
        if block.offset() + payload.len() as u64 > self.max_payload as u64 {
            self.uploads.remove(&key);
            return Err(Refused::TooLarge);
        }
        if block.num == 0 {
            if !block.more {
                self.uploads.remove(&key);
                return Ok(Step::Complete(payload.to_vec(), block));
            }
            if !self.uploads.contains_key(&key) && self.uploads.len() >= self.max_uploads {
                return Err(Refused::Busy);
            }
            self.uploads.insert(
                key,
                Upload {
                    body: payload.to_vec(),
                    touched: now,
                },
            );
            return Ok(Step::Continue(block));
        }
        let Some(upload) = self.uploads.get_mut(&key) else {
            return Err(Refused::Incomplete);
        };
        if upload.body.len() as u64 != block.offset() {
            self.uploads.remove(&key);
            return Err(Refused::Incomplete);
        }
        upload.body.extend_from_slice(payload);
        upload.touched = now;
        if block.more {
            return Ok(Step::Continue(block));
        }
        match self.uploads.remove(&key) {
            Some(upload) => Ok(Step::Complete(upload.body, block)),
            None => Err(Refused::Incomplete),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(num: u32, more: bool, szx: u8) -> Block {
        Block { num, more, szx }
    }

    #[test]
    fn rfc7959_2_2_option_values_of_0_to_3_bytes() {
        let cases: &[(&[u8], Result<Block, BadBlock>)] = &[
            (&[], Ok(block(0, false, 0))),
            (&[0x0a], Ok(block(0, true, 2))),
            (&[0x16], Ok(block(1, false, 6))),
            (&[0x01, 0x0e], Ok(block(16, true, 6))),
            // 3 bytes: NUM 0x12345 needs all 20 bits.
            (&[0x12, 0x34, 0x58], Ok(block(0x1_2345, true, 0))),
            (&[0xff, 0xff, 0xfe], Ok(block(0xf_ffff, true, 6))),
            (&[0x07], Err(BadBlock::ReservedSize)),
            (&[0x12, 0x34, 0x5f], Err(BadBlock::ReservedSize)),
            (&[0, 0, 0, 0x01], Err(BadBlock::TooLong)),
        ];
        for (raw, expected) in cases {
            assert_eq!(Block::parse(raw), *expected, "{raw:02x?}");
        }
    }

    #[test]
    fn values_encode_as_short_as_they_can_and_round_trip() {
        let cases: &[(Block, &[u8])] = &[
            (block(0, false, 0), &[]),
            (block(0, true, 2), &[0x0a]),
            (block(4096, true, 0), &[0x01, 0x00, 0x08]),
            (block(0xf_ffff, false, 6), &[0xff, 0xff, 0xf6]),
        ];
        for (b, raw) in cases {
            assert_eq!(b.encode(), raw.to_vec(), "{b:?}");
            assert_eq!(Block::parse(raw), Ok(*b));
        }
        assert_eq!(block(4096, true, 0).offset(), 65_536);
        assert_eq!(block(3, false, 6).offset(), 3 * 1024);
    }

    fn assembler() -> Assembler<u8> {
        Assembler::new(2, 100_000, Duration::from_secs(10))
    }

    #[test]
    fn blocks_in_order_assemble_the_body() {
        let t = Instant::now();
        let mut a = assembler();
        assert_eq!(
            a.offer(1, block(0, true, 0), &[1; 16], t),
            Ok(Step::Continue(block(0, true, 0)))
        );
        assert_eq!(
            a.offer(1, block(1, true, 0), &[2; 16], t),
            Ok(Step::Continue(block(1, true, 0)))
        );
        let mut body = vec![1; 16];
        body.extend([2; 16]);
        body.extend([3; 5]);
        assert_eq!(
            a.offer(1, block(2, false, 0), &[3; 5], t),
            Ok(Step::Complete(body, block(2, false, 0)))
        );
        assert!(a.is_empty());
    }

    #[test]
    fn a_smaller_block_size_may_follow() {
        // RFC 7959 §2.3: the client may switch to smaller blocks (the offset
        // is what must match).
        let t = Instant::now();
        let mut a = assembler();
        assert!(a.offer(1, block(0, true, 1), &[1; 32], t).is_ok());
        let step = a.offer(1, block(2, false, 0), &[2; 3], t);
        assert!(matches!(step, Ok(Step::Complete(b, _)) if b.len() == 35));
    }

    #[test]
    fn a_single_block_needs_no_state() {
        let mut a = assembler();
        assert_eq!(
            a.offer(1, block(0, false, 6), b"abc", Instant::now()),
            Ok(Step::Complete(b"abc".to_vec(), block(0, false, 6)))
        );
        assert!(a.is_empty());
    }

    #[test]
    fn refusals() {
        let t = Instant::now();
        // (case, blocks and their payload lengths, what the last one gets)
        type Case<'a> = (&'a str, &'a [(Block, usize)], Refused);
        let cases: &[Case] = &[
            ("no start", &[(block(1, true, 0), 16)], Refused::Incomplete),
            (
                "a block skipped",
                &[(block(0, true, 0), 16), (block(2, true, 0), 16)],
                Refused::Incomplete,
            ),
            (
                "a block twice",
                &[
                    (block(0, true, 0), 16),
                    (block(1, true, 0), 16),
                    (block(1, true, 0), 16),
                ],
                Refused::Incomplete,
            ),
            (
                "short with more to come",
                &[(block(0, true, 0), 15)],
                Refused::BadSize,
            ),
            (
                "last block too big",
                &[(block(0, false, 0), 17)],
                Refused::BadSize,
            ),
            (
                "beyond the limit",
                &[(block(6250, true, 0), 16)],
                Refused::TooLarge,
            ),
        ];
        for (name, blocks, expected) in cases {
            let mut a = assembler();
            let mut last = Ok(Step::Continue(block(0, true, 0)));
            for (b, len) in *blocks {
                last = a.offer(1, *b, &vec![0; *len], t);
            }
            assert_eq!(last, Err(*expected), "{name}");
            assert!(a.is_empty(), "{name}: a refused block ends its upload");
        }
    }

    #[test]
    fn bounded_and_expiring() {
        let t = Instant::now();
        let mut a = assembler();
        assert!(a.offer(1, block(0, true, 0), &[0; 16], t).is_ok());
        assert!(a.offer(2, block(0, true, 0), &[0; 16], t).is_ok());
        assert_eq!(
            a.offer(3, block(0, true, 0), &[0; 16], t),
            Err(Refused::Busy)
        );
        assert!(
            a.offer(2, block(0, true, 0), &[0; 16], t).is_ok(),
            "a restart is no new upload"
        );
        assert_eq!(a.expire(t + Duration::from_secs(9)), 0);
        assert!(
            a.offer(1, block(1, true, 0), &[0; 16], t + Duration::from_secs(9))
                .is_ok()
        );
        assert_eq!(a.expire(t + Duration::from_secs(10)), 1, "2 idle for 10 s");
        assert!(
            a.offer(3, block(0, true, 0), &[0; 16], t + Duration::from_secs(10))
                .is_ok()
        );
    }

    #[test]
    fn three_byte_block_numbers_assemble() {
        // SZX 0 (16 bytes) up to NUM 4200: 3-byte options from NUM 4096.
        let t = Instant::now();
        let mut a: Assembler<u8> = Assembler::new(1, 16 * 4201, Duration::from_secs(10));
        for num in 0..4200 {
            let raw = block(num, true, 0).encode();
            let b = Block::parse(&raw).expect("parses");
            assert_eq!(b.num, num);
            assert!(a.offer(0, b, &[(num % 251) as u8; 16], t).is_ok(), "{num}");
        }
        let Ok(Step::Complete(body, _)) = a.offer(0, block(4200, false, 0), &[9; 16], t) else {
            panic!("completes");
        };
        assert_eq!(body.len(), 16 * 4201);
        assert_eq!(body[16 * 4199], (4199 % 251) as u8);
    }
}
