#!/usr/bin/env bash
# The six paper studies and the recipes comparison at the `cpu` scale (results/cpu/README.md), one after another, in the
# current folder: mlflow.db, optuna.db, runs/ and reports_out/ land here. Resumable: run it again
# and every study goes on where it stopped (finished ones are skipped in seconds).
#
#   mkdir -p ~/simclr-cpu && cd ~/simclr-cpu
#   bash /path/to/repo/results/cpu/run.sh ../shared/data/cifar10-jpeg.tar.gz    # or any --data PATH
#
# About 5 hours on 2 idle CPU cores (AVX512_BF16); give OMP_NUM_THREADS=1 while the machine does other work.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
data=${1:?usage: run.sh DATA  (CIFAR-10 as a torchvision root, an ImageFolder tree or a .tar.gz of one)}
studies=${STUDIES:-color_strength projection_head temperature loss_functions batch_size_epochs augment_pairs recipes}
failed=""
for study in $studies; do
  echo "== $(date -u +%FT%TZ) $study"
  # one study refused (say, its file changed since this folder ran it) must not stop the others
  python -m ablations run "$repo/studies/$study.yaml" --scale cpu --data "$data" --no-progress \
    || { echo "== $study exited $?"; failed="$failed $study"; }
done
if [ -n "$failed" ]; then
  echo "== $(date -u +%FT%TZ) done, except:$failed"
  exit 1
fi
echo "== $(date -u +%FT%TZ) all done"
