"""The chunk executor: temporal ensembling weights, receding horizon, drop_queued_actions."""

from __future__ import annotations

import numpy as np
import pytest

from takeover.policy.runtime import ChunkExecutor, ExecutorConfig
from takeover.policy.spec import PolicyError

K = 4


def chunk_of(value: float, k: int = K) -> np.ndarray:
    """A chunk whose step i is (value + i, -(value + i)): every prediction is identifiable."""
    v = value + np.arange(k, dtype=np.float32)
    return np.stack([v, -v], axis=1)


def test_ensemble_weights_are_exponential_oldest_first() -> None:
    ex = ChunkExecutor(K, ExecutorConfig(mode="ensemble", ensemble_k=0.5))
    w = ex.ensemble_weights(3)
    expected = np.exp(-0.5 * np.arange(3))
    np.testing.assert_allclose(w, expected / expected.sum(), rtol=1e-6)
    assert w[0] > w[1] > w[2]  # the oldest prediction weighs most (ACT)
    uniform = ChunkExecutor(K, ExecutorConfig(ensemble_k=0.0)).ensemble_weights(4)
    np.testing.assert_allclose(uniform, 0.25)


def test_ensemble_averages_every_prediction_for_the_tick() -> None:
    k = 0.3
    ex = ChunkExecutor(K, ExecutorConfig(mode="ensemble", ensemble_k=k))
    outputs = []
    for t in range(6):
        ex.add_chunk(chunk_of(10.0 * t))
        action = ex.next_action()
        assert action is not None
        outputs.append(action)
    # At tick 5 the chunks of ticks 2..5 predict it: chunk t says 10 t + (5 - t).
    preds = np.array([10.0 * t + (5 - t) for t in range(2, 6)])
    w = np.exp(-k * np.arange(4))
    np.testing.assert_allclose(outputs[5][0], (preds * w).sum() / w.sum(), rtol=1e-5)
    np.testing.assert_allclose(outputs[5][1], -outputs[5][0], rtol=1e-6)
    # At tick 0 only its own chunk exists.
    np.testing.assert_allclose(outputs[0], [0.0, 0.0])


def test_ensemble_forgets_chunks_older_than_k() -> None:
    ex = ChunkExecutor(K, ExecutorConfig(mode="ensemble", ensemble_k=0.0))
    ex.add_chunk(chunk_of(100.0))
    for _ in range(K):
        assert ex.next_action() is not None
    assert ex.next_action() is None  # the only chunk is spent, nothing else predicts this tick


def test_receding_horizon_executes_n_steps_then_replans() -> None:
    ex = ChunkExecutor(K, ExecutorConfig(mode="receding", n_action_steps=3))
    assert ex.needs_chunk
    ex.add_chunk(chunk_of(0.0))
    got: list[float] = []
    for _ in range(3):
        assert not ex.needs_chunk
        a = ex.next_action()
        assert a is not None
        got.append(float(a[0]))
    assert got == [0.0, 1.0, 2.0]
    assert ex.needs_chunk  # the 4th step of the chunk is never executed
    ex.add_chunk(chunk_of(50.0))
    a = ex.next_action()
    assert a is not None and float(a[0]) == 50.0


@pytest.mark.parametrize("mode", ["ensemble", "receding"])
def test_drop_queued_actions_forgets_the_old_plan(mode: str) -> None:
    ex = ChunkExecutor(K, ExecutorConfig(mode=mode, ensemble_k=0.0, n_action_steps=K))
    ex.add_chunk(chunk_of(0.0))
    ex.next_action()
    ex.drop_queued_actions()  # a takeover
    assert ex.needs_chunk
    assert ex.next_action() is None  # nothing stale is executed after the takeover
    ex.add_chunk(chunk_of(70.0))
    a = ex.next_action()
    assert a is not None and float(a[0]) == 70.0  # only the new chunk, from its first step


def test_bad_executor_settings_are_one_line_errors() -> None:
    with pytest.raises(PolicyError, match="n_action_steps"):
        ChunkExecutor(K, ExecutorConfig(mode="receding", n_action_steps=0))
    # More steps than the model's chunk holds: the whole chunk.
    assert ChunkExecutor(K, ExecutorConfig(mode="receding", n_action_steps=K + 1)
                         ).config.n_action_steps == K
    with pytest.raises(PolicyError, match="execution mode"):
        ChunkExecutor(K, ExecutorConfig(mode="sometimes"))
    with pytest.raises(PolicyError, match="chunk of shape"):
        ChunkExecutor(K).add_chunk(np.zeros((K + 1, 2), dtype=np.float32))
