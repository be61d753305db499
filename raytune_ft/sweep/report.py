"""`raytune-ft report RUN`: one HTML page with PNGs of a sweep, from the files it wrote.

Learning curves of every trial (where the scheduler stopped each), parallel coordinates of
the sampled values against the metric, and hyperparameter importance (Optuna's fANOVA over
the trials' best values). Runs without Ray."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from raytune_ft.sweep.results import SweepResults, _cell, load_results

MIN_TRIALS_FOR_IMPORTANCE = 3


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report into `out` (default RUN/report/) and return its index.html."""
    results = load_results(run_dir)
    out = Path(out) if out is not None else results.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    curves = learning_curves(results)
    figures = {"learning_curves.png": _plot_curves(results, curves)}
    if len(results.trials) >= 2 and results.spec.sweep and results.spec.sweep.space:
        figures["parallel_coordinates.png"] = _plot_parallel(results)
    importance = param_importance(results)
    if importance:
        figures["importance.png"] = _plot_importance(importance, results.spec.metric)
    for name, figure in figures.items():
        figure.savefig(out / name, dpi=110, bbox_inches="tight")
    index = out / "index.html"
    tmp = index.with_suffix(".html.tmp")
    tmp.write_text(_page(results, list(figures), importance), encoding="utf-8")
    tmp.replace(index)  # a reader never sees half a page
    return index


def learning_curves(results: SweepResults) -> dict[str, list[tuple[int, float]]]:
    """(step, metric) at each evaluation of each trial, from its steps.jsonl."""
    metric = results.spec.metric
    curves = {}
    for trial in results.trials:
        log = results.run_dir / "trials" / trial.trial_id / "steps.jsonl"
        if not log.exists():
            continue
        points = {}  # by step: a resumed trial may evaluate a step twice
        for line in log.read_text().splitlines():
            record = json.loads(line)
            if record.get("event") == "eval" and metric in record:
                points[int(record["step"])] = float(record[metric])
        curves[trial.trial_id] = sorted(points.items())
    return curves


def param_importance(results: SweepResults) -> dict[str, float]:
    """fANOVA importance of each space key for the trials' best values (keys every trial
    set; empty with fewer than MIN_TRIALS_FOR_IMPORTANCE trials)."""
    sweep = results.spec.sweep
    if sweep is None or len(results.trials) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    from raytune_ft.sweep.space import optuna_distribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    common = [k for k in sweep.space if all(k in t.params for t in results.trials)]
    if not common:
        return {}
    direction = "maximize" if results.spec.metric_mode == "max" else "minimize"
    study = optuna.create_study(direction=direction)
    distributions = {k: optuna_distribution(sweep.space[k]) for k in common}
    for trial in results.trials:
        params = {k: _category(sweep.space[k], trial.params[k]) for k in common}
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=distributions, value=trial.metric
            )
        )
    try:
        found = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError):  # e.g. every trial has the same values
        return {}
    return {k: float(v) for k, v in found.items()}


def _category(dist: Any, value: Any) -> Any:
    """Section choices as their index (Optuna's categories are scalars)."""
    values = dist.values
    if values is not None and any(isinstance(v, dict) for v in values):
        return values.index(value)
    return value


def _figure(width: float = 7.5, height: float = 4.2) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _plot_curves(results: SweepResults, curves: dict[str, list[tuple[int, float]]]) -> Any:
    figure = _figure()
    axes = figure.add_subplot()
    best = results.trials[0].trial_id if results.trials else None
    finished = {t.trial_id: t.finished for t in results.trials}
    for trial_id, points in curves.items():
        if not points:
            continue
        steps, values = zip(*points, strict=True)
        width = 2.4 if trial_id == best else 1.0
        (line,) = axes.plot(steps, values, linewidth=width, alpha=0.9, label=trial_id)
        # Where each trial ended: o finished its budget, x stopped by the scheduler.
        marker = "o" if finished.get(trial_id) else "x"
        axes.plot(steps[-1], values[-1], marker, color=line.get_color(), markersize=7)
    axes.set_xlabel("step")
    axes.set_ylabel(results.spec.metric)
    axes.set_title("learning curves (o: finished, x: stopped early; thick: best)")
    if len(curves) <= 12:
        axes.legend(fontsize=7, loc="best")
    axes.grid(alpha=0.3)
    return figure


def _plot_parallel(results: SweepResults) -> Any:
    """One vertical axis per space key and one for the metric, each scaled to [0, 1]."""
    from matplotlib import colormaps

    sweep = results.spec.sweep
    assert sweep is not None
    keys = list(sweep.space)
    columns = []
    for key in keys:
        dist = sweep.space[key]
        raw = [t.params.get(key) for t in results.trials]
        if dist.values is not None:  # categories: their position in the list
            numbers = [None if v is None else float(dist.values.index(v)) for v in raw]
            low, high = 0.0, float(max(len(dist.values) - 1, 1))
        else:
            log = "loguniform" in type(dist).model_fields or "logint" in type(dist).model_fields
            numbers = [None if v is None else (math.log10(v) if log else float(v)) for v in raw]
            low, high = (math.log10(b) if log else float(b) for b in dist.corners)
        columns.append([None if n is None else (n - low) / ((high - low) or 1.0) for n in numbers])
    metrics = [t.metric for t in results.trials]
    low, high = min(metrics), max(metrics)
    columns.append([(m - low) / ((high - low) or 1.0) for m in metrics])
    labels = [*keys, results.spec.metric]
    figure = _figure(max(6.0, 1.6 * len(labels)), 4.2)
    axes = figure.add_subplot()
    cmap = colormaps["viridis"]
    order = range(len(results.trials))[::-1]  # the best drawn last, on top
    for i in order:
        ys = [column[i] for column in columns]
        xs = [x for x, y in enumerate(ys) if y is not None]
        color = cmap(columns[-1][i] if results.spec.metric_mode == "max" else 1 - columns[-1][i])
        axes.plot(xs, [ys[x] for x in xs], color=color, alpha=0.8, linewidth=2.2 if i == 0 else 1)
    axes.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    axes.set_yticks([0, 1], ["low", "high"])
    for x in range(len(labels)):
        axes.axvline(x, color="grey", linewidth=0.6)
    axes.set_title("parallel coordinates (log keys on a log scale; colour: metric, thick: best)")
    return figure


def _plot_importance(importance: dict[str, float], metric: str) -> Any:
    figure = _figure(6.5, 0.5 + 0.45 * len(importance))
    axes = figure.add_subplot()
    keys = list(importance)[::-1]
    axes.barh(keys, [importance[k] for k in keys], color="#4c72b0")
    axes.set_xlabel(f"fANOVA importance for {metric}")
    axes.set_xlim(0, 1)
    return figure


def _page(results: SweepResults, images: list[str], importance: dict[str, float]) -> str:
    spec, summary = results.spec, results.summary
    esc = html.escape
    best = results.trials[0] if results.trials else None
    facts = [
        ("metric", f"{spec.metric} ({spec.metric_mode})"),
        ("trials", str(len(results.trials))),
    ]
    if summary:
        facts.append(("ended", ", ".join(f"{k} {v}" for k, v in summary["trials"].items())))
        facts.append(("wall time", f"{summary.get('wall_time_s', 0):.0f} s"))
        for key, value in summary.get("test_metrics", {}).items():
            counts = key.endswith(("_examples", "_tokens", "_generated"))
            if key != "slices" and isinstance(value, float) and not counts:
                facts.append((f"best model, {key}", f"{value:.4f}"))
    if best is not None:
        facts.append((f"best {spec.metric}", f"{best.metric:.4f} (trial {best.trial_id})"))
        facts += [(f"best {k}", _cell(v)) for k, v in best.params.items()]
    keys = list(spec.sweep.space) if spec.sweep else []
    rows = "".join(
        "<tr>"
        + f"<td>{rank}</td><td>{esc(t.trial_id)}</td>"
        + "".join(f"<td>{esc(_cell(t.params[k])) if k in t.params else '-'}</td>" for k in keys)
        + f"<td>{t.metric:.4f}</td><td>{t.evaluations}</td><td>{t.step}</td>"
        + f"<td>{'finished' if t.finished else 'stopped early'}</td></tr>"
        for rank, t in enumerate(results.trials, start=1)
    )
    head = "".join(
        f"<th>{esc(k)}</th>" for k in ["#", "trial", *keys, spec.metric, "evals", "step", "ended"]
    )
    figures = "".join(
        f'<figure><img src="{esc(name)}" alt="{esc(name)}"></figure>' for name in images
    )
    note = (
        ""
        if importance
        else (
            f"<p>Importance needs {MIN_TRIALS_FOR_IMPORTANCE} or more trials with the same "
            "keys.</p>"
        )
    )
    facts_html = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(spec.name)}: sweep report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }}
th {{ background: #f3f3f3; }}
figure {{ margin: 1rem 0; }} img {{ max-width: 100%; }}
</style></head>
<body>
<h1>{esc(spec.name)}: sweep report</h1>
<p>{esc(str(results.run_dir))}</p>
<table id="facts">{facts_html}</table>
{figures}{note}
<h2>Trials, best first</h2>
<table id="trials"><tr>{head}</tr>{rows}</table>
</body></html>
"""
