"""Triton python-backend model: runs the ``model.onnx`` beside it in ONNX Runtime.

Copied by ``export.repository`` into ``<model>/1/model.py`` of the ``python`` flavour, for the tritonserver that the
nvidia-pytriton wheel ships (python backend only). It parses its config in ``initialize`` and answers each batch of
requests in ``execute`` with batched session runs, so Triton's dynamic batching turns into real batched inference.

Token inputs (a model with an ``attention_mask`` input) are batched ragged: Triton's dynamic batcher only merges
requests of equal shape and stops at the first request of another shape, so with texts of mixed widths it formed
batches of 1.5 on average. With ``allow_ragged_batch`` on the inputs every queued request joins the batch, and
here the rows are sorted by their real length (the mask) and run in groups of similar length, each cut to its own
longest row: padding everything to the widest would waste most of the compute on short texts.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle intra-op threads sleep instead of spinning: the cores are shared with the gateway and the stub, and
        # spinning doubled the CPU per inference here (bench/report, tuning).
        options.add_session_config_entry("session.intra_op.allow_spinning", params.get("allow_spinning", "0"))
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        disabled = [name for name in params.get("disabled_optimizers", "").split(",") if name]  # see gateway/inference/onnx_session.py
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
        self.inputs = [(t["name"], pb_utils.triton_string_to_numpy(t["data_type"])) for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        names = [name for name, _ in self.inputs]
        self.length_mask = "attention_mask" if "attention_mask" in names else None
        self.group_slack = int(params.get("length_group_slack_tokens", "8"))

    def execute(self, requests):
        try:
            if self.length_mask is not None:
                results, sizes = self._run_length_grouped(requests)
            else:
                feeds, sizes = self._gather(requests)
                results = self.session.run(self.outputs, feeds)
        except Exception as exc:  # one bad batch must not take the model down: every request gets the error
            error = pb_utils.TritonError(f"inference failed: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses, start = [], 0
        for size in sizes:
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(out[start : start + size])) for name, out in zip(self.outputs, results)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def _gather(self, requests):
        """Concatenate every request along the batch axis, zero-padding variable axes to the widest request."""
        per_input = {name: [] for name, _ in self.inputs}
        sizes = []
        for request in requests:
            for name, dtype in self.inputs:
                per_input[name].append(pb_utils.get_input_tensor_by_name(request, name).as_numpy().astype(dtype, copy=False))
            sizes.append(per_input[self.inputs[0][0]][-1].shape[0])
        feeds = {}
        for name, arrays in per_input.items():
            if len(arrays) == 1:
                feeds[name] = arrays[0]
                continue
            shape = np.max([a.shape for a in arrays], axis=0)
            shape[0] = sum(sizes)
            out = np.zeros(shape, dtype=arrays[0].dtype)
            start = 0
            for a in arrays:
                out[(slice(start, start + a.shape[0]),) + tuple(slice(0, d) for d in a.shape[1:])] = a
                start += a.shape[0]
            feeds[name] = out
        return feeds, sizes

    def _run_length_grouped(self, requests):
        """Every request's rows, sorted by real length, run in groups whose lengths differ by at most ``group_slack``."""
        arrays = {name: [] for name, _ in self.inputs}
        sizes = []
        for request in requests:
            for name, dtype in self.inputs:
                arrays[name].append(pb_utils.get_input_tensor_by_name(request, name).as_numpy().astype(dtype, copy=False))
            sizes.append(arrays[self.length_mask][-1].shape[0])
        rows = [(r, k) for r, size in enumerate(sizes) for k in range(size)]
        masks = arrays[self.length_mask]
        lengths = np.array([max(1, int(np.count_nonzero(masks[r][k]))) for r, k in rows])
        order = np.argsort(lengths, kind="stable")
        outputs, start, n = None, 0, len(rows)
        while start < n:
            stop = start + 1
            while stop < n and lengths[order[stop]] <= lengths[order[start]] + self.group_slack:
                stop += 1
            group = order[start:stop]
            width = int(lengths[group].max())
            feeds = {}
            for name, dtype in self.inputs:
                feed = np.zeros((len(group), width), dtype=dtype)
                for j, g in enumerate(group):
                    r, k = rows[g]
                    row = arrays[name][r][k, :width]
                    feed[j, : row.shape[0]] = row
                feeds[name] = feed
            results = self.session.run(self.outputs, feeds)
            if outputs is None:
                outputs = [np.empty((n,) + out.shape[1:], dtype=out.dtype) for out in results]
            for dst, out in zip(outputs, results):
                dst[group] = out
            start = stop
        return outputs, sizes

    def finalize(self):
        self.session = None
