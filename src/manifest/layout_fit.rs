//! How partitions fit on a disk: the arithmetic the manifest's rules and
//! the disk layout share, so that a disk `kiln validate` accepts is one the
//! build can lay out, and the other way round.
//!
//! Partitions start 1 MiB into the disk, follow each other, and are each
//! rounded up to 1 MiB; on GPT the last 1 MiB holds the backup table; a
//! `rest` partition takes what is left, at least 1 MiB. Pure arithmetic:
//! sums past 64 bits are `None`, for each caller to report its own way.

use super::{PartitionSize, PartitionTable};

/// Space kept free before the first partition, and the alignment of every
/// partition: 1 MiB, as fdisk and parted do.
pub const ALIGN_BYTES: u64 = 1 << 20;

/// Space kept free after the last partition for GPT's backup header.
pub const GPT_BACKUP_BYTES: u64 = 1 << 20;

/// `bytes` rounded up to [`ALIGN_BYTES`]; `None` past 64 bits.
pub fn align_up(bytes: u64) -> Option<u64> {
    bytes.div_ceil(ALIGN_BYTES).checked_mul(ALIGN_BYTES)
}

/// `bytes` rounded down to [`ALIGN_BYTES`].
pub fn align_down(bytes: u64) -> u64 {
    bytes / ALIGN_BYTES * ALIGN_BYTES
}

/// What a partition table's partitions ask of the disk, before any
/// filesystem is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// Space after the last partition: GPT's backup header, nothing on MBR.
    pub trailer_bytes: u64,
    /// The fixed-size partitions, each rounded up to [`ALIGN_BYTES`].
    pub fixed_bytes: u64,
    /// Whether a partition takes the `rest` of the disk.
    pub has_rest: bool,
}

impl Fit {
    /// The fit of partitions of these sizes in a `table`; `None` when they
    /// add up past 64 bits.
    pub fn new(
        table: PartitionTable,
        sizes: impl IntoIterator<Item = PartitionSize>,
    ) -> Option<Self> {
        let trailer_bytes = match table {
            PartitionTable::Gpt => GPT_BACKUP_BYTES,
            PartitionTable::Mbr => 0,
        };
        let mut fixed_bytes: u64 = 0;
        let mut has_rest = false;
        for size in sizes {
            match size {
                PartitionSize::Fixed(size) => {
                    fixed_bytes = fixed_bytes.checked_add(align_up(size.bytes())?)?;
                }
                PartitionSize::Rest => has_rest = true,
            }
        }
        Some(Self {
            trailer_bytes,
            fixed_bytes,
            has_rest,
        })
    }

    /// The disk without its `rest` partition: 1 MiB before the first
    /// partition, the fixed partitions, the trailer.
    fn without_rest_bytes(&self) -> Option<u64> {
        (ALIGN_BYTES + self.trailer_bytes).checked_add(self.fixed_bytes)
    }

    /// The smallest disk that holds the partitions, with 1 MiB for a `rest`
    /// partition (a multiple of [`ALIGN_BYTES`]).
    pub fn needed_bytes(&self) -> Option<u64> {
        self.auto_disk_bytes(if self.has_rest { ALIGN_BYTES } else { 0 })
    }

    /// The size of a disk sized `auto`, whose `rest` partition (if any) is
    /// `rest_bytes` large.
    pub fn auto_disk_bytes(&self, rest_bytes: u64) -> Option<u64> {
        self.without_rest_bytes()?.checked_add(rest_bytes)
    }

    /// The size of the `rest` partition on a disk of `disk_bytes`: every
    /// whole MiB the fixed partitions leave; 0 without a `rest` partition.
    /// Only for a disk of at least [`Fit::needed_bytes`].
    pub fn rest_bytes_on(&self, disk_bytes: u64) -> u64 {
        if !self.has_rest {
            return 0;
        }
        // Every term is aligned and the aligned space is at least
        // `needed_bytes - trailer_bytes`, so this does not underflow on a
        // disk that fits.
        align_down(disk_bytes - self.trailer_bytes) - ALIGN_BYTES - self.fixed_bytes
    }
}

/// The size of a `rest` partition on an `auto` disk that holds a
/// filesystem of `filesystem_bytes`: rounded up, at least 1 MiB.
pub fn rest_bytes_for(filesystem_bytes: u64) -> Option<u64> {
    Some(align_up(filesystem_bytes)?.max(ALIGN_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Size;

    const MIB: u64 = 1 << 20;

    fn fixed(bytes: u64) -> PartitionSize {
        PartitionSize::Fixed(Size::from_bytes(bytes))
    }

    #[test]
    fn fixed_partitions_round_up_and_gpt_keeps_its_backup() {
        let gpt = Fit::new(PartitionTable::Gpt, [fixed(MIB + 1), fixed(64 * MIB)]).unwrap();
        assert_eq!(gpt.needed_bytes(), Some((1 + 2 + 64 + 1) * MIB));
        let mbr = Fit::new(PartitionTable::Mbr, [fixed(MIB + 1), fixed(64 * MIB)]).unwrap();
        assert_eq!(mbr.needed_bytes(), Some((1 + 2 + 64) * MIB));
    }

    #[test]
    fn rest_needs_a_mib_and_takes_the_whole_mibs_left() {
        let fit = Fit::new(PartitionTable::Gpt, [fixed(MIB), PartitionSize::Rest]).unwrap();
        assert_eq!(fit.needed_bytes(), Some(4 * MIB));
        assert_eq!(fit.rest_bytes_on(4 * MIB), MIB);
        assert_eq!(fit.rest_bytes_on(10 * MIB + 512), 7 * MIB);
        assert_eq!(
            fit.auto_disk_bytes(rest_bytes_for(1).unwrap()),
            Some(4 * MIB)
        );
        assert_eq!(rest_bytes_for(0), Some(MIB));
    }

    #[test]
    fn sums_past_64_bits_are_none() {
        let huge = fixed(u64::MAX / 2);
        assert_eq!(Fit::new(PartitionTable::Mbr, [huge, huge]), None);
        assert_eq!(align_up(u64::MAX), None);
    }
}
