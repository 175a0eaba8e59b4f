"""Which provider serves each step, from the settings: Gemini when GEMINI_API_KEY is set,
else the offline providers (the sentence model shipped in a package, formula-aware; no
generator, so explanations are skipped with the reason `no_generator` and metadata comes from
core/ai/offline.py)."""

from __future__ import annotations

import functools

from core.ai import embedders, gemini
from core.ai.types import Embedder, Generator


@functools.lru_cache(maxsize=4)
def _gemini_providers(config: gemini.GeminiSettings) -> tuple[Embedder, Generator]:
    # One connection (a google-genai client takes 0.2-0.5 s to build) per configuration, per
    # process; a changed setting (a test, a new key) builds another.
    connection = gemini.GeminiConnection(config)
    return (gemini.GeminiEmbedder(connection=connection),
            gemini.GeminiGenerator(connection=connection))


def gemini_configured() -> bool:
    return bool(gemini.gemini_settings().api_key)


def embedder() -> Embedder:
    """The embedder every path uses (the pipeline, find_similar, the app's similar questions)."""
    config = gemini.gemini_settings()
    return _gemini_providers(config)[0] if config.api_key else embedders.offline_embedder()


def generator() -> Generator | None:
    """The generator of explanations and metadata, or None offline."""
    config = gemini.gemini_settings()
    return _gemini_providers(config)[1] if config.api_key else None
