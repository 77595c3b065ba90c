"""A study's report: tables (Markdown, HTML, LaTeX), figures (PNG, SVG), verdicts and one ``report.html``.

Everything is rebuilt from MLflow (:func:`reports.trials.load_trials`), written to a folder and
logged as artifacts (under ``report/``) of the study's parent MLflow run. A written folder is enough
to write the report again (:func:`rebuild_report`, ``report --from``): its trials.csv, summary.json
and study file hold all the report needs, so a committed folder is rebuilt without MLflow.

Folder layout::

    report.html            the whole report in one file: figures inlined (PNG as data: URIs), style
                           inlined, so it reads the same in MLflow's artifact viewer; links to the tables
    report.md              the same as Markdown (findings, tables, verdicts, figures, how it was made)
    summary.json           kind, metric, findings, Spearman rho, verdicts, matched cells (machine-readable);
                           also the direction, report config, command and environment it was made with
    tables/main.{md,html,tex}   the paper-layout table; tables/trials.csv one row per trial
    tables/summary.csv     mean/std/n per point; tables/matched.csv our cells beside the paper's
    tables/curves.csv      the per-epoch loss and knn_top1 of every trial (the learning curves)
    figures/NAME.{png,svg}
    study.yaml             the study file as logged by the engine

Every report opens with a "Findings" paragraph made from its numbers (:func:`findings`): the best
point, the paper's claims and their verdicts, and how large a difference the seed noise allows.
"""

from __future__ import annotations

import base64
import html
import json
import math
import platform
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from reports import curves as lc
from reports import floor
from reports.layouts import Figure, KindReport, build
from reports.layouts.common import accuracy_metric, value_text
from reports.looks import study_verdicts
from reports.sequential import SequentialRule, rule_from_tags
from reports.trials import aggregate, axis_columns, load_curves, load_trials, read_trials_csv, study_runs
from reports.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

if TYPE_CHECKING:
    from mlflow import MlflowClient

ARTIFACT_PATH = "report"
PACKAGES = ("torch", "torchvision", "mlflow", "optuna", "pandas", "matplotlib", "seaborn", "numpy")


@dataclass
class RenderedReport:
    folder: Path
    html: Path
    terminal_text: str
    kind: str = "generic"
    metric: str = "linear_top1"
    report: KindReport | None = None
    logged_to: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class StudyInfo:
    kind: str = "generic"
    metric: str = "linear_top1"
    direction: str = "maximize"
    description: str = ""
    report_cfg: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    file_name: str = "study.yaml"
    parent_run: str | None = None
    git_commit: str = ""
    searched: list[str] = field(default_factory=list)
    """The parameters an Optuna search draws (their values print to 3 significant digits)."""
    log_axes: list[str] = field(default_factory=list)
    """The searched parameters with ``log: true`` (their figure axes are logarithmic)."""
    fingerprint: str | None = None
    floor: dict[str, Any] | None = None
    """The untrained encoder's evaluation (``reports.floor``), when the store or folder has it."""
    sequential: dict[str, Any] | None = None
    """The sequential rule the claims are judged by (``reports.sequential``), for a study run with
    ``--until-decided``; None: the fixed rule of ``reports.verdicts``."""


def parent_run(client: MlflowClient, study_name: str, fingerprint: str | None = None) -> Any | None:
    """The latest study run of the definition ``fingerprint`` (None: of the latest study run's)."""
    exp = client.get_experiment_by_name(study_name)
    if exp is None:
        return None
    _, runs = study_runs(client, exp.experiment_id, fingerprint)
    return runs[0] if runs else None


def _search_params(params: Any) -> tuple[list[str], list[str]]:
    """(searched, searched with log: true) from a study's ``search.params`` (a mapping, parsed or validated)."""
    if not isinstance(params, dict):
        return [], []
    logs = [k for k, v in params.items() if (v.get("log") if isinstance(v, dict) else getattr(v, "log", False))]
    return list(params), logs


def study_info(client: MlflowClient, study_name: str, study: Any | None, metric: str | None,
               fingerprint: str | None = None) -> StudyInfo:
    """Kind, metric and study text: from the Study when given, else from the parent run's YAML artifact;
    the parent run is the latest study run of the definition ``fingerprint`` (None: the current one)."""
    info = StudyInfo()
    run = parent_run(client, study_name, fingerprint)
    if run is not None:
        info.parent_run = run.info.run_id
        info.git_commit = run.data.tags.get("git_commit", "")
        info.fingerprint = run.data.tags.get("fingerprint")
        keys = [k for k in run.data.tags.get(floor.KEYS_TAG, "").split(",") if k]
        info.floor = floor.read_floor(client, keys) if keys else None
        rule = rule_from_tags(run.data.tags)
        info.sequential = rule.as_dict() if rule else None
    if study is not None:
        info.kind = study.report.get("kind", "generic")
        info.report_cfg = dict(study.report)
        info.metric, info.direction, info.description = study.metric, study.direction, study.description
        info.text, info.file_name = study.text, Path(str(study.source)).name or "study.yaml"
        search = getattr(study, "search", None)
        info.searched, info.log_axes = _search_params(getattr(search, "params", None))
    elif run is not None:
        try:
            names = [a.path for a in client.list_artifacts(run.info.run_id) if not a.is_dir]
            ymls = [n for n in names if n.endswith((".yaml", ".yml"))]
            if ymls:
                local = client.download_artifacts(run.info.run_id, ymls[0])
                info_from_text(Path(local).read_text(encoding="utf-8"), Path(ymls[0]).name, info)
        except Exception:  # a missing or unreadable artifact: the generic layout still works
            pass
    if metric:
        info.metric = metric
    return info


def info_from_text(text: str, file_name: str, info: StudyInfo | None = None) -> StudyInfo:
    """Kind, metric, direction and report config as the study file's own text says (``extends:`` unresolved)."""
    info = info or StudyInfo()
    info.text, info.file_name = text, file_name
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{file_name}: not a study file (expected a mapping)")
    info.report_cfg = dict(data.get("report") or {})
    info.kind = info.report_cfg.get("kind") or ("search" if data.get("search") else "generic")
    info.metric = data.get("metric") or info.metric
    info.direction = data.get("direction") or info.direction
    info.description = data.get("description") or ""
    info.searched, info.log_axes = _search_params((data.get("search") or {}).get("params")
                                                  if isinstance(data.get("search"), dict) else None)
    return info


def environment(df: pd.DataFrame, info: StudyInfo) -> dict[str, str]:
    env = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in PACKAGES:
        try:
            env[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    devices = sorted({d for d in df.get("device", pd.Series(dtype=str)).dropna() if d})
    env["device (trials)"] = ", ".join(devices) or "unknown"
    numerics = sorted({n for n in df.get("numerics", pd.Series(dtype=str)).dropna() if n})
    env["numerics (trials)"] = "; ".join(numerics) or "unknown"
    commits = sorted({c for c in df.get("git_commit", pd.Series(dtype=str)).dropna() if c} | (
        {info.git_commit} if info.git_commit else set()))
    env["git commit"] = ", ".join(commits) or "unknown"
    plugins = sorted({p for cell in df.get("plugins", pd.Series(dtype=str)).dropna() if cell for p in cell.split("; ")})
    if plugins:
        env["plugins"] = "; ".join(plugins)
    return env


# ---------------------------------------------------------------------- text
def _md(frame: pd.DataFrame, index: bool) -> str:
    """A table of display strings as Markdown, each cell as written: "35.00" stays "35.00" (tabulate
    would read a column of such strings as numbers and print 35)."""
    return frame.to_markdown(index=index, disable_numparse=True) if len(frame) else "(no trials recorded yet)"


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 trial``, ``2 trials``, ``0 trials``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def _flat(frame: pd.DataFrame, index: bool) -> pd.DataFrame:
    """The table with its named index as a first column: HTML and LaTeX then have one header row
    (pandas gives a named index a header row of its own, empty but for the name)."""
    return frame.reset_index(names=frame.index.name or "") if index else frame


def verdict_lines(rep: KindReport) -> list[str]:
    lines = []
    if rep.has_paper:
        n = len(rep.matched.dropna(subset=["ours", "paper"])) if len(rep.matched) else 0
        rho = rep.rho
        rho_text = f"{rho:+.2f}" if rho == rho else "n/a (fewer than 3 cells in common)"
        lines.append(f"trend vs paper: Spearman rho = {rho_text} over {plural(n, 'cell')} matched by value")
        if rep.paper_only:
            lines.append(f"  paper cells without a result here: {', '.join(rep.paper_only)}")
        if rep.ours_only:
            lines.append(f"  our cells without a paper counterpart: {', '.join(rep.ours_only)}")
    for v in rep.verdicts:
        lines.append(v.line())
    return lines


def _point_text(row: dict[str, Any], axes: list[str], searched: list[str]) -> str:
    if not axes:
        return "all trials"
    return ", ".join(f"{a}={value_text(row[a], 3 if a in searched else None)}" for a in axes)


def findings(df: pd.DataFrame, rep: KindReport, info: StudyInfo, summary: pd.DataFrame) -> str:
    """The report's opening paragraph, made from its numbers only: the best point (mean ± std, n),
    the paper's claims by verdict (where the kind has them) and the seed noise in numbers (the
    seed std pooled over the points with n >= 2 and the 2 standard errors of a difference of two
    means of n seeds, 2 s sqrt(2/n); with one seed per point, that no spread was measured)."""
    metric = info.metric
    unit = " points" if accuracy_metric(metric) else ""
    parts: list[str] = []
    axes = [c for c in summary.columns if c not in ("mean", "std", "n", "failed")] if len(summary) else []
    best = lc.best_point(summary, metric, info.direction)
    points = len(summary)
    what = "trial" if rep.kind == "search" else "point"
    if best is None:
        parts.append(f"No {what} has a finished trial yet: there is no {metric} to report.")
    else:
        n = int(best["n"])
        spread = f" ± {best['std']:.2f}" if n >= 2 and best["std"] == best["std"] else ""
        head = f"Best of {plural(points, what)}" if points > 1 else f"The one {what}"
        low = " (lowest)" if info.direction == "minimize" and points > 1 else ""
        parts.append(f"{head}{low}: {_point_text(best, axes, info.searched)}, "
                     f"{metric} {best['mean']:.2f}{spread} (n={n}).")
        stats = floor.floor_stats(info.floor, metric)
        if stats is not None:
            gain = best["mean"] - stats[0]
            said = (f"training adds {gain:.2f}{unit} over it at the best {what}" if gain >= 0 else
                    f"the best {what} is {-gain:.2f}{unit} below it: training has not beaten it here")
            parts.append(f"An untrained encoder (the floor) reaches {floor.floor_text(info.floor, metric)}: {said}.")
    failed = int((df["status"] == "failed").sum()) if "status" in df else 0
    if failed:
        parts.append(f"{plural(failed, 'trial')} of {len(df)} failed (listed below; a failed point is never 0%).")
    if rep.verdicts:
        by = Counter(v.verdict for v in rep.verdicts)
        named = []
        for word in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE):
            claims = [f'"{v.claim}"' for v in rep.verdicts if v.verdict == word]
            named.append(f"{by[word]} {word}" + (f" ({', '.join(claims)})" if claims else ""))
        rho = rep.rho
        trend = f" Trend vs paper: Spearman rho {rho:+.2f}." if rho == rho else ""
        rule = ""
        if info.sequential:
            r = SequentialRule.from_dict(info.sequential)
            looks = Counter(v.extra.get("sequential", {}).get("look") for v in rep.verdicts
                            if v.extra.get("sequential", {}).get("decided"))
            at = ", ".join(f"{looks[j]} at look {j}" for j in sorted(looks))
            rule = (f" (judged by the sequential rule of --until-decided, at most {r.alpha:g} false decisions per "
                    f"claim over {plural(r.looks, 'look')}{'; decided: ' + at if at else ''})")
        parts.append(f"The paper's {plural(len(rep.verdicts), 'claim')}{rule}: {'; '.join(named)}.{trend}")
    if best is not None:
        s, k, n = lc.pooled_std(summary)
        if k:
            band = 2 * s * math.sqrt(2 / n)
            parts.append(f"Seed std {s:.2f}{unit}, pooled over {plural(k, 'point')} (typically n={n}): "
                         f"differences under about 2 SE = {band:.2f}{unit} are within noise.")
        else:
            parts.append(f"One seed per {what}: no seed spread measured; differences of a point or two may be "
                         "noise at this scale.")
    return " ".join(parts)


def terminal_text(rep: KindReport, metric: str, study_name: str, found: str = "") -> str:
    parts = []
    if found:
        parts += [textwrap.fill(f"Findings: {found}", 100), ""]
    if rep.kind != "generic":
        head = f"{rep.title}" + (f" — paper: {rep.paper_source}" if rep.has_paper else "")
        shown = rep.main.head(15) if rep.kind == "search" else rep.main
        parts += [head, "", _md(shown, rep.main_index)]
        if rep.kind == "search" and len(rep.main) > 15:
            parts.append(f"... {plural(len(rep.main) - 15, 'more trial')} in the report")
        parts.append("")
    parts += rep.notes
    lines = verdict_lines(rep)
    if lines:
        parts += ["", "compared with the paper:", *lines]
    elif rep.kind in ("generic", "search"):
        parts.append("(no paper reference for this kind of study: no verdicts)")
    return "\n".join(p for p in parts).strip("\n")


# ---------------------------------------------------------------------- html
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1.5em; color: #222; }
figure { margin: 1em 0; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; border: 1px solid #eee; }
.findings { background: #f6f8fa; border-left: 4px solid #57606a; padding: 0.6em 1em; }
.reproduced { color: #1a7f37; font-weight: bold; }
.not-reproduced { color: #cf222e; font-weight: bold; }
.inconclusive { color: #9a6700; font-weight: bold; }
"""

IMAGE_CHECK = """
<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images", ok + "/" + imgs.length);
});
</script>
"""


def _esc(text: Any) -> str:
    return html.escape(str(text))


def data_uri(path: Path) -> str:
    """A PNG as a ``data:`` URI: the figure travels inside report.html (MLflow's artifact viewer
    shows an HTML file alone, so a relative ``figures/...`` source would not resolve there)."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


@dataclass
class Page:
    """What both pages (HTML and Markdown) are made from."""

    name: str
    rep: KindReport
    info: StudyInfo
    metric: str
    command: str
    env: dict[str, str]
    figures: list[tuple[str, str]]
    failed: pd.DataFrame
    findings: str
    history_note: str
    folder: Path


def html_page(page: Page) -> str:
    rep, info = page.rep, page.info
    css_class = {REPRODUCED: "reproduced", NOT_REPRODUCED: "not-reproduced", INCONCLUSIVE: "inconclusive"}
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(page.name)} report</title>",
           f"<style>{CSS}</style>{IMAGE_CHECK}</head><body>",
           f"<h1>Study {_esc(page.name)}</h1>",
           f"<p class='findings'><b>Findings.</b> {_esc(page.findings)}</p>",
           f"<p>{_esc(info.description)}</p>",
           f"<p>Report kind <b>{_esc(rep.kind)}</b>; metric <b>{_esc(page.metric)}</b> (%), "
           "mean ± std over seeds.</p>",
           f"<h2>{_esc(rep.title)}</h2>"]
    if rep.has_paper:
        out.append(f"<p>Paper values: {_esc(rep.paper_source)}.</p>")
    out.append(_flat(rep.main, rep.main_index).to_html(index=False, na_rep="", escape=True))
    out.append("<p>Also as <a href='tables/main.md'>Markdown</a>, <a href='tables/main.tex'>LaTeX</a>; "
               "<a href='tables/trials.csv'>every trial</a>, <a href='tables/summary.csv'>per-point summary</a>"
               + (", <a href='tables/matched.csv'>cells beside the paper's</a>" if rep.has_paper else "")
               + (", <a href='tables/curves.csv'>per-epoch history</a>" if not page.history_note else "") + ".</p>")
    for note in rep.notes:
        out.append(f"<p><i>{_esc(note)}</i></p>")
    lines = verdict_lines(rep)
    if rep.has_paper or rep.verdicts:
        out.append("<h2>Did the paper's findings reproduce?</h2><ul>")
        for line in lines[: len(lines) - len(rep.verdicts)]:
            out.append(f"<li>{_esc(line)}</li>")
        for v in rep.verdicts:
            out.append(f"<li><span class='{css_class[v.verdict]}'>{_esc(v.verdict)}</span>: "
                       f"<b>{_esc(v.claim)}</b> — {_esc(v.detail)}</li>")
        out.append("</ul>")
    if len(page.failed):
        out.append("<h3>Failed trials</h3><ul>" + "".join(
            f"<li>trial {int(r['trial'])}: {_esc(r['failure_reason'])}</li>" for _, r in page.failed.iterrows())
            + "</ul>")
    out.append("<h2>Figures</h2>")
    for stem, caption in page.figures:
        out.append(f"<figure><img src='{data_uri(page.folder / 'figures' / f'{stem}.png')}' alt='{_esc(caption)}'>"
                   f"<figcaption>{_esc(caption)}</figcaption></figure>")
    if page.history_note:
        out.append(f"<p><i>{_esc(page.history_note)}</i></p>")
    for title, frame in rep.extra_tables.items():
        out.append(f"<h3>{_esc(title)}</h3>" + frame.to_html(na_rep="", float_format=lambda v: f"{v:.2f}"))
    out.append("<h2>How it was made</h2>")
    out.append(f"<p>Command line:</p><pre>{_esc(page.command)}</pre>")
    out.append("<table>" + "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in page.env.items())
               + "</table>")
    out.append(f"<p>Study file <a href='{_esc(info.file_name)}'>{_esc(info.file_name)}</a>:</p>"
               f"<pre>{_esc(info.text or '(not recorded)')}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def markdown_page(page: Page) -> str:
    """The report as Markdown (``report.md``): what a repository page shows without opening the HTML."""
    rep, info = page.rep, page.info
    out = [f"# Study {page.name}", "", f"**Findings.** {page.findings}", "", info.description.strip(), "",
           f"Report kind **{rep.kind}**; metric **{page.metric}** (%), mean ± std over seeds.", "",
           f"## {rep.title}", ""]
    if rep.has_paper:
        out += [f"Paper values: {rep.paper_source}.", ""]
    out += [_md(rep.main, rep.main_index), ""]
    out += [f"_{note}_\n" for note in rep.notes]
    if rep.has_paper or rep.verdicts:
        lines = verdict_lines(rep)
        out += ["## Did the paper's findings reproduce?", ""]
        out += [f"- {line}" for line in lines[: len(lines) - len(rep.verdicts)]]
        out += [f"- **{v.verdict}**: {v.claim} — {v.detail}" for v in rep.verdicts]
        out.append("")
    if len(page.failed):
        out += (["### Failed trials", ""]
                + [f"- trial {int(r['trial'])}: {r['failure_reason']}" for _, r in page.failed.iterrows()] + [""])
    if page.figures or page.history_note:
        out += ["## Figures", ""] + [f"![{caption}](figures/{stem}.png)\n\n{caption}\n"
                                     for stem, caption in page.figures]
        if page.history_note:
            out += [f"_{page.history_note}_", ""]
    for title, frame in rep.extra_tables.items():
        out += [f"### {title}", "", frame.to_markdown(floatfmt=".2f"), ""]
    out += ["## How it was made", "", "```", page.command, "```", "", "| | |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in page.env.items()]
    history = "; per-epoch history: [tables/curves.csv](tables/curves.csv)" if not page.history_note else ""
    out += ["", f"Study file: [{info.file_name}]({info.file_name}); "
            f"every trial: [tables/trials.csv](tables/trials.csv); per point: [tables/summary.csv](tables/summary.csv)"
            f"{history}.", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------- entry point
def save_figure(fig: Any, base: Path) -> None:
    """``base``.png and ``base``.svg, the same bytes for the same figure: the SVG without its creation
    date and with fixed element ids, so a rebuilt report that did not change leaves git clean."""
    import matplotlib

    fig.savefig(f"{base}.png", dpi=110)
    with matplotlib.rc_context({"svg.hashsalt": "simclr-ablations"}):
        fig.savefig(f"{base}.svg", dpi=110, metadata={"Date": None})


def curves_figure(curves: pd.DataFrame, summary: pd.DataFrame, info: StudyInfo) -> Figure:
    def draw() -> Any:
        return lc.draw_curves(curves, summary, info.metric, info.direction, set(info.searched), set(info.log_axes))

    return Figure("learning_curves", lc.CAPTION, draw)


def write_report(df: pd.DataFrame, name: str, info: StudyInfo, out_dir: Path, command: str,
                 env: dict[str, str] | None = None, curves: pd.DataFrame | None = None) -> RenderedReport:
    """Build and write every file of the report for an already loaded trial frame (no MLflow logging).

    ``env``: the versions and devices to state; a rebuilt report keeps those it was first made with.
    ``curves``: the per-epoch history (:func:`reports.trials.load_curves`), written to tables/curves.csv
    and drawn as the learning curves; None (a folder from before curves were kept) says so instead.
    """
    import matplotlib.pyplot as plt

    metric = info.metric
    rep = build(info.kind, df, metric, info.report_cfg, info.direction,
                info.log_axes if info.searched else None)
    if info.sequential:
        rule = SequentialRule.from_dict(info.sequential)
        rep.verdicts = study_verdicts(df, info.kind, metric, info.report_cfg, info.direction, rule)
        rep.notes.append(f"Claims judged by the sequential rule of `run --until-decided`: {rule.describe()}.")
    at_floor = floor.floor_text(info.floor, metric)
    if at_floor:
        rep.notes.append(f"Floor: an untrained encoder reaches {metric} {at_floor}: {info.floor['of']}, "
                         f"{info.floor['protocol']}.")
    out_dir = Path(out_dir)
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    summary = aggregate(df, metric) if len(df) else pd.DataFrame()
    (out_dir / "tables" / "main.md").write_text(_md(rep.main, rep.main_index) + "\n", encoding="utf-8")
    flat = _flat(rep.main, rep.main_index)
    (out_dir / "tables" / "main.html").write_text(flat.to_html(index=False, na_rep=""), encoding="utf-8")
    (out_dir / "tables" / "main.tex").write_text(flat.to_latex(index=False, na_rep=""), encoding="utf-8")
    df.to_csv(out_dir / "tables" / "trials.csv", index=False)
    summary.to_csv(out_dir / "tables" / "summary.csv", index=False)
    if rep.has_paper:
        rep.matched.to_csv(out_dir / "tables" / "matched.csv", index=False)
    if curves is not None:
        curves.to_csv(out_dir / "tables" / lc.CURVES_CSV, index=False)
    history_note = lc.describe_history(curves)
    specs = list(rep.figures) + ([curves_figure(curves, summary, info)] if not history_note else [])
    warnings: list[str] = []
    figures: list[tuple[str, str]] = []
    for fig_spec in specs:
        try:
            fig = fig_spec.draw()
            floor.draw_floor(fig, info.floor)
            save_figure(fig, out_dir / "figures" / fig_spec.name)
            plt.close(fig)
            figures.append((fig_spec.name, fig_spec.caption))
        except Exception as exc:  # a figure that cannot be drawn must not cost the tables
            plt.close("all")
            warnings.append(f"figure {fig_spec.name} not drawn: {type(exc).__name__}: {exc}")
    if info.text:
        (out_dir / info.file_name).write_text(info.text, encoding="utf-8")
    env = dict(env) if env else environment(df, info)
    failed = df[df["status"] == "failed"] if "status" in df else df.iloc[0:0]
    found = findings(df, rep, info, summary)
    page = Page(name, rep, info, metric, command, env, figures, failed, found, history_note, out_dir)
    html_path = out_dir / "report.html"
    html_path.write_text(html_page(page), encoding="utf-8")
    (out_dir / "report.md").write_text(markdown_page(page), encoding="utf-8")
    rho = rep.rho
    (out_dir / "summary.json").write_text(json.dumps({
        "study": name, "kind": rep.kind, "metric": metric, "direction": info.direction,
        "description": info.description, "report_config": info.report_cfg,
        "study_file": info.file_name if info.text else None, "findings": found,
        "spearman": rho if rho == rho else None,
        "matched": json.loads(rep.matched.to_json(orient="records")) if len(rep.matched) else [],
        "ours_only": rep.ours_only, "paper_only": rep.paper_only,
        "verdicts": [v.as_dict() for v in rep.verdicts], "notes": rep.notes,
        "figures": [f for f, _ in figures], "environment": env, "command": command, "warnings": warnings,
        **({"floor": info.floor} if info.floor else {}),
        **({"sequential": info.sequential} if info.sequential else {}),
    }, indent=2, default=str), encoding="utf-8")
    text = terminal_text(rep, metric, name, found)
    for w in warnings:
        text += f"\nwarning: {w}"
    return RenderedReport(folder=out_dir, html=html_path, terminal_text=text, kind=rep.kind, metric=metric,
                          report=rep, warnings=warnings)


def render_report(tracking_uri: str, study_name: str, study: Any | None, out_dir: Path, command: str,
                  metric: str | None = None, *, fingerprint: str | None = None) -> RenderedReport:
    """Write the study's report to ``out_dir`` and log it as artifacts of the study's parent MLflow run.

    ``fingerprint``: the definition whose trials are reported (None: the latest study run's); the
    parent run logged to and read the study file from is the latest study run of that definition.
    """
    from mlflow import MlflowClient  # here: rebuild_report needs no MLflow

    client = MlflowClient(tracking_uri=tracking_uri)
    info = study_info(client, study_name, study, metric, fingerprint)
    df = load_trials(tracking_uri, study_name, fingerprint if fingerprint is not None else info.fingerprint)
    if df.empty:
        df = pd.DataFrame(columns=["trial", "seed", "status", "failure_reason", "point", "run_id"])
    warnings: list[str] = []
    try:
        curves = load_curves(tracking_uri, df)
    except Exception as exc:  # the learning curves must not cost the report
        curves = pd.DataFrame(columns=[*axis_columns(df), "point", "seed", "epoch", "metric", "value"])
        warnings.append(f"the per-epoch history could not be read: {type(exc).__name__}: {exc}")
    out = write_report(df, study_name, info, Path(out_dir), command, curves=curves)
    for w in warnings:
        out.warnings.append(w)
        out.terminal_text += f"\nwarning: {w}"
    if info.parent_run:
        try:
            client.log_artifacts(info.parent_run, str(out.folder), ARTIFACT_PATH)
            out.logged_to = info.parent_run
        except Exception as exc:
            out.warnings.append(f"could not log the report to MLflow run {info.parent_run}: {exc}")
            out.terminal_text += f"\nwarning: {out.warnings[-1]}"
    return out


class ReportFolderError(ValueError):
    """Not a report folder (or a damaged one): bad input, said in one line naming the file."""


FOLDER_EXPECTED = "expected a report folder as `run` or `report` writes it: summary.json, tables/trials.csv"


def read_report_folder(folder: Path) -> tuple[pd.DataFrame, str, StudyInfo, dict[str, Any]]:
    """The trials, study name, study info and recorded summary of a report folder; nothing else is read.

    The recorded summary.json wins over the study file (its metric may come from ``--metric``, its
    report config from a base file the folder does not hold); the study file fills in the rest.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportFolderError(f"{folder}: no such folder ({FOLDER_EXPECTED})")
    trials_csv, summary_json = folder / "tables" / "trials.csv", folder / "summary.json"
    for path in (trials_csv, summary_json):
        if not path.is_file():
            raise ReportFolderError(f"{path}: not found ({FOLDER_EXPECTED})")
    try:
        recorded = json.loads(summary_json.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportFolderError(f"{summary_json}: not valid JSON ({exc})") from None
    if not isinstance(recorded, dict):
        raise ReportFolderError(f"{summary_json}: expected a JSON object with kind, metric, verdicts")
    try:
        df = read_trials_csv(trials_csv)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' EmptyDataError and ParserError are ValueErrors
        raise ReportFolderError(f"{trials_csv}: not a trials table ({exc})") from None
    absent = [c for c in ("trial", "seed", "status") if c not in df.columns]
    if absent:
        raise ReportFolderError(f"{trials_csv}: no column {', '.join(absent)} (expected one row per trial)")
    info = StudyInfo()
    ymls = sorted(folder.glob("*.y*ml"), key=lambda p: (p.name != "study.yaml", p.name))  # older folders: no study_file
    path = folder / Path(recorded["study_file"]).name if recorded.get("study_file") else (ymls[0] if ymls else None)
    if path is not None and path.is_file():
        try:
            info_from_text(path.read_text(encoding="utf-8"), path.name, info)
        except (ValueError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ReportFolderError(f"{path}: not a readable study file ({str(exc).splitlines()[0]})") from None
    if isinstance(recorded.get("report_config"), dict):
        info.report_cfg = dict(recorded["report_config"])
    info.kind = info.report_cfg.get("kind") or recorded.get("kind") or info.kind
    info.metric = recorded.get("metric") or info.metric
    info.direction = recorded.get("direction") or info.direction
    info.description = recorded.get("description") or info.description
    info.floor = recorded.get("floor") if isinstance(recorded.get("floor"), dict) else None
    info.sequential = recorded.get("sequential") if isinstance(recorded.get("sequential"), dict) else None
    return df, str(recorded.get("study") or folder.name), info, recorded


def rebuild_report(folder: Path, out_dir: Path | None = None, metric: str | None = None) -> RenderedReport:
    """Write the report of a report folder again, into ``out_dir`` (default: the same folder), without MLflow.

    The command and environment recorded in summary.json are kept: they say how the trials were
    made, not where the report was redrawn.
    """
    df, name, info, recorded = read_report_folder(Path(folder))
    if metric:
        info.metric = metric
    env = recorded.get("environment") if isinstance(recorded.get("environment"), dict) else None
    curves = read_curves(Path(folder))
    return write_report(df, name, info, Path(out_dir or folder), str(recorded.get("command") or default_command()), env,
                        curves)


def read_curves(folder: Path) -> pd.DataFrame | None:
    """A folder's tables/curves.csv (the learning curves), None when the folder has none."""
    path = Path(folder) / "tables" / lc.CURVES_CSV
    if not path.is_file():
        return None
    try:
        curves = read_trials_csv(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportFolderError(f"{path}: not a per-epoch history ({exc})") from None
    absent = [c for c in ("point", "seed", "epoch", "metric", "value") if c not in curves.columns]
    if absent:
        raise ReportFolderError(f"{path}: no column {', '.join(absent)} (expected one row per trial, metric, epoch)")
    return curves


def default_command() -> str:
    return " ".join(["python -m ablations", *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python -m ablations"


__all__ = ["RenderedReport", "ReportFolderError", "findings", "rebuild_report", "render_report", "write_report",
           "study_info", "default_command", "print_report"]


def print_report(tracking_uri: str, name: str, metric: str | None = None, out_root: Path = Path("reports_out"),
                 fingerprint: str | None = None) -> None:
    """For ``run`` and ``report``: write the report to OUT_ROOT/NAME/ and print its findings, main table
    and verdicts; ``fingerprint`` as :func:`render_report` takes it."""
    try:
        out = render_report(tracking_uri, name, None, Path(out_root) / name, default_command(), metric,
                            fingerprint=fingerprint)
    except Exception as exc:  # the plain table is already printed; a report bug must not fail the run
        print(f"warning: the report could not be written: {type(exc).__name__}: {exc}", file=sys.stderr)
        return
    if out.terminal_text:
        print("\n" + out.terminal_text)
    print(f"\nreport: {out.html.resolve()}")
