"""LocalBackend: uploads, expiry, file:// outputs, matte reuse, safety, thread safety."""

import io
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from bgcut_nb import BadRequestError, InvalidImageError, NotFoundError, Variant
from bgcut_nb.backends.local import LocalBackend, safe_filename
from bgcut_nb.contract.variants import SPEC_EXAMPLE_VARIANTS
from bgcut_nb.engine.pipeline import LocalEngine


class CountingEngine(LocalEngine):
    """The real engine, counting the mattes it computes (one per tier asked for)."""

    def __init__(self):
        super().__init__()
        self.computed = 0
        self.calls: list[list[str]] = []  # the tiers each engine call was asked for
        self._count_lock = threading.Lock()

    def cutouts(self, image, qualities):
        qualities = list(qualities)
        with self._count_lock:
            self.computed += len(qualities)
            self.calls.append(qualities)
        return super().cutouts(image, qualities)


def photo_bytes(fmt="JPEG", size=(240, 160), mode="RGB") -> bytes:
    """A dark disc on a light, textured background."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    disc = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) < (min(w, h) / 3) ** 2
    rgb = np.where(disc[..., None], [150, 40, 30], [225, 230, 235]).astype(np.uint8)
    image = Image.fromarray(rgb)
    if mode == "RGBA":
        image.putalpha(Image.fromarray(np.where(xx < 20, 0, 255).astype(np.uint8)))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture
def backend(tmp_path):
    return LocalBackend(tmp_path / "store", engine=CountingEngine())


def open_url(backend, url) -> Image.Image:
    image = Image.open(io.BytesIO(backend.fetch(url)))
    image.load()
    return image


def test_upload_gives_an_unguessable_id(backend):
    ids = {backend.upload_image(photo_bytes()).unique_filename for _ in range(3)}
    assert len(ids) == 3
    for value in ids:
        assert uuid.UUID(value).version == 4


def test_spec_example_renders_every_variant(backend, tmp_path):
    uid = backend.upload_image(photo_bytes()).unique_filename
    result = backend.process_image(uid, SPEC_EXAMPLE_VARIANTS)
    assert result.unique_filename == uid
    assert set(result.output_urls) == {"full", "thumbnail", "white_bg"}
    assert result.input_url.startswith("file://")
    assert open_url(backend, result.input_url).size == (240, 160)
    full = open_url(backend, result.output_urls["full"])
    thumb = open_url(backend, result.output_urls["thumbnail"])
    white = open_url(backend, result.output_urls["white_bg"])
    assert (full.format, full.mode, full.size) == ("PNG", "RGBA", (240, 160))
    assert (thumb.format, thumb.mode) == ("WEBP", "RGBA") and thumb.width < 240
    assert (white.format, white.mode, white.size) == ("JPEG", "RGB", (240, 160))
    alpha = np.asarray(full)[..., 3]
    assert alpha[80, 120] > 200 and alpha[5, 5] < 30  # the disc is kept, the corner removed
    assert np.asarray(white)[5, 5].min() > 240  # background flattened to white
    dest = backend.download(result.output_urls["full"], tmp_path / "out" / "full.png")
    assert dest.read_bytes() == backend.fetch(result.output_urls["full"])


def test_matte_is_computed_once_per_quality_and_reused(backend):
    uid = backend.upload_image(photo_bytes()).unique_filename
    backend.process_image(
        uid, [Variant("a", quality="low"), Variant("b", quality="low", format="jpg")]
    )
    assert backend.engine.computed == 1
    backend.process_image(uid, [Variant("c", quality="low", autocrop=True)])
    assert backend.engine.computed == 1
    # a fresh backend over the same storage reuses the stored matte too
    again = LocalBackend(backend.storage_dir, engine=CountingEngine())
    again.process_image(uid, [Variant("d", quality="low", background_color="#123456")])
    assert again.engine.computed == 0


def test_one_call_computes_its_missing_tiers_together(backend):
    uid = backend.upload_image(photo_bytes()).unique_filename
    backend.process_image(uid, [Variant("a", quality="medium")])
    spec = [Variant("a", quality="medium"), Variant("b", quality="high"), Variant("c")]
    result = backend.process_image(uid, [*spec, Variant("d", quality="low", format="jpg")])
    # a's output exists, so medium is not needed; high (twice) and low: one engine call
    assert backend.engine.calls == [["medium"], ["high", "low"]]
    assert set(result.output_urls) == {"a", "b", "c", "d"}
    assert open_url(backend, result.output_urls["b"]).tobytes() == (
        open_url(backend, result.output_urls["c"]).tobytes()
    )


@pytest.mark.parametrize("quality, mode", [("low", "RGB"), ("high", "RGB"), ("low", "RGBA")])
def test_a_stored_matte_renders_exactly_what_the_computed_one_did(tmp_path, quality, mode):
    first = LocalBackend(tmp_path / "store", engine=CountingEngine())
    uid = first.upload_image(photo_bytes("PNG", mode=mode)).unique_filename
    variants = [
        Variant("cut", quality=quality),
        Variant("flat", quality=quality, format="jpg", background_color="#20c040"),
        Variant("crop", quality=quality, format="webp", autocrop=True, max_resolution=9000),
    ]
    first.process_image(uid, variants[:1])
    folder = first.storage_dir / "uploads" / uid
    (stored,) = folder.glob("matte-*")  # what the matte is made of, not its pixels
    with np.load(stored) as parts:
        assert parts["model_pass"].shape == (320, 320)
        assert ("correction" in parts) == (quality == "high")
    computed = first.process_image(uid, variants)  # from the matte in memory
    expected = {name: first.fetch(url) for name, url in computed.output_urls.items()}
    shutil.rmtree(folder / "outputs")  # so that nothing is copied from an earlier rendering
    again = LocalBackend(first.storage_dir, engine=CountingEngine())
    loaded = again.process_image(uid, variants)  # from the stored matte
    assert again.engine.computed == 0 and first.engine.computed == 1
    for name, url in loaded.output_urls.items():
        assert again.fetch(url) == expected[name], name


def test_tiers_computed_together_render_what_each_stored_one_does(tmp_path):
    first = LocalBackend(tmp_path / "store", engine=CountingEngine())
    uid = first.upload_image(photo_bytes()).unique_filename
    computed = first.process_image(uid, SPEC_EXAMPLE_VARIANTS)  # high and medium together
    assert first.engine.calls == [["high", "medium"]]
    expected = {name: first.fetch(url) for name, url in computed.output_urls.items()}
    shutil.rmtree(first.storage_dir / "uploads" / uid / "outputs")
    again = LocalBackend(first.storage_dir, engine=CountingEngine())
    loaded = again.process_image(uid, SPEC_EXAMPLE_VARIANTS)  # each tier from its own file
    assert again.engine.computed == 0
    for name, url in loaded.output_urls.items():
        assert again.fetch(url) == expected[name], name


def test_an_unreadable_stored_matte_is_computed_again(tmp_path, caplog):
    first = LocalBackend(tmp_path / "store", engine=CountingEngine())
    uid = first.upload_image(photo_bytes()).unique_filename
    first.process_image(uid, [Variant("a", quality="low")])
    (stored,) = (first.storage_dir / "uploads" / uid).glob("matte-*")
    stored.write_bytes(b"PK\x03\x04 not a zip")  # e.g. a disk that lost its tail
    again = LocalBackend(first.storage_dir, engine=CountingEngine())
    variant = Variant("b", quality="low", background_color="#0000ff", format="jpg")
    out = open_url(again, again.process_image(uid, [variant]).output_urls["b"])
    assert again.engine.computed == 1
    assert tuple(np.asarray(out)[5, 5]) == pytest.approx((0, 0, 255), abs=12)  # a new render
    assert "unreadable" in caplog.text
    with np.load(stored) as parts:  # and stored again
        assert parts["model_pass"].ndim == 2


def test_same_rendering_is_not_rendered_twice(backend):
    uid = backend.upload_image(photo_bytes()).unique_filename
    first = backend.process_image(uid, [Variant("a", quality="low")]).output_urls["a"]
    second = backend.process_image(uid, [Variant("b", quality="low")]).output_urls["b"]
    assert first != second and backend.fetch(first) == backend.fetch(second)


def test_unknown_and_malicious_ids_are_404(backend):
    for value in [str(uuid.uuid4()), "../../etc/passwd", "", "abc123-def456"]:
        with pytest.raises(NotFoundError) as info:
            backend.process_image(value, [Variant("a")])
        assert info.value.status == 404 and info.value.detail == "Image not found or has expired."


def test_uploads_expire(tmp_path):
    backend = LocalBackend(tmp_path / "store", upload_ttl=0.2, engine=CountingEngine())
    uid = backend.upload_image(photo_bytes()).unique_filename
    backend.process_image(uid, [Variant("a", quality="low")])
    time.sleep(0.3)
    with pytest.raises(NotFoundError):
        backend.process_image(uid, [Variant("b", quality="low")])
    assert not (backend.storage_dir / "uploads" / uid).exists()


def test_bad_uploads_and_bad_variants_are_400(backend, tmp_path):
    with pytest.raises(InvalidImageError, match="Invalid image format"):
        backend.upload_image(b"GIF89a not really")
    with pytest.raises(BadRequestError, match="not found"):
        backend.upload_image(tmp_path / "missing.jpg")
    uid = backend.upload_image(photo_bytes("PNG")).unique_filename
    with pytest.raises(BadRequestError, match="Duplicate variant_name"):
        backend.process_image(uid, [{"variant_name": "x"}, {"variant_name": "x"}])
    assert backend.engine.computed == 0  # validation happens before any work


def test_fetch_stays_inside_storage(backend, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("no")
    for url in [outside.as_uri(), "https://example.com/x.png", "file:///etc/passwd"]:
        with pytest.raises(NotFoundError):
            backend.fetch(url)


def test_variant_names_cannot_escape_the_storage(backend):
    uid = backend.upload_image(photo_bytes()).unique_filename
    names = ["../../escape", "/etc/passwd", "a/b", "..", "ünïcødé"]
    result = backend.process_image(uid, [Variant(n, quality="low") for n in names])
    for url in result.output_urls.values():
        assert backend._path_of(url).is_relative_to(backend.storage_dir / "uploads" / uid)
    assert safe_filename("..") == "variant" and "/" not in safe_filename("a/../b")


def test_input_transparency_is_kept(backend):
    uid = backend.upload_image(photo_bytes("PNG", mode="RGBA")).unique_filename
    out = open_url(
        backend, backend.process_image(uid, [Variant("a", quality="low")]).output_urls["a"]
    )
    assert np.asarray(out)[80, :20, 3].max() == 0  # transparent strip stays transparent


def test_threads_share_one_matte(backend):
    uid = backend.upload_image(photo_bytes()).unique_filename
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda i: backend.process_image(uid, [Variant(f"v{i}", quality="low")]), range(8)
            )
        )
    assert backend.engine.computed == 1
    assert len({r.unique_filename for r in results}) == 1


def test_the_tier_models_are_the_engines_own(tmp_path):
    """Tier to model is decided once: a given engine's mapping is the backend's, and a
    different ``models=`` beside it is refused rather than naming files after other models."""
    from bgcut_nb.engine.matting import TIER_MODELS, Matting

    chosen = {"high": "isnet-general-use"}
    engine = LocalEngine(matting=Matting(models=chosen))
    assert LocalBackend(tmp_path, engine=engine).tier_models == {**TIER_MODELS, **chosen}
    assert (
        LocalBackend(tmp_path, engine=engine, models=chosen).tier_models["high"] == chosen["high"]
    )
    with pytest.raises(ValueError, match="models="):
        LocalBackend(tmp_path, engine=LocalEngine(), models=chosen)
