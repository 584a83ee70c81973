"""Whisper's log-mel front end as ONNX ops, joined to the served speech graph: the gateway sends 16 kHz samples.

The gateway then only decodes, resamples, trims and cuts the clip into windows of samples
(``gateway.preprocessing.audio.speech_sample_windows``); the 400-point STFT (a strided convolution with the Hann-windowed
DFT basis), the mel projection (a 1×1 convolution: kept out of the INT8 pass, which quantizes MatMuls only), the
log10 with its floor 8 below the peak, the training statistics' normalization and the silence floor after a short
clip's sound all run in Triton, batched with every other window.

One difference from ``whisper_log_mel`` on the whole clip, for clips longer than one window: the floor 8 below the
peak is taken per window, not per clip (a window cannot see the rest of its clip); where the floor binds at all, it
binds in near-silent frames. ``python -m export.speech_front_end`` measures it on every RAVDESS clip.

    python -m export.speech_front_end [--repository model_repository]   # join the front end to the served files
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch

from export.onnx import export_onnx, run, session
from export.repository import FLAVOURS, ModelSpec, read_spec, write_description
from gateway.model_info import TensorSpec
from gateway.preprocessing.audio import WHISPER_N_FFT, FeatureStats, SpeechFeatureConfig, whisper_mel_filters, window_samples

MODEL_NAME = "speech_emotion"
AUDIO_INPUT = "audio"


class WhisperFrontEnd(torch.nn.Module):
    """``(windows, window_samples(config))`` samples and ``(windows, 1)`` frames of sound → the model's normalized
    ``(windows, window_frames, 80)`` features, as ``whisper_log_mel`` → ``FeatureStats.normalize`` → ``speech_windows``."""

    def __init__(self, config: SpeechFeatureConfig, stats: FeatureStats):
        super().__init__()
        import scipy.signal

        n = np.arange(WHISPER_N_FFT)
        bins = np.arange(WHISPER_N_FFT // 2 + 1)[:, None]
        window = scipy.signal.get_window("hann", WHISPER_N_FFT, fftbins=True)
        angle = 2 * np.pi * bins * n / WHISPER_N_FFT
        basis = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window])[:, None, :]
        self.bins, self.hop = len(bins), config.hop_length
        self.register_buffer("basis", torch.from_numpy(basis.astype(np.float32)))
        self.register_buffer("mel", torch.from_numpy(whisper_mel_filters(config.sample_rate)[:, :, None]))
        self.register_buffer("mean", torch.from_numpy(stats.mean)[None, :, None])
        self.register_buffer("std", torch.from_numpy(stats.std)[None, :, None])

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spectrum = torch.nn.functional.conv1d(audio.unsqueeze(1), self.basis, stride=self.hop)
        power = spectrum[:, : self.bins] ** 2 + spectrum[:, self.bins :] ** 2
        log_mel = torch.log(torch.clamp(torch.nn.functional.conv1d(power, self.mel), min=1e-10)) / math.log(10.0)
        sound = (torch.arange(log_mel.shape[2], device=audio.device)[None, :] < lengths).unsqueeze(1)
        peak = torch.where(sound, log_mel, torch.full_like(log_mel, -1e9)).amax(dim=(1, 2), keepdim=True)
        features = ((torch.maximum(log_mel, peak - 8.0) + 4.0) / 4.0 - self.mean) / self.std
        floor = torch.where(sound, features, torch.full_like(features, -1e9)).amax(dim=(1, 2), keepdim=True) - 2.0
        return torch.where(sound, features, floor).transpose(1, 2), lengths


def export_front_end(config: SpeechFeatureConfig, stats: FeatureStats, path: Path) -> Path:
    example = {AUDIO_INPUT: torch.zeros(2, window_samples(config)), "lengths": torch.full((2, 1), config.window_frames, dtype=torch.int64)}
    axes = {AUDIO_INPUT: {0: "batch"}, "lengths": {0: "batch"}, "features": {0: "batch"}, "lengths_out": {0: "batch"}}
    return export_onnx(WhisperFrontEnd(config, stats).eval(), example, ["features", "lengths_out"], axes, path)


def join_front_end(front_end: Path, model: Path, dst: Path) -> Path:
    """One graph: the front end's ``features`` (and ``lengths``, passed through) feed the model's inputs."""
    head = onnx.compose.add_prefix(onnx.load(str(front_end)), "front_end/", rename_inputs=False)
    body = onnx.load(str(model))
    _sort_nodes(body.graph)
    head.ir_version = body.ir_version
    joined = onnx.compose.merge_models(head, body, io_map=[("front_end/features", "features"), ("front_end/lengths_out", "lengths")])
    onnx.save(joined, str(dst))
    return dst


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Topological order (the FP16 converter appends its input casts after their readers; the checker wants order)."""
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [all(i in known for i in n.input) for n in pending]
        if not any(ready):
            raise ValueError("the joined graph has a cycle or a missing input")
        for node, go in zip(pending, ready, strict=True):
            if go:
                known.update(node.output)
                ordered.append(node)
        pending = [n for n, go in zip(pending, ready, strict=True) if not go]
    del graph.node[:]
    graph.node.extend(ordered)


def with_audio_input(spec: ModelSpec, config: SpeechFeatureConfig) -> ModelSpec:
    """The speech model's description once the front end is joined: sample windows in, the rest as it was."""
    audio = TensorSpec(AUDIO_INPUT, "float32", [window_samples(config)])
    return replace(
        spec,
        inputs=[audio, *[t for t in spec.inputs if t.name != "features"]],
        warmup_dims={AUDIO_INPUT: audio.dims, "lengths": [1]},
        trt_max_dims={AUDIO_INPUT: audio.dims, "lengths": [1]},
        preprocessing={**spec.preprocessing, "input": AUDIO_INPUT},
    )


# --------------------------------------------------------------------------------------------------- the served files


def _long_clips(clips: list[Path], count: int, per_clip: int = 4) -> list[bytes]:
    """Clips of 10–15 s with pauses, where the per-window floor can differ: ``per_clip`` consecutive RAVDESS files
    (same actor, same emotion) joined."""
    import io

    import soundfile as sf

    out = []
    for start in range(0, min(len(clips), count * per_clip * 2), per_clip * 2):
        joined = np.concatenate([sf.read(c, dtype="float32")[0] for c in clips[start : start + per_clip]])
        buffer = io.BytesIO()
        sf.write(buffer, joined, 16000, format="WAV", subtype="PCM_16")
        out.append(buffer.getvalue())
    return out


def _agreement(before: Path, after: Path, config: SpeechFeatureConfig, stats: FeatureStats, data_dir: Path, temperature: float) -> dict:
    """The joined graph on sample windows against the features graph on ``prepare_speech``'s windows: every RAVDESS
    clip, and long clips joined from them."""
    from gateway.postprocessing import calibrate
    from gateway.preprocessing.audio import prepare_speech, prepare_speech_samples

    old, new = session(before), session(after)
    files = sorted(data_dir.glob("Actor_*/*.*"))

    def compare(clips: list[bytes]) -> dict:
        diffs, same, windows, seconds = [], 0, 0, {"features": 0.0, "samples": 0.0}
        for data in clips:
            started = time.process_time()
            features = prepare_speech(data, config, stats)
            seconds["features"] += time.process_time() - started
            started = time.process_time()
            samples = prepare_speech_samples(data, config)
            seconds["samples"] += time.process_time() - started
            a = calibrate(run(old, {"features": features.windows, "lengths": features.lengths}), temperature).mean(0)
            b = calibrate(run(new, {AUDIO_INPUT: samples.windows, "lengths": samples.lengths}), temperature).mean(0)
            diffs.append(float(np.abs(a - b).max()))
            same += int(a.argmax() == b.argmax())
            windows += len(samples.windows)
        diffs = np.asarray(diffs)
        return {
            "clips": len(clips),
            "windows": windows,
            "top1_agreement": round(same / len(clips), 4),
            "max_abs_diff_clip_probability": float(f"{diffs.max():.3g}"),
            "p99_abs_diff_clip_probability": float(f"{np.quantile(diffs, 0.99):.3g}"),
            "cpu_ms_per_clip_preprocessing_single_thread": {k: round(1000 * v / len(clips), 2) for k, v in seconds.items()},
        }

    return {"ravdess_clips": compare([f.read_bytes() for f in files]), "long_clips_4_joined": compare(_long_clips(files, 90))}


def join_served(repository: Path, data_dir: Path) -> dict:
    """Join the front end to both flavours' speech graphs (those that still take features), re-render their configs."""
    model_dir = repository / "python" / MODEL_NAME
    meta = json.loads((model_dir / "model.json").read_text())
    if meta["inputs"][0]["name"] == AUDIO_INPUT:
        raise SystemExit(f"{model_dir} already takes {AUDIO_INPUT}")
    config = SpeechFeatureConfig.from_dict(meta["preprocessing"]["features"])
    stats = FeatureStats.from_json(model_dir / meta["preprocessing"]["feature_stats"])
    work = Path("runs") / "speech_front_end"
    work.mkdir(parents=True, exist_ok=True)
    front_end = export_front_end(config, stats, work / "front_end.onnx")
    for flavour in FLAVOURS:
        served = repository / flavour / MODEL_NAME / "1" / "model.onnx"
        kept = work / f"{flavour}_features.onnx"
        kept.write_bytes(served.read_bytes())
        join_front_end(front_end, kept, served)
    spec = with_audio_input(read_spec(repository, MODEL_NAME), config)
    for flavour in FLAVOURS:
        write_description(repository / flavour / MODEL_NAME, spec, flavour)
    return {
        "command": "python -m export.speech_front_end",
        "inputs": [t.name for t in spec.inputs],
        "agreement_with_the_features_graph": _agreement(
            work / "python_features.onnx",
            repository / "python" / MODEL_NAME / "1" / "model.onnx",
            config,
            stats,
            data_dir,
            meta.get("calibration", {}).get("temperature", 1.0),
        ),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data/ravdess"))
    args = p.parse_args(argv)
    result = join_served(args.repository, args.data_dir)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
