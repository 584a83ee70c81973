"""The ``onnxruntime_cpu`` Triton backend: runs a model folder's ``1/model.onnx`` in ONNX Runtime on CPU.

A Python-based backend (Triton's python_backend): the launcher (``emotune.triton_server``) puts this one file at
``<backend-directory>/onnxruntime_cpu/model.py`` and every python-flavour model says ``backend: "onnxruntime_cpu"``,
so one file serves every model and nothing is copied into the repository. The tritonserver that the
nvidia-pytriton wheel ships has only the python backend; the GPU image serves the same ``.onnx`` natively.

Every ONNX Runtime option is a config parameter (``export.repository.render_config`` writes them all), so a
benchmark variant edits its ``config.pbtxt``, never this file:

- ``intra_op_threads``, ``inter_op_threads``, ``graph_optimization_level`` (an ``ort.GraphOptimizationLevel`` name),
  ``disabled_optimizers`` (comma-separated; see gateway/inference/onnx_session.py);
- every key starting with ``session.`` is an ONNX Runtime session config entry, passed as is
  (``session.intra_op.allow_spinning``: idle threads sleep instead of spinning on the shared cores);
- ``length_input`` and ``length_group_slack_tokens``: length-grouped runs (below); an empty ``length_input`` turns them off,
  a slack of -1 runs every row alone at its own length (a dynamically quantized graph then answers each row as if alone).

Token inputs are batched ragged: Triton's dynamic batcher only merges requests of equal shape and stops at the
first request of another shape, so with texts of mixed widths it formed batches of 1.5 on average. With
``allow_ragged_batch`` every queued request joins the batch; here its rows are sorted by their real length (the
nonzero count of ``length_input``) and run in groups of similar length, each cut to its own longest row: padding
everything to the widest would waste most of the compute on short texts.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

REQUIRED = ("intra_op_threads", "inter_op_threads", "graph_optimization_level", "disabled_optimizers", "length_input", "length_group_slack_tokens")


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        missing = [k for k in REQUIRED if k not in params]
        if missing:
            raise ValueError(f"{config['name']}: config.pbtxt lacks parameters {', '.join(missing)} (export.repository writes them)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params["intra_op_threads"])
        options.inter_op_num_threads = int(params["inter_op_threads"])
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, params["graph_optimization_level"])
        for key, value in sorted(params.items()):
            if key.startswith("session."):
                options.add_session_config_entry(key, value)
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        disabled = [name for name in params["disabled_optimizers"].split(",") if name]
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
        self.inputs = [(t["name"], pb_utils.triton_string_to_numpy(t["data_type"])) for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        self.length_input = params["length_input"] or None
        if self.length_input is not None and self.length_input not in {name for name, _ in self.inputs}:
            raise ValueError(f"{config['name']}: length_input {self.length_input!r} is not an input")
        self.group_slack = int(params["length_group_slack_tokens"])

    def execute(self, requests):
        try:
            if self.length_input is not None:
                results, sizes = self._run_length_grouped(requests)
            else:
                feeds, sizes = self._gather(requests)
                results = self.session.run(self.outputs, feeds)
        except Exception as exc:  # one bad batch must not take the model down: every request gets the error
            error = pb_utils.TritonError(f"inference failed: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses, start = [], 0
        for size in sizes:
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(out[start : start + size])) for name, out in zip(self.outputs, results, strict=True)
            ]
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
            sizes.append(arrays[self.length_input][-1].shape[0])
        rows = [(r, k) for r, size in enumerate(sizes) for k in range(size)]
        masks = arrays[self.length_input]
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
            for dst, out in zip(outputs, results, strict=True):
                dst[group] = out
            start = stop
        return outputs, sizes

    def finalize(self):
        self.session = None
