//! A function's durable key-value state as the host holds it: the whole map
//! in memory (it is capped), with an undo log so a failed call, a refused
//! submission or a failed transaction can take its writes back. The queue
//! writer loads it from SQLite and stores the changes in the same transaction
//! as the outputs that go with them.

use std::collections::BTreeMap;

/// The state ran over its cap; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateFull;

/// One key's new value (`None`: deleted), to be written to SQLite.
pub type StateChange = (Vec<u8>, Option<Vec<u8>>);

/// A function's state with its undo log.
#[derive(Debug, Default)]
pub struct StateMap {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Sum of key and value lengths.
    size: usize,
    cap: usize,
    /// Previous values, oldest first, of the writes not yet settled (see
    /// [`StateMap::settle`]).
    undo: Vec<StateChange>,
    /// Writes settled so far: marks count every write since the map was
    /// loaded, so a mark stays valid after an older part of the log is settled.
    settled: usize,
}

impl StateMap {
    /// A map holding `entries` (as loaded), capped at `cap` bytes.
    pub fn new(entries: BTreeMap<Vec<u8>, Vec<u8>>, cap: usize) -> StateMap {
        let size = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        StateMap {
            entries,
            size,
            cap,
            undo: Vec::new(),
            settled: 0,
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(Vec::as_slice)
    }

    /// Writes `value` under `key` unless the state would exceed its cap.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateFull> {
        // One search of the map whether the key is there or not.
        let (size, previous) = match self.entries.get_mut(key) {
            Some(current) => {
                let size = self.size - current.len() + value.len();
                if size > self.cap {
                    return Err(StateFull);
                }
                (size, Some(std::mem::replace(current, value.to_vec())))
            }
            None => {
                let size = self.size + key.len() + value.len();
                if size > self.cap {
                    return Err(StateFull);
                }
                self.entries.insert(key.to_vec(), value.to_vec());
                (size, None)
            }
        };
        self.size = size;
        self.undo.push((key.to_vec(), previous));
        Ok(())
    }

    /// Removes `key` (nothing happens if it is absent).
    pub fn delete(&mut self, key: &[u8]) {
        if let Some(previous) = self.entries.remove(key) {
            self.size -= key.len() + previous.len();
            self.undo.push((key.to_vec(), Some(previous)));
        }
    }

    /// A point to roll back to.
    pub fn mark(&self) -> usize {
        self.settled + self.undo.len()
    }

    /// Undoes every write since `mark` (not past what is settled).
    pub fn rollback(&mut self, mark: usize) {
        while self.mark() > mark {
            let Some((key, previous)) = self.undo.pop() else {
                break;
            };
            if let Some(current) = self.entries.remove(&key) {
                self.size -= key.len() + current.len();
            }
            if let Some(value) = previous {
                self.size += key.len() + value.len();
                self.entries.insert(key, value);
            }
        }
    }

    /// The current value of every key written since `mark`, once each.
    pub fn changes_since(&self, mark: usize) -> Vec<StateChange> {
        let from = mark.saturating_sub(self.settled).min(self.undo.len());
        let mut keys: Vec<&Vec<u8>> = self.undo[from..].iter().map(|(k, _)| k).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|k| (k.clone(), self.entries.get(k).cloned()))
            .collect()
    }

    /// Drops the undo log up to `mark`: the writes before it are committed
    /// and can no longer be rolled back.
    pub fn settle(&mut self, mark: usize) {
        let n = mark.saturating_sub(self.settled).min(self.undo.len());
        self.undo.drain(..n);
        self.settled += n;
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Bytes used (keys plus values).
    pub fn size(&self) -> usize {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_holds_and_counts_replaced_values_once() {
        let mut s = StateMap::new(BTreeMap::new(), 10);
        assert_eq!(s.put(b"ab", b"cdef"), Ok(()));
        assert_eq!(
            s.put(b"ab", b"cdefgh"),
            Ok(()),
            "replacing frees the old value"
        );
        assert_eq!(s.size(), 8);
        assert_eq!(s.put(b"x", b"yz"), Err(StateFull));
        assert_eq!(s.get(b"x"), None);
        s.delete(b"ab");
        assert_eq!(s.size(), 0);
    }

    #[test]
    fn rollback_restores_values_and_size() {
        let mut s = StateMap::new(BTreeMap::from([(b"k".to_vec(), b"v1".to_vec())]), 100);
        let mark = s.mark();
        s.put(b"k", b"v2").expect("fits");
        s.put(b"n", b"new").expect("fits");
        s.delete(b"k");
        assert_eq!(
            s.changes_since(mark),
            vec![
                (b"k".to_vec(), None),
                (b"n".to_vec(), Some(b"new".to_vec()))
            ]
        );
        s.rollback(mark);
        assert_eq!(s.get(b"k"), Some(&b"v1"[..]));
        assert_eq!(s.get(b"n"), None);
        assert_eq!(s.size(), 3);
        assert!(s.changes_since(mark).is_empty());
    }

    #[test]
    fn settled_writes_stay_and_later_marks_still_roll_back() {
        let mut s = StateMap::new(BTreeMap::new(), 100);
        s.put(b"a", b"1").expect("fits");
        let first = s.mark();
        s.put(b"a", b"2").expect("fits");
        let second = s.mark();
        s.put(b"b", b"3").expect("fits");
        s.settle(second);
        assert_eq!(
            s.changes_since(first),
            vec![(b"b".to_vec(), Some(b"3".to_vec()))]
        );
        s.rollback(second);
        assert_eq!((s.get(b"a"), s.get(b"b")), (Some(&b"2"[..]), None));
        s.rollback(first);
        assert_eq!(
            s.get(b"a"),
            Some(&b"2"[..]),
            "settled writes are not undone"
        );
        s.put(b"c", b"4").expect("fits");
        assert_eq!(s.mark(), second + 1, "marks keep counting across a settle");
    }
}
