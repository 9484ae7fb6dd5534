"""A ragged batch of many learners' calls answers each exactly as the call alone would (fp32, 1e-5)."""

from __future__ import annotations

import pytest
import torch

from lyceum_ml.dfm import DFM, DFMConfig
from lyceum_ml.dfm import inference as inf
from lyceum_ml.dfm.ragged import GATHER_LIMIT_BYTES, decode_ragged

N_TASKS = 12


def model() -> DFM:
    torch.manual_seed(0)
    return DFM(DFMConfig(n_tasks=N_TASKS, d_model=32, n_layer=2, n_head=4, n_kv_head=2, init_std=0.3)).eval()


def history(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, N_TASKS, (n,), generator=g), torch.randint(0, 2, (n,), generator=g).float()


@pytest.mark.parametrize("gather_limit", [0, GATHER_LIMIT_BYTES], ids=["rows-apart", "padded-block"])
@torch.no_grad()
def test_mixed_ragged_batch_equals_each_call_alone(gather_limit: int) -> None:
    m = model()
    caches = [inf.prefill(m, *history(seed, n)) for seed, n in enumerate((3, 40, 0, 17, 25))]
    candidates = [torch.tensor([1]), torch.tensor([0, 5, 5, 11]), torch.tensor([2, 3])]
    new_events = [history(100, 1), history(101, 6)]
    fresh = history(200, 40)  # 81 tokens: attends apart from the short rows

    rows = [
        inf.predict_row(m, caches[0], candidates[0]),
        inf.predict_row(m, caches[1], candidates[1]),
        inf.predict_row(m, caches[2], candidates[2]),
        inf.extend_row(m, caches[3], *new_events[0]),
        inf.extend_row(m, caches[4], *new_events[1]),
        inf.prefill_row(m, *fresh),
    ]
    out = decode_ragged(m, rows, gather_limit_bytes=gather_limit)

    for i in range(3):
        alone = inf.predict(m, caches[i], candidates[i])
        torch.testing.assert_close(inf.probabilities(m, out[i][0], candidates[i]), alone, atol=1e-5, rtol=0)
    for j, (tasks, outcomes) in enumerate(new_events):
        priors, kv = inf.extend(m, caches[3 + j], tasks, outcomes)
        h, new_kv = out[3 + j]
        torch.testing.assert_close(inf.event_priors(m, h, tasks, prefilled=False), priors, atol=1e-5, rtol=0)
        for (k1, v1), (k2, v2) in zip(new_kv, kv, strict=True):
            torch.testing.assert_close(k1, k2, atol=1e-5, rtol=0)
            torch.testing.assert_close(v1, v2, atol=1e-5, rtol=0)
    rebuilt = inf.cache_of(m, out[5][1])
    alone = inf.prefill(m, *fresh)
    assert rebuilt.length == alone.length
    torch.testing.assert_close(
        rebuilt.buf[..., : rebuilt.length, :], alone.buf[..., : alone.length, :], atol=1e-5, rtol=0
    )
    # and a prefill row's priors are what extending an empty history event by event predicts
    empty = inf.prefill(m, torch.zeros(0, dtype=torch.long), torch.zeros(0))
    priors, _ = inf.extend(m, empty, *fresh)
    torch.testing.assert_close(
        inf.event_priors(m, out[5][0], fresh[0], prefilled=True), priors, atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("gather_limit", [0, GATHER_LIMIT_BYTES], ids=["rows-apart", "padded-block"])
@torch.no_grad()
def test_a_row_does_not_depend_on_its_batch_mates(gather_limit: int) -> None:
    m = model()
    cache = inf.prefill(m, *history(7, 30))
    tasks = torch.tensor([4, 9])
    alone = inf.probabilities(m, decode_ragged(m, [inf.predict_row(m, cache, tasks)])[0][0], tasks)
    others = [inf.prefill(m, *history(s, 5 + 11 * s)) for s in range(7)]
    rows = [inf.predict_row(m, c, torch.tensor([s % N_TASKS])) for s, c in enumerate(others)]
    rows.insert(3, inf.predict_row(m, cache, tasks))
    among = inf.probabilities(m, decode_ragged(m, rows, gather_limit_bytes=gather_limit)[3][0], tasks)
    torch.testing.assert_close(among, alone, atol=1e-5, rtol=0)
