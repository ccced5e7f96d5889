"""
What is learned is right: on a small random MDP with one-hot observations and a linear Q-network (``net_arch=[]``,
so any Q-table is representable), with data from a uniform-random behaviour policy, the deep learners' Q approaches
the soft-optimal Q* of soft value iteration.

Off-policy, every trace converges to Q*, the Boltzmann trace (c = lambda) included. This is a property of the soft
operator, not an accident of the test: with V and pi_B computed from the same Q, Q(s,a) - tau*log(pi_B(a|s)/pibar(a|s))
= V(s) for *every* action (path consistency), so the expected soft TD error at Q* is zero whatever the behaviour
policy, and Q* is the unique fixed point of E_mu[sum_k prod(gamma*c) delta_k] = 0 for any trace coefficients that do
not depend on later rewards. What the off-policy corrections buy is contraction (stability) of the operator, not a
different fixed point.
"""

import numpy as np
import pytest
import torch as th

from sb3_softq import SoftQ, SoftQLambda
from sb3_softq.tabular import TabularMDPEnv, random_mdp

N_STATES, N_ACTIONS = 6, 3
GAMMA = 0.9
ENT_COEF = 0.5
#: Max-norm tolerance on |Q - Q*| (Q* lies in [4.4, 7.9] for this MDP)
TOLERANCE = 0.2


def learned_q_error(model_class: type[SoftQ], total_timesteps: int, **kwargs) -> float:
    mdp = random_mdp(N_STATES, N_ACTIONS, seed=0, branching=2)
    optimal_q = mdp.soft_q_values(GAMMA, ENT_COEF)
    env = TabularMDPEnv(mdp, max_episode_steps=20, one_hot=True)
    model = model_class(
        "MlpPolicy",
        env,
        learning_rate=lambda progress_remaining: 1e-2 * progress_remaining,
        gamma=GAMMA,
        ent_coef=ENT_COEF,
        # epsilon = 1: the behaviour policy is uniform throughout, whatever is learned
        exploration_initial_eps=1.0,
        exploration_final_eps=1.0,
        learning_starts=500,
        train_freq=1,
        gradient_steps=2,
        target_update_interval=50,
        buffer_size=20_000,
        policy_kwargs=dict(net_arch=[]),
        seed=0,
        **kwargs,
    )
    model.learn(total_timesteps)
    with th.no_grad():
        learned_q = model.policy.q_values(th.eye(N_STATES)).numpy()
    return float(np.abs(learned_q - optimal_q).max())


def test_softq_learns_soft_optimal_q() -> None:
    assert learned_q_error(SoftQ, 6_000, batch_size=64) < TOLERANCE


@pytest.mark.slow
def test_every_trace_learns_soft_optimal_q_off_policy() -> None:
    errors = {
        trace: learned_q_error(SoftQLambda, 10_000, batch_size=8, sequence_length=8, trace=trace, trace_lambda=0.9)
        for trace in ("tree_backup", "retrace", "importance_sampling", "boltzmann")
    }
    assert max(errors.values()) < TOLERANCE, errors
