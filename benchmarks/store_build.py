"""Store build time per 1,000 ImageNet-like JPEGs, at 160 and 224 px, with 1 and 2 worker processes."""
import resource
import shutil
import sys
import time
from pathlib import Path

from core.config import DataConfig
from core.data import store

tree = Path(sys.argv[1])
out = Path(sys.argv[2])
n = sum(1 for _ in tree.rglob("*.JPEG"))
rows = []
for kind, root in (("imagefolder", tree), ("tarball", Path(str(tree) + ".tar.gz"))):
    for size in (160, 224):
        for workers in (1, 2):
            if kind == "tarball" and (size, workers) != (160, 2):
                continue
            cache = out / f"{kind}-{size}-{workers}"
            shutil.rmtree(cache, ignore_errors=True)
            cfg = DataConfig(source=kind, root=root, image_size=size, cache_dir=cache)
            if kind == "tarball":
                store.PARALLEL_MIN_BYTES = 0  # the streamed path, as for an archive of 256 MiB or more
            cpu0 = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
            t = time.perf_counter()
            entry = store.build_store(cfg, workers=workers, progress=False)
            dt = time.perf_counter() - t
            cpu1 = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
            cpu = sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime for a, b in zip(cpu0, cpu1))
            disk = sum(p.stat().st_blocks * 512 for p in entry.iterdir())
            print(f"{kind:11s} {size} px  workers {workers}: {dt:6.1f} s for {n} images = "
                  f"{dt / n * 1000:5.1f} s per 1,000 "
                  f"({n / dt:5.1f} img/s; CPU {cpu:5.1f} s = {n / cpu:5.1f} img per CPU-s); "
                  f"store {disk / 1e6:6.1f} MB = {disk / n * 1000 / 1e6:6.1f} MB per 1,000", flush=True)
            shutil.rmtree(cache)
