//! Compressing a raw image into `.raw.xz` / `.raw.zst`, on all cores, checking for cancellation
//! between blocks. liblzma and zstd are the reference implementations (through the `liblzma` and
//! `zstd` crates, which build them from source).

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::Path;

use packer_sdk::CancellationToken;

const BLOCK: usize = 1 << 20;

fn threads() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1)
}

fn pump(src: &Path, mut w: impl Write, cancel: &CancellationToken) -> std::io::Result<()> {
    let mut r = BufReader::with_capacity(BLOCK, File::open(src)?);
    let mut buf = vec![0u8; BLOCK];
    loop {
        if cancel.is_cancelled() {
            return Err(std::io::Error::other("cancelled"));
        }
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        w.write_all(&buf[..n])?;
    }
}

/// `src` → `dst` as xz (`level` 0–9, CRC64 check, one thread per core).
pub fn xz(src: &Path, dst: &Path, level: u32, cancel: &CancellationToken) -> std::io::Result<()> {
    let stream = liblzma::stream::MtStreamBuilder::new()
        .preset(level)
        .threads(threads())
        .check(liblzma::stream::Check::Crc64)
        .encoder()
        .map_err(std::io::Error::other)?;
    let mut w = liblzma::write::XzEncoder::new_stream(File::create(dst)?, stream);
    pump(src, &mut w, cancel)?;
    w.finish()?.sync_all()
}

/// `src` → `dst` as zstd (`level` 1–19, one worker per core).
pub fn zstd(src: &Path, dst: &Path, level: i32, cancel: &CancellationToken) -> std::io::Result<()> {
    let mut w = zstd::stream::Encoder::new(File::create(dst)?, level)?;
    w.multithread(threads())?;
    w.include_checksum(true)?;
    pump(src, &mut w, cancel)?;
    w.finish()?.sync_all()
}
