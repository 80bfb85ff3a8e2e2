"""e4e (encoder4editing) encoder: network, official checkpoints, inference.

Public API
----------
- :class:`Encoder4Editing` - the IR-SE-50 + feature-pyramid encoder (official key names).
- :func:`load_e4e` / :func:`e4e_from_checkpoint` -> :class:`E4ECheckpoint` - strict loading of
  official checkpoints (encoder, ``latent_avg``, decoder through a generator-loader hook).
- :func:`save_e4e_checkpoint` - write the same layout.
- :func:`encode` - aligned images -> W+ codes ``[B, n_styles, 512]`` (e4e input handling).
- :func:`add_latent_avg`, :func:`check_num_ws`, :func:`n_styles_for_resolution`.
- :data:`E4E_FFHQ_ENCODE` - registry metadata of the official FFHQ checkpoint.
"""

from facefeat.models.e4e.checkpoint import (
    E4E_FFHQ_ENCODE,
    E4ECheckpoint,
    check_num_ws,
    e4e_from_checkpoint,
    encoder_from_state_dict,
    generator_num_ws,
    load_e4e,
    read_checkpoint,
    save_e4e_checkpoint,
    split_state_dict,
)
from facefeat.models.e4e.inference import add_latent_avg, encode
from facefeat.models.e4e.network import (
    Encoder4Editing,
    n_styles_for_resolution,
    resolution_for_n_styles,
)

__all__ = [
    "E4E_FFHQ_ENCODE",
    "E4ECheckpoint",
    "Encoder4Editing",
    "add_latent_avg",
    "check_num_ws",
    "e4e_from_checkpoint",
    "encode",
    "encoder_from_state_dict",
    "generator_num_ws",
    "load_e4e",
    "n_styles_for_resolution",
    "read_checkpoint",
    "resolution_for_n_styles",
    "save_e4e_checkpoint",
    "split_state_dict",
]
