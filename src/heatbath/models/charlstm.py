"""Character-level LSTM language model (Karpathy, Johnson, Fei-Fei 2015; CTLD paper §5.2).

One-hot characters -> ``num_layers`` stacked LSTM layers of ``hidden`` units -> a linear
read-out to the vocabulary. The paper's setting is 3 layers of 64 units; its LSTMs are not
Xavier-initialised, so torch's default LSTM/Linear initialisation is kept. Per-character loss:
cross-entropy :math:`-\\log p(x_t \\mid x_{<t})`; perplexity = exp(mean per-character NLL).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from heatbath._validate import check_int

__all__ = ["CharLSTM"]


class CharLSTM(nn.Module):
    def __init__(self, vocab_size: int, hidden: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        self.vocab_size = check_int("vocab_size", vocab_size, low=2)
        check_int("hidden", hidden, low=1)
        check_int("num_layers", num_layers, low=1)
        self.lstm = nn.LSTM(vocab_size, hidden, num_layers=num_layers, batch_first=True)
        self.readout = nn.Linear(hidden, vocab_size)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[batch, seq, vocab]`` for character indices ``x`` of shape ``[batch, seq]``."""
        h, _ = self.lstm(F.one_hot(x, self.vocab_size).to(self.readout.weight.dtype))
        return self.readout(h)

    def per_char_nll(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-sequence mean NLL ``[batch]`` (its mean is the mean per-character NLL)."""
        logits = self(x)
        nll = F.cross_entropy(logits.reshape(-1, self.vocab_size), y.reshape(-1),
                              reduction="none")
        return nll.view(y.shape).mean(dim=1)

    @torch.no_grad()
    def perplexity(self, x: Tensor, y: Tensor, batch: int = 256) -> float:
        total, count = 0.0, 0
        for i in range(0, x.shape[0], batch):
            nll = self.per_char_nll(x[i:i + batch], y[i:i + batch])
            total += float(nll.sum()) * y.shape[1]
            count += nll.numel() * y.shape[1]
        return float(torch.exp(torch.tensor(total / count)))
