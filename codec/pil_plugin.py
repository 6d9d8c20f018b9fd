"""Pillow plugin: ``Image.open("x.aec")`` decodes, ``im.save("x.aec")`` encodes.

``_open`` reads and checks only the header (size and mode); the pixels are
decoded on ``load()`` by :class:`AecDecoder`, which reads the whole file.
Save options: ``quality`` (1-8, default 4; the default model accepts -1 to 8) and ``model``.
"""

from __future__ import annotations

from PIL import Image, ImageFile

from . import container


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == container.MAGIC


class AecImageFile(ImageFile.ImageFile):
    format = "AEC"
    format_description = "aecodec learned image codec"

    def _open(self) -> None:
        head = self.fp.read(7)
        if not _accept(head):
            raise SyntaxError("not an aecodec file")
        try:
            head += self.fp.read(max(0, container.header_length(head) - 7))
            header, _, _ = container.parse_header(head)
        except container.ContainerError as exc:
            raise SyntaxError(str(exc)) from None
        self._size = (header.width, header.height)
        self._mode = header.mode
        self.info["aec_model"] = header.model
        self.info["quality"] = header.quality
        self.tile = [ImageFile._Tile("aec", (0, 0, *self._size), 0, None)]


class AecDecoder(ImageFile.PyDecoder):
    _pulls_fd = True

    def decode(self, buffer):
        from .pipeline import decode

        self.fd.seek(0)
        try:
            picture = decode(self.fd.read())
        except ValueError as exc:
            raise OSError(f"cannot decode .aec file: {exc}") from None
        self.set_as_raw(picture.to_pil().tobytes())
        return -1, 0


def _save(im: Image.Image, fp, filename) -> None:
    from .pipeline import encode

    info = im.encoderinfo
    data = encode(im, quality=info.get("quality", 4), model=info.get("model"),
                  effort=info.get("effort", 0), post_views=info.get("post_views")).data
    fp.write(data)


Image.register_open(AecImageFile.format, AecImageFile, _accept)
Image.register_decoder("aec", AecDecoder)
Image.register_save(AecImageFile.format, _save)
Image.register_extension(AecImageFile.format, ".aec")
Image.register_mime(AecImageFile.format, "image/x-aec")
