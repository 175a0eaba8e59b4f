"""AI processing of questions: providers (embeddings and generation, Gemini or offline), the
vector index (Chroma) and the pipeline that runs them step by step.

- `types.py`: what the pipeline hands a provider and what it gets back; the errors.
- `embedders.py`: the offline sentence model (all-MiniLM-L6-v2 shipped in a registry package,
  run with numpy), the hashing fallback, and the formula-aware combination.
- `gemini.py`: Gemini through `google-genai` (embeddings, explanations, metadata), with limits.
- `offline.py`: offline metadata (keywords, nearest topic, question type).
- `providers.py`: which provider serves each step, from the settings.
- `vectors.py`: the Chroma index.
"""
