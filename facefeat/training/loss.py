"""StyleGAN2 losses and regularisers, as stylegan2-ada-pytorch's ``StyleGAN2Loss`` computes them.

Phases (one optimiser step each; ``gain`` is the phase's interval, so a lazy regulariser that
runs every k-th minibatch is weighted k times):

* ``Gmain``: non-saturating logistic loss ``softplus(-D(G(z)))``.
* ``Greg``: path-length regularisation on ``batch // pl_batch_shrink`` images:
  ``||J_w^T y||`` with ``y ~ N(0, I) / sqrt(H * W)``, averaged over the W+ rows; its running
  mean ``a`` moves by ``pl_decay``; penalty ``pl_weight * (||J_w^T y|| - a)^2``.
* ``Dmain``: ``softplus(D(G(z))) + softplus(-D(x))``.
* ``Dreg``: R1 on reals, ``gamma / 2 * ||grad_x D(x)||^2``.

The discriminator always sees images through the augmentation pipeline when there is one (for
R1 the gradient is taken w.r.t. the un-augmented reals, through the pipeline). Style mixing
draws a second latent and a crossover row for every generated minibatch (with probability
``style_mixing_prob`` it is used). The mapping network's tracked mean ``w_avg`` moves toward
the batch mean with ``w_avg_beta`` (NVIDIA's ``w_avg_beta = 0.995``); the mixing latents do not
count.

All random numbers come from two explicit generators: ``generator`` (on the training device:
mixing latents, synthesis noise, path-length noise, augmentation) and ``cpu_generator``
(crossover rows), so a run is reproducible and resumable.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from facefeat.models.stylegan2.networks import Discriminator, Generator, style_mix
from facefeat.training.augment import AdaController, AugmentPipe

PHASES = ("Gmain", "Greg", "Dmain", "Dreg")


def r1_penalty(D_fn, real_img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(||grad_x D_fn(x)||^2 per image [B], logits [B, 1])`` with the graph kept for backward.

    ``real_img`` must require grad (``x.detach().requires_grad_(True)``).
    """
    logits = D_fn(real_img)
    (grad,) = torch.autograd.grad(outputs=[logits.sum()], inputs=[real_img], create_graph=True, only_inputs=True)
    return grad.square().sum(dim=[1, 2, 3]), logits


def path_lengths(img: torch.Tensor, ws: torch.Tensor, pl_noise: torch.Tensor) -> torch.Tensor:
    """``||J_w^T y||`` per image ``[B]``: the gradient of ``sum(img * y)`` w.r.t. ``ws``
    (``[B, num_ws, w_dim]``), squared-summed over ``w_dim``, averaged over rows, square root."""
    (grad,) = torch.autograd.grad(outputs=[(img * pl_noise).sum()], inputs=[ws], create_graph=True, only_inputs=True)
    return grad.square().sum(2).mean(1).sqrt()


class StyleGAN2Loss:
    """Computes each phase's loss and accumulates its gradients.

    Parameters
    ----------
    G : Generator
    D : Discriminator
    augment_pipe : AugmentPipe, optional
    ada : AdaController, optional
        Receives the real logits of every D phase (for ``r_t``).
    r1_gamma, style_mixing_prob, pl_weight, pl_batch_shrink, pl_decay, w_avg_beta : float
    noise_mode : {"random", "const", "none"}
    generator : torch.Generator
        On the training device.
    cpu_generator : torch.Generator

    Attributes
    ----------
    pl_mean : Tensor (scalar)
        Running mean of the path lengths (part of the resumable state).
    """

    def __init__(self, G: Generator, D: Discriminator, *, augment_pipe: AugmentPipe | None = None,
                 ada: AdaController | None = None, r1_gamma: float = 10.0, style_mixing_prob: float = 0.9,
                 pl_weight: float = 2.0, pl_batch_shrink: int = 2, pl_decay: float = 0.01,
                 w_avg_beta: float | None = 0.995, noise_mode: str = "random",
                 generator: torch.Generator | None = None, cpu_generator: torch.Generator | None = None) -> None:
        self.G, self.D = G, D
        self.augment_pipe, self.ada = augment_pipe, ada
        self.r1_gamma = float(r1_gamma)
        self.style_mixing_prob = float(style_mixing_prob)
        self.pl_weight, self.pl_batch_shrink, self.pl_decay = float(pl_weight), int(pl_batch_shrink), float(pl_decay)
        self.w_avg_beta = w_avg_beta
        self.noise_mode = noise_mode
        device = G.mapping.w_avg.device
        self.generator = generator if generator is not None else torch.Generator(device)
        self.cpu_generator = cpu_generator if cpu_generator is not None else torch.Generator()
        self.pl_mean = torch.zeros([], device=device)

    # -- networks ----------------------------------------------------------------------------
    def run_G(self, z: torch.Tensor, *, update_w_avg: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, ws)`` for latents ``z`` with style mixing and training noise."""
        G = self.G
        w = G.mapping.embed(z)
        if update_w_avg and self.w_avg_beta is not None:
            with torch.no_grad():
                G.mapping.w_avg.copy_(w.detach().mean(dim=0).lerp(G.mapping.w_avg, self.w_avg_beta))
        ws = w.unsqueeze(1).repeat(1, G.num_ws, 1)
        if self.style_mixing_prob > 0:
            # NVIDIA draws the crossover and the second latent for every minibatch.
            cutoff = int(torch.randint(1, G.num_ws, (), generator=self.cpu_generator))
            use = float(torch.rand((), generator=self.cpu_generator)) < self.style_mixing_prob
            z2 = torch.randn(z.shape, generator=self.generator, device=z.device, dtype=z.dtype)
            if use:
                ws2 = G.mapping.embed(z2).unsqueeze(1).repeat(1, G.num_ws, 1)
                ws = style_mix(ws, ws2, cutoff)
        img = G.synthesis(ws, noise_mode=self.noise_mode, generator=self.generator)
        return img, ws

    def run_D(self, img: torch.Tensor) -> torch.Tensor:
        if self.augment_pipe is not None:
            img = self.augment_pipe(img, generator=self.generator)
        return self.D(img)

    # -- phases --------------------------------------------------------------------------------
    def accumulate_gradients(self, phase: str, real_img: torch.Tensor, gen_z: torch.Tensor, *,
                             gain: float = 1.0) -> dict[str, Any]:
        """Backpropagate one phase's loss (times ``gain``) into the networks' ``.grad``.

        Parameters
        ----------
        phase : {"Gmain", "Greg", "Dmain", "Dreg"}
        real_img : Tensor ``[B, 3, R, R]`` in [-1, 1]
        gen_z : Tensor ``[B, z_dim]``
        gain : float
            The phase's interval (lazy regularisation).

        Returns
        -------
        dict
            Float statistics of the phase (``loss/G``, ``loss/D``, ``r1_penalty``, ``loss/r1``,
            ``pl_penalty``, ``loss/pl``, ``pl_mean``, scores), and ``"loss"`` the scalar that
            was backpropagated before ``gain`` (for the finiteness check).
        """
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        stats: dict[str, Any] = {}
        if phase == "Gmain":
            img, _ = self.run_G(gen_z)
            logits = self.run_D(img)
            loss = F.softplus(-logits).mean()
            loss.mul(gain).backward()
            stats.update({"loss/G": float(loss.detach()), "scores/fake": float(logits.detach().mean())})
        elif phase == "Greg":
            n = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
            img, ws = self.run_G(gen_z[:n])
            pl_noise = torch.randn(img.shape, generator=self.generator, device=img.device,
                                   dtype=img.dtype) / math.sqrt(img.shape[2] * img.shape[3])
            lengths = path_lengths(img, ws, pl_noise)
            pl_mean = self.pl_mean.lerp(lengths.mean().detach(), self.pl_decay)
            self.pl_mean.copy_(pl_mean)
            penalty = (lengths - pl_mean).square()
            loss_pl = penalty * self.pl_weight
            loss = (img[:, 0, 0, 0] * 0 + loss_pl).mean()
            loss.mul(gain).backward()
            stats.update({"pl_penalty": float(penalty.detach().mean()), "loss/pl": float(loss_pl.detach().mean()),
                          "pl_mean": float(pl_mean), "loss": float(loss.detach())})
        elif phase == "Dmain":
            with torch.no_grad():
                img, _ = self.run_G(gen_z)
            gen_logits = self.run_D(img)
            loss_gen = F.softplus(gen_logits).mean()
            loss_gen.mul(gain).backward()
            real_logits = self.run_D(real_img.detach())
            loss_real = F.softplus(-real_logits).mean()
            loss_real.mul(gain).backward()
            if self.ada is not None:
                self.ada.accumulate(real_logits)
            loss = loss_gen + loss_real
            stats.update({"loss/D": float(loss.detach()), "scores/fake": float(gen_logits.detach().mean()),
                          "scores/real": float(real_logits.detach().mean()),
                          "signs/real": float(real_logits.detach().sign().mean())})
        else:  # Dreg
            x = real_img.detach().requires_grad_(True)
            penalty, real_logits = r1_penalty(self.run_D, x)
            loss_r1 = penalty * (self.r1_gamma / 2)
            loss = (real_logits * 0 + loss_r1).mean()
            loss.mul(gain).backward()
            if self.ada is not None:
                self.ada.accumulate(real_logits)
            stats.update({"r1_penalty": float(penalty.detach().mean()), "loss/r1": float(loss_r1.detach().mean()),
                          "scores/real": float(real_logits.detach().mean())})
        stats.setdefault("loss", float(loss.detach()))
        return stats
