//! Writing a standalone qcow2 (version 3, 64 KiB clusters, 16-bit reference counts, zlib) whose
//! clusters arrive in guest order, each compressed, uncompressed or absent — the layout
//! `qemu-img convert -c` produces: data first, then the L2 tables, the L1 table, the reference
//! count table and its blocks, and the header last.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::read::{FLAG_COMPRESSED, FLAG_COPIED};
use super::{Qcow2Error, CLUSTER_BITS, CLUSTER_SIZE, L2_ENTRIES};

/// 16-bit reference counts (`refcount_order` 4): entries per reference count block.
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER_SIZE / 2;

/// One guest cluster's bytes, as they go into the image.
#[derive(Debug)]
pub enum Cluster {
    /// A raw deflate stream (4 KiB window) of the whole cluster.
    Compressed(Vec<u8>),
    /// The cluster as it is (it did not compress).
    Raw(Vec<u8>),
}

/// The image being written.
pub struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    /// Next free byte of the file.
    pos: u64,
    /// References to each host cluster so far.
    refcounts: Vec<u16>,
    /// (guest cluster, L2 entry) of every cluster written, in guest order.
    entries: Vec<(u64, u64)>,
}

impl Writer {
    /// Creates `path` for a disk of `size` bytes (a multiple of the cluster size).
    pub fn create(path: &Path, size: u64) -> Result<Writer, Qcow2Error> {
        let file = File::create(path).map_err(|e| Qcow2Error::io(path, e))?;
        let mut w = Writer {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            size,
            pos: 0,
            refcounts: Vec::new(),
            entries: Vec::new(),
        };
        // Cluster 0 holds the header, written last.
        w.write(&vec![0u8; CLUSTER_SIZE as usize])?;
        w.reference(0, CLUSTER_SIZE);
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Qcow2Error> {
        self.out.write_all(bytes).map_err(|e| Qcow2Error::io(&self.path, e))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Counts one reference to every host cluster that `len` bytes at `offset` touch.
    fn reference(&mut self, offset: u64, len: u64) {
        let (first, last) = (offset >> CLUSTER_BITS, (offset + len - 1) >> CLUSTER_BITS);
        if self.refcounts.len() <= last as usize {
            self.refcounts.resize(last as usize + 1, 0);
        }
        for c in first..=last {
            self.refcounts[c as usize] += 1;
        }
    }

    /// Pads the file to the next cluster boundary.
    fn align(&mut self) -> Result<(), Qcow2Error> {
        let pad = self.pos.next_multiple_of(CLUSTER_SIZE) - self.pos;
        if pad > 0 {
            self.write(&vec![0u8; pad as usize])?;
        }
        Ok(())
    }

    /// Adds guest cluster `guest` (clusters come in increasing order).
    pub fn add(&mut self, guest: u64, cluster: &Cluster) -> Result<(), Qcow2Error> {
        debug_assert!(self.entries.last().is_none_or(|(g, _)| *g < guest));
        match cluster {
            Cluster::Compressed(bytes) => {
                let offset = self.pos;
                let len = bytes.len() as u64;
                // Additional 512-byte sectors after the one holding the first byte (qcow2's
                // compressed cluster descriptor, as QEMU computes it).
                let sectors = ((offset + len - 1) >> 9) - (offset >> 9);
                let shift = 62 - (CLUSTER_BITS - 8);
                if sectors >= 1 << (CLUSTER_BITS - 8) {
                    return Err(Qcow2Error::Invalid(format!("compressed cluster of {len} bytes")));
                }
                self.write(bytes)?;
                self.reference(offset, len);
                self.entries.push((guest, FLAG_COMPRESSED | (sectors << shift) | offset));
            }
            Cluster::Raw(bytes) => {
                self.align()?;
                let offset = self.pos;
                self.write(bytes)?;
                self.reference(offset, CLUSTER_SIZE);
                self.entries.push((guest, FLAG_COPIED | offset));
            }
        }
        Ok(())
    }

    /// Writes the tables and the header, and syncs the file. Returns the file's size.
    pub fn finish(mut self) -> Result<u64, Qcow2Error> {
        self.align()?;
        // L2 tables, one per 512 MiB of disk that has any cluster.
        let l1_size = self.size.div_ceil(CLUSTER_SIZE * L2_ENTRIES as u64) as usize;
        let mut l1 = vec![0u64; l1_size];
        let entries = std::mem::take(&mut self.entries);
        let mut at = 0;
        while at < entries.len() {
            let index = (entries[at].0 / L2_ENTRIES as u64) as usize;
            let mut table = vec![0u8; CLUSTER_SIZE as usize];
            while at < entries.len() && (entries[at].0 / L2_ENTRIES as u64) as usize == index {
                let slot = (entries[at].0 % L2_ENTRIES as u64) as usize * 8;
                table[slot..slot + 8].copy_from_slice(&entries[at].1.to_be_bytes());
                at += 1;
            }
            l1[index] = FLAG_COPIED | self.pos;
            let offset = self.pos;
            self.write(&table)?;
            self.reference(offset, CLUSTER_SIZE);
        }
        // The L1 table.
        let l1_offset = self.pos;
        let l1_bytes: Vec<u8> = l1.iter().flat_map(|e| e.to_be_bytes()).collect();
        self.write(&l1_bytes)?;
        self.align()?;
        self.reference(l1_offset, (l1_size as u64 * 8).max(1));
        // The reference count table and blocks, which count themselves too.
        let used = self.pos / CLUSTER_SIZE;
        let (mut blocks, mut table) = (1u64, 1u64);
        loop {
            let b = (used + table + blocks).div_ceil(REFCOUNTS_PER_BLOCK);
            let t = (b * 8).div_ceil(CLUSTER_SIZE);
            if (b, t) == (blocks, table) {
                break;
            }
            (blocks, table) = (b, t);
        }
        let table_offset = self.pos;
        let blocks_offset = table_offset + table * CLUSTER_SIZE;
        self.reference(table_offset, (table + blocks) * CLUSTER_SIZE);
        let mut rt = vec![0u8; (table * CLUSTER_SIZE) as usize];
        for b in 0..blocks {
            let at = b as usize * 8;
            rt[at..at + 8].copy_from_slice(&(blocks_offset + b * CLUSTER_SIZE).to_be_bytes());
        }
        self.write(&rt)?;
        let mut rb = vec![0u8; (blocks * CLUSTER_SIZE) as usize];
        for (c, n) in self.refcounts.iter().enumerate() {
            rb[c * 2..c * 2 + 2].copy_from_slice(&n.to_be_bytes());
        }
        self.write(&rb)?;
        // The header.
        let mut h = Vec::with_capacity(112);
        h.extend(super::read::MAGIC.to_be_bytes());
        h.extend(3u32.to_be_bytes()); // version
        h.extend(0u64.to_be_bytes()); // backing file offset
        h.extend(0u32.to_be_bytes()); // backing file name length
        h.extend(CLUSTER_BITS.to_be_bytes());
        h.extend(self.size.to_be_bytes());
        h.extend(0u32.to_be_bytes()); // no encryption
        h.extend((l1_size as u32).to_be_bytes());
        h.extend(l1_offset.to_be_bytes());
        h.extend(table_offset.to_be_bytes());
        h.extend((table as u32).to_be_bytes());
        h.extend(0u32.to_be_bytes()); // snapshots
        h.extend(0u64.to_be_bytes()); // snapshots offset
        h.extend(0u64.to_be_bytes()); // incompatible features
        h.extend(0u64.to_be_bytes()); // compatible features
        h.extend(0u64.to_be_bytes()); // autoclear features
        h.extend(4u32.to_be_bytes()); // refcount_order: 16-bit counts
        h.extend(112u32.to_be_bytes()); // header length
        h.push(0); // compression type: zlib
        h.extend([0u8; 7]); // padding; the header extensions end right after (a zero type)
        let end = self.pos;
        let mut file = self.out.into_inner().map_err(|e| Qcow2Error::io(&self.path, e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| Qcow2Error::io(&self.path, e))?;
        file.write_all(&h).map_err(|e| Qcow2Error::io(&self.path, e))?;
        file.sync_all().map_err(|e| Qcow2Error::io(&self.path, e))?;
        Ok(end)
    }
}
