//! ChaCha8's keystream generated on a second thread while the caller samples from it.
//!
//! rand_distr's Ziggurat takes a `u64` (two ChaCha8 words) per attempt, and generating those
//! words is about half of drawing a tensor of normals on one thread. [`with_keystream_ahead`]
//! hands the sampler the same words in the same order as the generator itself would (ChaCha8Rng
//! reads a `u64` as two consecutive words, the first the low half), so a seed's values do not
//! change, and leaves the generator after the words taken.

use std::convert::Infallible;
use std::sync::mpsc::{self, Receiver};
use std::thread;

use rand::{Rng, TryRng};
use rand_chacha::ChaCha8Rng;

/// Words in a chunk of the keystream (256 KiB).
const CHUNK_WORDS: usize = 1 << 16;
/// Chunks the generating thread may run ahead of the sampler.
const AHEAD: usize = 4;

/// Runs `sample` on `rng`'s stream with the words generated ahead on another thread, then moves
/// `rng` past the words `sample` took. Where no thread starts, the words come from a copy of
/// `rng` on this thread: the same words, no overlap.
pub(crate) fn with_keystream_ahead<T>(
    rng: &mut ChaCha8Rng,
    sample: impl FnOnce(&mut Replay) -> T,
) -> T {
    let start = rng.get_word_pos();
    let (out, taken) = thread::scope(|scope| {
        let (chunks, received) = mpsc::sync_channel(AHEAD);
        let mut generator = rng.clone();
        // A failed spawn drops the sender with the closure, which the replay reads as the end
        // of the chunks.
        let _generating = thread::Builder::new()
            .name("keystream".into())
            .spawn_scoped(scope, move || {
                loop {
                    let chunk: Vec<u32> = (0..CHUNK_WORDS).map(|_| generator.next_u32()).collect();
                    if chunks.send(chunk).is_err() {
                        break;
                    }
                }
            });
        let mut replay = Replay {
            chunks: received,
            chunk: Vec::new(),
            at: 0,
            before: 0,
            start,
            alone: None,
            generator: rng.clone(),
        };
        let out = sample(&mut replay);
        // Dropping the replay closes the channel, which ends the generating thread.
        (out, replay.taken())
    });
    rng.set_word_pos(start + taken);
    out
}

/// The stream from [`with_keystream_ahead`]'s start, word by word as ChaCha8Rng gives them.
pub(crate) struct Replay {
    chunks: Receiver<Vec<u32>>,
    chunk: Vec<u32>,
    /// The next word's index in `chunk`.
    at: usize,
    /// Words in the chunks before `chunk`.
    before: u128,
    /// The stream's first word's position.
    start: u128,
    /// The generator taking over once no more chunks come, positioned after the words taken.
    alone: Option<ChaCha8Rng>,
    /// A copy of the generator at `start`, for `alone`.
    generator: ChaCha8Rng,
}

impl Replay {
    /// Words taken so far.
    fn taken(&self) -> u128 {
        self.before + self.at as u128
    }

    #[inline]
    fn word(&mut self) -> u32 {
        match self.chunk.get(self.at) {
            Some(&word) => {
                self.at += 1;
                word
            }
            None => self.next_chunk_word(),
        }
    }

    #[cold]
    fn next_chunk_word(&mut self) -> u32 {
        if self.alone.is_none() {
            self.before += self.chunk.len() as u128;
            (self.chunk, self.at) = (Vec::new(), 0);
            if let Ok(chunk) = self.chunks.recv() {
                (self.chunk, self.at) = (chunk, 1);
                return self.chunk[0];
            }
        }
        // No more chunks: the copy of the generator goes on from the words taken, each counted
        // in `before`.
        let position = self.start + self.before;
        let generator = &self.generator;
        let alone = self.alone.get_or_insert_with(|| {
            let mut alone = generator.clone();
            alone.set_word_pos(position);
            alone
        });
        self.before += 1;
        alone.next_u32()
    }
}

impl TryRng for Replay {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.word())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let (lo, hi) = match self.chunk.get(self.at..self.at + 2) {
            Some(&[lo, hi]) => {
                self.at += 2;
                (lo, hi)
            }
            _ => (self.word(), self.word()),
        };
        Ok((u64::from(hi) << 32) | u64::from(lo))
    }

    /// As ChaCha8Rng fills bytes: each word's little-endian bytes in turn, the rest of a last,
    /// partly used word dropped.
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        for bytes in dest.chunks_mut(4) {
            let word = self.word().to_le_bytes();
            bytes.copy_from_slice(&word[..bytes.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// A run of every kind of read, long enough to cross many chunks.
    fn reads(rng: &mut impl Rng) -> Vec<u64> {
        let mut out = Vec::new();
        for i in 0..3 * CHUNK_WORDS / 2 {
            out.push(rng.next_u64());
            if i % 997 == 0 {
                out.push(u64::from(rng.next_u32()));
                let mut bytes = [0u8; 8];
                rng.fill_bytes(&mut bytes[..7]);
                out.push(u64::from_le_bytes(bytes));
            }
        }
        out
    }

    #[test]
    fn replays_the_generators_own_words_and_leaves_it_after_them() {
        let mut ahead = ChaCha8Rng::seed_from_u64(11);
        let mut plain = ahead.clone();
        // Start off a block boundary, as a stream drawn from before does.
        ahead.next_u32();
        plain.next_u32();
        assert_eq!(with_keystream_ahead(&mut ahead, reads), reads(&mut plain));
        assert_eq!(ahead.get_word_pos(), plain.get_word_pos());
        assert_eq!(ahead.next_u64(), plain.next_u64());
    }

    #[test]
    fn without_chunks_the_replay_generates_the_same_words_itself() {
        let plain = ChaCha8Rng::seed_from_u64(3);
        let (chunks, received) = mpsc::sync_channel(1);
        chunks.send((0..5).map(|_| 0).collect()).unwrap();
        drop(chunks);
        let mut start = plain.clone();
        let first: Vec<u32> = (0..5).map(|_| start.next_u32()).collect();
        let mut replay = Replay {
            chunks: received,
            chunk: Vec::new(),
            at: 0,
            before: 0,
            start: plain.get_word_pos(),
            alone: None,
            generator: plain.clone(),
        };
        // The five words sent are zeros, not the stream's: the replay takes what it is sent,
        // then continues the stream from the sixth word.
        let got: Vec<u32> = (0..12).map(|_| replay.next_u32()).collect();
        assert_eq!(got[..5], [0; 5]);
        let want: Vec<u32> = (0..7).map(|_| start.next_u32()).collect();
        assert_eq!(got[5..], want[..]);
        assert_ne!(first, [0; 5]);
    }
}
