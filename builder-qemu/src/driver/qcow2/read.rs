//! Reading a qcow2 image and its chain of backing images, cluster by cluster, as far as the
//! compressed conversion needs it: where each guest cluster's bytes are, and whether they are
//! stored compressed.
//!
//! Only what qemu-rs's own disks are made of is accepted (64 KiB clusters, no encryption, no
//! incompatible feature such as an external data file, subclusters, zstd or a dirty bit, qcow2
//! backing images); anything else is [`Qcow2Error::Unsupported`], and the caller lets
//! `qemu-img` convert the image instead.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Qcow2Error, CLUSTER_BITS, CLUSTER_SIZE, L2_ENTRIES};

/// The qcow2 magic, `QFI\xfb`.
pub const MAGIC: u32 = 0x5146_49fb;
/// The header extension naming the backing file's format.
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// Host offset bits of an L1 entry and of a standard L2 entry.
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// An L2 entry that describes a compressed cluster.
pub const FLAG_COMPRESSED: u64 = 1 << 62;
/// A standard L2 entry (or an L1 entry) whose cluster has a reference count of exactly 1.
pub const FLAG_COPIED: u64 = 1 << 63;
/// A version 3 L2 entry whose cluster reads as zeros.
const FLAG_ZERO: u64 = 1;
/// How deep a backing chain may be.
const MAX_CHAIN: usize = 16;

/// Where the bytes of a compressed cluster are in its image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blob {
    /// Index of the image in the chain (0 = the top image).
    pub image: usize,
    /// Byte offset in the file.
    pub offset: u64,
    /// Bytes to read: the sectors the L2 entry names, trimmed to where the image's next
    /// compressed cluster starts.
    pub size: u64,
}

/// What a guest cluster is, looked through the whole chain. `valid` is how many of its bytes
/// are the image's: fewer than a cluster when the disk, or a backing image the cluster comes
/// from, ends inside it (the rest reads as zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Reads as zeros (unallocated everywhere, a zero cluster, or past a backing image's end).
    Zero,
    /// An uncompressed cluster at `offset` of image `image`; `below` is the compressed cluster it
    /// hides in the next image down, if any (a copy-on-read copy, or a cluster the guest rewrote).
    Data { image: usize, offset: u64, below: Option<Blob>, valid: u64 },
    /// A compressed cluster, not hidden by any image above it.
    Compressed { blob: Blob, valid: u64 },
}

/// One image of the chain.
#[derive(Debug)]
struct Image {
    path: PathBuf,
    file: File,
    size: u64,
    /// The file's length (a compressed cluster's last sector may end past it).
    len: u64,
    v3: bool,
    l1: Vec<u64>,
    /// Every compressed cluster's start in the file, sorted (to trim a cluster's read).
    compressed_starts: Vec<u64>,
}

/// A qcow2 image and its backing images, opened for reading.
#[derive(Debug)]
pub struct Chain {
    images: Vec<Image>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads `len` bytes at `offset`, failing on a short file.
pub fn read_at(file: &File, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, Qcow2Error> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).map_err(|e| Qcow2Error::io(path, e))?;
    Ok(buf)
}

/// Decodes a compressed L2 entry (64 KiB clusters): its byte offset and the bytes its sectors
/// cover from there.
pub fn compressed_entry(entry: u64) -> (u64, u64) {
    let shift = 62 - (CLUSTER_BITS - 8);
    let offset = entry & ((1u64 << shift) - 1);
    let sectors = ((entry >> shift) & ((1u64 << (CLUSTER_BITS - 8)) - 1)) + 1;
    (offset, sectors * 512 - (offset & 511))
}

impl Image {
    fn open(path: &Path) -> Result<(Image, Option<PathBuf>), Qcow2Error> {
        let unsupported = |why: String| Qcow2Error::Unsupported(format!("{}: {why}", path.display()));
        let file = File::open(path).map_err(|e| Qcow2Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Qcow2Error::io(path, e))?.len();
        let head = read_at(&file, path, 0, len.min(CLUSTER_SIZE) as usize)?;
        if head.len() < 72 || be32(&head, 0) != MAGIC {
            return Err(unsupported("not a qcow2 image".into()));
        }
        let version = be32(&head, 4);
        if version != 2 && version != 3 {
            return Err(unsupported(format!("qcow2 version {version}")));
        }
        let cluster_bits = be32(&head, 20);
        if cluster_bits != CLUSTER_BITS {
            return Err(unsupported(format!(
                "cluster size {} (only 64 KiB is read here)",
                1u64 << cluster_bits.min(63)
            )));
        }
        let size = be64(&head, 24);
        if be32(&head, 32) != 0 {
            return Err(unsupported("encrypted".into()));
        }
        let header_len = if version == 3 {
            if head.len() < 104 {
                return Err(unsupported("truncated header".into()));
            }
            let incompatible = be64(&head, 72);
            if incompatible != 0 {
                return Err(unsupported(format!(
                    "incompatible features {incompatible:#x} (dirty, corrupt, external data file, zstd or subclusters)"
                )));
            }
            be32(&head, 100) as usize
        } else {
            72
        };
        if header_len < 72 || header_len > head.len() {
            return Err(unsupported(format!("header length {header_len}")));
        }
        // The backing file's name, and its format from the header extensions.
        let backing_offset = be64(&head, 8) as usize;
        let backing_len = be32(&head, 16) as usize;
        let backing = if backing_offset != 0 && backing_len != 0 {
            let name = head
                .get(backing_offset..backing_offset + backing_len)
                .ok_or_else(|| unsupported("backing file name outside the first cluster".into()))?;
            let name = PathBuf::from(String::from_utf8_lossy(name).into_owned());
            Some(if name.is_absolute() { name } else { path.parent().unwrap_or(Path::new(".")).join(name) })
        } else {
            None
        };
        let mut at = header_len.next_multiple_of(8);
        while at + 8 <= head.len() {
            let (kind, len) = (be32(&head, at), be32(&head, at + 4) as usize);
            if kind == 0 {
                break;
            }
            let data = head.get(at + 8..at + 8 + len).unwrap_or_default();
            if kind == EXT_BACKING_FORMAT && data != b"qcow2" {
                return Err(unsupported(format!("backing file in format {}", String::from_utf8_lossy(data))));
            }
            at += 8 + len.next_multiple_of(8);
        }
        let l1_entries = be32(&head, 36) as usize;
        let l1_offset = be64(&head, 40);
        let needed = size.div_ceil(CLUSTER_SIZE * L2_ENTRIES as u64) as usize;
        if l1_entries < needed {
            return Err(unsupported(format!("L1 table of {l1_entries} entries for a {size}-byte disk")));
        }
        let raw = read_at(&file, path, l1_offset, needed * 8)?;
        let l1 = raw.chunks_exact(8).map(|c| be64(c, 0)).collect();
        let mut image =
            Image { path: path.to_path_buf(), file, size, len, v3: version == 3, l1, compressed_starts: Vec::new() };
        // Every compressed cluster's start, to know where each one ends.
        let mut starts = Vec::new();
        for i in 0..image.l1.len() {
            if let Some(l2) = image.l2_table(i)? {
                starts.extend(
                    l2.iter().filter(|e| *e & FLAG_COMPRESSED != 0).map(|e| compressed_entry(*e & !FLAG_COPIED).0),
                );
            }
        }
        starts.sort_unstable();
        starts.dedup();
        image.compressed_starts = starts;
        Ok((image, backing))
    }

    /// The L2 table of L1 index `i`, or `None` when that part of the disk has none.
    fn l2_table(&self, i: usize) -> Result<Option<Vec<u64>>, Qcow2Error> {
        let offset = self.l1.get(i).copied().unwrap_or(0) & OFFSET_MASK;
        if offset == 0 {
            return Ok(None);
        }
        let raw = read_at(&self.file, &self.path, offset, CLUSTER_SIZE as usize)?;
        Ok(Some(raw.chunks_exact(8).map(|c| be64(c, 0)).collect()))
    }

    /// Bytes of the compressed cluster at `offset` whose sectors cover `covered` bytes: up to the
    /// next compressed cluster's start when that comes first (clusters are packed back to back).
    fn trimmed(&self, offset: u64, covered: u64) -> u64 {
        let next = self.compressed_starts.partition_point(|s| *s <= offset);
        let end = self.compressed_starts.get(next).copied().unwrap_or(u64::MAX).min(self.len);
        covered.min(end.saturating_sub(offset))
    }
}

/// What one L2 entry says about its cluster.
enum Entry {
    Unallocated,
    Zero,
    Data(u64),
    Compressed(u64, u64),
}

fn entry(e: u64, v3: bool) -> Entry {
    if e & FLAG_COMPRESSED != 0 {
        let (offset, size) = compressed_entry(e);
        return Entry::Compressed(offset, size);
    }
    if v3 && e & FLAG_ZERO != 0 {
        return Entry::Zero;
    }
    match e & OFFSET_MASK {
        0 => Entry::Unallocated,
        offset => Entry::Data(offset),
    }
}

impl Chain {
    /// Opens `path` and its backing images.
    pub fn open(path: &Path) -> Result<Chain, Qcow2Error> {
        let mut images = Vec::new();
        let mut next = Some(path.to_path_buf());
        while let Some(p) = next {
            if images.len() == MAX_CHAIN {
                return Err(Qcow2Error::Unsupported(format!("backing chain longer than {MAX_CHAIN} images")));
            }
            let (image, backing) = Image::open(&p)?;
            images.push(image);
            next = backing;
        }
        Ok(Chain { images })
    }

    /// The top image's virtual size.
    pub fn size(&self) -> u64 {
        self.images[0].size
    }

    /// The file of image `image` and its path.
    pub fn file(&self, image: usize) -> (&File, &Path) {
        (&self.images[image].file, &self.images[image].path)
    }

    /// What every guest cluster of L1 index `i` is (`L2_ENTRIES` of them, fewer at the disk's end).
    pub fn sources(&self, i: usize) -> Result<Vec<Source>, Qcow2Error> {
        let first = (i * L2_ENTRIES) as u64;
        let count = (self.size().div_ceil(CLUSTER_SIZE).saturating_sub(first) as usize).min(L2_ENTRIES);
        let tables = self.images.iter().map(|img| img.l2_table(i)).collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(count);
        for k in 0..count {
            let guest = (first + k as u64) * CLUSTER_SIZE;
            out.push(self.resolve(&tables, guest, k));
        }
        Ok(out)
    }

    fn resolve(&self, tables: &[Option<Vec<u64>>], guest: u64, k: usize) -> Source {
        let mut found: Option<(usize, u64, u64)> = None;
        let mut valid = CLUSTER_SIZE;
        for (depth, (img, table)) in self.images.iter().zip(tables).enumerate() {
            if guest >= img.size {
                // Past a (smaller) backing image's end: zeros.
                break;
            }
            let e = table.as_ref().map_or(0, |t| t[k]);
            match (entry(e, img.v3), found) {
                (Entry::Unallocated, None) => {
                    valid = valid.min(img.size - guest);
                    continue;
                }
                (Entry::Unallocated, Some(_)) => continue,
                (Entry::Zero, None) => return Source::Zero,
                (Entry::Data(offset), None) => found = Some((depth, offset, valid.min(img.size - guest))),
                (Entry::Compressed(offset, covered), None) => {
                    let size = img.trimmed(offset, covered);
                    let valid = valid.min(img.size - guest);
                    return Source::Compressed { blob: Blob { image: depth, offset, size }, valid };
                }
                // The first allocated cluster below a data cluster: is it a compressed one?
                (Entry::Compressed(offset, covered), Some((image, data, valid))) => {
                    let size = img.trimmed(offset, covered);
                    let below = (img.size - guest >= CLUSTER_SIZE).then_some(Blob { image: depth, offset, size });
                    return Source::Data { image, offset: data, below, valid };
                }
                (_, Some(_)) => break,
            }
        }
        match found {
            Some((image, offset, valid)) => Source::Data { image, offset, below: None, valid },
            None => Source::Zero,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_entries_decode_as_qemu_writes_them() {
        // offset 0x12345 (not sector aligned), 3 more sectors after the first
        let shift = 62 - (CLUSTER_BITS - 8);
        let e = FLAG_COMPRESSED | (3u64 << shift) | 0x12345;
        assert_eq!(compressed_entry(e), (0x12345, 4 * 512 - 0x145));
    }

    #[test]
    fn entries_classify() {
        assert!(matches!(entry(0, true), Entry::Unallocated));
        assert!(matches!(entry(1, true), Entry::Zero));
        assert!(matches!(entry(FLAG_COPIED | 0x30000 | 1, true), Entry::Zero));
        assert!(matches!(entry(FLAG_COPIED | 0x30000, true), Entry::Data(0x30000)));
        // version 2 has no zero flag
        assert!(matches!(entry(FLAG_COPIED | 0x30000 | 1, false), Entry::Data(0x30000)));
    }
}
