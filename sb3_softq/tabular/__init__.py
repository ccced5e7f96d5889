"""
Tabular Soft Q(λ) in NumPy: the paper's online one-step, n-step and eligibility-trace soft Q-learning algorithms,
soft value iteration and small MDPs to test them on. Needs only NumPy and gymnasium (no PyTorch).
"""

from sb3_softq.tabular.learner import TabularSoftQLambda
from sb3_softq.tabular.mdp import TabularMDP, TabularMDPEnv, frozen_lake_model, random_mdp
from sb3_softq.tabular.returns import multistep_soft_returns, n_step_soft_return, soft_td_errors, trace_coefficients
from sb3_softq.tabular.soft import (
    boltzmann_log_probs,
    boltzmann_probs,
    reference_log_prior,
    soft_value,
    soft_value_iteration,
)

toy_text_model = frozen_lake_model

__all__ = [
    "TabularMDP",
    "TabularMDPEnv",
    "TabularSoftQLambda",
    "boltzmann_log_probs",
    "boltzmann_probs",
    "frozen_lake_model",
    "multistep_soft_returns",
    "n_step_soft_return",
    "random_mdp",
    "reference_log_prior",
    "soft_td_errors",
    "soft_value",
    "soft_value_iteration",
    "toy_text_model",
    "trace_coefficients",
]
