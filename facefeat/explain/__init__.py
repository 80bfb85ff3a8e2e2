"""Interpretation: what the survival model and the latent space say about faces.

Modules (import them directly; nothing is imported here, so ``import facefeat.explain`` stays
cheap):

- :mod:`facefeat.explain.mask`: landmarks mapped into the FFHQ-aligned image, face mask,
  skin refinement, face / below-chin / hair / background regions, and the share of an edit's
  pixel-change energy in each.
- :mod:`facefeat.explain.probes`: InterFaceGAN-style linear probes on StyleGAN latents
  (logistic or ridge on W or W+), saved with provenance, applied as features, and exposed as
  edit directions.
"""
