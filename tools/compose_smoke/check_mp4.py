"""Decodes every frame of an MP4 with FFmpeg (PyAV) and checks it is the video that was asked for:
one H.264 stream of the expected size, frame rate and frame count, each frame decoded.

    check_mp4.py FILE --width W --height H --frames N --fps F
"""

import argparse
import sys

import av


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--frames", type=int, required=True)
    parser.add_argument("--fps", type=float, required=True)
    args = parser.parse_args()

    try:
        container = av.open(args.file)
    except av.FFmpegError as e:
        print(f"{args.file}: not a readable video: {e}", file=sys.stderr)
        return 1
    with container:
        streams = container.streams.video
        if len(streams) != 1:
            print(f"{args.file}: {len(streams)} video streams, expected 1", file=sys.stderr)
            return 1
        stream = streams[0]
        decoded = [(f.width, f.height) for f in container.decode(stream)]
    found = {
        "codec": stream.codec_context.name,
        "width": stream.width,
        "height": stream.height,
        "fps": float(stream.average_rate or 0),
        "frames decoded": len(decoded),
        "decoded sizes": sorted(set(decoded)),
    }
    expected = {
        "codec": "h264",
        "width": args.width,
        "height": args.height,
        "fps": args.fps,
        "frames decoded": args.frames,
        "decoded sizes": [(args.width, args.height)],
    }
    wrong = [f"{k}: {found[k]} (expected {v})" for k, v in expected.items() if found[k] != v]
    if wrong:
        print(f"{args.file}: " + "; ".join(wrong), file=sys.stderr)
        return 1
    print(f"{args.file}: h264 {args.width}x{args.height} {args.fps:g} fps, {args.frames} frames decoded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
