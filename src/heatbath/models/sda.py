"""Stacked denoising autoencoder for greedy layer-wise training (CTLD paper §5.1).

Widths 784-500-500-2000-10 (the DEC autoencoder of Xie et al. 2016). Layer-wise autoencoder k
maps :math:`x_k \\in R^{n_k}` to :math:`h = \\mathrm{act}(W_k \\tilde x_k + c_k) \\in
R^{n_{k+1}}` and back with an untied decoder :math:`\\hat x_k = V_k h + d_k`, where
:math:`\\tilde x_k` is the input corrupted by dropout (rate p = 0.2) for k >= 2 and the clean raw
image for k = 1. Hidden units are ReLU, the 10-d code is linear, reconstructions are linear;
Xavier (Glorot-uniform) weights, zero biases (the paper uses Xavier). Loss per example: mean
squared error over the features of :math:`x_k`. These are heatbath's choices where the paper
gives only "dropout 0.2 on each layer except the first and last" (docs/ctld.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from heatbath._validate import check_real

__all__ = ["DenoisingAutoencoder", "StackedDAE"]


class DenoisingAutoencoder(nn.Module):
    """One layer of the stack: dropout corruption, encoder, linear decoder."""

    def __init__(self, n_in: int, n_out: int, *, corruption: float, code_layer: bool) -> None:
        super().__init__()
        check_real("corruption", corruption, low=0.0, high=1.0, high_open=True)
        self.corrupt = nn.Dropout(corruption) if corruption > 0 else nn.Identity()
        self.encoder = nn.Linear(n_in, n_out)
        self.decoder = nn.Linear(n_out, n_in)
        self.code_layer = code_layer
        for lin in (self.encoder, self.decoder):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def encode(self, x: Tensor) -> Tensor:
        h = self.encoder(x)
        return h if self.code_layer else torch.relu(h)

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction of ``x`` from its corrupted version (corruption only in train mode)."""
        return self.decoder(self.encode(self.corrupt(x)))

    def per_example_loss(self, x: Tensor) -> Tensor:
        return ((self(x) - x) ** 2).mean(dim=1)


class StackedDAE(nn.Module):
    """The stack of layer-wise autoencoders; ``layers[k]`` is trained on ``encode(x, k)``."""

    def __init__(self, widths: Sequence[int] = (784, 500, 500, 2000, 10),
                 dropout: float = 0.2) -> None:
        super().__init__()
        if len(widths) < 2 or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be >= 2 positive sizes, got {widths!r}")
        n = len(widths) - 1
        self.widths = tuple(int(w) for w in widths)
        self.layers = nn.ModuleList(
            DenoisingAutoencoder(widths[k], widths[k + 1], corruption=dropout if k > 0 else 0.0,
                                 code_layer=k == n - 1)
            for k in range(n))

    @torch.no_grad()
    def encode(self, x: Tensor, upto: int) -> Tensor:
        """Clean (no dropout) codes after the first ``upto`` encoders: the input of layer upto."""
        for layer in self.layers[:upto]:
            x = layer.encode(x)
        return x

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Encode through the whole stack, then decode back to the input space."""
        h = self.encode(x, len(self.layers))
        for layer in reversed(self.layers):
            h = layer.decoder(h)
        return h
