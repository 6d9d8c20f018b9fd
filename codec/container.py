"""The .aec container: pure ``struct``, no torch (see docs/FORMAT.md).

Layout, little-endian::

    magic        4s   b"\\x89AEC"
    version      B    FORMAT_VERSION
    header_len   H    bytes from the magic up to and including header_crc
    latent_kind  B    0 scalar, 1 vq, 2 binary
    mode         B    0 RGB, 1 L, 2 RGBA, 3 LA
    bit_depth    B    bits per sample of the original image (8 or 16)
    flags        B    bit 0: synthesis ran in bfloat16 (else float32); bit 1:
                      scalar latent coded under the integer y tables; bit 2:
                      and in passes under the model's context model; bit 3:
                      the model's post-filter ran on the synthesis output; bit 4:
                      the synthesis ran on two row parts of each tile (else
                      layer by layer on halves of the channels); bits 5-6:
                      log2 of the post-filter's views (1, 2, 4 or 8); others 0
    width        I
    height       I
    quality      f    rate parameter the model was run at (float32)
    tile         H    tile side in units of 64 pixels; 0: one tile (the whole image)
    model_len    B    then model_len bytes of ASCII model id
    weights      8s   first 8 bytes of the SHA-256 of the weights file
    recon_crc    I    CRC32 of the encoder's reconstructed colour pixels
    n_streams    H    then n_streams x I stream lengths
    payload_crc  I    CRC32 of everything after the header
    header_crc   I    CRC32 of all header bytes before this field

The payload is the streams, concatenated in order.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import asdict, dataclass, field

MAGIC = b"\x89AEC"
FORMAT_VERSION = 1
LATENT_KINDS = ("scalar", "vq", "binary")
MODES = ("RGB", "L", "RGBA", "LA")
#: Decoders refuse images above this many pixels unless told otherwise.
DEFAULT_MAX_PIXELS = 100_000_000
MAX_STREAMS = 65535
#: flags bit: the synthesis transform ran in bfloat16 (decoders must too)
FLAG_BF16 = 1
#: flags bit: a scalar latent is coded grouped under the integer y tables
#: (latent_codecs.GaussianLatentCodec); clear: per-symbol Gaussians (0.1 files)
FLAG_Y_TABLES = 2
#: flags bit: the scalar latent is coded in passes, each under the model's
#: context model given the passes before (context.py); needs FLAG_Y_TABLES
FLAG_Y_CONTEXT = 4
#: flags bit: the model's post-filter (post.py) ran on the synthesis output
FLAG_POST = 8
#: flags bit: the synthesis (g_s, then any post-filter) ran whole on two
#: overlapping row parts of each tile (fast.run_rows); clear: layer by layer on
#: halves of the output channels (fast.TwoWay; earlier files)
FLAG_ROWS = 16
#: flags bits 5-6: log2 of the number of views the post-filter averaged
#: (post.VIEWS: the picture, its transpose, its mirror images, ...); 0: one
VIEWS_SHIFT = 5
FLAG_VIEWS = 3 << VIEWS_SHIFT
KNOWN_FLAGS = FLAG_BF16 | FLAG_Y_TABLES | FLAG_Y_CONTEXT | FLAG_POST | FLAG_ROWS | FLAG_VIEWS


def views_flags(views: int) -> int:
    """The flags bits of a post-filter averaging ``views`` views (1, 2, 4 or 8)."""
    return (views.bit_length() - 1) << VIEWS_SHIFT

_FIXED = struct.Struct("<4sBHBBBBIIfH")  # magic .. tile
_MIN_HEADER = _FIXED.size + 1 + 8 + 4 + 2 + 4 + 4


class ContainerError(ValueError):
    """The bytes are not a valid .aec file; the message says why."""


@dataclass
class Header:
    width: int
    height: int
    mode: str
    model: str
    weights: bytes
    quality: float
    latent_kind: str = "scalar"
    bit_depth: int = 8
    recon_crc: int = 0
    stream_lengths: list = field(default_factory=list)
    version: int = FORMAT_VERSION
    flags: int = 0
    tile: int = 0

    @property
    def precision(self) -> str:
        """The synthesis arithmetic the encoder used (flags bit 0)."""
        return "bf16" if self.flags & FLAG_BF16 else "fp32"

    @property
    def context(self) -> bool:
        """The latent is coded in passes under the model's context model (flags bit 2)."""
        return bool(self.flags & FLAG_Y_CONTEXT)

    @property
    def post(self) -> bool:
        """The model's post-filter ran on the synthesis output (flags bit 3)."""
        return bool(self.flags & FLAG_POST)

    @property
    def split(self) -> str:
        """How the synthesis was split across threads (flags bit 4): "rows" or "channels"."""
        return "rows" if self.flags & FLAG_ROWS else "channels"

    @property
    def post_views(self) -> int:
        """Views of the picture the post-filter averaged (flags bits 5-6): 1, 2, 4 or 8."""
        return 1 << ((self.flags & FLAG_VIEWS) >> VIEWS_SHIFT)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weights"] = self.weights.hex()
        d["precision"] = self.precision
        d["context"] = self.context
        d["post"] = self.post
        d["split"] = self.split
        d["post_views"] = self.post_views
        return d


def pack(header: Header, streams: list[bytes]) -> bytes:
    """Header + streams -> file bytes."""
    if len(streams) > MAX_STREAMS:
        raise ValueError("too many streams")
    model = header.model.encode("ascii")
    if len(model) > 255 or len(header.weights) != 8:
        raise ValueError("model id must be <= 255 ASCII bytes and weights hash 8 bytes")
    payload = b"".join(streams)
    header_len = _MIN_HEADER + len(model) + 4 * len(streams)
    head = _FIXED.pack(MAGIC, FORMAT_VERSION, header_len, LATENT_KINDS.index(header.latent_kind),
                       MODES.index(header.mode), header.bit_depth, header.flags,
                       header.width, header.height, header.quality, header.tile)
    head += bytes([len(model)]) + model + header.weights
    head += struct.pack("<IH", header.recon_crc, len(streams))
    head += struct.pack(f"<{len(streams)}I", *map(len, streams))
    head += struct.pack("<I", zlib.crc32(payload))
    head += struct.pack("<I", zlib.crc32(head))
    assert len(head) == header_len
    return head + payload


def header_length(prefix: bytes) -> int:
    """The header length announced by the first 7 bytes of a file."""
    if len(prefix) < 7 or prefix[:4] != MAGIC:
        raise ContainerError("not an aecodec file (bad magic bytes)")
    return struct.unpack_from("<H", prefix, 5)[0]


def parse_header(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[Header, int, int]:
    """Validate and parse a header from the first bytes of a file.

    -> (header, header_len, payload_crc). Checks the magic, version, header
    checksum and field ranges, and the pixel limit, without reading the
    payload (so ``info`` and Pillow's ``open`` stay cheap).
    """
    if len(data) < 4 or data[:4] != MAGIC:
        raise ContainerError("not an aecodec file (bad magic bytes)")
    if len(data) < 7:
        raise ContainerError("file is truncated inside the header")
    version, header_len = struct.unpack_from("<BH", data, 4)
    if version > FORMAT_VERSION:
        raise ContainerError(f"file uses format version {version}, newer than this aecodec "
                             f"reads ({FORMAT_VERSION}); upgrade aecodec")
    if version < 1:
        raise ContainerError(f"invalid format version {version}")
    if header_len < _MIN_HEADER:
        raise ContainerError("header is corrupt (bad header length)")
    if len(data) < header_len:
        raise ContainerError(f"file is truncated inside the header ({len(data)} of {header_len} bytes)")
    (hcrc,) = struct.unpack_from("<I", data, header_len - 4)
    if zlib.crc32(data[: header_len - 4]) != hcrc:
        raise ContainerError("header is corrupt (checksum mismatch)")
    (_, _, _, kind, mode, depth, flags, width, height, quality, tile) = _FIXED.unpack_from(data, 0)
    pos = _FIXED.size
    mlen = data[pos]
    pos += 1
    try:
        model = data[pos:pos + mlen].decode("ascii")
        weights = data[pos + mlen:pos + mlen + 8]
        pos += mlen + 8
        recon_crc, n = struct.unpack_from("<IH", data, pos)
        pos += 6
        lengths = list(struct.unpack_from(f"<{n}I", data, pos))
        pos += 4 * n
        (pcrc,) = struct.unpack_from("<I", data, pos)
        pos += 4
    except (UnicodeDecodeError, struct.error):
        raise ContainerError("header is corrupt (bad fields)") from None
    if pos + 4 != header_len or kind >= len(LATENT_KINDS) or mode >= len(MODES) \
            or depth not in (8, 16) or n > MAX_STREAMS or not model:
        raise ContainerError("header is corrupt (bad fields)")
    if flags & ~KNOWN_FLAGS:
        raise ContainerError(f"file uses flags {flags:#04x} this aecodec does not know; upgrade aecodec")
    if flags & FLAG_Y_CONTEXT and not (flags & FLAG_Y_TABLES and kind == 0):
        raise ContainerError("header is corrupt (context coding without a tabled scalar latent)")
    if flags & FLAG_VIEWS and not (flags & FLAG_POST and flags & FLAG_ROWS):
        raise ContainerError("header is corrupt (post-filter views without a row-split post-filter)")
    if width < 1 or height < 1:
        raise ContainerError(f"header claims an empty image ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ContainerError(f"image is {width}x{height} = {width * height} pixels, over the limit "
                             f"of {max_pixels}; pass --max-pixels to raise it")
    header = Header(width=width, height=height, mode=MODES[mode], model=model, weights=weights,
                    quality=quality, latent_kind=LATENT_KINDS[kind], bit_depth=depth,
                    recon_crc=recon_crc, stream_lengths=lengths, version=version, flags=flags,
                    tile=tile)
    return header, header_len, pcrc


def unpack(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[Header, list[bytes]]:
    """File bytes -> (header, streams), checking length and payload checksum."""
    header, hlen, pcrc = parse_header(data, max_pixels)
    total = hlen + sum(header.stream_lengths)
    if len(data) < total:
        raise ContainerError(f"file is truncated ({len(data)} of {total} bytes)")
    if len(data) > total:
        raise ContainerError(f"file has {len(data) - total} unexpected trailing bytes")
    payload = data[hlen:]
    if zlib.crc32(payload) != pcrc:
        raise ContainerError("data is corrupt (payload checksum mismatch)")
    streams, pos = [], 0
    for n in header.stream_lengths:
        streams.append(payload[pos:pos + n])
        pos += n
    return header, streams
