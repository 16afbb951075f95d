"""Losses: pure functions over tensors, registered by name in :data:`rankpref.registry.LOSSES`.

* ``next_item`` (:mod:`~rankpref.losses.next_item`): ce, bce, sampled_softmax, gbce,
  sampled_softmax_logq.
* ``listwise`` (:mod:`~rankpref.losses.listwise`): ranknet, listnet, listmle, approxndcg,
  lambdaloss, ranklist, and the pointwise mse; ``[batch, list_size]`` with an explicit padding
  value.
* ``contrastive`` (:mod:`~rankpref.losses.contrastive`): info_nce.
* ``concepts`` (:mod:`~rankpref.losses.concept`): infonce (graded), concept_bce.
"""

from rankpref.losses import concept, contrastive, listwise, next_item  # noqa: F401 (registers)
from rankpref.losses.next_item import (bce_one_negative, full_cross_entropy, gbce,
                                       sampled_softmax, sampled_softmax_logq)

__all__ = ["bce_one_negative", "full_cross_entropy", "gbce", "sampled_softmax",
           "sampled_softmax_logq"]
