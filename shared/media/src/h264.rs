//! H.264 encoding cut at IDR pictures into segments, each encoded by its own OpenH264 encoder on
//! its own thread, so that a video encodes on as many cores as it has segments.
//!
//! OpenH264 encodes a picture on one core. Its own threading cuts pictures into slices, on at most
//! four threads (`MAX_THREADS_NUM`) and at a cost in bits: at 832×480 on 2 cores, 1.5× the speed
//! for 1.10× the size. Cut at IDR pictures instead, the segments' streams concatenate into one
//! conforming stream, on as many cores as there are segments:
//!
//! - Every segment's first picture is an IDR picture, where frame numbers and picture order
//!   counts restart, so no picture refers across a cut.
//! - Each IDR picture carries SPS and PPS, and the MP4 track has room for one set. They depend on
//!   the settings and the frame size only (the level from size, rate and bitrate; the ids are
//!   constant under `SpsPpsStrategy::ConstantId`), which every segment shares; segments whose
//!   sets differ from the first segment's are refused rather than muxed.
//! - Two IDR pictures in a row need different `idr_pic_id`s (H.264 7.4.3), and the encoders of
//!   different segments number their first IDR pictures alike. A segment's only IDR picture is its
//!   first (no periodic ones, no scene-change ones), and segments are two frames or more, so IDR
//!   pictures are never adjacent.
//!
//! Rate control restarts with each encoder, and a fresh one overspends on its first pictures: at
//! 832×480 under noise, 97 KB for the IDR picture and 78 and 23 KB for the next two, where a
//! running encoder spends 48 and 7 KB. So every segment but the first warms its encoder up on the
//! [`WARM_UP_FRAMES`] frames before its cut (the last segment of a clip of known length: before
//! the cut ahead of it, see below), discards that output and forces the IDR picture at the cut:
//! 52.7 and 7.2 KB, as the single encoder spends there. The warm-up frames reach the next
//! segment's encoder while the current one encodes them, so the warm-up overlaps the segment
//! before. The output depends on the frames and the settings only, not on how many segments were
//! encoded at once.
//!
//! Frames arrive faster than one encoder takes them, so a clip is complete about one segment's
//! encoding after its last long segment starts. When the clip's length is known in advance, its
//! last stretch is cut differently, halving ([`Cuts`]): 81 frames cut every 16 end in segments of
//! 9, 4, 2 and 2 frames from frame 64 instead of 16 and 1, and their encoders finish soon after
//! the last frame arrives (at 832×480 under noise, 27 ms a frame on the H100 host at OpenH264's
//! medium complexity: the MP4's finish after the last frame 0.25 → 0.18 s,
//! bench/results/2026-11-27-e2e.md; the writer now encodes at low complexity, 15–19 ms a frame
//! in OpenH264's C fallback and ~4 ms with its x86 assembly,
//! bench/results/2026-11-29-encoder-asm.md). The last two segments are halves of the last 4 to 7
//! frames, which the VAE hands over together, so that two encoders share them; the last one warms
//! up on the frames before the cut ahead of it (the frames just before its own cut arrive with
//! its first), so that it starts on its first frame as soon as that arrives: the MP4's finish
//! after the last frame 37–44 → 21–23 ms on the H200 host for one more IDR picture (+2.9 % bytes
//! under noise, bench/results/2026-11-30-noise-tail.md).
//! The extra IDR pictures are all in that stretch.

use std::collections::VecDeque;
use std::num::{NonZeroU64, NonZeroUsize};
use std::ops::Range;
use std::os::raw::c_int;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{self, JoinHandle};

use openh264::OpenH264API;
use openh264::encoder::{EncodedBitStream, Encoder, EncoderConfig, FrameType, IntraFramePeriod};

use crate::error::{Error, Result};
use crate::rgb::Yuv420;

/// Frames a segment's queue holds before [`SegmentedEncoder::push`] waits for its encoder: one
/// second of Wan video, more than an encoder falls behind while the VAE hands over a segment
/// (4 frames per chunk, faster than one encoder takes them at 480p).
const QUEUED_FRAMES: usize = 16;

/// Frames before a cut that the next segment's encoder encodes and discards: one IDR and one P
/// picture, after which its rate control spends what a running encoder's would (one frame was
/// not enough: 56 and 30 KB for the first two pictures above). Segments are at least this long.
const WARM_UP_FRAMES: u64 = 2;

/// The shortest segment the last interval is halved into before its last segment is: shorter ones
/// would spend an IDR picture (7× a P picture under noise) on less than a quarter second of video.
const MIN_TAIL_SEGMENT: u64 = 4;

/// Where segments start: every `len` frames and, for a clip whose length is known, differently in
/// its last stretch — the frames after the last regular cut that leaves at least `len` (`len` to
/// `2 len − 1` frames), or the whole clip when it is shorter than `2 len` — which is halved while
/// both halves stay [`MIN_TAIL_SEGMENT`] frames or longer, and whose last segment (4 to 7 frames)
/// is halved once more where a warm-up fits before the cut ahead of it. A clip of 81 frames cut
/// every 16 is [0, 16, 32, 48, 64, 73, 77, 79] rather than [0, 16, 32, 48, 64, 80].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Cuts {
    len: NonZeroU64,
    /// Where the last stretch starts (`u64::MAX` for an unknown length): regular cuts apply up to
    /// it, `tail` after it.
    tail_start: u64,
    /// Cuts inside the last stretch, ascending.
    tail: Vec<u64>,
    /// The cut halving the last segment, and where its warm-up starts: with the warm-up of the cut
    /// ahead of it, whose frames arrive before that cut's, not with the frames just before it.
    early: Option<(u64, u64)>,
}

impl Cuts {
    pub fn new(len: NonZeroU64, frames: Option<u64>) -> Self {
        let Some(frames) = frames else {
            return Self {
                len,
                tail_start: u64::MAX,
                tail: Vec::new(),
                early: None,
            };
        };
        let tail_start = (frames / len.get()).saturating_sub(1) * len.get();
        let (mut start, mut left) = (tail_start, frames - tail_start);
        let mut tail = Vec::new();
        while left >= 2 * MIN_TAIL_SEGMENT {
            let first = left.div_ceil(2);
            start += first;
            left -= first;
            tail.push(start);
        }
        let early = (start >= WARM_UP_FRAMES && left >= 2 * WARM_UP_FRAMES).then(|| {
            let cut = start + left.div_ceil(2);
            tail.push(cut);
            (cut, start - WARM_UP_FRAMES)
        });
        Self {
            len,
            tail_start,
            tail,
            early,
        }
    }

    /// Whether a segment starts at `frame` (> 0).
    fn at(&self, frame: u64) -> bool {
        if frame <= self.tail_start {
            frame.is_multiple_of(self.len.get())
        } else {
            self.tail.binary_search(&frame).is_ok()
        }
    }

    /// The cuts whose segments start warming up at `frame`, ascending: the cut [`WARM_UP_FRAMES`]
    /// frames on, and the last segment's early one.
    fn warming_at(&self, frame: u64) -> impl Iterator<Item = u64> {
        let early = self.early.map(|(cut, _)| cut);
        let regular =
            Some(frame + WARM_UP_FRAMES).filter(|&cut| self.at(cut) && Some(cut) != early);
        let early = self
            .early
            .filter(|&(_, start)| start == frame)
            .map(|(cut, _)| cut);
        regular.into_iter().chain(early)
    }
}

/// One encoded picture: Annex B NAL units.
pub(crate) struct EncodedFrame {
    pub annexb: Vec<u8>,
    /// An IDR picture, where decoding can start.
    pub idr: bool,
}

/// Encodes frames pushed in display order on background threads and hands them back in that
/// order as their segments complete.
///
/// At most `max_segments` segments are in flight, plus the next one warming up, each holding at
/// most [`QUEUED_FRAMES`] frames waiting; a push that would exceed either waits for the oldest
/// segment. Dropping the encoder stops its threads at their next frame.
pub(crate) struct SegmentedEncoder {
    config: EncoderConfig,
    /// Where segments start, at least [`WARM_UP_FRAMES`] frames apart; `None` encodes everything
    /// with one encoder.
    cuts: Option<Cuts>,
    /// The clip's length, when the caller declared it: frames past it are refused.
    frames: Option<u64>,
    max_segments: NonZeroUsize,
    /// The newest segment's queue; replacing it lets that segment's thread run to its end.
    feed: SyncSender<Yuv420>,
    /// The next segments, from their warm-up until their first frame, by first frame.
    next: VecDeque<Warming>,
    in_flight: InFlight,
    queued: u64,
    stop: StopOnDrop,
}

impl SegmentedEncoder {
    /// Starts the first segment's encoder, so that bad settings fail here.
    pub fn new(
        config: EncoderConfig,
        cuts: Option<Cuts>,
        frames: Option<u64>,
        max_segments: NonZeroUsize,
    ) -> Result<Self> {
        debug_assert!(cuts.as_ref().is_none_or(|c| c.len.get() >= WARM_UP_FRAMES));
        // The cuts place every IDR picture of a segmented stream.
        let config = match cuts {
            Some(_) => config
                .intra_frame_period(IntraFramePeriod::from_num_frames(0))
                .scene_change_detect(false),
            None => config,
        };
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let (segment, feed) = Segment::start(0, 0..0, config, &stop.0)?;
        Ok(Self {
            config,
            cuts,
            frames,
            max_segments,
            feed,
            next: VecDeque::new(),
            in_flight: InFlight {
                segments: VecDeque::from([segment]),
                parameter_sets: None,
            },
            queued: 0,
            stop,
        })
    }

    /// Queues the next frame and returns the frames whose encoding completed since the last
    /// call, in order (often none). An error from any segment surfaces here or from
    /// [`finish`](Self::finish).
    pub fn push(&mut self, picture: Yuv420) -> Result<Vec<EncodedFrame>> {
        let frame = self.queued;
        if let Some(declared) = self.frames.filter(|&n| frame >= n) {
            return Err(Error::TooManyFrames { declared });
        }
        let mut ready = Vec::new();
        if let Some(next) = self
            .next
            .pop_front_if(|next| next.segment.first_frame == frame)
        {
            self.in_flight.segments.push_back(next.segment);
            // Closes the previous segment's queue first, so that joining it below can end.
            self.feed = next.feed;
            if self.in_flight.segments.len() > self.max_segments.get() {
                self.in_flight.join_front(&mut ready)?;
            }
        }
        for cut in self.cuts.iter().flat_map(|cuts| cuts.warming_at(frame)) {
            let warm_up = frame..frame + WARM_UP_FRAMES;
            let (segment, feed) = Segment::start(cut, warm_up.clone(), self.config, &self.stop.0)?;
            self.next.push_back(Warming {
                segment,
                feed,
                warm_up,
            });
        }
        for next in self
            .next
            .iter()
            .filter(|next| next.warm_up.contains(&frame))
        {
            // A warm-up that failed shows when the segment's first frame finds its queue closed.
            let _ = next.feed.send(picture.clone());
        }
        if self.feed.send(picture).is_err() {
            // The newest segment's thread let go of its queue early, which it does on an error
            // only; the error of the earliest failing frame is the one to report.
            return Err(self.in_flight.first_error());
        }
        self.queued += 1;
        self.in_flight.join_finished(&mut ready)?;
        Ok(ready)
    }

    /// Waits for every segment and returns the frames not yet handed back, in order.
    pub fn finish(self) -> Result<Vec<EncodedFrame>> {
        let Self {
            feed,
            next,
            mut in_flight,
            stop,
            ..
        } = self;
        // Closing the newest queue lets its thread end; the stop flag waits for the last join. A
        // segment still warming up has no frames of its own.
        drop((feed, next));
        let mut ready = Vec::new();
        while !in_flight.segments.is_empty() {
            in_flight.join_front(&mut ready)?;
        }
        drop(stop);
        Ok(ready)
    }
}

/// A segment started before its first frame, and the frames it warms up on.
struct Warming {
    segment: Segment,
    feed: SyncSender<Yuv420>,
    warm_up: Range<u64>,
}

/// Segments started and not yet joined, oldest first.
struct InFlight {
    segments: VecDeque<Segment>,
    /// The first segment's SPS and PPS.
    parameter_sets: Option<Vec<u8>>,
}

impl InFlight {
    /// Joins the oldest segments while their threads have ended.
    fn join_finished(&mut self, ready: &mut Vec<EncodedFrame>) -> Result<()> {
        while self
            .segments
            .front()
            .is_some_and(|segment| segment.thread.is_finished())
        {
            self.join_front(ready)?;
        }
        Ok(())
    }

    fn join_front(&mut self, ready: &mut Vec<EncodedFrame>) -> Result<()> {
        let Some(segment) = self.segments.pop_front() else {
            return Ok(());
        };
        let first_frame = segment.first_frame;
        let encoded = segment.join()?;
        match &self.parameter_sets {
            None => self.parameter_sets = Some(encoded.parameter_sets),
            Some(first) if *first == encoded.parameter_sets => {}
            Some(_) => return Err(Error::ParameterSetsDiffer { frame: first_frame }),
        }
        ready.extend(encoded.frames);
        Ok(())
    }

    /// Joins every segment in order and returns the first error.
    fn first_error(&mut self) -> Error {
        let mut discard = Vec::new();
        let mut first_frame = 0;
        while let Some(segment) = self.segments.front() {
            first_frame = segment.first_frame;
            if let Err(error) = self.join_front(&mut discard) {
                return error;
            }
        }
        Error::EncoderThread {
            first_frame,
            reason: "it stopped taking frames without an error".into(),
        }
    }
}

/// A segment's encoder thread, which encodes the frames of its queue until the queue closes.
struct Segment {
    first_frame: u64,
    thread: JoinHandle<Result<Encoded>>,
}

/// What a segment's thread hands back.
struct Encoded {
    /// SPS and PPS ahead of the first picture.
    parameter_sets: Vec<u8>,
    frames: Vec<EncodedFrame>,
}

impl Segment {
    /// A fresh encoder on a new thread, and the sending end of its queue, which takes the
    /// `warm_up` frames (before `first_frame`) first.
    fn start(
        first_frame: u64,
        warm_up: Range<u64>,
        config: EncoderConfig,
        stop: &Arc<AtomicBool>,
    ) -> Result<(Self, SyncSender<Yuv420>)> {
        let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), config)?;
        quiet_warnings(&mut encoder)?;
        let (feed, queue) = sync_channel(QUEUED_FRAMES);
        let stop = Arc::clone(stop);
        let thread = thread::Builder::new()
            .name(format!("h264-{first_frame}"))
            .spawn(move || encode_segment(encoder, first_frame, warm_up, &queue, &stop))?;
        Ok((
            Self {
                first_frame,
                thread,
            },
            feed,
        ))
    }

    fn join(self) -> Result<Encoded> {
        self.thread.join().map_err(|panic| {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "it panicked".into());
            Error::EncoderThread {
                first_frame: self.first_frame,
                reason,
            }
        })?
    }
}

fn encode_segment(
    mut encoder: Encoder,
    first_frame: u64,
    warm_up: Range<u64>,
    queue: &Receiver<Yuv420>,
    stop: &AtomicBool,
) -> Result<Encoded> {
    let mut encoded = Encoded {
        parameter_sets: Vec::new(),
        frames: Vec::new(),
    };
    let frames = warm_up.clone().chain(first_frame..);
    for (frame, picture) in frames.zip(queue) {
        // Nobody will read the result of a dropped writer; its frames are not worth the cores.
        if stop.load(Ordering::Relaxed) {
            return Err(Error::EncoderThread {
                first_frame,
                reason: "stopped with its writer".into(),
            });
        }
        if warm_up.contains(&frame) {
            encoder
                .encode(&picture)
                .map_err(|source| Error::EncodeFrame { frame, source })?;
            if frame + 1 == warm_up.end {
                encoder.force_intra_frame();
            }
            continue;
        }
        let bitstream = encoder
            .encode(&picture)
            .map_err(|source| Error::EncodeFrame { frame, source })?;
        let frame_type = bitstream.frame_type();
        let mut annexb = Vec::new();
        bitstream.write_vec(&mut annexb);
        if annexb.is_empty() {
            return Err(Error::EmptyFrame { frame, frame_type });
        }
        if frame == first_frame {
            encoded.parameter_sets = parameter_sets(&bitstream);
        }
        // Only IDR frames are sync samples: a non-IDR I frame does not stop later frames from
        // referencing pictures before it.
        encoded.frames.push(EncodedFrame {
            annexb,
            idr: frame_type == FrameType::IDR,
        });
    }
    Ok(encoded)
}

/// The NAL units of the bitstream's non-VCL layers: OpenH264 writes SPS and PPS in a layer of
/// their own ahead of an IDR picture's slices.
fn parameter_sets(bitstream: &EncodedBitStream<'_>) -> Vec<u8> {
    let mut sets = Vec::new();
    for layer in (0..bitstream.num_layers()).filter_map(|i| bitstream.layer(i)) {
        if !layer.is_video() {
            for nal in (0..layer.nal_count()).filter_map(|i| layer.nal_unit(i)) {
                sets.extend_from_slice(nal);
            }
        }
    }
    sets
}

/// Sets its flag when the encoder is dropped, finished or not.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// OpenH264 logs to stderr at warning level until it is initialised, which happens at the first
/// frame, and it warns there that the bitrate is soft without frame skipping: deliberate here.
/// Errors still print, since the returned error codes alone do not say what was wrong; after
/// initialisation the `openh264` crate silences the log entirely.
fn quiet_warnings(encoder: &mut Encoder) -> Result<()> {
    let mut level: c_int = openh264_sys2::WELS_LOG_ERROR;
    // SAFETY: the trace level is not an encoding parameter the crate relies on (`raw_api`'s
    // contract), it is one of the options OpenH264 accepts before initialisation
    // (`CWelsH264SVCEncoder::SetOption`), and OpenH264 reads one int through the pointer during
    // the call.
    let rc = unsafe {
        encoder.raw_api().set_option(
            openh264_sys2::ENCODER_OPTION_TRACE_LEVEL,
            (&raw mut level).cast(),
        )
    };
    if rc != 0 {
        let msg = format!("setting the trace level failed with code {rc}");
        return Err(openh264::Error::msg_string(msg).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rgb::FrameChunk;

    fn gray(width: usize, height: usize) -> Yuv420 {
        let data = vec![0.1; 3 * width * height];
        let chunk = FrameChunk::new(&data, [3, 1, height, width]).unwrap();
        chunk.frame(0).unwrap().to_yuv420().unwrap()
    }

    /// The segments' first frames for a clip of `frames` cut every `len`.
    fn starts(len: u64, frames: Option<u64>) -> Vec<u64> {
        let cuts = Cuts::new(NonZeroU64::new(len).unwrap(), frames);
        let end = frames.unwrap_or(100);
        std::iter::once(0)
            .chain((1..end).filter(|&f| cuts.at(f)))
            .collect()
    }

    #[test]
    fn a_known_length_halves_the_last_interval() {
        assert_eq!(starts(16, Some(81)), [0, 16, 32, 48, 64, 73, 77, 79]);
        assert_eq!(starts(16, Some(80)), [0, 16, 32, 48, 64, 72, 76, 78]);
        assert_eq!(starts(16, Some(71)), [0, 16, 32, 48, 60, 66, 69]);
        assert_eq!(starts(16, Some(33)), [0, 16, 25, 29, 31]);
        assert_eq!(starts(16, Some(9)), [0, 5, 7]);
        // Too short to cut in two segments of 4, and no warm-up fits before frame 0.
        assert_eq!(starts(16, Some(7)), [0]);
        assert_eq!(starts(32, Some(81)), [0, 32, 57, 69, 75, 78]);
        // Unknown length: every `len` frames, as before.
        assert_eq!(starts(16, None), [0, 16, 32, 48, 64, 80, 96]);
    }

    #[test]
    fn the_last_segment_warms_up_with_the_one_before() {
        let cuts = Cuts::new(NonZeroU64::new(16).unwrap(), Some(81));
        let warming: Vec<(u64, Vec<u64>)> = (0..81)
            .map(|frame| (frame, cuts.warming_at(frame).collect::<Vec<_>>()))
            .filter(|(_, cuts)| !cuts.is_empty())
            .collect();
        assert_eq!(
            warming,
            [
                (14, vec![16]),
                (30, vec![32]),
                (46, vec![48]),
                (62, vec![64]),
                (71, vec![73]),
                (75, vec![77, 79]),
            ]
        );
        let unknown = Cuts::new(NonZeroU64::new(16).unwrap(), None);
        assert!((0..100).all(|f| {
            unknown
                .warming_at(f)
                .eq((f + 2).is_multiple_of(16).then_some(f + 2))
        }));
    }

    #[test]
    fn every_segment_of_a_known_length_is_long_enough() {
        for len in [2, 3, 4, 7, 8, 16, 32] {
            for frames in 1..200 {
                let starts = starts(len, Some(frames));
                let ends: Vec<u64> = starts.iter().skip(1).copied().chain([frames]).collect();
                let tail = (frames / len).saturating_sub(1) * len;
                for (i, (start, end)) in
                    starts.iter().copied().zip(ends.iter().copied()).enumerate()
                {
                    // Regular segments up to the last stretch, then halves of at least
                    // MIN_TAIL_SEGMENT but the last two, which are at least WARM_UP_FRAMES, or
                    // the stretch whole when it is too short to halve.
                    let regular = start < tail;
                    let last_two = i + 2 >= starts.len();
                    let least = match (regular, last_two) {
                        (true, _) => len,
                        (false, false) => MIN_TAIL_SEGMENT,
                        (false, true) => WARM_UP_FRAMES,
                    };
                    assert!(
                        end - start >= least || (start == tail && end == frames),
                        "len {len}, {frames} frames: segment {start}..{end} of {starts:?}"
                    );
                    assert!(
                        !regular || start.is_multiple_of(len),
                        "len {len}, {frames} frames"
                    );
                }
            }
        }
    }

    #[test]
    fn an_encoder_error_in_a_later_segment_names_its_frame() {
        let config = EncoderConfig::new().skip_frames(false);
        let mut encoder = SegmentedEncoder::new(
            config,
            NonZeroU64::new(4).map(|len| Cuts::new(len, None)),
            None,
            NonZeroUsize::new(2).unwrap(),
        )
        .unwrap();
        // OpenH264 refuses pictures under 16 pixels a side, here the second of the third segment.
        let picture = |frame| if frame == 9 { gray(8, 8) } else { gray(64, 48) };
        let error = match (0..16).try_for_each(|frame| encoder.push(picture(frame)).map(drop)) {
            Err(error) => error,
            Ok(()) => encoder.finish().err().expect("frame 9 fails"),
        };
        assert!(
            matches!(error, Error::EncodeFrame { frame: 9, .. }),
            "{error}"
        );
    }
}
