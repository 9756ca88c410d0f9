"""Recurrent set readers for black-box learners."""

from __future__ import annotations

from torch import Tensor, nn

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class SetReader(nn.Module):
    """Reads a sequence ``(T, K, in_features)`` and returns the last hidden state ``(T, hidden)``."""

    def __init__(self, in_features: int, hidden: int, *, cell: str = "lstm"):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        self.rnn = CELLS[cell](in_features, hidden, batch_first=True)

    def forward(self, sequence: Tensor) -> Tensor:
        outputs, _ = self.rnn(sequence)
        return outputs[:, -1]
