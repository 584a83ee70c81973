"""The track catalog: read once at start-up, cleaned, and held as arrays the ranker can scan without pandas."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gateway.recommend.moods import FEATURES

DEFAULT_CATALOG = Path(__file__).resolve().parent / "data" / "spotify_tracks_2017_2019.csv"
REQUIRED_COLUMNS = ("artist", "track", "track_id", "popularity", "year", *FEATURES)
_TRACK_ID = re.compile(r"(?:spotify:track:|open\.spotify\.com/(?:intl-\w+/)?track/)?([0-9A-Za-z]{22})")


class CatalogError(ValueError):
    """A catalog file that cannot be used (missing columns, unknown format): fail at start-up, not per request."""


@dataclass(frozen=True)
class Catalog:
    """Columns as arrays, one row per distinct track, in a stable order (file order after de-duplication)."""

    ids: np.ndarray  # 22-char Spotify ids (object)
    names: np.ndarray
    artists: np.ndarray
    artist_keys: np.ndarray  # case-folded artist, what the per-artist cap counts
    popularity: np.ndarray  # int
    years: np.ndarray  # int
    features: np.ndarray  # float64, shape (n, len(FEATURES)), raw units
    source: Path
    dropped: dict[str, int]

    def __len__(self) -> int:
        return len(self.ids)


def _bare_id(value: str) -> str | None:
    match = _TRACK_ID.search(str(value))
    return match.group(1) if match else None


def _read(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame = pd.read_csv(path)
    elif suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(path)
    else:
        raise CatalogError(f"catalog {path}: expected a .csv or .parquet file")
    return frame.drop(columns=[c for c in frame.columns if str(c).startswith("Unnamed")])


def load_catalog(path: Path | None = None) -> Catalog:
    """Read a catalog with the shipped file's columns; collapse duplicates (same id, or same artist + title).

    Rows without a usable id or features are dropped, and so are rows with ``tempo == 0``: in the shipped file
    those are noise and sleep-sound recordings whose features say nothing about music.
    """
    path = Path(path) if path else DEFAULT_CATALOG
    if not path.exists():
        raise CatalogError(f"catalog {path} does not exist")
    frame = _read(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise CatalogError(f"catalog {path} lacks columns: {', '.join(missing)}")

    dropped: dict[str, int] = {}
    frame = frame.assign(id=frame["track_id"].map(_bare_id))
    usable = frame["id"].notna() & frame[list(FEATURES)].notna().all(axis=1)
    dropped["unusable"] = int((~usable).sum())
    frame = frame[usable]
    not_music = frame["tempo"] <= 0
    dropped["not_music"] = int(not_music.sum())
    frame = frame[~not_music]

    # Keep the most popular copy of each duplicate; a stable sort keeps file order among equals.
    frame = frame.assign(popularity=frame["popularity"].fillna(0).astype(int), year=frame["year"].fillna(0).astype(int))
    frame = frame.sort_values("popularity", ascending=False, kind="stable")
    before = len(frame)
    frame = frame.drop_duplicates("id")
    dropped["duplicate_id"] = before - len(frame)
    title_key = frame["artist"].astype(str).str.casefold().str.strip() + "\x00" + frame["track"].astype(str).str.casefold().str.strip()
    before = len(frame)
    frame = frame[~title_key.duplicated()]
    dropped["duplicate_title"] = before - len(frame)
    frame = frame.sort_index(kind="stable")

    artists = frame["artist"].astype(str).to_numpy(dtype=object)
    return Catalog(
        ids=frame["id"].to_numpy(dtype=object),
        names=frame["track"].astype(str).to_numpy(dtype=object),
        artists=artists,
        artist_keys=np.array([a.casefold().strip() for a in artists], dtype=object),
        popularity=frame["popularity"].to_numpy(dtype=np.int64),
        years=frame["year"].to_numpy(dtype=np.int64),
        features=frame[list(FEATURES)].to_numpy(dtype=np.float64),
        source=path,
        dropped=dropped,
    )
