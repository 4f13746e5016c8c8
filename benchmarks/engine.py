"""Local engine timings for one large photo and the spec's three example variants.

    python benchmarks/engine.py [--image PATH] [--repeat N (5)]

Prints the time of each stage (decode, segmentation per quality tier, each variant's render and
encode), the total, peak memory, and the ratio (median of N runs) of one 3-variant call to three
1-variant calls on fresh uploads (what sharing work inside one call saves), for the spec's
variants (qualities high, medium, high: one u2net pass, two mattes) and for the same variants all
at one tier. The engine's per-image memo of model passes is cleared before every timed call, so
each of the three 1-variant calls pays its own model pass, as separate calls on a cold engine
(or on three server processes) do.
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
import zlib
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared" / "bench" / "photos" / "bike.jpg"


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--repeat", type=int, default=5, help="repeats of the ratio measurement")
    args = parser.parse_args()
    if not args.image.is_file():
        print(f"no such image: {args.image} (pass --image)", file=sys.stderr)
        return 2

    import imagecodecs
    import numpy as np

    from bgcut_nb.backends.local import LocalBackend
    from bgcut_nb.contract.variants import SPEC_EXAMPLE_VARIANTS
    from bgcut_nb.engine.imaging import decode_image
    from bgcut_nb.engine.pipeline import LocalEngine
    from bgcut_nb.engine.render import (
        PNG_FILTER,
        PNG_ZLIB_LEVEL,
        PNG_ZLIB_STRATEGY,
        encode_image,
        render_image,
    )

    engine = LocalEngine()
    data = args.image.read_bytes()
    qualities = sorted({v.quality for v in SPEC_EXAMPLE_VARIANTS})
    for quality in qualities:  # load models and warm up outside the timings
        engine.cutout(decode_image(data).reduce(8), quality)

    tracemalloc.start()
    rows: list[tuple[str, float]] = []
    total_start = time.perf_counter()
    image, seconds = timed(decode_image, data)
    rows.append((f"decode {args.image.name} ({image.width}x{image.height})", seconds))
    cutouts = {}
    engine.matting.clear_memo()
    passes_run: set[str] = set()
    for quality in qualities:
        cutouts[quality], seconds = timed(engine.cutout, image, quality)
        model = engine.matting.model_for(quality)
        shared = f", reuses the {model} pass" if model in passes_run else f", {model} pass"
        passes_run.add(model)
        rows.append((f"segmentation, quality={quality}{shared}", seconds))
    for variant in SPEC_EXAMPLE_VARIANTS:
        pixels, seconds = timed(render_image, cutouts[variant.quality], variant)
        rows.append((f"render {variant.variant_name} ({pixels.width}x{pixels.height})", seconds))
        encoded, seconds = timed(encode_image, pixels, variant)
        rows.append((f"encode {variant.variant_name} ({len(encoded) / 1e6:.2f} MB)", seconds))
    total = time.perf_counter() - total_start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print("| stage | seconds |\n| --- | ---: |")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.3f} |")
    print(f"| **total** | **{total:.3f}** |")
    print(f"\npeak traced Python/numpy memory: {traced_peak / 2**20:.0f} MiB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory (ru_maxrss): {rss:.0f} MiB")

    full = next(v for v in SPEC_EXAMPLE_VARIANTS if v.format == "png")
    pixels = render_image(cutouts[full.quality], full)
    libpng = imagecodecs.PNG
    used = (PNG_FILTER, PNG_ZLIB_LEVEL, PNG_ZLIB_STRATEGY)
    print(
        f"\nPNG encoders for {full.variant_name} ({pixels.width}x{pixels.height}): Pillow filters"
        " every row adaptively; libpng (imagecodecs) with one fixed filter; (used): the"
        " engine's setting"
    )
    print("| encoder | filter | zlib level, strategy | seconds | MB |")
    print("| --- | --- | --- | ---: | ---: |")
    strategies = {zlib.Z_DEFAULT_STRATEGY: "default", zlib.Z_RLE: "run-length"}
    for level, strategy in [(6, 0), (1, 0), (3, zlib.Z_RLE), (1, zlib.Z_RLE)]:
        buffer = io.BytesIO()
        _, seconds = timed(pixels.save, buffer, "PNG", compress_level=level, compress_type=strategy)
        setting = f"{level}, {strategies[strategy]}"
        print(f"| Pillow | adaptive | {setting} | {seconds:.2f} | {buffer.tell() / 1e6:.2f} |")
    rgba = np.asarray(pixels)
    for png_filter, level in [
        (libpng.FILTER.SUB, 1),
        (libpng.FILTER.UP, 1),
        (libpng.FILTER.PAETH, 1),
        (libpng.FILTER.PAETH, 2),
        (libpng.FILTER.PAETH, 3),
    ]:
        strategy = libpng.STRATEGY.RLE
        encoded, seconds = timed(
            imagecodecs.png_encode, rgba, level=level, strategy=strategy, filter=png_filter
        )
        mark = " (used)" if (png_filter, level, strategy) == used else ""
        print(
            f"| libpng | {png_filter.name.title()} | {level}, run-length{mark} | {seconds:.2f} | "
            f"{len(encoded) / 1e6:.2f} |"
        )

    same_tier = [replace(v, quality="high") for v in SPEC_EXAMPLE_VARIANTS]
    with tempfile.TemporaryDirectory() as tmp:
        backend = LocalBackend(Path(tmp) / "store", engine=engine)
        for label, variants in [
            ("spec's variants (qualities high, medium, high)", SPEC_EXAMPLE_VARIANTS),
            ("same variants, all quality=high (one matte per call)", same_tier),
        ]:
            ratios, one_calls, three_calls = [], [], []
            for _ in range(args.repeat):
                uid = backend.upload_image(data).unique_filename
                engine.matting.clear_memo()
                one_calls.append(timed(backend.process_image, uid, variants)[1])
                three = 0.0
                for variant in variants:
                    uid = backend.upload_image(data).unique_filename
                    engine.matting.clear_memo()
                    three += timed(backend.process_image, uid, [variant])[1]
                three_calls.append(three)
                ratios.append(one_calls[-1] / three)
            spread = f" (runs: {', '.join(f'{r:.2f}' for r in ratios)})" if len(ratios) > 1 else ""
            print(
                f"\n{label}, median of {args.repeat}:\n  one 3-variant call "
                f"{statistics.median(one_calls):.2f} s; three 1-variant calls on fresh uploads "
                f"{statistics.median(three_calls):.2f} s; ratio "
                f"{statistics.median(ratios):.2f}{spread}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
