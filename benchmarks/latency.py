"""Latency and memory of ``Detector(MODEL).predict`` on one image.

Prints the per-stage breakdown (load, preprocess, coarse, registration, refine), the median
end-to-end time over repeated runs, and the peak resident memory of this process.

    python benchmarks/latency.py [IMAGE] [--model ceph|spine] [--repeats 15] [--threads 2] [--register auto]

The default image is the bundled ceph example; give a spine radiograph for ``--model spine``.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", nargs="?", default=None, help="image (default: the bundled example)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--register", default="auto", choices=["auto", "always", "never"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="ceph")
    ap.add_argument(
        "--no-refine-flip", action="store_true", help="spine: skip the mirrored vertebra patches (refine_flip=False)"
    )
    args = ap.parse_args()

    t0 = time.perf_counter()
    import torch

    import cephspine
    from cephspine.data import example_path

    import_s = time.perf_counter() - t0
    if args.threads:
        torch.set_num_threads(args.threads)
    image = Path(args.image) if args.image else example_path("ceph")
    t = time.perf_counter()
    det = cephspine.Detector.from_pretrained(
        args.model, device=args.device, register=args.register, refine_flip=not args.no_refine_flip
    )
    load_model_s = time.perf_counter() - t
    totals, stages = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det.predict(image)  # warm-up
        for _ in range(args.repeats):
            t = time.perf_counter()
            pred = det.predict(image)
            totals.append(time.perf_counter() - t)
            stages.append(pred.meta["timings"])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads, "
        f"CPU vector extensions used by torch: {torch.backends.cpu.get_cpu_capability()}, "
        f"torch {torch.__version__}, python {sys.version.split()[0]}"
    )
    print(
        f"model: {det.name} {det.version}; image: {image.name} {pred.image_shape[1]}x{pred.image_shape[0]} px; "
        f"register={det.register}"
        + (f"; refine_flip={det.config.refine_flip}" if "refine_flip" in det.card["config"] else "")
    )
    print(f"import torch+cephspine: {import_s:.2f} s; model load: {load_model_s:.2f} s")
    for key in sorted({k for s in stages for k in s}):
        vals = [s[key] for s in stages if key in s]
        print(f"  {key:<16} median {statistics.median(vals) * 1000:7.1f} ms")
    print(
        f"end-to-end median {statistics.median(totals):.3f} s over {args.repeats} runs "
        f"(min {min(totals):.3f}, max {max(totals):.3f})"
    )
    print(f"peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
