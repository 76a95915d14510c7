"""Cohort throughput: images per second of ``cephspine.cohort`` with 1 and 2 workers,
in-process and on a local Ray instance, plus ``import cephspine`` time and peak memory.

    python benchmarks/throughput.py [--kind ceph] [--images N] [--engines local,ray] [--workers 1,2]

The cohort is N copies of the bundled example (ceph; distinct file names, same pixels),
or the first N AASCE images with ``--kind spine --data ../shared/data/aasce``. Each
configuration runs in a fresh subprocess so that peak RSS and thread settings do not leak
between runs. Model loading and Ray start-up are excluded from the images/s figure and
reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RUN = r"""
import json, os, resource, sys, time, warnings
t0 = time.perf_counter()
import cephspine
from cephspine.cohorts import cohort
folder, kind, engine, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
spacing = float(sys.argv[5]) if sys.argv[5] != "none" else None
kw = {"workers": workers}
t = time.perf_counter()
warnings.simplefilter("ignore")
paths = sorted(p for p in os.listdir(folder))
# warm-up (model load; Ray start and actor creation) on one image, not timed
cohort([os.path.join(folder, paths[0])], kind, spacing=spacing, progress=False, engine=engine, **kw)
setup_s = time.perf_counter() - t
t = time.perf_counter()
df = cohort(folder, kind, spacing=spacing, progress=False, engine=engine, **kw)
run_s = time.perf_counter() - t
ok = int((df["status"] == "ok").sum())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"n": len(df), "ok": ok, "run_s": run_s, "setup_s": setup_s,
                  "images_per_s": len(df) / run_s, "peak_rss_mb": peak, "peak_child_rss_mb": child}))
"""


def import_time() -> float:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import cephspine"], capture_output=True, text=True, check=True
    )
    total_us = 0
    for line in out.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == "cephspine":
            total_us = int(parts[1])
    return total_us / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="ceph", choices=["ceph", "spine"])
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--data", type=Path, default=None, help="AASCE folder (for --kind spine)")
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()

    import torch

    import cephspine

    tmp = Path(tempfile.mkdtemp(prefix="cephspine-bench-"))
    try:
        if args.kind == "ceph":
            src, spacing = cephspine.example_path("ceph"), "0.1"
            for i in range(args.images):
                shutil.copy(src, tmp / f"ceph_{i:04d}.jpg")
        else:
            if args.data is None:
                ap.error("--kind spine needs --data (the AASCE folder)")
            files = sorted((args.data / "images").iterdir())[: args.images]
            for f in files:
                shutil.copy(f, tmp / f.name)
            spacing = "none"
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
            f"python {sys.version.split()[0]}"
        )
        t = [import_time() for _ in range(3)]
        print(f"import cephspine: {min(t):.3f} s (best of 3, python -X importtime)")
        print(f"cohort of {args.images} {args.kind} images")
        for engine in args.engines.split(","):
            for w in (int(x) for x in args.workers.split(",")):
                res = subprocess.run(
                    [sys.executable, "-c", RUN, str(tmp), args.kind, engine, str(w), spacing],
                    capture_output=True,
                    text=True,
                )
                if res.returncode != 0:
                    print(f"  {engine:<5} workers={w}: failed: {res.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(res.stdout.strip().splitlines()[-1])
                print(
                    f"  {engine:<5} workers={w}: {r['images_per_s']:.2f} images/s "
                    f"({r['ok']}/{r['n']} ok in {r['run_s']:.1f} s; set-up {r['setup_s']:.1f} s; "
                    f"peak RSS {r['peak_rss_mb']:.0f} MB, largest child {r['peak_child_rss_mb']:.0f} MB)"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
