"""Speed of satconv against references measured in the same run (``make bench``).

Core: satconv's numba correlation on 256-pixel tiles of a 4096x4096 float32 image against OpenCV
``filter2D`` and ``scipy.ndimage.convolve`` on the whole image, one thread and all threads (each
thread a contiguous share of the tiles), for 3x3 to 31x31 kernels, separable (Gaussian) and not
(random weights); and the strided core against the dense one. End to end: on a generated 8192x8192
3-band uint16 DEFLATE scene, satconv dense, satconv adaptive (default policy), a straightforward
rasterio-window + scipy script with the same output options (once given GDAL's compression
threads, once without them, as such scripts are usually written), and the I/O floor (satconv with
a 1x1 identity kernel: every tile read and written, nothing convolved). Prints ratios; nothing is
asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from make_scene import write_scene  # noqa: E402

from satconv.convolve import PreparedKernel, _band_samples  # noqa: E402

TILE = 256


def _best(fn, repeat: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _best_each(fns: list, repeat: int = 5) -> list[float]:
    """Best time of each function, the runs taken in turn (a, b, a, b, ...) so that a burst
    of load from the machine's neighbours hits every contestant alike."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def _kernels(k: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(k)
    x = np.arange(k) - k // 2
    g = np.exp(-0.5 * (x / max(k / 6, 0.5)) ** 2)
    return {"separable": np.outer(g, g) / g.sum() ** 2, "dense": rng.normal(size=(k, k))}


def _tile_blocks(img: np.ndarray, k: int, stride: int) -> list[tuple]:
    r = k // 2
    pad = np.pad(img, ((r, r + stride), (r, r + stride)), mode="reflect")
    n = img.shape[0]
    pos = np.arange(0, TILE, stride) if stride == 1 else np.arange(0, TILE + 1, stride)
    return [(np.ascontiguousarray(pad[r0:r0 + TILE + 2 * r + stride,
                                      c0:c0 + TILE + 2 * r + stride]), pos)
            for r0 in range(0, n, TILE) for c0 in range(0, n, TILE)]


def core(size: int = 4096) -> list[dict]:
    """Throughput in Mpx/s (input pixels) of each implementation."""
    import cv2
    from scipy import ndimage

    img = np.random.default_rng(0).normal(size=(size, size)).astype(np.float32)
    threads = os.cpu_count() or 1
    rows = []
    for k in (3, 7, 15, 31):
        for kind, kern in _kernels(k).items():
            pk = PreparedKernel.from_kernel(kern)
            blocks = _tile_blocks(img, k, 1)

            def run(blocks=blocks, pk=pk, workers=1, stride=1) -> None:
                def chunk(items):  # each thread a contiguous share, as OpenCV splits rows
                    for item in items:
                        _band_samples(item[0], pk, item[1], item[1])
                if workers == 1:
                    chunk(blocks)
                else:
                    share = -(-len(blocks) // workers)
                    with ThreadPoolExecutor(workers) as pool:
                        list(pool.map(chunk, [blocks[i:i + share]
                                              for i in range(0, len(blocks), share)]))

            mpx = size * size / 1e6
            flipped = np.ascontiguousarray(kern[::-1, ::-1]).astype(np.float32)

            def opencv(n, f=flipped) -> None:
                cv2.setNumThreads(n)
                cv2.filter2D(img, -1, f)

            times = _best_each([run, lambda run=run: run(workers=threads),
                                lambda: opencv(1), lambda: opencv(threads)])
            row = {"kernel": f"{k}x{k}", "kind": kind,
                   **{key: mpx / t for key, t in zip(
                       ("satconv_1t", "satconv_all", "opencv_1t", "opencv_all"), times,
                       strict=True)}}
            if k <= 15:
                small = img[:1024, :1024]
                k32 = kern.astype(np.float32)
                row["scipy_1t"] = 1.048576 / _best(
                    lambda small=small, k32=k32: ndimage.convolve(small, k32), 1)
            if kind == "dense" and k == 7:
                strided = _tile_blocks(img, k, 4)
                dense_t, strided_t = _best_each([run, lambda s=strided, pk=pk: run(s, pk, 1, 4)])
                row["satconv_1t_again"] = mpx / dense_t
                row["satconv_stride4_1t"] = mpx / strided_t
                # the same again on one tile, over and over: the block stays in cache, so
                # this is the kernels' own ratio, without streaming 256 blocks from memory
                one, one4 = [blocks[len(blocks) // 2]], [strided[len(strided) // 2]]
                wide = _tile_blocks(img[:1024, :1024], k, 8)
                one8 = [wide[len(wide) // 2]]
                t1, t4, t8 = _best_each([lambda one=one, pk=pk: run(one * 64, pk),
                                         lambda one4=one4, pk=pk: run(one4 * 64, pk, 1, 4),
                                         lambda one8=one8, pk=pk: run(one8 * 64, pk, 1, 8)],
                                        repeat=9)
                row["one_tile_stride4_speedup"] = t1 / t4
                row["one_tile_stride8_speedup"] = t1 / t8
                # two threads on tiles in cache, one each: arithmetic only, no memory to wait
                # for. What a second thread gains there is what the CPUs give (two vCPUs that
                # share one core's FMA units gain little), not the code.
                pair = [blocks[len(blocks) // 2]] * 128 + [blocks[len(blocks) // 3]] * 128
                h1, h2 = _best_each([lambda pair=pair, pk=pk: run(pair, pk),
                                     lambda pair=pair, pk=pk: run(pair, pk, threads)])
                row["in_cache_threads_speedup"] = h1 / h2
                # offset-heavy data (uint16 reflectance near 10000) is shifted by its centre
                # before the sums, to keep float32's precision: a copy of each block
                heavy = _tile_blocks(img + np.float32(10000), k, 1)
                t_plain, t_heavy = _best_each([run, lambda h=heavy, pk=pk: run(h, pk)])
                row["offset_heavy_cost"] = t_heavy / t_plain - 1
            rows.append(row)
            print(json.dumps({a: (round(b, 1) if isinstance(b, float) else b)
                              for a, b in row.items()}), flush=True)
    return rows


SCRIPT = r'''
import sys, numpy as np, rasterio
from rasterio.windows import Window
from scipy import ndimage
src, dst, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
x = np.arange(k) - k // 2
g = np.exp(-0.5 * (x / 1.0) ** 2); kern = np.outer(g, g) / g.sum() ** 2
r = k // 2
with rasterio.open(src) as ds:
    prof = ds.profile
    prof.update(dtype="float32", tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                predictor=3, zlevel=5, nodata=None, num_threads="ALL_CPUS")
    with rasterio.open(dst, "w", **prof) as out:
        for r0 in range(0, ds.height, 256):
            for c0 in range(0, ds.width, 256):
                h, w = min(256, ds.height - r0), min(256, ds.width - c0)
                a0, b0 = max(0, r0 - r), max(0, c0 - r)
                a1, b1 = min(ds.height, r0 + h + r), min(ds.width, c0 + w + r)
                blk = ds.read(window=Window(b0, a0, b1 - b0, a1 - a0)).astype(np.float32)
                res = np.stack([ndimage.convolve(b, kern, mode="reflect") for b in blk])
                out.write(res[:, r0 - a0:r0 - a0 + h, c0 - b0:c0 - b0 + w],
                          window=Window(c0, r0, w, h))
'''


REPEAT = 3

#: ``satconv`` with the plan pass's decoded tiles never kept (arguments follow).
_DECODE_TWICE = (
    "import sys\n"
    "from satconv import tile_cache\n"
    "tile_cache.decide = lambda *a, **k: tile_cache.Decision(False, 'bench: decoding twice')\n"
    "from satconv.scripts.cli import cli\n"
    "sys.argv[0] = 'satconv'\n"
    "cli()\n")


def _run_once(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def end_to_end(size: int = 8192) -> dict:
    """Wall-clock seconds of each way of filtering the generated scene: the best of three
    rounds, each round running every way once in turn (shared machines are noisy)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        scene = tmpd / "scene.tif"
        write_scene(scene, size, 3)
        cfgs = {
            "io_floor": "kernel: {type: custom, weights: [[1.0]]}\nstrides: [1]\n",
            "dense_gauss5": "strides: [1]\n",
            "adaptive_gauss5": "",
            "dense_disk31": _disk_cfg(31, [1]),
            "adaptive_disk31": _disk_cfg(31, None),
        }
        cmds = {}
        for name, text in cfgs.items():
            cfg = tmpd / f"{name}.yaml"
            cfg.write_text(text or "{}\n")
            cmds[name] = [sys.executable, "-m", "satconv", "run", str(scene), "-c", str(cfg),
                          "-o", str(tmpd / f"{name}.tif"), "-q", "--overwrite"]
        # the default policy again, its plan pass's decoded tiles not kept: the input is
        # decoded by both passes (satconv/tile_cache.py)
        twice = [sys.executable, "-c", _DECODE_TWICE, *cmds["adaptive_gauss5"][3:]]
        twice[twice.index(str(tmpd / "adaptive_gauss5.tif"))] = str(tmpd / "twice.tif")
        cmds["adaptive_gauss5_decoding_twice"] = twice
        script = tmpd / "naive.py"
        script.write_text(SCRIPT)
        cmds["rasterio_scipy_gauss5"] = [sys.executable, str(script), str(scene),
                                         str(tmpd / "naive.tif"), "5"]
        # the same script as most are written: GDAL compresses on the calling thread
        plain = tmpd / "plain.py"
        plain.write_text(SCRIPT.replace(', num_threads="ALL_CPUS"', ""))
        cmds["rasterio_scipy_1thread_encode"] = [sys.executable, str(plain), str(scene),
                                                 str(tmpd / "plain.tif"), "5"]
        res: dict = {name: float("inf") for name in cmds}
        for _ in range(REPEAT):
            for name, cmd in cmds.items():
                res[name] = min(res[name], _run_once(cmd))
        reports = {name: tmpd / f"{name}.satconv.json" for name in cfgs}
        reports["adaptive_gauss5_decoding_twice"] = tmpd / "twice.satconv.json"
        for name, path in reports.items():
            report = json.loads(path.read_text())
            res[f"{name}_peak_mb"] = report["peak_memory_mb"]
            res[f"{name}_plan_s"] = report["timings_s"]["plan"]  # of the last round
            res[f"{name}_compute"] = report["execute"].get("evaluations_per_pixel")
        for name in cmds:
            print(f"{name}: {res[name]:.1f} s", flush=True)
        # what the written values cost to compress, independent of how they were computed
        for name in ("io_floor", "dense_gauss5", "adaptive_gauss5", "dense_disk31"):
            res[f"{name}_encode_cpu"] = encode_cost(tmpd / f"{name}.tif")
    return res


def _disk_cfg(k: int, strides: list[int] | None) -> str:
    """A normalised disk of diameter ``k``; ``strides`` None keeps the default policy's."""
    r = k // 2
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disk = (xx * xx + yy * yy <= r * r).astype(float)
    disk /= disk.sum()
    rows = ", ".join("[" + ", ".join(f"{v:.6g}" for v in row) + "]" for row in disk)
    text = f"kernel: {{type: custom, weights: [{rows}]}}\n"
    return text + (f"strides: {strides}\n" if strides else "")


def encode_cost(path: Path, size: int = 2048) -> float:
    """CPU seconds to compress the central ``size`` x ``size`` window of an output again with
    satconv's creation options on one thread: what its values cost the encoder."""
    import rasterio
    from rasterio.windows import Window

    from satconv import profiles

    with rasterio.open(path) as src:
        size = min(size, src.width, src.height)
        row, col = (src.height - size) // 2, (src.width - size) // 2  # water, coast and land
        data = src.read(window=Window(col, row, size, size))
        opts = profiles.creation_options(src.dtypes[0], "deflate", 256)
        opts.update(crs=src.crs, transform=src.window_transform(Window(col, row, size, size)))
    opts["num_threads"] = 1
    with tempfile.TemporaryDirectory() as tmp:
        t = time.process_time()
        with rasterio.open(Path(tmp) / "x.tif", "w", driver="GTiff", width=size, height=size,
                           count=data.shape[0], dtype=data.dtype, **opts) as dst:
            dst.write(data)
        return time.process_time() - t


def main() -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print(f"machine: {machine}")
    rows = core()
    e2e = end_to_end()
    lines = ["| kernel | kind | satconv 1t Mpx/s | vs OpenCV 1t | vs scipy | 2t / 1t | "
             "vs OpenCV all |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        scipy_ratio = f"{r['satconv_1t'] / r['scipy_1t']:.1f}x" if "scipy_1t" in r else "-"
        lines.append(
            f"| {r['kernel']} | {r['kind']} | {r['satconv_1t']:.0f} | "
            f"{r['satconv_1t'] / r['opencv_1t']:.2f}x | {scipy_ratio} | "
            f"{r['satconv_all'] / r['satconv_1t']:.2f}x | "
            f"{r['satconv_all'] / r['opencv_all']:.2f}x |")
    strided = [r for r in rows if "satconv_stride4_1t" in r]
    if strided:
        r = strided[0]
        lines.append(f"\nstrided core, 7x7 dense kernel: stride 4 is "
                     f"{r['satconv_stride4_1t'] / r['satconv_1t_again']:.1f}x faster than "
                     f"stride 1 over the image's 256 tiles, "
                     f"{r['one_tile_stride4_speedup']:.1f}x on one tile in cache, and stride 8 "
                     f"{r['one_tile_stride8_speedup']:.1f}x on one tile (measured in turn; at "
                     "strides of 3 and more each sample is a dot product over its window read "
                     "in place, reduced eight samples at a time)")
        lines.append(f"\ntwo threads, 7x7 dense: {r['satconv_all'] / r['satconv_1t']:.2f}x one "
                     f"thread on tiles streamed from memory (the table), "
                     f"{r['in_cache_threads_speedup']:.2f}x on tiles already in cache, where "
                     "only arithmetic is left to share: what the CPUs give a second thread "
                     "there bounds the table's column")
        lines.append(f"\nthe same 7x7 dense kernel on offset-heavy data (the image + 10000, as "
                     f"uint16 reflectance): {100 * r['offset_heavy_cost']:.0f} % slower, the "
                     "centre shift that keeps float32's precision there (a copy of each block; "
                     "zero-centred data needs none)")
    lines += ["\n| end to end (8192x8192x3 uint16) | seconds | ratio | plan pass s | peak MB | "
              "compute | encoding its output |", "| --- | --- | --- | --- | --- | --- | --- |"]
    ref = e2e["io_floor"]
    for name in ("io_floor", "dense_gauss5", "adaptive_gauss5", "adaptive_gauss5_decoding_twice",
                 "dense_disk31", "adaptive_disk31", "rasterio_scipy_gauss5",
                 "rasterio_scipy_1thread_encode"):
        secs = e2e[name]
        peak = e2e.get(f"{name}_peak_mb")
        frac = e2e.get(f"{name}_compute")
        enc = e2e.get(f"{name}_encode_cpu")
        enc_ratio = None if enc is None else enc / e2e["io_floor_encode_cpu"]
        plan = e2e.get(f"{name}_plan_s")
        lines.append(
            f"| {name} | {secs:.1f} | {secs / ref:.2f}x the I/O floor | "
            f"{'-' if plan is None else f'{plan:.1f}'} | "
            f"{'-' if peak is None else f'{peak:.0f}'} | "
            f"{'-' if frac is None else f'{100 * frac:.1f}%'} | "
            f"{'-' if enc_ratio is None else f'{enc_ratio:.2f}x the floor'} |")
    lines.append(f"\nthe default policy's plan pass keeps the tiles it decodes for the execute "
                 f"pass: {e2e['adaptive_gauss5']:.1f} s against "
                 f"{e2e['adaptive_gauss5_decoding_twice']:.1f} s decoding the input twice")
    lines.append(f"\nsatconv dense vs rasterio+scipy script: "
                 f"{e2e['rasterio_scipy_gauss5'] / e2e['dense_gauss5']:.1f}x faster than the "
                 "script given GDAL's compression threads (NUM_THREADS=ALL_CPUS), "
                 f"{e2e['rasterio_scipy_1thread_encode'] / e2e['dense_gauss5']:.1f}x than the "
                 "same script without them (the I/O floor itself is "
                 f"{e2e['rasterio_scipy_gauss5'] / ref:.1f}x and "
                 f"{e2e['rasterio_scipy_1thread_encode'] / ref:.1f}x faster than these); "
                 f"adaptive 31x31 disk vs dense 31x31 disk: "
                 f"{e2e['dense_disk31'] / e2e['adaptive_disk31']:.1f}x faster (no run can "
                 f"beat the I/O floor, so at most {e2e['dense_disk31'] / ref:.1f}x here)")
    lines.append("\n'encoding its output': CPU time to compress the central 2048x2048 window "
                 "of that run's output with the same options on one thread, relative to the I/O "
                 "floor's "
                 "output (identity kernel: integer values in float32, which compress easily). "
                 "Filtered values cost the encoder more whatever computes them, so part of a "
                 "run's distance from the floor is the encoder's, not the convolution's.")
    table = "\n".join(lines)
    print(table)
    (out / "speed.md").write_text(f"machine: {machine}\n\n{table}\n")
    (out / "speed.json").write_text(json.dumps({"machine": machine, "core": rows,
                                                "end_to_end": e2e}, indent=2) + "\n")


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # --help
    main()
