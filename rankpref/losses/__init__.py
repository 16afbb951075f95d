"""Losses: pure functions over tensors."""

from rankpref.losses.next_item import (NEXT_ITEM_LOSSES, bce_one_negative, full_cross_entropy,
                                       sampled_softmax)

__all__ = ["NEXT_ITEM_LOSSES", "bce_one_negative", "full_cross_entropy", "sampled_softmax"]
