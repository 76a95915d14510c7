"""Ceph and spine prediction latency measured together: both detectors loaded in one
process, their predictions alternated, so that both medians see the same machine state.

    python benchmarks/latency_pair.py SPINE_IMAGE [--spine spine] [--repeats 15] [--threads 2]
        [--no-refine-flip]

The ceph image is the bundled example. Prints each model's median, min and max end-to-end
time and the ratio of the spine median to the ceph median.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("spine_image", type=Path)
    ap.add_argument("--spine", default="spine", help="spine model name or directory")
    ap.add_argument("--ceph", default="ceph", help="ceph model name or directory")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-refine-flip", action="store_true", help="spine: refine_flip=False")
    args = ap.parse_args()

    import torch

    import cephspine
    from cephspine.data import example_path

    if args.threads:
        torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ceph = cephspine.Detector.from_pretrained(args.ceph, device="cpu")
        spine = cephspine.Detector.from_pretrained(args.spine, device="cpu", refine_flip=not args.no_refine_flip)
        ceph_img = cephspine.load_image(example_path("ceph"))
        spine_img = cephspine.load_image(args.spine_image)
        runs: dict[str, list[float]] = {"ceph": [], "spine": []}
        ceph.predict(ceph_img), spine.predict(spine_img)  # warm-up
        for _ in range(args.repeats):
            for name, det, img in (("ceph", ceph, ceph_img), ("spine", spine, spine_img)):
                t = time.perf_counter()
                det.predict(img)
                runs[name].append(time.perf_counter() - t)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads, "
        f"CPU vector extensions used by torch: {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}"
    )
    print(f"images loaded once (decoding excluded); {args.repeats} alternated runs each")
    for name, det in (("ceph", ceph), ("spine", spine)):
        v = runs[name]
        flip = f", refine_flip={det.config.refine_flip}" if name == "spine" else ""
        print(
            f"{det.name} {det.version}{flip}: median {statistics.median(v):.3f} s (min {min(v):.3f}, max {max(v):.3f})"
        )
    print(f"spine / ceph median: {statistics.median(runs['spine']) / statistics.median(runs['ceph']):.2f}")


if __name__ == "__main__":
    main()
