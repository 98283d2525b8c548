//! Request body codecs: compression for the sender, decompression for the built-in intake.
//!
//! Whole batches are compressed in one call on a blocking thread; nothing here is async.

use std::io::{self, Read, Write};

use crate::config::Compression;

/// Compresses `input` into `out` (cleared first).
pub fn compress(codec: Compression, level: i32, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    match codec {
        Compression::Gzip => {
            let mut enc =
                flate2::write::GzEncoder::new(out, flate2::Compression::new(level as u32));
            enc.write_all(input)?;
            enc.finish()?;
        }
        Compression::Deflate => {
            // HTTP's "deflate" is the zlib format (RFC 1950), not raw deflate.
            let mut enc =
                flate2::write::ZlibEncoder::new(out, flate2::Compression::new(level as u32));
            enc.write_all(input)?;
            enc.finish()?;
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(out, level)?;
            enc.write_all(input)?;
            enc.finish()?;
        }
        Compression::None => out.extend_from_slice(input),
    }
    Ok(())
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
        for (codec, level) in [
            (Compression::Gzip, 6),
            (Compression::Deflate, 1),
            (Compression::Zstd, 3),
            (Compression::None, 0),
        ] {
            let mut out = Vec::new();
            compress(codec, level, &input, &mut out).expect("compress");
            let back = decompress(codec.content_encoding(), &out, 10_000_000).expect("decompress");
            assert_eq!(back, input, "{codec:?}");
        }
    }

    #[test]
    fn decompression_is_bounded() {
        let input = vec![b'a'; 1_000_000];
        let mut out = Vec::new();
        compress(Compression::Gzip, 6, &input, &mut out).expect("compress");
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
