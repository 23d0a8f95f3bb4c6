//! Counting readings upstream by (device, sequence number): each first
//! copy, duplicates, and the gaps below each device's highest number.

use std::collections::HashMap;

/// Sequence numbers above this are refused rather than tracked (a bit per
/// number up to the highest: 2^26 bits is 8 MiB per device at worst).
pub const MAX_SEQ: u64 = 1 << 26;

/// Which numbers of one device have arrived: one bit each.
#[derive(Debug, Default)]
struct Seen {
    bits: Vec<u64>,
    count: u64,
    highest: u64,
}

/// What a reading was, counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noted {
    /// The first copy of this (device, seq).
    First,
    /// A copy already seen.
    Duplicate,
    /// A number above [`MAX_SEQ`], not tracked.
    OutOfRange,
}

/// Every (device, seq) seen so far.
#[derive(Debug, Default)]
pub struct SeqTally {
    devices: HashMap<String, Seen>,
    /// First copies.
    pub unique: u64,
    /// Copies beyond the first.
    pub duplicates: u64,
    /// Numbers above [`MAX_SEQ`].
    pub out_of_range: u64,
}

impl SeqTally {
    /// Counts one arrival.
    pub fn note(&mut self, device: &str, seq: u64) -> Noted {
        if seq > MAX_SEQ {
            self.out_of_range += 1;
            return Noted::OutOfRange;
        }
        let seen = match self.devices.get_mut(device) {
            Some(seen) => seen,
            None => self.devices.entry(device.to_owned()).or_default(),
        };
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if seen.bits.len() <= word {
            seen.bits.resize(word + 1, 0);
        }
        if seen.bits[word] & bit != 0 {
            self.duplicates += 1;
            return Noted::Duplicate;
        }
        seen.bits[word] |= bit;
        seen.count += 1;
        seen.highest = seen.highest.max(seq);
        self.unique += 1;
        Noted::First
    }

    /// Numbers missing below each device's highest one (numbers start at 0).
    pub fn gaps(&self) -> u64 {
        self.devices.values().map(|s| s.highest + 1 - s.count).sum()
    }

    /// Devices seen.
    pub fn devices(&self) -> usize {
        self.devices.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_once_is_no_gap_and_no_duplicate() {
        let mut t = SeqTally::default();
        for seq in (0..200).rev() {
            assert_eq!(t.note("a", seq), Noted::First);
            assert_eq!(t.note("b", seq), Noted::First);
        }
        assert_eq!(
            (t.unique, t.duplicates, t.gaps(), t.devices()),
            (400, 0, 0, 2)
        );
    }

    #[test]
    fn a_second_copy_is_a_duplicate() {
        let mut t = SeqTally::default();
        assert_eq!(t.note("a", 0), Noted::First);
        assert_eq!(t.note("a", 0), Noted::Duplicate);
        assert_eq!(t.note("b", 0), Noted::First);
        assert_eq!((t.unique, t.duplicates), (2, 1));
    }

    #[test]
    fn missing_numbers_below_the_highest_are_gaps() {
        let mut t = SeqTally::default();
        for seq in [0, 1, 3, 64, 65] {
            t.note("a", seq);
        }
        t.note("b", 2);
        // a: 2, 4..=63 missing (61); b: 0 and 1 missing.
        assert_eq!(t.gaps(), 61 + 2);
    }

    #[test]
    fn numbers_too_high_are_refused() {
        let mut t = SeqTally::default();
        assert_eq!(t.note("a", MAX_SEQ + 1), Noted::OutOfRange);
        assert_eq!(
            (t.unique, t.out_of_range, t.gaps(), t.devices()),
            (0, 1, 0, 0)
        );
    }
}
