"""pandas vs a dask.distributed LocalCluster on the local engine: wall times and their ratio.

    python benchmarks/dask_cluster.py [--photos 40] [--source DIR] [--quality medium] [--workers 2]
        [--partitions 8] [--partition-workers 1]

Makes ``--photos`` distinct photos (from ``../shared/bench/photos``, scaled to at most 640 px,
mirrored and shifted where a source is used twice; generated when that folder is absent), then
cuts them out into the spec's three variants at ``--quality`` with the local engine, on fresh
storage and without the reuse cache:

1. ``df.bgcut.process`` in this process (default workers: 2 threads);
2. ``ddf.bgcut.process`` on a ``LocalCluster`` of ``--workers`` processes with one thread each,
   ``--partitions`` partitions, each partition running ``--partition-workers`` rows at once.

Both have their model loaded before the clock starts (cluster start-up and model loading are
printed separately). Needs the ``dask`` extra.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "bench" / "photos"


def make_photos(folder: Path, count: int, source: Path = SHARED) -> list[Path]:
    """``count`` distinct photos, at most 640 px on the long side."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(source.glob("*")) if source.is_dir() else []
    if not sources:
        return _batch_script().make_photos(folder, count, (480, 360))
    paths = []
    for i in range(count):
        with Image.open(sources[i % len(sources)]) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            img.thumbnail((640, 640))
            round_ = i // len(sources)
            if round_ % 2:
                img = ImageOps.mirror(img)
            if round_:
                img = img.crop((round_ * 4, 0, img.width, img.height))
            path = folder / f"photo{i:03d}.jpg"
            img.save(path, quality=90)
            paths.append(path)
    return paths


def _batch_script():
    """``benchmarks/batch.py`` as a module (loaded by path: the cluster's worker processes do
    not have this folder on ``sys.path``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_batch", Path(__file__).with_name("batch.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def warm(quality: str) -> int:
    """Load the engine (and the quality's model) in this process; returns the pid."""
    from bgcut_nb.notebook.accessor import resolve_backend

    backend = resolve_backend("local")
    image = Image.new("RGB", (64, 48), (200, 30, 30))
    backend.process_image(backend.upload_image(_jpeg(image)).unique_filename, _one(quality))
    return os.getpid()


def _jpeg(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


def _one(quality: str) -> list[dict]:
    return [{"variant_name": "warm", "quality": quality, "max_resolution": 4000}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--source", type=Path, default=SHARED, help="photos to start from")
    parser.add_argument("--quality", default="medium", choices=("low", "medium", "high"))
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--partition-workers", type=int, default=1, help="rows per partition")
    args = parser.parse_args()

    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster

    import bgcut_nb  # noqa: F401 - registers df.bgcut
    import bgcut_nb.notebook.dask_accessor  # noqa: F401 - registers ddf.bgcut

    chosen = _batch_script().variants(args.quality)
    with tempfile.TemporaryDirectory(prefix="bgcut-dask-bench-") as tmp:
        root = Path(tmp)
        os.environ["BGCUT_CACHE_DIR"] = str(root / "cache")  # workers inherit it
        os.environ.pop("BGCUT_API_KEY", None)
        photos = make_photos(root / "photos", args.photos, args.source)
        df = pd.DataFrame({"path": [str(p) for p in photos]})
        sizes = [Image.open(p).size for p in photos[:3]]
        print(f"{len(photos)} photos (e.g. {sizes}), quality {args.quality}", file=sys.stderr)

        start = time.perf_counter()
        warm(args.quality)
        pandas_warm = time.perf_counter() - start
        start = time.perf_counter()
        out = df.bgcut.process(
            chosen, backend="local", out_dir=root / "pandas", cache=False, progress=False
        )
        pandas_s = time.perf_counter() - start
        assert (out["bgcut_error"] == "").all(), out["bgcut_error"].iloc[0]
        print(f"  pandas: {pandas_s:.1f} s", file=sys.stderr)

        start = time.perf_counter()
        with (
            LocalCluster(
                n_workers=args.workers,
                processes=True,
                threads_per_worker=1,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            cluster_s = time.perf_counter() - start
            start = time.perf_counter()
            pids = client.run(warm, args.quality)
            dask_warm = time.perf_counter() - start
            ddf = dd.from_pandas(df, npartitions=args.partitions, sort=False)
            start = time.perf_counter()
            result = ddf.bgcut.process(
                chosen,
                image_col="path",
                backend="local",
                out_dir=root / "dask",
                cache=False,
                max_workers=args.partition_workers,
            ).compute()
            dask_s = time.perf_counter() - start
        assert (result["bgcut_error"] == "").all(), result["bgcut_error"].iloc[0]
        print(f"  dask: {dask_s:.1f} s on {len(set(pids.values()))} workers", file=sys.stderr)

    print()
    print(
        f"{len(photos)} photos (at most 640 px) x {len(chosen)} variants at quality "
        f"{args.quality}, local engine, {os.cpu_count()} CPUs; models loaded before timing "
        f"(pandas {pandas_warm:.1f} s; cluster start {cluster_s:.1f} s, workers' models "
        f"{dask_warm:.1f} s)."
    )
    print()
    print("| run | wall time | photos / s | vs pandas |")
    print("| --- | ---: | ---: | ---: |")
    print(
        f"| `df.bgcut.process` (2 threads, one process) | {pandas_s:.1f} s | "
        f"{len(photos) / pandas_s:.2f} | 1.00x |"
    )
    print(
        f"| `ddf.bgcut.process`, LocalCluster({args.workers} processes x 1 thread), "
        f"{args.partitions} partitions, {args.partition_workers} row(s) at once each | "
        f"{dask_s:.1f} s | {len(photos) / dask_s:.2f} | {pandas_s / dask_s:.2f}x |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
