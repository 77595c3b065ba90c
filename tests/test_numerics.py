"""train.precision / train.channels_last resolution (core.numerics), and what the trainer does with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core import numerics
from core.numerics import resolve_numerics
from core.trainer import Callback, Trainer, train
from tests.test_trainer import tiny_config

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.mark.parametrize(
    "precision, channels_last, device, cpu_bf16, dtype, layout",
    [
        ("auto", None, CPU, "AVX512_BF16", torch.bfloat16, True),  # a CPU that computes bf16 natively
        ("auto", None, CPU, "AMX", torch.bfloat16, True),
        ("auto", None, CPU, None, None, False),  # without it: fp32, NCHW (fp32 channels_last breaks torch 2.14.1)
        ("auto", None, CUDA, None, torch.bfloat16, True),  # CUDA ignores the CPU's features
        ("fp32", None, CPU, "AVX512_BF16", None, False),  # explicit values win; fp32 on the CPU stays NCHW
        ("fp32", True, CPU, "AVX512_BF16", None, True),
        ("bf16", None, CPU, None, torch.bfloat16, True),
        ("auto", False, CPU, "AVX512_BF16", torch.bfloat16, False),
        ("fp32", False, CUDA, None, None, False),
        ("auto", None, torch.device("meta"), "AMX", None, False),  # other devices: plain fp32 NCHW
    ],
)
def test_resolution(precision, channels_last, device, cpu_bf16, dtype, layout):
    n = resolve_numerics(precision, channels_last, device, cpu_bf16=cpu_bf16)
    assert (n.autocast_dtype, n.channels_last) == (dtype, layout)
    assert n.precision == ("bf16" if dtype else "fp32")


def test_the_description_says_what_and_why():
    n = resolve_numerics("auto", None, CPU, cpu_bf16="AVX512_BF16")
    assert n.describe() == "bf16 autocast, channels_last (auto: CPU has AVX512_BF16)"
    n = resolve_numerics("fp32", False, CPU, cpu_bf16="AVX512_BF16")
    assert n.describe() == "fp32, NCHW (train.precision=fp32; train.channels_last=false)"
    assert n.as_tags() == {"numerics.precision": "fp32", "numerics.channels_last": "false", "numerics": n.describe()}


def test_detection_asks_torch_and_answers_a_feature_or_none():
    found = numerics.cpu_bf16_support()
    assert found in (None, "AMX", "AVX512_BF16")
    assert (found is not None) == bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def test_with_native_bf16_detection_off_auto_stays_fp32(monkeypatch):
    monkeypatch.setattr(numerics, "cpu_bf16_support", lambda: None)
    trainer = Trainer(tiny_config(**{"train.epochs": 1}))
    assert trainer.amp_dtype is None and trainer.numerics.precision == "fp32"
    monkeypatch.setattr(numerics, "cpu_bf16_support", lambda: "AVX512_BF16")
    trainer = Trainer(tiny_config(**{"train.epochs": 1}))
    assert trainer.amp_dtype is torch.bfloat16 and trainer.channels_last


class Info(Callback):
    def __init__(self) -> None:
        self.infos: list[dict[str, str]] = []

    def on_run_info(self, info):
        self.infos.append(info)


def test_the_run_states_its_numerics_at_start(monkeypatch, capsys):
    monkeypatch.setattr(numerics, "cpu_bf16_support", lambda: "AVX512_BF16")
    seen = Info()
    train(tiny_config(**{"train.epochs": 1, "eval.linear": False, "eval.knn_every": 0}), callbacks=[seen])
    (info,) = seen.infos
    assert info["device"] == "cpu" and info["device_name"] == numerics.device_name(CPU)
    assert info["numerics"] == "bf16 autocast, channels_last (auto: CPU has AVX512_BF16)"
    assert f"device cpu ({info['device_name']}), bf16 autocast, channels_last" in capsys.readouterr().err


@pytest.mark.slow
def test_bf16_lands_in_the_fp32_knn_band(tmp_path):
    """On synthetic data a bf16 run learns what the fp32 run learns: over 3 seeds each, the mean kNN
    top-1 of the two differ by less than 2 standard errors of the difference (plus 2 points), and
    both are far above chance (25%).

    One seed each is not a test: this tiny run's kNN top-1 moves from 48 to 68 with the seed alone
    (measured 2026-11-27, fp32 and bf16 alike), and a pair of single runs fell 15 points apart with 1
    thread and within 10 with 2. At that spread the test catches a collapse, not a loss of a few points.
    """
    overrides = {"train.epochs": 15, "eval.linear": False, "eval.knn_every": 0}
    runs: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for seed in range(3):
        for precision, channels_last in (("fp32", False), ("bf16", True)):
            config = tiny_config(**overrides, **{"train.precision": precision, "train.channels_last": channels_last,
                                                 "train.seed": seed})
            runs[precision].append(train(config, tmp_path / f"{precision}-{seed}").metrics["knn_top1"])
    a, b = np.array(runs["fp32"]), np.array(runs["bf16"])
    se = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    assert min(a.mean(), b.mean()) > 40, runs
    assert abs(a.mean() - b.mean()) <= 2 * se + 2, (runs, se)


def test_a_resume_warns_only_when_the_numerics_differ(monkeypatch, tmp_path, capsys):
    config = tiny_config(**{"train.epochs": 2, "eval.linear": False, "eval.knn_every": 0})
    monkeypatch.setattr(numerics, "cpu_bf16_support", lambda: "AVX512_BF16")
    first = Trainer(config, tmp_path)
    first.save_checkpoint(0)
    monkeypatch.setattr(numerics, "cpu_bf16_support", lambda: "AMX")  # other wording, same numerics
    assert Trainer(config, tmp_path).try_resume()
    assert "was written under" not in capsys.readouterr().err
    monkeypatch.setattr(numerics, "cpu_bf16_support", lambda: None)  # a machine without bf16: fp32
    assert Trainer(config, tmp_path).try_resume()
    assert (
        "was written under bf16 autocast, channels_last (auto: CPU has AVX512_BF16); continuing under fp32"
        in capsys.readouterr().err
    )
