//! Indexes over the live allocations, kept beside the state so that an
//! allocation never scans all of them: a range crowded with thousands of
//! allocations costs a bitmap scan, and the per-user limit a map lookup.

use std::collections::HashMap;

use styxy_proto::model::{Allocation, LeaseKind, State};

#[derive(Debug, Default)]
pub struct Occupancy {
    /// Ports held by manual leases. Their holder cannot vanish, so a
    /// candidate walk passes them without a look.
    manual: PortSet,
    /// Live allocations per owner uid.
    per_uid: HashMap<u32, usize>,
    /// Live allocations per owner uid and service type (a user's share of
    /// each range).
    per_uid_type: HashMap<u32, HashMap<String, usize>>,
}

impl Occupancy {
    pub fn of(state: &State) -> Occupancy {
        let mut occupancy = Occupancy::default();
        for a in state.allocations.values() {
            occupancy.add(a);
        }
        occupancy
    }

    pub fn add(&mut self, a: &Allocation) {
        if a.lease == LeaseKind::Manual {
            self.manual.insert(a.port);
        }
        *self.per_uid.entry(a.owner.uid).or_default() += 1;
        let types = self.per_uid_type.entry(a.owner.uid).or_default();
        match types.get_mut(&a.service_type) {
            Some(held) => *held += 1,
            None => {
                types.insert(a.service_type.clone(), 1);
            }
        }
    }

    pub fn remove(&mut self, a: &Allocation) {
        self.manual.remove(a.port);
        decrement(&mut self.per_uid, &a.owner.uid);
        if let Some(types) = self.per_uid_type.get_mut(&a.owner.uid) {
            decrement(types, &a.service_type);
            if types.is_empty() {
                self.per_uid_type.remove(&a.owner.uid);
            }
        }
    }

    /// How many allocations `uid` owns.
    pub fn held_by(&self, uid: u32) -> usize {
        self.per_uid.get(&uid).copied().unwrap_or(0)
    }

    /// How many allocations of `service_type` `uid` owns.
    pub fn held_in_type(&self, uid: u32, service_type: &str) -> usize {
        self.per_uid_type.get(&uid).and_then(|types| types.get(service_type)).copied().unwrap_or(0)
    }

    /// The first port of `from..=to` that no manual lease holds.
    pub fn first_not_manual(&self, from: u16, to: u16) -> Option<u16> {
        self.manual.first_absent(from, to)
    }
}

/// Counts one fewer under `key`, forgetting it at zero.
fn decrement<K, Q>(counts: &mut HashMap<K, usize>, key: &Q)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(held) = counts.get_mut(key) {
        *held -= 1;
        if *held == 0 {
            counts.remove(key);
        }
    }
}

/// A set of ports as a 8 KiB bitmap; looking for an absent port tests 64
/// ports a step.
#[derive(Debug)]
struct PortSet(Box<[u64; 1024]>);

impl Default for PortSet {
    fn default() -> Self {
        PortSet(Box::new([0; 1024]))
    }
}

impl PortSet {
    fn insert(&mut self, port: u16) {
        self.0[usize::from(port >> 6)] |= 1 << (port & 63);
    }

    fn remove(&mut self, port: u16) {
        self.0[usize::from(port >> 6)] &= !(1 << (port & 63));
    }

    fn first_absent(&self, from: u16, to: u16) -> Option<u16> {
        let (mut port, to) = (u32::from(from), u32::from(to));
        while port <= to {
            // Ports of this word below `port` count as present.
            let below = (1u64 << (port & 63)) - 1;
            let word = self.0[(port >> 6) as usize] | below;
            if word != u64::MAX {
                let absent = (port & !63) + (!word).trailing_zeros();
                return (absent <= to).then_some(absent as u16);
            }
            port = (port & !63) + 64;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_absent_port_is_found_across_words_and_bounded_by_the_range() {
        let mut set = PortSet::default();
        for port in 1000..=1200 {
            set.insert(port);
        }
        assert_eq!(set.first_absent(1000, 2000), Some(1201));
        assert_eq!(set.first_absent(990, 2000), Some(990));
        assert_eq!(set.first_absent(1000, 1200), None);
        set.remove(1130);
        assert_eq!(set.first_absent(1000, 1200), Some(1130));
        assert_eq!(set.first_absent(1131, 1200), None);
        set.insert(u16::MAX);
        assert_eq!(set.first_absent(u16::MAX, u16::MAX), None);
        assert_eq!(set.first_absent(u16::MAX - 1, u16::MAX), Some(u16::MAX - 1));
        assert_eq!(set.first_absent(0, 0), Some(0));
    }
}
