"""Serving: the FAISS item index (:mod:`~rankpref.serving.index`) and the HTTP server
(:mod:`~rankpref.serving.server`) over a trained next-item artifact."""
