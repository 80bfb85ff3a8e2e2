"""StyleGAN2 (config-e/f) in pure PyTorch: one network for both official weight layouts.

Public API
----------
- :class:`Generator` -- ``G.mapping(z, truncation_psi=1, truncation_cutoff=None) -> ws
  [B, num_ws, w_dim]``, ``G.synthesis(ws, noise_mode="const"|"random"|"none") -> img
  [B, 3, R, R]``, ``G(z)``, ``G.mean_w(n, seed)``, ``G.w_avg``, ``G.num_ws``, ``G.w_dim``,
  ``G.z_dim``, ``G.img_resolution``.
- :class:`Discriminator` -- ``D(img) -> logits [B, 1]``.
- :class:`GeneratorConfig`, :class:`DiscriminatorConfig` -- shapes and behaviour (channel
  tables of both code bases: ``GeneratorConfig.nvidia(...)``, ``GeneratorConfig.rosinality(...)``).
- :func:`truncate`, :func:`style_mix` -- W-space helpers.
- :func:`generator_from_state_dict`, :func:`discriminator_from_state_dict` -- strict loading of
  an official state_dict (layout detected, config inferred from shapes).
- :mod:`facefeat.models.stylegan2.ops` -- ``upfirdn2d``, ``modulated_conv2d``, ``bias_act``, ...

Loading files (NVIDIA pickles, rosinality ``.pt``, facefeat safetensors + JSON) is
:mod:`facefeat.models.checkpoints` (``load_generator``, ``load_discriminator``,
``convert_checkpoint``).
"""

from facefeat.models.stylegan2.config import (
    DiscriminatorConfig,
    GeneratorConfig,
    nvidia_channels,
    num_ws_for_resolution,
    rosinality_channels,
)
from facefeat.models.stylegan2.layouts import (
    check_resolution,
    discriminator_entries,
    discriminator_from_state_dict,
    generator_entries,
    generator_from_state_dict,
    infer_discriminator_config,
    infer_generator_config,
)
from facefeat.models.stylegan2.networks import Discriminator, Generator, style_mix, truncate

__all__ = [
    "Discriminator",
    "DiscriminatorConfig",
    "Generator",
    "GeneratorConfig",
    "check_resolution",
    "discriminator_entries",
    "discriminator_from_state_dict",
    "generator_entries",
    "generator_from_state_dict",
    "infer_discriminator_config",
    "infer_generator_config",
    "num_ws_for_resolution",
    "nvidia_channels",
    "rosinality_channels",
    "style_mix",
    "truncate",
]
