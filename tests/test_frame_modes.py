"""Frame files of every PIL mode a file can hold, read by the one frame reader (``frame_check.read_frame``)
that the data-set check, the loaders, the predictor and ``tools/extract_features.py`` share; and symbolic
links inside tracklet folders. Each frame is a real file written with PIL, a few pixels wide.

Modes no file format gives Pillow back (HSV, RGBX, RGBa, La, I;16N; I;16L comes back as I;16) are not
written: the readers never meet them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastreid_vld.data import build as data_build
from fastreid_vld.data.datasets import VCM, DatasetFormatError
from fastreid_vld.data.frame_check import FrameReadError, read_frame
from fastreid_vld.data.synthetic import SyntheticSize, write_vcm
from fastreid_vld.data.tracklet_folders import TrackletFolderError, find_tracklet_folders

SIZE = (3, 4)  # (W, H) of the frames written
#: 16-bit grey levels and their high bytes
LEVELS = np.array([[0, 255, 256], [257, 1000, 32767], [32768, 40000, 65280], [65534, 65535, 12345]], np.uint16)


def random_image(mode: str, seed: int = 0) -> Image.Image:
    """An image of ``mode`` with random 8-bit channels (a random palette for P and PA)."""
    rng = np.random.default_rng(seed)
    image = Image.new(mode, SIZE)
    bands = len(image.getbands())
    image.frombytes(rng.integers(0, 256, SIZE[0] * SIZE[1] * bands, dtype=np.uint8).tobytes())
    if mode in ("P", "PA"):
        image.putpalette(rng.integers(0, 256, 256 * 3, dtype=np.uint8).tobytes())
    return image


def written(image: Image.Image, path: Path, mode: str, **options) -> str:
    """``image`` saved to ``path`` (the format by its suffix), checked to come back as ``mode``."""
    image.save(path, **options)
    with Image.open(path) as back:
        assert back.mode == mode, f"{path} came back as {back.mode}, not {mode}"
    return str(path)


def grey16(levels: np.ndarray, mode: str = "I;16") -> Image.Image:
    """A 16-bit grey image of ``levels`` ([H, W]) in ``mode`` (I;16 little-endian, I;16B big-endian)."""
    order = ">u2" if mode == "I;16B" else "<u2"
    return Image.frombytes(mode, levels.shape[::-1], levels.astype(order).tobytes())


def on_black(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """[H, W, 3] colours composited on black by [H, W] opacities: round(colour * alpha / 255)."""
    return np.round(rgb.astype(float) * alpha[..., None] / 255).astype(np.uint8)


@pytest.mark.parametrize("mode, suffix", [("1", "png"), ("L", "png"), ("P", "png"), ("RGB", "png"),
                                          ("CMYK", "tif"), ("YCbCr", "tif"), ("LAB", "tif")])
def test_8_bit_modes_convert_as_pillow_converts_them(tmp_path, mode, suffix):
    source = random_image(mode)
    frame = written(source, tmp_path / f"frame.{suffix}", mode)
    assert np.array_equal(np.asarray(read_frame(frame)), np.asarray(source.convert("RGB")))


def test_lab_and_cmyk_frames_are_colours_not_their_raw_bands(tmp_path):
    grey_lab = Image.new("LAB", SIZE, (255, 128, 128))  # L* 100, a* = b* = 0: white
    assert np.asarray(read_frame(written(grey_lab, tmp_path / "lab.tif", "LAB"))).min() >= 250
    red_cmyk = Image.new("CMYK", SIZE, (0, 255, 255, 0))
    assert read_frame(written(red_cmyk, tmp_path / "cmyk.tif", "CMYK")).getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize("mode, suffix, read_as", [("I;16", "png", "I;16"), ("I;16", "tif", "I;16"),
                                                   ("I;16B", "tif", "I;16B"), ("I;16", "pgm", "I")])
def test_16_bit_grey_frames_keep_their_high_byte(tmp_path, mode, suffix, read_as):
    frame = written(grey16(LEVELS, mode), tmp_path / f"frame.{suffix}", read_as)  # a 16-bit PGM reads as I
    rgb = np.asarray(read_frame(frame))
    assert np.array_equal(rgb, np.repeat((LEVELS >> 8).astype(np.uint8)[..., None], 3, axis=-1))
    assert rgb[2, 0, 0] == 128 and rgb[3, 1, 0] == 255 and rgb[0, 1, 0] == 0  # 32768, 65535, 255


def test_two_16_bit_persons_give_different_frames(tmp_path):
    """The issue's case: two infrared frames above 255 everywhere, clipped to the same white by
    Pillow's conversion, stay two different frames through the loaders' reader."""
    first, second = LEVELS | 0x4000, LEVELS[::-1] | 0x4000
    frames = [written(grey16(levels), tmp_path / f"{name}.png", "I;16")
              for name, levels in (("first", first), ("second", second))]
    with Image.open(frames[0]) as one, Image.open(frames[1]) as other:
        assert np.array_equal(np.asarray(one.convert("RGB")), np.asarray(other.convert("RGB")))  # both white
    images = data_build.read_frames(frames, (8, 6))  # [2, 3, 8, 6] float 0..255
    assert not images[0].equal(images[1])
    assert images.min() >= 0x4000 >> 8


@pytest.mark.parametrize("mode, suffix", [("RGBA", "png"), ("LA", "png"), ("PA", "tif")])
def test_an_alpha_band_is_composited_on_black(tmp_path, mode, suffix):
    source = random_image(mode)
    alpha = np.asarray(source.getchannel("A")).copy()
    alpha[0, :3] = (0, 128, 255)
    source.putalpha(Image.fromarray(alpha))
    rgb = np.asarray(read_frame(written(source, tmp_path / f"frame.{suffix}", mode)))
    colours = np.asarray(source.convert("RGB"))
    assert np.array_equal(rgb, on_black(colours, alpha))
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[0, 2].tolist() == colours[0, 2].tolist()  # clear, opaque


@pytest.mark.parametrize("mode", ["P", "L", "RGB", "I;16"])
def test_a_transparent_colour_is_black(tmp_path, mode):
    """PNG's other transparency (tRNS): one palette index, grey level or colour stands for clear."""
    source = grey16(LEVELS) if mode == "I;16" else random_image(mode)
    clear = source.getpixel((1, 2))
    rgb = np.asarray(read_frame(written(source, tmp_path / "frame.png", mode, transparency=clear)))
    is_clear = np.asarray(source) == clear
    is_clear = is_clear.all(axis=-1) if is_clear.ndim == 3 else is_clear
    opaque = np.asarray(read_frame(written(source, tmp_path / "opaque.png", mode)))
    assert is_clear[2, 1] and np.array_equal(rgb, on_black(opaque, np.where(is_clear, 0, 255)))


@pytest.mark.parametrize("dtype, mode, found", [
    (np.float32, "F", "mode F: 32-bit floating point, with no fixed range to map to 0..255"),
    (np.int32, "I", "mode I: 32-bit (or signed 16-bit) integers, with no fixed range to map to 0..255"),
    (np.int16, "I", "mode I: 32-bit (or signed 16-bit) integers")], ids=["F", "I-int32", "I-int16"])
def test_frames_of_no_fixed_range_are_refused_naming_file_and_mode(tmp_path, dtype, mode, found):
    frame = written(Image.fromarray(LEVELS.astype(dtype)), tmp_path / "frame.tif", mode)
    with pytest.raises(FrameReadError, match=re.escape(f"{frame}: expected a readable JPEG frame ({found}")) as error:
        read_frame(frame)
    assert error.value.reason.startswith(found)
    assert str(error.value).endswith("frames are read from 8-bit channels or 16-bit unsigned grey levels (I;16); "
                                     "save them as 8-bit JPEG / PNG or 16-bit PNG)")


def vcm_with(tmp_path: Path, frames: dict[str, Image.Image]) -> Path:
    """A small HITSZ-VCM under ``tmp_path`` whose test frames ``Test/0003/ir/D1/<name>`` hold ``frames``
    (TIFF or PNG content under the data set's .jpg names: Pillow reads files by their content)."""
    root = write_vcm(tmp_path / "HITSZ-VCM", SyntheticSize(train_ids=2, test_ids=2, cameras=1, min_frames=4,
                                                            max_frames=4))
    for name, image in frames.items():
        image.save(root / "Test" / "0003" / "ir" / "D1" / name, format="TIFF")
    return root


def test_the_data_set_check_refuses_a_float_frame_and_reads_16_bit_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTREID_VLD_CACHE", str(tmp_path / "cache"))
    root = vcm_with(tmp_path, {"2.jpg": grey16(LEVELS), "3.jpg": Image.fromarray(LEVELS.astype(np.float32))})
    refused = root / "Test" / "0003" / "ir" / "D1" / "3.jpg"
    expected = f"{refused}: expected a decodable image: a frame of infrared tracklet of identity 3, camera 1"
    with pytest.raises(DatasetFormatError, match=re.escape(f"{expected}, found 'mode F: ")):
        VCM(root=str(tmp_path), min_frames=1)
    Image.new("L", SIZE, 7).save(refused, format="JPEG")
    VCM(root=str(tmp_path), min_frames=1)  # the 16-bit frame passes the check
    images = data_build.read_frames([str(root / "Test" / "0003" / "ir" / "D1" / "2.jpg")], LEVELS.shape)
    assert images[0, 0].to(int).tolist() == (LEVELS >> 8).tolist()


def test_frames_remembered_by_an_older_reader_are_read_again(tmp_path, monkeypatch):
    """The decoded-frames cache vouches for frames by size and modification time; one written before
    the mode policy (a plain {frame: [size, mtime]}) vouches for nothing."""
    monkeypatch.setenv("FASTREID_VLD_CACHE", str(tmp_path / "cache"))
    root = vcm_with(tmp_path, {"3.jpg": Image.fromarray(LEVELS.astype(np.float32))})
    with pytest.raises(DatasetFormatError, match="mode F"):
        VCM(root=str(tmp_path), min_frames=1)
    (cache_file,) = (tmp_path / "cache").iterdir()
    remembered = json.loads(cache_file.read_text())["frames"]
    refused = str(root / "Test" / "0003" / "ir" / "D1" / "3.jpg")
    assert refused not in remembered and len(remembered) == 4 * 2 * 4 - 1
    stat = os.stat(refused)
    cache_file.write_text(json.dumps({**remembered, refused: [stat.st_size, stat.st_mtime_ns]}))  # the old format
    with pytest.raises(DatasetFormatError, match="mode F"):
        VCM(root=str(tmp_path), min_frames=1)


def tracklet_tree(root: Path, names: tuple[str, ...] = ("cam1/track0", "cam1/track1")) -> Path:
    """Tracklet folders ``root/<name>`` of two small JPEG frames each."""
    for name in names:
        (root / name).mkdir(parents=True)
        for frame in (1, 2):
            Image.new("L", SIZE, frame).save(root / name / f"frame{frame}.jpg")
    return root


def test_extract_features_input_reads_frames_by_the_same_policy(tmp_path):
    root = tracklet_tree(tmp_path / "mine")
    refused = root / "cam1" / "track1" / "frame2.jpg"
    os.replace(written(Image.fromarray(LEVELS.astype(np.float32)), refused.with_suffix(".tif"), "F"), refused)
    frame_lists = [t.frames for t in find_tracklet_folders(root)]
    frames = data_build.FrameListSet(frame_lists, seq_len=2, frame_rule="chunk_first", size=(4, 3))
    assert frames[0]["images"].shape == (2, 3, 4, 3)
    assert frames[1]["error"].startswith(f"{refused}: expected a readable JPEG frame (mode F: 32-bit floating point")


@pytest.mark.parametrize("target", [".", "..", "ROOT"])
def test_a_symlink_loop_is_one_error_naming_the_link(tmp_path, target):
    root = tracklet_tree(tmp_path / "mine")
    link = root / "cam1" / "track0" / "again"
    os.symlink(root if target == "ROOT" else target, link)
    looped = (link.parent / target).resolve() if target != "ROOT" else root.resolve()
    with pytest.raises(TrackletFolderError, match=re.escape(f"{link}: expected a folder, found a symbolic-link "
                                                            f"loop: it leads back to {looped}, a folder it is in")):
        find_tracklet_folders(root)


def test_links_to_folders_elsewhere_are_followed_at_any_depth(tmp_path):
    elsewhere = tracklet_tree(tmp_path / "elsewhere", ("one/t0", "cam9/t1", "cam9/t2"))
    root = tracklet_tree(tmp_path / "mine", ("cam1/track0",))
    os.symlink(elsewhere / "one" / "t0", root / "cam1" / "linked")
    os.symlink(elsewhere / "cam9", root / "cam2")
    found = {t.name: t.frames for t in find_tracklet_folders(root)}
    assert list(found) == ["cam1/linked", "cam1/track0", "cam2/t1", "cam2/t2"]
    assert found["cam2/t2"] == (str(root / "cam2" / "t2" / "frame1.jpg"), str(root / "cam2" / "t2" / "frame2.jpg"))


def test_links_that_lead_nowhere_are_one_error_naming_them(tmp_path):
    root = tracklet_tree(tmp_path / "mine")
    frame, folder = root / "cam1" / "track0" / "frame3.jpg", root / "cam1" / "track2"
    os.symlink(tmp_path / "gone.jpg", frame)
    os.symlink(tmp_path / "gone", folder)
    with pytest.raises(TrackletFolderError, match=re.escape(
            f"{folder}: expected a frame or a folder, found a symbolic link that leads nowhere "
            f"(to {tmp_path / 'gone'}); 2 such links: {folder}, {frame}")):
        find_tracklet_folders(root)
