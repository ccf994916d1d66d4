"""`veilcam avatar list|show|remove|create` as a user runs it: real processes, real files."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import pytest

from cli_run import error_line, run_veilcam
from conftest import MODELS_DIR, read_frames, video_path
from packs import make_pack


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_CONFIG_HOME=str(tmp_path / "config"),
             XDG_DATA_HOME=str(tmp_path / "data"), VEILCAM_MODEL_DIR=str(MODELS_DIR))
    return e


@pytest.fixture
def avatars(tmp_path: Path) -> Path:
    return tmp_path / "data" / "veilcam" / "avatars"


def test_list_show_remove(env: dict[str, str], avatars: Path) -> None:
    make_pack(avatars, "alice", description="my photo avatar")
    broken = make_pack(avatars, "bob")
    (broken / "face.npz").unlink()

    proc = run_veilcam(["avatar", "list"], env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split()[:2] for line in proc.stdout.splitlines() if line.strip()]
    assert rows[0] == ["porcelain", "mask"]
    assert rows[-2:] == [["alice", "photo"], ["bob", "broken"]]
    assert "my photo avatar" in proc.stdout and "BROKEN" in proc.stdout and "face.npz is missing" in proc.stdout
    assert str(avatars) in proc.stderr

    proc = run_veilcam(["avatar", "show", "alice"], env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "kind:        photo" in proc.stdout and f"preview:     {avatars / 'alice' / 'preview.png'}" in proc.stdout
    assert "checksums:   all match" in proc.stdout

    error_line(run_veilcam(["avatar", "show", "bob"], env, timeout=300), "face.npz is missing", "veilcam avatar remove bob")
    error_line(run_veilcam(["avatar", "remove", "porcelain"], env, timeout=300), "built-in avatar")
    error_line(run_veilcam(["avatar", "remove", "nobody"], env, timeout=300), "no avatar called 'nobody'")

    for name in ("bob", "alice"):  # a broken pack can be removed too: that is how it gets fixed
        proc = run_veilcam(["avatar", "remove", name], env, timeout=300)
        assert proc.returncode == 0, proc.stderr
    assert list(avatars.iterdir()) == []


def test_selecting_a_broken_pack_fails_with_one_line(env: dict[str, str], avatars: Path, tmp_path: Path) -> None:
    pack = make_pack(avatars, "bob")
    data = bytearray((pack / "albedo.png").read_bytes())
    data[-20] ^= 0xFF
    (pack / "albedo.png").write_bytes(bytes(data))
    proc = run_veilcam(["render", "--source", str(video_path("p4")), "--out", str(tmp_path / "o.mp4"), "--avatar-name", "bob", "-q"], env, timeout=300)
    error_line(proc, str(pack), "albedo.png does not match its sha256")


def test_create_refuses_bad_input_with_one_line(env: dict[str, str], tmp_path: Path) -> None:
    # A real frame with no face in it: the empty room of the face-lost clip.
    room = read_frames(video_path("facelost"))[165]
    empty = tmp_path / "room.png"
    cv2.imwrite(str(empty), cv2.cvtColor(room, cv2.COLOR_RGB2BGR))
    error_line(run_veilcam(["avatar", "create", "--photo", str(empty), "--name", "ghost"], env, timeout=300), str(empty), "no face found")

    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8 not really a jpeg")
    error_line(run_veilcam(["avatar", "create", "--photo", str(junk), "--name", "ghost"], env, timeout=300), str(junk), "cannot read")
    error_line(run_veilcam(["avatar", "create", "--photo", str(tmp_path / "nope.jpg"), "--name", "ghost"], env, timeout=300), "not found")
    error_line(run_veilcam(["avatar", "create", "--photo", str(empty), "--name", "../evil"], env, timeout=300), "'../evil' is not allowed")
    error_line(run_veilcam(["avatar", "create", "--photo", str(empty), "--name", "porcelain"], env, timeout=300), "built-in")
    assert not (tmp_path / "data" / "veilcam" / "avatars" / "ghost").exists()
