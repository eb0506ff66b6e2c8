"""The batched trainer: P programs × L learning rates × S seeds trained as one stacked run.

All ``B = P·L·S`` models of a task live in one flat tensor ``(B, N)`` (``N`` = parameters per
model). Each step runs one vmapped forward/backward for all models (the gradient of the *sum* of
the per-model losses is each model's own gradient), then each program updates its own
``(L·S, N)`` slice: one interpreter call on the whole slice when the program is elementwise, one
call per parameter tensor when it uses per-tensor reductions (``norm``, ``rms``, ``mean``). The
step number ``t`` runs from 1 to the task's step budget ``task.steps``, which is the horizon ``T``
of the programs that read it.

Divergence is per run: a run whose loss turns non-finite or explodes is frozen (its weights and
state stop changing, so NaN never spreads) and reported as diverged; the others go on.

Early stopping (``stop_stalled`` = f > 0): after ``ceil(f·steps)`` steps, a run whose validation
metric is no better than before its first step is *stopped* — frozen and reported like a diverged
run (NaN metric), and counted in :attr:`BatchResult.stopped`.

Learning-rate halving (``keep_lrs`` = k > 0, after ``keep_lrs_after`` = f of the steps): after
``ceil(f·steps)`` steps, only each program's k best learning rates train on — ranked by the mean
over seeds of their validation metric then (a learning rate with a diverged seed ranks last,
as it is out of the fitness anyway) — and the others' runs stop (counted in ``stopped`` too).
What is kept is the rest of the grid's runs exactly: a program's fitness changes only when its
best learning rate at the end was not among its k best at the cut (docs/benchmarks.md measures
how often).

Whenever runs stop, a learning rate none of whose seeds is still alive leaves the stacked batch
(and a program with none left leaves it), which is where the compute is saved; the other runs'
results are those of the run without stopping (up to the float rounding of a smaller batch).

A run's metric is the mean of its validation metric at ``checkpoints`` evenly spaced points of
training, the last one the end (:func:`fitness.runs.checkpoint_steps`; 1 = the final value
only): an *anytime* metric that rewards reaching a good model early, and averages out the
step-to-step noise of a single final evaluation.

On CUDA the step is captured once as a CUDA graph and replayed, so a step costs one launch
instead of hundreds; on CPU the same step function runs eagerly.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call, vmap

from evodisc.analysis import uses_reduction
from evodisc.interpreter import CompiledProgram, compile_program, step
from evodisc.program import Program
from fitness.batch_size import models_per_evaluation
from fitness.device import resolve_device
from fitness.runs import (
    bad_loss,
    batch_indices,
    best_over_lrs,
    checkpoint_steps,
    data_on,
    explosion_limit,
    grid_edge,
    seeded_model,
    stall_step,
)
from fitness.tasks import Task, TaskError

#: Steps run eagerly before a CUDA graph is captured (warm-up, as CUDA graphs require).
_WARMUP_STEPS = 3
#: CUDA streams the programs' updates are spread over (1 = one after the other).
DEFAULT_STREAMS = 8


@dataclass(frozen=True)
class BatchResult:
    """Validation metrics of every run of one task: arrays indexed ``[program, lr, seed]``."""

    task: str
    metric_name: str
    higher_is_better: bool
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    metric: np.ndarray  # float64, NaN where the run diverged: the mean of ``curve``
    diverged: np.ndarray  # bool
    seconds: float
    #: ``[program, lr, seed, checkpoint]`` validation metric at each checkpoint (NaN where the
    #: run diverged), after the steps ``checkpoint_steps``.
    curve: np.ndarray | None = None
    checkpoint_steps: tuple[int, ...] = ()
    #: ``[program, lr, seed]`` True where the run was stopped early, stalled or cut by
    #: learning-rate halving (its metric is NaN as if it diverged; ``diverged`` is True there
    #: too); None when neither was on.
    stopped: np.ndarray | None = None

    def best(self, program: int) -> tuple[float | None, float]:
        """Best learning rate and metric (mean over seeds) of one program; ``(None, nan)`` if it
        diverged at every learning rate."""
        return best_over_lrs(self.metric[program], self.lrs, self.higher_is_better)

    def select_seeds(self, indices: Sequence[int]) -> BatchResult:
        """The same result restricted to the seeds at ``indices`` (seeds are independent runs:
        a subset is what training only those seeds gives)."""
        index = list(indices)
        curve = None if self.curve is None else self.curve[:, :, index]
        stopped = None if self.stopped is None else self.stopped[:, :, index]
        return dataclasses.replace(
            self,
            seeds=tuple(self.seeds[i] for i in index),
            metric=self.metric[:, :, index],
            diverged=self.diverged[:, :, index],
            curve=curve,
            stopped=stopped,
        )

    def best_seeds(self, program: int) -> np.ndarray:
        """``(S,)`` per-seed metrics of one program at its best learning rate (empty when it
        diverged at every learning rate): the spread its uncertainty is estimated from."""
        best_lr, _ = self.best(program)
        if best_lr is None:
            return np.empty(0)
        return self.metric[program, self.lrs.index(best_lr)]

    def edge(self, program: int) -> str | None:
        """``"low"``/``"high"`` when one program's best learning rate is on that edge of the
        grid (the optimum may lie beyond it), else None (see :func:`fitness.runs.grid_edge`)."""
        return grid_edge(self.metric[program], self.lrs, self.higher_is_better)


def _returns_constant(compiled: CompiledProgram) -> bool:
    constant_registers = {reg for reg, _ in compiled.constants}
    return any(reg in constant_registers for reg in compiled.outputs)


class _Layout:
    """Where each named parameter lives in a model's flat vector."""

    def __init__(self, model: torch.nn.Module):
        self.names: list[str] = []
        self.shapes: list[torch.Size] = []
        self.offsets: list[int] = []
        total = 0
        for name, p in model.named_parameters():
            self.names.append(name)
            self.shapes.append(p.shape)
            self.offsets.append(total)
            total += p.numel()
        self.size = total

    def flatten(self, model: torch.nn.Module) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def segments(self, flat: torch.Tensor, lead: tuple[int, ...]) -> list[torch.Tensor]:
        """Views of ``flat`` (``(*lead, N)``) shaped ``(*lead, *param_shape)`` per parameter."""
        return [
            flat[..., off : off + shape.numel()].view(*lead, *shape)
            for off, shape in zip(self.offsets, self.shapes, strict=True)
        ]


class BatchedRun:
    """One task, P programs × L learning rates × S seeds, ready to train (see module doc)."""

    def __init__(
        self,
        task: Task,
        programs: Sequence[Program],
        lrs: Sequence[float],
        seeds: Sequence[int] = (0,),
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        streams: int = DEFAULT_STREAMS,
        checkpoints: int = 1,
        stop_stalled: float = 0.0,
        keep_lrs: int = 0,
        keep_lrs_after: float = 0.0,
    ):
        if not programs or not lrs or not seeds:
            raise TaskError("need at least one program, one learning rate and one seed")
        self.task, self.device, self.dtype = task, resolve_device(device), dtype
        self.checkpoints = checkpoint_steps(task.steps, checkpoints)
        #: The step count after which stalled runs stop (None: never; see the module docstring).
        self.stop_step = stall_step(task.steps, stop_stalled)
        #: After how many steps only the ``keep_lrs`` best learning rates go on (None: never).
        self.keep_lrs = keep_lrs
        halving = 0 < keep_lrs < len(lrs)
        self.keep_step = stall_step(task.steps, keep_lrs_after) if halving else None
        self.curve: list[torch.Tensor] = []  # (B0,) scores at each checkpoint before the end
        self.lrs, self.seeds = tuple(float(x) for x in lrs), tuple(int(s) for s in seeds)
        P, L, S = len(programs), len(self.lrs), len(self.seeds)
        self.P, self.S, self.B = P, S, P * L * S
        self.P0, self.B0 = P, self.B  # at the start; runs may leave the batch (early stopping)
        self.counts = [L * S] * P  # rows of each program still in the batch, in order
        dev = self.device

        data = data_on(task, dev, dtype)
        self.x_train, self.y_train = data.x_train, data.y_train
        self.x_val, self.y_val = data.x_val, data.y_val

        models = [seeded_model(task, s) for s in self.seeds]
        self.layout = _Layout(models[0])
        # Flatten before moving: Module.to() moves models[0] in place.
        per_seed = torch.stack([self.layout.flatten(m) for m in models]).to(dev, dtype)
        self.module = models[0].to(dev, dtype)  # structure and buffers for functional_call
        self.flat = per_seed.expand(P * L, S, -1).reshape(self.B, -1).contiguous()

        idx = [batch_indices(s, len(self.x_train), task.batch_size, task.steps) for s in self.seeds]
        self.indices = torch.stack(idx, dim=1).to(dev)  # (steps, S, batch)
        self.current = self.indices[0].clone()
        self.t = torch.ones((), dtype=torch.float64, device=dev)
        self.T = torch.tensor(float(task.steps), dtype=torch.float64, device=dev)  # the horizon
        lr = torch.tensor(self.lrs, dtype=dtype, device=dev)
        self.lr = lr.repeat_interleave(S).repeat(P)  # [p, l, s] flattened

        self.compiled = [compile_program(p, "torch") for p in programs]
        self.per_tensor = [uses_reduction(p) for p in programs]
        self.state = [
            [torch.zeros(L * S, self.layout.size, dtype=dtype, device=dev) for _ in p.state]
            for p in programs
        ]
        self.alive = torch.ones(self.B, dtype=torch.bool, device=dev)
        self.rows = torch.arange(self.B, device=dev)  # each row's index among the first B0
        self.stopped = torch.zeros(self.B0, dtype=torch.bool, device=dev)
        self.start_score = self.validate() if self.stop_step else None
        # On CUDA the programs' updates are independent small kernels: spread them over a few
        # streams so that they run side by side (a CUDA graph keeps the fork/join structure).
        count = min(streams, P) if dev.type == "cuda" else 1
        self.streams = [torch.cuda.Stream(dev) for _ in range(count)] if count > 1 else []
        self.limit = torch.full((self.B,), float("inf"), dtype=dtype, device=dev)

    # ------------------------------------------------------------------------------ one step

    def _params(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``flat`` as the module's parameters, shaped ``(P·L, S, *shape)``."""
        segments = self.layout.segments(flat, (self.B // self.S, self.S))
        return dict(zip(self.layout.names, segments, strict=True))

    def _forward(
        self, params: dict[str, torch.Tensor], x: torch.Tensor, per_seed: bool, chunk: int = 0
    ) -> torch.Tensor:
        """Outputs of all models, ``(P·L, S, …)``; ``x`` is ``(S, batch, …)`` (``per_seed``) or
        shared by all models; ``chunk`` bounds how many ``P·L`` groups run at once (memory)."""

        def one(p, xs):
            return functional_call(self.module, p, (xs,))

        inner = vmap(one, in_dims=(0, 0 if per_seed else None))
        return vmap(inner, in_dims=(0, None), chunk_size=chunk or None)(params, x)

    def _train_step(self, first: bool = False) -> None:
        """One optimizer step of every live run; reads the batch from ``self.current`` and the
        step number from ``self.t`` (so that a CUDA graph can replay it); the horizon ``T`` is
        the task's step budget."""
        params = {k: v.detach().requires_grad_(True) for k, v in self._params(self.flat).items()}
        x, y = self.x_train[self.current], self.y_train[self.current]
        out = self._forward(params, x, per_seed=True)
        loss = vmap(vmap(self.task.loss), in_dims=(0, None))(out, y)
        grads = torch.autograd.grad(loss.sum(), list(params.values()))
        loss = loss.detach().reshape(self.B)
        with torch.no_grad():
            grad = torch.cat([g.reshape(self.B, -1) for g in grads], dim=1)
            if first:
                self.limit.copy_(explosion_limit(loss))
            self.alive.logical_and_(~bad_loss(loss, self.limit))
            self._apply_programs(grad)

    def _apply_programs(self, grad: torch.Tensor) -> None:
        """Every program's update of its own rows, forked over ``self.streams`` when there are."""
        if not self.streams:
            for p in range(self.P):
                self._apply_program(p, grad)
            return
        main = torch.cuda.current_stream(self.device)
        for stream in self.streams:
            stream.wait_stream(main)
        for p in range(self.P):
            with torch.cuda.stream(self.streams[p % len(self.streams)]):
                self._apply_program(p, grad)
        for stream in self.streams:
            main.wait_stream(stream)

    def _apply_program(self, p: int, grad: torch.Tensor) -> None:
        start, n = sum(self.counts[:p]), self.counts[p]
        rows = slice(start, start + n)
        w, g, lr, state = self.flat[rows], grad[rows], self.lr[rows], self.state[p]
        if self.per_tensor[p]:
            update = torch.empty_like(w)
            segs = [self.layout.segments(x, (n,)) for x in (w, g, update, *state)]
            new_state = [torch.empty_like(s) for s in state]
            new_segs = [self.layout.segments(s, (n,)) for s in new_state]
            for i in range(len(self.layout.names)):
                u, ns = step(
                    self.compiled[p],
                    segs[0][i],
                    segs[1][i],
                    lr,
                    self.t,
                    [s[i] for s in segs[3:]],
                    1,
                    self.T,
                )
                segs[2][i].copy_(u)
                for target, value in zip(new_segs, ns, strict=True):
                    target[i].copy_(value)
        else:
            update, new_state = step(
                self.compiled[p], w, g, lr, self.t, state, batch_dims=1, T=self.T
            )
        live = self.alive[rows].unsqueeze(1)
        w.copy_(torch.where(live, w - update, w))
        for slot, value in zip(state, new_state, strict=True):
            slot.copy_(torch.where(live, value, slot))

    # ---------------------------------------------------------------------------- whole run

    def _set_step(self, k: int) -> None:
        self.current.copy_(self.indices[k])
        self.t.fill_(k + 1)

    def _capturable(self) -> bool:
        return self.device.type == "cuda" and not any(_returns_constant(c) for c in self.compiled)

    def train(self, cuda_graphs: bool = True) -> None:
        """Run the task's step budget for every model, stopping stalled runs after
        :attr:`stop_step` steps and keeping the best learning rates after :attr:`keep_step`,
        when asked."""
        events = [(self.stop_step, 0, self._stop_stalled), (self.keep_step, 1, self._keep_best)]
        done = 0
        for at, _, action in sorted(e for e in events if e[0] is not None):
            self._train_steps(done, at, cuda_graphs)
            done = at
            action(self._scores_now(at))
            if not self.P:
                return
        self._train_steps(done, self.task.steps, cuda_graphs)

    def _train_steps(self, start: int, end: int, cuda_graphs: bool) -> None:
        """Steps ``start`` to ``end`` (0-based, end excluded); on CUDA a few eagerly, then as a
        captured graph replayed."""
        graph = None
        if cuda_graphs and self._capturable() and end - start > _WARMUP_STEPS + 1:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for k in range(start, start + _WARMUP_STEPS):
                    self._set_step(k)
                    self._train_step(first=k == 0)
                    self._checkpoint(k + 1)
            torch.cuda.current_stream(self.device).wait_stream(side)
            start, graph = start + _WARMUP_STEPS, self._capture()
        for k in range(start, end):
            self._set_step(k)
            if graph is not None:
                graph.replay()
            else:
                self._train_step(first=k == 0)
            self._checkpoint(k + 1)

    def _scores_now(self, done: int) -> torch.Tensor:
        """``(B,)`` validation metric after ``done`` steps (the checkpoint's when it is one)."""
        if done in self.checkpoints and self.curve:
            return self.curve[-1][self.rows]
        return self.validate()

    def _stop_stalled(self, now: torch.Tensor) -> None:
        """Stop the live runs whose validation metric ``now`` is no better than at the start."""
        with torch.no_grad():
            start = self.start_score[self.rows]
            better = now > start if self.task.higher_is_better else now < start
            self._stop(self.alive & ~better)

    def _keep_best(self, now: torch.Tensor) -> None:
        """Stop the runs of every learning rate but each program's :attr:`keep_lrs` best by
        their mean validation metric ``now`` (a learning rate with a dead seed ranks last)."""
        with torch.no_grad():
            groups = now.view(-1, self.S)
            alive = self.alive.view(-1, self.S).all(dim=1)
            sign = 1.0 if self.task.higher_is_better else -1.0
            score = torch.where(alive, sign * groups.mean(dim=1), -torch.inf).tolist()
            keep, first = [False] * len(score), 0
            for count in self.counts:
                mine = range(first, first + count // self.S)
                for g in sorted(mine, key=lambda g: -score[g])[: self.keep_lrs]:
                    keep[g] = True
                first += count // self.S
            cut = ~torch.tensor(keep, device=self.device).repeat_interleave(self.S)
            self._stop(self.alive & cut)

    def _stop(self, runs: torch.Tensor) -> None:
        """Stop the live ``runs`` (a ``(B,)`` mask), then let the learning rates with no live
        run leave the batch, and the programs with none left."""
        self.stopped[self.rows[runs]] = True
        self.alive &= ~runs
        live = self.alive.view(-1, self.S).any(dim=1)
        if not bool(live.all()):
            self._keep_groups(live)

    def _keep_groups(self, keep: torch.Tensor) -> None:
        """Shrink the batch to the (program, learning rate) groups where ``keep`` (``(B/S,)``)
        is True: their rows, and their programs' state and code."""
        rows = keep.repeat_interleave(self.S)
        index = rows.nonzero().squeeze(1)
        for name in ("flat", "lr", "alive", "limit", "rows"):
            setattr(self, name, getattr(self, name)[index].contiguous())
        mine = torch.split(rows, self.counts)
        kept = [p for p in range(self.P) if bool(mine[p].any())]
        self.state = [[slot[mine[p]].contiguous() for slot in self.state[p]] for p in kept]
        self.counts = [int(mine[p].sum()) for p in kept]
        self.compiled = [self.compiled[p] for p in kept]
        self.per_tensor = [self.per_tensor[p] for p in kept]
        self.P, self.B = len(kept), len(index)
        self.streams = self.streams[: min(len(self.streams), self.P)]

    def _checkpoint(self, done: int) -> None:
        """Validate every model if ``done`` steps is a checkpoint before the end (the end's is
        :meth:`evaluate`'s)."""
        if done in self.checkpoints and done < self.task.steps:
            self.curve.append(self._in_full(self.validate()))

    def _capture(self) -> torch.cuda.CUDAGraph | None:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._train_step()
        except Exception as exc:  # capture is an optimisation: fall back to eager steps
            warnings.warn(f"CUDA graph capture failed, training eagerly: {exc}", stacklevel=2)
            torch.cuda.synchronize(self.device)
            return None
        return graph

    def validate(self, max_models: int | None = None) -> torch.Tensor:
        """``(B,)`` validation metric of every model's current weights.

        Models are validated in chunks of at most ``max_models`` (default: as many as keep
        their validation activations within :data:`fitness.batch_size.EVAL_BYTES`), each chunk
        reduced to its scores before the next, so memory does not grow with the batch."""
        if max_models is None:
            max_models = models_per_evaluation(self.task, self.dtype, self.device)
        chunk = max(1, max_models // self.S)  # P·L groups of S models at a time

        def scores(params: dict[str, torch.Tensor]) -> torch.Tensor:  # one group's S models
            out = vmap(lambda p: functional_call(self.module, p, (self.x_val,)))(params)
            return vmap(self.task.score, in_dims=(0, None))(out, self.y_val)

        with torch.no_grad():
            return vmap(scores, chunk_size=chunk)(self._params(self.flat)).reshape(self.B)

    def _in_full(self, scores: torch.Tensor) -> torch.Tensor:
        """``(B0,)`` with ``scores`` (of the rows still in the batch) in their places and NaN in
        the places of the programs that left it."""
        full = torch.full((self.B0,), float("nan"), dtype=scores.dtype, device=scores.device)
        full[self.rows] = scores
        return full

    def evaluate(self, max_models: int | None = None) -> BatchResult:
        """Every run's metric — the mean of its validation curve, NaN where it diverged or was
        stopped — as a :class:`BatchResult` (the end of training validated now, see
        :meth:`validate`)."""
        with torch.no_grad():
            final = self.validate(max_models) if self.P else self.flat.new_empty(0)
            curve = torch.stack([*self.curve, self._in_full(final)], dim=1)  # (B0, K)
            live = self.alive & torch.isfinite(self.flat).all(dim=1)
            ok = torch.zeros(self.B0, dtype=torch.bool, device=self.device)
            ok[self.rows] = live
            ok &= torch.isfinite(curve).all(dim=1)
            nan = torch.full_like(curve, float("nan"))
            curve = torch.where(ok.unsqueeze(1), curve, nan)
        shape = (self.P0, len(self.lrs), self.S)
        early = self.stop_step is not None or self.keep_step is not None
        curve_np = curve.double().cpu().numpy().reshape(*shape, -1)
        return BatchResult(
            task=self.task.name,
            metric_name=self.task.metric,
            higher_is_better=bool(self.task.higher_is_better),
            lrs=self.lrs,
            seeds=self.seeds,
            metric=curve_np.mean(axis=-1),
            diverged=(~ok).cpu().numpy().reshape(shape),
            seconds=0.0,
            curve=curve_np,
            checkpoint_steps=self.checkpoints[-curve_np.shape[-1] :],
            stopped=self.stopped.cpu().numpy().reshape(shape) if early else None,
        )


def train_batch(
    task: Task,
    programs: Sequence[Program],
    lrs: Sequence[float],
    seeds: Sequence[int] = (0,),
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    cuda_graphs: bool = True,
    streams: int = DEFAULT_STREAMS,
    checkpoints: int = 1,
    stop_stalled: float = 0.0,
    keep_lrs: int = 0,
    keep_lrs_after: float = 0.0,
) -> BatchResult:
    """Train every (program, learning rate, seed) combination on ``task`` at once and return the
    validation metric of each run: the mean over ``checkpoints`` evenly spaced points of
    training (see :class:`BatchResult`); ``stop_stalled``, ``keep_lrs`` and ``keep_lrs_after``:
    see the module docstring."""
    start = time.perf_counter()
    run = BatchedRun(
        task,
        programs,
        lrs,
        seeds,
        device,
        dtype,
        streams,
        checkpoints,
        stop_stalled,
        keep_lrs,
        keep_lrs_after,
    )
    run.train(cuda_graphs=cuda_graphs)
    result = run.evaluate()
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    seconds = time.perf_counter() - start
    return BatchResult(**{**result.__dict__, "seconds": seconds})
