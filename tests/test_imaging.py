"""Input rules: PNG/JPEG/WebP by content, bad input, bombs, EXIF orientation, colour modes."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from bgcut_nb.contract.errors import INVALID_IMAGE_DETAIL, InvalidImageError
from bgcut_nb.engine.imaging import decode_image, load_image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def halves(size=(40, 20), left=(255, 0, 0), right=(0, 0, 255)) -> Image.Image:
    image = Image.new("RGB", size, right)
    image.paste(left, (0, 0, size[0] // 2, size[1]))
    return image


def png_with_header_size(width: int, height: int) -> bytes:
    """A tiny real PNG whose header claims ``width`` x ``height`` (a decompression bomb)."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def png16(pixels: np.ndarray, color_type: int) -> bytes:
    """A real 16-bit-per-channel PNG (colour type 2 = RGB, 6 = RGBA), which Pillow cannot write."""
    height, width = pixels.shape[:2]
    raw = b"".join(b"\0" + pixels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


GOOD_JPEG = encode(halves(), "JPEG")

BAD_INPUTS = [
    ("empty", b"", "Missing image"),
    ("text", b"hello, this is not an image", INVALID_IMAGE_DETAIL),
    ("gif", encode(Image.new("RGB", (8, 8)), "GIF"), INVALID_IMAGE_DETAIL),
    ("bmp", encode(Image.new("RGB", (8, 8)), "BMP"), INVALID_IMAGE_DETAIL),
    ("tiff", encode(Image.new("RGB", (8, 8)), "TIFF"), INVALID_IMAGE_DETAIL),
    ("jpeg cut in its header", GOOD_JPEG[: len(GOOD_JPEG) // 2], "corrupt or truncated"),
    ("jpeg cut in its data", GOOD_JPEG[: len(GOOD_JPEG) - 40], "JPG data is corrupt"),
    ("png signature only", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "corrupt or truncated"),
    ("bomb", png_with_header_size(100_000, 100_000), "too large"),
]


@pytest.mark.parametrize(
    ("data", "needle"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_is_a_400_naming_the_cause(data, needle):
    with pytest.raises(InvalidImageError) as info:
        decode_image(data)
    assert info.value.status == 400
    assert needle in str(info.value.detail)


def test_pixel_limit_is_configurable():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    assert decode_image(data, max_pixels=10_000).size == (100, 100)
    with pytest.raises(InvalidImageError, match="10,000 pixels exceeds the limit of 9,999"):
        decode_image(data, max_pixels=9_999)


def test_format_is_detected_from_content_not_name(tmp_path):
    path = tmp_path / "photo.gif"  # a JPEG with a misleading name
    path.write_bytes(GOOD_JPEG)
    assert load_image(path).size == (40, 20)
    fake = tmp_path / "photo.jpg"
    fake.write_bytes(encode(Image.new("RGB", (8, 8)), "BMP"))
    with pytest.raises(InvalidImageError, match="Invalid image format"):
        load_image(fake)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = decode_image(encode(halves(), "JPEG", exif=exif, quality=95))
    pixels = np.asarray(image).astype(int)
    red, blue = np.array([255, 0, 0]), np.array([0, 0, 255])
    if orientation == 3:  # 180 degrees: red moves to the right half
        assert image.size == (40, 20)
        assert np.abs(pixels[10, 35] - red).max() < 40 and np.abs(pixels[10, 5] - blue).max() < 40
    else:  # 6 = rotate 90 clockwise (red on top), 8 = 90 counter-clockwise (red at bottom)
        assert image.size == (20, 40)
        top, bottom = pixels[5, 10], pixels[35, 10]
        first, second = (red, blue) if orientation == 6 else (blue, red)
        assert np.abs(top - first).max() < 40 and np.abs(bottom - second).max() < 40


def test_cmyk_jpeg_becomes_rgb_with_the_right_colours():
    cmyk = Image.new("CMYK", (16, 16), (255, 0, 0, 0))  # pure cyan ink
    image = decode_image(encode(cmyk, "JPEG", quality=95))
    assert image.mode == "RGB"
    r, g, b = np.asarray(image)[8, 8].astype(int)
    assert r < 30 and g > 225 and b > 225


def test_16_bit_greyscale_keeps_its_range():
    ramp = np.linspace(0, 65535, 256, dtype=np.uint16).reshape(16, 16)
    image = decode_image(encode(Image.fromarray(ramp), "PNG"))
    values = np.asarray(image)[..., 0].astype(int).ravel()
    assert values[0] == 0 and values[-1] == 255
    assert np.all(np.diff(values) >= 0) and 120 <= values[128] <= 135  # not clipped to white


def test_16_bit_rgb_and_rgba_are_scaled_to_8_bit():
    rgb = np.zeros((4, 4, 3), np.uint16)
    rgb[..., 0], rgb[..., 1] = 65535, 32896
    assert decode_image(png16(rgb, 2)).getpixel((0, 0)) == (255, 128, 0)
    rgba = np.zeros((4, 4, 4), np.uint16)
    rgba[..., 2] = 65535
    rgba[2:, :, 3] = 65535
    image = decode_image(png16(rgba, 6))
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0 and image.getpixel((0, 3)) == (0, 0, 255, 255)


def test_palette_with_transparency_keeps_its_alpha():
    pal = Image.new("P", (10, 10), 0)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(1, (0, 0, 5, 10))
    image = decode_image(encode(pal, "PNG", transparency=1))
    assert image.mode == "RGBA"
    rgba = np.asarray(image)
    assert rgba[5, 2, 3] == 0 and tuple(rgba[5, 7]) == (255, 0, 0, 255)


def test_la_and_webp_alpha_are_kept_and_opaque_alpha_is_dropped():
    la = Image.new("LA", (10, 10), (128, 255))
    la.paste((200, 0), (0, 0, 5, 10))
    rgba = np.asarray(decode_image(encode(la, "PNG")))
    assert (
        rgba.shape == (10, 10, 4)
        and rgba[0, 0, 3] == 0
        and tuple(rgba[0, 9]) == (128,) * 3 + (255,)
    )
    webp = Image.new("RGBA", (10, 10), (0, 255, 0, 255))
    webp.paste((0, 0, 0, 0), (0, 0, 5, 10))
    assert np.asarray(decode_image(encode(webp, "WEBP", lossless=True)))[0, 0, 3] == 0
    opaque = Image.new("RGBA", (4, 4), (1, 2, 3, 255))
    assert decode_image(encode(opaque, "PNG")).mode == "RGB"


def test_srgb_tagged_image_is_unchanged():
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = halves((8, 8), (200, 100, 50), (10, 20, 30))
    image = decode_image(encode(source, "PNG", icc_profile=srgb))
    assert np.array_equal(np.asarray(image), np.asarray(source))


def test_load_image_accepts_arrays_and_pil_images():
    array = np.zeros((6, 9, 3), dtype=np.uint8)
    assert load_image(array).size == (9, 6)
    assert load_image(np.ones((6, 9), dtype=np.float32)).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(Image.new("L", (3, 4))).mode == "RGB"
    with pytest.raises(InvalidImageError, match="not found"):
        load_image("/nonexistent/photo.jpg")
