"""The ``satconv`` command: parses options and calls the library, one input at a time.

Errors become one line on stderr and an exit code (0 all done, 1 an input failed, 2 usage or
configuration error); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .. import __version__, api, config, raster_io
from ..errors import OutputError, SatconvError, UsageError
from ..planning import plan_warnings
from .render import one_line
from .stops import StoppableGroup, command_stops, json_logs

if TYPE_CHECKING:
    from ..batch import BatchSummary, RunOptions
    from ..config import Settings


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
    click.echo(one_line(f"satconv: {err}"), err=True)


def _load_settings(path: str | None, debug: bool) -> config.Settings:
    try:
        settings = config.load(path)
        config.check_context_contents(settings)
        return settings
    except SatconvError as err:
        _fail(err, debug)
        sys.exit(err.exit_code)


config_option = click.option(
    "-c", "--config", "config_path", type=click.Path(dir_okay=False),
    help="YAML config (built-in defaults when omitted).",
)
debug_option = click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
quicklook_option = click.option(
    "--quicklook", is_flag=True,
    help="Also draw OUT.quicklook.png (input, stride map, output) once the outputs are written.")


def _check_quicklook(raster: Path, overwrite: bool, own: bool) -> None:
    """Before running: refuse a quicklook that exists (without --overwrite; with ``own``,
    one satconv drew may be redrawn)."""
    from .. import previews

    previews.check_target(previews.quicklook_path(raster), overwrite, redraw_own=own)


def _make_quicklook(report_path: str, overwrite: bool, own: bool) -> None:
    """After a scene's outputs are committed: its quicklook, found through its report."""
    from .. import previews

    previews.record_in_report(report_path, previews.make_quicklook(
        report_path, overwrite=overwrite, redraw_own=own))


class _Group(StoppableGroup):
    """click's group, whose usage errors (an unknown option, a bad value) are one line like
    every other error: ``satconv: run: No such option: --bogus (see satconv run --help)``,
    or with ``--log-format json`` one ``error`` event, for log collectors that parse every
    line. Exit code 2, as click's own."""

    def main(self, args: list[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: object) -> object:
        argv = list(args) if args is not None else sys.argv[1:]
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        from .render import Renderer

        json = json_logs(argv)
        try:
            rv = super().main(argv, prog_name, complete_var, False, **extra)
        except click.ClickException as err:
            if json:
                Renderer("json").error(err.format_message(), err.exit_code)
            elif type(err).__name__ == "NoArgsIsHelpError":  # a bare `satconv`: the help
                err.show()
            else:
                click.echo(f"satconv: {_usage_line(err)}", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            if json:
                Renderer("json").error("aborted", 1)
            else:
                click.echo("satconv: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _usage_line(err: click.ClickException) -> str:
    """A usage error as one line: the command, the problem, where the usage is."""
    message = " ".join(err.format_message().split()).rstrip(".")
    ctx = getattr(err, "ctx", None)
    if ctx is None:
        return message
    command = ctx.command_path
    sub = command.split(" ", 1)[1] if " " in command else None
    return (f"{sub}: " if sub else "") + f"{message} (see {command} --help)"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="satconv")
def cli() -> None:
    """Adaptive-stride convolution of large GeoTIFFs."""
    _report_crashes()


def _report_crashes() -> None:
    """Have a crash in native code (GDAL, a compiled kernel) print every thread's Python stack
    to stderr before the process dies, so that a run killed by SIGSEGV says where it was."""
    with contextlib.suppress(Exception):  # a stderr without a file descriptor (embedded use)
        if not faulthandler.is_enabled():
            faulthandler.enable()


@cli.command()
@click.argument("inputs", nargs=-1, type=click.Path())
@config_option
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Output raster (one input only).")
@click.option("--out-dir", type=click.Path(file_okay=False),
              help="Folder for the outputs (default: beside each input).")
@click.option("--from-list", "lists", multiple=True, type=click.Path(dir_okay=False),
              metavar="FILE", help="Read input paths from FILE, one a line ('-': stdin).")
@click.option("--plan", "plan_path", type=click.Path(exists=True, dir_okay=False),
              help="Execute this stride map instead of planning.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--skip-existing", is_flag=True,
              help="Skip inputs whose outputs are complete and made with the same input and "
                   "config.")
@click.option("--resume", is_flag=True,
              help="Checkpoint as the scene is written, and continue an interrupted --resume "
                   "run of the same input and config from its last finished row band.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Inputs processed at once, each in its own process.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Worker threads per scene (default: the CPUs shared between the jobs).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS",
              help="Stop an input that takes longer, count it as failed and go on with the "
                   "next (each input then runs in a worker process; compiling the kernels "
                   "first, once, and starting the worker are not counted).")
@click.option("--on-lock", type=click.Choice(["fail", "wait"]), default="fail",
              show_default=True,
              help="When another run is writing the same output: fail that input, or wait.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="With --on-lock wait: give up after this long (default: wait forever).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json: one JSON object per event on stderr.")
@click.option("--progress-every", type=click.IntRange(min=0), default=0, metavar="N",
              help="Progress event every N tiles (default: every tenth of a phase); without a "
                   "terminal, text logs then show progress lines too.")
@click.option("--summary", "summary_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the batch summary (every input's outcome) as JSON to FILE.")
@click.option("--scheduler", envvar="DASK_SCHEDULER_ADDRESS", metavar="ADDRESS",
              help="Run on this Dask scheduler (tcp://host:8786; env DASK_SCHEDULER_ADDRESS).")
@click.option("--distribute", type=click.Choice(["auto", "scenes", "bands"]), default="auto",
              show_default=True,
              help="With --scheduler: a task per scene, or per row band of one scene (auto: "
                   "bands for a single input).")
@click.option("--error-map", is_flag=True,
              help="Also write OUT.error.tif: the estimated RMS error per tile.")
@quicklook_option
@quiet_option
@debug_option
def run(inputs: tuple[str, ...], config_path: str | None, output: str | None,
        out_dir: str | None, lists: tuple[str, ...], plan_path: str | None, overwrite: bool,
        skip_existing: bool, resume: bool, jobs: int, threads: int | None,
        timeout: float | None, on_lock: str, lock_timeout: float | None, log_format: str,
        progress_every: int, summary_path: str | None, scheduler: str | None,
        distribute: str, error_map: bool, quicklook: bool, quiet: bool, debug: bool) -> None:
    """Convolve INPUTS; write OUT.satconv.tif, OUT.stride.tif and OUT.satconv.json.

    INPUTS are files or quoted glob patterns ('scenes/*.tif'); --from-list adds more.
    """
    from .. import batch, parts
    from .render import Renderer

    bars = not quiet and log_format == "text" and sys.stderr.isatty()
    render = Renderer(log_format, quiet, bars=bars, lines=progress_every > 0)

    def fail(err: SatconvError) -> NoReturn:
        render.error(str(err), err.exit_code, err, debug)
        sys.exit(err.exit_code)

    try:
        settings = config.load(config_path)
        config.check_context_contents(settings)
        sources = batch.expand_inputs(inputs, lists,
                                      exclude=[summary_path] if summary_path else [])
        if not sources:
            raise UsageError("no inputs: give files, quoted patterns or --from-list FILE")
        if output and out_dir:
            raise UsageError("-o/--output and --out-dir exclude each other: -o names the "
                             "outputs of one input, --out-dir the folder of several")
        if lock_timeout is not None and on_lock != "wait":
            raise UsageError("--lock-timeout bounds the wait of --on-lock wait; give both")
        if summary_path:  # found out now, not after hours of work
            raster_io.check_output_dir(Path(summary_path))
            if Path(summary_path).is_dir():
                raise OutputError(f"{summary_path}: is a folder, where the summary file "
                                  "must go")
        if output and len(sources) > 1:
            raise UsageError("-o/--output takes one input; use --out-dir for several")
        if out_dir and not Path(out_dir).is_dir():
            what = "is not a folder" if Path(out_dir).exists() else "does not exist"
            raise OutputError(f"{out_dir}: output folder {what}")
        if settings.steps and (resume or plan_path or error_map):
            raise UsageError("--resume, --plan and --error-map run single-kernel configs only "
                             "(the config has steps:)")
        if scheduler and (timeout is not None or jobs > 1):
            raise UsageError("--timeout and --jobs apply to local runs, not with --scheduler")
    except SatconvError as err:
        fail(err)
    opts = batch.RunOptions(
        output=Path(output) if output else None, out_dir=Path(out_dir) if out_dir else None,
        plan_path=Path(plan_path) if plan_path else None, overwrite=overwrite,
        skip_existing=skip_existing, resume=resume, threads=threads, on_lock=on_lock,
        lock_timeout=lock_timeout, progress_every=1 if bars else progress_every, debug=debug,
        error_map=error_map)
    # With --skip-existing a quicklook satconv drew is redrawn for what is (re)done and left
    # as it is for what is skipped (drawn if missing): one that exists is no reason to stop
    # the batch. A PNG satconv did not draw is replaced with --overwrite only (under
    # --skip-existing, its input fails when its quicklook is due: _draw_quicklooks).
    if quicklook:
        src = ""
        try:
            for src in sources:
                for _, paths in batch.units(src, settings, opts):  # every step's
                    _check_quicklook(paths.raster, overwrite or skip_existing, False)
        except SatconvError as err:
            fail(type(err)(f"{src}: {err}") if src else err)
    stop = command_stops()
    try:
        summary = batch.run_batch(sources, settings, opts, render, jobs=jobs, timeout=timeout,
                                  scheduler=scheduler, distribute=distribute)
    except KeyboardInterrupt as err:
        render.close()
        code, what = stop.exit_code, stop.what
        for src in list(render.active) or [None]:
            name = f"{src}: " if src else ""
            kept = "nothing written" if src else "no input was being written"
            if resume and src:
                raster = opts.paths(src).raster
                if parts.finished_parts(raster):
                    kept = "finished parts kept for --resume"
                elif parts.checkpoint_path(raster).exists():
                    kept = "its plan kept for --resume"
            render.error(f"{name}{what}, {kept}", code)
        if summary_path and isinstance(err, batch.BatchInterrupted):
            # what ended is worth knowing (and what a rerun has left to do)
            with contextlib.suppress(OSError):
                err.stopped(code, what).write(Path(summary_path))
        sys.exit(code)
    except SatconvError as err:  # the scheduler cannot be reached, ...
        render.close()
        if summary_path:  # a summary a monitor reads must not be an earlier run's
            with contextlib.suppress(OSError):
                batch.not_run(sources, err, "dask" if scheduler else "local").write(
                    Path(summary_path))
        fail(err)
    render.close()
    if quicklook:
        try:
            summary = _draw_quicklooks(summary, settings, opts, (overwrite, skip_existing),
                                       render, debug, stop)
        except _QuicklooksStopped as stopped:
            if summary_path:
                with contextlib.suppress(OSError):
                    stopped.summary.write(Path(summary_path))
            sys.exit(stopped.code)
    if summary_path:
        try:
            summary.write(Path(summary_path))
        except OSError as err:
            fail(OutputError(f"{summary_path}: cannot write the summary "
                             f"({(err.strerror or str(err)).lower()})"))
    if summary.exit_code:
        sys.exit(summary.exit_code)


class _QuicklooksStopped(Exception):
    """A stop while the quicklooks were drawn: the batch's summary, and the exit code."""

    def __init__(self, summary: BatchSummary, code: int):
        super().__init__(code)
        self.summary = summary
        self.code = code


def _draw_quicklooks(summary: BatchSummary, settings: Settings, opts: RunOptions,
                     replace: tuple[bool, bool], render: Any, debug: bool,
                     stop: Any) -> BatchSummary:
    """After the batch, the quicklook of each input done (or skipped without one). One that
    cannot be drawn fails its input, whose other outputs stay complete (the line says so); a
    stop marks the inputs not yet drawn as stopped (raised as :class:`_QuicklooksStopped`).
    ``replace``: ``--overwrite`` (any PNG), ``--skip-existing`` (a PNG satconv drew)."""
    from .. import batch, previews

    outcomes = list(summary.outcomes)
    for i, outcome in enumerate(outcomes):
        if outcome.status not in ("done", "skipped"):
            continue
        try:
            for _, paths in batch.units(outcome.input, settings, opts):
                if outcome.status == "done" and outcome.report:
                    _make_quicklook(str(paths.report), *replace)
                elif (paths.report.exists()  # skipped: draw one a stop left undrawn
                      and not previews.quicklook_path(paths.raster).exists()):
                    _make_quicklook(str(paths.report), False, False)
        except SatconvError as err:
            message = (f"{outcome.input}: quicklook not drawn: {err}; its other outputs are "
                       "complete")
            render.error(message, 1, err, debug)
            outcomes[i] = dataclasses.replace(outcome, status="failed", exit_code=1,
                                              message=message)
        except KeyboardInterrupt:
            code, what = stop.exit_code, stop.what
            for j in range(i, len(outcomes)):
                if outcomes[j].status in ("done", "skipped"):
                    outcomes[j] = dataclasses.replace(
                        outcomes[j], status="stopped", exit_code=code,
                        message=f"{outcomes[j].input}: {what} while the quicklooks were drawn; "
                                "its outputs are complete")
            render.error(f"{what} while the quicklooks were drawn; the outputs are complete "
                         "(a --skip-existing --quicklook rerun draws what is missing)", code)
            raise _QuicklooksStopped(dataclasses.replace(summary, outcomes=outcomes),
                                     code) from None
    return dataclasses.replace(summary, outcomes=outcomes)


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
    """Plan INPUT only: stride histogram and predicted compute, no convolution. A config
    with steps plans each step."""
    settings = _load_settings(config_path, debug)
    show = not quiet and sys.stderr.isatty()
    configs = ([(f"step {st.name}: ", ss) for st, ss in settings.step_settings()]
               if settings.steps else [("", settings)])
    try:
        if output and settings.steps:
            raise UsageError(f"{output}: a config with steps has a plan per step; -o writes "
                             "one (plan with a config without steps)")
        for label, one in configs:
            cmp = api.compare_scene(input, one,
                                    progress=_progress_factory(show, Path(input).name))
            if output:
                api.write_plan(Path(output), cmp.info, cmp.plan, one, overwrite)
            _print_plan(input, one, cmp, label)
    except SatconvError as err:
        _fail(err, debug)
        sys.exit(err.exit_code)


def _print_plan(input: str, settings: config.Settings, cmp: api.PlanComparison,
                heading: str) -> None:
    """What ``satconv plan`` prints of one config's plan (``heading`` names a step)."""
    info, the_plan = cmp.info, cmp.plan
    for message in plan_warnings(the_plan.details):
        click.echo(f"satconv: {input}: warning: {message}", err=True)
    summary = the_plan.summary()
    click.echo(f"{heading}{input}: {info.width}x{info.height}, {info.count} band(s) "
               f"{info.dtype}, tiles of {settings.tile_size}, policy {settings.policy.type}")
    total = sum(the_plan.histogram().values())
    for stride, count in the_plan.histogram().items():
        label = "skipped" if stride == 0 else f"stride {stride}"
        click.echo(f"  {label:>10}: {count:6d} tiles ({100 * count / total:5.1f}%)")
    samples = summary["compute_fraction"]
    compute = summary.get("predicted_evaluations_fraction", samples)
    click.echo(f"  predicted compute: {100 * compute:.1f}% of full resolution in kernel "
               f"evaluations, as a run counts them (samples alone: {100 * samples:.1f}%)")
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
    rows = [*cmp.policies, *cmp.uniform]
    wide = max(36, *(len(row.label) for row in rows))
    click.echo(f"    {'plan':<{wide}} {'compute':>8} {'PSNR':>9}")
    for row in rows:
        click.echo(f"    {row.label:<{wide}} {100 * row.compute:7.2f}% {_db(row.psnr_db):>9}")
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
    settings = _load_settings(path, debug)
    click.echo(f"{path}: valid")
    for message in settings.warnings():
        click.echo(f"{path}: warning: {message}", err=True)


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
    """Write the built-in defaults as YAML to PATH (or stdout), every key commented."""
    text = config.default_yaml()
    if path is None:
        click.echo(text, nl=False)
        return
    try:
        api.write_default_config(Path(path), overwrite)
    except SatconvError as err:
        _fail(err, False)
        sys.exit(err.exit_code)
    click.echo(f"wrote {path}", err=True)


@cli.command()
@click.argument("path", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Where to write the PNG (default: SCENE.quicklook.png beside the outputs).")
@click.option("--size", type=click.IntRange(min=16, max=4096), default=640, show_default=True,
              help="Long side of each panel, in pixels.")
@click.option("--error-map", type=click.Path(dir_okay=False),
              help="An error raster to draw as a fourth panel (default: the run's own).")
@click.option("--overwrite", is_flag=True, help="Replace an existing quicklook.")
@quiet_option
@debug_option
def preview(path: str, output: str | None, size: int, error_map: str | None, overwrite: bool,
            quiet: bool, debug: bool) -> None:
    """Draw the quicklook of a run: PATH is its input or any of its outputs.

    Side by side: the input (true colour, or grey for one band), the stride map laid over it
    with a legend (stride, tiles, share of compute), the output, and the error map when the
    run wrote one. Every raster is read decimated to --size: memory follows it, not the scene.
    """
    from .. import previews

    try:
        written = previews.make_quicklook(path, output, size=size, overwrite=overwrite,
                                          error_map=error_map)
    except SatconvError as err:
        _fail(err, debug)
        sys.exit(err.exit_code)
    except Exception as err:  # noqa: BLE001 - one line, never a crash
        _fail(RuntimeError(f"{path}: unexpected error: {type(err).__name__}: {err}"), debug)
        sys.exit(1)
    if not quiet:
        click.echo(f"wrote {written}", err=True)


@cli.command()
@config_option
@click.option("--fresh", is_flag=True,
              help="Delete satconv's cached kernels first (older versions' too) and compile "
                   "them anew: the repair for a damaged cache.")
@quiet_option
@debug_option
def warmup(config_path: str | None, fresh: bool, quiet: bool, debug: bool) -> None:
    """Compile satconv's kernels now, once after installing or upgrading, so that the first
    scheduled run does not spend its time (or its --timeout) compiling.

    With -c, the kernels that config uses; without, those of the built-in defaults and of a
    non-separable kernel. Batches with --jobs or --timeout warm up by themselves.
    """
    from .. import warmup as warming

    settings = _load_settings(config_path, debug) if config_path else None
    try:
        removed = warming.clear_cache() if fresh else 0
        seconds, compiled = warming.warm_up_counting(settings)
    except SatconvError as err:
        _fail(err, debug)
        sys.exit(err.exit_code)
    if not quiet:
        first = f"removed {removed} cached kernel files; " if fresh else ""
        how = f"{compiled} compiled" if compiled else "all from the cache"
        click.echo(f"satconv: {first}kernels ready ({how}, {seconds:.1f} s); "
                   f"{warming.cache_note()}", err=True)


def main() -> None:
    """Entry point for ``python -m satconv``."""
    cli(prog_name="satconv")
