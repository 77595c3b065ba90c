"""The README's "Does it reproduce?" table, generated from committed report folders, never typed.

Every number in the table is read from a folder's ``summary.json`` (written by the report, rebuilt
by ``report --from``): our means, the standard error of each difference and the seed count come
from the verdicts, the paper's side of each claim from the same comparison judged on the paper's
numbers (``extra["paper"]``, see :func:`reports.verdicts.with_paper`), the Spearman correlation
from the report. ``tests/test_reproduce.py`` regenerates the table and compares it with the README,
so the README cannot drift from the reports it cites.

    python -m reports.reproduce results/cpu            # print the section
    python -m reports.reproduce results/cpu --write README.md   # replace it between the markers
    python -m reports.reproduce results/cpu --longer results/cpu_long --write README.md   # and the epochs table
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from reports.floor import floor_stats
from reports.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

BEGIN = "<!-- reproduce:begin -->"
END = "<!-- reproduce:end -->"

PAPER_STUDIES = {
    "augment_pairs": "Figure 5: pairs of augmentations",
    "color_strength": "Table 1: colour strength",
    "projection_head": "Figure 8: projection head",
    "batch_size_epochs": "Figure 9: batch size x epochs",
    "temperature": "Table 5: l2 norm and temperature",
    "loss_functions": "Table 4: loss functions",
}
"""Report kinds of the paper's ablations, in the order the README lists them."""


def _num(value: Any, digits: int = 2) -> str:
    return "—" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def _paper_side(verdict: dict[str, Any]) -> str:
    paper = verdict.get("extra", {}).get("paper")
    margin = f"; claimed margin {verdict['margin']:g}" if verdict.get("margin") else ""
    if not paper:
        return f"no number for these cells{margin}"
    a, b = paper.get("a"), paper.get("b")
    text = f"{paper['a_label']} {_num(a, 1)} vs {paper['b_label']} {_num(b, 1)}"
    if a is not None and b is not None:
        text += f" ({a - b:+.1f})"
    return text + margin


def _our_side(verdict: dict[str, Any]) -> str:
    diff = verdict.get("difference")
    if diff is None:
        return "—"
    se, n = verdict.get("se"), verdict.get("seeds", 0)
    spread = f" ± {se:.2f}" if se is not None else ""
    return (
        f"{verdict['a']} {_num(verdict.get('mean_a'))} vs {verdict['b']} {_num(verdict.get('mean_b'))}: "
        f"{diff:+.2f}{spread} (n={n})"
    )


def _verdict_text(verdict: dict[str, Any]) -> str:
    word = verdict["verdict"]
    seq = (verdict.get("extra") or {}).get("sequential") or {}
    when = f"look {seq['look']} of {seq['looks']}" if seq.get("look") else ""
    if word == NOT_REPRODUCED and (verdict.get("detail") or "").startswith("reversed"):
        return "**not reproduced** (reversed" + (f", {when})" if when else ")")
    if word in (REPRODUCED, NOT_REPRODUCED):
        return f"**{word}**" + (f" ({when})" if when else "")
    if verdict.get("difference") is None:
        return f"{word}: {verdict.get('detail', '')}"
    extra = verdict.get("extra") or {}
    after = f"after {when}, " if when else ""
    if "seeds_to_decide" in extra:
        need = extra["seeds_to_decide"]
        return f"{word} ({after}{f'about {need} seeds per point to decide' if need else 'zero within noise'})"
    return word


def rule_text(summary: dict[str, Any]) -> str:
    """How a study's verdicts were judged: the fixed 2-SE rule, or the sequential rule of --until-decided."""
    rule = summary.get("sequential")
    if not rule:
        return "2 SE, seeds as run"
    most = int(rule["first_seeds"]) + int(rule["looks"]) - 1
    return f"sequential t test, α {rule['alpha']:g} over {rule['looks']} looks ({rule['first_seeds']}-{most} seeds)"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def folders(root: Path) -> dict[str, Path]:
    """The paper studies' report folders under ``root``, by report kind."""
    found: dict[str, Path] = {}
    for summary in sorted(root.glob("*/summary.json")):
        kind = json.loads(summary.read_text()).get("kind")
        if kind in PAPER_STUDIES:
            found[kind] = summary.parent
    return found


def section(root: Path, link_base: Path) -> str:
    """The Markdown between the README markers: one row per claim, Spearman per study, counts."""
    found = folders(root)
    claims = [
        "| study | claim | paper | ours: difference ± SE (n seeds) | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    trends = ["| study | cells matched | Spearman ρ with the paper's cells | verdicts judged by |",
              "| --- | ---: | ---: | --- |"]
    counts = {REPRODUCED: 0, NOT_REPRODUCED: 0, INCONCLUSIVE: 0}
    for kind, title in PAPER_STUDIES.items():
        if kind not in found:
            continue
        folder = found[kind]
        summary = json.loads((folder / "summary.json").read_text())
        link = f"[{title}]({Path(os.path.relpath(folder / 'report.md', link_base)).as_posix()})"
        for verdict in summary.get("verdicts", []):
            counts[verdict["verdict"]] = counts.get(verdict["verdict"], 0) + 1
            claims.append("| " + " | ".join(_cell(t) for t in (
                link, verdict["claim"], _paper_side(verdict), _our_side(verdict), _verdict_text(verdict))) + " |")
        matched = [m for m in summary.get("matched", []) if m.get("ours") is not None and m.get("paper") is not None]
        trends.append(f"| {link} | {len(matched)} | {_num(summary.get('spearman'))} | {rule_text(summary)} |")
    total = sum(counts.values())
    decided = counts[REPRODUCED] + counts[NOT_REPRODUCED]
    pending = [title for kind, title in PAPER_STUDIES.items() if kind not in found]
    lines = [
        f"{decided} of {total} verdicts decided: {counts[REPRODUCED]} reproduced, "
        f"{counts[NOT_REPRODUCED]} not reproduced, {counts[INCONCLUSIVE]} inconclusive.",
        "",
        *claims,
        "",
        *trends,
    ]
    if pending:
        lines += ["", "Not run yet at this scale: " + "; ".join(pending) + "."]
    return "\n".join(lines)


LONGER_BEGIN = "<!-- longer:begin -->"
LONGER_END = "<!-- longer:end -->"
LONGER_STUDIES = ("color_strength", "projection_head")
"""The studies run again at 5x the epochs (``scales.cpu_long``): what more training changes."""


def _toward(paper: dict[str, Any] | None, short: dict[str, Any], long: dict[str, Any]) -> str:
    """Did the difference move toward the paper's from the short run to the long one, beyond 2 SE of the change?"""
    if short.get("difference") is None or long.get("difference") is None:
        return "—"
    change = long["difference"] - short["difference"]
    se = math.sqrt((short.get("se") or math.nan) ** 2 + (long.get("se") or math.nan) ** 2)
    a, b = (paper or {}).get("a"), (paper or {}).get("b")
    said = f"{change:+.2f} ± {se:.2f}" if math.isfinite(se) else f"{change:+.2f}"
    if a is None or b is None or not math.isfinite(se) or abs(change) <= 2 * se:
        return f"no clear change ({said})"
    way = "toward" if (change > 0) == (a - b > short["difference"]) else "away from"
    return f"**{way} the paper** ({said})"


def _floor_of(summary: dict[str, Any], metric: str) -> str:
    stats = floor_stats(summary.get("floor"), metric)
    if stats is None:
        return "—"
    mean, std, n = stats
    return f"{mean:.2f}" + (f" ± {std:.2f}" if n > 1 else "")


def longer_section(short_root: Path, long_root: Path, link_base: Path) -> str:
    """The README's table of what 5x the epochs changes: each claim of ``LONGER_STUDIES`` at both
    scales beside the paper's, each scale's floor, and whether the difference moved toward the paper."""
    short, long = folders(short_root), folders(long_root)
    rows = ["| study | claim | paper | 20 epochs | 100 epochs | from 20 to 100 epochs |",
            "| --- | --- | --- | --- | --- | --- |"]
    floors, pending = [], []
    for kind in LONGER_STUDIES:
        title = PAPER_STUDIES[kind]
        if kind not in short or kind not in long:
            pending.append(title)
            continue
        s_sum = json.loads((short[kind] / "summary.json").read_text())
        l_sum = json.loads((long[kind] / "summary.json").read_text())
        link = f"[{title}]({Path(os.path.relpath(long[kind] / 'report.md', link_base)).as_posix()})"
        by_claim = {v["claim"]: v for v in l_sum.get("verdicts", [])}
        for v in s_sum.get("verdicts", []):
            w = by_claim.get(v["claim"], {})
            at = [f"{_num(x.get('difference'))} ± {_num(x.get('se'))} (n={x.get('seeds', 0)}), {_verdict_text(x)}"
                  if x.get("difference") is not None else "—" for x in (v, w)]
            paper = (v.get("extra") or {}).get("paper")
            rows.append("| " + " | ".join(_cell(t) for t in (
                link, v["claim"], _paper_side(v), *at, _toward(paper, v, w))) + " |")
        metric = s_sum.get("metric", "linear_top1")
        floors.append(f"{title}: floor (untrained encoder, {metric}) {_floor_of(s_sum, metric)} at 20 epochs, "
                      f"{_floor_of(l_sum, metric)} at 100 (it does not train, so the epochs do not change it)")
    lines = rows + ["", *(f"- {f}" for f in floors)]
    rules = sorted({rule_text(json.loads((d[k] / "summary.json").read_text()))
                    for d in (short, long) for k in LONGER_STUDIES if k in d})
    if rules:
        lines.append(f"- verdicts judged by: {'; '.join(rules)} (the rule of each folder, as in the table above)")
    if pending:
        lines.append("- not run yet at both scales: " + "; ".join(pending))
    return "\n".join(lines)


def replace_section(text: str, body: str, begin: str = BEGIN, end: str = END) -> str:
    """``text`` with the lines between the markers replaced by ``body`` (ValueError without markers)."""
    if begin not in text or end not in text:
        raise ValueError(f"the markers {begin} and {end} are missing")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reports.reproduce",
        description="Print (or write into a README) the table of the paper's claims judged by the committed reports.",
    )
    parser.add_argument("root", type=Path, help="folder of report folders, e.g. results/cpu")
    parser.add_argument("--longer", type=Path, metavar="FOLDER",
                        help="also the table of what 5x the epochs changes, from this folder (e.g. results/cpu_long)")
    parser.add_argument("--write", type=Path, metavar="README",
                        help="replace the section(s) between the markers in this file")
    args = parser.parse_args(argv)
    for root in (args.root, args.longer):
        if root is not None and not root.is_dir():
            print(f"error: {root}: not a folder of report folders", file=sys.stderr)
            return 2
    base = (args.write.parent if args.write else Path(".")).resolve()
    body = section(args.root.resolve(), base)
    longer = longer_section(args.root.resolve(), args.longer.resolve(), base) if args.longer else None
    if args.write is None:
        print(body if longer is None else f"{body}\n\n{longer}")
        return 0
    try:
        text = replace_section(args.write.read_text(), body)
        if longer is not None:
            text = replace_section(text, longer, LONGER_BEGIN, LONGER_END)
        args.write.write_text(text)
    except (OSError, ValueError) as exc:
        print(f"error: {args.write}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
