"""Rank catalog tracks for a mood: nearest to the target, a few per artist, not all alike, the same every time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.recommend.catalog import Catalog
from gateway.recommend.moods import FEATURES, MoodTarget, Strategy, target_path

# A track counts as "on target" for a feature when it is this many catalog standard deviations away or closer.
_ON_TARGET_STD = 0.5
# A reason names at most this many features, the most heavily weighted first.
_REASON_FEATURES = 4
# Distances equal to this many decimals are ties; popularity decides between them.
_TIE_DECIMALS = 3


@dataclass(frozen=True)
class Filters:
    """Hard constraints a track must meet before it is ranked at all."""

    year_min: int | None = None
    year_max: int | None = None
    min_popularity: int | None = None


@dataclass(frozen=True)
class RankedTrack:
    index: int  # row in the catalog
    distance: float  # weighted, scaled distance to its position's target
    target: np.ndarray  # the target it was chosen for


class Ranker:
    """Greedy MMR over the catalog with a hard per-artist cap.

    Each position has a target (constant for ``match``, moving for ``uplift``). A track's relevance is
    ``exp(-distance)`` in the weighted space where every feature is divided by its catalog standard deviation;
    redundancy is its highest ``exp(-distance)`` to a track already chosen. The pick maximises
    ``λ·relevance − (1−λ)·redundancy``; ties go to the more popular track, then to catalog order, so the same
    request always gives the same list.
    """

    def __init__(self, catalog: Catalog, weights: dict[str, float], mmr_lambda: float):
        unknown = set(weights) - set(FEATURES)
        if unknown:
            raise ValueError(f"recommendation weights for unknown features: {', '.join(sorted(unknown))}")
        self.catalog = catalog
        self.mmr_lambda = mmr_lambda
        std = catalog.features.std(axis=0)
        self.scale = np.where(std > 0, std, 1.0)
        self.weights = np.array([weights.get(f, 0.0) for f in FEATURES], dtype=np.float64)
        self._sqrt_w = np.sqrt(self.weights)
        self._points = catalog.features / self.scale * self._sqrt_w  # Euclidean here = weighted scaled distance
        self._squared = np.einsum("ij,ij->i", self._points, self._points)
        _, self._artist_codes = np.unique(catalog.artist_keys.astype(str), return_inverse=True)

    def _distances(self, points: np.ndarray, squared: np.ndarray, to: np.ndarray) -> np.ndarray:
        """Euclidean distances from every row of ``points`` to ``to`` (both in weighted, scaled space), as
        ``sqrt(|p|² + |q|² − 2 p·q)``: one matrix-vector product instead of an (n, features) temporary."""
        return np.sqrt(np.maximum(squared + to @ to - 2.0 * (points @ to), 0.0))

    def candidates(self, filters: Filters) -> np.ndarray:
        """Catalog rows that pass the filters, in catalog order."""
        c = self.catalog
        keep = np.ones(len(c), dtype=bool)
        if filters.year_min is not None:
            keep &= c.years >= filters.year_min
        if filters.year_max is not None:
            keep &= c.years <= filters.year_max
        if filters.min_popularity is not None:
            keep &= c.popularity >= filters.min_popularity
        return np.flatnonzero(keep)

    def rank(self, mood: MoodTarget, strategy: Strategy, limit: int, filters: Filters, max_per_artist: int) -> list[RankedTrack]:
        rows = self.candidates(filters)
        if rows.size == 0 or limit <= 0:
            return []
        targets = target_path(mood, strategy, limit)
        points, squared = self._points[rows], self._squared[rows]
        popularity = self.catalog.popularity[rows]
        order = np.arange(rows.size)  # catalog order, the last tie-breaker
        artists = self._artist_codes[rows]
        per_artist: dict[int, int] = {}
        available = np.ones(rows.size, dtype=bool)
        redundancy = np.zeros(rows.size)
        chosen: list[RankedTrack] = []
        distance = None
        for target in targets:
            if distance is None or strategy == "uplift":
                distance = self._distances(points, squared, target / self.scale * self._sqrt_w)
            score = self.mmr_lambda * np.exp(-distance) - (1.0 - self.mmr_lambda) * redundancy
            score = np.where(available, np.round(score, _TIE_DECIMALS), -np.inf)
            top = score.max()
            if not np.isfinite(top):
                break
            tied = np.flatnonzero(score == top)
            # Among equal scores: the most popular, then the earliest in the catalog (lexsort: last key is primary).
            best = int(tied[np.lexsort((order[tied], -popularity[tied]))[0]])
            chosen.append(RankedTrack(index=int(rows[best]), distance=float(distance[best]), target=target))
            artist = int(artists[best])
            per_artist[artist] = per_artist.get(artist, 0) + 1
            available[best] = False
            if per_artist[artist] >= max_per_artist:
                available &= artists != artist
            redundancy = np.maximum(redundancy, np.exp(-self._distances(points, squared, points[best])))
        return chosen

    def reason(self, track: RankedTrack, mood: MoodTarget, strategy: Strategy, position: int, length: int) -> str:
        """A short, human-readable account of which features put the track here."""
        values = self.catalog.features[track.index]
        close = []
        for i in np.argsort(-self.weights, kind="stable"):
            if self.weights[i] <= 0 or abs(values[i] - track.target[i]) > _ON_TARGET_STD * self.scale[i]:
                continue
            name = FEATURES[i]
            if name == "mode":
                if track.target[i] != 0.5:
                    close.append("major key" if values[i] >= 0.5 else "minor key")
            elif name == "tempo":
                close.append(f"tempo {values[i]:.0f} BPM")
            else:
                close.append(f"{name} {values[i]:.2f}")
        matched = ", ".join(close[:_REASON_FEATURES]) if close else "nearest available to the target"
        if strategy == "uplift" and mood.uplift_to and length > 1:
            return f"step {position + 1}/{length} from {mood.mood} toward {mood.uplift_to}: {matched}"
        return f"fits {mood.mood}: {matched}"
