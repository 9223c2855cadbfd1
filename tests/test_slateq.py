"""SlateQ: the long-term optimum of a known session MDP, its myopic twin, double-Q targets
against a numpy oracle, exact save/load, and input checks. (The shared contract suite in
tests/test_policies.py runs it too, by name.)"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from policies import make

# Two items, one state: the tempting item pays 1 now and ends the session; the patient item
# pays 0.6 and keeps the user. Q* with gamma = 0.9: patient 0.6 / (1 - 0.9) = 6, tempting 1
# (patient forever is optimal); with gamma = 0: tempting 1, patient 0.6 (myopic optimum).
TEMPT, PATIENT = [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]
PHI = np.array([TEMPT, PATIENT])


def learn(gamma, seed=0, steps=60, b=64, **params):
    """``steps`` rounds of ``b`` sessions deciding with the policy's own probabilities."""
    p = make("slateq", n_features=3, seed=seed, gamma=gamma, **params)
    rng = np.random.default_rng(seed)
    phi = np.broadcast_to(PHI, (b, 2, 3))
    for _ in range(steps):
        probs = p.act(phi)
        a = (rng.random(b) < probs[:, 1]).astype(np.int64)
        r = np.where(a == 0, 1.0, 0.6)
        p.learn_transitions(PHI[a], r, probs[np.arange(b), a], phi, None, a == 0)
    return p


@pytest.mark.parametrize(("gamma", "q_star", "best"), [(0.9, [1.0, 6.0], 1), (0.0, [1.0, 0.6], 0)])
def test_learns_the_long_term_optimum_and_the_myopic_twin_the_myopic_one(gamma, q_star, best):
    p = learn(gamma)
    # seeds 0-5 all land within 0.09 of Q*; ignoring `done` would give the tempting item
    # 6.4, ignoring the bootstrap the patient one 0.6
    np.testing.assert_allclose(p.q_values(PHI), q_star, atol=0.15)
    probs = p.act(PHI[None])[0]
    assert probs[best] > 0.9, probs  # the softmax at the default temperature plus the 5% floor
    assert probs[1 - best] >= p.epsilon / 2  # explored, honestly reported


def test_update_learns_terminal_transitions():
    p = make("slateq", n_features=3, seed=1, gamma=0.9)
    rng = np.random.default_rng(1)
    for _ in range(40):
        a = rng.integers(2, size=64)
        p.update(PHI[a], np.where(a == 0, 1.0, 0.6), np.full(64, 0.5))
    np.testing.assert_allclose(p.q_values(PHI), [1.0, 0.6], atol=0.1)  # nothing follows


def oracle_targets(p, r, nx, nmask, done):
    """The double-Q slate target in numpy: top L by the online network, valued by the
    target network, 1/L of the next state's value per slot."""
    online = np.where(nmask, p.q_values(nx), -np.inf)
    target = p.q_values(nx, target=True)
    out = []
    for i in range(len(r)):
        top = np.argsort(-online[i], kind="stable")[:p.slate_size]
        top = top[nmask[i, top]]
        out.append(r[i] + p.gamma / p.slate_size * (1 - done[i]) * target[i, top].sum())
    return np.array(out)


@pytest.mark.parametrize("slate_size", [1, 2])
def test_double_q_targets_match_the_oracle(slate_size):
    p = learn(0.9, steps=8, slate_size=slate_size, tau=0.1)
    rng = np.random.default_rng(3)
    nx = rng.normal(size=(32, 5, 3))
    nmask = rng.random((32, 5)) < 0.6
    nmask[:, 0] = True
    nmask[:4, 1:] = False  # fewer valid candidates than slots
    done = rng.random(32) < 0.3
    r = rng.random(32)
    assert not np.allclose(p.q_values(nx), p.q_values(nx, target=True))  # they differ
    np.testing.assert_allclose(p.td_targets(r, nx, nmask, done),
                               oracle_targets(p, r, nx, nmask, done), rtol=1e-5, atol=1e-5)


def test_save_load_resumes_identical_decisions_and_learning():
    p = learn(0.9, steps=5)
    q = make("slateq", n_features=3, seed=0, gamma=0.9).load_state_dict(p.state_dict())
    r = pickle.loads(pickle.dumps(p))
    rng = np.random.default_rng(7)
    phi = rng.normal(size=(16, 4, 3))
    for other in (q, r):
        np.testing.assert_array_equal(p.act(phi), other.act(phi))
    for pol in (p, q, r):  # learning continues identically: buffer, networks, optimizer, RNG
        x = np.random.default_rng(8).normal(size=(64, 3))
        pol.learn_transitions(x, x[:, 0], np.full(64, 0.5), phi[np.arange(64) % 16],
                              None, np.arange(64) % 3 == 0)
    assert p.train_count == q.train_count == r.train_count == 6
    for other in (q, r):
        np.testing.assert_array_equal(p.act(phi), other.act(phi))
        np.testing.assert_array_equal(p.q_values(phi, target=True),
                                      other.q_values(phi, target=True))


BAD = [
    ({"next_phi": np.zeros((2, 3, 2))}, ValueError, r"^next_phi: must have shape \(2, K, 3\)"),
    ({"next_mask": np.ones((2, 4), bool)}, ValueError, r"^next_mask: must have shape \(2, 3\)"),
    ({"next_mask": np.ones((2, 3))}, TypeError, "^next_mask: must be boolean"),
    ({"done": [0, 2]}, ValueError, r"^done: must have shape \(2,\) and hold booleans or 0/1"),
    ({"done": [False, False], "next_mask": np.array([[1, 0, 0], [0, 0, 0]], bool)}, ValueError,
     "^next_mask: row 1 is not done and has no next candidate"),
    ({"next_phi": np.full((2, 3, 3), np.nan)}, ValueError, "^next_phi: must be finite"),
    ({"propensities": [0.5, 0.0]}, ValueError, r"^propensities: must lie in \(0, 1\]"),
    ({"phi": np.zeros((2, 4))}, ValueError, r"^next_phi: must have shape \(2, K, 4\)|^phi"),
]


@pytest.mark.parametrize(("change", "exc", "message"), BAD)
def test_bad_transitions_raise_errors_that_name_the_argument(change, exc, message):
    p = make("slateq", n_features=3, seed=0)
    args = {"phi": np.zeros((2, 3)), "rewards": [1.0, 0.0], "propensities": [0.5, 0.5],
            "next_phi": np.zeros((2, 3, 3)), "next_mask": None, "done": [True, False]}
    with pytest.raises(exc, match=message):
        p.learn_transitions(**{**args, **change})
    assert p.version == 0 and p._filled == 0  # nothing was half-applied


@pytest.mark.parametrize(("params", "message"), [
    ({"gamma": 1.0}, "gamma: must be < 1.0 (got 1.0)"),
    ({"gamma": -0.1}, "gamma: must be >= 0.0 (got -0.1)"),
    ({"tau": 0.0}, "tau: must be > 0.0 (got 0.0)"),
    ({"slate_size": 0}, "slate_size: must be >= 1 (got 0)"),
    ({"epsilon": 0.0, "temperature": 0.0}, "epsilon: must be > 0 when temperature is 0"),
    ({"device": "tpu"}, "device: must be 'auto', 'cpu' or 'cuda' (got 'tpu')"),
])
def test_hyperparameters_are_validated_by_name(params, message):
    with pytest.raises(ValueError) as err:
        make("slateq", n_features=3, **params)
    assert str(err.value).startswith(message)


def test_greedy_with_a_floor_and_masks():
    p = make("slateq", n_features=3, seed=0, temperature=0.0, epsilon=0.2)
    phi = np.random.default_rng(0).normal(size=(2, 4, 3))
    mask = np.array([[True, True, False, True], [True, False, False, False]])
    probs = p.act(phi, mask)
    assert sorted(probs[0, mask[0]].round(6).tolist()) == [0.066667, 0.066667, 0.866667]
    assert probs[1].tolist() == [1.0, 0.0, 0.0, 0.0] and probs[0, 2] == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_learns_the_same_optimum_and_moves_to_the_cpu():
    p = learn(0.9, device="cuda", train_steps=16)  # steps 4-16 replay a CUDA graph
    assert p.torch_device.startswith("cuda")
    np.testing.assert_allclose(p.q_values(PHI), [1.0, 6.0], atol=0.15)
    q = make("slateq", n_features=3, seed=0, gamma=0.9, device="cpu")
    q.load_state_dict(p.state_dict())
    np.testing.assert_allclose(q.act(PHI[None]), p.act(PHI[None]))
    q.train()  # the optimizer's state came over too


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_a_device_is_refused():
    with pytest.raises(ValueError, match="^device: 'cuda' requested but torch sees no CUDA"):
        make("slateq", n_features=2, device="cuda")
    assert make("slateq", n_features=2, device="auto").torch_device == "cpu"


# A session MDP whose state matters: fresh, the tempting item pays 1 and tires the user;
# tired, either item pays 0.2 and the session ends; the patient item pays 0.6 and keeps the
# user fresh, and the session ends after it with probability 0.1. Features: [tempting,
# patient, tired, tired * tempting, tired * patient, 1]. Patient while fresh returns 0.6 a
# step for 10 steps on average (6.0); the myopic choice returns 1 + 0.2 = 1.2.
def state_phi(tired: np.ndarray) -> np.ndarray:
    t = tired.astype(float)[:, None]
    items = np.array([[1.0, 0.0], [0.0, 1.0]])
    return np.concatenate([np.broadcast_to(items, (len(t), 2, 2)),
                           np.repeat(t[:, None], 2, 1), t[:, None] * items,
                           np.ones((len(t), 2, 1))], axis=2)


def run_sessions(p, rng, b=64, rounds=50, learn=True) -> float:
    """``rounds`` steps of ``b`` concurrent sessions (an ended one restarts fresh); the mean
    return of the sessions that ended."""
    tired = np.zeros(b, bool)
    ret, returns = np.zeros(b), []
    for _ in range(rounds):
        phi = state_phi(tired)
        probs = p.act(phi)
        a = (rng.random(b) < probs[:, 1]).astype(np.int64)  # 1: patient
        r = np.where(tired, 0.2, np.where(a == 0, 1.0, 0.6))
        done = tired | ((a == 1) & (rng.random(b) < 0.1))
        nxt = ~tired & (a == 0)  # the tempted get tired; done rows restart fresh
        if learn:
            p.learn_transitions(phi[np.arange(b), a], r, probs[np.arange(b), a],
                                state_phi(nxt), None, done)
        ret += r
        returns += ret[done].tolist()
        ret[done] = 0.0
        tired = nxt & ~done
    return float(np.mean(returns))


@pytest.mark.parametrize("seed", [0, 1])
def test_state_dependent_session_mdp_long_term_beats_the_myopic_twin(seed):
    rng = np.random.default_rng(seed)
    returns = {}
    for gamma in (0.9, 0.0):
        p = make("slateq", n_features=6, seed=seed, gamma=gamma)
        run_sessions(p, rng)
        returns[gamma] = run_sessions(p, rng, rounds=100, learn=False)
    # long term near 6.0 (less the 5% uniform floor), myopic near 1.2; a policy that
    # ignored `done` or the state would not separate them by this much
    assert returns[0.9] > 4.0 and returns[0.0] < 2.0, returns
