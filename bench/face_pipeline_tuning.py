"""Face pipeline settings chosen on validation data, never on the benchmark's own scenes or FER2013 val.

Validation (issue 19): scenes built exactly as ``bench.face_detection`` builds its own but from FER2013 *train* faces
and another seed; tight crops and pipeline accuracy on a sample of FER2013 train files that are not pixel-identical to
any val file (the classifier was trained on them, so its accuracy there is high: only the gap between ``detect=false``
and detection compares); photos without a face: scikit-image's, scikit-learn's and Matplotlib's no-face pictures whole
and random crops of them, half shrunk to 48×48 like a dataset upload, and the 100 non-face patches of scikit-image's
LFW subset at 48 and 120 px (their share with a face found must stay where it is: the 422 stays for them).
Each candidate is the served settings with a few overrides, through the served ONNX models in process (one thread).

    python -m bench.face_pipeline_tuning [--quick] [--out bench/report] [--no-face-draws]
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import cv2
import numpy as np

from bench.common import REPOSITORY, SHARED_DATA, machine, step_parser, write_json
from bench.face_detection import NO_FACE_PICTURES, BlazeFace, hard_scenes, pipeline_accuracy, score, skimage_dir, tight_crops
from gateway.preprocessing.image import load_image_file

SCENE_SEED, SAMPLE_SEED = 19, 1919  # the benchmark's scenes use seed 0 and val faces
BEFORE = {  # the settings served when issue 19's tuning started
    "score_threshold": 0.55,
    "tile_score_threshold": 0.55,
    "verify_below": 0.8,
    "verify_threshold": 0.7,
    "verify_scale": 2.5,
    "verify_max_face": 0.25,
    "face_margin": 0.1,
    "face_shift_y": -0.075,
    "whole_frame_above": 0.0,
    "rescue_threshold": 1.0,
}
VERIFY = {"verify_max_face": 0.6, "verify_threshold": 0.68}
FRAMED = {**VERIFY, "whole_frame_above": 0.8, "whole_frame_blend": 0.5}
FRAMED_NAME = "verify under 0.6 at 0.68 + whole frame ≥ 0.8 averaged with the crop"
SKIPPING = {**FRAMED, "skip_tiles_face": 0.5}
SKIPPING_NAME = "verify under 0.6 at 0.68 + whole frame ≥ 0.8 averaged + tiles skipped only after a face of ≥ 0.5 of the long side"
TURNED = {"rescue_pads": [0.25, 0.5], "rescue_angles": [0, -15, 15, -30, 30], "rescue_min_face": 0.5}
SHIPPED = {**SKIPPING, **TURNED, "rescue_threshold": 0.76}  # export/face_detection.py's PIPELINE
SHIPPED_NAME = "that + second look turned by 0°, ±15°, ±30° at pads 0.25 and 0.5, at 0.76, face ≥ 0.5 of the long side (shipped)"
# Each candidate is BEFORE with its overrides.
CANDIDATES = [
    ("served before (issue 19 start)", {}),
    ("verify large candidates too (under 0.6 of the long side), at 0.7", {"verify_max_face": 0.6}),
    ("verify under 0.6 of the long side, at 0.67", {"verify_max_face": 0.6, "verify_threshold": 0.67}),
    ("verify under 0.6 of the long side, at 0.68", VERIFY),
    ("verify under 0.6 at 0.68 + the whole frame alone when the crop covers ≥ 0.8 of the long side", {**VERIFY, "whole_frame_above": 0.8}),
    (FRAMED_NAME, FRAMED),
    (
        "that + second look: pad 0.5, at 0.45, face ≥ 0.8 of the long side",
        {**FRAMED, "rescue_threshold": 0.45, "rescue_pads": [0.5], "rescue_min_face": 0.8},
    ),
    ("that + second look: pad 0.25, at 0.4, face ≥ 0.7", {**FRAMED, "rescue_threshold": 0.4, "rescue_pads": [0.25], "rescue_min_face": 0.7}),
    ("that + tiles skipped only after a face of ≥ 0.4 of the long side (not ≥ 0.25)", {**FRAMED, "skip_tiles_face": 0.4}),
    (SKIPPING_NAME, SKIPPING),
    (
        "that + second look turned by 0°, ±15°, ±30° at pads 0.25 and 0.5, at 0.7, face ≥ 0.5 of the long side",
        {**SKIPPING, **TURNED, "rescue_threshold": 0.7},
    ),
    (SHIPPED_NAME, SHIPPED),
]


def validation_scenes(n: int) -> list:
    """The benchmark's scene builder over FER2013 train faces (it reads ``<data>/fer2013/val``: a link stands in)."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "fer2013").mkdir()
        (Path(folder) / "fer2013" / "val").symlink_to(SHARED_DATA / "fer2013" / "train")
        return hard_scenes(n, seed=SCENE_SEED, data=Path(folder))


def validation_files(n: int) -> list[Path]:
    """``n`` FER2013 train files, none pixel-identical to a val file."""
    fer = SHARED_DATA / "fer2013"

    def digest(path: Path) -> str:
        return hashlib.md5(load_image_file(path).tobytes()).hexdigest()

    val = {digest(p) for p in (fer / "val").glob("*/*.jpg")}
    train = sorted((fer / "train").glob("*/*.jpg"))
    order = np.random.default_rng(SAMPLE_SEED).permutation(len(train))
    picked = []
    for i in order:
        if digest(train[i]) not in val:
            picked.append(train[i])
            if len(picked) == n:
                break
    return picked


def whole_and_cropped(paths: list[Path], crops_each: int, rng: np.random.Generator, smallest: float) -> list[np.ndarray]:
    """Each readable picture whole, then ``crops_each`` random square crops of it (at least ``smallest`` of its short
    side), half of them shrunk to 48×48 like a dataset upload."""
    pictures = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            continue
        pictures.append(image)
        height, width = image.shape
        for _ in range(crops_each):
            side = int(rng.uniform(smallest, 1.0) * min(height, width))
            y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
            crop = image[y : y + side, x : x + side]
            pictures.append(cv2.resize(crop, (48, 48), interpolation=cv2.INTER_AREA) if rng.random() < 0.5 else crop)
    return pictures


def no_face_pictures(crops_each: int, seed: int = SAMPLE_SEED) -> list[np.ndarray]:
    return whole_and_cropped([skimage_dir() / name for name in NO_FACE_PICTURES], crops_each, np.random.default_rng(seed), 0.15)


def more_no_face_pictures(crops_each: int, seed: int = SAMPLE_SEED + 1) -> list[np.ndarray]:
    """Pictures without a face from other packages, whole and cropped, and LFW's non-face patches at two sizes."""
    import importlib.util

    rng, pictures = np.random.default_rng(seed), []
    for patch in np.load(skimage_dir() / "lfw_subset.npy")[100:]:
        patch = (patch * 255).astype(np.uint8)
        pictures += [cv2.resize(patch, (side, side), interpolation=cv2.INTER_CUBIC) for side in (48, 120)]
    paths = [skimage_dir() / name for name in ("logo.png", "microaneurysms.png", "phantom.png", "motorcycle_right.png", "chessboard_RGB.png")]
    for package, folder, names in (
        ("sklearn", "datasets/images", ("china.jpg", "flower.jpg")),
        ("matplotlib", "mpl-data/sample_data", ("logo2.png", "Minduka_Present_Blue_Pack.png")),
    ):
        spec = importlib.util.find_spec(package)  # a package not installed gives no pictures
        paths += [Path(spec.submodule_search_locations[0]) / folder / name for name in names] if spec else []
    return pictures + whole_and_cropped(paths, crops_each, rng, 0.1)


SECOND_LOOK_THRESHOLDS = (0.7, 0.76, 0.8)


def second_look_on_no_face(negatives: list[np.ndarray]) -> dict:
    """The served second look on the pictures without a face where the first look found none: its best score for a
    large box, and how many of them get a face at each of ``SECOND_LOOK_THRESHOLDS``."""
    first, second = BlazeFace(**{**BEFORE, **SKIPPING}), BlazeFace(**{**BEFORE, **SHIPPED, "rescue_threshold": 0.05})
    nothing = [(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))]
    best = [float(second.pipeline._rescue([image], nothing)[0][1].max(initial=0.0)) for image in negatives if not len(first.detect(image))]
    return {
        "pictures": len(negatives),
        "first_look_found_none": len(best),
        "best_score": round(max(best, default=0.0), 3),
        "with_a_face_at": {str(t): sum(b >= t for b in best) for t in SECOND_LOOK_THRESHOLDS},
    }


def no_face_draws(negatives: list[np.ndarray]) -> list[dict]:
    """The second look on the pictures the table uses, then on four other draws of their crops."""
    others = [no_face_pictures(15, seed=SAMPLE_SEED + k) + more_no_face_pictures(25, seed=SAMPLE_SEED + 10 + k) for k in (2, 3, 4, 5)]
    return [second_look_on_no_face(draw) for draw in [negatives, *others]]


def evaluate(overrides: dict, scenes: list, files: list[Path], negatives: list[np.ndarray], labels: list[str]) -> dict:
    blaze = BlazeFace(**{**BEFORE, **overrides})
    row = score(blaze, scenes)
    row["tight_crops"] = tight_crops(blaze, files)
    row["accuracy"] = pipeline_accuracy(blaze, files, labels, set())
    with_face = sum(len(blaze.detect(image)) > 0 for image in negatives)
    row["no_face_pictures"] = {"pictures": len(negatives), "with_a_face": with_face, "share": round(with_face / max(1, len(negatives)), 4)}
    return row


def markdown(data: dict) -> str:
    lines = [
        "# Face pipeline settings on validation data (issue 19)",
        "",
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        f"{data['scenes']} scenes ({data['faces']} faces, seed {SCENE_SEED}, FER2013 train faces); {data['files']} FER2013 train files "
        f"not in val; {data['negatives']} pictures without a face. Command: `python -m bench.face_pipeline_tuning`.",
        "",
        "| candidate | recall | false positives / image | CPU ms / image | tight crops with a face | accuracy detect=false | "
        "accuracy with detection (no face) | no-face pictures with a face |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in data["rows"].items():
        acc = row["accuracy"]
        lines.append(
            f"| {name} | {row['recall']} | {row['false_positives_per_image']} | {row['cpu_ms_per_image']} | {row['tight_crops']['share']} | "
            f"{acc['detect_false_accuracy']} | {acc['detect_true_accuracy']} ({acc['detect_true_no_face']}) | "
            f"{row['no_face_pictures']['with_a_face']}/{row['no_face_pictures']['pictures']} |"
        )
    before, shipped = data["rows"].get(CANDIDATES[0][0]), data["rows"].get(SHIPPED_NAME)
    draws = " + ".join(str(d["first_look_found_none"]) for d in data.get("no_face_draws", []))

    def at(threshold: str) -> str:
        return " + ".join(str(d["with_a_face_at"][threshold]) for d in data.get("no_face_draws", []))

    if before and shipped:
        lines += [
            "",
            f"Shipped: {SHIPPED_NAME}. Against the settings before: recall {before['recall']} → {shipped['recall']}, false positives per "
            f"image {before['false_positives_per_image']} → {shipped['false_positives_per_image']}, CPU ms per image "
            f"{before['cpu_ms_per_image']} → {shipped['cpu_ms_per_image']} (machine shared), tight crops {before['tight_crops']['share']} → "
            f"{shipped['tight_crops']['share']}, accuracy with detection {before['accuracy']['detect_true_accuracy']} → "
            f"{shipped['accuracy']['detect_true_accuracy']} (detect=false {shipped['accuracy']['detect_false_accuracy']}), no-face pictures "
            f"with a face {before['no_face_pictures']['with_a_face']} → {shipped['no_face_pictures']['with_a_face']}. Verifying the large "
            "candidates removes false positives (most were boxes over a quarter of the frame scoring just over the whole view's "
            "threshold); verifying at 0.68 instead of 0.7 buys back more recall than it costs (at 0.67 the false positives can pass "
            "0.05 per image); a face filling the frame scores best "
            "on the whole frame, the framing the classifier was trained on (alone and averaged with the crop tie here; averaged is "
            "served, chosen on an earlier exploratory run at the old detector settings that this script does not repeat; it costs one "
            "more 48×48 row of face_emotion per frame-filling face). The second look (rows with it) finds more tight crops, at pad 0.25 "
            "and 0.4 nearly closing the accuracy gap, but also faces in crops of photos without one (coffee, a colour chart, the "
            "cat), so it is not served upright and low: the 422 for a photo without a face matters more than a few tight crops. "
            "Turned by ±15° and ±30°, the second look finds tilted tight crops, profiles and close-ups the upright views missed. "
            f"Its threshold, on pictures without a face the first look found none in ({draws}; these pictures first, then four "
            f"other draws of their crops): at 0.7 {at('0.7')} get a face, at 0.76 {at('0.76')}, at 0.8 {at('0.8')}; best scores "
            f"{[d['best_score'] for d in data.get('no_face_draws', [])]}. 0.76 is served, the cautious side: on these draws 0.7 "
            "gives no more pictures a face and finds more tight crops (the rows above), but an exploratory script (not kept: "
            "OpenCV's rotation, another draw of the other packages' crops) saw one more picture get a face at 0.7 (best 0.733) and "
            "none at 0.76, and found about half of 0.76's faces at 0.8. "
            "Searching the tiles unless the whole view found a face of at least half the long side (not a quarter) came from a group "
            "photo among the real photos, where one large false face in the whole view hid four small faces; on these scenes it "
            "finds as many faces or more at the same false positives, tight crops and accuracy.",
        ]
    return "\n".join(lines) + "\n"


def run(quick: bool, out: Path, only: str | None = None) -> dict:
    import json

    cv2.setNumThreads(1)
    scenes = validation_scenes(10 if quick else 300)
    files = validation_files(60 if quick else 3000)
    negatives = no_face_pictures(2 if quick else 15) + more_no_face_pictures(2 if quick else 25)[:: 40 if quick else 1]
    labels = json.loads((REPOSITORY / "face_emotion" / "model.json").read_text())["labels"]
    rows = {}
    for name, overrides in CANDIDATES[:2] if quick else [c for c in CANDIDATES if only is None or only in c[0]]:
        rows[name] = evaluate(overrides, scenes, files, negatives, labels)
        print(f"{name}: {rows[name]}", flush=True)
    data = {
        "machine": machine(),
        "scenes": len(scenes),
        "faces": sum(len(scene.faces) for scene in scenes),
        "files": len(files),
        "negatives": len(negatives),
        "candidates": dict(CANDIDATES),
        "rows": rows,
    }
    if not quick:
        data["no_face_draws"] = no_face_draws(negatives)
    write_json(out / "face_pipeline_tuning.json", data)
    (out / "face_pipeline_tuning.md").write_text(markdown(data))
    return data


def redraw(out: Path) -> dict:
    """Only the second look on pictures without a face, into the table already written (a few minutes, not half an hour)."""
    import json

    cv2.setNumThreads(1)
    data = json.loads((out / "face_pipeline_tuning.json").read_text())
    data["no_face_draws"] = no_face_draws(no_face_pictures(15) + more_no_face_pictures(25))
    write_json(out / "face_pipeline_tuning.json", data)
    (out / "face_pipeline_tuning.md").write_text(markdown(data))
    return data


def main(argv: list[str] | None = None) -> None:
    p = step_parser(__doc__)
    p.add_argument("--only", help="run only the candidates whose name contains this")
    p.add_argument("--no-face-draws", action="store_true", help="only re-measure the second look on pictures without a face")
    args = p.parse_args(argv)
    if args.no_face_draws:
        redraw(args.out)
    else:
        run(args.quick, args.out, args.only)


if __name__ == "__main__":
    main()
