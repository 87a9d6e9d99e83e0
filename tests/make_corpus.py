"""Build satconv's corpus of hostile, broken and odd inputs into a folder, at test time.

    python tests/make_corpus.py DIR      # writes DIR/in/..., DIR/secret/..., lists the cases

Nothing large is committed: every file is made here, in well under a second. Headers no
library would write (65535 bands on a 1x1 image, 100000 x 100000 pixels in 254 bytes, an image
directory past the end of the file) are written byte by byte with :func:`craft_tiff`; real
rasters with rasterio; files that only pretend to be GeoTIFFs (a VRT, a PNG, an ASCII grid)
as what they are, under a ``.tif`` name.

Layout: ``DIR/in/`` is the input tree (``hostile/`` and ``odd/``); ``DIR/secret/secret.tif`` is
outside it, and is what the hostile inputs try to make satconv read.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.transform import Affine, from_origin

#: A kernel with no symmetry (5 rows, 3 columns), so a flipped or transposed kernel shows.
KERNEL = [[0.0, 1.0, 0.0], [1.0, 2.0, 3.0], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0], [2.0, 0.0, 0.0]]

#: Config of the "odd" runs: every tile at stride 1, so the output must equal the dense
#: convolution; small tiles, so even the odd rasters have several.
EXACT_CONFIG = f"""\
kernel:
  type: custom
  weights: {KERNEL}
boundary: reflect
tile_size: 16
strides: [1]
"""


@dataclass(frozen=True)
class Refusal:
    """An input satconv must refuse (or fail on) with exit 1, one line, and nothing written."""

    name: str
    arg: str       # the input as given on the command line, relative to Corpus.inputs
    pattern: str   # regex the reason after "satconv: <arg>: " must match
    made_here: bool = True  # False: a name only (a URL, a missing file), no file is made


@dataclass(frozen=True)
class Odd:
    """A small or unusual raster satconv must process exactly (compared with scipy)."""

    name: str
    arg: str       # relative to Corpus.inputs
    georef: str    # "transform", "gcps" or "none"


@dataclass
class Corpus:
    root: Path
    inputs: Path
    secret: Path
    #: A decompression bomb: one 10000 x 10000 DEFLATE strip of zeros in ~100 KB (refused by
    #: the default limits; with them raised, reading it takes minutes).
    bomb: Path | None = None
    #: A sound 2x2-tile input whose tile (1, 1) holds garbage inside the file's bounds.
    garbage: Path | None = None
    #: A sound input with its dataset mask in a ``.msk`` side file (a legitimate side file).
    masked: Path | None = None

    def refusal(self, name: str) -> Refusal:
        return next(c for c in self.refusals if c.name == name)

    @property
    def refusals(self) -> list[Refusal]:
        return REFUSALS

    @property
    def odd(self) -> list[Odd]:
        return ODD


#: Every input satconv must refuse, with what its one line must say after "satconv: ARG: ".
REFUSALS = [
    # Not GeoTIFFs, named .tif: GDAL would open them by content (a VRT reads other files).
    Refusal("vrt_relative", "hostile/vrt_relative.tif", r"^is a GDAL VRT .*, not GTiff"),
    Refusal("vrt_absolute", "hostile/vrt_absolute.tif", r"^is a GDAL VRT .*, not GTiff"),
    Refusal("png", "hostile/png.tif", r"^is a PNG image, not GTiff"),
    Refusal("ascii_grid", "hostile/ascii_grid.tif", r"^is an ASCII grid \(AAIGrid\), not GTiff"),
    Refusal("empty", "hostile/empty.tif", r"^is an empty file, not GTiff"),
    Refusal("text", "hostile/text.tif", r"^is an unrecognised format, not GTiff"),
    # Tiny headers declaring huge work.
    Refusal("bands_65535", "hostile/bands_65535.tif",
            r"^65535 bands, more than limits\.max_bands \(256\)$"),
    Refusal("pixels_1e10", "hostile/pixels_1e10.tif",
            r"^100000x100000 = 10,000,000,000 pixels, more than limits\.max_pixels "
            r"\(4,000,000,000\)$"),
    Refusal("strip_bomb", "hostile/strip_bomb.tif",
            r"^one 10000x10000 strip is 95\.4 MiB uncompressed, more than "
            r"limits\.max_block_bytes \(64\.0 MiB\)"),
    # Broken structure, found before anything is written.
    Refusal("ifd_past_end", "hostile/ifd_past_end.tif",
            r"^image directory 0 at byte 1000000 lies outside the file \(150 bytes\)"),
    Refusal("strip_past_end", "hostile/strip_past_end.tif",
            r"^image directory 0: block 0 \(bytes 8-5008\) lies outside the file \(150 bytes\)"),
    Refusal("truncated_cog", "hostile/truncated_cog.tif",
            r"^image directory 0: block \d+ \(bytes \d+-\d+\) lies outside the file"),
    Refusal("truncated_tail", "hostile/truncated_tail.tif",
            r"^image directory 0.* lies outside the file"),
    # Side files GDAL would follow out of the folder or open as another format.
    Refusal("ovr_vrt", "hostile/ovr_vrt.tif",
            r"^side file ovr_vrt\.tif\.ovr is a GDAL VRT .*, not a TIFF"),
    Refusal("msk_vrt", "hostile/msk_vrt.tif",
            r"^side file msk_vrt\.tif\.msk is a GDAL VRT .*, not a TIFF"),
    Refusal("msk_link", "hostile/msk_link.tif",
            r"^side file msk_link\.tif\.msk links outside the input's folder"),
    Refusal("tfw_link", "hostile/tfw_link.tif",
            r"^side file tfw_link\.tfw links outside the input's folder"),
    # Names GDAL or rasterio would not take as local files.
    Refusal("url_http_colon", "http:scene.tif", r"^looks like a URL", False),
    Refusal("url_https", "https://example.com/scene.tif", r"^looks like a URL", False),
    Refusal("url_s3", "s3://bucket/scene.tif", r"^looks like a URL", False),
    Refusal("url_zip", "zip://hostile/a.zip!scene.tif", r"^looks like a URL", False),
    Refusal("vsicurl", "/vsicurl/https://example.com/scene.tif", r"^looks like a URL", False),
    Refusal("vsizip", "/vsizip/hostile/a.zip/scene.tif", r"^looks like a URL", False),
    Refusal("gdal_prefix", "GTIFF_DIR:1:hostile/ovr_vrt.tif", r"^looks like a URL", False),
    Refusal("missing", "hostile/missing.tif", r"^no such file$", False),
    # Not files.
    Refusal("directory", "hostile", r"^not a regular file$"),
    Refusal("fifo", "hostile/fifo.tif", r"^not a regular file$"),
    Refusal("dangling_link", "hostile/dangling.tif", r"^broken symbolic link"),
    # Sound structure, garbage inside one tile: the read fails half-way and names where.
    Refusal("garbage_tile", "hostile/garbage_tile.tif",
            r"^read failed at rows \d+-\d+, columns \d+-\d+ \(.*X offset 1, Y offset 1"),
]

#: Every tiny or odd raster satconv must process exactly.
ODD = [
    Odd("1x1", "odd/1x1.tif", "transform"),
    Odd("1xN", "odd/1xN.tif", "transform"),
    Odd("Nx1", "odd/Nx1.tif", "transform"),
    Odd("smaller_than_kernel", "odd/smaller_than_kernel.tif", "transform"),
    Odd("single_strip", "odd/single_strip.tif", "transform"),
    Odd("band_interleaved", "odd/band_interleaved.tif", "transform"),
    Odd("rotated", "odd/rotated.tif", "transform"),
    Odd("gcp_only", "odd/gcp_only.tif", "gcps"),
    Odd("no_crs", "odd/no_crs.tif", "none"),
    Odd("url_named_local_file", "odd/http:local.tif", "transform"),
]


# ---------------------------------------------------------------- hand-made TIFF bytes


def craft_tiff(width: int, height: int, blocks: list[bytes], *, samples: int = 1,
               bits: int = 8, compression: int = 1, rows_per_strip: int | None = None,
               first_ifd: int | None = None, byte_counts: list[int] | None = None) -> bytes:
    """A little-endian classic TIFF with one striped image: header, strip data, then the
    image directory. ``first_ifd`` and ``byte_counts`` override what the header and the
    directory claim, to make broken files."""
    data = b"".join(blocks)
    offsets, pos = [], 8
    for b in blocks:
        offsets.append(pos)
        pos += len(b)
    ifd_at = 8 + len(data) + (len(data) % 2)
    counts = byte_counts if byte_counts is not None else [len(b) for b in blocks]
    entries = [(256, 4, [width]), (257, 4, [height]), (258, 3, [bits]), (259, 3, [compression]),
               (262, 3, [1]), (273, 4, offsets), (277, 3, [samples]),
               (278, 4, [rows_per_strip or height]), (279, 4, counts), (284, 3, [1])]
    extra_at = ifd_at + 2 + 12 * len(entries) + 4
    body, extra = b"", b""
    for tag, typ, values in entries:
        raw = struct.pack("<" + {3: "H", 4: "I"}[typ] * len(values), *values)
        if len(raw) <= 4:
            body += struct.pack("<HHI", tag, typ, len(values)) + raw.ljust(4, b"\0")
        else:
            body += struct.pack("<HHII", tag, typ, len(values), extra_at + len(extra))
            extra += raw
    head = b"II*\0" + struct.pack("<I", ifd_at if first_ifd is None else first_ifd)
    return ((head + data).ljust(ifd_at, b"\0") + struct.pack("<H", len(entries)) + body
            + struct.pack("<I", 0) + extra)


def _vrt(source: str, relative: bool) -> str:
    return (f'<VRTDataset rasterXSize="4" rasterYSize="4"><VRTRasterBand dataType="Byte" '
            f'band="1"><SimpleSource><SourceFilename relativeToVRT="{int(relative)}">{source}'
            '</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>'
            '</VRTDataset>\n')


def _write(path: Path, data: np.ndarray, **profile: object) -> None:
    prof = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1],
            "width": data.shape[2], "dtype": data.dtype.name}
    gcps = profile.pop("gcps", None)
    prof.update(profile)
    with rasterio.open(path, "w", **prof) as dst:
        if gcps is not None:
            dst.gcps = gcps
        dst.write(data)


# ---------------------------------------------------------------- the corpus


def build(root: str | os.PathLike[str]) -> Corpus:
    """Write the corpus under ``root`` and return its cases."""
    root = Path(root)
    inputs, secret_dir = root / "in", root / "secret"
    hostile, odd = inputs / "hostile", inputs / "odd"
    for d in (hostile, odd, secret_dir):
        d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    utm = {"crs": "EPSG:32618", "transform": from_origin(500000, 4000000, 30, 30)}
    c = Corpus(root, inputs, secret_dir / "secret.tif")
    _write(c.secret, np.full((1, 4, 4), 42, np.uint8), **utm)

    # Files that are not GeoTIFFs, named .tif: GDAL would open them by content.
    (hostile / "vrt_relative.tif").write_text(_vrt("../../secret/secret.tif", True))
    (hostile / "vrt_absolute.tif").write_text(_vrt(str(c.secret), False))
    with rasterio.open(hostile / "png.tif", "w", driver="PNG", width=8, height=8, count=1,
                       dtype="uint8") as dst:
        dst.write(np.zeros((1, 8, 8), np.uint8))
    for extra in hostile.glob("png.tif.*"):  # PNG's .aux.xml, if GDAL wrote one
        extra.unlink()
    (hostile / "ascii_grid.tif").write_text("ncols 2\nnrows 2\nxllcorner 0\nyllcorner 0\n"
                                            "cellsize 1\n1 2\n3 4\n")
    (hostile / "empty.tif").write_bytes(b"")
    (hostile / "text.tif").write_text("this is not a raster\n")

    # Headers that declare far more than the file holds.
    (hostile / "bands_65535.tif").write_bytes(
        craft_tiff(1, 1, [zlib.compress(b"\0" * 65535)], samples=65535, compression=8))
    (hostile / "pixels_1e10.tif").write_bytes(
        craft_tiff(100000, 100000, [zlib.compress(b"\0" * 100000)], compression=8))
    c.bomb = hostile / "strip_bomb.tif"
    c.bomb.write_bytes(craft_tiff(10000, 10000, [zlib.compress(bytes(10000 * 10000), 9)],
                                  compression=8))

    # Broken structure: refused before any output exists.
    (hostile / "ifd_past_end.tif").write_bytes(
        craft_tiff(4, 4, [bytes(16)], first_ifd=10**6))
    (hostile / "strip_past_end.tif").write_bytes(
        craft_tiff(4, 4, [bytes(16)], byte_counts=[5000]))
    whole = hostile / "whole.tif"  # tiled, directory first (COG layout), then cut in half
    _write(whole, rng.integers(0, 255, (1, 256, 256), dtype=np.uint8), **utm)
    rasterio.shutil.copy(whole, hostile / "cog.tif", driver="COG", blocksize=64,
                         overviews="NONE")
    data = (hostile / "cog.tif").read_bytes()
    (hostile / "truncated_cog.tif").write_bytes(data[: len(data) // 2])
    (hostile / "truncated_tail.tif").write_bytes(whole.read_bytes()[:-300])
    whole.unlink()
    (hostile / "cog.tif").unlink()

    # Side files: GDAL reads files named after the input from its folder.
    base = rng.integers(0, 255, (1, 32, 32), dtype=np.uint8)
    for name in ("ovr_vrt", "msk_vrt", "msk_link", "tfw_link"):
        _write(hostile / f"{name}.tif", base, **utm)
    (hostile / "ovr_vrt.tif.ovr").write_text(_vrt(str(c.secret), False))
    (hostile / "msk_vrt.tif.msk").write_text(_vrt("../../secret/secret.tif", True))
    os.symlink(c.secret, hostile / "msk_link.tif.msk")
    os.symlink(c.secret, hostile / "tfw_link.tfw")

    # Things that are not files (names GDAL would not take as local files need no file).
    os.mkfifo(hostile / "fifo.tif")
    os.symlink(hostile / "gone.tif", hostile / "dangling.tif")

    # Sound structure, garbage inside: the read fails half-way and names the tile.
    c.garbage = hostile / "garbage_tile.tif"
    _write(c.garbage, rng.integers(0, 255, (1, 64, 64), dtype=np.uint8), tiled=True,
           blockxsize=32, blockysize=32, compress="deflate", **utm)
    with rasterio.open(c.garbage) as src:
        off = int(src.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        size = int(src.get_tag_item("BLOCK_SIZE_1_1", "TIFF", bidx=1))
    raw = bytearray(c.garbage.read_bytes())
    raw[off:off + size] = b"\xa5" * size
    c.garbage.write_bytes(bytes(raw))

    # Tiny and odd rasters: processed exactly.
    def add(name: str, data: np.ndarray, georef: str = "transform", **profile: object) -> None:
        if georef == "transform":
            profile = {**utm, **profile}
        _write(odd / f"{name}.tif", data, **profile)

    def noise(bands: int, h: int, w: int, dtype: str = "float32") -> np.ndarray:
        return (rng.random((bands, h, w)) * 200).astype(dtype)

    add("1x1", noise(1, 1, 1))  # every case here is listed in ODD
    add("1xN", noise(1, 1, 57))
    add("Nx1", noise(1, 43, 1))
    add("smaller_than_kernel", noise(2, 3, 2))
    add("single_strip", noise(2, 40, 70, "uint16"), compress="deflate", blockysize=40)
    add("band_interleaved", noise(3, 37, 29, "uint8"), interleave="band", tiled=True,
        blockxsize=16, blockysize=16)
    add("rotated", noise(1, 30, 20), crs="EPSG:32618",
        transform=Affine(8.660254, -5.0, 500000.0, 5.0, 8.660254, 4000000.0))
    gcps = [GroundControlPoint(0, 0, -75.0, 40.0, 0.0), GroundControlPoint(0, 24, -74.9, 40.0),
            GroundControlPoint(18, 0, -75.0, 39.9), GroundControlPoint(18, 24, -74.9, 39.9)]
    add("gcp_only", noise(1, 18, 24), georef="gcps", gcps=(gcps, CRS.from_epsg(4326)))
    add("no_crs", noise(1, 21, 19), georef="none")
    _write(odd / "http:local.tif", noise(1, 9, 11), **utm)  # a local file with a URL-ish name

    # A sound input with a dataset mask in a side file (.msk) inside its folder: accepted.
    c.masked = odd / "with_mask.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=False):
        with rasterio.open(c.masked, "w", driver="GTiff", width=24, height=20, count=1,
                           dtype="uint8", **utm) as dst:
            dst.write(rng.integers(1, 255, (1, 20, 24), dtype=np.uint8))
            valid = np.full((20, 24), 255, np.uint8)
            valid[:5] = 0
            dst.write_mask(valid)
    missing = [a for a in [r.arg for r in REFUSALS if r.made_here] + [o.arg for o in ODD]
               if not os.path.lexists(inputs / a)]
    assert not missing, f"corpus cases without a file: {missing}"
    return c


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[1].strip(), file=sys.stderr)
        return 2
    target = Path(argv[1])
    if target.exists():
        shutil.rmtree(target)
    corpus = build(target)
    for r in corpus.refusals:
        print(f"refuse  {r.name:22} {r.arg}")
    for o in corpus.odd:
        print(f"process {o.name:22} {o.arg}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
