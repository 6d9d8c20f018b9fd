import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec import container
from codec.container import ContainerError, Header


def sample(width=64, height=48, streams=(b"zzzz", b"yyyyyyyy")):
    h = Header(width=width, height=height, mode="RGB", model="m-1", weights=b"01234567",
               quality=3.5, recon_crc=1234)
    return container.pack(h, list(streams))


def test_pack_unpack_round_trip():
    data = sample()
    header, streams = container.unpack(data)
    assert (header.width, header.height, header.mode, header.model) == (64, 48, "RGB", "m-1")
    assert header.weights == b"01234567" and header.quality == 3.5 and header.recon_crc == 1234
    assert streams == [b"zzzz", b"yyyyyyyy"]


@pytest.mark.parametrize("cut", range(0, 80))
def test_every_truncation_is_a_clear_error(cut):
    data = sample()
    if cut >= len(data):
        return
    with pytest.raises(ContainerError):
        container.unpack(data[:cut])


def test_every_flipped_bit_is_detected():
    data = sample()
    for i in range(len(data) * 8):
        bad = bytearray(data)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(ContainerError):
            container.unpack(bytes(bad))


def test_wrong_magic():
    with pytest.raises(ContainerError, match="not an aecodec file"):
        container.unpack(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)


def test_newer_version_names_both_versions():
    data = bytearray(sample())
    data[4] = container.FORMAT_VERSION + 1
    with pytest.raises(ContainerError, match="version 2, newer"):
        container.unpack(bytes(data))


def _with_dims(data: bytes, w: int, h: int) -> bytes:
    hlen = struct.unpack_from("<H", data, 5)[0]
    b = bytearray(data)
    struct.pack_into("<II", b, 11, w, h)
    struct.pack_into("<I", b, hlen - 4, zlib.crc32(bytes(b[: hlen - 4])))
    return bytes(b)


def test_huge_dimensions_refused_before_decoding():
    data = _with_dims(sample(), 10**6, 10**6)
    with pytest.raises(ContainerError, match="over the limit.*--max-pixels"):
        container.unpack(data)
    assert container.parse_header(data, max_pixels=None)[0].width == 10**6


def _with_flags(data: bytes, flags: int) -> bytes:
    hlen = struct.unpack_from("<H", data, 5)[0]
    b = bytearray(data)
    b[10] = flags
    struct.pack_into("<I", b, hlen - 4, zlib.crc32(bytes(b[: hlen - 4])))
    return bytes(b)


def test_flags_carry_the_synthesis_precision():
    assert container.unpack(sample())[0].precision == "fp32"
    header, _ = container.unpack(_with_flags(sample(), container.FLAG_BF16))
    assert header.precision == "bf16" and header.to_dict()["precision"] == "bf16"


def test_unknown_flags_refused():
    with pytest.raises(ContainerError, match="flags 0x82 .*upgrade aecodec"):
        container.unpack(_with_flags(sample(), 0x82))


@pytest.mark.parametrize("views", [1, 2, 4, 8])
def test_flags_carry_the_post_filter_views(views):
    flags = container.FLAG_POST | container.FLAG_ROWS | container.views_flags(views)
    header, _ = container.unpack(_with_flags(sample(), flags))
    assert header.post_views == views and header.to_dict()["post_views"] == views
    assert container.views_flags(views) & ~container.FLAG_VIEWS == 0


@pytest.mark.parametrize("flags", [container.views_flags(2), container.FLAG_POST | container.views_flags(4),
                                   container.FLAG_ROWS | container.views_flags(8)])
def test_views_without_a_row_split_post_filter_refused(flags):
    with pytest.raises(ContainerError, match="views without a row-split post-filter"):
        container.unpack(_with_flags(sample(), flags))


def test_trailing_bytes_refused():
    with pytest.raises(ContainerError, match="trailing"):
        container.unpack(sample() + b"x")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes_never_crash(blob):
    try:
        container.unpack(blob)
    except ContainerError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10_000), st.binary(min_size=1, max_size=4))
def test_fuzz_spliced_bytes_are_detected(pos, junk):
    data = sample()
    pos %= len(data)
    bad = data[:pos] + junk + data[pos + len(junk):]
    if bad == data:
        return
    with pytest.raises(ContainerError):
        container.unpack(bad)
