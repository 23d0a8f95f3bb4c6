//! Replies kept by command id, so a command sent again (an operator's
//! retry after a lost reply) is answered with the first reply instead of
//! running twice. Bounded: the oldest replies go first.

use std::collections::{HashMap, VecDeque};

/// Replies by (signing key or `local`, command id).
#[derive(Debug)]
pub struct ReplyCache {
    capacity: usize,
    order: VecDeque<(String, String)>,
    replies: HashMap<(String, String), String>,
}

impl ReplyCache {
    /// A cache of at most `capacity` replies.
    pub fn new(capacity: usize) -> ReplyCache {
        ReplyCache {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            replies: HashMap::new(),
        }
    }

    /// The stored reply body to `id` from `key`.
    pub fn get(&self, key: &str, id: &str) -> Option<&str> {
        self.replies
            .get(&(key.to_owned(), id.to_owned()))
            .map(String::as_str)
    }

    /// Stores a reply body; the oldest is forgotten beyond the capacity.
    pub fn put(&mut self, key: &str, id: &str, reply: String) {
        let k = (key.to_owned(), id.to_owned());
        if self.replies.insert(k.clone(), reply).is_none() {
            self.order.push_back(k);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.replies.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_kept_per_key_and_the_oldest_go_first() {
        let mut c = ReplyCache::new(2);
        c.put("k", "1", "one".into());
        c.put("other", "1", "uno".into());
        assert_eq!(c.get("k", "1"), Some("one"));
        assert_eq!(c.get("other", "1"), Some("uno"));
        c.put("k", "2", "two".into());
        assert_eq!(c.get("k", "1"), None);
        assert_eq!(c.get("k", "2"), Some("two"));
    }
}
