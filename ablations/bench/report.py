"""The bench's output: the printed tables and the JSON file, from ``run_bench``'s dict.

Kept apart from the measuring so a result read back from its JSON prints the same table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ablations.bench.augmentation import AUG_OPS
from core.config import torch_compile_mode


def _fmt(v: float | None, digits: int = 0) -> str:
    """A number with thousands separators; '-' where there is none."""
    return "-" if v is None else f"{v:,.{digits}f}"


def _with_range(a: dict[str, Any], name: str) -> str | None:
    """'9.4x (rounds 8.1-10.2x)': the median speed-up and the spread of the per-round ones."""
    if a[f"{name}_speedup"] is None:
        return None
    return f"{a[f'{name}_speedup']} (rounds {a[f'{name}_speedup_range']})"


def format_bench_result(r: dict[str, Any]) -> str:
    """The tables ``python -m ablations bench`` prints: device, augmentation, end to end, numerics, profile."""
    from tabulate import tabulate

    d, v = r["device"], r["versions"]
    lines = [
        f"device: {d['type']} ({d['name']}), torch threads {d['torch_threads']}, "
        f"cpus {d.get('cpus_available', d['cpu_count'])}, "
        f"load avg {_fmt(d.get('load_average_1min'), 1)}",
        "versions: " + ", ".join(f"{k} {val or 'absent'}" for k, val in v.items()),
        "",
        f"augmentation throughput, one view of {AUG_OPS}, images/s (median over {r['augmentation'][0]['rounds']} "
        "interleaved rounds; speed-up vs per-image torchvision: median of the per-round ratios, and their range):",
    ]
    table = []
    for a in r["augmentation"]:
        size = f"{a['image_size']}x{a['image_size']}, batch {a['batch_size']}"
        table.append([size, "batched core.augment (ours)", _fmt(a["batched_images_per_s"]), _with_range(a, "batched")])
        table.append(
            [
                size,
                "kornia.augmentation",
                _fmt(a["kornia_images_per_s"]),
                _with_range(a, "kornia") or (a["note"] or "-"),
            ]
        )
        table.append([size, "torchvision v2 per image (1 process)", _fmt(a["torchvision_images_per_s"]), "1.0x"])
    lines.append(tabulate(table, headers=["images", "pipeline", "images/s", "speed-up"]))
    e = r["end_to_end"]
    lines += [
        "",
        f"end-to-end pretraining: {e['model']}, batch {e['batch_size']}, {e['precision']}"
        + (f", torch.compile mode {torch_compile_mode(e['compile'])}" if e.get("compile") else "")
        + f", data: {e['data']}",
    ]
    table = [
        [
            row["name"],
            _fmt(row["images_per_s"]),
            _fmt(row["s_per_epoch"], 1) + (" (extrapolated)" if row["extrapolated"] else ""),
            _fmt(row["peak_memory_mb"]),
            row["speedup"] or "-",
        ]
        for row in e["rows"]
    ]
    lines.append(
        tabulate(
            table, headers=["pipeline", "images/s", f"s/epoch ({e['epoch_images']:,} images)", "peak MiB", "speed-up"]
        )
    )
    n = r.get("numerics")
    if n:
        lines += [
            "",
            f"numerics, end to end: {n['model']}; images/s, median of {n['rounds']} interleaved rounds of "
            f"{n['steps_per_round']} steps; speed-up: median of the per-round ratios (range):",
            tabulate(
                [
                    [
                        f"defaults: {n['defaults']}",
                        _fmt(n["defaults_images_per_s"]),
                        f"{n['speedup']} (rounds {n['speedup_range']})",
                    ],
                    [f"forced: {n['baseline']}", _fmt(n["fp32_nchw_images_per_s"]), "1.00x"],
                ],
                headers=["numerics", "images/s", "speed-up"],
            ),
        ]
    if e.get("profile"):
        lines += ["", "profile of one (a) step, top ops by self CPU time:"]
        lines.append(
            tabulate(
                [[p["op"], _fmt(p["self_cpu_ms"], 1), _fmt(p["percent"], 1), p["calls"]] for p in e["profile"]],
                headers=["op", "ms", "%", "calls"],
            )
        )
    lines += ["", *(f"note: {n}" for n in r["notes"]), f"bench wall time {r['wall_s']:.0f} s"]
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    """Every measurement to ``path`` (``--json``), its folder made if need be, and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
