from ._mixlab import Mixer as Mixer, MixerError as MixerError, __version__ as __version__, kinds as kinds
from .data import DataStream as DataStream
