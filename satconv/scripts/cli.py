"""The ``satconv`` command: parses options and calls the library, one input at a time.

Errors become one line on stderr and an exit code (0 all done, 1 an input failed, 2 usage or
configuration error); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import click

from .. import __version__, api, config
from ..errors import ConfigError, SatconvError, UsageError


def _progress_factory(enabled: bool, label: str) -> api.ProgressFactory:
    def factory(phase: str, total: int) -> Callable[[int], None]:
        if not enabled:
            return lambda n: None
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"{label} {phase}", unit="tile", leave=False,
                   dynamic_ncols=True)

        def step(n: int) -> None:
            bar.update(n)
            if bar.n >= bar.total:
                bar.close()

        return step

    return factory


def _fail(err: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(err)
    click.echo(f"satconv: {err}", err=True)


def _load_settings(path: str | None, debug: bool) -> config.Settings:
    try:
        return config.load(path)
    except SatconvError as err:
        _fail(err, debug)
        sys.exit(err.exit_code)


config_option = click.option(
    "-c", "--config", "config_path", type=click.Path(dir_okay=False),
    help="YAML config (built-in defaults when omitted).",
)
debug_option = click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="satconv")
def cli() -> None:
    """Adaptive-stride convolution of large GeoTIFFs."""


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@config_option
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Output raster (one input only).")
@click.option("--out-dir", type=click.Path(file_okay=False),
              help="Folder for the outputs (default: beside each input).")
@click.option("--plan", "plan_path", type=click.Path(dir_okay=False),
              help="Execute this stride map instead of planning.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Worker threads per scene (default: all CPUs).")
@click.option("--error-map", is_flag=True,
              help="Also write OUT.error.tif: the estimated RMS error per tile.")
@quiet_option
@debug_option
def run(inputs: tuple[str, ...], config_path: str | None, output: str | None,
        out_dir: str | None, plan_path: str | None, overwrite: bool, threads: int | None,
        error_map: bool, quiet: bool, debug: bool) -> None:
    """Convolve INPUTS; write OUT.satconv.tif, OUT.stride.tif and OUT.satconv.json."""
    settings = _load_settings(config_path, debug)
    try:
        if output and len(inputs) > 1:
            raise UsageError("-o/--output takes one input; use --out-dir for several")
        if out_dir and not Path(out_dir).is_dir():
            raise UsageError(f"{out_dir}: output folder does not exist")
    except SatconvError as err:
        _fail(err, debug)
        sys.exit(err.exit_code)
    show = not quiet and sys.stderr.isatty()
    failed = 0
    for src in inputs:
        try:
            report = api.run_scene(
                src, settings,
                output=Path(output) if output else None,
                out_dir=Path(out_dir) if out_dir else None,
                plan_path=Path(plan_path) if plan_path else None,
                overwrite=overwrite, workers=threads,
                progress=_progress_factory(show, Path(src).name),
                error_map=error_map,
            )
        except SatconvError as err:
            _fail(err, debug)
            failed += 1
            continue
        except KeyboardInterrupt:
            click.echo(f"satconv: {src}: interrupted, nothing written", err=True)
            sys.exit(130)
        except Exception as err:  # noqa: BLE001 - one line per failed input, never a crash
            _fail(RuntimeError(f"{src}: unexpected error: {type(err).__name__}: {err}"), debug)
            failed += 1
            continue
        if not quiet:
            click.echo(report.summary_line(), err=True)
    if failed:
        click.echo(f"satconv: {failed} of {len(inputs)} inputs failed", err=True)
        sys.exit(1)


@cli.command()
@click.argument("input", type=click.Path())
@config_option
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Also write the stride map here.")
@click.option("--overwrite", is_flag=True, help="Replace an existing stride map.")
@quiet_option
@debug_option
def plan(input: str, config_path: str | None, output: str | None, overwrite: bool,
         quiet: bool, debug: bool) -> None:
    """Plan INPUT only: stride histogram and predicted compute, no convolution."""
    settings = _load_settings(config_path, debug)
    show = not quiet and sys.stderr.isatty()
    try:
        cmp = api.compare_scene(input, settings,
                                progress=_progress_factory(show, Path(input).name))
        info, the_plan = cmp.info, cmp.plan
        if output:
            api.write_plan(Path(output), info, the_plan, settings, overwrite)
    except SatconvError as err:
        _fail(err, debug)
        sys.exit(err.exit_code if isinstance(err, ConfigError) else 1)
    summary = the_plan.summary()
    click.echo(f"{input}: {info.width}x{info.height}, {info.count} band(s) {info.dtype}, "
               f"tiles of {settings.tile_size}, policy {settings.policy.type}")
    total = sum(the_plan.histogram().values())
    for stride, count in the_plan.histogram().items():
        label = "skipped" if stride == 0 else f"stride {stride}"
        click.echo(f"  {label:>10}: {count:6d} tiles ({100 * count / total:5.1f}%)")
    click.echo(f"  predicted compute: {100 * summary['compute_fraction']:.1f}% of full "
               "resolution")
    if "predicted_rmse_overall" in summary:
        click.echo(f"  predicted RMS error: {summary['predicted_rmse_overall']:.4g} overall, "
                   f"{summary['predicted_rmse_max']:.4g} worst tile")
    cap = summary.get("stride_cap", {})
    if cap.get("capped"):
        click.echo(f"  stride cap: {cap['max_stride']} on textured tiles ({cap['source']}); "
                   f"strides {cap['capped']} only on flat tiles (config max_stride overrides)")
    if settings.policy.type == "refine":
        click.echo("  refine decides strides while executing; the strides above are the "
                   "error model's prediction")
    click.echo("  predicted by the error model (compute = kernel evaluations, PSNR: worst band, "
               "peak = output range):")
    click.echo(f"    {'plan':<36} {'compute':>8} {'PSNR':>9}")
    for row in [*cmp.policies, *cmp.uniform]:
        click.echo(f"    {row.label:<36} {100 * row.compute:7.2f}% {_db(row.psnr_db):>9}")
    best = cmp.best_uniform
    if best is not None:
        click.echo(f"  best uniform stride as good as this plan ({_db(cmp.predicted.psnr_db)}): "
                   f"{best.label.removeprefix('uniform ')}, {100 * best.compute:.2f}% compute "
                   f"vs {100 * cmp.predicted.compute:.2f}%")


def _db(value: float) -> str:
    return "exact" if value == float("inf") else f"{value:.1f} dB"


@cli.group(name="config")
def config_group() -> None:
    """Validate, show or write a YAML config."""


@config_group.command("validate")
@click.argument("path", type=click.Path())
@debug_option
def config_validate(path: str, debug: bool) -> None:
    """Check PATH against the config contract."""
    _load_settings(path, debug)
    click.echo(f"{path}: valid")


@config_group.command("show")
@click.argument("path", type=click.Path(), required=False)
@debug_option
def config_show(path: str | None, debug: bool) -> None:
    """Print the effective config (PATH merged over the built-in defaults)."""
    import yaml

    settings = _load_settings(path, debug)
    click.echo(yaml.safe_dump(settings.to_dict(), sort_keys=False), nl=False)


@config_group.command("init")
@click.argument("path", type=click.Path(dir_okay=False), required=False)
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def config_init(path: str | None, overwrite: bool) -> None:
    """Write the built-in defaults as YAML to PATH (or stdout)."""
    text = config.default_yaml()
    if path is None:
        click.echo(text, nl=False)
        return
    p = Path(path)
    if p.exists() and not overwrite:
        click.echo(f"satconv: {p}: already exists (use --overwrite to replace it)", err=True)
        sys.exit(1)
    p.write_text(text, encoding="utf-8")
    click.echo(f"wrote {p}", err=True)


def main() -> None:
    """Entry point for ``python -m satconv``."""
    cli()
