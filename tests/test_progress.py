"""The study's progress line: its counts, the time left and the workers it divides that time by."""

from __future__ import annotations

from ablations.progress import Counts, StudyProgress, duration_text


def test_time_left_is_the_mean_trial_times_what_is_left_over_the_workers():
    progress = StudyProgress(durations=[90.0, 102.0])  # a mean of 96 s
    alone = Counts(done=7, running=0, todo=41)
    assert progress.eta_seconds(alone) == 96.0 * 41
    # another worker's trial running now: it shares what is left, and its trial counts as half done
    shared = Counts(done=7, running=1, todo=41)
    assert progress.eta_seconds(shared) == 96.0 * 41.5 / 2


def test_the_line_names_the_workers_running_now():
    progress = StudyProgress(durations=[96.0])
    alone = progress.line(6, "seed=1", "finished: linear_top1 40.40", 96.0, Counts(done=7, running=0, todo=41))
    assert alone.endswith(
        "study: 7 done, 0 running, 41 to run, about 1 h 06 min left at 1.6 min a trial (1 worker here)")
    assert alone.startswith("trial 7/48 (seed=1) finished: linear_top1 40.40, after 1.6 min; ")
    shared = progress.line(6, "seed=1", "finished", 96.0, Counts(done=7, running=2, todo=40))
    assert shared.endswith("about 21.9 min left at 1.6 min a trial (3 workers here)")
    last = progress.line(47, "seed=2", "finished", 96.0, Counts(done=48, running=0, todo=0))
    assert last.endswith("study: 48 done, 0 running, 0 to run, nothing left")


def test_no_finished_trial_yet_gives_an_unknown_time():
    line = StudyProgress().line(0, "seed=0", "failed: diverged", 5.0, Counts(done=1, running=0, todo=3))
    assert line.endswith("study: 1 done, 0 running, 3 to run, time left unknown until a trial finishes (1 worker here)")


def test_durations_read_as_a_person_would_say_them():
    assert [duration_text(s) for s in (45, 89.4, 210, 3599, 3600, 3930)] == [
        "45 s", "89 s", "3.5 min", "60.0 min", "1 h 00 min", "1 h 06 min"]
