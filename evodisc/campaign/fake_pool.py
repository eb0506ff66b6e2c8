"""Instant stand-in evaluators: :class:`FakePool` has the interface of
:class:`~evodisc.campaign.evaluators.InProcessPool` and answers without training, the fitness a
deterministic function of the program's canonical JSON. The controller's tests check its
invariants with it in milliseconds, over many seeds, orders of arrival and crashes; its
benchmark (``tools/bench_controller.py``) times the controller alone with it."""

from __future__ import annotations

import hashlib
import math
import random
import time

from evodisc.campaign.evaluators import Batch, Completion
from evodisc.fitness_cache import CachedFitness
from evodisc.program import Program, program_to_json
from fitness.config import SuiteConfig
from fitness.messages import Baseline, Result

#: Seconds a fake result says its program's training took (its share of the batch).
SECONDS = 0.001
#: The per-task details of a fake result name these tasks and learning rates.
TASKS = ("teacher_student", "ill_conditioned")
LRS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1)


def fake_result(program: Program, worker: str, config: SuiteConfig | None = None) -> Result:
    """A deterministic stand-in for training ``program`` on ``config`` (a function of the
    program's canonical JSON, and a little of the configuration's seeds and tasks, as a
    funnel's stages differ): fitness in [0, 1.2) with an uncertainty, about one in ten
    diverged, with per-task details shaped like :func:`fitness.worker.evaluate_request`'s."""
    text = program_to_json(program)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    stage = "" if config is None else f"{config.seeds}{config.tasks}"
    noise = hashlib.blake2b((text + stage).encode(), digest_size=8).digest()
    v = int.from_bytes(noise, "big") / 2**64
    diverged = digest[0] < 26
    fitness = 0.0 if diverged else min(max(1.2 * u + 0.1 * (v - 0.5), 0.0), 1.199)
    tasks = {
        task: {
            "metric": None if diverged else 0.05 / (fitness + 0.01 + k),
            "best_lr": None if diverged else LRS[(digest[1] + k) % len(LRS)],
            "ratio": 0.0 if diverged else fitness,
        }
        for k, task in enumerate(TASKS)
    }
    details = {"tasks": tasks}
    status = "diverged" if diverged else "ok"
    uncertainty = None if diverged else 0.01 + 0.05 * u
    return Result(CachedFitness(fitness, status, details, uncertainty), SECONDS, worker)


class FakePool:
    """``size`` evaluators that answer with :func:`fake_result`.

    With ``latency`` 0 they are instant: a submitted batch holds its evaluator until the next
    :meth:`poll`. Otherwise a batch is due ``latency`` seconds after it was submitted, and
    :meth:`poll` waits for the first one due, up to its timeout (like Ray's pool). With an
    ``rng``, batches come back in a random order (each due batch may be held back to a later
    poll) and a share ``crash_rate`` of them crash (the controller dispatches them again)."""

    def __init__(
        self,
        size: int,
        latency: float = 0.0,
        nodes: int = 2,
        rng: random.Random | None = None,
        crash_rate: float = 0.0,
    ):
        self.size = size
        self.latency = latency
        self.rng = rng
        self.crash_rate = crash_rate
        self.info = [
            {"name": f"fake-{k}", "node": f"node-{k % nodes}", "device": "cpu"} for k in range(size)
        ]
        self.deadline = None
        self._running: list[tuple[int, Batch, float]] = []  # evaluator, batch, when due
        self.seconds = 0.0  # time spent inside the fake evaluators (charged to the controller)
        self.waited = 0.0  # time poll slept waiting for a batch to be due
        self.crashes = 0

    def idle(self) -> int:
        return self.size - len(self._running)

    def busy(self) -> int:
        return len(self._running)

    def submit(self, batch: Batch) -> None:
        taken = {index for index, _, _ in self._running}
        index = next(k for k in range(self.size) if k not in taken)
        batch.attempts += 1
        self._running.append((index, batch, time.perf_counter() + self.latency))

    def poll(self, timeout: float) -> list[Completion]:
        if self.latency and self._running:
            wait = min(due for _, _, due in self._running) - time.perf_counter()
            if wait > 0:
                time.sleep(min(wait, timeout))
                self.waited += min(wait, timeout)
        start = time.perf_counter()
        done, running = [], []
        if self.rng:
            self.rng.shuffle(self._running)
        for index, batch, due in self._running:
            if due > start or (self.rng and self.rng.random() < 0.5):
                running.append((index, batch, due))
            elif self.rng and self.rng.random() < self.crash_rate:
                self.crashes += 1
                done.append(Completion(batch, failure="crashed"))
            else:
                name, node = self.info[index]["name"], self.info[index]["node"]
                request = batch.request
                results = [fake_result(p, name, request.config) for p in request.programs]
                done.append(Completion(batch, results, node=node, seconds=self.latency or 1e-3))
        self._running = running
        self.seconds += time.perf_counter() - start
        return done

    def batch_size(self, config: SuiteConfig) -> int:
        return 8

    def baselines(self, config: SuiteConfig, deadline: float | None = None) -> dict[str, Baseline]:
        return {task: Baseline(0.05, 0.01, math.nan, 1) for task in config.tasks}

    def close(self) -> None:
        pass
