"""``face_pipeline``: one decoded photo in, every face's box and emotion out, inside Triton (a python BLS model).

Copied by ``export.face_detection`` into ``face_pipeline/1/model.py`` of both repository flavours. NumPy only (the
official Triton image has no OpenCV), so the same file runs on the CPU tritonserver and on the GPU image, and the
benchmark imports it to score the detector in process (``FacePipeline`` with ONNX Runtime sessions as its runners).

Per image (uint8 grayscale ``[H, W]``, already decoded, EXIF-rotated and bounded by the gateway):
1. **Views.** The image is letterboxed into a square padded by ``pad`` of its side on every side (so a face that fills
   the frame, a tight crop, looks like a face in a photo to the detector), resized to the detector's input; for each
   further ``grids`` level the square is cut into g×g overlapping tiles (each ``tile_overlap`` × the cell), so small
   faces reach the detector at a size it finds. A tile's detections must score ``tile_score_threshold`` (higher than
   the whole view's ``score_threshold``): more, smaller views mean more chances for a face-like patch; a candidate
   under ``verify_below`` and under ``verify_max_face`` of the long side must be found again in a view centred on it
   (``_verify``; a face filling the frame, a tight crop, is not asked: its re-framed view loses it). The whole
   views of all queued requests go to ``face_detection`` as one batch, then the tiles of the images that need them
   (none when the whole view found a face of at least ``skip_tiles_face`` of the long side) as a second.
2. **Decoding** of BlazeFace's anchor offsets, only for anchors over the score threshold (a few of 896 or 2304), then
   one weighted NMS (MediaPipe's blending) over every view; a box touching a tile's inner edge is dropped (the face is
   whole in a neighbouring tile or a coarser view). An image with no face found gets a second look (``_rescue``): its
   whole view at ``rescue_pads`` and turned by ``rescue_angles``, keeping only a face of at least ``rescue_min_face``
   of the long side at ``rescue_threshold`` (a tilted tight crop; a photo without a face keeps its 422).
3. **Crops.** Each face box grown by ``face_margin`` to a square and moved by ``face_shift_y`` of its height (so the
   crop frames a face as FER2013 does: on FER2013's own files BlazeFace's box is 0.87 of the frame, its centre 0.065
   of the frame low), edge-replicated past the border, resized to the face model's input, normalised like training;
   a face whose crop covers ``whole_frame_above`` of the long side (a tight crop, a close selfie) is also classified
   on the whole frame (``detect=false``'s framing, the one FER2013 files have) and the two answers averaged;
   every face of every request goes to ``face_emotion`` as one batch.
4. Outputs per request: ``boxes`` ``[F, 4]`` (x, y, width, height in the input's pixels, largest first, at most
   ``max_faces``), ``detection_scores`` ``[F]``, ``probabilities`` ``[F, 7]``. F = 0 means no face.
"""

import json

import numpy as np

try:  # OpenCV resizes ~50× faster than the NumPy fallback; the CPU stub's environment has it, the GPU image may not
    import cv2
except ImportError:
    cv2 = None

SHORT_RANGE = {"input_size": 128, "strides": [8, 16, 16, 16], "anchors_per_layer": 2}
FULL_RANGE = {"input_size": 192, "strides": [4], "anchors_per_layer": 1}


def anchors(input_size: int, strides: list[int], anchors_per_layer: int) -> np.ndarray:
    """MediaPipe's SSD anchor centres for BlazeFace (fixed anchor size: only the centres matter), ``[A, 2]`` in 0..1."""
    centres, i = [], 0
    while i < len(strides):
        stride, repeats = strides[i], 0
        while i < len(strides) and strides[i] == stride:
            repeats, i = repeats + anchors_per_layer, i + 1
        cells = -(-input_size // stride)
        y, x = np.mgrid[0:cells, 0:cells]
        grid = np.stack([(x + 0.5) / cells, (y + 0.5) / cells], -1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, repeats, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


def _weights(start: float, length: float, n_out: int, n_in: int, edge: bool) -> tuple[np.ndarray, int, int]:
    """Resampling of the window [start, start + length) of an axis of ``n_in`` pixels to ``n_out`` samples:
    ``(W [n_out, hi - lo], lo, hi)`` over the input pixels ``lo..hi``. Area weights when shrinking, linear when
    growing; outside the image: edge pixels (``edge``) or black."""
    scale = length / n_out
    if scale > 1:
        a = start + scale * np.arange(n_out)
        first, last = int(np.floor(a[0])), int(np.ceil(a[-1] + scale))
        j = np.arange(first, last)
        w = np.clip(np.minimum(a[:, None] + scale, j + 1) - np.maximum(a[:, None], j), 0, None) / scale
    else:
        c = start + scale * (np.arange(n_out) + 0.5) - 0.5
        base = np.floor(c).astype(int)
        first, last = int(base[0]), int(base[-1]) + 2
        j = np.arange(first, last)
        frac = (c - base)[:, None]
        w = np.where(j == base[:, None], 1 - frac, 0) + np.where(j == base[:, None] + 1, frac, 0)
    inside = (j >= 0) & (j < n_in)
    if edge:
        clamped = np.clip(j, 0, n_in - 1)
        lo, hi = int(clamped.min()), int(clamped.max()) + 1
        folded = np.zeros((n_out, hi - lo))
        np.add.at(folded.T, clamped - lo, w.T)
        return folded.astype(np.float32), lo, hi
    if not inside.any():
        return np.zeros((n_out, 1), np.float32), 0, 1
    lo, hi = int(j[inside].min()), int(j[inside].max()) + 1
    return w[:, inside].astype(np.float32), lo, hi


def shrink(image: np.ndarray, k: int) -> np.ndarray:
    """Mean of each k×k block (the last partial blocks dropped): an area resize by an integer factor, O(pixels)."""
    if k <= 1:
        return image
    height, width = (image.shape[0] // k) * k, (image.shape[1] // k) * k
    return image[:height, :width].reshape(height // k, k, width // k, k).mean(axis=(1, 3), dtype=np.float32)


def square_view(image: np.ndarray, x: float, y: float, side: float, size: int, edge: bool = False, shrunk: dict | None = None) -> np.ndarray:
    """The ``side``-pixel square at (x, y) (top-left) of a 2-D image, resized to ``size``×``size`` float32 0..255.
    A view much larger than ``size`` first takes an integer block mean of the image (kept in ``shrunk`` per factor,
    so the views of one image share it); the resampling matrices then touch few pixels."""
    if cv2 is not None:
        return _square_view_cv2(image, x, y, side, size, edge)
    k = max(1, int(side / (2 * size)))
    if k > 1 and min(image.shape) >= 2 * k:
        if shrunk is None:
            shrunk = {}
        if k not in shrunk:
            shrunk[k] = shrink(image, k)
        image, x, y, side = shrunk[k], x / k, y / k, side / k
    height, width = image.shape
    wy, y0, y1 = _weights(y, side, size, height, edge)
    wx, x0, x1 = _weights(x, side, size, width, edge)
    return wy @ image[y0:y1, x0:x1].astype(np.float32) @ wx.T


def _square_view_cv2(image: np.ndarray, x: float, y: float, side: float, size: int, edge: bool) -> np.ndarray:
    height, width = image.shape
    x0, y0, s = int(np.floor(x)), int(np.floor(y)), max(1, int(np.ceil(side)))
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(width, x0 + s), min(height, y0 + s)
    shrinking = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    if edge:
        region = image[min(iy0, height - 1) : max(iy1, iy0 + 1), min(ix0, width - 1) : max(ix1, ix0 + 1)]
        top, left = iy0 - y0, ix0 - x0
        region = cv2.copyMakeBorder(region, top, s - top - region.shape[0], left, s - left - region.shape[1], cv2.BORDER_REPLICATE)
        return cv2.resize(region, (size, size), interpolation=shrinking).astype(np.float32)
    out = np.zeros((size, size), np.float32)
    if ix1 <= ix0 or iy1 <= iy0:
        return out
    scale = size / s
    dx0, dy0 = int(round((ix0 - x0) * scale)), int(round((iy0 - y0) * scale))
    dx1, dy1 = max(dx0 + 1, int(round((ix1 - x0) * scale))), max(dy0 + 1, int(round((iy1 - y0) * scale)))
    dx1, dy1 = min(dx1, size), min(dy1, size)
    out[dy0:dy1, dx0:dx1] = cv2.resize(image[iy0:iy1, ix0:ix1], (dx1 - dx0, dy1 - dy0), interpolation=shrinking)
    return out


def rotated_view(image: np.ndarray, x: float, y: float, side: float, size: int, angle: float) -> np.ndarray:
    """The square of ``square_view`` turned by ``angle`` degrees about its centre (black outside the image): output
    pixel ``q`` shows the square's point ``0.5 + R(angle) (q - 0.5)`` in 0..1 coordinates, so ``unrotate`` maps a
    detection back. The square is first resized to twice ``size`` (area-averaged), then sampled bilinearly."""
    if angle == 0:
        return square_view(image, x, y, side, size)
    base = square_view(image, x, y, side, 2 * size)
    centre = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    qx, qy = np.meshgrid(centre, centre)
    px, py = unrotate(qx, qy, angle)
    sx, sy = (px + 0.5) * 2 * size - 0.5, (py + 0.5) * 2 * size - 0.5
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = sx - x0, sy - y0
    padded = np.pad(base, 1)
    xs, ys = np.clip(x0 + 1, 0, 2 * size + 1), np.clip(y0 + 1, 0, 2 * size + 1)
    xs1, ys1 = np.clip(x0 + 2, 0, 2 * size + 1), np.clip(y0 + 2, 0, 2 * size + 1)
    top = padded[ys, xs] * (1 - fx) + padded[ys, xs1] * fx
    bottom = padded[ys1, xs] * (1 - fx) + padded[ys1, xs1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def unrotate(qx: np.ndarray, qy: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """A point of a rotated view (coordinates about its centre, in units of its side) → the same point of the unturned square."""
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    return cos * qx - sin * qy, sin * qx + cos * qy


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[x0, y0, x1, y1]`` box with each of ``boxes``."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def blend_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted NMS: each kept box is the score-weighted mean of the boxes that overlap it."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    kept_boxes, kept_scores = [], []
    while len(boxes):
        overlap = iou(boxes[0], boxes) > threshold
        weights = scores[overlap][:, None]
        kept_boxes.append((boxes[overlap] * weights).sum(0) / weights.sum())
        kept_scores.append(scores[0])
        boxes, scores = boxes[~overlap], scores[~overlap]
    if not kept_boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    return np.array(kept_boxes, np.float32), np.array(kept_scores, np.float32)


class FacePipeline:
    """The steps above, with the two models as callables: ``detector(float32 [N, 3, S, S] in -1..1) → (regressors
    [N, A, 16], logits [N, A, 1])`` and ``classifier(float32 [N, 1, s, s]) → probabilities [N, 7]``."""

    def __init__(self, detector, classifier, config: dict):
        self.detector, self.classifier = detector, classifier
        self.model = FULL_RANGE if config.get("range", "short") == "full" else SHORT_RANGE
        self.size = self.model["input_size"]
        self.anchors = anchors(**self.model)
        self.grids = list(config.get("grids", [1]))
        self.pad = float(config.get("pad", 0.25))
        self.overlap = float(config.get("tile_overlap", 1.5))
        self.threshold = float(config.get("score_threshold", 0.5))
        self.tile_threshold = float(config.get("tile_score_threshold", self.threshold))
        self.nms_iou = float(config.get("nms_iou", 0.3))
        self.min_side = float(config.get("min_face", 0))
        self.skip_tiles_face = float(config.get("skip_tiles_face", 1.0))
        self.verify_below = float(config.get("verify_below", 0.0))
        self.verify_threshold = float(config.get("verify_threshold", 0.7))
        self.verify_scale = float(config.get("verify_scale", 2.5))
        self.verify_max_face = float(config.get("verify_max_face", self.skip_tiles_face))
        self.rescue_threshold = float(config.get("rescue_threshold", 1.0))
        self.rescue_pads = [float(p) for p in config.get("rescue_pads", [self.pad])]
        self.rescue_angles = [float(a) for a in config.get("rescue_angles", [0])]
        self.rescue_min_face = float(config.get("rescue_min_face", 1.0))
        self.whole_frame_above = float(config.get("whole_frame_above", 0.0))
        self.whole_frame_blend = float(config.get("whole_frame_blend", 0.0))
        self.max_faces = int(config.get("max_faces", 16))
        self.face_size = int(config.get("face_size", 48))
        self.margin = float(config.get("face_margin", 0.1))
        self.shift = float(config.get("face_shift_y", 0.0))
        self.mean, self.std = float(config.get("mean", 0.5)), float(config.get("std", 0.5))

    def views(self, image: np.ndarray, pad: float | None = None) -> list[tuple[float, float, float, bool]]:
        """(x, y, side, is_tile) of every square the detector sees, in image pixels."""
        height, width = image.shape
        side = max(height, width) * (1 + 2 * (self.pad if pad is None else pad))
        x0, y0 = (width - side) / 2, (height - side) / 2
        out = [(x0, y0, side, False)]
        long_side = max(height, width)
        for g in self.grids:
            if g <= 1:
                continue
            tile = min(long_side, long_side / g * self.overlap)
            if tile * 1.0 < self.size:  # the tile would be upscaled: the whole view already sees these faces
                continue
            tx0, ty0 = (width - long_side) / 2, (height - long_side) / 2
            steps = np.linspace(0, long_side - tile, g) if g > 1 else [0.0]
            for sy in steps:
                for sx in steps:
                    x, y = tx0 + sx, ty0 + sy
                    if x + tile <= 0 or y + tile <= 0 or x >= width or y >= height:
                        continue
                    out.append((x, y, tile, True))
        return out

    def _run_views(
        self, images: list[np.ndarray], plans: list[list], threshold: float | None = None, angles: list[float] | None = None
    ) -> list[tuple[list, list]]:
        """Every planned view of every image through the detector in one batch → per image its (boxes, scores) lists.
        ``angles``: per image, the turn of all its views (``rotated_view``); boxes come back unturned."""
        angles = angles or [0.0] * len(images)
        views = []
        for image, plan, angle in zip(images, plans, angles):
            shrunk: dict = {}
            views.extend(
                rotated_view(image, x, y, side, self.size, angle) if angle else square_view(image, x, y, side, self.size, shrunk=shrunk)
                for x, y, side, _ in plan
            )
        found = [([], []) for _ in images]
        if not views:
            return found
        regressors, logits = self.detector(np.repeat((np.stack(views) / 127.5 - 1.0)[:, None], 3, axis=1).astype(np.float32))
        scores = 1 / (1 + np.exp(-np.clip(logits[..., 0], -80, 80)))
        k = 0
        for i, (image, plan, angle) in enumerate(zip(images, plans, angles)):
            height, width = image.shape
            for x, y, side, is_tile in plan:
                limit = threshold if threshold is not None else self.tile_threshold if is_tile else self.threshold
                hit = np.nonzero(scores[k] >= limit)[0]
                if len(hit):
                    reg, centre = regressors[k][hit, :4] / self.size, self.anchors[hit]
                    cx, cy = centre[:, 0] + reg[:, 0], centre[:, 1] + reg[:, 1]
                    if angle:
                        cx, cy = (c + 0.5 for c in unrotate(cx - 0.5, cy - 0.5, angle))
                    half_w, half_h = reg[:, 2] / 2, reg[:, 3] / 2
                    box = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], -1) * side + np.array([x, y, x, y])
                    keep = np.ones(len(hit), bool)
                    if is_tile:
                        eps = 0.01 * side
                        keep &= ((box[:, 0] > x + eps) | (x <= 0)) & ((box[:, 1] > y + eps) | (y <= 0))
                        keep &= ((box[:, 2] < x + side - eps) | (x + side >= width)) & ((box[:, 3] < y + side - eps) | (y + side >= height))
                    found[i][0].append(box[keep])
                    found[i][1].append(scores[k][hit][keep])
                k += 1
        return found

    def detect_many(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image: boxes ``[F, 4]`` as x0, y0, x1, y1 (float, image pixels, unclipped) and scores ``[F]``, largest first.

        The whole views run first; an image whose whole view found a face of at least ``skip_tiles_face`` of its long
        side (a selfie, a portrait, a tight crop) skips the tiles: they only add faces far smaller than that one."""
        plans = [self.views(image) for image in images]
        found = self._run_views(images, [plan[:1] for plan in plans])
        tiled = []
        for i, (image, plan) in enumerate(zip(images, plans)):
            boxes = np.concatenate(found[i][0]) if found[i][0] else np.zeros((0, 4))
            largest = float(np.max(np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))) if len(boxes) else 0.0
            if len(plan) > 1 and largest < self.skip_tiles_face * max(image.shape):
                tiled.append(i)
        if tiled:
            more = self._run_views([images[i] for i in tiled], [plans[i][1:] for i in tiled])
            for i, (boxes, scores) in zip(tiled, more):
                found[i][0].extend(boxes)
                found[i][1].extend(scores)
        merged = []
        for boxes_list, scores_list in found:
            if boxes_list:
                boxes, kept = blend_nms(np.concatenate(boxes_list), np.concatenate(scores_list), self.nms_iou)
            else:
                boxes, kept = np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
            sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            ok = sides >= self.min_side
            merged.append((boxes[ok], kept[ok]))
        if self.verify_below > 0:
            merged = self._verify(images, merged)
        if self.rescue_threshold < 1.0:
            merged = self._rescue(images, merged)
        results = []
        for boxes, kept in merged:
            order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")[: self.max_faces]
            results.append((boxes[order], kept[order]))
        return results

    def _verify(self, images: list[np.ndarray], merged: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """A candidate under ``verify_max_face`` of the long side scoring under ``verify_below`` is looked at again in a view
        centred on it, ``verify_scale`` × its side (the scale the detector likes best); it stays only if that view finds
        it at ``verify_threshold``. Tiles can then take a lower threshold: a face-like patch rarely passes twice."""

        def small(boxes: np.ndarray, image: np.ndarray) -> np.ndarray:
            return np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) < self.verify_max_face * max(image.shape)

        asks = [(i, j) for i, (boxes, scores) in enumerate(merged) for j in np.nonzero((scores < self.verify_below) & small(boxes, images[i]))[0]]
        if not asks:
            return merged
        plans = []
        for i, j in asks:
            box = merged[i][0][j]
            side = max(box[2] - box[0], box[3] - box[1]) * self.verify_scale
            plans.append([((box[0] + box[2] - side) / 2, (box[1] + box[3] - side) / 2, side, False)])
        checked = self._run_views([images[i] for i, _ in asks], plans, threshold=self.verify_threshold)
        drop = {}
        for (i, j), (boxes_list, _) in zip(asks, checked):
            box = merged[i][0][j]
            if not any((iou(box, boxes) > 0.3).any() for boxes in boxes_list):
                drop.setdefault(i, []).append(j)
        out = []
        for i, (boxes, scores) in enumerate(merged):
            keep = np.ones(len(boxes), bool)
            keep[drop.get(i, [])] = False
            out.append((boxes[keep], scores[keep]))
        return out

    def _rescue(self, images: list[np.ndarray], merged: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """An image where nothing was found gets a second look: the whole view padded by each of ``rescue_pads`` and
        turned by each of ``rescue_angles`` (a tilted head, a close-up), at ``rescue_threshold``, keeping only a face of
        at least ``rescue_min_face`` of the long side (a face filling the frame: a tight crop BlazeFace missed upright).
        A photo without a face rarely gets one: a face-like patch that large and that sure is rare (the validation table,
        bench/report/face_pipeline_tuning.md, counts them). Each box maps back unturned (its centre turned back, its size kept)."""
        empty = [i for i, (boxes, _) in enumerate(merged) if len(boxes) == 0]
        if not empty:
            return merged
        jobs = [(i, pad, angle) for i in empty for pad in self.rescue_pads for angle in self.rescue_angles]
        looks = self._run_views(
            [images[i] for i, _, _ in jobs],
            [self.views(images[i], pad)[:1] for i, pad, _ in jobs],
            threshold=self.rescue_threshold,
            angles=[angle for _, _, angle in jobs],
        )
        found: dict[int, tuple[list, list]] = {i: ([], []) for i in empty}
        for (i, _, _), (boxes_list, scores_list) in zip(jobs, looks):
            found[i][0].extend(boxes_list)
            found[i][1].extend(scores_list)
        out = list(merged)
        for i, (boxes_list, scores_list) in found.items():
            if not boxes_list:
                continue
            boxes, kept = blend_nms(np.concatenate(boxes_list), np.concatenate(scores_list), self.nms_iou)
            large = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= self.rescue_min_face * max(images[i].shape)
            out[i] = (boxes[large], kept[large])
        return out

    def crop(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        side = max(box[2] - box[0], box[3] - box[1]) * (1 + 2 * self.margin)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2 + self.shift * (box[3] - box[1])
        return square_view(image, cx - side / 2, cy - side / 2, side, self.face_size, edge=True)

    def whole_frame(self, image: np.ndarray) -> np.ndarray:
        """The image as ``detect=false`` frames a file: the long side to the model's input, the short side edge-padded."""
        long_side = max(image.shape)
        return square_view(image, (image.shape[1] - long_side) / 2, (image.shape[0] - long_side) / 2, long_side, self.face_size, edge=True)

    def inputs(self, image: np.ndarray, box: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """The face model's inputs for one box and the weight of each one's probabilities. A face whose crop covers
        at least ``whole_frame_above`` of the long side fills the frame (a tight crop, a close selfie): the whole
        frame, the framing FER2013 was trained on, is classified too, its answer averaged with the crop's, the crop
        weighing ``whole_frame_blend``."""
        crop = self.crop(image, box)
        side = max(box[2] - box[0], box[3] - box[1]) * (1 + 2 * self.margin)
        if self.whole_frame_above <= 0 or side < self.whole_frame_above * max(image.shape):
            return [(crop, 1.0)]
        whole = (self.whole_frame(image), 1.0 - self.whole_frame_blend)
        return [whole, (crop, self.whole_frame_blend)] if self.whole_frame_blend > 0 else [whole]

    def __call__(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per image: ``(boxes int32 [F, 4] as x, y, width, height clipped to the image, detection scores [F], probabilities [F, 7])``."""
        detected = self.detect_many(images)
        per_face = [self.inputs(image, box) for image, (boxes, _) in zip(images, detected) for box in boxes]
        probabilities = np.zeros((0, 7), np.float32)
        if per_face:
            faces = np.round(np.clip(np.stack([view for views in per_face for view, _ in views]), 0, 255))
            answers = self.classifier(((faces / 255.0 - self.mean) / self.std)[:, None].astype(np.float32))
            owner = np.repeat(np.arange(len(per_face)), [len(views) for views in per_face])
            weights = np.array([w for views in per_face for _, w in views], np.float32)[:, None]
            probabilities = np.zeros((len(per_face), answers.shape[1]), np.float32)
            np.add.at(probabilities, owner, weights * answers)
        results, k = [], 0
        for image, (boxes, scores) in zip(images, detected):
            height, width = image.shape
            x0, y0 = np.clip(np.round(boxes[:, 0]), 0, width - 1), np.clip(np.round(boxes[:, 1]), 0, height - 1)
            x1, y1 = np.clip(np.round(boxes[:, 2]), x0 + 1, width), np.clip(np.round(boxes[:, 3]), y0 + 1, height)
            xywh = np.stack([x0, y0, x1 - x0, y1 - y0], -1).astype(np.int32).reshape(-1, 4)
            results.append((xywh, scores.astype(np.float32), np.asarray(probabilities[k : k + len(boxes)], np.float32).reshape(-1, 7)))
            k += len(boxes)
        return results


class TritonPythonModel:
    """Triton's side: the requests of one batch (ragged: every queued image joins, whatever its size) run together,
    each model called once through BLS."""

    def initialize(self, args):
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        settings = json.loads(params["pipeline"])
        self.pipeline = FacePipeline(
            self._runner(settings["detector_model"], ["image"], ["regressors", "classificators"]),
            self._runner(settings["classifier_model"], ["image"], ["probabilities"]),
            settings,
        )
        self.detector_batch = int(settings.get("detector_max_batch", 64))

    def _runner(self, model: str, inputs: list[str], outputs: list[str]):
        pb = self.pb

        def run(array: np.ndarray, limit: int = 32):
            parts = []
            for start in range(0, len(array), limit):
                request = pb.InferenceRequest(
                    model_name=model,
                    requested_output_names=outputs,
                    inputs=[pb.Tensor(inputs[0], np.ascontiguousarray(array[start : start + limit]))],
                )
                response = request.exec()
                if response.has_error():
                    raise RuntimeError(f"{model}: {response.error().message()}")
                parts.append([pb.get_output_tensor_by_name(response, name).as_numpy() for name in outputs])
            merged = [np.concatenate([p[i] for p in parts]) for i in range(len(outputs))]
            return merged if len(outputs) > 1 else merged[0]

        return run

    def execute(self, requests):
        pb = self.pb
        try:
            images = [pb.get_input_tensor_by_name(r, "image").as_numpy()[0] for r in requests]
            results = self.pipeline([image if image.ndim == 2 else image[..., 0] for image in images])
        except Exception as exc:  # one bad batch must not take the model down: every request gets the error
            return [pb.InferenceResponse(error=pb.TritonError(f"face_pipeline failed: {exc}")) for _ in requests]
        return [
            pb.InferenceResponse(
                output_tensors=[pb.Tensor("boxes", boxes[None]), pb.Tensor("detection_scores", scores[None]), pb.Tensor("probabilities", probs[None])]
            )
            for boxes, scores, probs in results
        ]

    def finalize(self):
        self.pipeline = None


def local_model(folder, run):
    """The pipeline outside Triton (the gateway's in-process backend): ``run(model, inputs, outputs)`` runs the other
    models; returns ``infer(inputs, outputs) → [arrays]`` for one request (batch of 1)."""
    from pathlib import Path

    settings = json.loads((Path(folder) / "model.json").read_text())["preprocessing"]
    pipeline = FacePipeline(
        lambda x: run(settings["detector_model"], {"image": x}, ["regressors", "classificators"]),
        lambda x: run(settings["classifier_model"], {"image": x}, ["probabilities"])[0],
        settings,
    )

    def infer(inputs: dict, outputs: list[str]) -> list[np.ndarray]:
        image = inputs["image"][0]
        boxes, scores, probabilities = pipeline([image if image.ndim == 2 else image[..., 0]])[0]
        by_name = {"boxes": boxes[None], "detection_scores": scores[None], "probabilities": probabilities[None]}
        return [by_name[name] for name in outputs]

    return infer
