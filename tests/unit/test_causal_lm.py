"""Both CausalLM adapters (Lyceum TransformerLM, Hugging Face GPT-2): cached steps equal the full forward
pass, truncation is an exact undo, text round trips, token bytes are faithful for partial UTF-8, context
limits hold."""

from __future__ import annotations

import json
from copy import deepcopy
from pathlib import Path

import pytest
import torch

from lyceum_ml.causal_lm import CausalLM
from lyceum_ml.causal_lm_impl import ChunkedLayer, HFCausalLM, LyceumCausalLM, load_causal_lm, piece_bytes

TEXT = "Once upon a time, a little dog named Spot found a shiny red ball in the park."
UNICODE = "Café crème, naïve 😀 — “quotes” and 日本語."


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/fixtures/lm_models.py


def full_logits(lm: CausalLM, ids: list[int]) -> torch.Tensor:
    """The model's own uncached forward over the whole sequence -> logits (n, vocab_size)."""
    idx = torch.tensor([ids])
    with torch.no_grad():
        if isinstance(lm, LyceumCausalLM):
            out = lm.model(idx)
        else:
            assert isinstance(lm, HFCausalLM)
            out = lm.model(input_ids=idx, use_cache=False).logits
    return out[0, :, : lm.vocab_size].float()


def test_load_detects_the_kind(tiny_lyceum_lm_dir: Path, tiny_hf_gpt2_dir: Path, tmp_path: Path) -> None:
    lyceum, hf = load_causal_lm(tiny_lyceum_lm_dir), load_causal_lm(tiny_hf_gpt2_dir, name="gpt2-tiny")
    assert isinstance(lyceum, LyceumCausalLM) and lyceum.kind == "lyceum-lm"
    assert lyceum.name == tiny_lyceum_lm_dir.name
    assert lyceum.vocab_size == 384 < lyceum.model.cfg.vocab_size  # padded embedding rows are not offered
    assert (lyceum.max_context, lyceum.eos_id) == (96, 0)
    assert isinstance(hf, HFCausalLM) and (hf.kind, hf.name) == ("hf-causal-lm", "gpt2-tiny")
    assert (hf.vocab_size, hf.max_context, hf.eos_id) == (50257, 256, 50256)
    with pytest.raises(ValueError, match="config.json"):
        load_causal_lm(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"kind": "dfm"}))
    with pytest.raises(ValueError, match="neither"):
        load_causal_lm(tmp_path)


def test_incremental_extend_equals_the_full_forward(causal_lm: CausalLM) -> None:
    ids = causal_lm.encode(TEXT + " " + TEXT)[:40]
    ref = full_logits(causal_lm, ids)  # (n, V)
    cache = causal_lm.new_cache()
    got = [causal_lm.extend(cache, ids[:8])]  # a prefill, then one token at a time
    got += [causal_lm.extend(cache, [t]) for t in ids[8:]]
    assert causal_lm.cache_len(cache) == len(ids)
    assert all(g.shape == (causal_lm.vocab_size,) and g.dtype == torch.float32 for g in got)
    torch.testing.assert_close(torch.stack(got), ref[7:], rtol=0, atol=1e-4)
    chunked = causal_lm.new_cache()
    causal_lm.extend(chunked, ids[:10])
    torch.testing.assert_close(causal_lm.extend(chunked, ids[10:]), ref[-1], rtol=0, atol=1e-4)


def test_truncate_then_extend_equals_never_having_had_the_tokens(causal_lm: CausalLM) -> None:
    ids = causal_lm.encode(TEXT + " " + TEXT)[:30]
    detour, after = ids[::-1][:7], ids[20:26]
    undone = causal_lm.new_cache()
    causal_lm.extend(undone, ids[:20])
    causal_lm.extend(undone, detour)
    bytes_before = causal_lm.cache_nbytes(undone)
    assert bytes_before > 0
    causal_lm.truncate(undone, 20)
    assert causal_lm.cache_len(undone) == 20
    fresh = causal_lm.new_cache()
    causal_lm.extend(fresh, ids[:20])
    torch.testing.assert_close(
        causal_lm.extend(undone, after), causal_lm.extend(fresh, after), rtol=0, atol=1e-4
    )
    causal_lm.truncate(undone, 0)  # back to empty, then a new prefill
    torch.testing.assert_close(
        causal_lm.extend(undone, ids[:5]), full_logits(causal_lm, ids[:5])[-1], rtol=0, atol=1e-4
    )
    causal_lm.truncate(undone, 5)  # a no-op
    with pytest.raises(ValueError, match="truncate"):
        causal_lm.truncate(undone, 6)


@pytest.mark.parametrize("text", [TEXT, UNICODE, "  spaces\n\nand\ttabs  ", "end.<|endoftext|>Next"])
def test_text_round_trips_and_token_bytes_join_to_the_text(causal_lm: CausalLM, text: str) -> None:
    ids = causal_lm.encode(text)
    assert causal_lm.decode(ids) == text
    assert b"".join(causal_lm.token_bytes(i) for i in ids) == text.encode("utf-8")


def test_special_token_is_one_token_with_its_text(causal_lm: CausalLM) -> None:
    assert causal_lm.eos_id is not None
    assert causal_lm.encode("<|endoftext|>") == [causal_lm.eos_id]
    assert causal_lm.token_bytes(causal_lm.eos_id) == b"<|endoftext|>"


def test_token_bytes_of_a_partial_utf8_token_are_the_raw_bytes(causal_lm: CausalLM) -> None:
    emoji = "😀".encode()
    ids = causal_lm.encode("😀")
    assert len(ids) > 1  # split across tokens in both vocabularies
    first = causal_lm.token_bytes(ids[0])
    assert emoji.startswith(first) and first != emoji
    with pytest.raises(UnicodeDecodeError):
        first.decode("utf-8")


def test_gpt2_token_bytes_match_gpt2(tiny_hf_gpt2: CausalLM) -> None:
    assert tiny_hf_gpt2.encode("Hello world") == [15496, 995]
    assert tiny_hf_gpt2.encode("😀") == [47249, 222]
    assert [tiny_hf_gpt2.token_bytes(i) for i in (47249, 222)] == [b"\xf0\x9f\x98", b"\x80"]
    assert tiny_hf_gpt2.token_bytes(220) == b" "
    with pytest.raises(ValueError, match="vocabulary"):
        tiny_hf_gpt2.token_bytes(50257)


def test_context_limit(causal_lm: CausalLM) -> None:
    limit = causal_lm.max_context
    ids = (causal_lm.encode(TEXT) * 50)[: limit + 1]
    with pytest.raises(ValueError, match=f"max_context={limit}"):
        causal_lm.extend(causal_lm.new_cache(), ids)
    cache = causal_lm.new_cache()
    causal_lm.extend(cache, ids[:limit])  # exactly full is fine
    with pytest.raises(ValueError, match=f"max_context={limit}"):
        causal_lm.extend(cache, ids[:1])
    assert causal_lm.cache_len(cache) == limit  # the failed step changed nothing
    with pytest.raises(ValueError, match="empty"):
        causal_lm.extend(cache, [])


def test_piece_bytes_for_byte_level_and_sentencepiece_vocabularies() -> None:
    assert piece_bytes("ĠcafÃ©", byte_level=True) == " café".encode()
    assert piece_bytes("ðŁĺ", byte_level=True) == b"\xf0\x9f\x98"
    assert piece_bytes("▁café", byte_level=False) == " café".encode()  # SentencePiece text is not bytes
    assert piece_bytes("<0xE2>", byte_level=False) == b"\xe2"


def test_hf_cache_grows_in_chunks_and_copies_independently(
    tiny_hf_gpt2: CausalLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ChunkedLayer, "chunk", 4)  # grow often: every 4 tokens
    lm = tiny_hf_gpt2
    ids = lm.encode(TEXT + " " + TEXT)[:30]
    ref = full_logits(lm, ids)
    cache = lm.new_cache()
    got = [lm.extend(cache, ids[:3])] + [lm.extend(cache, [t]) for t in ids[3:]]
    torch.testing.assert_close(torch.stack(got), ref[2:], rtol=0, atol=1e-4)
    per_token = 2 * 2 * 64 * 4  # layers x (k, v) x d_model x fp32 bytes
    assert lm.cache_nbytes(cache) == 32 * per_token  # 30 tokens held in 8 chunks
    lm.truncate(cache, 10)
    twin = deepcopy(cache)  # a beam's copy: the two then diverge
    a, b = lm.extend(cache, ids[10:20]), lm.extend(twin, ids[20:25])
    torch.testing.assert_close(a, ref[19], rtol=0, atol=1e-4)
    torch.testing.assert_close(b, full_logits(lm, ids[:10] + ids[20:25])[-1], rtol=0, atol=1e-4)
    torch.testing.assert_close(lm.extend(cache, ids[20:]), ref[-1], rtol=0, atol=1e-4)
