"""Avatar packs: a good pack round-trips; every kind of bad pack is refused with one line naming the problem."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from veilcam.daemon import avatar_pack as ap
from veilcam.daemon.pack_files import decode_arrays, encode_npz, encode_png
from veilcam.daemon.pack_manifest import MANIFEST, ArraySpec, PackContext
from veilcam.daemon.avatar_pack import AvatarPackError, load_pack, new_manifest, read_manifest, write_pack
from veilcam.daemon.avatars import build_renderer, find_avatar, list_avatars
from veilcam.daemon.config import Config
from veilcam.daemon.errors import VeilCamError

from packs import make_pack, one_line, pack_files, relist, rewrite_manifest


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "avatars"


def test_round_trip(root: Path) -> None:
    files = pack_files()
    pack = make_pack(root, description='a "quoted" description')
    loaded = load_pack(pack)
    m = loaded.manifest
    assert (m.name, m.kind, m.version, m.schema) == ("alice", "photo", 1, 1)
    assert m.description == 'a "quoted" description'
    assert {f.path for f in m.files} == set(files)
    np.testing.assert_array_equal(loaded.arrays["face"]["identity"], np.load(io.BytesIO(files["face.npz"]))["identity"])
    assert loaded.images["albedo"].shape == (64, 64, 3)
    assert loaded.images["preview"].shape == (32, 32, 3)
    assert read_manifest(pack) == m
    assert [p.name for p in root.iterdir()] == ["alice"]  # no temp folder left behind


def test_zip_pack_loads_from_a_top_level_folder_or_the_root(root: Path, tmp_path: Path) -> None:
    pack = make_pack(root)
    for prefix in ("", "alice/"):
        archive = tmp_path / f"z{len(prefix)}" / "alice.zip"
        archive.parent.mkdir()
        with zipfile.ZipFile(archive, "w") as zf:
            for f in pack.iterdir():
                zf.write(f, prefix + f.name)
        assert load_pack(archive).manifest == load_pack(pack).manifest


def test_write_is_atomic_and_refuses_to_clobber(root: Path) -> None:
    make_pack(root)
    with pytest.raises(AvatarPackError) as exc:
        make_pack(root)
    one_line(exc, "'alice' already exists", "veilcam avatar remove alice")
    # A pack that would not load is never installed, and its temp folder is gone.
    bad = pack_files(identity=np.zeros(99, np.float32))
    with pytest.raises(AvatarPackError):
        make_pack(root, "bob", bad)
    assert sorted(p.name for p in root.iterdir()) == ["alice"]
    # Replacing swaps the whole folder.
    files = pack_files(identity=np.ones(100, np.float32))
    manifest = new_manifest("alice", "photo", {"face": "face.npz", "albedo": "albedo.png"}, files, "preview.png")
    write_pack(root, manifest, files, replace=True)
    assert np.all(load_pack(root / "alice").arrays["face"]["identity"] == 1)
    assert sorted(p.name for p in root.iterdir()) == ["alice"]


@pytest.mark.parametrize(
    "edit, needles",
    [
        (lambda t: t.replace("schema = 1", "schema = [1"), ["manifest.toml is not valid TOML"]),
        (lambda t: t.replace('kind = "photo"\n', ""), ["manifest field 'kind' is missing"]),
        (lambda t: t.replace("version = 1", 'version = "one"'), ["'version' must be an integer"]),
        (lambda t: t.replace("schema = 1", "schema = 7"), ["schema 7 is newer", "update VeilCam"]),
        (lambda t: t.replace('name = "alice"', 'name = "../etc"'), ["'name'", "not a safe avatar name"]),
        (lambda t: t.replace('kind = "photo"', 'kind = "hologram"'), ["'hologram' is not a kind"]),
        (lambda t: t.replace('albedo = "albedo.png"', 'albedo = "../albedo.png"'), ["photo.albedo", "not a plain file name"]),
        (lambda t: t.replace('albedo = "albedo.png"', 'albedo = "face.npz"'), ["photo.albedo", "must be a .png file"]),
        (lambda t: t.replace('albedo = "albedo.png"\n', ""), ["'photo.albedo' is missing"]),
        (lambda t: t.replace('preview = "preview.png"', 'preview = "other.png"'), ["preview other.png is not in [[files]]"]),
        (lambda t: t.replace("size = ", "size = -", 1), ["size must be between"]),
        (lambda t: "extra = 1\n" + t, ["unknown field 'extra'"]),
        (lambda t: t + "extra = 1\n", ["[[files]] entry 3 has unknown field 'extra'"]),
    ],
)
def test_bad_manifest(root: Path, edit, needles: list[str]) -> None:
    pack = make_pack(root)
    rewrite_manifest(pack, edit)
    with pytest.raises(AvatarPackError) as exc:
        read_manifest(pack)
    one_line(exc, str(pack), *needles)


def test_missing_manifest(root: Path) -> None:
    pack = make_pack(root)
    (pack / MANIFEST).unlink()
    with pytest.raises(AvatarPackError) as exc:
        load_pack(pack)
    one_line(exc, "manifest.toml is missing")


def test_wrong_checksum(root: Path) -> None:
    pack = make_pack(root)
    data = bytearray((pack / "albedo.png").read_bytes())
    data[-20] ^= 0xFF  # same size, different bytes
    path = pack / "albedo.png"
    path.write_bytes(bytes(data))
    read_manifest(pack)  # sizes still agree: only the full load hashes
    with pytest.raises(AvatarPackError) as exc:
        load_pack(pack)
    one_line(exc, "albedo.png does not match its sha256")


def test_truncated_file(root: Path) -> None:
    pack = make_pack(root)
    path = pack / "face.npz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AvatarPackError) as exc:
        read_manifest(pack)
    one_line(exc, "face.npz has", "truncated")
    # Truncated with a manifest that agrees: the content check still catches it.
    relist(pack, "face.npz", data[: len(data) // 2])
    with pytest.raises(AvatarPackError) as exc:
        load_pack(pack)
    one_line(exc, "face.npz", "truncated or corrupt")


def test_truncated_png(root: Path) -> None:
    pack = make_pack(root)
    data = (pack / "albedo.png").read_bytes()
    relist(pack, "albedo.png", data[: len(data) - 200])
    with pytest.raises(AvatarPackError) as exc:
        load_pack(pack)
    one_line(exc, "photo.albedo (albedo.png) cannot be decoded")


SKIN = np.array([200, 160, 140], np.uint8)


@pytest.mark.parametrize(
    "arrays, needles",
    [
        ({"identity": np.zeros(99, np.float32), "skin_rgb": SKIN}, ["array 'identity' is float32 (99,), expected float32 (100,)"]),
        ({"identity": np.zeros(100, np.float64), "skin_rgb": SKIN}, ["expected float32 (100,)"]),
        ({"identity": np.full(100, np.nan, np.float32), "skin_rgb": SKIN}, ["NaN or infinite"]),
        ({"identity": np.zeros(100, np.float32)}, ["has no array 'skin_rgb'"]),
        ({"coeffs": np.zeros(100, np.float32), "skin_rgb": SKIN}, ["unexpected array 'coeffs.npy'"]),
        ({"identity": np.zeros(100, np.float32), "skin_rgb": SKIN, "extra": np.zeros(3)}, ["unexpected array 'extra.npy'"]),
        ({"identity": np.zeros(10**6, np.float32), "skin_rgb": SKIN}, ["larger than a float32 array of shape (100,)"]),
        ({"identity": np.zeros(100, np.float32), "skin_rgb": SKIN, "hair_rgb": np.zeros(4, np.uint8)}, ["array 'hair_rgb' is uint8 (4,), expected uint8 (3,)"]),
        ({"identity": np.zeros(100, np.float32), "skin_rgb": SKIN, "hair_rgb": np.zeros(3, np.float32)}, ["expected uint8 (3,)"]),
        ({"identity": np.zeros(100, np.float32), "skin_rgb": SKIN, "rest_rotation": np.eye(4, dtype=np.float32)}, ["expected float32 (3, 3)"]),
    ],
)
def test_wrong_arrays(root: Path, arrays: dict[str, np.ndarray], needles: list[str]) -> None:
    pack = make_pack(root)
    relist(pack, "face.npz", encode_npz(arrays))
    with pytest.raises(AvatarPackError) as exc:
        load_pack(pack)
    one_line(exc, "photo.face (face.npz)", *needles)


def test_hair_colour_is_optional(root: Path) -> None:
    """Packs made before photo avatars read the hair colour still load (bald); newer ones carry it."""
    pack = make_pack(root)
    assert "hair_rgb" not in load_pack(pack).arrays["face"]
    hair = np.array([60, 40, 30], np.uint8)
    relist(pack, "face.npz", encode_npz({"identity": np.zeros(100, np.float32), "skin_rgb": SKIN, "hair_rgb": hair}))
    np.testing.assert_array_equal(load_pack(pack).arrays["face"]["hair_rgb"], hair)


def test_safetensors_arrays_are_checked_like_npz() -> None:
    import json
    import struct

    def safetensors(shape: tuple[int, ...], dtype: str = "F32") -> bytes:
        body = np.zeros(shape, np.float32).tobytes()
        header = json.dumps({"identity": {"dtype": dtype, "shape": list(shape), "data_offsets": [0, len(body)]}}).encode()
        return struct.pack("<Q", len(header)) + header + body

    specs = (ArraySpec("identity", (100,), "float32"),)
    where = PackContext(Path("p"))
    assert decode_arrays(safetensors((100,)), "w.safetensors", specs, "w", where)["identity"].shape == (100,)
    with pytest.raises(AvatarPackError, match=r"expected float32 \(100,\)"):
        decode_arrays(safetensors((4, 25)), "w.safetensors", specs, "w", where)
    with pytest.raises(AvatarPackError, match="not a readable .safetensors"):
        decode_arrays(safetensors((100,))[:-8], "w.safetensors", specs, "w", where)


def test_missing_preview(root: Path) -> None:
    pack = make_pack(root)
    (pack / "preview.png").unlink()
    with pytest.raises(AvatarPackError) as exc:
        read_manifest(pack)
    one_line(exc, "preview.png is missing")
    # Not even listed:
    pack = make_pack(root, "bob")
    rewrite_manifest(pack, lambda t: t.replace('preview = "preview.png"\n', ""))
    with pytest.raises(AvatarPackError) as exc:
        read_manifest(pack)
    one_line(exc, "manifest field 'preview' is missing")


def test_preview_must_be_a_png_of_sane_size(root: Path) -> None:
    pack = make_pack(root)
    relist(pack, "preview.png", encode_png(np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(AvatarPackError) as exc:
        load_pack(pack)
    one_line(exc, "preview preview.png is 4x4", "16-2048")
    relist(pack, "preview.png", b"GIF89a" + bytes(100))
    with pytest.raises(AvatarPackError) as exc:
        load_pack(pack)
    one_line(exc, "preview preview.png is not a PNG image")


def test_symlink_in_pack_folder(root: Path, tmp_path: Path) -> None:
    pack = make_pack(root)
    outside = tmp_path / "secret.png"
    outside.write_bytes((pack / "albedo.png").read_bytes())
    (pack / "albedo.png").unlink()
    (pack / "albedo.png").symlink_to(outside)
    with pytest.raises(AvatarPackError) as exc:
        read_manifest(pack)
    one_line(exc, "albedo.png is a symlink")


def _zip_with(tmp_path: Path, pack: Path, extra: zipfile.ZipInfo | None = None, data: bytes = b"x") -> Path:
    archive = tmp_path / "evil" / "alice.zip"
    archive.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in pack.iterdir():
            zf.write(f, f.name)
        if extra is not None:
            extra.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(extra, data)
    return archive


@pytest.mark.parametrize(
    "entry, needles",
    [
        ("../evil.png", ["'../evil.png'", "path traversal"]),
        ("sub/../../evil.png", ["path traversal"]),
        ("/etc/evil.png", ["absolute path"]),
        ("C:/evil.png", ["absolute path"]),
        ("sub\\evil.png", ["path traversal"]),
    ],
)
def test_zip_with_unsafe_path(root: Path, tmp_path: Path, entry: str, needles: list[str]) -> None:
    archive = _zip_with(tmp_path, make_pack(root), zipfile.ZipInfo(entry))
    with pytest.raises(AvatarPackError) as exc:
        read_manifest(archive)
    one_line(exc, str(archive), *needles, "may be malicious")


def test_zip_with_symlink(root: Path, tmp_path: Path) -> None:
    link = zipfile.ZipInfo("link.png")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = _zip_with(tmp_path, make_pack(root), link, b"/etc/passwd")
    with pytest.raises(AvatarPackError) as exc:
        read_manifest(archive)
    one_line(exc, "'link.png' is a symlink")


def test_zip_bomb(root: Path, tmp_path: Path) -> None:
    archive = _zip_with(tmp_path, make_pack(root), zipfile.ZipInfo("pad.bin"), bytes(64 << 20))
    with pytest.raises(AvatarPackError) as exc:
        read_manifest(archive)
    one_line(exc, "'pad.bin' inflates", "zip bomb")


def test_zip_without_manifest(tmp_path: Path) -> None:
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/readme.txt", "hi")
        zf.writestr("b/readme.txt", "hi")
    with pytest.raises(AvatarPackError) as exc:
        read_manifest(archive)
    one_line(exc, "no manifest.toml")
    archive.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(AvatarPackError) as exc:
        read_manifest(archive)
    one_line(exc, "not a readable zip archive")


# -- the catalog ----------------------------------------------------------------
@pytest.fixture
def data_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data" / "veilcam" / "avatars"


def test_listing_shows_packs_after_builtins_and_broken_packs_with_their_error(data_home: Path) -> None:
    make_pack(data_home, "alice", description="my avatar")
    broken = make_pack(data_home, "bob")
    (broken / "albedo.png").unlink()
    make_pack(data_home, "porcelain")  # shadows a built-in
    (data_home / "notes.txt").write_text("not a pack")
    (data_home / ".tmp-carol-123").mkdir()  # a write in progress

    avatars = list_avatars()
    kinds = [a.kind for a in avatars]
    assert kinds.index("photo") > max(i for i, k in enumerate(kinds) if k == "mask")
    packs = {a.name: a for a in avatars if a.pack_dir is not None}
    assert set(packs) == {"alice", "bob", "porcelain"}
    assert packs["alice"].description == "my avatar" and packs["alice"].error is None
    assert "albedo.png is missing" in packs["bob"].error
    assert "name of a built-in avatar" in packs["porcelain"].error
    assert find_avatar("alice").pack_dir == data_home / "alice"
    assert find_avatar("porcelain").kind == "mask"  # the built-in wins
    with pytest.raises(AvatarPackError) as exc:
        find_avatar("bob")
    one_line(exc, "albedo.png is missing")


def test_pack_in_a_renamed_folder_is_listed_as_broken(data_home: Path) -> None:
    pack = make_pack(data_home, "alice")
    pack.rename(data_home / "alicia")
    entry = next(a for a in list_avatars() if a.name == "alicia")
    assert "rename it to alice" in entry.error


def test_build_renderer_refuses_a_corrupt_pack_before_building(data_home: Path) -> None:
    """A pack whose manifest lists fine but whose data is corrupt fails in build_renderer, as one error and before any GL work."""
    pack = make_pack(data_home, "alice")
    entry = find_avatar("alice")
    path = pack / "face.npz"
    data = bytearray(path.read_bytes())
    data[-30] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(VeilCamError) as exc:
        build_renderer(entry, Config(), store=None)  # type: ignore[arg-type]
    one_line(exc, "face.npz does not match its sha256")


@pytest.mark.parametrize("rotation", [2 * np.eye(3), np.diag([1.0, 1.0, -1.0]), np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])])
def test_build_renderer_refuses_a_rest_rotation_that_is_not_a_small_turn(data_home: Path, rotation: np.ndarray) -> None:
    """A scaled or mirrored matrix, or a 90 degree turn, is no rest correction: one error, before any GL work."""
    files = pack_files()
    face = dict(np.load(io.BytesIO(files["face.npz"])))
    files["face.npz"] = encode_npz({**face, "rest_rotation": rotation.astype(np.float32)})
    make_pack(data_home, "alice", files)
    with pytest.raises(VeilCamError) as exc:
        build_renderer(find_avatar("alice"), Config(), store=None)  # type: ignore[arg-type]
    one_line(exc, "face.npz", "rest_rotation is not a rotation of at most 15 degrees", "veilcam avatar create --force")


def test_remove_pack(root: Path) -> None:
    pack = make_pack(root)
    ap.remove_pack(pack)
    assert list(root.iterdir()) == []


def test_installed_zip_pack_is_listed_and_loads(data_home: Path, tmp_path: Path) -> None:
    pack = make_pack(tmp_path / "made", "carol")
    data_home.mkdir(parents=True)
    with zipfile.ZipFile(data_home / "carol.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for f in pack.iterdir():
            zf.write(f, f"carol/{f.name}")
    entry = find_avatar("carol")
    assert entry.kind == "photo" and entry.pack_dir == data_home / "carol.zip"
    assert load_pack(entry.pack_dir).manifest.name == "carol"
    ap.remove_pack(entry.pack_dir)
    assert "carol" not in [a.name for a in list_avatars()]
