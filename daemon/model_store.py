"""Find model files by name: user override dir, then user cache, then download.

Model files are large and come from third parties, so every file we use is
checked against a pinned sha256: a truncated download or a swapped file would
otherwise fail much later with an obscure parser error. Downloads go to a temp
file in the cache dir and are moved into place with `os.replace`, so a crash,
Ctrl-C or a second process downloading the same file never leaves a
half-written model where a reader could pick it up.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

from tqdm import tqdm

from . import facekit_convert, paths
from .errors import ModelFileError

ENV_MODEL_DIR = "VEILCAM_MODEL_DIR"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class ModelSpec:
    """A model file we know how to fetch and verify.

    Most files are downloaded as they are. A file with `build` is made from the
    download (an upstream release archive) on the user's machine; such a file
    is checked by `verify` (its content), because rebuilding gives equal
    content but not equal bytes, and its `sha256`, if any, checks the download.
    """

    name: str  # relative path in the model folders (may have a subfolder), also the key in MODELS
    url: str
    sha256: str | None  # lowercase hex of the download; None: not byte-stable upstream (see `verify`)
    size: int | None  # bytes of the download; None when unknown (only the checksum is checked)
    build: Callable[[Path, Path, bool], None] | None = None  # (download, output, progress) -> writes the model file
    verify: Callable[[Path], bool] | None = None  # True when a model file holds the expected content
    content_digest: str | None = None  # what `verify` compares against: names the pin in the checks record

    @property
    def pin(self) -> str | None:
        """What a verified file was checked against; None: its verdict is not recorded across processes."""
        return self.sha256 if self.verify is None else self.content_digest


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="face_landmarker.task",
            url="https://storage.googleapis.com/mediapipe-models/face_landmarker/"
            "face_landmarker/float16/1/face_landmarker.task",
            sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
            size=3758596,
        ),
        ModelSpec(
            name=facekit_convert.COMPACT_NAME,
            url=facekit_convert.ARCHIVE_URL,
            sha256=None,  # GitHub builds archives on request; the converted arrays are checked instead
            size=None,
            build=facekit_convert.build_compact,
            verify=facekit_convert.is_known_good,
            content_digest=facekit_convert.COMPACT_DIGEST,
        ),
        # TAESD (SD 1.x/2.x latents), MIT, from madebyollin/taesd. The pins are those
        # of the bf16 safetensors copies described in shared/data/SOURCES.md: the
        # upstream files could not be fetched to check them byte for byte.
        ModelSpec(
            name="taesd/taesd_encoder.safetensors",
            url="https://raw.githubusercontent.com/madebyollin/taesd/main/taesd_encoder.safetensors",
            sha256="a6b8c0fda4aad50784e543389e0239c72c5e31e9775c9e612ea8333bf3a77dcb",
            size=2450568,
        ),
        ModelSpec(
            name="taesd/taesd_decoder.safetensors",
            url="https://raw.githubusercontent.com/madebyollin/taesd/main/taesd_decoder.safetensors",
            sha256="d903e7cc3ae58f21d985a3498a841fa8b230edccff7ac5d27607b0c557945c6f",
            size=2450590,
        ),
    ]
}


class _Rejected(Exception):
    """A download arrived but is not the file we asked for."""


class ModelStore:
    """Resolves model names to verified files on disk."""

    def __init__(
        self,
        override_dir: Path | None,
        cache_dir: Path,
        allow_download: bool = True,
        progress: bool = True,
        registry: Mapping[str, ModelSpec] = MODELS,
        timeout: float = 30.0,
        checks_file: Path | None = None,
    ) -> None:
        self.override_dir = override_dir
        self.cache_dir = cache_dir
        self.allow_download = allow_download
        self.progress = progress
        self.registry = registry
        self.timeout = timeout
        self.checks_file = checks_file

    @classmethod
    def from_environment(
        cls,
        override_dir: Path | None = None,
        allow_download: bool = True,
        progress: bool = True,
        registry: Mapping[str, ModelSpec] = MODELS,
    ) -> ModelStore:
        """Use `override_dir` (from config), else $VEILCAM_MODEL_DIR, plus the user cache."""
        if override_dir is None and os.environ.get(ENV_MODEL_DIR):
            override_dir = Path(os.environ[ENV_MODEL_DIR])
        return cls(override_dir, paths.cache_dir() / "models", allow_download, progress, registry, checks_file=paths.cache_dir() / "model-checks.json")

    def resolve(self, name: str) -> Path:
        """Return the path of a verified copy of model `name`, downloading it if needed."""
        spec = self.registry.get(name)
        if spec is None:
            raise ModelFileError(
                f"unknown model file {name!r}: known models are {', '.join(sorted(self.registry))}"
            )
        if self.override_dir is not None:
            path = self.override_dir / name
            if path.is_file():
                if self._is_valid(path, spec):
                    return path
                # Never touch the user's own folder: tell them what to do instead.
                expected = f"the expected sha256 {spec.sha256}" if spec.verify is None else "the expected model content"
                raise ModelFileError(
                    f"{path}: checksum does not match {expected}; "
                    f"replace it with the file from {spec.url}"
                )
        cached = self.cache_dir / name
        if cached.is_file():
            if self._is_valid(cached, spec):
                return cached
            cached.unlink(missing_ok=True)  # ours to manage: corrupt or stale, fetch it again
        if not self.allow_download:
            raise ModelFileError(
                f"model file {name} is missing and downloads are disabled; "
                f"download it from {spec.url} into {self.cache_dir} or set {ENV_MODEL_DIR}"
            )
        return self._download(spec, cached)

    #: (path, spec) -> (size, mtime_ns, inode) of files already verified, for
    #: the whole process: every avatar build makes a store, and hashing a model
    #: file again on each (0.2 s for the face model) would slow every switch.
    _verified: dict[tuple[Path, ModelSpec], tuple[int, int, int]] = {}

    def _is_valid(self, path: Path, spec: ModelSpec) -> bool:
        st = path.stat()
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        if self._verified.get((path, spec)) == stamp or self._recorded(path, spec, stamp):
            self._verified[(path, spec)] = stamp
            return True
        if spec.verify is not None:
            ok = spec.verify(path)
        elif spec.size is not None and st.st_size != spec.size:
            return False
        else:
            with path.open("rb") as f:
                ok = hashlib.file_digest(f, "sha256").hexdigest() == spec.sha256
        if ok:
            self._remember(path, spec, stamp)
        return ok

    # The checks record (`checks_file`) keeps each verdict across processes, for the
    # same file (path, size, mtime, inode) and the same pin: a daemon's first
    # face-model avatar then skips re-hashing 17 MB. A changed, replaced or
    # re-pinned file is checked again; an unreadable record is ignored.
    def _read_checks(self) -> dict[str, Any]:
        try:
            data = json.loads(self.checks_file.read_text()) if self.checks_file is not None else {}
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _recorded(self, path: Path, spec: ModelSpec, stamp: tuple[int, int, int]) -> bool:
        if spec.pin is None:
            return False
        return self._read_checks().get(str(path.resolve())) == [*stamp, spec.pin]

    def _remember(self, path: Path, spec: ModelSpec, stamp: tuple[int, int, int]) -> None:
        self._verified[(path, spec)] = stamp
        if self.checks_file is None or spec.pin is None:
            return
        checks = self._read_checks()
        checks[str(path.resolve())] = [*stamp, spec.pin]
        try:
            paths.write_atomically(self.checks_file, lambda f: f.write(json.dumps(checks).encode()))
        except OSError:
            pass  # a read-only cache only costs checking again next time

    def _download(self, spec: ModelSpec, dest: Path) -> Path:
        temps: list[Path] = []

        def temp() -> Path:
            # Same directory as dest, so os.replace is an atomic rename.
            fd, name = tempfile.mkstemp(prefix=f".{dest.name}.part-", dir=dest.parent)
            os.close(fd)
            temps.append(Path(name))
            return temps[-1]

        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            download = temp()
            with download.open("wb") as out:
                digest = self._fetch(spec, out)
            if spec.sha256 is not None and digest != spec.sha256:
                raise _Rejected(f"checksum mismatch (got sha256 {digest}, expected {spec.sha256})")
            if spec.build is not None:
                built = temp()
                spec.build(download, built, self.progress)
                if spec.verify is not None and not spec.verify(built):
                    raise _Rejected("the file built from it does not hold the expected model")
                download = built
            os.replace(download, dest)
        except Exception as exc:
            raise ModelFileError(
                f"cannot download model file {spec.name} from {spec.url}: {_describe(exc)}; "
                f"download it by hand to {dest} or set {ENV_MODEL_DIR} to a folder containing it"
            ) from exc
        finally:
            for path in temps:
                path.unlink(missing_ok=True)  # no-op after a successful os.replace
        st = dest.stat()
        self._remember(dest, spec, (st.st_size, st.st_mtime_ns, st.st_ino))
        return dest

    def _fetch(self, spec: ModelSpec, out: BinaryIO) -> str:
        """Stream spec.url into `out`, returning the sha256; reject short or long bodies."""
        digest = hashlib.sha256()
        received = 0
        with urllib.request.urlopen(spec.url, timeout=self.timeout) as resp:
            header = resp.headers.get("Content-Length")
            declared = int(header) if header is not None else None
            with tqdm(
                total=declared or spec.size,
                unit="B",
                unit_scale=True,
                desc=Path(spec.name).name,
                file=sys.stderr,
                disable=not self.progress,
            ) as bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        for expected, source in ((declared, "Content-Length"), (spec.size, "expected size")):
            if expected is not None and received != expected:
                raise _Rejected(f"received {received} bytes but the {source} is {expected}")
        return digest.hexdigest()


def _describe(exc: Exception) -> str:
    """A short, single-line reason for a failed download."""
    if isinstance(exc, urllib.error.HTTPError):
        reason = f"HTTP {exc.code} {exc.reason}"
    elif isinstance(exc, urllib.error.URLError):
        reason = f"cannot reach the server ({exc.reason})"
    elif isinstance(exc, http.client.IncompleteRead):
        reason = "transfer truncated: the connection closed early"
    elif isinstance(exc, TimeoutError):
        reason = "timed out"
    else:
        reason = str(exc) or type(exc).__name__
    return " ".join(reason.split())
