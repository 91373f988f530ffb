//! Which replica checks which target: `--shard i/n` by rendezvous hashing.
//!
//! Every replica reads the same config; each checks only the targets (URLs, image
//! references, Docker Hub organizations and repositories) whose highest-weighted
//! replica it is. Rendezvous hashing gives each target exactly one owner among n, the
//! same on every replica without talking to the others, and when n changes only the
//! targets whose winner changed move: about 1/n of them when a replica is added. The
//! weights come from a stable hash, so a restart keeps the assignment.

use std::fmt;

/// This replica's part of the targets: index `index` of `count` replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This replica's index, from 0.
    pub index: u32,
    /// How many replicas share the targets.
    pub count: u32,
}

/// Most replicas `--shard` takes.
const MAX_REPLICAS: u32 = 1000;

impl Shard {
    /// One replica checks everything (no `--shard`).
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Parses `i/n`, or `auto/n` with the index read from `hostname` the way a
    /// StatefulSet names its pods (`sonde-2` is index 2).
    pub fn parse(text: &str, hostname: impl FnOnce() -> Option<String>) -> Result<Shard, String> {
        let bad = |why: String| format!("--shard {text:?}: {why}");
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| bad("write INDEX/COUNT (e.g. 0/3) or auto/COUNT".into()))?;
        let count: u32 = count
            .parse()
            .ok()
            .filter(|c| (1..=MAX_REPLICAS).contains(c))
            .ok_or_else(|| bad(format!("the count must be 1 to {MAX_REPLICAS}")))?;
        let index = if index == "auto" {
            let host = hostname().ok_or_else(|| bad("cannot read the host name".into()))?;
            ordinal(&host).ok_or_else(|| {
                bad(format!(
                    "the host name {host:?} does not end in -NUMBER, as a StatefulSet pod's does"
                ))
            })?
        } else {
            index
                .parse()
                .map_err(|_| bad("the index must be a number or auto".into()))?
        };
        if index >= count {
            return Err(bad(format!(
                "the index {index} is not below the count {count}"
            )));
        }
        Ok(Shard { index, count })
    }

    /// Whether this replica checks the target `key`.
    pub fn owns(&self, key: &str) -> bool {
        self.count <= 1 || owner(key, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The StatefulSet ordinal at the end of a pod's host name.
fn ordinal(host: &str) -> Option<u32> {
    let (_, digits) = host.rsplit_once('-')?;
    digits.parse().ok()
}

/// The replica (0..count) that owns `key`: the one with the highest weight.
pub fn owner(key: &str, count: u32) -> u32 {
    let base = stable_hash(key.as_bytes());
    (0..count)
        .max_by_key(|&replica| mix(base ^ u64::from(replica).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .unwrap_or(0)
}

/// A hash that is the same in every build and on every machine (std's is seeded per
/// process): FNV-1a, then MurmurHash3's finalizer so that keys differing only in their
/// last bytes land far apart.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    mix(h)
}

/// MurmurHash3's 64-bit finalizer.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_parsed_by_index_or_from_a_statefulset_host_name() {
        let none = || None;
        assert_eq!(Shard::parse("1/3", none), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(
            Shard::parse("auto/3", || Some("sonde-2".into())),
            Ok(Shard { index: 2, count: 3 })
        );
        for bad in ["3/3", "1", "a/3", "0/0", "0/1001", "-1/3", "auto/3"] {
            assert!(Shard::parse(bad, none).is_err(), "{bad}");
        }
        let e = Shard::parse("auto/3", || Some("sonde".into())).unwrap_err();
        assert!(e.contains("-NUMBER"), "{e}");
        let e = Shard::parse("auto/2", || Some("sonde-5".into())).unwrap_err();
        assert!(e.contains("not below"), "{e}");
    }

    #[test]
    fn every_key_has_one_owner_and_a_new_replica_moves_about_a_quarter() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("http://h{i}/")).collect();
        let three: Vec<u32> = keys.iter().map(|k| owner(k, 3)).collect();
        for replica in 0..3 {
            let shard = Shard {
                index: replica,
                count: 3,
            };
            let mine = keys.iter().filter(|k| shard.owns(k)).count();
            assert!((3_000..3_700).contains(&mine), "replica {replica}: {mine}");
        }
        let moved = keys
            .iter()
            .zip(&three)
            .filter(|(k, before)| owner(k, 4) != **before)
            .count();
        // Only the new replica's share moves, about 1/4.
        assert!((2_000..3_000).contains(&moved), "{moved} of 10,000 moved");
        assert!(keys.iter().zip(&three).all(|(k, before)| {
            let after = owner(k, 4);
            after == *before || after == 3
        }));
        assert!(Shard::WHOLE.owns("anything"));
    }
}
