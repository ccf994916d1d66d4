"""ModelStore against real files and a real local HTTP server (no mocks)."""

from __future__ import annotations

import dataclasses

import hashlib
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from veilcam.daemon.errors import ModelFileError
from veilcam.daemon.model_store import ENV_MODEL_DIR, MODELS, ModelSpec, ModelStore

SHARED_MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "models"

PAYLOAD = bytes(range(256)) * 1000  # 256 kB, several read chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    """A local HTTP server; `routes` maps a URL path to (body, Content-Length to send)."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, int]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                if self.path not in server.routes:
                    self.send_error(404)
                    return
                body, length = server.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True  # a short body is then a truncated transfer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def serve(self, path: str, body: bytes, length: int | None = None) -> str:
        self.routes[path] = (body, len(body) if length is None else length)
        return self.base + path


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    srv.thread.join()


def _store(tmp_path: Path, spec: ModelSpec, **kwargs) -> ModelStore:
    kwargs.setdefault("progress", False)
    return ModelStore(kwargs.pop("override_dir", None), tmp_path / "cache", registry={spec.name: spec}, **kwargs)


def _cache_files(tmp_path: Path) -> list[str]:
    cache = tmp_path / "cache"
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def _assert_one_line(err: pytest.ExceptionInfo[ModelFileError]) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "\r" not in msg
    return msg


def test_registry_has_face_landmarker() -> None:
    spec = MODELS["face_landmarker.task"]
    assert spec.size == 3758596
    assert spec.url.endswith("/float16/1/face_landmarker.task")


def test_resolves_from_env_override_dir_without_download(tmp_path, monkeypatch) -> None:
    # Must fail, not skip, when the shared data is missing: CI relies on it.
    assert (SHARED_MODELS / "face_landmarker.task").is_file(), f"missing shared model dir {SHARED_MODELS}"
    monkeypatch.setenv(ENV_MODEL_DIR, str(SHARED_MODELS))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    store = ModelStore.from_environment(allow_download=False, progress=False)
    assert store.cache_dir == tmp_path / "xdg" / "veilcam" / "models"
    assert store.resolve("face_landmarker.task") == SHARED_MODELS / "face_landmarker.task"
    assert store.resolve("face_landmarker.task") == SHARED_MODELS / "face_landmarker.task"
    assert not (tmp_path / "xdg" / "veilcam" / "models").exists()  # nothing downloaded (at most the checks record is written)


def test_argument_beats_env_var(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(ENV_MODEL_DIR, str(tmp_path / "from-env"))
    store = ModelStore.from_environment(tmp_path / "from-config")
    assert store.override_dir == tmp_path / "from-config"


def test_download_lands_in_cache_and_is_reused(tmp_path, server, capsys) -> None:
    spec = ModelSpec("good.bin", server.serve("/good.bin", PAYLOAD), PAYLOAD_SHA, len(PAYLOAD))
    store = _store(tmp_path, spec, progress=True)
    path = store.resolve("good.bin")
    assert path == tmp_path / "cache" / "good.bin"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == PAYLOAD_SHA
    assert "good.bin" in capsys.readouterr().err  # the progress bar was shown
    assert store.resolve("good.bin") == path
    # A fresh store (new process) verifies the cached file instead of downloading.
    assert _store(tmp_path, spec).resolve("good.bin") == path
    assert server.requests == ["/good.bin"]
    assert _cache_files(tmp_path) == ["good.bin"]


def test_wrong_checksum_is_rejected_and_leaves_nothing(tmp_path, server) -> None:
    spec = ModelSpec("bad.bin", server.serve("/bad.bin", PAYLOAD), "0" * 64, len(PAYLOAD))
    with pytest.raises(ModelFileError) as err:
        _store(tmp_path, spec).resolve("bad.bin")
    msg = _assert_one_line(err)
    assert "bad.bin" in msg and spec.url in msg and "checksum" in msg
    assert _cache_files(tmp_path) == []


@pytest.mark.parametrize("size", [None, len(PAYLOAD)], ids=["content-length", "spec-size"])
def test_truncated_transfer_is_rejected(tmp_path, server, size) -> None:
    # The server promises the full length but closes after half of it.
    url = server.serve("/cut.bin", PAYLOAD[: len(PAYLOAD) // 2], length=len(PAYLOAD))
    spec = ModelSpec("cut.bin", url, PAYLOAD_SHA, size)
    with pytest.raises(ModelFileError) as err:
        _store(tmp_path, spec).resolve("cut.bin")
    msg = _assert_one_line(err)
    assert "cut.bin" in msg and url in msg and f"received {len(PAYLOAD) // 2} bytes" in msg
    assert _cache_files(tmp_path) == []


def test_short_body_matching_content_length_but_not_spec_size(tmp_path, server) -> None:
    url = server.serve("/short.bin", PAYLOAD[:1000])
    spec = ModelSpec("short.bin", url, PAYLOAD_SHA, len(PAYLOAD))
    with pytest.raises(ModelFileError) as err:
        _store(tmp_path, spec).resolve("short.bin")
    assert "expected size" in _assert_one_line(err)
    assert _cache_files(tmp_path) == []


def test_http_error_is_reported(tmp_path, server) -> None:
    spec = ModelSpec("gone.bin", server.base + "/gone.bin", PAYLOAD_SHA, None)
    with pytest.raises(ModelFileError) as err:
        _store(tmp_path, spec).resolve("gone.bin")
    assert "HTTP 404" in _assert_one_line(err)
    assert _cache_files(tmp_path) == []


def test_unreachable_server_gives_one_line_error(tmp_path) -> None:
    with socket.socket() as sock:  # reserve a port, then close it: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = ModelSpec("offline.bin", f"http://127.0.0.1:{port}/offline.bin", PAYLOAD_SHA, None)
    with pytest.raises(ModelFileError) as err:
        _store(tmp_path, spec).resolve("offline.bin")
    msg = _assert_one_line(err)
    assert "offline.bin" in msg and spec.url in msg and ENV_MODEL_DIR in msg
    assert str(tmp_path / "cache" / "offline.bin") in msg
    assert _cache_files(tmp_path) == []


def test_missing_with_downloads_disabled(tmp_path, server) -> None:
    spec = ModelSpec("nodl.bin", server.serve("/nodl.bin", PAYLOAD), PAYLOAD_SHA, None)
    with pytest.raises(ModelFileError) as err:
        _store(tmp_path, spec, allow_download=False).resolve("nodl.bin")
    msg = _assert_one_line(err)
    assert "missing" in msg and spec.url in msg
    assert server.requests == []


def test_unknown_model_name(tmp_path) -> None:
    spec = ModelSpec("known.bin", "http://127.0.0.1:1/known.bin", PAYLOAD_SHA, None)
    with pytest.raises(ModelFileError) as err:
        _store(tmp_path, spec).resolve("other.bin")
    assert "known.bin" in _assert_one_line(err)


def test_corrupt_override_file_is_an_error_and_left_alone(tmp_path, server) -> None:
    spec = ModelSpec("m.bin", server.serve("/m.bin", PAYLOAD), PAYLOAD_SHA, len(PAYLOAD))
    override = tmp_path / "override"
    override.mkdir()
    (override / "m.bin").write_bytes(b"not the model")
    with pytest.raises(ModelFileError) as err:
        _store(tmp_path, spec, override_dir=override).resolve("m.bin")
    msg = _assert_one_line(err)
    assert str(override / "m.bin") in msg and "checksum does not match" in msg and spec.url in msg
    assert (override / "m.bin").read_bytes() == b"not the model"
    assert server.requests == []


def test_corrupt_cache_file_is_downloaded_again(tmp_path, server) -> None:
    spec = ModelSpec("m.bin", server.serve("/m.bin", PAYLOAD), PAYLOAD_SHA, len(PAYLOAD))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "m.bin").write_bytes(b"x" * len(PAYLOAD))  # right size, wrong bytes
    path = _store(tmp_path, spec).resolve("m.bin")
    assert path.read_bytes() == PAYLOAD
    assert server.requests == ["/m.bin"]


def test_override_dir_without_the_file_falls_back_to_cache(tmp_path, server) -> None:
    spec = ModelSpec("m.bin", server.serve("/m.bin", PAYLOAD), PAYLOAD_SHA, len(PAYLOAD))
    (tmp_path / "override").mkdir()
    path = _store(tmp_path, spec, override_dir=tmp_path / "override").resolve("m.bin")
    assert path == tmp_path / "cache" / "m.bin"


def test_cached_file_changed_on_disk_is_rechecked(tmp_path, server) -> None:
    spec = ModelSpec("m.bin", server.serve("/m.bin", PAYLOAD), PAYLOAD_SHA, len(PAYLOAD))
    store = _store(tmp_path, spec)
    path = store.resolve("m.bin")
    old_mtime = path.stat().st_mtime_ns
    path.write_bytes(b"y" * len(PAYLOAD))
    # Force a new mtime (coarse clocks): the in-memory verdict must no longer apply.
    os.utime(path, ns=(old_mtime + 10**9, old_mtime + 10**9))
    assert store.resolve("m.bin").read_bytes() == PAYLOAD
    assert server.requests == ["/m.bin", "/m.bin"]


def test_taesd_resolves_from_the_shared_models_subfolder(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(ENV_MODEL_DIR, str(SHARED_MODELS))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    store = ModelStore.from_environment(allow_download=False, progress=False)
    for part in ("encoder", "decoder"):
        name = f"taesd/taesd_{part}.safetensors"
        assert store.resolve(name) == SHARED_MODELS / "taesd" / f"taesd_{part}.safetensors"
        assert MODELS[name].url.startswith("https://raw.githubusercontent.com/madebyollin/taesd/")
    assert not (tmp_path / "xdg" / "veilcam" / "models").exists()  # nothing downloaded


def test_download_into_a_subfolder_of_the_cache(tmp_path, server) -> None:
    spec = ModelSpec("sub/m.bin", server.serve("/m.bin", PAYLOAD), PAYLOAD_SHA, len(PAYLOAD))
    path = _store(tmp_path, spec).resolve("sub/m.bin")
    assert path == tmp_path / "cache" / "sub" / "m.bin" and path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in (tmp_path / "cache" / "sub").iterdir()) == ["m.bin"]  # no temp file left


class _CountingSpec:
    """A spec whose content check counts its calls (a fresh process has no in-memory verdicts)."""

    def __init__(self, tmp_path: Path) -> None:
        self.calls = 0
        self.dir = tmp_path / "models"
        self.dir.mkdir()
        (self.dir / "m.bin").write_bytes(PAYLOAD)
        self.spec = ModelSpec("m.bin", "http://127.0.0.1:9/m.bin", None, None, verify=self.verify, content_digest="pin-1")

    def verify(self, path: Path) -> bool:
        self.calls += 1
        return path.read_bytes() == PAYLOAD

    def store(self, tmp_path: Path, spec: ModelSpec | None = None) -> ModelStore:
        ModelStore._verified.clear()  # as in a new process
        spec = spec or self.spec
        return ModelStore(self.dir, tmp_path / "cache", registry={spec.name: spec}, allow_download=False, progress=False,
                          checks_file=tmp_path / "checks.json")


def test_a_verdict_is_kept_across_processes_for_the_same_file_and_pin(tmp_path) -> None:
    c = _CountingSpec(tmp_path)
    for _ in range(3):
        assert c.store(tmp_path).resolve("m.bin") == c.dir / "m.bin"
    assert c.calls == 1
    c.store(tmp_path, dataclasses.replace(c.spec, content_digest="pin-2")).resolve("m.bin")  # a new model version
    assert c.calls == 2


def test_a_changed_file_is_checked_again_and_refused(tmp_path) -> None:
    c = _CountingSpec(tmp_path)
    c.store(tmp_path).resolve("m.bin")
    path = c.dir / "m.bin"
    old = path.stat().st_mtime_ns
    path.write_bytes(b"y" * len(PAYLOAD))
    os.utime(path, ns=(old + 10**9, old + 10**9))
    with pytest.raises(ModelFileError, match="checksum does not match"):
        c.store(tmp_path).resolve("m.bin")
    assert c.calls == 2


def test_a_damaged_checks_record_only_costs_a_check(tmp_path) -> None:
    c = _CountingSpec(tmp_path)
    (tmp_path / "checks.json").write_text("{not json")
    assert c.store(tmp_path).resolve("m.bin") == c.dir / "m.bin"
    assert c.store(tmp_path).resolve("m.bin") == c.dir / "m.bin"
    assert c.calls == 1  # the record was rewritten whole


def test_preparing_for_switches_never_downloads(tmp_path, monkeypatch) -> None:
    from veilcam.daemon.config import Config
    from veilcam.daemon.factory import stock_for_switches

    monkeypatch.delenv(ENV_MODEL_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # an empty cache: every model is missing
    with pytest.raises(ModelFileError, match="downloads are disabled"):
        stock_for_switches(Config())  # the config allows downloads; a background preparation still must not
    models = tmp_path / "xdg" / "veilcam" / "models"
    assert not models.exists() or not any(models.iterdir())
