"""Plain-text summaries of finished runs for the terminal."""

from __future__ import annotations

from typing import Any


def format_result(result: dict[str, Any]) -> str:
    """A short table: each accuracy with the protocol that produced it, then loss and wall time."""
    metrics = result["metrics"]
    protocols = result.get("protocols", {})
    lines = [f"run: {result.get('run_dir', '?')}"]
    width = max((len(name) for name in protocols), default=10)
    for name, protocol in protocols.items():
        lines.append(f"  {name:<{width}}  {metrics[name]:6.2f}%   {protocol}")
    if "loss" in metrics:
        lines.append(f"  {'final loss':<{width}}  {metrics['loss']:.4f}")
    if "train_time_s" in metrics:
        lines.append(f"  {'wall time':<{width}}  {metrics['train_time_s']:.1f} s")
    return "\n".join(lines)
