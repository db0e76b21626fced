"""What an image may cost to extract, and the errors when it is hostile or too big."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ScannerError

__all__ = ["GiB", "ImageError", "ImageLimits", "ScratchFull"]

GiB = 1 << 30


class ImageError(ScannerError):
    """The image cannot be read, or it is hostile (traversal, bomb, corrupt or truncated layer)."""


class ScratchFull(ImageError):
    """The layers need more than the scratch directory's budget (LayerApplier's `budget`)."""


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Decompression-bomb limits; exceeding any of them is an ImageError."""

    max_total_bytes: int = 64 * GiB  # sum of the sizes of all regular files extracted
    max_entries: int = 2_000_000  # tar members over all layers (whiteouts included)
    max_member_bytes: int = 16 * GiB  # one regular file
    max_ratio: int = 1000  # decompressed:compressed, checked once past ratio_floor bytes
    ratio_floor: int = 1 * GiB
    # The same for a compressed image archive as a whole (.tar.gz, .tar.bz2, .tar.xz): images
    # pack 2-5:1, and gzip cannot pass ~1030:1, so its bombs stay under the layers' ratio.
    max_archive_ratio: int = 100
