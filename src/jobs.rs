//! What background queues share: a failing item is retried with backoff and does not hold up the others.
//!
//! [`FailingItems`] remembers, in process, the items of a queue that failed: when each may be tried again
//! (exponential backoff, capped), and how often it failed. After `alert_after` failures the item is reported once
//! as stuck (error log + `background_item_stuck_total{queue}`) and keeps being retried at the capped pace. Queues
//! whose items have a durable failure state (the flash-sale hand-off parks purchases) keep the count in the
//! database instead.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

pub struct FailingItems<K> {
    queue: &'static str,
    base: Duration,
    cap: Duration,
    alert_after: u32,
    items: HashMap<K, (u32, Instant)>,
}

impl<K: Eq + Hash + Clone + std::fmt::Debug> FailingItems<K> {
    pub fn new(queue: &'static str, base: Duration, cap: Duration, alert_after: u32) -> Self {
        FailingItems { queue, base, cap, alert_after, items: HashMap::new() }
    }

    /// Items not to try now (still backing off).
    pub fn backing_off(&self) -> Vec<K> {
        let now = Instant::now();
        self.items.iter().filter(|(_, (_, due))| *due > now).map(|(k, _)| k.clone()).collect()
    }

    /// Records a failure of `item`; returns how many it has had.
    pub fn failed(&mut self, item: K, error: &dyn std::fmt::Display) -> u32 {
        let entry = self.items.entry(item.clone()).or_insert((0, Instant::now()));
        entry.0 += 1;
        let attempts = entry.0;
        let pause = self.base.saturating_mul(1 << (attempts - 1).min(16)).min(self.cap);
        entry.1 = Instant::now() + pause;
        metrics::counter!("background_item_failures_total", "queue" => self.queue).increment(1);
        if attempts == self.alert_after {
            tracing::error!(queue = self.queue, ?item, attempts, %error, "a background item keeps failing; it is retried every {pause:?} and the rest of the queue goes on");
            metrics::counter!("background_item_stuck_total", "queue" => self.queue).increment(1);
        } else {
            tracing::warn!(queue = self.queue, ?item, attempts, %error, "a background item failed; retrying after {pause:?}");
        }
        attempts
    }

    /// `item` went through: forget its failures.
    pub fn succeeded(&mut self, item: &K) {
        self.items.remove(item);
    }

    pub fn attempts(&self, item: &K) -> u32 {
        self.items.get(item).map_or(0, |(n, _)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_success_forgets() {
        let mut items = FailingItems::new("test", Duration::from_secs(1), Duration::from_secs(3), 2);
        assert!(items.backing_off().is_empty());
        assert_eq!(items.failed(7, &"boom"), 1);
        assert_eq!(items.backing_off(), vec![7]);
        assert_eq!(items.failed(7, &"boom"), 2);
        assert_eq!(items.failed(7, &"boom"), 3);
        let due = items.items[&7].1;
        assert!(due <= Instant::now() + Duration::from_secs(3), "capped");
        items.succeeded(&7);
        assert_eq!(items.attempts(&7), 0);
        assert!(items.backing_off().is_empty());
    }
}
