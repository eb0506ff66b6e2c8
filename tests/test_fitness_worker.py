"""The worker side of a campaign: a typed request in, one result per program out (both
JSON-able across a process boundary), and no program's failure loses the others' results."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import fitness.worker
from evodisc.program import parse_program
from fitness.config import SuiteConfig
from fitness.device import resolve_device
from fitness.messages import Request, Result
from fitness.suite import evaluate, suite_baselines
from fitness.worker import evaluate_request
from search_spaces.zoo import load_known

torch.set_num_threads(1)

CONFIG = SuiteConfig(tasks=("ill_conditioned",), lrs=(1e-2, 0.1), seeds=(0,), baseline_seeds=(0,))
PROGRAMS = [load_known(n) for n in ("adamw", "sgd", "momentum", "signsgd")]


@pytest.fixture
def request_doc(fresh_cache):
    return Request(tuple(PROGRAMS), CONFIG, suite_baselines(CONFIG))


def test_results_match_in_process_fitness_and_cross_a_process_boundary_as_json(request_doc):
    results = evaluate_request(request_doc, worker="w1")
    expected = evaluate(PROGRAMS, CONFIG)
    assert [r.fitness.fitness for r in results] == [f.value for f in expected]
    # AdamW against its own baseline, shipped in the request (exact on CPU; on CUDA the batch's
    # size changes the kernels and the last bits)
    one = 1.0 if resolve_device().type == "cpu" else pytest.approx(1.0, rel=1e-6)
    assert results[0].fitness.fitness == one
    assert all(r.fitness.status == "ok" and r.worker == "w1" for r in results)
    # both cross any process boundary as JSON, and come back equal
    sent = json.loads(json.dumps(request_doc.to_dict()))
    assert Request.from_dict(sent) == request_doc
    received = [Result.from_dict(json.loads(json.dumps(r.to_dict()))) for r in results]
    assert received == results


def test_a_program_that_breaks_training_is_isolated(request_doc, monkeypatch):
    real = fitness.worker.evaluate
    culprit = PROGRAMS[2]

    def evaluate_failing_on_culprit(programs, *args):
        if culprit in programs:
            raise RuntimeError("boom from one program\nsecond line")
        return real(programs, *args)

    monkeypatch.setattr(fitness.worker, "evaluate", evaluate_failing_on_culprit)
    results = [r.fitness for r in evaluate_request(request_doc)]
    assert [r.status for r in results] == ["ok", "ok", "error", "ok"]
    assert results[2].details == {"reason": "RuntimeError: boom from one program"}
    assert results[2].fitness == 0.0
    assert [r.fitness for r in results[:2]] == [f.value for f in real(PROGRAMS[:2], CONFIG)]


def test_a_batch_out_of_memory_is_split_and_retried(request_doc, monkeypatch):
    real = fitness.worker.evaluate
    sizes = []

    def evaluate_with_memory_for_two(programs, *args):
        sizes.append(len(programs))
        if len(programs) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(programs, *args)

    monkeypatch.setattr(fitness.worker, "evaluate", evaluate_with_memory_for_two)
    results = [r.fitness for r in evaluate_request(request_doc)]
    assert sizes == [4, 2, 2]
    assert all(r.status == "ok" for r in results)
    halves = real(PROGRAMS[:2], CONFIG) + real(PROGRAMS[2:], CONFIG)
    assert [r.fitness for r in results] == [f.value for f in halves]


def test_a_diverging_program_is_reported_as_diverged(request_doc):
    exploding = parse_program("def train(g, lr):\n    return -1000 * g, \n")
    request = dataclasses.replace(request_doc, programs=(exploding,))
    [result] = [r.fitness for r in evaluate_request(request)]
    assert result.status == "diverged" and result.fitness == 0.0
    assert result.details["tasks"]["ill_conditioned"]["metric"] is None
