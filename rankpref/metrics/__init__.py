"""Metrics: pure, vectorised functions with one tie rule (see :mod:`rankpref.metrics.ranking`).

* :mod:`rankpref.metrics.ranking`: recall, NDCG and MRR of rankings (torch), next-item ranks.
* :mod:`rankpref.metrics.correlation`: Kendall's tau, Spearman, ranking accuracy and list NDCG
  of subjective ratings (numpy).
"""
