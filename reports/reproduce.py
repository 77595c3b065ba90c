"""The README's "Does it reproduce?" table, generated from committed report folders, never typed.

Every number in the table is read from a folder's ``summary.json`` (written by the report, rebuilt
by ``report --from``): our means, the standard error of each difference and the seed count come
from the verdicts, the paper's side of each claim from the same comparison judged on the paper's
numbers (``extra["paper"]``, see :func:`reports.verdicts.with_paper`), the Spearman correlation
from the report. ``tests/test_reproduce.py`` regenerates the table and compares it with the README,
so the README cannot drift from the reports it cites.

    python -m reports.reproduce results/cpu            # print the section
    python -m reports.reproduce results/cpu --write README.md   # replace it between the markers
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

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


def replace_section(text: str, body: str) -> str:
    """``text`` with the lines between the markers replaced by ``body`` (ValueError without markers)."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"the markers {BEGIN} and {END} are missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{body}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reports.reproduce",
        description="Print (or write into a README) the table of the paper's claims judged by the committed reports.",
    )
    parser.add_argument("root", type=Path, help="folder of report folders, e.g. results/cpu")
    parser.add_argument("--write", type=Path, metavar="README",
                        help="replace the section between the markers in this file")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"error: {args.root}: not a folder of report folders", file=sys.stderr)
        return 2
    base = (args.write.parent if args.write else Path(".")).resolve()
    body = section(args.root.resolve(), base)
    if args.write is None:
        print(body)
        return 0
    try:
        args.write.write_text(replace_section(args.write.read_text(), body))
    except (OSError, ValueError) as exc:
        print(f"error: {args.write}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
