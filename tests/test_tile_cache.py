"""The plan pass's decoded tiles, kept for the execute pass (``satconv.tile_cache``): every
window read back equals what rasterio reads from the input, and a run that keeps them writes
the outputs a run that decodes the input again writes, and the normalised dense convolution."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from satconv import api, config, raster_io, tile_cache
from satconv.planning import read_again
from satconv.tiling import TileGrid

from . import oracle
from .conftest import CRS_UTM33N, TRANSFORM, random_image, write_geotiff
from .test_nodata import assert_matches, read_out, validity

MASKS = ["none", "nodata", "nan", "dataset", "alpha"]


def masked_scene(path: Path, rng: np.random.Generator, shape: tuple[int, int, int],
                 mask: str) -> Path:
    """A compressed scene whose invalid pixels (a block and scattered pixels) are marked by
    ``mask``: a nodata value, NaN, a mask band, or an alpha band."""
    bands, h, w = shape
    dtype = "float32" if mask == "nan" else "uint16"
    x = np.stack([random_image(rng, (h, w), dtype) for _ in range(bands)])
    bad = rng.random((h, w)) < 0.05
    bad[: h // 3, : w // 4] = True
    if mask == "nodata":
        x[:, bad] = 0
        return write_geotiff(path, x, nodata=0, compress="deflate")
    if mask == "nan":
        x[1 % bands, bad] = np.nan  # one band only: validity differs between bands
        return write_geotiff(path, x, compress="deflate")
    if mask == "alpha":
        alpha = np.where(bad, 0, 255).astype("uint8")
        # ALPHA=YES tags the first extra sample: the band after grey, or after red, green, blue
        x = x[:1] if bands != 3 else x
        x = np.concatenate([x.astype("uint8"), alpha[None]])
        with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=len(x),
                           dtype="uint8", compress="deflate", alpha="YES", crs=CRS_UTM33N,
                           transform=TRANSFORM,
                           photometric="rgb" if bands == 3 else "minisblack") as dst:
            dst.write(x)
        return path
    path = write_geotiff(path, x, compress="deflate")
    if mask == "dataset":
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "r+") as ds:
            ds.write_mask(np.where(bad, 0, 255).astype("uint8"))
    return path


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), mask=st.sampled_from(MASKS),
       h=st.integers(1, 70), w=st.integers(1, 70), bands=st.integers(1, 3),
       size=st.sampled_from([8, 16, 32, 64]), data=st.data())
def test_every_window_reads_back_as_rasterio_reads_it(tmp_path, seed, mask, h, w, bands, size,
                                                      data):
    """Tiles of any size put as the plan pass reads them; any window read back: the same
    values and validity as ``raster_io.read_window_valid`` (rasterio) on the input."""
    rng = np.random.default_rng(seed)
    src = masked_scene(tmp_path / f"s{seed}.tif", rng, (bands, h, w), mask)
    with raster_io.open_input(str(src)) as ds:
        info = raster_io.describe(ds)
        assert info.mask == mask
        grid = TileGrid(h, w, size)
        with tile_cache.TileCache(grid, info, tmp_path) as cache:
            for t in grid.tiles():
                cache.put(t, *raster_io.read_window_valid(ds, info, t.row0, t.row1, t.col0,
                                                          t.col1))
            assert cache.complete
            for _ in range(4):
                r0 = data.draw(st.integers(0, h - 1))
                c0 = data.draw(st.integers(0, w - 1))
                r1 = data.draw(st.integers(r0 + 1, h))
                c1 = data.draw(st.integers(c0 + 1, w))
                got, got_ok = cache.read_window_valid(r0, r1, c0, c1)
                want, want_ok = raster_io.read_window_valid(ds, info, r0, r1, c0, c1)
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(got, want)
                if want_ok is None:
                    assert got_ok is None or got_ok.all()
                else:
                    np.testing.assert_array_equal(
                        got_ok if got_ok is not None else np.ones_like(want_ok), want_ok)


ALL_STRIDE_1 = {"kernel": {"type": "gaussian", "size": 7, "sigma": 1.5}, "tile_size": 16,
                "strides": [1, 2], "policy": {"type": "variance", "thresholds": [0.0]}}


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("boundary", ["reflect", "wrap", "constant"])
def test_a_plan_of_stride_1_read_from_kept_tiles_equals_the_dense_oracle(tmp_path, mask,
                                                                         boundary):
    """A policy plan (so a plan pass, whose tiles the execute pass reads back) that keeps
    every tile at stride 1 equals the normalised dense convolution of scipy, at every pixel:
    halos, image edges and masks come out of the kept tiles as out of the input."""
    src = masked_scene(tmp_path / "s.tif", np.random.default_rng(7), (2, 45, 53), mask)
    out = tmp_path / "s.satconv.tif"
    cfg = {**ALL_STRIDE_1, "boundary": boundary, "cval": 3.0, "output": {"dtype": "float64"}}
    rep = api.run_scene(src, config.from_dict(cfg), output=out)
    assert rep.plan["read"] == tile_cache_read_kept()
    assert rep.execute["tiles_per_stride"] == {"1": 12}
    x, valid, _ = validity(src)
    k = config.from_dict(cfg).kernel.array()
    ref = np.stack([oracle.normalised_dense(x[b], valid[b], k, boundary, 3.0)
                    for b in range(x.shape[0])])
    assert_matches(read_out(out), ref)
    # nothing left beside the input and the outputs
    left = {p.name for p in tmp_path.iterdir()} - {"s.tif", "s.tif.msk"}
    assert left == {Path(p).name for p in rep.outputs.values()}


def tile_cache_read_kept() -> str:
    from satconv.planning import READ_KEPT

    return READ_KEPT


def no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tile_cache, "decide",
                        lambda info, folder, outputs=0: tile_cache.Decision(False,
                                                                            "switched off"))


@pytest.mark.parametrize("name", ["world.byte.tif", "RGBA.uint16.tif", "alpha.tif"])
@pytest.mark.parametrize("policy", [{"type": "variance"}, {"type": "refine",
                                                           "tolerance_db": 40}])
def test_kept_tiles_change_nothing_in_the_outputs(shared_data, tmp_path, monkeypatch, name,
                                                  policy):
    """On real compressed scenes (LZW, DEFLATE, JPEG with alpha): the outputs of a run that
    reads the kept tiles are bit for bit those of a run that decodes the input again."""
    src = shared_data / name
    cfg = config.from_dict({"policy": policy, "tile_size": 128})
    kept, again = tmp_path / "kept.tif", tmp_path / "again.tif"
    rep_kept = api.run_scene(src, cfg, output=kept)
    with monkeypatch.context() as m:
        no_cache(m)
        rep_again = api.run_scene(src, cfg, output=again)
    assert rep_kept.plan["read"] == tile_cache_read_kept()
    assert rep_again.plan["read"] == read_again("switched off")
    for what in ("raster", "stride_map"):
        with rasterio.open(rep_kept.outputs[what]) as a, \
                rasterio.open(rep_again.outputs[what]) as b:
            np.testing.assert_array_equal(a.read(masked=True).filled(0),
                                          b.read(masked=True).filled(0))
            np.testing.assert_array_equal(a.read_masks(), b.read_masks())


def test_a_disk_full_while_keeping_tiles_decodes_the_input_again(tmp_path, monkeypatch):
    """The temporary file's disk fills up during the plan pass: the run goes on, reads the
    input again, writes the right result, and says so in its report."""
    src = masked_scene(tmp_path / "s.tif", np.random.default_rng(3), (1, 40, 40), "nodata")
    real = os.pwrite
    calls = []

    def full(fd: int, data: object, offset: int) -> int:
        calls.append(offset)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(tile_cache.os, "pwrite", full)
    out = tmp_path / "s.satconv.tif"
    cfg = {**ALL_STRIDE_1, "output": {"dtype": "float64"}}
    rep = api.run_scene(src, config.from_dict(cfg), output=out)
    assert len(calls) > 3
    assert rep.plan["read"] == read_again("keeping the decoded tiles failed "
                                          "(No space left on device)")
    x, valid, _ = validity(src)
    k = config.from_dict(cfg).kernel.array()
    assert_matches(read_out(out), oracle.normalised_dense(x[0], valid[0], k)[None])


def test_which_inputs_keep_their_tiles(tmp_path, monkeypatch):
    """Compressed: kept; stored raw: read again (as cheap); too large for half the available
    memory, or for the folder's free space beside the outputs: read again, and the reason
    says which."""
    x = random_image(np.random.default_rng(1), (40, 40), "uint16")
    raw = write_geotiff(tmp_path / "raw.tif", x)
    packed = write_geotiff(tmp_path / "packed.tif", x, compress="deflate")
    infos = {}
    for p in (raw, packed):
        with raster_io.open_input(str(p)) as ds:
            infos[p.name] = raster_io.describe(ds)
    assert tile_cache.nbytes(infos["raw.tif"]) == 40 * 40 * 2
    assert not tile_cache.decide(infos["raw.tif"], tmp_path).keep
    assert tile_cache.decide(infos["packed.tif"], tmp_path).keep
    monkeypatch.setattr(tile_cache, "_available_memory", lambda: 6000)
    why = tile_cache.decide(infos["packed.tif"], tmp_path)
    assert not why.keep and "would not stay in memory" in why.reason
    monkeypatch.setattr(tile_cache, "_available_memory", lambda: 10**12)
    monkeypatch.setattr(tile_cache.shutil, "disk_usage",
                        lambda folder: SimpleNamespace(total=10**6, used=0, free=5000))
    assert tile_cache.decide(infos["packed.tif"], tmp_path, outputs=1800).keep
    why = tile_cache.decide(infos["packed.tif"], tmp_path, outputs=1801)  # 3200 + 1801 > 5000
    assert not why.keep and "too little free space" in why.reason


def test_memory_is_what_the_system_and_the_control_group_leave(tmp_path, monkeypatch):
    """The smaller of MemAvailable and the cgroup's limit less its use; unknown (not Linux):
    no tiles kept, and the reason says so."""
    monkeypatch.setattr(tile_cache, "CGROUP", tmp_path)
    assert tile_cache._cgroup_room() is None  # no cgroup files
    (tmp_path / "memory.max").write_text("max\n")
    assert tile_cache._cgroup_room() is None  # no limit
    (tmp_path / "memory.max").write_text("1000000\n")
    (tmp_path / "memory.current").write_text("300000\n")
    assert tile_cache._cgroup_room() == 700000
    monkeypatch.setattr(tile_cache, "_meminfo_available", lambda: 5 * 10**6)
    assert tile_cache._available_memory() == 700000
    monkeypatch.setattr(tile_cache, "_meminfo_available", lambda: 600000)
    assert tile_cache._available_memory() == 600000
    x = random_image(np.random.default_rng(1), (40, 40), "uint16")
    with raster_io.open_input(str(write_geotiff(tmp_path / "p.tif", x,
                                                compress="deflate"))) as ds:
        info = raster_io.describe(ds)
    assert tile_cache.decide(info, tmp_path).keep
    monkeypatch.setattr(tile_cache, "_meminfo_available", lambda: None)
    monkeypatch.setattr(tile_cache, "CGROUP", tmp_path / "none")
    why = tile_cache.decide(info, tmp_path)
    assert not why.keep and why.reason.endswith("the memory available is unknown")


def test_a_codec_rasterio_has_no_name_for_is_a_compressed_input(tmp_path):
    """rasterio gives GDAL's string for a codec it has no name for (PixarLog, JPEG XL): the
    input is described, and counts as compressed; so does a raw GeoTIFF read remotely."""
    src = write_geotiff(tmp_path / "s.tif", random_image(np.random.default_rng(2), (30, 30),
                                                         "uint8"))

    class UnnamedCodec:
        compression = "PIXARLOG"

        def __init__(self, ds: object):
            self._ds = ds

        def __getattr__(self, name: str) -> object:
            return getattr(self._ds, name)

    with raster_io.open_input(str(src)) as ds:
        raw = raster_io.describe(ds)
        info = raster_io.describe(UnnamedCodec(ds))
    assert raw.compression is None and info.compression == "PIXARLOG"
    assert tile_cache.decide(info, tmp_path).keep
    assert not tile_cache.decide(raw, tmp_path).keep
    remote = dataclasses.replace(raw, path="/vsicurl/https://example.com/s.tif")
    assert tile_cache.decide(remote, tmp_path).keep


def test_a_batchs_scenes_at_once_share_the_memory(tmp_path, monkeypatch):
    """A batch worker (``--jobs N``) keeps tiles within 1/N of the share a single run has."""
    from satconv import batch

    x = random_image(np.random.default_rng(1), (40, 40), "uint16")  # 3200 bytes
    with raster_io.open_input(str(write_geotiff(tmp_path / "p.tif", x,
                                                compress="deflate"))) as ds:
        info = raster_io.describe(ds)
    monkeypatch.setattr(tile_cache, "_available_memory", lambda: 7000)
    monkeypatch.setattr(tile_cache, "SCENES_AT_ONCE", 1)
    assert tile_cache.decide(info, tmp_path).keep  # 3200 <= 3500
    monkeypatch.setattr(batch, "load_kernels", lambda settings: None)
    batch.prepare_worker(config.Settings(), scenes=2)
    assert tile_cache.SCENES_AT_ONCE == 2
    why = tile_cache.decide(info, tmp_path)  # 3200 > 1750
    assert not why.keep and "would not stay in memory" in why.reason


def test_the_report_says_why_the_input_is_read_again(shared_data, tmp_path):
    """An uncompressed input (shade.tif), and a resumable run of a compressed one
    (world.byte.tif, --resume: its parts read the input themselves): the report's plan.read
    says the execute pass reads the input again, and why."""
    from click.testing import CliRunner

    from satconv.scripts.cli import cli

    rep = api.run_scene(shared_data / "shade.tif", config.Settings(),
                        output=tmp_path / "shade.tif")
    assert rep.plan["read"] == read_again(
        "the input is not compressed: reading it again is as cheap")
    result = CliRunner().invoke(cli, ["run", str(shared_data / "world.byte.tif"), "--resume",
                                      "--out-dir", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "world.byte.satconv.json").read_text())
    assert report["plan"]["read"] == read_again(api.ENGINE_READS)
