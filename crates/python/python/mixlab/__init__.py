"""mixlab's data mixers (ODM, DoReMi's weights, ADO, Aioli, static tables) for Python trainers.

`Mixer` builds any registered mixer from the `[mixer]` table of a mixlab run config and decides
exactly as mixlab's own trainer does; `DataStream` draws a prepared dataset's training steps
exactly as the trainer does; `mixlab.torch` (needs torch) turns per-token losses into
the per-domain feedback `Mixer.observe` takes, all-reduced across ranks.
"""

from ._mixlab import Mixer, MixerError, __version__, kinds
from .data import DataStream

__all__ = ["DataStream", "Mixer", "MixerError", "__version__", "kinds"]
