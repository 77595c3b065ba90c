#!/usr/bin/env bash
# The six paper studies and the recipes comparison at the `cpu` scale (results/cpu/README.md), one after another, in the
# current folder: mlflow.db, optuna.db, runs/ and reports_out/ land here. Resumable: run it again
# and every study goes on where it stopped (finished ones are skipped in seconds).
#
#   mkdir -p ~/simclr-cpu && cd ~/simclr-cpu
#   bash /path/to/repo/results/cpu/run.sh ../shared/data/cifar10-jpeg.tar.gz    # or any --data PATH
#
# About 5 hours on 2 idle CPU cores (AVX512_BF16) for the studies' own trials, up to twice that with the
# added seeds; give OMP_NUM_THREADS=1 while the machine does other work.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
data=${1:?usage: run.sh DATA  (CIFAR-10 as a torchvision root, an ImageFolder tree or a .tar.gz of one)}
studies=${STUDIES:-color_strength loss_functions temperature projection_head batch_size_epochs augment_pairs recipes}
# The paper's studies run --until-decided (results/cpu/README.md): seeds are added to the points of
# each undecided claim, one round at a time, up to MAX seeds per point and BUDGET trials in all per
# study (the study's own included); fixed here before the first run, as the sequential rule requires.
declare -A rule=(
  [color_strength]="8 40" [loss_functions]="8 40" [temperature]="8 48"
  [projection_head]="6 40" [batch_size_epochs]="6 48" [augment_pairs]="4 200"
)
failed=""
for study in $studies; do
  echo "== $(date -u +%FT%TZ) $study"
  extra=()
  if [ -n "${rule[$study]:-}" ]; then
    read -r max budget <<< "${rule[$study]}"
    extra=(--until-decided --max-seeds-per-point "$max" --max-trials "$budget")
  fi
  # one study refused (say, its file changed since this folder ran it) must not stop the others
  python -m ablations run "$repo/studies/$study.yaml" --scale cpu --data "$data" --no-progress "${extra[@]}" \
    || { echo "== $study exited $?"; failed="$failed $study"; }
done
if [ -n "$failed" ]; then
  echo "== $(date -u +%FT%TZ) done, except:$failed"
  exit 1
fi
echo "== $(date -u +%FT%TZ) all done"
