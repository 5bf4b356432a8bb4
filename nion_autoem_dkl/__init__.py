"""Deep-kernel active spectroscopy: pure algorithms, no Nion Swift imports.

Candidates (survey patches) -> embedding -> exact GP -> acquisition -> agent.
"""

from __future__ import annotations

from .acquisition import LogExpectedImprovement
from .acquisition import MaxUncertainty
from .acquisition import ThompsonSampling
from .acquisition import UpperConfidenceBound
from .acquisition import gp_ucb_beta
from .acquisition import log_expected_improvement
from .acquisition import noisy_incumbent
from .acquisition import upper_confidence_bound
from .agent import AgentConfig
from .agent import DKLAgent
from .batch import condition_on
from .batch import select_batch
from .calibration import ProspectiveCoverage
from .calibration import interval_coverage
from .candidates import Candidates
from .candidates import extract_patches
from .constraints import affordable_mask
from .constraints import exclusion_mask
from .constraints import unvisited_mask
from .deep import DeepEmbedding
from .embedding import PatchEmbedding
from .embedding import pca_features
from .posterior import Posterior
from .stopping import StoppingRule
from .surrogate import CandidateGP

__all__ = [
    "AgentConfig",
    "CandidateGP",
    "Candidates",
    "DKLAgent",
    "DeepEmbedding",
    "LogExpectedImprovement",
    "MaxUncertainty",
    "PatchEmbedding",
    "Posterior",
    "ProspectiveCoverage",
    "StoppingRule",
    "ThompsonSampling",
    "UpperConfidenceBound",
    "affordable_mask",
    "condition_on",
    "exclusion_mask",
    "extract_patches",
    "gp_ucb_beta",
    "interval_coverage",
    "log_expected_improvement",
    "noisy_incumbent",
    "pca_features",
    "select_batch",
    "unvisited_mask",
    "upper_confidence_bound",
]
