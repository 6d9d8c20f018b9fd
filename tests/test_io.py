
import numpy as np
import pytest
from PIL import Image

from codec import io


def test_rgb_array_round_trip(photo):
    pic = io.load(photo)
    assert pic.mode == "RGB" and pic.alpha is None and np.array_equal(pic.rgb, photo)


@pytest.mark.parametrize("mode,expect", [("L", "L"), ("LA", "LA"), ("RGBA", "RGBA"),
                                         ("P", "RGB"), ("CMYK", "RGB"), ("1", "L"),
                                         ("YCbCr", "RGB")])
def test_modes_map_to_what_decode_gives_back(photo, mode, expect):
    im = Image.fromarray(photo).convert(mode)
    pic = io.load(im)
    assert pic.mode == expect
    assert pic.rgb.shape == (photo.shape[0], photo.shape[1], 3)
    assert (pic.alpha is not None) == (expect in ("RGBA", "LA"))


def test_palette_with_transparency_keeps_alpha():
    im = Image.new("P", (4, 3))
    im.putpalette([0, 0, 0, 255, 0, 0] * 128)
    im.info["transparency"] = 0
    assert io.load(im).mode == "RGBA"


def test_16_bit_is_reduced_with_a_warning():
    a = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    with pytest.warns(UserWarning, match="16-bit"):
        pic = io.load(Image.fromarray(a))
    assert pic.mode == "L" and pic.bit_depth == 16
    assert pic.rgb[0, 1, 0] == round(5000 / 257)


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (6, 2), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW
    p = tmp_path / "o.jpg"
    im.save(p, exif=exif)
    assert io.load(p).rgb.shape == (6, 2, 3)


def test_not_an_image_is_a_clear_error(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("hello")
    with pytest.raises(io.ImageError, match="not an image"):
        io.load(p)
    with pytest.raises(io.ImageError, match="no such file"):
        io.load(tmp_path / "missing.png")


def test_pixel_limit(photo):
    with pytest.raises(io.ImageError, match="--max-pixels"):
        io.load(photo, max_pixels=100)


def test_alpha_png_is_lossless():
    a = np.random.default_rng(0).integers(0, 256, (7, 5)).astype(np.uint8)
    assert np.array_equal(io.png_plane(io.png_bytes(a), 5, 7), a)


def test_psnr():
    a = np.zeros((4, 4), np.uint8)
    assert io.psnr(a, a) == float("inf")
    b = a.copy()
    b[0, 0] = 16
    assert io.psnr(a, b) == pytest.approx(10 * np.log10(255 ** 2 / 16.0))
