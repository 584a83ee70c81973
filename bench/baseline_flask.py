"""The original design's way of serving, as the baseline: a Flask app running the PyTorch model eagerly per request.

The original ``ai_ml/src/api/emotion_api.py`` started Flask's own server (``app.run``, threaded) and, for each
``POST /text_emotion``, tokenized the text with the BERT tokenizer, ran the PyTorch model under ``torch.no_grad()``
and answered the most likely emotion. This is that server around the same text model the service ships:
the trained checkpoint (``runs/text/model.pt`` + ``train_config.json``) when it exists, else — on a fresh clone —
the same architecture with the encoder's pretrained weights and a random head (speed is what is measured).
Nothing here is a served model: it is built at run time from the checkpoint.

    python -m bench.baseline_flask --port 5000            # serve it
    python -m bench.gateway_load --baseline-only ...       # load it (bench.run starts it itself)
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from bench.common import TEXT_RUN

DEFAULT_LABELS = ["joy", "sadness", "anger", "fear", "surprise"]


def load_model(run_dir: Path = TEXT_RUN):
    """``(model, tokenizer, labels, max_length, origin)``: the PyTorch text model and a Hugging Face tokenizer."""
    import torch
    from transformers import AutoTokenizer

    from training.text import TextEmotionModel, encoder_dir

    checkpoint, meta_path = run_dir / "model.pt", run_dir / "train_config.json"
    if checkpoint.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        labels, max_length = meta["labels"], meta["max_length"]
        model = TextEmotionModel(len(labels), encoder=encoder_dir())  # architecture only; the checkpoint has every weight
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        origin = f"checkpoint {checkpoint}"
    else:
        labels, max_length = DEFAULT_LABELS, 64
        model = TextEmotionModel(len(labels))  # pretrained encoder, random head
        origin = f"pretrained encoder + random head (no checkpoint found at {checkpoint})"
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir()))
    return model, tokenizer, labels, max_length, origin


def create_app(run_dir: Path = TEXT_RUN):
    import torch
    from flask import Flask, jsonify, request

    model, tokenizer, labels, max_length, origin = load_model(run_dir)
    app = Flask("emotion_api")
    app.config["MODEL_ORIGIN"] = origin

    @app.route("/text_emotion", methods=["POST"])
    def text_emotion():
        data = request.get_json()
        text = data.get("text", "") if data else ""
        if not text:
            return jsonify({"error": "No text provided"}), 400
        inputs = tokenizer(text, return_tensors="pt", truncation=True, padding=True, max_length=max_length)
        with torch.no_grad():
            logits = model(inputs["input_ids"], inputs["attention_mask"])
        probabilities = torch.softmax(logits, dim=-1)[0]
        best = int(torch.argmax(probabilities))
        return jsonify(
            {
                "emotion": labels[best],
                "confidence": float(probabilities[best]),
                "scores": {label: float(p) for label, p in zip(labels, probabilities)},
            }
        )

    @app.route("/healthz", methods=["GET"])
    def healthz():
        return jsonify({"status": "ok", "model": origin, "torch_threads": torch.get_num_threads()})

    return app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--run-dir", type=Path, default=TEXT_RUN)
    args = p.parse_args(argv)
    app = create_app(args.run_dir)
    print(f"baseline: {app.config['MODEL_ORIGIN']} (pid {os.getpid()})", flush=True)
    app.run(host=args.host, port=args.port, threaded=True)  # Flask's own server, threaded: as the original ran it


if __name__ == "__main__":
    main()
