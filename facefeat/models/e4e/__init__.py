"""e4e (encoder4editing) encoder: network, official checkpoints, inference.

Public API
----------
- :class:`Encoder4Editing` - the IR-SE-50 + feature-pyramid encoder (official key names).
- :func:`load_e4e` / :func:`e4e_from_checkpoint` -> :class:`E4ECheckpoint` - strict loading of
  official checkpoints (encoder, ``latent_avg``, decoder through a generator-loader hook).
- :func:`save_e4e_checkpoint` - write the same layout; :func:`rosinality_decoder_state_dict`
  turns a facefeat generator into the ``decoder.*`` weights it stores.
- :func:`read_e4e_header` -> :class:`E4EHeader` - shapes without loading (memory-mapped).
- :func:`default_decoder_loader` - the bundled decoder as a facefeat ``Generator``
  (``load_e4e(..., decoder_loader="default")``).
- :func:`encode` - aligned images -> W+ codes ``[B, n_styles, 512]`` (e4e input handling).
- :func:`add_latent_avg`, :func:`check_num_ws`, :func:`n_styles_for_resolution`.
- :data:`E4E_FFHQ_ENCODE` - registry metadata of the official FFHQ checkpoint.
"""

from facefeat.models.e4e.checkpoint import (
    E4E_FFHQ_ENCODE,
    E4ECheckpoint,
    E4EHeader,
    check_generator_compat,
    check_num_ws,
    default_decoder_loader,
    e4e_from_checkpoint,
    encoder_from_state_dict,
    generator_num_ws,
    load_e4e,
    missing_latent_avg_error,
    read_checkpoint,
    read_e4e_header,
    rosinality_decoder_state_dict,
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
    "E4EHeader",
    "Encoder4Editing",
    "add_latent_avg",
    "check_generator_compat",
    "check_num_ws",
    "default_decoder_loader",
    "e4e_from_checkpoint",
    "encode",
    "encoder_from_state_dict",
    "generator_num_ws",
    "load_e4e",
    "missing_latent_avg_error",
    "n_styles_for_resolution",
    "read_checkpoint",
    "read_e4e_header",
    "resolution_for_n_styles",
    "rosinality_decoder_state_dict",
    "save_e4e_checkpoint",
    "split_state_dict",
]
