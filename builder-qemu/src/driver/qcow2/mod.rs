//! The compressed conversion (`disk_compression`) done by qemu-rs itself, reusing the compressed
//! clusters of a base image that the guest left unchanged.
//!
//! A cloud image booted through an overlay (`steps::disk`) ends the build as a chain: the overlay
//! holds what the guest wrote (and, with copy-on-read, decompressed copies of what it read), the
//! base holds the rest, compressed. `qemu-img convert -c` decompresses every cluster of the chain
//! and compresses it again: on the Debian 12 cloud image 541 of the final 572 MiB are the base's
//! clusters, unchanged, and compressing them again costs ~24 s of CPU. Here a base cluster's
//! compressed bytes are copied as they are when the guest did not rewrite it (its copy in the
//! overlay, if any, is compared with the base's, decompressed), and only the rest is compressed,
//! on every core, as raw deflate with QEMU's 4 KiB window (at [`LEVEL`], not QEMU's 6).
//!
//! Written by hand because no maintained crate writes compressed qcow2 clusters (the `qcow`
//! crates of crosvm and cloud-hypervisor write uncompressed ones only), and `qemu-img` has no
//! way to copy a compressed cluster as it is. The result is the same kind of image as
//! `qemu-img convert -c -O qcow2` writes (version 3, 64 KiB clusters, zlib, no backing file), and
//! the caller checks it with `qemu-img check` before using it; an image this module does not
//! read ([`Qcow2Error::Unsupported`]) is left to `qemu-img`.

mod read;
mod write;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

pub use read::{Blob, Chain, Source};
use write::{Cluster, Writer};

/// log2 of the cluster size handled here.
pub const CLUSTER_BITS: u32 = 16;
/// The cluster size handled here (qemu-img's default).
pub const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
/// Entries of an L2 table.
pub const L2_ENTRIES: usize = (CLUSTER_SIZE / 8) as usize;
/// The deflate level. QEMU uses zlib's default (6); zlib-rs at 6 is 2.6-2.9x faster than
/// `qemu-img` but its images were 2-3 % larger, at 9 1.3-1.7x faster and 0.3 % smaller
/// (the Debian 12 cloud image, 546 MiB of data: 10.9 s and 215.3 MB against `qemu-img convert -c
/// -m 16 -W`'s 13.5 s and 215.9 MB on 2 cores; 600 MiB of /usr: 10.2 s, 238.1 MB against 16.9 s,
/// 238.9 MB).
pub const LEVEL: u32 = 9;
/// Clusters handed to a worker at a time.
const BATCH: usize = 64;
/// Batches per worker converted before the next ones start.
const WINDOW: usize = 8;

/// Why the conversion could not be done here.
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    /// The image uses something this module does not read; `qemu-img` can convert it.
    #[error("not converted by qemu-rs itself: {0}")]
    Unsupported(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The image's content is not what its tables say (a damaged image).
    #[error("{0}")]
    Invalid(String),
    /// The conversion was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl Qcow2Error {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Qcow2Error::Io { path: path.display().to_string(), source }
    }
}

/// What a conversion did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Clusters whose compressed bytes were copied from a backing image.
    pub reused: u64,
    /// Clusters compressed here.
    pub compressed: u64,
    /// Clusters stored uncompressed (they did not get smaller).
    pub raw: u64,
    /// Clusters left out: zeros.
    pub zero: u64,
    /// The new image's size in bytes.
    pub bytes: u64,
}

/// Opens `path`'s chain, if this module can convert it; any failure to read it (a backing file
/// named by URL or JSON, a missing one, a damaged header) is [`Qcow2Error::Unsupported`]: left to
/// `qemu-img`, which says best what is wrong.
pub fn open(path: &Path) -> Result<Chain, Qcow2Error> {
    let chain = Chain::open(path).map_err(|e| match e {
        Qcow2Error::Unsupported(why) => Qcow2Error::Unsupported(why),
        other => Qcow2Error::Unsupported(format!("cannot read the image chain: {other}")),
    })?;
    if chain.size() == 0 {
        return Err(Qcow2Error::Unsupported("an empty disk".into()));
    }
    Ok(chain)
}

/// Writes the standalone compressed image of `chain` to `dst`, on `threads` workers; stops with
/// [`Qcow2Error::Cancelled`] soon after `cancel` is set.
pub fn compress(chain: &Chain, dst: &Path, threads: usize, cancel: &AtomicBool) -> Result<Stats, Qcow2Error> {
    let mut writer = Writer::create(dst, chain.size())?;
    let mut stats = Stats::default();
    let l1_entries = chain.size().div_ceil(CLUSTER_SIZE * L2_ENTRIES as u64) as usize;
    for i in 0..l1_entries {
        if cancel.load(Ordering::Relaxed) {
            return Err(Qcow2Error::Cancelled);
        }
        let sources = chain.sources(i)?;
        let first = (i * L2_ENTRIES) as u64;
        let work: Vec<(u64, Source)> = sources
            .into_iter()
            .enumerate()
            .filter_map(|(k, s)| match s {
                Source::Zero => {
                    stats.zero += 1;
                    None
                }
                s => Some((first + k as u64, s)),
            })
            .collect();
        // A few batches per worker at a time, so that batches finished ahead of a slow one are
        // not held in memory without bound.
        for window in work.chunks(BATCH * WINDOW * threads.max(1)) {
            convert_batches(chain, window, threads, cancel, &mut writer, &mut stats)?;
        }
    }
    stats.bytes = writer.finish()?;
    Ok(stats)
}

/// One worker's result for one batch.
type Done = Result<Vec<(u64, Option<Cluster>, bool)>, Qcow2Error>;

/// Converts `work` (clusters of one L2 table, in guest order) on `threads` workers and writes
/// the results in order.
fn convert_batches(
    chain: &Chain,
    work: &[(u64, Source)],
    threads: usize,
    cancel: &AtomicBool,
    writer: &mut Writer,
    stats: &mut Stats,
) -> Result<(), Qcow2Error> {
    let batches: Vec<&[(u64, Source)]> = work.chunks(BATCH).collect();
    let next = AtomicUsize::new(0);
    let threads = threads.clamp(1, batches.len().max(1));
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<(usize, Done)>(threads * 2);
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, batches) = (&next, &batches);
            scope.spawn(move || {
                let mut worker = Worker::new();
                loop {
                    let b = next.fetch_add(1, Ordering::Relaxed);
                    if b >= batches.len() || cancel.load(Ordering::Relaxed) {
                        break;
                    }
                    let done =
                        batches[b].iter().map(|(g, s)| worker.cluster(chain, *s).map(|(c, r)| (*g, c, r))).collect();
                    if tx.send((b, done)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Write in order, holding batches that arrive early.
        let mut early = std::collections::BTreeMap::new();
        let mut want = 0;
        for (b, done) in rx {
            early.insert(b, done);
            while let Some(done) = early.remove(&want) {
                for (guest, cluster, reused) in done? {
                    match &cluster {
                        None => stats.zero += 1,
                        Some(_) if reused => stats.reused += 1,
                        Some(Cluster::Compressed(_)) => stats.compressed += 1,
                        Some(Cluster::Raw(_)) => stats.raw += 1,
                    }
                    if let Some(c) = cluster {
                        writer.add(guest, &c)?;
                    }
                }
                want += 1;
            }
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(Qcow2Error::Cancelled);
        }
        if want != batches.len() {
            return Err(Qcow2Error::Invalid("a conversion worker stopped early".into()));
        }
        Ok(())
    })
}

/// A worker's buffers and zlib streams.
struct Worker {
    deflate: Compress,
    inflate: Decompress,
    data: Vec<u8>,
    unpacked: Vec<u8>,
    packed: Vec<u8>,
}

impl Worker {
    fn new() -> Self {
        Worker {
            // Raw deflate with a 4 KiB window, as QEMU writes it (QEMU inflates with windowBits
            // -12, so a stream must not reach further back).
            deflate: Compress::new_with_window_bits(Compression::new(LEVEL), false, 12),
            inflate: Decompress::new(false),
            data: vec![0; CLUSTER_SIZE as usize],
            unpacked: vec![0; CLUSTER_SIZE as usize],
            packed: vec![0; CLUSTER_SIZE as usize - 1],
        }
    }

    /// One cluster's bytes for the new image (`None`: it reads as zeros) and whether they were
    /// copied compressed from a backing image.
    fn cluster(&mut self, chain: &Chain, source: Source) -> Result<(Option<Cluster>, bool), Qcow2Error> {
        match source {
            Source::Zero => Ok((None, false)),
            Source::Compressed { blob, valid } if valid == CLUSTER_SIZE => {
                Ok((Some(Cluster::Compressed(blob_bytes(chain, blob)?)), true))
            }
            // The last cluster of an image that ends inside it: only its own bytes count.
            Source::Compressed { blob, valid } => {
                let bytes = blob_bytes(chain, blob)?;
                if !self.unpack(&bytes) {
                    let (_, path) = chain.file(blob.image);
                    return Err(Qcow2Error::Invalid(format!(
                        "{}: the compressed cluster at offset {} does not inflate to a whole cluster",
                        path.display(),
                        blob.offset
                    )));
                }
                std::mem::swap(&mut self.data, &mut self.unpacked);
                Ok((self.pack_valid(valid), false))
            }
            Source::Data { image, offset, below, valid } => {
                let (file, path) = chain.file(image);
                read_cluster(file, offset, &mut self.data).map_err(|e| Qcow2Error::io(path, e))?;
                if valid == CLUSTER_SIZE && !self.data.iter().all(|b| *b == 0) {
                    if let Some(blob) = below {
                        let bytes = blob_bytes(chain, blob)?;
                        if self.unpack(&bytes) && self.unpacked == self.data {
                            return Ok((Some(Cluster::Compressed(bytes)), true));
                        }
                    }
                }
                Ok((self.pack_valid(valid), false))
            }
        }
    }

    /// `data`'s first `valid` bytes (the rest zeroed) compressed, or `None` when all are zeros.
    fn pack_valid(&mut self, valid: u64) -> Option<Cluster> {
        self.data[valid as usize..].fill(0);
        if self.data.iter().all(|b| *b == 0) {
            return None;
        }
        Some(self.pack())
    }

    /// Inflates a compressed cluster into `unpacked`; false when it is not a whole cluster.
    fn unpack(&mut self, bytes: &[u8]) -> bool {
        self.inflate.reset(false);
        match self.inflate.decompress(bytes, &mut self.unpacked, FlushDecompress::Finish) {
            Ok(_) => self.inflate.total_out() == CLUSTER_SIZE,
            Err(_) => false,
        }
    }

    /// Compresses `data`, or keeps it raw when the stream would not be smaller than a cluster.
    fn pack(&mut self) -> Cluster {
        self.deflate.reset();
        match self.deflate.compress(&self.data, &mut self.packed, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => Cluster::Compressed(self.packed[..self.deflate.total_out() as usize].to_vec()),
            _ => Cluster::Raw(self.data.clone()),
        }
    }
}

/// Reads a cluster at `offset`; bytes past the end of the file read as zeros (as QEMU reads them:
/// an image file may end inside its last cluster).
fn read_cluster(file: &std::fs::File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[done..].fill(0);
    Ok(())
}

fn blob_bytes(chain: &Chain, blob: Blob) -> Result<Vec<u8>, Qcow2Error> {
    let (file, path) = chain.file(blob.image);
    read::read_at(file, path, blob.offset, blob.size as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    fn run(cmd: &str, args: &[&str]) -> String {
        let out = Command::new(cmd).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn p(path: &Path) -> &str {
        path.to_str().unwrap()
    }

    /// A 16 MiB compressed base (as cloud images ship): text-like data, random data (which does
    /// not compress and stays raw), zeros; `opts` go to `qemu-img convert -o`.
    fn base(dir: &Path, opts: &str) -> PathBuf {
        let raw = dir.join("base.raw");
        let mut bytes = vec![0u8; 16 << 20];
        for (i, b) in bytes[..6 << 20].iter_mut().enumerate() {
            *b = b"qemu-rs compresses clusters "[i % 28] ^ ((i / 4096) as u8 & 7);
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for b in bytes[8 << 20..9 << 20].iter_mut() {
            *b = rng.next() as u8;
        }
        std::fs::write(&raw, &bytes).unwrap();
        let base = dir.join("base.qcow2");
        run("qemu-img", &["convert", "-c", "-O", "qcow2", "-o", opts, p(&raw), p(&base)]);
        std::fs::remove_file(&raw).unwrap();
        base
    }

    /// A 24 MiB overlay on `base` (relative name, as qemu-rs creates it) after `io` (qemu-io
    /// commands, run with copy-on-read on).
    fn overlay(dir: &Path, io: &[&str]) -> PathBuf {
        let top = dir.join("top.qcow2");
        run("qemu-img", &["create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", p(&top), "24M"]);
        for c in io {
            run("qemu-io", &["-C", "-c", c, p(&top)]);
        }
        top
    }

    fn convert(top: &Path, dst: &Path) -> Stats {
        let chain = open(top).unwrap();
        let stats = compress(&chain, dst, 2, &AtomicBool::new(false)).unwrap();
        strictly_inflatable(dst);
        run("qemu-img", &["check", "-f", "qcow2", p(dst)]);
        let same = run("qemu-img", &["compare", p(top), p(dst)]);
        assert!(same.contains("identical"), "{same}");
        let info = run("qemu-img", &["info", p(dst)]);
        assert!(!info.contains("backing file"), "{info}");
        stats
    }

    /// Every compressed cluster of `image` inflates with a 4 KiB window (QEMU's `windowBits`
    /// -12), its output taken 1 KiB at a time so that no distance can reach past the window.
    fn strictly_inflatable(image: &Path) {
        let chain = Chain::open(image).unwrap();
        let mut out = vec![0u8; CLUSTER_SIZE as usize];
        for i in 0..chain.size().div_ceil(CLUSTER_SIZE * L2_ENTRIES as u64) as usize {
            for source in chain.sources(i).unwrap() {
                let Source::Compressed { blob, .. } = source else { continue };
                let bytes = blob_bytes(&chain, blob).unwrap();
                let mut z = Decompress::new_with_window_bits(false, 12);
                while z.total_out() < CLUSTER_SIZE {
                    let (at, read) = (z.total_out() as usize, z.total_in() as usize);
                    z.decompress(&bytes[read..], &mut out[at..at + 1024], FlushDecompress::None).unwrap();
                    assert!(z.total_out() as usize > at, "stuck at {at}");
                }
            }
        }
    }

    #[test]
    fn a_chain_becomes_one_compressed_image_reusing_unchanged_clusters() {
        let dir = tempfile::tempdir().unwrap();
        base(dir.path(), "compat=1.1");
        let top = overlay(
            dir.path(),
            &[
                "read 0 2M",                // copy-on-read: identical copies in the overlay
                "write -P 0x5a 1M 64k",     // one rewritten cluster (in the copied part)
                "write -P 0x11 3000k 1000", // a partial cluster
                "write -z 4M 128k",         // zeros over base data
                "write -P 0x22 20M 1M",     // past the base's end
            ],
        );
        let dst = dir.path().join("out.qcow2");
        let s = convert(&top, &dst);
        // 96 compressed base clusters, 2 of them rewritten, 2 zeroed; the 32 copies made on read
        // are the base's compressed bytes again, not compressed anew
        assert_eq!(s.reused, 92, "{s:?}");
        // the 2 rewritten ones and 16 past the base's end; the base's random MiB stays raw
        assert_eq!((s.compressed, s.raw), (18, 16), "{s:?}");
    }

    #[test]
    fn a_single_image_and_a_version_2_base_convert_too() {
        let dir = tempfile::tempdir().unwrap();
        let b = base(dir.path(), "compat=0.10");
        let top = overlay(dir.path(), &["write -P 0x33 5M 64k"]);
        let s = convert(&top, &dir.path().join("a.qcow2"));
        assert!(s.reused > 80, "{s:?}");
        // a compressed image alone: its clusters are copied as they are
        let s = convert(&b, &dir.path().join("b.qcow2"));
        assert_eq!((s.reused, s.compressed), (96, 0), "{s:?}");
        // an uncompressed one (an installed disk): every cluster is compressed, but random data
        let plain = dir.path().join("plain.qcow2");
        run("qemu-img", &["convert", "-O", "qcow2", "-o", "compat=0.10", p(&b), p(&plain)]);
        let s = convert(&plain, &dir.path().join("c.qcow2"));
        assert_eq!(s.reused, 0);
        assert!(s.compressed == 96 && s.raw == 16, "{s:?}");
    }

    #[test]
    fn disks_and_bases_that_end_inside_a_cluster() {
        // like the test guest's image (94550016 bytes): the base's last cluster is partly past its end
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("base.raw");
        std::fs::write(&raw, vec![0x41u8; (1 << 20) + 17 * 512]).unwrap();
        let base = dir.path().join("base.qcow2");
        run("qemu-img", &["convert", "-c", "-O", "qcow2", p(&raw), p(&base)]);
        let top = overlay(dir.path(), &["write -P 0x42 0 4k"]);
        let s = convert(&top, &dir.path().join("a.qcow2"));
        // 16 base clusters, one rewritten; the partial one is compressed anew, zero past the base's end
        assert_eq!((s.reused, s.compressed), (15, 2), "{s:?}");
        // an image that ends inside a cluster itself
        let s = convert(&base, &dir.path().join("b.qcow2"));
        assert_eq!((s.reused, s.compressed), (16, 1), "{s:?}");
        let odd = dir.path().join("odd.qcow2");
        run("qemu-img", &["convert", "-O", "qcow2", p(&raw), p(&odd)]);
        let s = convert(&odd, &dir.path().join("c.qcow2"));
        assert_eq!((s.reused, s.compressed), (0, 17), "{s:?}");
    }

    #[test]
    fn a_file_that_ends_inside_its_last_cluster_reads_zeros_there() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("short.qcow2");
        run("qemu-img", &["create", "-q", "-f", "qcow2", p(&img), "1M"]);
        run("qemu-io", &["-c", "write -P 0x61 0 64k", p(&img)]);
        // the data cluster is the file's last one: cut its (zero) tail off
        let len = std::fs::metadata(&img).unwrap().len();
        run("qemu-io", &["-c", "write -P 0x61 0 4k", "-c", "write -z 4k 60k", p(&img)]);
        let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.set_len(len - 1000).unwrap();
        let out = dir.path().join("out.qcow2");
        let s = compress(&open(&img).unwrap(), &out, 1, &AtomicBool::new(false)).unwrap();
        assert_eq!(s.compressed, 1, "{s:?}");
        run("qemu-img", &["check", "-f", "qcow2", p(&out)]);
        assert!(run("qemu-img", &["compare", "-f", "qcow2", "-F", "qcow2", p(&img), p(&out)]).contains("identical"));
    }

    #[test]
    fn images_it_does_not_read_are_left_to_qemu_img() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let zstd = base(d, "compression_type=zstd");
        assert!(matches!(open(&zstd), Err(Qcow2Error::Unsupported(_))));
        let small = d.join("small.qcow2");
        run("qemu-img", &["create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", p(&small), "1M"]);
        assert!(matches!(open(&small), Err(Qcow2Error::Unsupported(_))));
        let raw = d.join("r.raw");
        run("qemu-img", &["create", "-q", "-f", "raw", p(&raw), "1M"]);
        assert!(matches!(open(&raw), Err(Qcow2Error::Unsupported(_))));
        let on_raw = d.join("on-raw.qcow2");
        run("qemu-img", &["create", "-q", "-f", "qcow2", "-b", "r.raw", "-F", "raw", p(&on_raw), "1M"]);
        assert!(matches!(open(&on_raw), Err(Qcow2Error::Unsupported(_))));
    }

    /// xorshift64: the random chains below are the same on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// `count` random qemu-io commands for an image of `size` bytes: writes of text-like and
    /// random bytes (from `pattern`), compressed writes, zero writes, discards and (with
    /// copy-on-read) reads, of any length and alignment, mostly around the 512 MiB boundaries
    /// where one L2 table ends and the next begins, and at the disk's end. The compressed writes
    /// come first, each to clusters of its own (QEMU writes compressed clusters only where the
    /// image has none yet), and only into a new image (`fresh`).
    fn random_io(rng: &mut Rng, size: u64, pattern: &Path, count: usize, fresh: bool) -> Vec<String> {
        let mut hot = vec![0, size.saturating_sub(1 << 20)];
        let mut b = CLUSTER_SIZE * L2_ENTRIES as u64;
        while b < size {
            hot.push(b - (1 << 20));
            b += CLUSTER_SIZE * L2_ENTRIES as u64;
        }
        let (mut packed, mut rest) = (Vec::new(), Vec::new());
        let mut taken = std::collections::BTreeSet::new();
        for _ in 0..count {
            let around = hot[rng.below(hot.len() as u64) as usize];
            let off = (around + rng.below(2 << 20)).min(size - 1);
            let len = (1 + rng.below(200 << 10)).min(size - off);
            let first = off / CLUSTER_SIZE;
            let clusters = 1 + rng.below(3);
            let aligned = first * CLUSTER_SIZE;
            match rng.below(10) {
                0..=3 => rest.push(format!("write -q -s {} {off} {len}", pattern.display())),
                4 if fresh
                    && (first + clusters) * CLUSTER_SIZE <= size
                    && (first..first + clusters).all(|c| taken.insert(c)) =>
                {
                    packed.push(format!("write -q -c -s {} {aligned} {}", pattern.display(), clusters * CLUSTER_SIZE))
                }
                5 => rest.push(format!("write -q -z {off} {len}")),
                6 => rest.push(format!("discard -q {aligned} {}", (clusters * CLUSTER_SIZE).min(size - aligned))),
                7 => rest.push(format!("write -q -P {} {off} {len}", rng.below(256))),
                _ => rest.push(format!("read -q {off} {len}")),
            }
        }
        packed.extend(rest);
        packed
    }

    #[test]
    fn random_chains_convert_to_images_qemu_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // 64 KiB of text-like bytes, 64 KiB of random ones, 72 KiB of one byte
        let pattern = d.join("pattern");
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut bytes: Vec<u8> = (0..64 << 10).map(|i| b"the guest wrote this, "[i % 22] ^ (i >> 12) as u8).collect();
        bytes.extend((0..64 << 10).map(|_| rng.next() as u8));
        bytes.extend(std::iter::repeat_n(0x7e, 72 << 10));
        std::fs::write(&pattern, &bytes).unwrap();
        for seed in 1..=10u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let layers = 1 + rng.below(3) as usize;
            let mut size = (1 << 30) + rng.below(700 << 20) / 512 * 512 + 512 * rng.below(2);
            let mut below: Option<PathBuf> = None;
            for layer in 0..layers {
                let img = d.join(format!("s{seed}-{layer}.qcow2"));
                let compat = if rng.below(4) == 0 { "compat=0.10" } else { "compat=1.1" };
                let mut create = vec!["create", "-q", "-f", "qcow2", "-o", compat];
                let name = below.as_ref().map(|b| b.file_name().unwrap().to_str().unwrap().to_string());
                if let Some(name) = &name {
                    create.extend(["-b", name, "-F", "qcow2"]);
                }
                let size_arg = size.to_string();
                create.extend([p(&img), &size_arg]);
                run("qemu-img", &create);
                // sometimes an internal snapshot between two rounds (shared clusters, L2 entries
                // without the COPIED flag); the conversion takes the image's current state
                let rounds = 1 + rng.below(2);
                for round in 0..rounds {
                    if round > 0 {
                        run("qemu-img", &["snapshot", "-c", "before", p(&img)]);
                    }
                    let io = random_io(&mut rng, size, &pattern, 40, round == 0);
                    let mut args = vec!["-C".to_string()];
                    for c in &io {
                        args.extend(["-c".to_string(), c.clone()]);
                    }
                    args.push(p(&img).to_string());
                    run("qemu-io", &args.iter().map(String::as_str).collect::<Vec<_>>());
                }
                if layer == 0 && rng.below(2) == 0 {
                    // a cloud image: the base compressed as a whole
                    let packed = d.join(format!("s{seed}-packed.qcow2"));
                    run("qemu-img", &["convert", "-c", "-O", "qcow2", "-o", compat, p(&img), p(&packed)]);
                    std::fs::rename(&packed, &img).unwrap();
                }
                below = Some(img);
                size += rng.below(3) * (100 << 20) + rng.below(8) * 512;
            }
            let top = below.unwrap();
            let out = d.join(format!("s{seed}-out.qcow2"));
            let stats = convert(&top, &out);
            eprintln!("seed {seed}: {layers} images: {stats:?}");
            assert!(stats.reused + stats.compressed + stats.raw > 0, "{stats:?}");
        }
    }

    #[test]
    fn a_cancelled_conversion_stops() {
        let dir = tempfile::tempdir().unwrap();
        let b = base(dir.path(), "compat=1.1");
        let chain = open(&b).unwrap();
        let r = compress(&chain, &dir.path().join("c.qcow2"), 2, &AtomicBool::new(true));
        assert!(matches!(r, Err(Qcow2Error::Cancelled)), "{r:?}");
    }
}
