"""Models: plain ``nn.Module``s, each with a dataclass config beside it, registered by name
in :data:`rankpref.registry.MODELS` (grouped by the task that trains them)."""

from rankpref.models import (bert4rec, bsarec, gru4rec, pulse, sasrec,  # noqa: F401
                             scorer, sesa, text_scorer, thought_space)  # (registers)
