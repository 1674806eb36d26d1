"""Shallow baseline: multinomial logistic regression on per-clip log-mel band statistics.

It is fitted on the network's training split and scored on the same evaluation split, so users see
what the network adds over a linear model on summary features.
"""

from __future__ import annotations

import torch
from torch import nn

BASELINE_DESCRIPTION = "multinomial logistic regression on the mean and std of each log-mel band"


def clip_statistics(log_mel: torch.Tensor) -> torch.Tensor:
    """(n, 1, n_mels, frames) dB log-mel -> (n, 2 * n_mels) band means then band standard deviations."""
    bands = log_mel[:, 0]
    return torch.cat([bands.mean(dim=-1), bands.std(dim=-1, correction=0)], dim=1)


class LogisticBaseline:
    def __init__(self, n_labels: int, l2: float = 1e-3, max_iterations: int = 200) -> None:
        self.n_labels = n_labels
        self.l2 = l2
        self.max_iterations = max_iterations
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self.linear: nn.Linear | None = None

    def fit(self, features: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor) -> LogisticBaseline:
        features = features.double()
        self.mean = features.mean(dim=0)
        self.std = features.std(dim=0, correction=0).clamp_min(1e-6)
        inputs = (features - self.mean) / self.std
        linear = nn.Linear(inputs.shape[1], self.n_labels).double()
        nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)
        loss_fn = nn.CrossEntropyLoss(weight=class_weights.double())
        optimizer = torch.optim.LBFGS(
            linear.parameters(), lr=1.0, max_iter=self.max_iterations, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = loss_fn(linear(inputs), targets) + self.l2 * linear.weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        self.linear = linear
        return self

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        if self.linear is None or self.mean is None or self.std is None:
            raise RuntimeError("fit the baseline before predicting")
        with torch.no_grad():
            inputs = (features.double() - self.mean) / self.std
            return torch.softmax(self.linear(inputs), dim=1).float()


RIDGE_DESCRIPTION = "ridge regression on the mean and std of each log-mel band"


class RidgeBaseline:
    """Closed-form ridge regression on standardised clip statistics; predictions clipped to [0, 1]."""

    def __init__(self, l2: float = 1.0) -> None:
        self.l2 = l2
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self.weights: torch.Tensor | None = None
        self.bias = 0.0

    def fit(self, features: torch.Tensor, targets: torch.Tensor) -> RidgeBaseline:
        features, targets = features.double(), targets.double()
        self.mean = features.mean(dim=0)
        self.std = features.std(dim=0, correction=0).clamp_min(1e-6)
        inputs = (features - self.mean) / self.std
        self.bias = float(targets.mean())
        gram = inputs.T @ inputs + self.l2 * torch.eye(inputs.shape[1], dtype=torch.float64)
        self.weights = torch.linalg.solve(gram, inputs.T @ (targets - self.bias))
        return self

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        if self.weights is None or self.mean is None or self.std is None:
            raise RuntimeError("fit the baseline before predicting")
        inputs = (features.double() - self.mean) / self.std
        return (inputs @ self.weights + self.bias).clamp(0.0, 1.0)
