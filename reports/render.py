"""A study's report: tables (Markdown, HTML, LaTeX), figures (PNG, SVG), verdicts and one ``report.html``.

Everything is rebuilt from MLflow (:func:`reports.trials.load_trials`), written to a folder and
logged as artifacts (under ``report/``) of the study's parent MLflow run. A written folder is enough
to write the report again (:func:`rebuild_report`, ``report --from``): its trials.csv, summary.json
and study file hold all the report needs, so a committed folder is rebuilt without MLflow.

Folder layout::

    report.html            the whole report (relative links to everything below)
    report.md              the same as Markdown (tables, verdicts, figures, how it was made)
    summary.json           kind, metric, Spearman rho, verdicts, matched cells (machine-readable);
                           also the direction, report config, command and environment it was made with
    tables/main.{md,html,tex}   the paper-layout table; tables/trials.csv one row per trial
    tables/summary.csv     mean/std/n per point; tables/matched.csv our cells beside the paper's
    figures/NAME.{png,svg}
    study.yaml             the study file as logged by the engine
"""

from __future__ import annotations

import html
import json
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from reports.layouts import KindReport, build
from reports.trials import ROLE_TAG, aggregate, load_trials, read_trials_csv
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


def parent_run(client: MlflowClient, study_name: str) -> Any | None:
    exp = client.get_experiment_by_name(study_name)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'study'",
                              order_by=["attributes.start_time ASC"], max_results=1)
    return runs[0] if runs else None


def study_info(client: MlflowClient, study_name: str, study: Any | None, metric: str | None) -> StudyInfo:
    """Kind, metric and study text: from the Study when given, else from the parent run's YAML artifact."""
    info = StudyInfo()
    run = parent_run(client, study_name)
    if run is not None:
        info.parent_run = run.info.run_id
        info.git_commit = run.data.tags.get("git_commit", "")
    if study is not None:
        info.kind = study.report.get("kind", "generic")
        info.report_cfg = dict(study.report)
        info.metric, info.direction, info.description = study.metric, study.direction, study.description
        info.text, info.file_name = study.text, Path(str(study.source)).name or "study.yaml"
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
    return env


# ---------------------------------------------------------------------- text
def _md(frame: pd.DataFrame, index: bool) -> str:
    return frame.to_markdown(index=index) if len(frame) else "(no trials recorded yet)"


def verdict_lines(rep: KindReport) -> list[str]:
    lines = []
    if rep.has_paper:
        n = len(rep.matched.dropna(subset=["ours", "paper"])) if len(rep.matched) else 0
        rho = rep.rho
        rho_text = f"{rho:+.2f}" if rho == rho else "n/a (fewer than 3 cells in common)"
        lines.append(f"trend vs paper: Spearman rho = {rho_text} over {n} cells matched by value")
        if rep.paper_only:
            lines.append(f"  paper cells without a result here: {', '.join(rep.paper_only)}")
        if rep.ours_only:
            lines.append(f"  our cells without a paper counterpart: {', '.join(rep.ours_only)}")
    for v in rep.verdicts:
        lines.append(v.line())
    return lines


def terminal_text(rep: KindReport, metric: str, study_name: str) -> str:
    parts = []
    if rep.kind != "generic":
        head = f"{rep.title}" + (f" — paper: {rep.paper_source}" if rep.has_paper else "")
        shown = rep.main.head(15) if rep.kind == "search" else rep.main
        parts += [head, "", _md(shown, rep.main_index)]
        if rep.kind == "search" and len(rep.main) > 15:
            parts.append(f"... {len(rep.main) - 15} more trials in the report")
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
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; border: 1px solid #eee; }
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


def html_page(name: str, rep: KindReport, info: StudyInfo, metric: str, command: str, env: dict[str, str],
              figures: list[tuple[str, str]], summary: pd.DataFrame, failed: pd.DataFrame) -> str:
    css_class = {REPRODUCED: "reproduced", NOT_REPRODUCED: "not-reproduced", INCONCLUSIVE: "inconclusive"}
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_esc(name)} report</title>",
           f"<style>{CSS}</style>{IMAGE_CHECK}</head><body>",
           f"<h1>Study {_esc(name)}</h1>", f"<p>{_esc(info.description)}</p>",
           f"<p>Report kind <b>{_esc(rep.kind)}</b>; metric <b>{_esc(metric)}</b> (%), mean ± std over seeds.</p>",
           f"<h2>{_esc(rep.title)}</h2>"]
    if rep.has_paper:
        out.append(f"<p>Paper values: {_esc(rep.paper_source)}.</p>")
    out.append(rep.main.to_html(index=rep.main_index, na_rep="", escape=True))
    out.append("<p>Also as <a href='tables/main.md'>Markdown</a>, <a href='tables/main.tex'>LaTeX</a>; "
               "<a href='tables/trials.csv'>every trial</a>, <a href='tables/summary.csv'>per-point summary</a>"
               + (", <a href='tables/matched.csv'>cells beside the paper's</a>" if rep.has_paper else "") + ".</p>")
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
    if len(failed):
        out.append("<h3>Failed trials</h3><ul>" + "".join(
            f"<li>trial {int(r['trial'])}: {_esc(r['failure_reason'])}</li>" for _, r in failed.iterrows()) + "</ul>")
    out.append("<h2>Figures</h2>")
    for stem, caption in figures:
        out.append(f"<figure><img src='figures/{stem}.png' alt='{_esc(caption)}'>"
                   f"<figcaption>{_esc(caption)} (<a href='figures/{stem}.svg'>SVG</a>)</figcaption></figure>")
    for title, frame in rep.extra_tables.items():
        out.append(f"<h3>{_esc(title)}</h3>" + frame.to_html(na_rep="", float_format=lambda v: f"{v:.2f}"))
    out.append("<h2>Per point</h2>" + summary.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.2f}"))
    out.append("<h2>How it was made</h2>")
    out.append(f"<p>Command line:</p><pre>{_esc(command)}</pre>")
    out.append("<table>" + "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in env.items())
               + "</table>")
    out.append(f"<p>Study file <a href='{_esc(info.file_name)}'>{_esc(info.file_name)}</a>:</p>"
               f"<pre>{_esc(info.text or '(not recorded)')}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def markdown_page(name: str, rep: KindReport, info: StudyInfo, metric: str, command: str, env: dict[str, str],
                  figures: list[tuple[str, str]], summary: pd.DataFrame, failed: pd.DataFrame) -> str:
    """The report as Markdown (``report.md``): what a repository page shows without opening the HTML."""
    out = [f"# Study {name}", "", info.description.strip(), "",
           f"Report kind **{rep.kind}**; metric **{metric}** (%), mean ± std over seeds.", "", f"## {rep.title}", ""]
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
    if len(failed):
        out += (["### Failed trials", ""]
                + [f"- trial {int(r['trial'])}: {r['failure_reason']}" for _, r in failed.iterrows()] + [""])
    if figures:
        out += ["## Figures", ""] + [f"![{caption}](figures/{stem}.png)\n\n{caption}\n" for stem, caption in figures]
    for title, frame in rep.extra_tables.items():
        out += [f"### {title}", "", frame.to_markdown(floatfmt=".2f"), ""]
    if len(summary):
        out += ["## Per point", "", summary.to_markdown(index=False, floatfmt=".2f"), ""]
    out += ["## How it was made", "", "```", command, "```", "", "| | |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in env.items()]
    out += ["", f"Study file: [{info.file_name}]({info.file_name}); "
            "every trial: [tables/trials.csv](tables/trials.csv).", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------- entry point
def save_figure(fig: Any, base: Path) -> None:
    """``base``.png and ``base``.svg, the same bytes for the same figure: the SVG without its creation
    date and with fixed element ids, so a rebuilt report that did not change leaves git clean."""
    import matplotlib

    fig.savefig(f"{base}.png", dpi=110)
    with matplotlib.rc_context({"svg.hashsalt": "simclr-ablations"}):
        fig.savefig(f"{base}.svg", dpi=110, metadata={"Date": None})


def write_report(df: pd.DataFrame, name: str, info: StudyInfo, out_dir: Path, command: str,
                 env: dict[str, str] | None = None) -> RenderedReport:
    """Build and write every file of the report for an already loaded trial frame (no MLflow logging).

    ``env``: the versions and devices to state; a rebuilt report keeps those it was first made with.
    """
    import matplotlib.pyplot as plt

    metric = info.metric
    rep = build(info.kind, df, metric, info.report_cfg, info.direction)
    out_dir = Path(out_dir)
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    summary = aggregate(df, metric) if len(df) else pd.DataFrame()
    (out_dir / "tables" / "main.md").write_text(_md(rep.main, rep.main_index) + "\n", encoding="utf-8")
    (out_dir / "tables" / "main.html").write_text(rep.main.to_html(index=rep.main_index, na_rep=""), encoding="utf-8")
    (out_dir / "tables" / "main.tex").write_text(rep.main.to_latex(index=rep.main_index, na_rep=""), encoding="utf-8")
    df.to_csv(out_dir / "tables" / "trials.csv", index=False)
    summary.to_csv(out_dir / "tables" / "summary.csv", index=False)
    if rep.has_paper:
        rep.matched.to_csv(out_dir / "tables" / "matched.csv", index=False)
    warnings: list[str] = []
    figures: list[tuple[str, str]] = []
    for fig_spec in rep.figures:
        try:
            fig = fig_spec.draw()
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
    page = html_page(name, rep, info, metric, command, env, figures, summary, failed)
    html_path = out_dir / "report.html"
    html_path.write_text(page, encoding="utf-8")
    (out_dir / "report.md").write_text(markdown_page(name, rep, info, metric, command, env, figures, summary, failed),
                                       encoding="utf-8")
    rho = rep.rho
    (out_dir / "summary.json").write_text(json.dumps({
        "study": name, "kind": rep.kind, "metric": metric, "direction": info.direction,
        "description": info.description, "report_config": info.report_cfg,
        "study_file": info.file_name if info.text else None,
        "spearman": rho if rho == rho else None,
        "matched": json.loads(rep.matched.to_json(orient="records")) if len(rep.matched) else [],
        "ours_only": rep.ours_only, "paper_only": rep.paper_only,
        "verdicts": [v.as_dict() for v in rep.verdicts], "notes": rep.notes,
        "figures": [f for f, _ in figures], "environment": env, "command": command, "warnings": warnings,
    }, indent=2, default=str), encoding="utf-8")
    text = terminal_text(rep, metric, name)
    for w in warnings:
        text += f"\nwarning: {w}"
    return RenderedReport(folder=out_dir, html=html_path, terminal_text=text, kind=rep.kind, metric=metric,
                          report=rep, warnings=warnings)


def render_report(tracking_uri: str, study_name: str, study: Any | None, out_dir: Path, command: str,
                  metric: str | None = None) -> RenderedReport:
    """Write the study's report to ``out_dir`` and log it as artifacts of the study's parent MLflow run."""
    from mlflow import MlflowClient  # here: rebuild_report needs no MLflow

    client = MlflowClient(tracking_uri=tracking_uri)
    df = load_trials(tracking_uri, study_name)
    info = study_info(client, study_name, study, metric)
    if df.empty:
        df = pd.DataFrame(columns=["trial", "seed", "status", "failure_reason", "point", "run_id"])
    out = write_report(df, study_name, info, Path(out_dir), command)
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
    return write_report(df, name, info, Path(out_dir or folder), str(recorded.get("command") or default_command()), env)


def default_command() -> str:
    return " ".join(["python -m ablations", *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python -m ablations"


__all__ = ["RenderedReport", "ReportFolderError", "rebuild_report", "render_report", "write_report", "study_info",
           "default_command"]


def print_report(tracking_uri: str, name: str, metric: str | None = None, out_root: Path = Path("reports_out")) -> None:
    """For ``run`` and ``report``: write the report to OUT_ROOT/NAME/ and print its main table and verdicts."""
    try:
        out = render_report(tracking_uri, name, None, Path(out_root) / name, default_command(), metric)
    except Exception as exc:  # the plain table is already printed; a report bug must not fail the run
        print(f"warning: the report could not be written: {type(exc).__name__}: {exc}", file=sys.stderr)
        return
    if out.terminal_text:
        print("\n" + out.terminal_text)
    print(f"\nreport: {out.html.resolve()}")
