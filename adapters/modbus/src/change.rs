//! Publish-on-change: which readings of a poll differ enough from the ones
//! last published. Pure.

use sluice_event::Value;

/// The values last published for each point of one device.
#[derive(Clone, Debug, Default)]
pub struct ChangeFilter {
    last: Vec<Option<Value>>,
}

impl ChangeFilter {
    /// A filter for `points` points, none published yet.
    pub fn new(points: usize) -> ChangeFilter {
        ChangeFilter {
            last: vec![None; points],
        }
    }

    /// Whether `value` of point `index` is to be published: the first
    /// value, a number that moved by more than `deadband` from the one last
    /// published (any move when `deadband` is 0), or any other value that
    /// differs. A published value becomes the one compared against.
    pub fn changed(&mut self, index: usize, value: &Value, deadband: f64) -> bool {
        let Some(slot) = self.last.get_mut(index) else {
            return true;
        };
        let publish = match (slot.as_ref(), value) {
            (None, _) => true,
            (Some(Value::Number(old)), Value::Number(new)) => {
                if deadband > 0.0 {
                    (new - old).abs() > deadband
                } else {
                    // NaN != NaN: compare bits so a steady NaN is no change.
                    new.to_bits() != old.to_bits()
                }
            }
            (Some(old), new) => old != new,
        };
        if publish {
            *slot = Some(value.clone());
        }
        publish
    }

    /// Forgets what was published: everything goes out on the next poll
    /// (after a device comes back online).
    pub fn reset(&mut self) {
        self.last.iter_mut().for_each(|v| *v = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_move_beyond_the_deadband_from_the_last_published() {
        let mut f = ChangeFilter::new(1);
        let n = Value::Number;
        assert!(f.changed(0, &n(230.0), 0.5), "first value");
        assert!(!f.changed(0, &n(230.4), 0.5));
        assert!(
            !f.changed(0, &n(230.5), 0.5),
            "exactly the deadband is no change"
        );
        // Creeping by less than the deadband each time still publishes once
        // the distance from the last published value exceeds it.
        assert!(f.changed(0, &n(230.6), 0.5));
        assert!(!f.changed(0, &n(230.2), 0.5));
        assert!(f.changed(0, &n(230.0), 0.5));
    }

    #[test]
    fn without_a_deadband_any_change_counts_and_other_values_compare_equal() {
        let mut f = ChangeFilter::new(3);
        assert!(f.changed(0, &Value::Number(1.0), 0.0));
        assert!(!f.changed(0, &Value::Number(1.0), 0.0));
        assert!(f.changed(0, &Value::Number(1.0000001), 0.0));
        assert!(f.changed(1, &Value::Bool(true), 0.0));
        assert!(!f.changed(1, &Value::Bool(true), 0.0));
        assert!(f.changed(1, &Value::Bool(false), 0.0));
        assert!(f.changed(2, &Value::Text("EM24".into()), 0.0));
        assert!(!f.changed(2, &Value::Text("EM24".into()), 0.0));
        assert!(f.changed(2, &Value::Number(f64::NAN), 0.0));
        assert!(!f.changed(2, &Value::Number(f64::NAN), 0.0));
        f.reset();
        assert!(f.changed(1, &Value::Bool(false), 0.0), "after a reset");
    }
}
