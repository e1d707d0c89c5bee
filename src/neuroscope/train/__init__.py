"""Train small GPT-2-architecture models and watch induction heads form (Olsson et al., 2022).

``neuroscope.train`` builds Hugging Face ``GPT2LMHeadModel`` s from a config, so every NeuroScope tool applies to
them unchanged; checkpoints are safetensors folders that :func:`neuroscope.load_model` opens.
"""

from neuroscope.train.config import TrainConfig
from neuroscope.train.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
