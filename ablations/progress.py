"""The study's progress as a user follows it: one line as each trial ends, with the study's counts
and an estimate of the time left from the trials finished so far.

    trial 7/49 (augment.ops=[crop, color], seed=1) finished: linear_top1 40.40, 12.1 s/epoch, after 1.6 min;
    study: 7 done, 1 running, 41 to run, about 33.2 min left at 1.6 min a trial (2 workers here)

A trial's own progress bar (``train.progress``) shows its steps; this line is the study's, and it is
logged (not drawn), so ``--no-progress`` batch logs keep it and stay clean.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


def duration_text(seconds: float) -> str:
    """'45 s', '3.5 min', '1 h 05 min'."""
    if not math.isfinite(seconds) or seconds < 0:
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    hours, rest = divmod(int(round(seconds / 60)), 60)
    return f"{hours} h {rest:02d} min"


@dataclass
class Counts:
    """The study's trials by state, from its storage: done (finished, failed or pruned), running, to run."""

    done: int
    running: int
    todo: int

    @property
    def total(self) -> int:
        return self.done + self.running + self.todo


@dataclass
class StudyProgress:
    """What one worker has measured: how long its finished trials took."""

    started: float = field(default_factory=time.monotonic)
    durations: list[float] = field(default_factory=list)

    def finished(self, seconds: float) -> None:
        self.durations.append(seconds)

    @staticmethod
    def workers(counts: Counts) -> int:
        """The workers sharing what is left: this one and one per trial running now. Read from the
        storage at each line, not once at start: workers join and leave, and a killed worker's
        trial reads RUNNING until the next claim finds its heartbeat stale (counted once at start,
        it halved every estimate of a resumed run)."""
        return counts.running + 1

    def eta_seconds(self, counts: Counts) -> float:
        """Time left: the mean trial duration so far, times the trials still to run or running, over
        the workers that share them (running trials count as half done)."""
        if not self.durations:
            return math.nan
        per_trial = sum(self.durations) / len(self.durations)
        return per_trial * (counts.todo + 0.5 * counts.running) / self.workers(counts)

    def line(self, number: int, label: str, outcome: str, seconds: float, counts: Counts) -> str:
        """The line logged when the study's trial ``number`` (0-based: its point, or a search's
        trial) ends."""
        study = f"study: {counts.done} done, {counts.running} running, {counts.todo} to run"
        workers = self.workers(counts)
        here = f"({workers} worker{'s' if workers != 1 else ''} here)"
        if counts.todo + counts.running == 0:
            left = "nothing left"
        elif not self.durations:  # only failed trials so far: no duration to go by
            left = f"time left unknown until a trial finishes {here}"
        else:
            per = sum(self.durations) / len(self.durations)
            left = f"about {duration_text(self.eta_seconds(counts))} left at {duration_text(per)} a trial {here}"
        return (f"trial {number + 1}/{counts.total} ({label}) {outcome}, after {duration_text(seconds)}; "
                f"{study}, {left}")
