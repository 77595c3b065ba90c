"""One layout per study kind: the paper's table or figure, our numbers beside the paper's, the claims.

Every builder takes the per-trial DataFrame of :func:`reports.trials.load_trials` and returns a
:class:`KindReport`: the main table (display strings, "ours (paper)" where both exist), the cells
matched by value with the paper's (for the Spearman correlation), the cells without a counterpart,
the verdicts on the paper's headline claims and the figures to draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from reports import reference  # noqa: E402
from reports.trials import aggregate, axis_columns  # noqa: E402
from reports.verdicts import (  # noqa: E402
    Estimate,
    Verdict,
    best_of,
    check_greater,
    estimate,
    from_row,
    mean_of,
    missing,
    not_checked,
    with_paper,
    spearman,
)

OPS = "augment.ops"
CONTRASTIVE_METRICS = ("contrastive_acc", "contrastive_accuracy", "contrastive_top1")


@dataclass
class Figure:
    name: str
    caption: str
    draw: Callable[[], Any]


@dataclass
class KindReport:
    kind: str
    title: str
    main: pd.DataFrame
    matched: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["cell", "ours", "paper"]))
    ours_only: list[str] = field(default_factory=list)
    paper_only: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra_tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    paper_source: str = ""
    main_index: bool = False

    @property
    def rho(self) -> float:
        done = self.matched.dropna(subset=["ours", "paper"]) if len(self.matched) else self.matched
        return spearman(done["ours"], done["paper"]) if len(done) else math.nan

    @property
    def has_paper(self) -> bool:
        return bool(self.paper_source)


# ---------------------------------------------------------------------- shared helpers
def cell_text(est: Estimate | None, std: float = math.nan) -> str:
    """``61.23 ± 0.50 (n=3)``, ``61.23`` (one seed), ``failed (2)`` or ``not run``; never 0 for a failure."""
    if est is None:
        return "not run"
    if est.n == 0:
        return f"failed ({est.failed})" if est.failed else "not run"
    text = f"{est.mean:.2f}"
    if est.n > 1 and std == std:
        text += f" ± {std:.2f} (n={est.n})"
    return text


@dataclass
class Cell:
    est: Estimate
    std: float

    def text(self) -> str:
        return cell_text(self.est, self.std)


def cells_by(df: pd.DataFrame, metric: str, axes: list[str], key: Callable[[pd.Series], Any]) -> dict[Any, Cell]:
    """Aggregate over seeds per point of ``axes`` and key each cell by ``key(row)`` (None: skipped)."""
    out: dict[Any, Cell] = {}
    for _, row in aggregate(df, metric, axes).iterrows():
        k = key(row)
        if k is None:
            continue
        out[k] = Cell(from_row(label_of(k), row), float(row["std"]) if row["n"] > 1 else math.nan)
    return out


def pooled_over_seeds(df: pd.DataFrame, metric: str, label: str) -> Cell:
    """Trials of one configuration repeated under several axis values: mean per seed first, then over seeds."""
    done = df[df["status"] == "finished"]
    if metric not in done or done.empty:
        return Cell(Estimate(label, math.nan, math.nan, 0, int((df["status"] == "failed").sum())), math.nan)
    per_seed = done.groupby("seed")[metric].mean()
    std = float(per_seed.std()) if len(per_seed) > 1 else math.nan
    se = std / math.sqrt(len(per_seed)) if len(per_seed) > 1 else math.nan
    return Cell(Estimate(label, float(per_seed.mean()), se, len(per_seed)), std)


def _label_of(key: Any) -> str:
    if isinstance(key, tuple):
        return "(" + ", ".join(_label_of(k) for k in key) + ")"
    if isinstance(key, bool):
        return "yes" if key else "no"
    if isinstance(key, float):
        return f"{key:g}"
    return str(key)


label_of = _label_of


def ops_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value)
    return [] if text in ("(none)", "", "nan") else text.split("+")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def est(cells: dict[Any, Cell], key: Any, label: str | None = None) -> Estimate:
    cell = cells.get(key)
    if cell is None:
        return missing(label or label_of(key))
    return cell.est if label is None else Estimate(label, cell.est.mean, cell.est.se, cell.est.n, cell.est.failed)


def paper_cells(paper: dict[Any, Any]) -> dict[Any, Cell]:
    """The paper's ``(value, source, confidence)`` entries as cells of one "seed", without spread."""
    return {k: Cell(estimate(label_of(k), float(v[0]), math.nan, 1), math.nan) for k, v in paper.items()}


def paper_twin(cells: dict[Any, Cell], paper: dict[Any, Any]) -> dict[Any, Cell]:
    """The paper's cell for each of our cells, missing where it has none: the same keys as
    ``cells``, so a claim judged on both compares the same cells."""
    theirs = paper_cells(paper)
    return {k: theirs.get(k, Cell(missing(cell.est.label), math.nan)) for k, cell in cells.items()}


def ours_paper(cell: Cell | None, paper: float | None) -> str:
    text = cell.text() if cell is not None else "not run"
    return f"{text} ({paper:.1f})" if paper is not None else text


def matched_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["cell", "ours", "ours_std", "n", "paper", "source", "confidence"])


def match(ours: dict[Any, Cell], paper: dict[Any, tuple[float, str, str]],
          names: dict[Any, str] | None = None) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Cells with a result on both sides (by value), the labels of our cells the paper lacks, and the
    labels of the paper's cells without a result here (not in the study, or no finished trial)."""
    names = names or {}

    def label_of(key: Any) -> str:
        return names.get(key) or _label_of(key)

    rows = []
    for key, cell in ours.items():
        if key in paper and not cell.est.missing:
            value, source, confidence = paper[key]
            rows.append(dict(cell=label_of(key), ours=cell.est.mean, ours_std=cell.std, n=cell.est.n,
                             paper=value, source=source, confidence=confidence))
    ours_only = [label_of(k) for k in ours if k not in paper]
    # a paper cell the study has but no finished trial of: without a result here, as one never run
    unfinished = {k: c.est.absence for k, c in ours.items() if c.est.missing}
    paper_only = [label_of(k) + (f" ({unfinished[k]})" if k in unfinished else "") for k in paper
                  if k not in ours or k in unfinished]
    return matched_frame(rows), ours_only, paper_only


def accuracy_metric(metric: str) -> bool:
    return metric != "loss"


def _new_fig(ncols: int = 2, width: float = 6.0, height: float = 4.2) -> tuple[Any, Any]:
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, axes[0]


def _bars(ax: Any, frame: pd.DataFrame, x: str, hue: str | None, y: str, err: str | None, title: str,
          order: list[Any] | None = None, hue_order: list[Any] | None = None) -> None:
    """Grouped bars with error bars (our std over seeds), from a tidy frame."""
    order = order if order is not None else list(dict.fromkeys(frame[x]))
    hues = (hue_order if hue_order is not None else list(dict.fromkeys(frame[hue]))) if hue else [None]
    palette = sns.color_palette("viridis", max(len(hues), 1))
    shown = frame[np.isfinite(frame[y])]
    # one bar per x (a zip study: each temperature has one normalisation) is centred, not dodged
    single = hue is None or int(shown.groupby(x)[hue].nunique().max() if len(shown) else 1) <= 1
    width = 0.8 if single else 0.8 / max(len(hues), 1)
    for j, h in enumerate(hues):
        sub = frame if hue is None else frame[frame[hue] == h]
        xs, ys, es = [], [], []
        for i, xv in enumerate(order):
            hit = sub[sub[x] == xv]
            if hit.empty or not np.isfinite(hit[y].iloc[0]):
                continue
            xs.append(i if single else i - 0.4 + width * (j + 0.5))
            ys.append(hit[y].iloc[0])
            es.append(hit[err].iloc[0] if err and np.isfinite(hit[err].iloc[0]) else 0.0)
        ax.bar(xs, ys, width=width * 0.95, yerr=es if any(es) else None, capsize=3, color=palette[j],
               label=label_of(h) if hue else None)
        for xi, yi, ei in zip(xs, ys, es):  # above the error bar, so the two do not overlap
            ax.text(xi, yi + ei, f"{yi:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(order)), [label_of(v) for v in order])
    ax.set_xlabel(x)
    ax.set_title(title)
    if hue:
        ax.legend(title=hue, fontsize=8)
    spread = frame[err].fillna(0.0) if err else 0.0
    finite = pd.concat([frame[y] - spread, frame[y] + spread]).replace([np.inf, -np.inf], np.nan).dropna()
    if len(finite):
        lo, hi = float(finite.min()), float(finite.max())
        pad = max((hi - lo) * 0.25, 1.0)
        ax.set_ylim(max(lo - pad, 0.0), hi + pad)


def _tidy(cells: dict[Any, Cell], names: list[str]) -> pd.DataFrame:
    rows = []
    for key, cell in cells.items():
        parts = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(names, parts)), "value": cell.est.mean, "std": cell.std})
    return pd.DataFrame(rows, columns=[*names, "value", "std"])


def _paper_tidy(paper: dict[Any, tuple[float, str, str]], names: list[str]) -> pd.DataFrame:
    rows = []
    for key, (value, _, _) in paper.items():
        parts = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(names, parts)), "value": value, "std": math.nan})
    return pd.DataFrame(rows, columns=[*names, "value", "std"])


def _need(df: pd.DataFrame, columns: list[str]) -> None:
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise KeyError(f"the trials do not vary {', '.join(absent)}")


# ---------------------------------------------------------------------- augment_pairs (Figure 5)
def augment_pairs(df: pd.DataFrame, metric: str, cfg: dict[str, Any]) -> KindReport:
    _need(df, [OPS])
    sec = reference.section("augment_pairs") or {}
    order = [str(o) for o in (cfg.get("order") or sec.get("order") or [])]

    def key(row: pd.Series) -> Any:
        ops = ops_list(row[OPS])
        if len(ops) == 1:
            return (ops[0], ops[0])
        if len(ops) == 2:
            return (ops[0], ops[1])
        return None

    cells = cells_by(df, metric, [OPS], key)
    for first, second in cells:
        for op in (first, second):
            if op not in order:
                order.append(op)
    paper = {(r, c): reference.value_of(v, sec) for r, cols in sec.get("cells", {}).items() for c, v in cols.items()}
    matched, ours_only, paper_only = match(cells, paper)

    def grid(values: Callable[[str, str], float]) -> pd.DataFrame:
        frame = pd.DataFrame([[values(r, c) for c in order] for r in order], index=order, columns=order, dtype=float)
        frame["row mean"] = frame.mean(axis=1)
        frame.loc["column mean"] = frame[order].mean(axis=0)
        return frame

    ours_grid = grid(lambda r, c: cells[(r, c)].est.mean if (r, c) in cells else math.nan)
    paper_grid = grid(lambda r, c: paper[(r, c)][0] if (r, c) in paper else math.nan)
    main = pd.DataFrame(index=[*order, "column mean"], columns=[*order, "row mean"], dtype=object)
    for r in order:
        for c in order:
            main.loc[r, c] = ours_paper(cells.get((r, c)), paper[(r, c)][0] if (r, c) in paper else None) if (
                (r, c) in cells or (r, c) in paper) else ""
    for r in order:
        main.loc[r, "row mean"] = _mean_text(ours_grid.loc[r, "row mean"], paper_grid.loc[r, "row mean"])
    for c in order:
        main.loc["column mean", c] = _mean_text(ours_grid.loc["column mean", c], paper_grid.loc["column mean", c])
    main.loc["column mean", "row mean"] = ""
    main.index.name = "1st \\ 2nd"

    def judge(cells: dict[Any, Cell]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        if not accuracy_metric(metric):
            return verdicts
        pair = [k for k in (("crop", "color"), ("color", "crop")) if k in cells]
        others = [c.est for k, c in cells.items() if k[0] != k[1] and k not in (("crop", "color"), ("color", "crop"))]
        if pair and others:
            verdicts.append(check_greater(
                "crop+color is the best pair",
                best_of("crop+color", [cells[k].est for k in pair]), best_of("best other pair", others)))
        else:
            verdicts.append(not_checked("crop+color is the best pair", "the study has no crop/color pair or no other pair"))
        diag = [c.est for k, c in cells.items() if k[0] == k[1]]
        off = [c.est for k, c in cells.items() if k[0] != k[1]]
        if diag and off:
            verdicts.append(check_greater("compositions beat single transformations (mean over cells)",
                                          mean_of("pairs", off), mean_of("singles", diag)))
        return verdicts

    verdicts = with_paper(judge(cells), judge(paper_twin(cells, paper)))

    def heatmaps() -> Any:
        fig, axes = _new_fig(2, 7.0, 6.0)
        for ax, frame, title in ((axes[0], ours_grid, f"ours ({metric})"), (axes[1], paper_grid, "paper (Figure 5)")):
            sns.heatmap(frame, annot=True, fmt=".1f", cmap="Greens", cbar=False, ax=ax, annot_kws={"fontsize": 8})
            ax.set_xlabel("2nd transformation")
            ax.set_ylabel("1st transformation")
            ax.set_title(title)
        for i, r in enumerate(order):  # seaborn leaves a cell without a value blank: say which failed
            for j, c in enumerate(order):
                if (r, c) in cells and cells[(r, c)].est.missing and cells[(r, c)].est.failed:
                    axes[0].text(j + 0.5, i + 0.5, "failed", ha="center", va="center", fontsize=8, color="firebrick")
        fig.tight_layout()
        return fig

    return KindReport(
        kind="augment_pairs", title=sec.get("title", "augment pairs"), main=main, matched=matched,
        ours_only=ours_only, paper_only=paper_only, verdicts=verdicts, main_index=True,
        figures=[Figure("augment_pairs_heatmap", "Linear evaluation per pair of transformations (rows first, "
                        "columns second; diagonal = single), ours beside Figure 5.", heatmaps)],
        extra_tables={"ours": ours_grid.round(2), "paper": paper_grid.round(1)},
        paper_source=f"{sec.get('source', '')}, {sec.get('confidence', '')}",
        notes=["cells read `ours (paper)`; row/column means over the cells present"],
    )


def _mean_text(ours: float, paper: float) -> str:
    left = f"{ours:.2f}" if ours == ours else "—"
    return f"{left} ({paper:.1f})" if paper == paper else left


# ---------------------------------------------------------------------- color_strength (Table 1)
def color_strength(df: pd.DataFrame, metric: str, cfg: dict[str, Any]) -> KindReport:
    axis = "augment.color.strength"
    _need(df, [axis])
    sec = reference.section("color_strength") or {}
    has_ops = OPS in df.columns
    axes = [axis, OPS] if has_ops else [axis]
    cells = cells_by(df, metric, axes, lambda row: (float(row[axis]), "blur" in ops_list(row[OPS]) if has_ops else False))
    paper = {(float(c["strength"]), bool(c["blur"])): reference.value_of(c["value"], sec) for c in sec.get("cells", [])}
    names = {(float(c["strength"]), bool(c["blur"])): c["label"] for c in sec.get("cells", [])}
    keys = sorted(set(cells) | set(paper))
    label = {k: names.get(k) or (f"{k[0]:g}" + (" (+Blur)" if k[1] else "")) for k in keys}
    matched, ours_only, paper_only = match(cells, paper, label)
    main = pd.DataFrame(
        [[cells[k].text() if k in cells else "not run" for k in keys],
         [f"{paper[k][0]:.1f}" if k in paper else "—" for k in keys]],
        index=[f"ours ({metric})", "paper (Table 1, SimCLR)"], columns=[label[k] for k in keys])
    main.index.name = "colour strength"

    def judge(cells: dict[Any, Cell]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        if not accuracy_metric(metric):
            return verdicts
        plain = sorted(k for k in cells if not k[1])
        if len(plain) >= 2:
            verdicts.append(check_greater("accuracy increases with color strength",
                                          est(cells, plain[-1], f"strength {plain[-1][0]:g}"),
                                          est(cells, plain[0], f"strength {plain[0][0]:g}")))
        else:
            verdicts.append(not_checked("accuracy increases with color strength", "fewer than 2 strengths without blur"))
        blur = [k for k in cells if k[1] and (k[0], False) in cells]
        if blur:
            k = max(blur)
            verdicts.append(check_greater(f"adding blur helps (strength {k[0]:g})", est(cells, k, f"{k[0]:g} (+Blur)"),
                                          est(cells, (k[0], False), f"{k[0]:g}")))
        return verdicts

    verdicts = with_paper(judge(cells), judge(paper_twin(cells, paper)))

    def draw() -> Any:
        fig, axes_ = _new_fig(2)
        ours = pd.DataFrame([dict(x=label[k], value=c.est.mean, std=c.std) for k, c in sorted(cells.items())])
        theirs = pd.DataFrame([dict(x=label[k], value=v[0], std=math.nan) for k, v in sorted(paper.items())])
        order = [label[k] for k in keys]
        _bars(axes_[0], ours, "x", None, "value", "std", f"ours ({metric})", order=order)
        _bars(axes_[1], theirs, "x", None, "value", None, "paper (Table 1)", order=order)
        for ax in axes_:
            ax.set_xlabel("colour distortion strength")
        fig.tight_layout()
        return fig

    return KindReport(
        kind="color_strength", title=sec.get("title", "colour strength"), main=main, matched=matched,
        ours_only=ours_only, paper_only=paper_only, verdicts=verdicts, main_index=True,
        figures=[Figure("color_strength", "Linear evaluation versus colour distortion strength, ours beside Table 1.", draw)],
        paper_source=f"{sec.get('source', '')}, {sec.get('confidence', '')}",
        notes=["the paper's AutoAugment column is not part of this study"],
    )


# ---------------------------------------------------------------------- projection_head (Figure 8)
def projection_head(df: pd.DataFrame, metric: str, cfg: dict[str, Any]) -> KindReport:
    head_axis, dim_axis = "model.head", "model.head_dim"
    _need(df, [head_axis])
    sec = reference.section("projection_head") or {}
    has_dim = dim_axis in df.columns
    heads_with_dim = df[df[head_axis] != "none"]
    cells = cells_by(heads_with_dim, metric, [head_axis, dim_axis] if has_dim else [head_axis],
                     lambda row: (str(row[head_axis]), int(row[dim_axis]) if has_dim else None))
    none_rows = df[df[head_axis] == "none"]
    none_cell = pooled_over_seeds(none_rows, metric, "none") if len(none_rows) else None
    paper: dict[Any, tuple[float, str, str]] = {}
    for head, dims in sec.get("cells", {}).items():
        for dim, v in dims.items():
            paper[(head, int(dim))] = reference.value_of(v, sec)
    paper_none = paper.pop(("none", 2048), None)
    matched, ours_only, paper_only = match(cells, paper)
    if none_cell is not None and paper_none is not None and not none_cell.est.missing:
        matched = pd.concat([matched, matched_frame([dict(
            cell="none", ours=none_cell.est.mean, ours_std=none_cell.std, n=none_cell.est.n, paper=paper_none[0],
            source=paper_none[1], confidence=paper_none[2])])], ignore_index=True)
    elif paper_none is not None:
        paper_only.append("none")
    dims = sorted({k[1] for k in cells if k[1] is not None} | {k[1] for k in paper})
    heads = [h for h in ("none", "linear", "nonlinear") if h in set(df[head_axis]) or h in {k[0] for k in paper}]
    heads += [h for h in dict.fromkeys(df[head_axis]) if h not in heads]
    main = pd.DataFrame(index=heads, columns=dims, dtype=object)
    for h in heads:
        for d in dims:
            if h == "none":
                main.loc[h, d] = ""
            else:
                p = paper.get((h, d))
                main.loc[h, d] = ours_paper(cells.get((h, d)), p[0] if p else None) if ((h, d) in cells or p) else ""
    if "none" in heads:
        text = ours_paper(none_cell, paper_none[0] if paper_none else None) if none_cell else (
            f"not run ({paper_none[0]:.1f})" if paper_none else "")
        main.loc["none", :] = ""
        main.loc["none", dims[-1] if dims else "any"] = f"{text} [any dim]" if none_cell else text
    main.index.name = "head \\ output dim"

    def judge(cells: dict[Any, Cell], none_est: Estimate) -> list[Verdict]:
        if not accuracy_metric(metric):
            return []
        common = sorted({d for (h, d) in cells if h == "linear"} & {d for (h, d) in cells if h == "nonlinear"})
        lin = mean_of("linear (mean over dims)", [cells[("linear", d)].est for d in common]) if common else missing("linear")
        non = mean_of("nonlinear (mean over dims)", [cells[("nonlinear", d)].est for d in common]) if common else missing("nonlinear")
        return [
            check_greater("nonlinear head beats linear by more than 3 points", non, lin, margin=3.0),
            check_greater("linear head beats no head", lin, none_est),
            check_greater("nonlinear head beats no head by more than 10 points", non, none_est, margin=10.0),
        ]

    paper_none_est = estimate("none", paper_none[0], math.nan, 1) if paper_none else missing("none")
    verdicts = with_paper(judge(cells, none_cell.est if none_cell else missing("none")),
                          judge(paper_twin(cells, paper), paper_none_est))

    def draw() -> Any:
        fig, axes_ = _new_fig(2)
        for ax, source, title in ((axes_[0], "ours", f"ours ({metric})"), (axes_[1], "paper", "paper (Figure 8)")):
            for h, color in (("linear", "tab:blue"), ("nonlinear", "tab:orange")):
                if source == "ours":
                    pts = sorted((d, c.est.mean, c.std) for (hh, d), c in cells.items() if hh == h and d is not None)
                else:
                    pts = sorted((d, v[0], math.nan) for (hh, d), v in paper.items() if hh == h)
                if pts:
                    xs, ys, es = zip(*pts)
                    ax.errorbar(xs, ys, yerr=[e if e == e else 0 for e in es], marker="o", capsize=3, label=h, color=color)
            none_value = (none_cell.est.mean if none_cell else math.nan) if source == "ours" else (
                paper_none[0] if paper_none else math.nan)
            if none_value == none_value:
                ax.axhline(none_value, color="tab:gray", linestyle="--", label="none")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("projection output dimensionality")
            ax.set_title(title)
            ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    return KindReport(
        kind="projection_head", title=sec.get("title", "projection head"), main=main, matched=matched,
        ours_only=ours_only, paper_only=paper_only, verdicts=verdicts, main_index=True,
        figures=[Figure("projection_head", "Linear evaluation of h versus the output dimension of z, one line per "
                        "head; dashed: no head. Ours beside Figure 8.", draw)],
        paper_source=f"{sec.get('source', '')}, {sec.get('confidence', '')}",
        notes=["`none` pools its trials over the output dimension (the head is the identity): mean per seed, then over seeds"],
    )


# ---------------------------------------------------------------------- batch_size_epochs (Figure 9)
def batch_size_epochs(df: pd.DataFrame, metric: str, cfg: dict[str, Any]) -> KindReport:
    b_axis, e_axis = "train.batch_size", "train.epochs"
    _need(df, [b_axis, e_axis])
    sec = reference.section("batch_size_epochs") or {}
    cells = cells_by(df, metric, [b_axis, e_axis], lambda row: (int(row[b_axis]), int(row[e_axis])))
    paper = {(int(b), int(e)): reference.value_of(v, sec) for b, eps in sec.get("cells", {}).items() for e, v in eps.items()}
    matched, ours_only, paper_only = match(cells, paper)
    batches = sorted({k[0] for k in cells})
    epochs = sorted({k[1] for k in cells})
    main = pd.DataFrame(index=epochs, columns=batches, dtype=object)
    for e in epochs:
        for b in batches:
            p = paper.get((b, e))
            main.loc[e, b] = ours_paper(cells.get((b, e)), p[0] if p else None)
    main.index.name = "epochs \\ batch size"

    def judge(cells: dict[Any, Cell]) -> list[Verdict]:
        """The claims on a grid's own corners (ours, or the paper's, whose grid is another one)."""
        if not accuracy_metric(metric):
            return []
        batches = sorted({k[0] for k in cells})
        epochs = sorted({k[1] for k in cells})
        if len(batches) < 2 or len(epochs) < 2:
            return [not_checked("larger batches help at few epochs", "needs at least 2 batch sizes and 2 epoch budgets")]
        b0, b1, e0, e1 = batches[0], batches[-1], epochs[0], epochs[-1]
        big_short, small_short = est(cells, (b1, e0), f"batch {b1} @ {e0} ep"), est(cells, (b0, e0), f"batch {b0} @ {e0} ep")
        verdicts = [
            check_greater("with the fewest epochs the largest batch beats the smallest", big_short, small_short),
            check_greater("training longer helps (mean over batch sizes)",
                          mean_of(f"{e1} epochs", [est(cells, (b, e1)) for b in batches]),
                          mean_of(f"{e0} epochs", [est(cells, (b, e0)) for b in batches])),
        ]
        gap_short = big_short.minus(small_short, f"gap @ {e0} ep")
        gap_long = est(cells, (b1, e1)).minus(est(cells, (b0, e1)), f"gap @ {e1} ep")
        claim = "the large-batch advantage shrinks with more epochs"
        if gap_short.missing or gap_long.missing:
            verdicts.append(not_checked(claim, "a corner cell has no finished trial"))
        else:
            verdicts.append(check_greater(claim, gap_short, gap_long))
        return verdicts

    # our grid (64-512 x 10-40 at the cpu scale) need not overlap the paper's (256-8192 x 100-800):
    # the paper's side of each claim is the same comparison on the corners of its own grid
    verdicts = with_paper(judge(cells), judge(paper_cells(paper)))

    def draw() -> Any:
        fig, axes_ = _new_fig(2)
        ours = _tidy(cells, ["batch size", "epochs"])
        theirs = _paper_tidy(paper, ["batch size", "epochs"])
        _bars(axes_[0], ours, "epochs", "batch size", "value", "std", f"ours ({metric})",
              order=epochs, hue_order=batches)
        _bars(axes_[1], theirs, "epochs", "batch size", "value", None, "paper (Figure 9 / Table B.1)",
              order=sorted(set(theirs["epochs"])), hue_order=sorted(set(theirs["batch size"])))
        fig.tight_layout()
        return fig

    return KindReport(
        kind="batch_size_epochs", title=sec.get("title", "batch size x epochs"), main=main, matched=matched,
        ours_only=ours_only, paper_only=paper_only, verdicts=verdicts, main_index=True,
        figures=[Figure("batch_size_epochs", "Linear evaluation per batch size (bars) and training length "
                        "(groups), ours beside Figure 9.", draw)],
        paper_source=f"{sec.get('source', '')}, {sec.get('confidence', '')}",
    )


# ---------------------------------------------------------------------- temperature (Table 5)
def temperature(df: pd.DataFrame, metric: str, cfg: dict[str, Any]) -> KindReport:
    n_axis, t_axis = "loss.normalize", "loss.temperature"
    _need(df, [t_axis])
    sec = reference.section("temperature") or {}
    has_norm = n_axis in df.columns
    axes = [n_axis, t_axis] if has_norm else [t_axis]
    key = lambda row: (as_bool(row[n_axis]) if has_norm else True, float(row[t_axis]))  # noqa: E731
    cells = cells_by(df, metric, axes, key)
    contrastive = next((m for m in CONTRASTIVE_METRICS if m in df.columns), None)
    ccells = cells_by(df, contrastive, axes, key) if contrastive else {}
    paper = {(bool(c["normalize"]), float(c["temperature"])): reference.value_of(c["top1"], sec) for c in sec.get("cells", [])}
    pcontr = {(bool(c["normalize"]), float(c["temperature"])): float(c["contrastive_acc"]) for c in sec.get("cells", [])}
    pcontr_cells = {k: (v, "", "") for k, v in pcontr.items()}  # the (value, source, confidence) form of paper
    matched, ours_only, paper_only = match(cells, paper)
    keys = sorted(set(cells) | set(paper), key=lambda k: (not k[0], k[1]))
    rows = []
    for k in keys:
        rows.append({
            "l2 norm": "yes" if k[0] else "no",
            "τ": f"{k[1]:g}",
            "contrastive acc. (ours)": (ccells[k].text() if k in ccells else "not run") if contrastive else
            ("not measured" if k in cells else "not run"),
            f"top-1 (ours, {metric})": cells[k].text() if k in cells else "not run",
            "contrastive acc. (paper)": f"{pcontr[k]:.1f}" if k in pcontr else "—",
            "top-1 (paper)": f"{paper[k][0]:.1f}" if k in paper else "—",
        })
    main = pd.DataFrame(rows)

    def judge(cells: dict[Any, Cell], ccells: dict[Any, Cell]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        norm = sorted(k for k in cells if k[0])
        raw = sorted(k for k in cells if not k[0])
        if accuracy_metric(metric):
            if norm and raw:
                verdicts.append(check_greater("l2 normalization beats none (each at its best temperature)",
                                              best_of("l2 norm", [cells[k].est for k in norm]),
                                              best_of("no l2 norm", [cells[k].est for k in raw])))
            else:
                verdicts.append(not_checked("l2 normalization beats none (each at its best temperature)",
                                            "the study does not run both with and without l2 normalisation"))
            if len(norm) >= 3:
                mid = [cells[k].est for k in norm[1:-1]]
                ends = [cells[norm[0]].est, cells[norm[-1]].est]
                verdicts.append(check_greater("with l2 norm, a moderate temperature beats the extremes",
                                              best_of("moderate τ", mid), best_of("extreme τ", ends)))
        claim = "without l2 norm the contrastive accuracy is higher"
        if not contrastive:
            verdicts.append(not_checked(claim, "contrastive accuracy is not measured by this study's trials"))
        elif norm and raw:
            verdicts.append(check_greater(claim, mean_of("no l2 norm", [ccells[k].est for k in raw if k in ccells]),
                                          mean_of("l2 norm", [ccells[k].est for k in norm if k in ccells])))
        return verdicts

    verdicts = with_paper(judge(cells, ccells), judge(paper_twin(cells, paper), paper_twin(ccells, pcontr_cells)))

    def draw() -> Any:
        fig, axes_ = _new_fig(2)
        ours = _tidy(cells, ["l2 norm", "τ"])
        theirs = _paper_tidy(paper, ["l2 norm", "τ"])
        _bars(axes_[0], ours, "τ", "l2 norm", "value", "std", f"ours ({metric})", order=sorted(set(ours["τ"])),
              hue_order=[True, False])
        _bars(axes_[1], theirs, "τ", "l2 norm", "value", None, "paper (Table 5)", order=sorted(set(theirs["τ"])),
              hue_order=[True, False])
        fig.tight_layout()
        return fig

    notes = ["cells are matched by (l2 norm, τ) value (the paper ran its unnormalised rows at τ 10 and 100)"]
    return KindReport(
        kind="temperature", title=sec.get("title", "temperature"), main=main, matched=matched,
        ours_only=ours_only, paper_only=paper_only, verdicts=verdicts,
        figures=[Figure("temperature", "Linear evaluation per temperature, with and without l2 normalisation, "
                        "ours beside Table 5.", draw)],
        paper_source=f"{sec.get('source', '')}, {sec.get('confidence', '')}", notes=notes,
    )


# ---------------------------------------------------------------------- loss_functions (Table 4)
def loss_functions(df: pd.DataFrame, metric: str, cfg: dict[str, Any]) -> KindReport:
    l_axis, s_axis = "loss.name", "loss.semi_hard"
    _need(df, [l_axis])
    sec = reference.section("loss_functions") or {}
    has_sh = s_axis in df.columns
    cells = cells_by(df, metric, [l_axis, s_axis] if has_sh else [l_axis],
                     lambda row: (str(row[l_axis]), as_bool(row[s_axis]) if has_sh else False))
    paper = {(c["loss"], bool(c["semi_hard"])): reference.value_of(c["value"], sec) for c in sec.get("cells", [])}
    names = {(c["loss"], bool(c["semi_hard"])): c["label"] for c in sec.get("cells", [])}
    keys = list(paper) + [k for k in cells if k not in paper]
    label = {k: names.get(k, f"{k[0]}{' (sh)' if k[1] else ''}") for k in keys}
    matched, ours_only, paper_only = match(cells, paper, label)
    main = pd.DataFrame(
        [[cells[k].text() if k in cells else "not run" for k in keys],
         [f"{paper[k][0]:.1f}" if k in paper else "—" for k in keys]],
        index=[f"ours ({metric})", "paper (Table 4)"], columns=[label[k] for k in keys])
    main.index.name = "loss"

    def judge(cells: dict[Any, Cell]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        if not accuracy_metric(metric):
            return verdicts
        xent = [k for k in cells if k[0] == "nt_xent"]
        others = [cells[k].est for k in cells if k[0] != "nt_xent"]
        if xent and others:
            verdicts.append(check_greater("NT-Xent beats the other losses", best_of("NT-Xent", [cells[k].est for k in xent]),
                                          best_of("best other loss", others)))
        for loss, text in (("margin_triplet", "margin triplet"), ("nt_logistic", "NT-Logistic")):
            if (loss, True) in cells and (loss, False) in cells:
                verdicts.append(check_greater(f"semi-hard negative mining helps {text}",
                                              est(cells, (loss, True), f"{text} (sh)"), est(cells, (loss, False), text)))
        return verdicts

    verdicts = with_paper(judge(cells), judge(paper_twin(cells, paper)))

    def draw() -> Any:
        fig, axes_ = _new_fig(2)
        order = [label[k] for k in keys]
        ours = pd.DataFrame([dict(x=label[k], value=c.est.mean, std=c.std) for k, c in cells.items()])
        theirs = pd.DataFrame([dict(x=label[k], value=v[0], std=math.nan) for k, v in paper.items()])
        _bars(axes_[0], ours, "x", None, "value", "std", f"ours ({metric})", order=order)
        _bars(axes_[1], theirs, "x", None, "value", None, "paper (Table 4)", order=order)
        for ax in axes_:
            ax.set_xlabel("loss")
            ax.tick_params(axis="x", labelrotation=20)
        fig.tight_layout()
        return fig

    return KindReport(
        kind="loss_functions", title=sec.get("title", "loss functions"), main=main, matched=matched,
        ours_only=ours_only, paper_only=paper_only, verdicts=verdicts, main_index=True,
        figures=[Figure("loss_functions", "Linear evaluation per loss, ours beside Table 4.", draw)],
        paper_source=f"{sec.get('source', '')}, {sec.get('confidence', '')}",
    )


# ---------------------------------------------------------------------- search
def search(df: pd.DataFrame, metric: str, cfg: dict[str, Any], direction: str = "maximize") -> KindReport:
    params = axis_columns(df)
    frame = df.sort_values("trial")
    cols = ["trial", *params, "seed", "status", metric] if metric in df.columns else ["trial", *params, "seed", "status"]
    table = frame[cols].copy()
    done = frame[(frame["status"] == "finished") & frame.get(metric, pd.Series(dtype=float)).notna()] if metric in frame else frame.iloc[0:0]
    notes = []
    if len(done):
        best = done.loc[done[metric].idxmax() if direction == "maximize" else done[metric].idxmin()]
        notes.append("best trial: " + f"#{int(best['trial'])}, " + ", ".join(f"{p}={_short(best[p])}" for p in params)
                     + f", {metric} = {best[metric]:.2f}")
    if metric in table:
        table[metric] = [f"{v:.2f}" if s == "finished" and v == v else s for v, s in zip(table[metric], table["status"])]
    ranked = table.copy()
    if len(done):
        order = done.sort_values(metric, ascending=direction != "maximize")["trial"].tolist()
        ranked = pd.concat([table.set_index("trial").loc[order].reset_index(),
                            table[~table["trial"].isin(order)]], ignore_index=True)

    def history() -> Any:
        fig, axes_ = _new_fig(1, 7.0)
        ax = axes_[0]
        if len(done):
            ax.scatter(done["trial"], done[metric], label="trial", color="tab:blue")
            running = done[metric].cummax() if direction == "maximize" else done[metric].cummin()
            ax.step(done["trial"], running, where="post", color="tab:red", label="best so far")
        other = frame[frame["status"] != "finished"]
        for _, row in other.iterrows():
            ax.axvline(row["trial"], color="tab:gray", alpha=0.3, linestyle=":")
        ax.set_xlabel("trial")
        ax.set_ylabel(metric)
        ax.set_title("optimization history (dotted: pruned/failed trials)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def scatter() -> Any:
        fig, axes_ = _new_fig(max(len(params), 1), 5.0)
        for ax, p in zip(axes_, params or [None]):
            if p is None or not len(done):
                continue
            xs = pd.to_numeric(done[p], errors="coerce")
            if xs.notna().all():
                sc = ax.scatter(xs, done[metric], c=done["trial"], cmap="viridis")
                if (xs > 0).all() and xs.max() / xs.min() > 10:
                    ax.set_xscale("log")
                fig.colorbar(sc, ax=ax, label="trial")
            else:
                sns.stripplot(x=done[p].astype(str), y=done[metric], ax=ax)
            ax.set_xlabel(p)
            ax.set_ylabel(metric)
        fig.tight_layout()
        return fig

    return KindReport(
        kind="search", title="Optuna search: trials ranked by the metric", main=ranked, notes=notes,
        figures=[Figure("search_history", "Optimization history: each finished trial and the best so far.", history),
                 Figure("search_params", "Each searched parameter against the metric (colour: trial number).", scatter)],
    )


# ---------------------------------------------------------------------- generic
def generic(df: pd.DataFrame, metric: str, cfg: dict[str, Any]) -> KindReport:
    """One row per point: the metric, then every metric ``cfg["also"]`` lists (report: {also: [...]}),
    each mean ± std over seeds."""
    axes = axis_columns(df)
    summary = aggregate(df, metric, axes)
    main = summary[axes].copy() if axes else pd.DataFrame(index=range(len(summary)))
    for column in [metric, *[m for m in cfg.get("also", []) if m != metric]]:
        per_point = summary if column == metric else aggregate(df, column, axes)
        main[column] = [cell_text(from_row("", row), float(row["std"]) if row["n"] > 1 else math.nan)
                        for _, row in per_point.iterrows()]

    def draw() -> Any:
        fig, axes_ = _new_fig(1, 7.0)
        ax = axes_[0]
        tidy = df[df["status"] == "finished"].copy() if metric in df else df.iloc[0:0]
        if axes and len(tidy):
            x = axes[0]
            tidy[x] = tidy[x].astype(str)
            hue = axes[1] if len(axes) > 1 else None
            if hue:
                tidy[hue] = tidy[hue].astype(str)
            sns.pointplot(data=tidy, x=x, y=metric, hue=hue, errorbar="sd", ax=ax, capsize=0.1)
        ax.set_title(f"{metric} against {axes[0] if axes else '(no axis)'}")
        fig.tight_layout()
        return fig

    return KindReport(kind="generic", title=f"{metric} per point of the grid", main=main,
                      figures=[Figure("metric_vs_axis", f"{metric} against the first axis (mean ± std over seeds).", draw)])


BUILDERS: dict[str, Callable[..., KindReport]] = {
    "augment_pairs": augment_pairs,
    "color_strength": color_strength,
    "projection_head": projection_head,
    "batch_size_epochs": batch_size_epochs,
    "temperature": temperature,
    "loss_functions": loss_functions,
    "search": search,
    "generic": generic,
}


def build(kind: str, df: pd.DataFrame, metric: str, cfg: dict[str, Any] | None = None,
          direction: str = "maximize") -> KindReport:
    """The kind's layout; a study whose axes do not fit it falls back to the generic layout, saying why."""
    cfg = cfg or {}
    builder = BUILDERS.get(kind, generic)
    try:
        if kind == "search":
            return search(df, metric, cfg, direction)
        return builder(df, metric, cfg)
    except KeyError as exc:
        out = generic(df, metric, cfg)
        out.notes.append(f"report kind {kind!r} not applicable ({exc.args[0] if exc.args else exc}); generic layout used")
        return out
