"""Interpretation: what the survival model and the latent space say about faces.

Modules (import them directly; nothing is imported here, so ``import facefeat.explain`` stays
cheap):

- :mod:`facefeat.explain.direction`: the health-attribute direction of a fitted linear
  survival model in W / W+ (one unit = +1 predicted log-hazard), attribute directions from
  probes, a local gradient direction for non-linear models; saved with provenance.
- :mod:`facefeat.explain.edit`: moving a subject's latent along a direction (optionally only
  coarse / middle / fine layers), rendering through the generator, grids with the predicted
  risk under each frame, animated GIFs.
- :mod:`facefeat.explain.regions`: where an edit changes the image: pixel-change energy shares
  in face / hair / background / below the chin per subject, per-layer shares of the
  direction's norm, cohort tables and a plot.
- :mod:`facefeat.explain.mask`: landmarks mapped into the FFHQ-aligned image, face mask,
  skin refinement, face / below-chin / hair / background regions, and the share of an edit's
  pixel-change energy in each.
- :mod:`facefeat.explain.probes`: InterFaceGAN-style linear probes on StyleGAN latents
  (logistic or ridge on W or W+), saved with provenance, applied as features, and exposed as
  edit directions.
- :mod:`facefeat.explain.cli`: ``facefeat explain direction | edit | regions | probe``.
"""
