"""Engines: how the images of a cohort are scheduled.

``"local"`` analyses them in this process (threads sharing one model); ``"ray"`` on Ray
actors, one model each. An engine yields, for each task, an
:class:`~cephspine.cohorts.image.ImageResult` (the image's row, ``status`` ``"ok"`` or
``"error"``) or a :class:`NotAnalysed` (the machinery kept failing, which says nothing about
the image: it gets no row, so a resumed run tries it again).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cephspine.cohorts.columns import one_line
from cephspine.cohorts.image import (
    ImageResult,
    OutOfMemory,
    analyze_image,
    error_row,
    routed_call,
    warning_router,
)
from cephspine.cohorts.settings import ModelRef
from cephspine.errors import MissingDependencyError

log = logging.getLogger("cephspine.cohorts")

Task = tuple[Path, str, bool, bool]
"""(path, image key, row wanted, landmarks wanted)."""

DEFAULT_LOCAL_WORKERS = min(2, os.cpu_count() or 1)
"""Threads of the ``"local"`` engine when ``workers`` is not given. Two threads analyse
3.3 ceph images/s on a 2-core CPU against 2.3 for one (``benchmarks/throughput.py``):
one image is decoded and measured while the network runs on another."""

MAX_ATTEMPTS = 3
"""Ray: the times an image may be in the hands of a worker that fails (its process killed
or out of memory, its node lost) before the run gives up on that image."""

ACTOR_RESTARTS = 4
"""Ray: the times each actor is restarted after its process dies."""

IN_FLIGHT_PER_ACTOR = 2
"""Ray: images queued on an actor at once."""


@dataclass(frozen=True)
class NotAnalysed:
    """An image the engine could not get analysed, through no fault of the image (the
    workers running it failed ``attempts`` times, or none was left). It gets no row."""

    reason: str
    attempts: int


Outcome = ImageResult | NotAnalysed


# ---------------------------------------------------------------------------- local
@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_local(
    todo: Sequence[Task], analyze: Callable[[Path], ImageResult], workers: int
) -> Iterator[tuple[Task, Outcome]]:  # fmt: skip
    """Analyse ``todo`` in this process, in order, with ``analyze(path)``; with
    ``workers > 1`` that many images are analysed at once by threads sharing the one model
    (each with its share of the CPU's torch threads), at most ``2 × workers`` in flight."""

    def outcome(run: Callable[..., ImageResult], *args: Any) -> Outcome:
        try:
            return run(*args)
        except OutOfMemory as exc:  # the machine, not the image: no row, a resume retries it
            return NotAnalysed(str(exc), 1)

    if workers <= 1:
        for task in todo:
            yield task, outcome(analyze, task[0])
        return
    from concurrent.futures import ThreadPoolExecutor

    per_worker = max(1, (os.cpu_count() or 1) // workers)
    with warning_router(), _torch_threads(per_worker), ThreadPoolExecutor(workers, "cephspine-cohort") as pool:
        pending: deque[tuple[Task, Any]] = deque()
        try:
            for task in todo:
                pending.append((task, pool.submit(routed_call, analyze, task[0])))
                if len(pending) >= 2 * workers:
                    t, fut = pending.popleft()
                    yield t, outcome(fut.result)
            while pending:
                t, fut = pending.popleft()
                yield t, outcome(fut.result)
        finally:  # closed early (the run failed): images not started are not analysed
            for _, fut in pending:
                fut.cancel()


# ---------------------------------------------------------------------------- ray
class RayWorker:
    """One Ray actor: a detector loaded once, analysing one image per call."""

    def __init__(self, kind: str, model: str, device: str, threads: int, options: dict[str, Any]) -> None:
        import torch

        from cephspine.detector import Detector

        torch.set_num_threads(threads)
        self.kind = kind
        self.detector = Detector.from_pretrained(model, device=device, **options)

    def ping(self) -> int:
        """The actor's process id (answers once the actor is up)."""
        return os.getpid()

    def run(
        self, path: str, spacing: Any, include_identifiers: bool, root: str | None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        r = analyze_image(path, self.kind, self.detector, spacing, include_identifiers, root)
        return r.row, r.landmarks


def require_ray() -> Any:
    """The ``ray`` module.

    Raises:
        MissingDependencyError: Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("engine='ray' needs Ray: pip install 'cephspine[ray]'") from None
    return ray


_RAY_POOLS: dict[tuple[Any, ...], list[Any]] = {}


def ray_pool(kind: str, model: ModelRef, device: str, workers: int | None, address: str | None) -> list[Any]:
    """Ray actors for ``(kind, model)``, started once and reused by the next cohort with
    the same model and number of workers (actors found dead by a run are replaced by the
    next). The actors of another model are ended first, so that their CPUs are free."""
    ray = require_ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    path, options = model
    context = ray.get_runtime_context()
    session = (context.get_node_id(), context.get_job_id())
    key = (session, kind, path, tuple(sorted(options.items())), device, n, address)
    for other in [k for k in _RAY_POOLS if k != key]:
        for actor in _RAY_POOLS.pop(other):
            if other[0] == session:  # (handles of an earlier Ray session are void)
                with contextlib.suppress(Exception):
                    ray.kill(actor)
    pool = _RAY_POOLS.setdefault(key, [])
    if len(pool) < n:
        actor = ray.remote(num_cpus=1, max_restarts=ACTOR_RESTARTS, max_task_retries=0)(RayWorker)
        pool.extend(actor.remote(kind, path, device, 1, options) for _ in range(n - len(pool)))
    return pool


def _describe(exc: BaseException) -> str:
    text = one_line(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
    return f"{type(exc).__name__}: {text}"[:300]


class RayScheduler:
    """Runs tasks on Ray actors, each with at most :data:`IN_FLIGHT_PER_ACTOR` queued,
    yielding outcomes as they finish.

    A task whose code raises gives an error row (the image's fault). A failure of the
    machinery (an actor's process killed or out of memory, its node lost) says nothing
    about the image: every task in the failed actor's hands counts a failed attempt and is
    submitted again, alone on an idle actor, so that an image that kills its worker cannot
    take others down with it again. After ``max_attempts`` failed attempts an image is given
    up as :class:`NotAnalysed`. An actor that failed takes no work until it answers again
    (Ray restarts it up to :data:`ACTOR_RESTARTS` times); an actor that is gone for good is
    dropped, and when no actor is left the remaining tasks are :class:`NotAnalysed`.

    Args:
        ray: the ``ray`` module (or an object with its ``wait``, ``get``, ``cancel`` and
            ``exceptions``).
        actors: actor handles with ``run`` and ``ping`` methods.
        call: ``call(actor, task)`` submits a task, returning its object ref.
        image_error: ``image_error(task, exc)``, the error row of a task whose code raised.
        max_attempts: see above.
    """

    PROBES = 10
    PROBE_PAUSE_S = 0.2
    """Pause before asking a failed actor again, doubling with each try up to 2 s (an actor
    that is restarting answers "unavailable" at once)."""

    def __init__(
        self,
        ray: Any,
        actors: Sequence[Any],
        call: Callable[[Any, Task], Any],
        image_error: Callable[[Task, BaseException], dict[str, Any]],
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.ray = ray
        self.actors = list(actors)
        self.call = call
        self.image_error = image_error
        self.max_attempts = max_attempts
        self.dead: set[int] = set()
        """Indices of the actors found gone for good."""

    def run(self, todo: Sequence[Task]) -> Iterator[tuple[Task, Outcome]]:
        ray = self.ray
        errors = ray.exceptions
        died = getattr(errors, "ActorDiedError", errors.RayActorError)
        n = len(self.actors)
        fresh: deque[Task] = deque(todo)
        retry: deque[Task] = deque()  # tasks that were in the hands of a failed actor
        inflight = [0] * n
        alone = [False] * n  # the actor runs a retried task, and nothing else
        ready = [True] * n
        running: dict[Any, tuple[Task, int]] = {}
        probes: dict[Any, tuple[int, int]] = {}
        failed: dict[str, int] = {}
        last_failure = ""

        def submit(i: int, task: Task) -> None:
            running[self.call(self.actors[i], task)] = (task, i)
            inflight[i] += 1

        def probe(i: int, tries: int = 0) -> None:
            ready[i] = False
            probes[self.actors[i].ping.remote()] = (i, tries)

        try:
            while True:
                for i in range(n):
                    if not ready[i] or alone[i]:
                        continue
                    if retry:  # retried tasks first, each alone on an idle actor
                        if inflight[i] == 0:
                            submit(i, retry.popleft())
                            alone[i] = True
                        continue
                    while fresh and inflight[i] < IN_FLIGHT_PER_ACTOR:
                        submit(i, fresh.popleft())
                if not running and not probes:
                    break
                done, _ = ray.wait(list(running) + list(probes), num_returns=1)
                ref = done[0]
                if ref in probes:
                    i, tries = probes.pop(ref)
                    try:
                        ray.get(ref)
                        ready[i] = True
                    except errors.RayError as exc:
                        if isinstance(exc, died) or tries + 1 >= self.PROBES:
                            self.dead.add(i)
                            log.warning("Ray actor %d of %d is gone (%s)", i + 1, n, _describe(exc))
                            with contextlib.suppress(Exception):  # free its reservation for a later pool
                                ray.kill(self.actors[i])
                        else:  # e.g. still restarting: ask again after a pause
                            time.sleep(min(2.0, self.PROBE_PAUSE_S * 2**tries))
                            probe(i, tries + 1)
                    continue
                task, i = running.pop(ref)
                inflight[i] -= 1
                alone[i] = False
                try:
                    row, landmarks = ray.get(ref)
                except errors.RayError as exc:
                    task_error = isinstance(exc, errors.RayTaskError)
                    if task_error and not isinstance(getattr(exc, "cause", None), OutOfMemory):
                        yield task, ImageResult(self.image_error(task, exc), [])  # the analysis raised: the image's
                        continue
                    # the machinery failed (a worker died or ran out of memory, a node was lost), not the image
                    if ready[i]:
                        probe(i)
                    key = task[1]
                    failed[key] = failed.get(key, 0) + 1
                    last_failure = _describe(exc)
                    if failed[key] >= self.max_attempts:
                        log.warning("%s: given up after %d failed Ray worker(s) (%s)", key, failed[key], last_failure)
                        yield task, NotAnalysed(f"the Ray workers running it failed ({last_failure})", failed[key])
                    else:
                        log.warning("%s: Ray worker failed (%s); analysing it again", key, last_failure)
                        retry.append(task)
                    continue
                yield task, ImageResult(row, landmarks)
            for task in (*retry, *fresh):  # no actor left
                reason = "no Ray worker was left to run it" + (f" ({last_failure})" if last_failure else "")
                yield task, NotAnalysed(reason, failed.get(task[1], 0))
        finally:
            for ref in running:  # an interrupted run: leave the actors free for the next
                with contextlib.suppress(Exception):
                    ray.cancel(ref)


def run_ray(
    todo: Sequence[Task], kind: str, model: ModelRef, spacing: Any, include_identifiers: bool, root: Path | None,
    workers: int | None, address: str | None, device: str, max_attempts: int | None = None,
) -> Iterator[tuple[Task, Outcome]]:  # fmt: skip
    """Analyse ``todo`` on Ray actors (one model each), yielding outcomes as they finish
    (see :class:`RayScheduler`; ``max_attempts`` defaults to :data:`MAX_ATTEMPTS`)."""
    ray = require_ray()
    actors = ray_pool(kind, model, device, workers, address)
    root_s = str(root) if root is not None else None

    def call(actor: Any, task: Task) -> Any:
        sp = spacing.get(task[1]) if isinstance(spacing, dict) else spacing  # per image, by key
        return actor.run.remote(str(task[0]), sp, include_identifiers, root_s)

    def image_error(task: Task, exc: BaseException) -> dict[str, Any]:
        cause = getattr(exc, "cause", None) or exc
        message = one_line(str(cause)).replace(str(task[0]), task[1])[:500]
        return error_row(kind, include_identifiers, task[1], f"{type(cause).__name__}: {message}")

    scheduler = RayScheduler(ray, actors, call, image_error, max_attempts or MAX_ATTEMPTS)
    try:
        yield from scheduler.run(todo)
    finally:
        gone = {id(actors[i]) for i in scheduler.dead}
        actors[:] = [a for a in actors if id(a) not in gone]
