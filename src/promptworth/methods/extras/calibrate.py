"""Contextual calibration (Zhao et al. 2021): label probabilities divided by their mean over content-free inputs."""

from __future__ import annotations

import torch


def calibrate(scores: torch.Tensor, content_free_scores: torch.Tensor) -> torch.Tensor:
    """Contextual calibration (Zhao et al. 2021): label log-probabilities (a softmax over
    ``scores``' labels) minus the log of the content-free inputs' mean probabilities, normalised
    again; i.e. ``q = normalise(p / mean_cf(p_cf))``, in log space. Both are (examples, labels)."""
    reference = torch.softmax(content_free_scores.float(), dim=-1).mean(dim=0)
    return torch.log_softmax(torch.log_softmax(scores.float(), dim=-1) - torch.log(reference), dim=-1)
