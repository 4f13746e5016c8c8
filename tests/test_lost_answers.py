"""A charged answer that never reaches the client is served on the re-run, never charged again.

Real server on 127.0.0.1 (:class:`~bgcut_nb.testing.server.ServerThread`), real engine, the
fault proxy losing answers; the ledger's balance is the judge.
"""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from notebook_support import LOW_VARIANTS, local_backend, make_photos
from PIL import Image

from bgcut_nb.backends.remote import RemoteBackend, RetryPolicy
from bgcut_nb.batch.reuse import ReuseCache
from bgcut_nb.batch.runner import run_batch
from bgcut_nb.contract.errors import NotFoundError
from bgcut_nb.contract.wire import PROCESS_PATH
from bgcut_nb.testing.faults import FaultProxy, FaultSpec
from bgcut_nb.testing.server import ServerThread

KEY = "sk-lost-answers-SECRET-51c2"
CREDITS = 1000.0
COST = 2.0  # LOW_VARIANTS: two outputs, one credit each
FAST = RetryPolicy(retries=2, backoff=0.01, backoff_max=0.02)
#: Images per seed in the 50%-faults drill (on the old client every seed charged some twice).
IMAGES = 12

pytestmark = pytest.mark.usefixtures("bgcut_isolated_env")

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "faults.py"
_spec = importlib.util.spec_from_file_location("bgcut_fault_drill_reruns", _PATH)
drill = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = drill
_spec.loader.exec_module(drill)


def serve(tmp_path, engine, **options) -> ServerThread:
    return ServerThread(
        {KEY: CREDITS}, tmp_path / "server", backend=engine, rate_limit=0, **options
    )


def healed(server: ServerThread, port: int) -> FaultProxy:
    """A fault-free proxy on the port a faulty one used: the same API base for the re-run."""
    return FaultProxy(("127.0.0.1", server.port), FaultSpec(rate=0.0), port=port)


def batch(photos, backend, tmp_path, cache):
    return run_batch(
        [(str(p), str(p)) for p in photos],
        LOW_VARIANTS,
        backend=backend,
        out_dir=tmp_path / "out",
        cache=cache,
        progress=False,
    )


def assert_outputs(result) -> None:
    for row in result.rows:
        assert row.status in ("done", "cached"), row.error
        cut = Image.open(row.paths["cut"])
        assert cut.mode == "RGBA" and cut.getchannel("A").getextrema() == (0, 255)
        assert Image.open(row.paths["white"]).format == "JPEG"


def test_answers_lost_on_every_attempt_are_served_on_the_rerun(bgcut_engine, tmp_path):
    photos = make_photos(tmp_path / "photos", 3)
    cache = ReuseCache(tmp_path / "cache")
    with serve(tmp_path, bgcut_engine) as server:
        lose_answers = FaultSpec(rate=1.0, kinds=("reset-after",), paths=(PROCESS_PATH,))
        with FaultProxy(("127.0.0.1", server.port), lose_answers) as proxy:
            lossy = RemoteBackend(KEY, proxy.base_url, retry=FAST)
            first = batch(photos, lossy, tmp_path, cache)
            lossy.close()
        assert [row.status for row in first.rows] == ["failed"] * 3
        assert proxy.stats["reset-after"] >= 3
        # the server did the work and charged for it once per row, though no answer came back
        assert server.credits(KEY) == CREDITS - 3 * COST

        # the re-run: same API base (the proxy, now healed), same cache
        with healed(server, proxy.port) as same_base:
            client = RemoteBackend(KEY, same_base.base_url, retry=FAST)
            second = batch(photos, client, tmp_path, cache)
            assert_outputs(second)
            assert server.credits(KEY) == CREDITS - 3 * COST  # served, not charged again
            # and the next re-run costs nothing either
            assert all(r.status == "cached" for r in batch(photos, client, tmp_path, cache).rows)
            client.close()
        assert server.credits(KEY) == CREDITS - 3 * COST


def test_lost_answers_of_a_direct_client_are_replayed(bgcut_engine, tmp_path):
    """RemoteBackend used without a batch: the same upload and variants is the same request."""
    data = make_photos(tmp_path / "photos", 1)[0].read_bytes()
    with serve(tmp_path, bgcut_engine) as server:
        client = RemoteBackend(KEY, server.server_url, retry=FAST)
        uploaded = client.upload_image(data)
        lose_answers = FaultSpec(rate=1.0, kinds=("reset-after",), paths=(PROCESS_PATH,))
        with FaultProxy(("127.0.0.1", server.port), lose_answers) as proxy:
            lossy = RemoteBackend(KEY, proxy.base_url, retry=FAST)
            with pytest.raises(Exception, match="may or may not have been processed"):
                lossy.process_image(uploaded.unique_filename, LOW_VARIANTS)
        assert server.credits(KEY) == CREDITS - COST
        again = client.process_image(uploaded.unique_filename, LOW_VARIANTS)
        assert server.credits(KEY) == CREDITS - COST
        assert Image.open(io.BytesIO(client.fetch(again.output_urls["cut"]))).mode == "RGBA"
        # a different request on the same upload is a new call, charged
        client.process_image(uploaded.unique_filename, LOW_VARIANTS[:1])
        assert server.credits(KEY) == CREDITS - COST - 1


_KILLED_CLIENT = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from notebook_support import LOW_VARIANTS
from bgcut_nb.backends.remote import RemoteBackend
from bgcut_nb.batch.runner import run_batch
from bgcut_nb.batch.reuse import ReuseCache
backend = RemoteBackend({key!r}, {base!r})
run_batch([({photo!r}, {photo!r})], LOW_VARIANTS, backend=backend, out_dir={out!r},
          cache=ReuseCache({cache!r}), progress=False)
"""


def test_client_killed_between_charge_and_answer_is_not_charged_again(bgcut_engine, tmp_path):
    photo = make_photos(tmp_path / "photos", 1)[0]
    with serve(tmp_path, bgcut_engine) as server:
        # the proxy holds every process answer for a minute: the client is killed meanwhile
        hold = FaultSpec(rate=1.0, kinds=("hold-after",), latency=60.0, paths=(PROCESS_PATH,))
        with FaultProxy(("127.0.0.1", server.port), hold) as proxy:
            script = _KILLED_CLIENT.format(
                tests=str(Path(__file__).parent),
                key=KEY,
                base=proxy.base_url,
                photo=str(photo),
                out=str(tmp_path / "out"),
                cache=str(tmp_path / "cache"),
            )
            env = {**os.environ, "BGCUT_CACHE_DIR": str(tmp_path / "cache")}
            client = subprocess.Popen([sys.executable, "-c", script], env=env)
            try:
                deadline = time.monotonic() + 60
                while server.credits(KEY) == CREDITS and time.monotonic() < deadline:
                    assert client.poll() is None, "the client ended before it was charged"
                    time.sleep(0.05)
                assert server.credits(KEY) == CREDITS - COST  # charged, answer not yet sent
            finally:
                client.send_signal(signal.SIGKILL)
                client.wait(10)
        with healed(server, proxy.port) as same_base:
            client = RemoteBackend(KEY, same_base.base_url, retry=FAST)
            rerun = batch([photo], client, tmp_path, ReuseCache(tmp_path / "cache"))
            client.close()
        assert_outputs(rerun)
        assert server.credits(KEY) == CREDITS - COST


@pytest.mark.slow
@pytest.mark.parametrize("seed", [7, 8, 9])
def test_half_faulted_batch_charges_one_credit_per_output_across_reruns(
    bgcut_engine, tmp_path, seed
):
    report = drill.run_rerun_drill(
        IMAGES, rate=0.5, seed=seed, workers=4, backend=bgcut_engine, storage_dir=tmp_path / "srv"
    )
    print(report.table())
    assert report.rows_done == IMAGES, report.table()
    assert report.outputs_delivered == 2 * IMAGES
    assert report.faults["reset-after"] > 0
    assert report.credits_charged == report.outputs_delivered * report.credit_per_output
    assert report.ok


def test_a_replay_renders_outputs_the_engine_lost_without_charging(tmp_path):
    engine_dir = tmp_path / "engine"
    data = make_photos(tmp_path / "photos", 1)[0].read_bytes()
    with serve(tmp_path, local_backend(engine_dir)) as server:
        client = RemoteBackend(KEY, server.base_url, retry=FAST)
        uploaded = client.upload_image(data)
        first = client.process_image(uploaded.unique_filename, LOW_VARIANTS)
        cut = client.fetch(first.output_urls["cut"])
        # the engine's output files are lost while the upload lives
        lost = [p for p in engine_dir.rglob("*") if p.is_file() and p.suffix in (".png", ".jpg")]
        outputs = [p for p in lost if p.read_bytes() == cut]
        assert outputs
        for path in outputs:
            path.unlink()
        again = client.process_image(uploaded.unique_filename, LOW_VARIANTS)
        assert server.credits(KEY) == CREDITS - COST
        assert client.fetch(again.output_urls["cut"]) == cut  # rendered again, same pixels
        client.close()


def test_a_replay_after_the_upload_expired_is_a_404_not_stale_urls(bgcut_engine, tmp_path):
    data = make_photos(tmp_path / "photos", 1)[0].read_bytes()
    with serve(tmp_path, bgcut_engine, upload_ttl=1.0) as server:
        client = RemoteBackend(KEY, server.base_url, retry=FAST)
        uploaded = client.upload_image(data)
        client.process_image(uploaded.unique_filename, LOW_VARIANTS)
        time.sleep(1.2)
        with pytest.raises(NotFoundError):
            client.process_image(uploaded.unique_filename, LOW_VARIANTS)
        assert server.credits(KEY) == CREDITS - COST
        client.close()
