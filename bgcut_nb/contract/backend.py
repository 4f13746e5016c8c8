"""The backend contract: upload once, process into any number of variants, fetch outputs.

:class:`Backend` is what the notebook layer talks to. :class:`~bgcut_nb.backends.local.LocalBackend`
implements it in-process over the embedded engine; :class:`~bgcut_nb.backends.remote.RemoteBackend`
implements it over HTTP against the BackgroundCut v3 API (or the project's own server).
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..core.atomic import atomic_write_bytes
from ..core.cpus import available_cpus
from .errors import BadRequestError
from .formats import MAX_INPUT_PIXELS
from .pricing import DEFAULT_COSTS, CostTable
from .variants import Variant, parse_variants

__all__ = ["Backend", "UploadResult", "ProcessResult", "ImageInput", "read_image_input"]

#: What ``upload_image`` accepts: a path, raw bytes, or an open binary file.
ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]


@dataclass(frozen=True)
class UploadResult:
    """Answer of ``upload-image``."""

    unique_filename: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UploadResult:
        return cls(unique_filename=str(data["unique_filename"]))

    def to_json(self) -> dict[str, Any]:
        return {"unique_filename": self.unique_filename}


@dataclass(frozen=True)
class ProcessResult:
    """Answer of ``process-image``: ``output_urls`` is keyed by ``variant_name``."""

    unique_filename: str
    input_url: str
    output_urls: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessResult:
        return cls(
            unique_filename=str(data["unique_filename"]),
            input_url=str(data.get("input_url", "")),
            output_urls={str(k): str(v) for k, v in dict(data.get("output_urls", {})).items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "unique_filename": self.unique_filename,
            "input_url": self.input_url,
            "output_urls": dict(self.output_urls),
        }


def read_image_input(image: ImageInput) -> tuple[bytes, str]:
    """Return ``(bytes, filename)`` for a path, bytes or binary file object."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image), "image"
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            return path.read_bytes(), path.name
        except FileNotFoundError:
            raise BadRequestError(f"Image file not found: {path}") from None
        except IsADirectoryError:
            raise BadRequestError(f"Image path is a directory: {path}") from None
    if hasattr(image, "read"):
        data = image.read()
        if not isinstance(data, (bytes, bytearray)):
            raise BadRequestError("Image file objects must be opened in binary mode")
        return bytes(data), Path(getattr(image, "name", "image") or "image").name
    raise BadRequestError(f"Missing image: expected a path, bytes or a binary file, got {image!r}")


class Backend(abc.ABC):
    """What every backend offers; results mirror the API's JSON."""

    #: Credit table used by :meth:`estimate_credits`.
    costs: CostTable = DEFAULT_COSTS
    #: True when the work runs in this process (on this machine's CPUs), not behind HTTP.
    is_local: bool = False
    #: Largest input, in pixels, the backend accepts (the API's 64 MP): a larger one is refused
    #: before any charge, so estimates count it as free.
    max_pixels: int = MAX_INPUT_PIXELS

    @property
    @abc.abstractmethod
    def identity(self) -> str:
        """A stable, secret-free name of where work happens (used in cache keys)."""

    @property
    def key_fingerprint(self) -> str:
        """A one-way fingerprint of the API key in use, ``""`` when there is none."""
        return ""

    @property
    def default_workers(self) -> int:
        """Rows a batch runs at once: the CPU count (at most 2) in-process, 8 over HTTP,
        where the work is latency-bound."""
        return min(2, available_cpus()) if self.is_local else 8

    def pressure(self) -> dict[str, int]:
        """Running counts of the service pushing back: ``rate_limited`` (429 answers) and
        ``overloaded`` (503). A batch slows down when they grow; ``{}`` for backends that
        never see any."""
        return {}

    def reserve_connections(self, connections: int) -> None:  # noqa: B027 - optional hook
        """Keep at least ``connections`` connections open for reuse (a batch calls this with
        its thread count); a no-op for backends without connections."""

    @abc.abstractmethod
    def upload_image(self, image: ImageInput) -> UploadResult:
        """Upload an image once; the returned ``unique_filename`` is reused for processing."""

    @abc.abstractmethod
    def process_image(
        self, unique_filename: str, variants: Iterable[Variant | Mapping[str, Any]]
    ) -> ProcessResult:
        """Render every variant of an uploaded image in one call."""

    @abc.abstractmethod
    def iter_fetch(self, url: str) -> Iterator[bytes]:
        """Stream the bytes behind an output or input URL."""

    def fetch(self, url: str) -> bytes:
        """The bytes behind an output or input URL."""
        return b"".join(self.iter_fetch(url))

    def download(self, url: str, dest: str | os.PathLike[str]) -> Path:
        """Stream an output URL to ``dest``, atomically."""
        return atomic_write_bytes(dest, self.iter_fetch(url))

    def output_signals(
        self, url: str, path: str | os.PathLike[str], variant: Variant
    ) -> dict[str, Any] | None:
        """Quality signals of one output just downloaded from ``url`` to ``path`` (see
        ``bgcut_nb.engine.signals.assess``: the measures, ``flags`` and ``risk``; ``{}`` when
        there is nothing to measure). ``None``: this backend does not measure outputs."""
        return None

    def estimate_credits(self, variants: Iterable[Variant | Mapping[str, Any]]) -> float:
        """Credits one processing call with these variants costs."""
        return self.costs.process_cost(parse_variants(variants))

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release held resources (sessions, pools)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
