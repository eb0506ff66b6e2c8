"""Where candidates are trained: pools of evaluators that take batches and hand back results as
they complete, with one interface for Ray actors (an embedded local Ray or a cluster) and for the
controller's own process (``--no-ray``).

An :class:`Evaluator` wraps the batched trainer (``fitness.worker``) and decides how many
candidates it trains together (:meth:`Evaluator.batch_size`, the one place that decides); a pool
keeps each one busy with one batch at a time. Requests and results are typed
(:class:`fitness.messages.Request`, :class:`fitness.messages.Result`); they are turned into
JSON-able dicts only to reach a Ray actor (programs cross as JSON, never pickled). The Ray pool
never waits on a single actor: :meth:`RayPool.poll` takes whatever finished (``ray.wait``),
replaces an actor that died (its batch comes back as a ``crashed`` completion, for the
controller to re-dispatch) and kills and replaces one whose batch ran past the deadline (a
``timeout`` completion).

Evaluators that share a device know how many they are (``sharing``,
:func:`evaluators_per_device`): each sizes its batches for its part of the device's memory
(:func:`fitness.batch_size.candidates_per_batch`), not for all of it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from evodisc.campaign.headwatch import WATCH_STEP, HeadWatch, knock
from fitness.messages import Baseline, Request, Result

if TYPE_CHECKING:  # torch is loaded by an evaluator, never just to name these
    from evodisc.program import Program
    from fitness.config import SuiteConfig

NAMESPACE = "evodisc"
#: Seconds to wait for a remote Ray head before giving up.
CONNECT_SECONDS = 30.0
#: Times an evaluator actor is started (and asked) before its pool gives up on it.
START_ATTEMPTS = 3
#: Seconds a task's baseline, or an in-process batch, may take when the campaign sets no
#: ``timeout_seconds`` (the default suite's baselines take well under a minute each on 2 CPU
#: cores).
DEFAULT_DEADLINE = 1800.0
#: What an in-process call past its deadline leaves behind (it cannot be stopped).
IN_PROCESS_HANG = (
    "a call in this process cannot be stopped, so the run ends here; Ray evaluators "
    "(resources.evaluators >= 1, without --no-ray) cancel and retry such a batch"
)


class EvaluatorError(RuntimeError):
    """Evaluators cannot be started (no Ray cluster at the address, authentication, …)."""


class HeadLostError(EvaluatorError):
    """The Ray head stopped answering in the middle of a campaign
    (:class:`~evodisc.campaign.headwatch.HeadWatch`)."""

    def __init__(self, address: str, grace: float):
        super().__init__(f"lost the Ray head at {address}: no answer for {grace:.0f} s")
        self.address = address


def evaluators_per_device(evaluators: int, gpus_per_evaluator: float) -> int:
    """The most of ``evaluators`` Ray actors that can share one device: on GPUs, as many as Ray
    fits on one (⌊1 / ``gpus_per_evaluator``⌋ when it is a fraction); on CPUs, all of them (the
    node each one lands on is not known when they start)."""
    if gpus_per_evaluator >= 1:
        return 1
    if gpus_per_evaluator > 0:
        per_gpu = math.floor(1 / gpus_per_evaluator + 1e-9)  # 1/0.1 = 10, not 9.999…
        return max(1, min(evaluators, per_gpu))
    return max(1, evaluators)


class Evaluator:
    """Trains batches of programs on one device (a Ray actor, or an object in-process), which
    ``sharing`` evaluators (this one included) share."""

    def __init__(self, name: str, device: str | None = None, threads: int = 1, sharing: int = 1):
        import torch

        from fitness.device import resolve_device

        torch.set_num_threads(max(1, threads))
        self.name = name
        self.device = resolve_device(device)
        self.sharing = max(1, sharing)

    def info(self) -> dict:
        """Where this evaluator runs: name, node, host, process, device type, and how many
        evaluators share that device."""
        ray = sys.modules.get("ray")  # loaded in an actor; never imported just for this
        node = socket.gethostname()
        if ray is not None and ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()[:12]
        return {
            "name": self.name,
            "node": node,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": self.device.type,
            "sharing": self.sharing,
        }

    def evaluate(self, request: Request) -> list[Result]:
        """One result per program of ``request`` (:func:`fitness.worker.evaluate_request`), in
        batches of :meth:`batch_size`."""
        from fitness.worker import evaluate_request

        size = self.batch_size(request.config, request.programs)
        return evaluate_request(request, self.device, self.name, size)

    def evaluate_serialised(self, request: dict) -> list[dict]:
        """:meth:`evaluate` across a process boundary (a Ray actor's): the request and the
        results as JSON-able dicts."""
        return [result.to_dict() for result in self.evaluate(Request.from_dict(request))]

    def batch_size(self, config: SuiteConfig, programs: Sequence[Program] = ()) -> int:
        """How many candidates of ``config`` (these ``programs``, whose state needs memory too,
        when known) to train together: as many as fit this evaluator's part of its device
        (:func:`fitness.batch_size.candidates_per_batch`, from its free memory); all of
        ``programs`` when that cannot be estimated (training then reports what is wrong)."""
        from fitness.batch_size import candidates_per_batch
        from fitness.tasks import TaskError

        try:
            return candidates_per_batch(
                config.tasks,
                len(config.lrs),
                len(config.seeds),
                config.torch_dtype,
                self.device,
                programs or None,
                sharing=self.sharing,
            )
        except TaskError:
            raise
        except Exception:
            return max(len(programs), 1)

    def baselines(self, config: SuiteConfig) -> dict[str, Baseline]:
        """The tuned baseline per task of ``config`` (computed once per campaign)."""
        from fitness.suite import suite_baselines

        return suite_baselines(config, self.device)


@dataclass
class Batch:
    """Candidates sent together to one evaluator."""

    id: int
    candidate_ids: list[int]
    request: Request
    attempts: int = 0  # dispatches so far (re-dispatched after a crash or a timeout)
    stage: str = "full"  # the funnel stage its request trains


@dataclass
class Completion:
    """A batch that came back: results (one per candidate), or why not (``crashed``,
    ``timeout``) with the results left empty."""

    batch: Batch
    results: list[Result] = field(default_factory=list)
    failure: str = ""
    node: str = ""
    seconds: float = 0.0


class InProcessPool:
    """One evaluator in the controller's process; a batch is trained when submitted. Its device
    is its own unless ``sharing`` says how many evaluators (this one included) share it."""

    def __init__(self, device: str | None = None, threads: int = 1, sharing: int = 1):
        self.evaluator = Evaluator("local", device, threads, sharing)
        self.info = [self.evaluator.info()]
        self.deadline: float | None = None  # seconds a batch may take (None: the default)
        self._done: list[Completion] = []

    @property
    def size(self) -> int:
        return 1

    def idle(self) -> int:
        """How many evaluators can take a batch now."""
        return 1

    def busy(self) -> int:
        return 0

    def submit(self, batch: Batch) -> None:
        """Train ``batch`` now, within the deadline (:data:`DEFAULT_DEADLINE` when none is
        set); past it, an :class:`EvaluatorError`."""
        batch.attempts += 1
        start = time.perf_counter()
        deadline = self.deadline or DEFAULT_DEADLINE
        tasks = ", ".join(batch.request.config.tasks)
        why = f"a batch on {tasks} took longer than {deadline:g} s (does a task hang?); "
        why += IN_PROCESS_HANG
        results = within(deadline, lambda: self.evaluator.evaluate(batch.request), why)
        seconds = time.perf_counter() - start
        self._done.append(Completion(batch, results, node=self.info[0]["node"], seconds=seconds))

    def poll(self, timeout: float) -> list[Completion]:
        done, self._done = self._done, []
        return done

    def batch_size(self, config: SuiteConfig) -> int:
        return self.evaluator.batch_size(config)

    def baselines(self, config: SuiteConfig, deadline: float | None = None) -> dict[str, Baseline]:
        """The tuned baseline of each task of ``config``, one task at a time, each within
        ``deadline`` seconds (None: :data:`DEFAULT_DEADLINE`); a task past it is an
        :class:`EvaluatorError` naming it (its ``data()`` or ``model()`` may hang)."""
        deadline = deadline or DEFAULT_DEADLINE
        baselines = {}
        for task in config.tasks:
            one = dataclasses.replace(config, tasks=(task,))
            why = f"the baseline on {task} took longer than {deadline:g} s (does its data() "
            why += f"hang?); {IN_PROCESS_HANG}"
            baselines |= within(deadline, lambda one=one: self.evaluator.baselines(one), why)
        return baselines

    def close(self) -> None:
        pass


def start_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Connect to the Ray cluster at ``address`` (or ``RAY_ADDRESS``), or start an embedded local
    Ray that listens on loopback only; :class:`EvaluatorError` with one line when that fails."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address or _on_loopback(address):
        # Every listener of a single-machine Ray on 127.0.0.1 (../shared/notes/ray.md); it must
        # be set before ray is imported, and not for a cluster, whose nodes must reach us.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if address and address != "auto":
        _check_reachable(address)
    token = os.path.expanduser("~/.ray/auth_token")
    if address and (os.path.exists(token) or os.environ.get("RAY_AUTH_TOKEN")):
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # Ray's default token auth (ray.md)
    import ray

    if ray.is_initialized():
        return
    _quiet(ray)
    options = dict(namespace=NAMESPACE, log_to_driver=False, configure_logging=False)
    try:
        if address:
            why = f"no answer from a Ray head at {address} within {CONNECT_SECONDS:.0f} s"
            within(CONNECT_SECONDS, lambda: ray.init(address=address, **options), why)
        else:
            # "local": a new instance of our own; ray.init() without an address would join the
            # cluster that `ray start` (or a test's ray.cluster_utils.Cluster) last started here
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **options)
    except EvaluatorError:
        raise
    except ray.exceptions.AuthenticationError as exc:
        raise EvaluatorError(
            f"Ray at {address} refused the connection ({_first_line(exc)}): "
            "set RAY_AUTH_TOKEN (or ~/.ray/auth_token) to the cluster's token"
        ) from None
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        if not address:
            raise EvaluatorError(f"cannot start Ray locally: {_first_line(exc)}") from None
        raise EvaluatorError(
            f"cannot join the Ray cluster at {address}: {_first_line(exc)} (with token "
            "authentication, RAY_AUTH_TOKEN or ~/.ray/auth_token must hold the cluster's token)"
        ) from None


def within(seconds: float, call, why: str):
    """``call()``'s result, computed in a helper thread that this one stops waiting for after
    ``seconds``: then an :class:`EvaluatorError` saying ``why`` (the call itself cannot be
    stopped, and goes on in the background). For what may hang: ``ray.init`` (Ray retries for
    minutes on a port that accepts connections but does not answer like a Ray head), a user's
    task in this process."""
    outcome: list = []

    def attempt() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append((False, exc))

    thread = threading.Thread(target=attempt, name="evodisc-within", daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        raise EvaluatorError(why)
    done, value = outcome[0]
    if not done:
        raise value
    return value


#: Ray's notices that tell an evodisc user nothing: ``ray.init`` in a helper thread
#: (:func:`within`) sets no SIGTERM handler (Python's default ends the process anyway), and
#: token authentication is on (Ray's default).
RAY_NOTICES = ("SIGTERM handler is not set", "Token authentication is enabled for this Ray")
#: Errors that Ray's nodes push to the driver and evodisc handles: an evaluator that died is
#: replaced and its batch sent again; a lost head is one evodisc line (:class:`HeadLostError`).
RAY_HANDLED = ("A worker died or was killed while executing a task", "Raylet is terminated")


class _Notices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(RAY_NOTICES)


def _quiet(ray) -> None:
    """Silence :data:`RAY_NOTICES` and :data:`RAY_HANDLED` (the driver prints the errors
    that nodes push from a thread of its own, through ``print_to_stdstream``: that function
    is wrapped to drop those lines); every other line of Ray's still shows."""
    for name in ("ray._private.worker", "ray._private.authentication.authentication_token_setup"):
        logging.getLogger(name).addFilter(_Notices())
    worker = ray._private.worker
    show = getattr(worker, "print_to_stdstream", None)
    if show is None or getattr(show, "handled_by_evodisc", False):
        return

    def shown(data: dict, ignore_prefix: bool = False) -> None:
        lines = [line for line in data.get("lines", []) if not line.startswith(RAY_HANDLED)]
        if lines:
            show({**data, "lines": lines}, ignore_prefix=ignore_prefix)

    shown.handled_by_evodisc = True
    worker.print_to_stdstream = shown


def _on_loopback(address: str) -> bool:
    """Whether ``address`` (``HOST:PORT``) names this machine's loopback interface."""
    host = address.rpartition(":")[0].strip("[]")
    return host == "localhost" or host.startswith("127.") or host == "::1"


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail fast, on one line, where ``ray.init`` would retry for minutes: ``address`` must be
    ``HOST:PORT`` of a listening Ray head (its GCS port, 6379 by default)."""
    try:
        knock(address, timeout)
    except ValueError as exc:
        raise EvaluatorError(str(exc)) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise EvaluatorError(f"no Ray cluster at {address} ({reason})") from None


def _check_placeable(ray, count: int, cpus: float, gpus: float) -> None:
    """An :class:`EvaluatorError` (one line: what was asked, what the cluster has) when
    ``count`` actors of ``cpus`` CPUs and ``gpus`` GPUs each cannot all be placed on the live
    nodes of the cluster (Ray would keep them pending, and the campaign would wait silently)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    fits = sum(
        min(
            math.floor(node.get("CPU", 0) / cpus + 1e-9),
            math.floor(node.get("GPU", 0) / gpus + 1e-9) if gpus > 0 else count,
        )
        for node in nodes
    )
    if fits < count:
        have = ", ".join(
            f"{node.get('CPU', 0):g} CPU + {node.get('GPU', 0):g} GPU" for node in nodes
        )
        raise EvaluatorError(
            f"{count} evaluator(s) of {cpus:g} CPU + {gpus:g} GPU each cannot be placed on this "
            f"Ray cluster (its nodes: {have or 'none'}); lower resources.evaluators, "
            "cpus_per_evaluator or gpus_per_evaluator"
        )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class RayPool:
    """``count`` long-lived evaluator actors; each one trains one batch at a time, sizing its
    batches for the evaluators that may share its device (:func:`evaluators_per_device`).
    It watches the Ray head (:class:`~evodisc.campaign.headwatch.HeadWatch`) and never waits on
    Ray longer than :data:`~evodisc.campaign.headwatch.WATCH_STEP` at a time: a lost head is a
    :class:`HeadLostError` from whatever call notices it."""

    def __init__(
        self,
        count: int,
        cpus: float = 1.0,
        gpus: float = 0.0,
        deadline: float | None = None,
    ):
        import ray

        self._ray = ray
        #: What ray.get raises when an evaluator is gone (its batch is then re-sent).
        self._lost = (ray.exceptions.RayActorError, ray.exceptions.OutOfMemoryError)
        # one actor class, made (and sent to the head) once: not a Ray name, since creating a
        # named actor asks the head at once, and would block on a lost one (an evaluator
        # knows its own name)
        options = {"num_cpus": cpus, "num_gpus": gpus, "max_restarts": 0}
        self._actor_class = ray.remote(Evaluator).options(**options)
        self._threads = max(1, int(cpus))
        self._device = "cuda" if gpus > 0 else "cpu"
        self._sharing = evaluators_per_device(count, gpus)
        self.deadline = deadline  # seconds a batch may take; None: no limit (yet)
        self._generation = 0
        self._tag = uuid.uuid4().hex[:6]  # evaluator names unique across runs (the log's worker)
        self._watch = HeadWatch(ray.get_runtime_context().gcs_address)
        _check_placeable(ray, count, cpus, gpus)  # else Ray waits for ever for the resources
        self.actors = [self._start(k) for k in range(count)]
        self.info: list[dict] = []
        self.info = [self._ask(k, "info") for k in range(count)]
        self._running: dict = {}  # object ref -> (actor index, batch, start time)

    def _start(self, index: int):
        self._generation += 1
        name = f"evaluator-{index}-{self._generation}-{self._tag}"
        return self._actor_class.remote(name, self._device, self._threads, self._sharing)

    @property
    def size(self) -> int:
        return len(self.actors)

    def _idle_indices(self) -> list[int]:
        taken = {index for index, _, _ in self._running.values()}
        return [k for k in range(len(self.actors)) if k not in taken]

    def idle(self) -> int:
        return len(self._idle_indices())

    def busy(self) -> int:
        return len(self._running)

    def submit(self, batch: Batch) -> None:
        index = self._idle_indices()[0]
        batch.attempts += 1
        ref = self.actors[index].evaluate_serialised.remote(batch.request.to_dict())
        self._running[ref] = (index, batch, time.perf_counter())

    def _restart(self, index: int) -> None:
        self._ray.kill(self.actors[index], no_restart=True)
        self.actors[index] = self._start(index)

    def _replace(self, index: int) -> None:
        self._restart(index)
        self.info[index] = self._ask(index, "info")

    def poll(self, timeout: float) -> list[Completion]:
        """Batches that finished within ``timeout`` seconds, crashed, or ran past the deadline."""
        self._check_head()
        if not self._running:
            return []
        running = list(self._running)
        ready, _ = self._ray.wait(running, num_returns=len(running), timeout=timeout)
        done = []
        for ref in ready:
            index, batch, start = self._running.pop(ref)
            seconds = time.perf_counter() - start
            node = self.info[index]["node"]
            try:
                results = [Result.from_dict(doc) for doc in self._get(ref)]
                done.append(Completion(batch, results, node=node, seconds=seconds))
            except self._lost as exc:  # died, or killed by Ray's memory monitor: replace it
                done.append(Completion(batch, failure=f"crashed: {_first_line(exc)}", node=node))
                self._replace(index)
        now = time.perf_counter()
        for ref, (index, batch, start) in list(self._running.items()):
            if self.deadline is not None and now - start > self.deadline:
                del self._running[ref]
                done.append(Completion(batch, failure="timeout", node=self.info[index]["node"]))
                self._replace(index)
        return done

    def batch_size(self, config: SuiteConfig) -> int:
        """The smallest of the evaluators' own batch sizes (their devices may differ)."""
        return min(self._ask(k, "batch_size", config) for k in range(len(self.actors)))

    def baselines(self, config: SuiteConfig, deadline: float | None = None) -> dict[str, Baseline]:
        """The tuned baseline of each task of ``config``, one task at a time, each within
        ``deadline`` seconds (None: no limit); a task past it is an :class:`EvaluatorError`
        naming it (its ``data()`` or ``model()`` may hang), and its evaluator is replaced."""
        baselines = {}
        for task in config.tasks:
            one = dataclasses.replace(config, tasks=(task,))
            what = f"the baseline on {task}"
            baselines |= self._ask(0, "baselines", one, timeout=deadline, what=what)
        return baselines

    def _ask(self, index: int, method: str, *args, timeout: float | None = None, what: str = ""):
        """Evaluator ``index``'s answer to ``method(*args)`` (``what`` it computes, for
        messages), within ``timeout`` seconds when given: past it, the evaluator is replaced
        and an :class:`EvaluatorError` says so. One that dies first (before it started: Ray
        gives up on a worker that a loaded machine starts too slowly; or killed, or out of
        memory) is started again and asked again, up to :data:`START_ATTEMPTS` times; then an
        :class:`EvaluatorError`."""
        attempts = 1
        while True:
            try:
                return self._get(getattr(self.actors[index], method).remote(*args), timeout)
            except self._ray.exceptions.GetTimeoutError:
                self._replace(index)
                raise EvaluatorError(
                    f"{what or method} took longer than {timeout:g} s (does the task's data() or "
                    "model() hang?); the evaluator was stopped"
                ) from None
            except self._lost as exc:
                if attempts == START_ATTEMPTS:
                    raise EvaluatorError(
                        f"an evaluator did not answer {method} ({attempts} attempts): "
                        f"{_first_line(exc)}"
                    ) from None
            attempts += 1
            self._restart(index)
            if method != "info":
                self.info[index] = self._ask(index, "info")

    def _get(self, ref, timeout: float | None = None):
        """``ray.get`` within ``timeout`` seconds (None: no limit), a step at a time, while the
        head answers; an exception raised inside the evaluator (a task that cannot run) is an
        :class:`EvaluatorError` with its own one-line message, not Ray's wrapped traceback."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            self._check_head()
            left = WATCH_STEP if end is None else max(0.0, end - time.monotonic())
            try:
                return self._ray.get(ref, timeout=min(WATCH_STEP, left))
            except self._ray.exceptions.GetTimeoutError:
                if end is not None and time.monotonic() >= end:
                    raise
            except self._ray.exceptions.RayTaskError as exc:
                cause = exc.cause if exc.cause is not None else exc
                raise EvaluatorError(f"an evaluator failed: {_first_line(cause)}") from None

    def _check_head(self) -> None:
        if self._watch.lost.is_set():
            raise HeadLostError(self._watch.address, self._watch.grace)

    def close(self) -> None:
        """Stop the evaluators (unless the head that holds them is lost) and the watch."""
        self._watch.close()
        if not self._watch.lost.is_set():
            for actor in self.actors:
                self._ray.kill(actor, no_restart=True)
        self.actors = []
