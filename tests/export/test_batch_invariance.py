"""Same input, same answer: with per-row activation scales a sentence's INT8 probabilities do not depend on the
rows or padding that share its batch (issue 22); per-tensor dynamic quantization's do."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """A small random BERT + the text head, exported and quantized the way export/text.py does it."""
    from transformers import BertConfig

    from export.onnx import export_onnx
    from export.quantize import optimize_transformer, per_row_activations, quantize_int8
    from export.text import _Probabilities
    from training.text import TextEmotionModel

    work = tmp_path_factory.mktemp("batch_invariance")
    BertConfig(
        vocab_size=500, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256, max_position_embeddings=64
    ).save_pretrained(work / "encoder")
    torch.manual_seed(0)
    model = _Probabilities(TextEmotionModel(5, encoder=work / "encoder")).eval()
    example = {"input_ids": torch.ones(2, 8, dtype=torch.int64), "attention_mask": torch.ones(2, 8, dtype=torch.int64)}
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}, "probabilities": {0: "batch"}}
    fp32 = export_onnx(model, example, ["probabilities"], axes, work / "fp32.onnx")
    optimized = optimize_transformer(fp32, work / "optimized.onnx", 4, 64, skip_layer_norm=False)
    per_tensor = quantize_int8(optimized, work / "int8.onnx")
    return {"fp32": optimized, "per_tensor": per_tensor, "per_row": per_row_activations(per_tensor, work / "int8_per_row.onnx")}


def _rows(seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 500, int(n)) for n in (5, 9, 12, 17, 23, 30)]


def _feeds(rows: list[np.ndarray], width: int) -> dict[str, np.ndarray]:
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, 1
    return {"input_ids": ids, "attention_mask": mask}


def _alone_and_batched(path) -> tuple[np.ndarray, np.ndarray]:
    from export.onnx import run, session

    sess = session(path, threads=1)
    rows = _rows()
    alone = np.concatenate([run(sess, _feeds([r], len(r))) for r in rows])
    batched = run(sess, _feeds(rows, 40))  # one batch, padded past its longest row
    return alone, batched


def test_per_row_graph_has_no_per_tensor_quantization(graphs):
    import onnx

    ops = {n.op_type for n in onnx.load(str(graphs["per_row"])).graph.node}
    assert not ops & {"DynamicQuantizeLinear", "QAttention", "DynamicQuantizeMatMul"}
    assert {"MatMulIntegerToFloat", "MultiHeadAttention", "QuantizeLinear"} <= ops


def test_per_row_answers_do_not_move_with_the_batch(graphs):
    alone, batched = _alone_and_batched(graphs["per_row"])
    np.testing.assert_array_equal(alone, batched)  # bitwise, padding and neighbours included


def test_per_tensor_answers_move_with_the_batch(graphs):
    """The problem the rewrite removes, on the same graph before it."""
    alone, batched = _alone_and_batched(graphs["per_tensor"])
    assert np.abs(alone - batched).max() > 1e-5


def test_per_row_stays_close_to_fp32(graphs):
    from export.onnx import run, session

    feeds = _feeds(_rows(2), 32)
    fp32, per_row = run(session(graphs["fp32"]), feeds), run(session(graphs["per_row"]), feeds)
    assert np.abs(fp32 - per_row).max() < 0.02
