"""The curves of a run: fast-reid's ``OUTPUT_DIR/metrics.json`` read into series and drawn into one PNG.

``metrics.json`` holds one JSON object a line, each with ``"iteration"`` and scalars: training lines
every SOLVER.LOG_PERIOD iterations (loss terms, ``lr``, ``time``, ``data_time``, ``eta_seconds``,
accuracies) and evaluation lines (``IR->VIS/Rank-1``, ``VCM/VIS->IR/mAP``, ``Market1501/mINP``,
``metric``, ...; in percent). :func:`read_metrics` merges the lines of one iteration and keeps the
last run of a resumed or repeated one; :func:`draw_runs` draws one run, or several on the same panels
for an ablation:

- losses: every loss term (log-scale y when every value is positive); with several runs, one panel a
  run, on a shared y axis, a term keeping its colour across them;
- learning rate; accuracies (keys ending in ``accuracy``); seconds per iteration (``time``, ``data_time``);
- one panel per evaluation measure, a line per direction / test set (the key's prefix), a marker at
  every evaluation: Rank-1, mAP, mINP, then Rank-5/10/20 together (a marker per rank), the
  model-selection ``metric`` unless it copies another key of its test set, then any other measure
  (``TPR@FPR=1e-04``, ...) or unknown scalar.

``eta_seconds`` (the time left) is not drawn. With several runs a colour is a run and a line style a
direction; with one, both are the direction; the figure's legend, at the bottom, names the runs and
the directions. Drawn off-screen on the Agg canvas (pyplot's state is left alone), saved as a
256-colour PNG.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from ..checkpoint import write_atomically

logger = logging.getLogger(__name__)

__all__ = ["CURVES_FILE", "COMPARE_FILE", "METRICS_FILE", "Drawing", "MetricsFileError", "draw_runs",
           "metrics_file", "read_metrics", "write_run_curves"]

METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"          # one run's picture, in its OUTPUT_DIR
COMPARE_FILE = "curves_compare.png"  # several runs' picture, by default in the first run's folder

#: (iteration, value) pairs in increasing iteration
Series = list[tuple[int, float]]

#: keys not drawn, and why
NOT_DRAWN = {"eta_seconds": "the time left, not a measure of the run"}
TIME_KEYS = ("time", "data_time")  # seconds per iteration
PERCENT_MEASURES = re.compile(r"^(Rank-\d+|mAP|mINP|metric)$")
# a measure with a numeric variant: "Rank-5" -> ("Rank-", "5"), "TPR@FPR=1e-04" -> ("TPR@FPR=", "1e-04")
VARIANT = re.compile(r"^(?P<family>.+?[-=])(?P<value>\d[\d.]*(e[+-]?\d+)?)$")
EVALUATION_ORDER = ("Rank-1", "mAP", "mINP", "Rank-", "metric")

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
           "tab:olive", "tab:cyan")
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
WIDTH_IN, ROW_IN, TITLE_IN, DPI = 12.0, 3.0, 2.0, 100  # 12 x 8 in at 100 dpi for two rows of panels


class MetricsFileError(ValueError):
    """A metrics.json that is missing, malformed or holds nothing to draw; or runs and labels that disagree."""


def metrics_file(run: str | Path) -> Path:
    """A run's metrics.json: ``run`` itself when it is a file, else ``run/metrics.json``."""
    run = Path(run)
    return run if run.is_file() else run / METRICS_FILE


def read_metrics(path: str | Path) -> dict[str, Series]:
    """Every scalar of a fast-reid ``metrics.json``, by key, as (iteration, value) in increasing iteration.

    Lines of the same iteration merge (a later line's value of a key wins). A line whose iteration is
    lower than the previous line's starts a new segment: every record at or after that iteration is
    dropped first (a resumed run replaces what it repeats; a rerun from 0 replaces everything). An
    unparsable last line (a run killed while writing) is skipped with a warning; any other malformed
    line raises :class:`MetricsFileError` naming the file and line. Values that are not numbers are
    not scalars and are left out.
    """
    path = Path(path)
    if not path.is_file():
        raise MetricsFileError(f"{path}: not found; expected the metrics.json fast-reid writes in a run's OUTPUT_DIR")
    lines = path.read_text().splitlines()
    last = max((number for number, text in enumerate(lines, 1) if text.strip()), default=0)
    records: dict[int, dict[str, float]] = {}
    previous = None
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        parsed = _parse_line(path, number, text, is_last=number == last)
        if parsed is None:
            continue
        iteration, scalars = parsed
        if previous is not None and iteration < previous:
            records = {kept: values for kept, values in records.items() if kept < iteration}
        records.setdefault(iteration, {}).update(scalars)
        previous = iteration
    series: dict[str, Series] = {}
    for iteration in sorted(records):
        for key, value in records[iteration].items():
            series.setdefault(key, []).append((iteration, value))
    if not series:
        raise MetricsFileError(f"{path}: no scalar at all; expected lines of loss terms, lr or evaluation results "
                               "besides \"iteration\"")
    return dict(sorted(series.items()))


def _parse_line(path: Path, number: int, text: str, is_last: bool) -> tuple[int, dict[str, float]] | None:
    """One line's iteration and numeric scalars; None for an unparsable last line."""
    try:
        line = json.loads(text)
    except json.JSONDecodeError as error:
        if is_last:
            logger.warning("%s: line %d is not complete JSON (a run killed while writing it?): skipped", path, number)
            return None
        raise MetricsFileError(f"{path}:{number}: not a JSON line ({error.msg}); expected one JSON object a line"
                               ) from None
    iteration = line.get("iteration") if isinstance(line, dict) else None
    if not isinstance(iteration, int) or isinstance(iteration, bool):
        raise MetricsFileError(f"{path}:{number}: expected a JSON object with an integer \"iteration\", got "
                               f"{text.strip()[:80]}")
    return iteration, {key: float(value) for key, value in line.items() if key != "iteration"
                       and isinstance(value, int | float) and not isinstance(value, bool)}


def kind_of(key: str) -> str:
    """Which panel a key goes to: 'loss', 'lr', 'accuracy', 'time', 'evaluation', or 'skip'."""
    if key in NOT_DRAWN:
        return "skip"
    if "loss" in key:
        return "loss"
    if key == "lr":
        return "lr"
    if key.endswith("accuracy"):
        return "accuracy"
    return "time" if key in TIME_KEYS else "evaluation"


def split_evaluation_key(key: str) -> tuple[str, str]:
    """An evaluation key's test set / direction and measure: "VCM/IR->VIS/Rank-1" -> ("VCM/IR->VIS", "Rank-1")."""
    prefix, _, measure = key.rpartition("/")
    return prefix, measure


def measure_family(measure: str) -> tuple[str, str]:
    """A measure's panel and its variant there: "Rank-5" -> ("Rank-", "5"); "mAP" and "Rank-1" stand alone."""
    match = VARIANT.match(measure)
    if measure == "Rank-1" or match is None:
        return measure, ""
    return match["family"], match["value"]


def metric_copies(series: dict[str, Series]) -> dict[str, str]:
    """The model-selection ``metric`` keys equal to another evaluation key of their test set: key -> why not drawn."""
    copies = {}
    for key in series:
        prefix, measure = split_evaluation_key(key)
        if kind_of(key) != "evaluation" or measure != "metric":
            continue
        twins = [other for other in series if other != key and other.startswith(f"{prefix}/" if prefix else "")
                 and kind_of(other) == "evaluation" and series[other] == series[key]]
        if twins:
            copies[key] = f"a copy of {twins[0]}"
    return copies


@dataclass
class Curve:
    """One line: a metrics.json key of one run and how it is drawn."""

    run: int           # index of the run
    key: str           # its metrics.json key
    name: str          # legend text, without the run's label (an evaluation's: its test set / direction)
    points: Series
    colour: str
    linestyle: str | tuple
    marker: str | None = None
    width: float = 1.3


@dataclass
class Panel:
    """One axes: its title and curves; ``by_run``: the colours are runs (the legend shows the line styles)."""

    title: str
    curves: list[Curve] = field(default_factory=list)
    by_run: bool = False
    losses: bool = False      # a loss panel: several share one y axis
    evaluation: bool = False  # its test sets / directions are named once, in the figure's legend
    variants: dict[str, str] = field(default_factory=dict)  # measure -> its marker, where a panel has several
    log_y: bool = False


@dataclass(frozen=True)
class Drawing:
    """What :func:`draw_runs` drew: the picture, its figure, its panels, and for each run the keys of each panel."""

    output: Path
    figure: Figure
    panels: list[str]                         # the panels' titles, in reading order
    drawn: dict[str, dict[str, list[str]]]   # run label -> panel title -> metrics.json keys drawn there
    skipped: dict[str, dict[str, str]]       # run label -> key not drawn -> why


def plan_panels(runs: Sequence[dict[str, Series]], labels: Sequence[str]) -> tuple[list[Panel], dict[str, dict]]:
    """The panels of the runs' series, in reading order, and the keys not drawn of each run (label -> key -> why)."""
    skipped = {label: {**{key: NOT_DRAWN[key] for key in series if key in NOT_DRAWN}, **metric_copies(series)}
               for label, series in zip(labels, runs, strict=True)}
    drawable = [{key: points for key, points in series.items() if key not in skipped[label]}
                for label, series in zip(labels, runs, strict=True)]
    several = len(runs) > 1
    panels = _loss_panels(drawable, labels)
    for kind, title in (("lr", "learning rate"), ("accuracy", "accuracy"), ("time", "seconds / iteration")):
        panels.append(_training_panel(drawable, kind, title, several))
    panels.extend(_evaluation_panels(drawable, several))
    return [panel for panel in panels if panel.curves], skipped


def _loss_panels(runs: Sequence[dict[str, Series]], labels: Sequence[str]) -> list[Panel]:
    """One panel of every loss term (one a run with several runs); total_loss in black, a term one colour."""
    terms = sorted({key for series in runs for key in series if kind_of(key) == "loss"},
                   key=lambda key: (key != "total_loss", key))
    panels = []
    for run, (label, series) in enumerate(zip(labels, runs, strict=True)):
        panel = Panel("losses" if len(runs) == 1 else f"losses: {label}", losses=True)
        for index, key in enumerate(terms):
            if key in series:
                total = key == "total_loss"
                panel.curves.append(Curve(run, key, key, series[key], "black" if total else COLOURS[index % 10],
                                          LINESTYLES[index // 10 % len(LINESTYLES)], _lone_marker(series[key]),
                                          2.0 if total else 1.1))
        panels.append(panel)
    values = [value for panel in panels for curve in panel.curves for _, value in curve.points if math.isfinite(value)]
    for panel in panels:  # the loss panels share their y axis: one scale for all
        panel.log_y = bool(values) and min(values) > 0
    return panels


def _training_panel(runs: Sequence[dict[str, Series]], kind: str, title: str, several: bool) -> Panel:
    """The keys of one kind (lr, accuracy, time), a line style a key, a colour a run (or a key)."""
    keys = sorted({key for series in runs for key in series if kind_of(key) == kind})
    panel = Panel(title, by_run=several)
    for run, series in enumerate(runs):
        for index, key in enumerate(keys):
            if key in series:
                colour = COLOURS[(run if several else index) % 10]
                panel.curves.append(Curve(run, key, key, series[key], colour, LINESTYLES[index % len(LINESTYLES)],
                                          _lone_marker(series[key])))
    return panel


def _lone_marker(points: Series) -> str | None:
    """Training curves have no markers, but a single point needs one to be seen."""
    return "o" if len(points) == 1 else None


def _evaluation_panels(runs: Sequence[dict[str, Series]], several: bool) -> list[Panel]:
    """One panel per measure family; a line style (and, for one run, a colour) per test set / direction,
    a marker at every evaluation, its shape the variant (Rank-5, Rank-10, ...)."""
    keys = {key for series in runs for key in series if kind_of(key) == "evaluation"}
    prefixes = sorted({split_evaluation_key(key)[0] for key in keys})
    families: dict[str, list[tuple[str, str, str]]] = {}  # family -> (key, prefix, variant)
    for key in keys:
        prefix, measure = split_evaluation_key(key)
        family, variant = measure_family(measure)
        families.setdefault(family, []).append((key, prefix, variant))
    panels = []
    for family in sorted(families, key=_family_order):
        variants = sorted({variant for _, _, variant in families[family]}, key=lambda variant: float(variant or 0))
        members = sorted(families[family], key=lambda member: (prefixes.index(member[1]), variants.index(member[2])))
        markers = {variant: MARKERS[index % len(MARKERS)] for index, variant in enumerate(variants)}
        panel = Panel(_family_title(family, variants), by_run=several, evaluation=True,
                      variants={family + variant: markers[variant] for variant in variants} if len(variants) > 1
                      else {})
        for run, series in enumerate(runs):
            for key, prefix, variant in (member for member in members if member[0] in series):
                style = prefixes.index(prefix)
                panel.curves.append(Curve(run, key, prefix or "test", series[key],
                                          COLOURS[(run if several else style) % 10],
                                          LINESTYLES[style % len(LINESTYLES)], markers[variant]))
        panels.append(panel)
    return panels


def _family_order(family: str) -> tuple[int, str]:
    """Rank-1, mAP, mINP, Rank-5/10/20, metric, then the others by name."""
    return (EVALUATION_ORDER.index(family) if family in EVALUATION_ORDER else len(EVALUATION_ORDER), family)


def _family_title(family: str, variants: list[str]) -> str:
    """"Rank-5/10/20 (%)", "mAP (%)", "metric (model selection, %)", "TPR@FPR=1e-04/1e-03"."""
    if family == "metric":
        return "metric (model selection, %)"
    title = family + "/".join(variants)
    return f"{title} (%)" if PERCENT_MEASURES.match(family + variants[0]) else title


def render(panels: Sequence[Panel], labels: Sequence[str], title: str) -> Figure:
    """The panels row by row (each row its own column widths), up to 4 columns, sharing the iteration axis;
    a loss panel two columns wide with its legend beside it; the runs' colours at the bottom."""
    columns, places = _layout(panels)
    rows = places[-1][0] + 1
    figure = Figure(figsize=(WIDTH_IN, TITLE_IN + ROW_IN * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    outer = figure.add_gridspec(rows, 1)
    grids = [outer[row].subgridspec(1, columns) for row in range(rows)]
    taken = {(row, column + step) for row, column, span in places for step in range(span)}
    first_axes, loss_axes = None, None
    for panel, (row, column, span) in zip(panels, places, strict=True):
        axes = figure.add_subplot(grids[row][0, column:column + span], sharex=first_axes,
                                  sharey=loss_axes if panel.losses else None)
        first_axes = first_axes or axes
        loss_axes = loss_axes or (axes if panel.losses else None)
        bottom = all((row + 1, column + step) not in taken for step in range(span))
        _draw_panel(axes, panel, labels, xlabel=bottom, legend_outside=span > 1)
    figure.suptitle(title, fontsize=13)
    handles = _figure_legend(panels, labels)
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=9,
                      frameon=False)
    return figure


def _figure_legend(panels: Sequence[Panel], labels: Sequence[str]) -> list[Line2D]:
    """The runs' colours (several runs), then each test set / direction of the evaluation panels with its line
    style (and, for one run, its colour)."""
    several = len(labels) > 1
    handles = [Line2D([], [], color=COLOURS[run % 10], linewidth=2.5, label=label)
               for run, label in enumerate(labels)] if several else []
    directions = {curve.name: curve for panel in panels if panel.evaluation for curve in panel.curves}
    handles += [Line2D([], [], color="0.35" if several else curve.colour, linestyle=curve.linestyle, linewidth=1.5,
                       label=name) for name, curve in directions.items()]
    return handles if several or len(directions) > 1 else []


def _layout(panels: Sequence[Panel]) -> tuple[int, list[tuple[int, int, int]]]:
    """Columns, and each panel's (row, column, columns spanned), filled row by row: a loss panel spans
    two columns where its row has room."""
    units = len(panels) + sum(panel.losses for panel in panels)  # cells needed, a loss panel taking two
    columns = units if units <= 4 else min(4, math.ceil(math.sqrt(1.5 * units)))  # up to 4: one row
    places, cell = [], 0
    for panel in panels:
        row, column = divmod(cell, columns)
        span = 2 if panel.losses and column + 2 <= columns else 1
        places.append((row, column, span))
        cell += span
    return columns, places


def _draw_panel(axes, panel: Panel, labels: Sequence[str], xlabel: bool, legend_outside: bool) -> None:
    """One panel's lines (each with its metrics.json key as gid), title, scale, grid and legend."""
    for curve in panel.curves:
        iterations, values = zip(*curve.points, strict=True)
        label = f"{labels[curve.run]} {curve.name}" if panel.by_run else curve.name
        axes.plot(iterations, values, color=curve.colour, linestyle=curve.linestyle, marker=curve.marker,
                  markersize=4, linewidth=curve.width, label=label, gid=curve.key)
    axes.set_title(panel.title, fontsize=10)
    if panel.log_y:
        axes.set_yscale("log")
    else:  # a learning rate of 2.5e-5 as 2.5 x 1e-5, not 0.00002
        axes.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    axes.grid(True, alpha=0.3)
    axes.tick_params(labelsize=8)
    if xlabel:
        axes.set_xlabel("iteration", fontsize=9)
    _legend(axes, panel, legend_outside)


def _legend(axes, panel: Panel, outside: bool) -> None:
    """The curves' names; where colours are runs, one grey entry per name with its line style and marker; an
    evaluation panel's markers (its test sets are in the figure's legend)."""
    if panel.evaluation:
        if panel.variants:
            axes.legend(handles=[Line2D([], [], color="0.35", linestyle="", marker=marker, markersize=5, label=name)
                                 for name, marker in panel.variants.items()], fontsize=7, framealpha=0.7)
        return
    names = {curve.name: curve for curve in panel.curves}
    if len(names) < 2:
        return
    handles = None
    if panel.by_run:
        handles = [Line2D([], [], color="0.35", linestyle=curve.linestyle, marker=curve.marker, markersize=4,
                          label=name) for name, curve in names.items()]
    placement = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if outside else {}
    axes.legend(handles=handles, fontsize=7, ncols=2 if len(names) > 6 and not outside else 1, framealpha=0.7,
                **placement)


def save_png(figure: Figure, output: Path) -> None:
    """The figure as a 256-colour PNG: a line drawing looks the same at a third of the size (README-sized);
    written beside ``output`` and renamed (a full disk leaves an earlier picture whole, and no empty one)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    output.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.open(buffer).convert("RGB").quantize(256)
    write_atomically(output, lambda file: picture.save(file, format="png", optimize=True))


def default_labels(runs: Sequence[Path]) -> list[str]:
    """The runs' folder names, or their paths as given where two folders share a name."""
    names = [(run.parent if run.is_file() else run).resolve().name for run in runs]
    return names if len(set(names)) == len(names) else [str(run) for run in runs]


def draw_runs(run_dirs: Sequence[str | Path], output: str | Path, labels: Sequence[str] | None = None) -> Drawing:
    """Draw the curves of one or more runs (OUTPUT_DIRs, or their metrics.json files) into the PNG ``output``.

    ``labels`` name the runs in the legend (default: their folder names). Raises
    :class:`MetricsFileError` for a missing or malformed metrics.json, one without anything to draw,
    or labels that are not one distinct label per run.
    """
    runs = [Path(run) for run in run_dirs]
    if not runs:
        raise MetricsFileError("no run to draw: expected one OUTPUT_DIR or more")
    labels = list(labels) if labels is not None else default_labels(runs)
    if len(labels) != len(runs) or len(set(labels)) != len(labels):
        raise MetricsFileError(f"labels {labels} for {len(runs)} runs: expected one distinct label per run")
    series = [read_metrics(metrics_file(run)) for run in runs]
    panels, skipped = plan_panels(series, labels)
    if not panels:
        raise MetricsFileError(f"{', '.join(str(metrics_file(run)) for run in runs)}: nothing to draw (only "
                               f"{sorted({key for run in series for key in run})})")
    figure = render(panels, labels, " vs ".join(labels))
    output = Path(output)
    save_png(figure, output)
    drawn: dict[str, dict[str, list[str]]] = {label: {} for label in labels}
    for panel in panels:
        for curve in panel.curves:
            drawn[labels[curve.run]].setdefault(panel.title, []).append(curve.key)
    logger.info("curves of %s: %s", " vs ".join(labels), output)
    return Drawing(output, figure, [panel.title for panel in panels], drawn, skipped)


def write_run_curves(output_dir: str | Path) -> Path | None:
    """Draw ``output_dir/metrics.json`` into ``output_dir/curves.png`` (the end of training); the PNG's path,
    or None with a warning when there is nothing to draw or the PNG cannot be written: the picture is a
    by-product that never fails a finished training."""
    output_dir = Path(output_dir)
    try:
        return draw_runs([output_dir], output_dir / CURVES_FILE).output
    except (MetricsFileError, OSError) as error:
        logger.warning("no curves drawn: %s", error)
        return None
