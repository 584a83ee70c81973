"""The recommender the routes and the CLI call: catalog, ranker and Spotify enricher, built once at start-up."""

from __future__ import annotations

import asyncio
from functools import lru_cache

from gateway.errors import EmotuneError, InvalidInput
from gateway.recommend.catalog import Catalog, load_catalog
from gateway.recommend.moods import FEATURES, MOOD_TABLE, STRATEGIES, MoodTarget, UnknownEmotion, resolve_mood, valid_emotions
from gateway.recommend.ranker import Filters, RankedTrack, Ranker
from gateway.recommend.spotify import SpotifyEnricher
from gateway.settings import Settings


class Recommender:
    """Answers "music for this emotion": ranking is pure and synchronous; Spotify enrichment is optional and async."""

    def __init__(self, settings: Settings, catalog: Catalog | None = None, spotify: SpotifyEnricher | None = None):
        self.settings = settings
        self.catalog = catalog if catalog is not None else load_catalog(settings.catalog_path)
        self.ranker = Ranker(self.catalog, settings.recommendation_weights, settings.recommendation_mmr_lambda)
        self.spotify = spotify if spotify is not None else SpotifyEnricher(settings)
        # Ranking is deterministic, so equal requests (a batch of texts that are mostly "joy") share one ranking.
        self._ranked = lru_cache(maxsize=settings.recommendation_cache_size)(self._rank)

    def _rank(self, mood: str, strategy: str, limit: int, filters: Filters, cap: int) -> tuple[RankedTrack, ...]:
        return tuple(self.ranker.rank(MOOD_TABLE[mood], strategy, limit, filters, cap))

    # --- validation: every bad request becomes an InvalidInput with a stable code ---------------------------------

    @staticmethod
    def mood(emotion: str) -> MoodTarget:
        try:
            return resolve_mood(emotion)
        except UnknownEmotion:
            valid = valid_emotions()
            raise InvalidInput(
                "unknown_emotion", f"unknown emotion {emotion!r}; valid emotions: {', '.join(valid)}", [{"valid_emotions": valid}]
            ) from None

    def _limit(self, limit: int | None) -> int:
        top = self.settings.max_recommendation_limit
        if limit is None:
            return min(self.settings.recommendation_limit, top)
        if not 1 <= limit <= top:
            raise InvalidInput("invalid_limit", f"limit must be between 1 and {top}, got {limit}")
        return limit

    @staticmethod
    def _check(strategy: str, filters: Filters, max_per_artist: int | None) -> None:
        if strategy not in STRATEGIES:
            raise InvalidInput("invalid_strategy", f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if filters.year_min is not None and filters.year_max is not None and filters.year_min > filters.year_max:
            raise InvalidInput("invalid_filters", f"year_min ({filters.year_min}) is after year_max ({filters.year_max})")
        if filters.min_popularity is not None and not 0 <= filters.min_popularity <= 100:
            raise InvalidInput("invalid_filters", "min_popularity must be between 0 and 100")
        if max_per_artist is not None and max_per_artist < 1:
            raise InvalidInput("invalid_max_per_artist", "max_per_artist must be at least 1")

    # --- ranking ---------------------------------------------------------------------------------------------------

    def _track(self, ranked: RankedTrack, mood: MoodTarget, strategy: str, position: int, length: int) -> dict:
        c, i = self.catalog, ranked.index
        track_id = str(c.ids[i])
        values = c.features[i]
        return {
            "name": str(c.names[i]),
            "artist": str(c.artists[i]),
            "preview_url": None,
            "external_url": f"https://open.spotify.com/track/{track_id}",
            "image_url": None,
            "id": track_id,
            "uri": f"spotify:track:{track_id}",
            "popularity": int(c.popularity[i]),
            "year": int(c.years[i]),
            "features": {f: (round(float(v), 1) if f == "tempo" else round(float(v), 3)) for f, v in zip(FEATURES, values)},
            "reason": self.ranker.reason(ranked, mood, strategy, position, length),
        }

    def tracks(
        self, emotion: str, limit: int | None = None, strategy: str = "match", filters: Filters | None = None, max_per_artist: int | None = None
    ) -> tuple[MoodTarget, list[dict]]:
        """Catalog tracks for an emotion, best first; no network."""
        mood = self.mood(emotion)
        limit = self._limit(limit)
        filters = filters or Filters()
        self._check(strategy, filters, max_per_artist)
        cap = max_per_artist or self.settings.max_tracks_per_artist
        ranked = self._ranked(mood.mood, strategy, limit, filters, cap)
        return mood, [self._track(r, mood, strategy, n, len(ranked)) for n, r in enumerate(ranked)]

    async def recommend(
        self,
        emotion: str,
        *,
        limit: int | None = None,
        strategy: str = "match",
        filters: Filters | None = None,
        max_per_artist: int | None = None,
        enrich: bool = True,
        playlist_name: str | None = None,
    ) -> dict:
        """The ``/music_recommendation`` answer: ``{"emotion", "recommendations", ...}`` plus what Spotify did."""
        mood, tracks = self.tracks(emotion, limit, strategy, filters, max_per_artist)
        body: dict = {"emotion": emotion.strip().lower(), "mood": mood.mood, "strategy": strategy, "recommendations": tracks}
        if not tracks:
            body["message"] = "no track in the catalog passes the filters"
        body["enrichment"] = (
            await self.spotify.enrich(tracks)
            if enrich
            else {"status": "skipped", "reason": "not_requested", "message": "enrichment turned off by the request"}
        )
        if playlist_name:
            body["playlist"] = await self.spotify.create_playlist(
                playlist_name, [t["uri"] for t in tracks], f"emotune: music for {mood.mood} ({strategy})"
            )
        return body

    async def close(self) -> None:
        self.spotify.close()


async def attach_recommendations(recommender: Recommender | None, results: list[dict], limit: int | None = None) -> None:
    """Give each emotion result (``{"emotion", "confidence", "scores"}``) ``recommendations`` for its emotion, in place.

    The emotion routes call this unless the client passed ``?recommend=false``. A label missing from the mood
    table gets an empty list rather than failing the emotion answer.
    """
    if recommender is None:
        return

    async def one(result: dict) -> None:
        try:
            body = await recommender.recommend(result["emotion"], limit=limit)
        except EmotuneError as exc:
            result["recommendations"], result["enrichment"] = [], {"status": "skipped", "reason": exc.code, "message": exc.message}
            return
        result["recommendations"], result["enrichment"] = body["recommendations"], body["enrichment"]

    await asyncio.gather(*(one(r) for r in results))
