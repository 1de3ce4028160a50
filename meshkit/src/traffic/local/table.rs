//! The weight table a route's data plane reads: weights plus a pick schedule, and each
//! worker's lane onto it.

use std::sync::{Arc, Mutex};

use crate::traffic::Weights;

/// Keeps a value on its own cache lines, so that workers writing their own values do
/// not slow each other down.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// One worker's view of a route: the table it last saw and its own pick counter. Each
/// lane walks the schedule by itself, so any cycle of consecutive picks of one worker
/// matches the weights exactly, and the workers share no counter.
#[derive(Debug)]
pub(crate) struct Lane {
    table: Arc<Table>,
    picks: u64,
}

impl Lane {
    pub(crate) fn new(table: Arc<Table>) -> Mutex<Self> {
        Mutex::new(Self { table, picks: 0 })
    }

    /// The next target index, after swapping in `current()` when the route's revision
    /// moved past this lane's table.
    pub(crate) fn pick(
        &mut self,
        revision: u64,
        current: impl FnOnce() -> Arc<Table>,
    ) -> Option<usize> {
        if self.table.revision != revision {
            self.table = current();
        }
        let n = self.picks;
        self.picks = self.picks.wrapping_add(1);
        self.table.pick(n)
    }
}

/// One version of a route's weights, swapped in whole on every write.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) weights: Weights,
    pub(crate) revision: u64,
    /// One cycle of target indexes, as long as the weights' sum in lowest terms (100
    /// for whole percents, 1000 for 99.9:0.1, 3 for 2:1; at most 10,000), interleaved
    /// by smooth weighted round-robin, so any cycle of consecutive picks matches the
    /// weights exactly and the targets alternate instead of coming in runs.
    schedule: Vec<usize>,
}

impl Table {
    /// `targets` are the route's target names in index order.
    pub(crate) fn new(weights: Weights, targets: &[String], revision: u64) -> Self {
        let lowest = weights.lowest_terms();
        let w: Vec<i64> = targets
            .iter()
            .map(|t| {
                lowest
                    .iter()
                    .find(|(n, _)| n == t)
                    .map_or(0, |(_, w)| i64::from(*w))
            })
            .collect();
        let total: i64 = w.iter().sum();
        let mut current = vec![0i64; w.len()];
        let mut schedule = Vec::with_capacity(total as usize);
        if total > 0 {
            for _ in 0..total {
                for (c, wi) in current.iter_mut().zip(&w) {
                    *c += wi;
                }
                let best = (0..w.len())
                    .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
                    .unwrap_or(0);
                current[best] -= total;
                schedule.push(best);
            }
        }
        Self {
            weights,
            revision,
            schedule,
        }
    }

    /// The target index for the `n`th request.
    pub(crate) fn pick(&self, n: u64) -> Option<usize> {
        if self.schedule.is_empty() {
            return None;
        }
        self.schedule
            .get((n % self.schedule.len() as u64) as usize)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hundred_picks_match_the_weights_and_interleave() {
        let targets = vec!["blue".to_owned(), "green".to_owned()];
        for p in [0u8, 1, 5, 10, 33, 50, 99, 100] {
            let t = Table::new(Weights::split("blue", "green", p).unwrap(), &targets, 1);
            for start in [0u64, 37, 1000] {
                let green = (start..start + 100)
                    .filter(|n| t.pick(*n) == Some(1))
                    .count();
                assert_eq!(green, usize::from(p), "p={p} start={start}");
            }
        }
        let t = Table::new(Weights::split("blue", "green", 50).unwrap(), &targets, 1);
        let picks: Vec<_> = (0..6).map(|n| t.pick(n).unwrap()).collect();
        assert_eq!(picks, [0, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn relative_weights_are_picked_exactly_per_cycle() {
        let targets = vec!["blue".to_owned(), "green".to_owned()];
        for (blue, green, cycle) in [(999u32, 1u32, 1000u64), (2, 1, 3), (995, 5, 200)] {
            let w = Weights::relative([("blue", blue), ("green", green)]).unwrap();
            let t = Table::new(w, &targets, 1);
            for start in [0u64, 7, 5000] {
                let got = (start..start + cycle * 3)
                    .filter(|n| t.pick(*n) == Some(1))
                    .count() as u64;
                let want = 3 * cycle * u64::from(green) / u64::from(blue + green);
                assert_eq!(got, want, "{blue}:{green} from {start}");
            }
        }
    }

    #[test]
    fn a_lane_keeps_its_own_count_and_takes_a_new_table_at_once() {
        let targets = vec!["blue".to_owned(), "green".to_owned()];
        let t10 = Arc::new(Table::new(
            Weights::split("blue", "green", 10).unwrap(),
            &targets,
            1,
        ));
        let t100 = Arc::new(Table::new(
            Weights::split("blue", "green", 100).unwrap(),
            &targets,
            2,
        ));
        let lane = Lane::new(t10.clone());
        let mut lane = lane.lock().unwrap();
        let green = (0..100)
            .filter(|_| lane.pick(1, || unreachable!("same revision")) == Some(1))
            .count();
        assert_eq!(green, 10);
        assert_eq!(lane.pick(2, || t100.clone()), Some(1));
        assert!((0..50).all(|_| lane.pick(2, || unreachable!()) == Some(1)));
    }
}
