//! Disk faults in the simulator (issue 14; `SimConfig::disk_faults`): the
//! records a node syncs are written as real WAL bytes in memory and read
//! back by the WAL's own recovery rules (`storage::scan_segment`), so the
//! rules that decide what a restarted node remembers run under every fault
//! schedule the simulator makes.
//!
//! - **Torn tail.** A crash while a sync is in flight (slow disks) leaves a
//!   random prefix of that sync's bytes on disk, cut at any byte, and half
//!   the time the last record reached holds garbage. Recovery must keep
//!   exactly the whole records before the cut (never a record that was not
//!   written, never drop one that was), and the node restarts remembering
//!   them: a restarted node may know more than it acknowledged, which
//!   Paxos must tolerate. Every other cut lands in a recycled segment file:
//!   behind it lie the records of the file's earlier life (the same
//!   records, shifted, under that life's checksum seed), which recovery
//!   must not take for new ones.
//! - **Bit flip.** At every restart one bit is flipped in the node's synced
//!   log (anywhere but its last record: a damaged last record is exactly
//!   what a torn write looks like, so no log format can tell it from one
//!   without more redundancy than Synod's WAL has) and recovery must refuse
//!   the log. The node then restarts from its intact log: what follows a
//!   refusal in production — replacing the node — is not simulated.
//!
//! Owns: turning records into bytes and back for these checks. Must never
//! draw from the world's RNG: the mode has its own, so seeds without it
//! replay exactly as before.

use synod_wire::GroupId;

use crate::paxos::{Durable, Record};
use crate::rng::Rng;
use crate::storage::{
    encode_record, scan_segment, segment_seed, Damage, WalRecord, RECORD_BYTES_MAX_DEFAULT,
};

/// The segment the simulated log is written to, and the one whose file it
/// recycled (see `torn_write`).
const SEGMENT: u64 = 2;
const EARLIER_LIFE: u64 = 1;

/// The records of a sync a crash cut short that reached the disk whole, as
/// recovery reads them back; `Err` if recovery did anything else.
pub(crate) fn torn_write(
    group: GroupId,
    records: &[Record],
    rng: &mut Rng,
) -> Result<Vec<Record>, String> {
    // Snapshots go to their own files; a sync's WAL part is what precedes one.
    let wal: Vec<&Record> = records
        .iter()
        .take_while(|r| !matches!(r, Record::Snapshot { .. }))
        .collect();
    let seed = segment_seed(SEGMENT);
    let mut bytes = Vec::new();
    let mut ends = Vec::with_capacity(wal.len());
    for r in &wal {
        encode_record(&mut bytes, seed, group, r, RECORD_BYTES_MAX_DEFAULT);
        ends.push(bytes.len());
    }
    let cut = rng.range(0, bytes.len() as u64 + 1) as usize;
    bytes.truncate(cut);
    // Chosen by the cut, not drawn: the mode's draws stay as they were, so
    // its pinned seeds replay the schedules they were pinned for.
    let recycled = cut % 2 == 1;
    if recycled {
        let earlier_seed = segment_seed(EARLIER_LIFE);
        let mut earlier = vec![0x5a; 7];
        for r in &wal {
            encode_record(
                &mut earlier,
                earlier_seed,
                group,
                r,
                RECORD_BYTES_MAX_DEFAULT,
            );
        }
        bytes.extend_from_slice(&earlier[cut.min(earlier.len())..]);
    }
    let whole = ends.iter().take_while(|e| **e <= cut).count();
    let mut garbled = false;
    if cut > 0 && rng.chance(0.5) {
        // Garbage in the last record that reached the disk, whole or not.
        let start = if whole > 0 && ends[whole - 1] == cut {
            if whole >= 2 {
                ends[whole - 2]
            } else {
                0
            }
        } else if whole > 0 {
            ends[whole - 1]
        } else {
            0
        };
        let bit = rng.range(start as u64 * 8, cut as u64 * 8) as usize;
        bytes[bit / 8] ^= 1 << (bit % 8);
        garbled = true;
    }
    let mut kept = Vec::new();
    scan_segment(&bytes, true, seed, RECORD_BYTES_MAX_DEFAULT, |off, g, rec| {
        assert_eq!(g, group, "a record of another group");
        match rec {
            WalRecord::Paxos(rec) => kept.push(rec),
            rec @ (WalRecord::Pb(_) | WalRecord::PbInstalled { .. }) => {
                return Err(Damage {
                    offset: off,
                    reason: format!("a primary/backup record in a Paxos log: {rec:?}"),
                })
            }
        }
        Ok(())
    })
    .map_err(|d| {
        format!(
            "disk: recovery refused a torn tail (cut at byte {cut} of {}, garbled {garbled}, recycled {recycled}): {} at {}",
            ends.last().copied().unwrap_or(0),
            d.reason,
            d.offset
        )
    })?;
    // Garbage makes the last whole record unreadable; anything else keeps
    // every whole record.
    let expect = if garbled && whole > 0 && ends[whole - 1] == cut {
        whole - 1
    } else {
        whole
    };
    // In a recycled file the bytes a torn record lacks may be the earlier
    // life's and equal to its own (runs of equal bytes do that): then it
    // reads whole, and it is the record written, its checksum under this
    // segment's seed says so. Never one past it: that one's checksum would
    // have to come from the earlier life.
    let most = if recycled && !garbled {
        (whole + 1).min(wal.len())
    } else {
        expect
    };
    if kept.len() < expect || kept.len() > most || kept.iter().zip(&wal).any(|(k, w)| k != *w) {
        return Err(format!(
            "disk: recovery of a torn tail kept {} records, expected the first {expect} (at most {most}) of {} (cut at byte {cut}, garbled {garbled}, recycled {recycled})",
            kept.len(),
            wal.len()
        ));
    }
    Ok(kept)
}

/// Flip one bit of `disk`'s log written as a WAL segment, anywhere but in
/// its last record, and check that recovery refuses it. `Ok(false)` when
/// the log has fewer than two records (nothing to flip).
pub(crate) fn flip_is_refused(
    group: GroupId,
    disk: &Durable,
    rng: &mut Rng,
) -> Result<bool, String> {
    let mut records = Vec::with_capacity(disk.entries.len() + 1);
    if disk.promised != Default::default() {
        records.push(Record::Promised(disk.promised));
    }
    for (slot, (ballot, batch)) in &disk.entries {
        records.push(Record::Accepted {
            slot: *slot,
            ballot: *ballot,
            batch: batch.clone(),
        });
    }
    if records.len() < 2 {
        return Ok(false);
    }
    let seed = segment_seed(SEGMENT);
    let mut bytes = Vec::new();
    let mut last_start = 0;
    for r in &records {
        last_start = bytes.len();
        encode_record(&mut bytes, seed, group, r, RECORD_BYTES_MAX_DEFAULT);
    }
    let bit = rng.range(0, last_start as u64 * 8) as usize;
    bytes[bit / 8] ^= 1 << (bit % 8);
    match scan_segment(&bytes, true, seed, RECORD_BYTES_MAX_DEFAULT, |_, _, _| Ok(())) {
        Err(_) => Ok(true),
        Ok(s) => Err(format!(
            "disk: a bit flipped at byte {} of a {}-byte log (last record at {last_start}) was not refused: {} bytes read as valid, torn tail {:?}",
            bit / 8,
            bytes.len(),
            s.valid_len,
            s.torn
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use synod_wire::{Ballot, Batch};

    fn accepted(slot: u64) -> Record {
        Record::Accepted {
            slot,
            ballot: Ballot { round: 3, node: 1 },
            batch: Batch {
                commands: vec![Bytes::from(vec![slot as u8; 40])],
            },
        }
    }

    #[test]
    fn a_torn_sync_keeps_exactly_its_whole_records() {
        let records: Vec<Record> = std::iter::once(Record::Promised(Ballot { round: 3, node: 1 }))
            .chain((0..5).map(accepted))
            .collect();
        let mut rng = Rng::new(7);
        let mut lengths = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let kept = torn_write(1, &records, &mut rng).unwrap();
            lengths.insert(kept.len());
        }
        // Every outcome from nothing to the whole sync happens.
        assert_eq!(
            lengths.into_iter().collect::<Vec<_>>(),
            (0..=6).collect::<Vec<_>>()
        );
    }

    #[test]
    fn every_flip_before_the_last_record_is_refused() {
        let mut disk = Durable {
            promised: Ballot { round: 3, node: 1 },
            ..Durable::default()
        };
        for s in 0..4 {
            if let Record::Accepted {
                slot,
                ballot,
                batch,
            } = accepted(s)
            {
                disk.entries.insert(slot, (ballot, batch));
            }
        }
        let mut rng = Rng::new(11);
        for _ in 0..2_000 {
            assert_eq!(flip_is_refused(1, &disk, &mut rng), Ok(true));
        }
        assert_eq!(flip_is_refused(1, &Durable::default(), &mut rng), Ok(false));
    }
}
