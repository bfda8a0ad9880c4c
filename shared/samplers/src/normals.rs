//! Standard normals from a seed's ChaCha8 stream (rand_distr's Ziggurat, narrowed to f32), drawn
//! on several threads with the values one thread draws.
//!
//! The Ziggurat takes a `u64` (two ChaCha8 words) an attempt and more where it rejects (about 1 %
//! of samples), so where a sample starts depends on every sample before it. A thread set down at
//! any word of the stream walks it as if a sample started there: its walk and the true one step
//! through the same words, and once both start a sample at the same word they agree from there
//! on, which they do within a sample or two. So a draw is cut into stretches of the stream, one a
//! thread; each walks its stretch and `OVERLAP` words on into the next, noting where its samples
//! start, and the true values go on into the next stretch's walk at the first start the two
//! share. Where they share none within the overlap (in principle), the true walk goes on through
//! the next stretch on the caller's thread: the values never depend on the threads.

use std::thread;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Draws of fewer values a thread are drawn on fewer threads (a thread's start and the stitching
/// cost about what 2^16 samples take).
const PER_THREAD: usize = 1 << 16;
/// The most threads a draw takes.
const MAX_THREADS: usize = 8;
/// Words a stretch's walk goes on into the next stretch.
const OVERLAP: u128 = 256;

/// `len` standard normals from `rng`, which moves past the words they took.
pub(crate) fn normals(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
    let threads = thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_THREADS)
        .min(len / PER_THREAD);
    if threads <= 1 {
        return (0..len).map(|_| sample(rng)).collect();
    }
    in_stretches(rng, len, threads, OVERLAP)
}

/// rand_distr's f32 normal is documented as a placeholder for a faster algorithm; narrowing its
/// f64 normal ourselves keeps a seed's stream fixed if that ever lands.
fn sample<R: Rng + ?Sized>(rng: &mut R) -> f32 {
    let x: f64 = StandardNormal.sample(rng);
    x as f32
}

/// The samples of a stream as if one started at word `from`, up to the first that would start at
/// or past `until`.
struct Walk {
    from: u128,
    /// Where each sample starts, in words after `from`.
    starts: Vec<u32>,
    values: Vec<f32>,
    /// The word after the last sample.
    end: u128,
}

impl Walk {
    fn new(rng: &ChaCha8Rng, from: u128, until: u128) -> Walk {
        let mut rng = rng.clone();
        rng.set_word_pos(from);
        // About one attempt, two words, a sample.
        let expected = usize::try_from(until.saturating_sub(from) / 2).unwrap_or(0);
        let (mut starts, mut values) = (Vec::with_capacity(expected), Vec::with_capacity(expected));
        loop {
            let at = rng.get_word_pos();
            if at >= until {
                return Walk {
                    from,
                    starts,
                    values,
                    end: at,
                };
            }
            // A stretch is far shorter than 2^32 words (2^32 words are 2^31 samples).
            starts.push((at - from) as u32);
            values.push(sample(&mut rng));
        }
    }

    fn start(&self, i: usize) -> u128 {
        self.from + u128::from(self.starts[i])
    }

    /// The first sample starting at or past `word`.
    fn first_from(&self, word: u128) -> usize {
        self.starts
            .partition_point(|&s| self.from + u128::from(s) < word)
    }

    /// The sample starting at `word`, if one does.
    fn at(&self, word: u128) -> Option<usize> {
        let offset = u32::try_from(word.checked_sub(self.from)?).ok()?;
        self.starts.binary_search(&offset).ok()
    }
}

/// [`normals`] on `threads` stretches, each walked `overlap` words into the next.
fn in_stretches(rng: &mut ChaCha8Rng, len: usize, threads: usize, overlap: u128) -> Vec<f32> {
    let start = rng.get_word_pos();
    let bound = |t: usize| start + 2 * (len * t / threads) as u128;
    // The last stretch runs 5 % long for the rejections' extra words.
    let until = |t: usize| {
        if t + 1 < threads {
            bound(t + 1) + overlap
        } else {
            start + 2 * (len + len / 20) as u128 + overlap
        }
    };
    let seed: &ChaCha8Rng = rng;
    let walks: Vec<Walk> = thread::scope(|scope| {
        let spawned: Vec<_> = (1..threads)
            .map(|t| {
                thread::Builder::new()
                    .name("noise".into())
                    .spawn_scoped(scope, move || Walk::new(seed, bound(t), until(t)))
            })
            .collect();
        let mut walks = vec![Walk::new(seed, start, until(0))];
        for (t, walk) in (1..threads).zip(spawned) {
            walks.push(match walk {
                Ok(walk) => walk
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // Where no thread starts, the stretch is walked here: the same values.
                Err(_) => Walk::new(seed, bound(t), until(t)),
            });
        }
        walks
    });

    let mut out = Vec::with_capacity(len);
    let mut walks = walks.into_iter();
    // The true walk so far, and its first value not yet in `out`.
    let Some(mut walk) = walks.next() else {
        return out;
    };
    let mut from = 0;
    for (t, next) in (1..).zip(walks) {
        let joined = (walk.first_from(bound(t))..walk.values.len())
            .find_map(|i| next.at(walk.start(i)).map(|j| (i, j)));
        match joined {
            Some((i, j)) => {
                out.extend_from_slice(&walk.values[from..i]);
                (walk, from) = (next, j);
            }
            None => {
                out.extend_from_slice(&walk.values[from..]);
                (walk, from) = (Walk::new(seed, walk.end, until(t)), 0);
            }
        }
    }
    // The true samples before the last stretch start before its walk's end, two words or more
    // each: at most len·(threads−1)/threads + overlap/2 of them, fewer than `len`.
    let need = len - out.len();
    let taken = need.min(walk.values.len() - from);
    out.extend_from_slice(&walk.values[from..from + taken]);
    let end = if from + taken < walk.values.len() {
        walk.start(from + taken)
    } else {
        walk.end
    };
    rng.set_word_pos(end);
    out.extend((taken..need).map(|_| sample(rng)));
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn alone(seed: u64, len: usize) -> (Vec<f32>, ChaCha8Rng) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let values = (0..len).map(|_| sample(&mut rng)).collect();
        (values, rng)
    }

    #[test]
    fn stretches_give_one_threads_values_and_leave_the_stream_after_them() {
        // Most stretches start where a true sample does; of seeds 11 and 12's 94 joins, two come
        // one and two samples into the next stretch.
        for (seed, len, threads) in [
            (0, 1 << 17, 2),
            (1, 300_001, 3),
            (7, 1 << 19, 8),
            (9, 70_000, 5),
            (11, 1 << 20, 48),
            (12, 1 << 20, 48),
        ] {
            let (want, mut after) = alone(seed, len);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            assert_eq!(
                in_stretches(&mut rng, len, threads, OVERLAP),
                want,
                "seed {seed}"
            );
            assert_eq!(rng.get_word_pos(), after.get_word_pos(), "seed {seed}");
            assert_eq!(sample(&mut rng), sample(&mut after));
        }
    }

    #[test]
    fn stretches_the_walks_do_not_join_in_are_walked_again() {
        // Without an overlap a walk stops before the next stretch's first sample, so no two walks
        // join and every stretch after the first is walked again on the caller's thread.
        for seed in 0..8 {
            let (want, _) = alone(seed, 100_000);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            assert_eq!(in_stretches(&mut rng, 100_000, 16, 0), want, "seed {seed}");
        }
    }

    #[test]
    fn a_draw_continues_where_an_earlier_one_left_the_stream() {
        let (want, _) = alone(3, 50 + 200_000);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut got: Vec<f32> = (0..50).map(|_| sample(&mut rng)).collect();
        got.extend(in_stretches(&mut rng, 200_000, 4, OVERLAP));
        assert_eq!(got, want);
    }

    #[test]
    fn a_stream_at_an_odd_word_is_walked_as_one_thread_walks_it() {
        // No draw of ours leaves the stream at an odd word (every read is a u64), but a stretch's
        // samples then read words across ChaCha8's blocks, which the walks must do alike.
        let mut one = ChaCha8Rng::seed_from_u64(4);
        one.next_u32();
        let mut rng = one.clone();
        let want: Vec<f32> = (0..150_000).map(|_| sample(&mut one)).collect();
        assert_eq!(in_stretches(&mut rng, 150_000, 3, OVERLAP), want);
        assert_eq!(rng.get_word_pos(), one.get_word_pos());
    }
}
