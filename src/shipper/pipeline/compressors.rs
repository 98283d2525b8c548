//! The compressor threads: a fixed number (`compression_threads`), fed through a queue;
//! small bodies are compressed by the caller instead.
//!
//! A fixed set, rather than the runtime's blocking pool: that pool starts a thread whenever
//! all of its threads are busy, and keeps each for ten seconds, so under load it grew to a
//! dozen threads, each with its own malloc arena and its own cached codec state
//! (docs/performance.md, "Measurements behind the code").

use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::compress::{self, Codec};

/// A body compressed, and the uncompressed buffer given back for reuse.
pub(super) type CompressorOutput = (io::Result<Vec<u8>>, Vec<u8>);

struct Job {
    codec: Codec,
    body: Vec<u8>,
    done: oneshot::Sender<CompressorOutput>,
}

/// Bodies up to this size are compressed where they are (a runtime thread): a quiet Pod's
/// batch of a few KB takes tens of microseconds to compress, less than waking a compressor
/// thread and being woken by it (docs/performance.md, "Measurements behind the code").
const INLINE_MAX_BYTES: usize = 64 * 1024;

pub(super) struct Compressors {
    queue: mpsc::Sender<Job>,
}

impl Compressors {
    /// Starts `threads` compressor threads; they end when this is dropped.
    pub(super) fn start(threads: usize) -> io::Result<Compressors> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads.max(1) {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("sidelog-zip-{i}"))
                .spawn(move || work(&jobs))?;
        }
        Ok(Compressors { queue })
    }

    /// Compresses `body` with `codec` on a compressor thread, or here when it is small.
    /// `None` if the threads are gone.
    pub(super) async fn compress(&self, codec: Codec, body: Vec<u8>) -> Option<CompressorOutput> {
        if body.len() <= INLINE_MAX_BYTES {
            return Some(compress_body(codec, body));
        }
        let (done, result) = oneshot::channel();
        self.queue.send(Job { codec, body, done }).ok()?;
        result.await.ok()
    }
}

fn work(jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = match crate::lock(jobs).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        // The batch may have been abandoned meanwhile; then the result is simply dropped.
        let _ = job.done.send(compress_body(job.codec, job.body));
    }
}

fn compress_body(codec: Codec, body: Vec<u8>) -> CompressorOutput {
    let mut out = Vec::with_capacity(body.len() / 4 + 1024);
    let res = compress::compress(codec, &body, &mut out);
    (res.map(|()| out), body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::CodecKind;

    fn batch(n: usize) -> Vec<u8> {
        (0..5_000u32)
            .flat_map(|i| format!("batch {n} line {i}\n").into_bytes())
            .collect()
    }

    #[tokio::test]
    async fn batches_at_once_come_back_compressed_with_their_buffers() {
        let compressors = Arc::new(Compressors::start(2).expect("start"));
        let codecs = [CodecKind::Zstd.at(None), CodecKind::Gzip.at(None)];
        let jobs: Vec<_> = (0..8)
            .map(|n| {
                let compressors = compressors.clone();
                let codec = codecs[n % 2];
                tokio::spawn(async move { compressors.compress(codec, batch(n)).await })
            })
            .collect();
        for (n, job) in jobs.into_iter().enumerate() {
            let (compressed, body) = job.await.expect("task").expect("compressors running");
            assert_eq!(body, batch(n), "the uncompressed buffer is given back");
            let encoding = codecs[n % 2].content_encoding();
            let back = compress::decompress(encoding, &compressed.expect("compress"), 1 << 24)
                .expect("decompress");
            assert_eq!(back, batch(n));
        }
    }

    #[tokio::test]
    async fn zero_threads_still_means_one() {
        let compressors = Compressors::start(0).expect("start");
        let identity = CodecKind::Identity.at(None);
        let done = compressors.compress(identity, b"x".to_vec()).await;
        assert_eq!(done.expect("running").0.expect("identity"), b"x");
    }
}
