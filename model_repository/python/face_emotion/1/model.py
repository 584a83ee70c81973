"""Triton python-backend model: runs the ``model.onnx`` beside it in ONNX Runtime.

Copied by ``export.repository`` into ``<model>/1/model.py`` of the ``python`` flavour, for the tritonserver that the
nvidia-pytriton wheel ships (python backend only). It parses its config in ``initialize`` and answers each batch of
requests in ``execute`` with ONE session run, so Triton's dynamic batching turns into real batched inference.
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
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [(t["name"], pb_utils.triton_string_to_numpy(t["data_type"])) for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]

    def execute(self, requests):
        try:
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

    def finalize(self):
        self.session = None
