//! Request body codecs: compression for the sender, decompression for the built-in intake
//! and for refused batches that must be split.
//!
//! Whole batches are compressed in one call (by the pipeline's compressors: inline for small
//! bodies, else on a compressor thread); nothing here is async.

use std::io::{self, Read};

use bytes::Bytes;

/// A compressed request body and the codec it was compressed with.
#[derive(Clone)]
pub(crate) struct Compressed {
    pub body: Bytes,
    pub codec: Codec,
}

/// How a request body is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub kind: CodecKind,
    pub level: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecKind {
    Zstd,
    Gzip,
    Deflate,
    Identity,
}

impl CodecKind {
    /// The `Content-Encoding` header value.
    pub fn content_encoding(self) -> &'static str {
        match self {
            CodecKind::Gzip => "gzip",
            CodecKind::Deflate => "deflate",
            CodecKind::Zstd => "zstd",
            CodecKind::Identity => "identity",
        }
    }

    /// The level used when none is configured: zstd 1 as the Datadog Agent, 6 for the
    /// deflate family (as good as 9 for logs, at two thirds of the CPU).
    pub fn default_level(self) -> i32 {
        match self {
            CodecKind::Zstd => 1,
            CodecKind::Gzip | CodecKind::Deflate => 6,
            CodecKind::Identity => 0,
        }
    }

    /// The levels allowed.
    pub fn levels(self) -> (i32, i32) {
        match self {
            CodecKind::Gzip | CodecKind::Deflate => (0, 9),
            // Levels 4 and up cost 3 to 5 times the CPU for 8-12% fewer bytes on log lines;
            // their match finders are left out of the build (`.cargo/config.toml`).
            CodecKind::Zstd => (1, 3),
            CodecKind::Identity => (i32::MIN, i32::MAX),
        }
    }

    pub fn at(self, level: Option<i32>) -> Codec {
        Codec {
            kind: self,
            level: level.unwrap_or(self.default_level()),
        }
    }
}

impl Codec {
    pub fn content_encoding(self) -> &'static str {
        self.kind.content_encoding()
    }
}

thread_local! {
    /// One deflate state per thread, reset for each batch: creating one allocates and clears
    /// a few hundred KB, which per batch made peak memory vary from run to run.
    static DEFLATE: std::cell::RefCell<Option<(i32, bool, flate2::Compress)>> =
        const { std::cell::RefCell::new(None) };
    /// One zstd context per thread, for whole-batch compression: the streaming encoder
    /// allocated a window, an input and an output buffer per batch, and peak memory showed
    /// it (docs/performance.md, "Measurements behind the code").
    static ZSTD: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// gzip member header: no name, no time, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Compresses `input` into `out` (cleared first).
pub fn compress(codec: Codec, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    let level = codec.level;
    match codec.kind {
        CodecKind::Gzip => {
            out.extend_from_slice(&GZIP_HEADER);
            deflate_into(level, false, input, out)?;
            let mut crc = flate2::Crc::new();
            crc.update(input);
            out.extend_from_slice(&crc.sum().to_le_bytes());
            out.extend_from_slice(&(input.len() as u32).to_le_bytes());
        }
        // HTTP's "deflate" is the zlib format (RFC 1950), not raw deflate.
        CodecKind::Deflate => deflate_into(level, true, input, out)?,
        CodecKind::Zstd => zstd_into(level, input, out)?,
        CodecKind::Identity => out.extend_from_slice(input),
    }
    Ok(())
}

/// Compresses all of `input` into `out` in one call, with this thread's reused context: the
/// size is known, so zstd sizes its tables to it and needs no window of its own.
fn zstd_into(level: i32, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    ZSTD.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|(l, _)| *l != level) {
            *cell = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let Some((_, c)) = cell.as_mut() else {
            return Err(io::Error::other("no zstd context"));
        };
        // The bound is only reserved: pages past what is written are never touched.
        out.reserve(zstd::compress_bound(input.len()));
        c.compress_to_buffer(input, out)?;
        if out.capacity() > 2 * out.len() + 4096 {
            out.shrink_to_fit();
        }
        Ok(())
    })
}

/// Deflates all of `input` onto the end of `out` with this thread's reused state.
fn deflate_into(level: i32, zlib: bool, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    DEFLATE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let fresh = cell
            .as_ref()
            .is_none_or(|(l, z, _)| *l != level || *z != zlib);
        if fresh {
            let lvl = flate2::Compression::new(level.clamp(0, 9) as u32);
            *cell = Some((level, zlib, flate2::Compress::new(lvl, zlib)));
        }
        let Some((_, _, c)) = cell.as_mut() else {
            return Err(io::Error::other("no deflate state"));
        };
        if !fresh {
            c.reset();
        }
        let start_in = c.total_in();
        loop {
            let consumed = (c.total_in() - start_in) as usize;
            if out.capacity() - out.len() < 64 * 1024 {
                out.reserve(64 * 1024 + input.len().saturating_sub(consumed) / 4);
            }
            let status = c
                .compress_vec(&input[consumed..], out, flate2::FlushCompress::Finish)
                .map_err(io::Error::other)?;
            if status == flate2::Status::StreamEnd {
                return Ok(());
            }
        }
    })
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported Content-Encoding {0:?}")]
    Unsupported(String),
    #[error("body larger than {0} bytes once decompressed")]
    TooLarge(usize),
    #[error("cannot decompress body: {0}")]
    Corrupt(io::Error),
}

/// Decompresses a body sent with `Content-Encoding: encoding`, refusing to produce more than
/// `limit` bytes (so a small hostile body cannot exhaust memory).
pub fn decompress(encoding: &str, input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let reader: Box<dyn Read + '_> = match encoding.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Box::new(input),
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(input)),
        "deflate" => Box::new(flate2::read::ZlibDecoder::new(input)),
        "zstd" => Box::new(zstd::stream::read::Decoder::new(input).map_err(DecodeError::Corrupt)?),
        other => return Err(DecodeError::Unsupported(other.to_string())),
    };
    let mut out = Vec::with_capacity(input.len().saturating_mul(4).min(limit + 1));
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(DecodeError::Corrupt)?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge(limit));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let input: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        for codec in [
            CodecKind::Gzip.at(Some(6)),
            CodecKind::Deflate.at(Some(1)),
            CodecKind::Zstd.at(Some(3)),
            CodecKind::Identity.at(None),
        ] {
            let mut out = Vec::new();
            compress(codec, &input, &mut out).expect("compress");
            let back = decompress(codec.content_encoding(), &out, 10_000_000).expect("decompress");
            assert_eq!(back, input, "{codec:?}");
        }
    }

    #[test]
    fn reused_state_round_trips_across_batches_levels_and_formats() {
        let batches: Vec<Vec<u8>> = (0..4u32)
            .map(|b| {
                (0..20_000u32)
                    .flat_map(|i| format!("{b} {i}\n").into_bytes())
                    .collect()
            })
            .collect();
        for codec in [
            CodecKind::Gzip.at(Some(6)),
            CodecKind::Gzip.at(Some(6)),
            CodecKind::Deflate.at(Some(6)),
            CodecKind::Gzip.at(Some(1)),
            CodecKind::Gzip.at(Some(9)),
            CodecKind::Zstd.at(Some(1)),
            CodecKind::Zstd.at(Some(1)),
            CodecKind::Zstd.at(Some(5)),
            CodecKind::Zstd.at(Some(1)),
        ] {
            for batch in &batches {
                let mut out = Vec::new();
                compress(codec, batch, &mut out).expect("compress");
                let back =
                    decompress(codec.content_encoding(), &out, 10_000_000).expect("decompress");
                assert_eq!(&back, batch, "{codec:?}");
            }
        }
        let mut out = Vec::new();
        compress(CodecKind::Gzip.at(None), b"", &mut out).expect("empty");
        assert!(decompress("gzip", &out, 10).expect("empty").is_empty());
        compress(CodecKind::Zstd.at(None), b"", &mut out).expect("empty");
        assert!(decompress("zstd", &out, 10).expect("empty").is_empty());
    }

    #[test]
    fn decompression_is_bounded() {
        let input = vec![b'a'; 1_000_000];
        let mut out = Vec::new();
        compress(CodecKind::Gzip.at(None), &input, &mut out).expect("compress");
        assert!(matches!(
            decompress("gzip", &out, 999_999),
            Err(DecodeError::TooLarge(_))
        ));
        assert!(matches!(
            decompress("br", &out, 10),
            Err(DecodeError::Unsupported(_))
        ));
    }
}
