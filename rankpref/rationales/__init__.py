"""SLM-written rationales: why a user chose an item, as a training signal (PULSE).

One interface (:class:`~rankpref.rationales.backends.Backend`), several backends
(``template``, ``transformers``, ``llama-cpp``, ``openai``), PULSE-style prompts, a robust
parser and an append-only cache that survives ``kill -9``.
"""
