"""PNG encoding of real cut-outs: the engine's encoder against Pillow's, time and size.

    python benchmarks/png.py [--photos DIR (../shared/bench/photos)] [--repeat N (3)]

For every photo: its full-size ``high`` cut-out (local engine) rendered once, then encoded by
Pillow (adaptive filtering per row, zlib level 3, run-length: the engine's setting before) and
by the engine's ``encode_png`` (libpng, one Paeth filter, level 2, run-length), each the best of
N; prints per photo seconds and bytes, the totals and the size change. Both are lossless; the
benchmark checks that each decodes to the same pixels.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = ROOT.parent / "shared" / "bench" / "photos"


def best_of(repeat: int, fn, *args, **kwargs) -> tuple[object, float]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return value, best


def pillow_png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=3, compress_type=zlib.Z_RLE)
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--repeat", type=int, default=3, help="encodes per photo (best taken)")
    args = parser.parse_args()
    photos = sorted(p for p in args.photos.glob("*") if p.suffix.lower() in {".jpg", ".png"})
    if not photos:
        print(f"no photos in {args.photos} (pass --photos)", file=sys.stderr)
        return 2

    import numpy as np
    from PIL import Image

    from bgcut_nb import Variant
    from bgcut_nb.engine.imaging import decode_image
    from bgcut_nb.engine.pipeline import LocalEngine
    from bgcut_nb.engine.render import encode_png, render_image

    engine = LocalEngine()
    variant = Variant("full", format="png", quality="high")
    totals = {"pillow_s": 0.0, "engine_s": 0.0, "pillow_b": 0, "engine_b": 0}
    print("| photo | size | Pillow s | engine s | Pillow MB | engine MB | bytes |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for photo in photos:
        image = decode_image(photo.read_bytes())
        pixels = render_image(engine.cutout(image, "high"), variant)
        old, old_s = best_of(args.repeat, pillow_png, pixels)
        new, new_s = best_of(args.repeat, encode_png, pixels)
        for data in (old, new):
            if not np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(pixels)):
                print(f"{photo.name}: PNG does not decode to the rendered pixels", file=sys.stderr)
                return 1
        totals["pillow_s"] += old_s
        totals["engine_s"] += new_s
        totals["pillow_b"] += len(old)
        totals["engine_b"] += len(new)
        print(
            f"| {photo.name} | {pixels.width}x{pixels.height} | {old_s:.3f} | {new_s:.3f} | "
            f"{len(old) / 1e6:.2f} | {len(new) / 1e6:.2f} | {len(new) / len(old) - 1:+.1%} |"
        )
    print(
        f"| **all {len(photos)}** | | **{totals['pillow_s']:.2f}** | **{totals['engine_s']:.2f}** "
        f"| **{totals['pillow_b'] / 1e6:.2f}** | **{totals['engine_b'] / 1e6:.2f}** | "
        f"**{totals['engine_b'] / totals['pillow_b'] - 1:+.2%}** |"
    )
    print(
        f"\nengine encoder: {totals['pillow_s'] / totals['engine_s']:.2f}x faster in total, "
        f"{totals['engine_b'] / totals['pillow_b'] - 1:+.2%} bytes; both lossless"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
