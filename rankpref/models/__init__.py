"""Models: plain ``nn.Module``s, each with a dataclass config beside it, registered by name
in :data:`rankpref.registry.MODELS` (grouped by the task that trains them)."""

from rankpref.models import (gru4rec, pulse, sasrec, scorer, sesa,  # noqa: F401 (registers)
                             text_scorer, thought_space)
