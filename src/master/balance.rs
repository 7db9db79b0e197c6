//! Shard placement: the one decision in the master that needs care to be
//! both balanced and minimal, kept apart so it can be read (and tested) on
//! its own.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use synod_wire::GroupId;

/// Reassigns `shards` (`shards[s]` = owning gid, `0` or a gid not in
/// `groups` = unassigned) over the live `groups` so that every shard is on a
/// live group and shard counts differ by at most one, moving as few shards
/// as possible. With no live group every shard goes to gid 0.
///
/// Why it is minimal: with `n` shards over `k` groups, exactly `n % k`
/// groups must serve `n / k + 1` shards and the rest `n / k`. Handing the
/// `+1` to the groups that already serve the most shards minimises the total
/// excess over the targets, and only excess shards (plus unassigned ones)
/// move. So after a Join (old groups balanced, new ones empty) only shards
/// handed to the new groups change owner, and after a Leave only the leaving
/// groups' shards do.
///
/// Deterministic: groups are visited in gid order (`BTreeMap`), ties between
/// equally loaded groups go to the lower gid, a group gives up its
/// highest-numbered shards, and freed shards are handed out lowest first.
pub(super) fn rebalance(shards: &[GroupId], groups: &[GroupId]) -> Vec<GroupId> {
    debug_assert!(groups.windows(2).all(|w| w[0] < w[1]), "groups not sorted");
    debug_assert!(!groups.contains(&0), "gid 0 is not a group");
    let mut out = shards.to_vec();
    if groups.is_empty() {
        out.fill(0);
        return out;
    }
    // Each live group's shards, in ascending order; everything else is free.
    let mut owned: BTreeMap<GroupId, Vec<u32>> = groups.iter().map(|&g| (g, Vec::new())).collect();
    let mut free: Vec<u32> = Vec::new();
    for (shard, gid) in shards.iter().enumerate() {
        let shard = u32::try_from(shard).expect("shard count fits u32");
        match owned.get_mut(gid) {
            Some(list) => list.push(shard),
            None => free.push(shard),
        }
    }

    let base = shards.len() / groups.len();
    let extra = shards.len() % groups.len();
    let mut by_load: Vec<GroupId> = groups.to_vec();
    by_load.sort_by_key(|g| (Reverse(owned[g].len()), *g));
    let target: BTreeMap<GroupId, usize> = by_load
        .iter()
        .enumerate()
        .map(|(rank, &g)| (g, base + usize::from(rank < extra)))
        .collect();

    for (gid, list) in owned.iter_mut() {
        while list.len() > target[gid] {
            free.push(list.pop().expect("non-empty: longer than target"));
        }
    }
    free.sort_unstable();
    let mut free = free.into_iter();
    for (gid, list) in &owned {
        for _ in list.len()..target[gid] {
            let shard = free.next().expect("free shards cover every deficit");
            out[shard as usize] = *gid;
        }
    }
    // Targets sum to the shard count, so the free shards are exactly used up.
    assert!(free.next().is_none(), "free shard left unassigned");
    out
}

#[cfg(test)]
mod tests {
    use super::rebalance;

    #[test]
    fn no_groups_unassigns_everything() {
        assert_eq!(rebalance(&[1, 2, 0], &[]), vec![0, 0, 0]);
    }

    #[test]
    fn extra_shard_stays_with_the_most_loaded_group() {
        // 5 shards, groups 1 (3 shards) and 2 (2 shards): already balanced.
        assert_eq!(rebalance(&[1, 1, 1, 2, 2], &[1, 2]), vec![1, 1, 1, 2, 2]);
        // Group 3 joins: 1 gives up its highest shard, 2 keeps its two.
        assert_eq!(rebalance(&[1, 1, 1, 2, 2], &[1, 2, 3]), vec![1, 1, 3, 2, 2]);
    }

    #[test]
    fn balanced_placement_is_left_alone_whatever_the_gids() {
        // Group 2 serves the extra shard: the lower gid must not take it.
        assert_eq!(rebalance(&[2, 2, 1], &[1, 2]), vec![2, 2, 1]);
    }

    #[test]
    fn ties_go_to_the_lower_gid() {
        // 3 shards, 2 empty groups: gid 4 (lower) gets the extra shard.
        assert_eq!(rebalance(&[0, 0, 0], &[4, 9]), vec![4, 4, 9]);
    }
}
