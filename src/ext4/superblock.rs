//! The few superblock fields rootsmith reads back from an image it wrote (counts for the
//! summary), by their kernel names. The layout is the kernel's `struct ext4_super_block`.

/// Counters from an ext4 superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// `s_inodes_count`.
    pub s_inodes_count: u32,
    /// `s_blocks_count_lo`.
    pub s_blocks_count: u64,
    /// `s_free_blocks_count_lo`.
    pub s_free_blocks_count: u64,
    /// `s_free_inodes_count`.
    pub s_free_inodes_count: u32,
}

/// Reads the counters from the 1024 bytes of a superblock (image offset 1024). `None` when
/// the magic is wrong.
pub fn counts(sb: &[u8]) -> Option<Counts> {
    let u32_at = |o: usize| Some(u32::from_le_bytes(sb.get(o..o + 4)?.try_into().ok()?));
    let magic = u16::from_le_bytes(sb.get(0x38..0x3a)?.try_into().ok()?);
    if magic != 0xef53 {
        return None;
    }
    Some(Counts {
        s_inodes_count: u32_at(0x0)?,
        s_blocks_count: u64::from(u32_at(0x4)?),
        s_free_blocks_count: u64::from(u32_at(0xc)?),
        s_free_inodes_count: u32_at(0x10)?,
    })
}
