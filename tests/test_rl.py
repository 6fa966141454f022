import json
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from rl.envs import EnvConfig, EnvError, make_vector_env
from rl.evaluation import run_episodes
from rl.policy import EncoderBackbone, EncoderConfig, build_policy
from rl.rollout import collect, gae, start
from rl.task import PPOTask
from selfsup.config import to_object
from tests.conftest import make_cfg, run_cli, train

TINY_VIT = ["task.encoder.model.img_size=56", "task.encoder.model.patch_size=8", "task.encoder.model.embed_dim=32",
            "task.encoder.model.depth=1", "task.encoder.model.num_heads=2"]
# MiniGrid pixels, 2 envs x 16 steps, 4 minibatches of 8, 4 epochs: 16 trainer steps per iteration
SMALL_MINIGRID = ["task.env.id=MiniGrid-Empty-5x5-v0", "task.env.num_envs=2", "task.num_steps=16",
                  "trainer.batch_size=8", "trainer.lr=2.5e-4", "trainer.log_every=1", "trainer.count_flops=false",
                  "trainer.eval_at_end=false", *TINY_VIT]
CARTPOLE_STATE = ["task.env.id=CartPole-v1", "task.env.pixels=false", "task.encoder.kind=flat",
                  "trainer.count_flops=false", "trainer.eps=1e-5", "trainer.grad_clip=0.5"]


# ---------------------------------------------------------------------------------------------- GAE and autoreset


class ScriptedPolicy:
    """Pushes the cart toward the pole's lean (long-ish episodes); value = a fixed function of the state."""

    def embed(self, obs):
        return torch.as_tensor(obs, dtype=torch.float32)

    def value(self, emb):
        return 1.0 + 0.3 * emb.sum(-1) + emb[:, 2] * 5

    def heads(self, emb, update_norm=False):
        right = (emb[:, 2] > 0).float()
        return torch.stack([(1 - right) * 60, right * 60], -1), self.value(emb)


def _episodes(adv: np.ndarray, valid: np.ndarray, done: np.ndarray) -> list[list[float]]:
    """Per env: advantages of each complete episode (valid steps up to and including a done step)."""
    out = []
    for i in range(adv.shape[1]):
        eps, cur = [], []
        for t in range(adv.shape[0]):
            if valid[t, i]:
                cur.append(adv[t, i])
                if done[t, i]:
                    eps.append(cur)
                    cur = []
        out.append(eps)
    return out


def test_gae_under_next_step_autoreset_equals_same_step_computation():
    gamma, lam, T = 0.97, 0.9, 120
    cfg = EnvConfig(id="CartPole-v1", num_envs=3, pixels=False, max_episode_steps=25)  # truncations and terminations
    policy = ScriptedPolicy()
    envs = make_vector_env(cfg)
    carry = start(envs, policy, 3, torch.device("cpu"))
    r, _, _ = collect(envs, policy, carry, T, torch.device("cpu"), torch.Generator(), store_embeddings=True)
    adv = gae(r["rewards"], r["values"], r["terminated"], r["truncated"], r["last_value"], gamma, lam)
    done = (r["terminated"] | r["truncated"]).numpy()
    assert r["truncated"].any() and r["terminated"].any()
    assert (~r["valid"]).sum() == done[:-1].sum()          # exactly one masked autoreset step per episode end
    ours = _episodes(adv.numpy(), r["valid"].numpy(), done)

    # the reference: same-step autoreset, bootstrapping truncations from info["final_obs"]
    ref_envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1", max_episode_steps=25)] * 3,
                                        autoreset_mode=AutoresetMode.SAME_STEP)
    obs, _ = ref_envs.reset(seed=3)
    rew, vals, next_vals, terms, dones = [], [], [], [], []
    for _ in range(T):
        emb = policy.embed(obs)
        logits, v = policy.heads(emb)
        obs, reward, term, trunc, info = ref_envs.step(logits.argmax(-1).numpy())
        d = term | trunc
        nxt = policy.value(policy.embed(obs)).numpy()
        if d.any():
            final = np.stack([info["final_obs"][i] if d[i] else obs[i] for i in range(3)])
            nxt = np.where(d, policy.value(policy.embed(final)).numpy(), nxt)
        rew.append(reward), vals.append(v.numpy()), next_vals.append(nxt), terms.append(term), dones.append(d)
    rew, vals, next_vals, terms, dones = map(np.array, (rew, vals, next_vals, terms, dones))
    ref = np.zeros_like(rew)
    running = np.zeros(3)
    for t in reversed(range(T)):
        delta = rew[t] + gamma * next_vals[t] * (1 - terms[t]) - vals[t]
        running = delta + gamma * lam * (1 - dones[t]) * running
        ref[t] = running
    theirs = _episodes(ref, np.ones_like(dones), dones)
    compared = 0
    for mine, refs in zip(ours, theirs):
        for a, b in zip(mine, refs):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
            compared += 1
    assert compared >= 9


def test_gae_stops_at_termination_and_bootstraps_truncation():
    rewards = torch.tensor([[1.0], [1.0], [0.0]])
    values = torch.tensor([[0.5], [0.5], [2.0]])
    for term, trunc, expected_next in ((True, False, 0.0), (False, True, 2.0)):
        t = torch.tensor([[False], [term], [False]])
        u = torch.tensor([[False], [trunc], [False]])
        adv = gae(rewards, values, t, u, torch.tensor([9.0]), gamma=1.0, lam=1.0)
        assert adv[1, 0] == pytest.approx(1.0 + expected_next - 0.5)   # nothing of step 2 or last_value leaks in
        assert adv[0, 0] == pytest.approx(1.0 + adv[1, 0].item())


# ---------------------------------------------------------------------------------------------- envs and policies


def test_pixel_envs_share_one_layout():
    mg = make_vector_env(EnvConfig(id="MiniGrid-DoorKey-5x5-v0", num_envs=2))
    assert mg.single_observation_space.shape == (1, 56, 56, 3)
    cp = make_vector_env(EnvConfig(id="CartPole-v1", num_envs=1, frame_size=32, history=3))
    obs, _ = cp.reset(seed=0)
    assert obs.shape == (1, 3, 32, 32, 3) and obs.dtype == np.uint8 and obs.max() > obs.min()
    ale = make_vector_env(EnvConfig(id="ALE/Pong-v5", num_envs=2, frame_size=48, history=2, vector="ale"))
    obs, _ = ale.reset(seed=0)
    assert obs.shape == (2, 2, 48, 48, 3)
    for m in (mg, cp, ale):
        m.close()


def test_env_errors_say_what_to_fix():
    with pytest.raises(EnvError, match="unknown env id 'MiniGrid-Nope-v0'"):
        make_vector_env(EnvConfig(id="MiniGrid-Nope-v0"))
    with pytest.raises(EnvError, match="Atari games only"):
        make_vector_env(EnvConfig(id="CartPole-v1", vector="ale"))
    with pytest.raises(ValueError, match="needs pixel observations"):
        build_policy(EncoderConfig(kind="cnn"), (4,), 2)


def test_encoder_modes_choose_what_trains(tmp_path):
    cfg = to_object(make_cfg(PPOTask, TINY_VIT + ["task.encoder.model.depth=2"])).task.encoder
    frozen = build_policy(replace(cfg, mode="frozen"), (1, 56, 56, 3), 7)
    assert not any(p.requires_grad for p in frozen.backbone.parameters())
    partial = build_policy(replace(cfg, mode="partial", last_k=1), (1, 56, 56, 3), 7)
    trainable = {n for n, p in partial.backbone.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("encoder.vit.blocks.1.", "encoder.vit.norm.")) for n in trainable)
    tokens = build_policy(replace(cfg, pool="tokens", compress_dim=3), (2, 56, 56, 3), 7)
    logits, value = tokens(obs=torch.zeros(5, 2, 56, 56, 3, dtype=torch.uint8))
    assert logits.shape == (5, 7) and value.shape == (5,)
    assert tokens.trunk[0].in_features == 2 * 49 * 3       # history x patches x compress_dim
    task = PPOTask(to_object(make_cfg(PPOTask, SMALL_MINIGRID + ["task.encoder.mode=finetune",
                                                                 "task.encoder.lr_scale=0.1"])).task)
    model = task.build_model()
    scales = sorted(g.get("lr_scale", 1.0) for g in task.param_groups(model, 0.0))
    assert scales == [0.1, 1.0]


def _count_embedded(monkeypatch) -> list[int]:
    seen = [0]
    original = EncoderBackbone.forward

    def counting(self, obs):
        seen[0] += obs.shape[0] * obs.shape[1]          # frames: (B, history, H, W, 3)
        return original(self, obs)
    monkeypatch.setattr(EncoderBackbone, "forward", counting)
    return seen


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_frozen_encoder_embeds_each_env_step_once(tmp_path, monkeypatch, mode):
    seen = _count_embedded(monkeypatch)
    train(PPOTask, tmp_path / mode, SMALL_MINIGRID + [f"task.encoder.mode={mode}", "trainer.max_steps=32"])
    rollout_frames = 2 * (2 * 16 + 1)                  # 2 envs x (2 iterations x 16 steps + the bootstrap obs)
    if mode == "frozen":
        assert seen[0] == rollout_frames
    else:                                              # finetuning re-embeds every sample in every epoch
        assert seen[0] == rollout_frames + 2 * 4 * 32


def test_embedding_history_embeds_each_new_frame_once(monkeypatch):
    seen = _count_embedded(monkeypatch)
    cfg = to_object(make_cfg(PPOTask, SMALL_MINIGRID + ["task.env.history=3"])).task
    policy = PPOTask(cfg).build_model().eval()
    envs = make_vector_env(cfg.env)
    cpu, out = torch.device("cpu"), {}
    for reuse in (True, False):
        carry = start(envs, policy, 5, cpu)
        seen[0] = 0
        r, _, _ = collect(envs, policy, carry, 60, cpu, torch.Generator().manual_seed(0), True, reuse_frames=reuse)
        out[reuse] = (r, seen[0])
    torch.testing.assert_close(out[True][0]["emb"], out[False][0]["emb"], atol=1e-4, rtol=1e-4)
    assert torch.equal(out[True][0]["actions"], out[False][0]["actions"])
    assert out[False][1] == 2 * 60 * 3                       # every stack embedded whole
    resets = int((~out[True][0]["valid"]).sum())
    assert out[True][1] == 2 * 60 + resets * 2               # one new frame per step; whole stacks after a reset


# ---------------------------------------------------------------------------------------------- PPO end to end


def test_ppo_learns_cartpole_from_state(tmp_path):
    # 8 envs x 64 steps, 4 minibatches of 128, 4 epochs, 24 iterations = 12,288 env steps
    out = train(PPOTask, tmp_path / "cp", CARTPOLE_STATE + [
        "task.env.num_envs=8", "task.num_steps=64", "trainer.batch_size=128", "trainer.max_steps=384",
        "trainer.lr=2.5e-3", "task.eval_episodes=16", "trainer.log_every=16", "task.obs_norm=true"])
    scores = {r.metric: r.value for r in out["results"]}
    assert scores["return_stochastic"] > 100          # a random policy averages ~22
    assert scores["return_auc"] > 40
    curve = json.loads((tmp_path / "cp" / "figures" / "step_00000384" / "return_curve.json").read_text())
    assert curve["env_steps"][-1] == 24 * 512 and len(curve["return"]) == len(curve["env_steps"])
    assert out["model"].norm.count > 12_000           # observation statistics moved during rollouts


def test_ppo_resume_inside_an_iteration_replays_the_rollout(tmp_path):
    base = CARTPOLE_STATE + ["task.env.num_envs=2", "task.num_steps=32", "trainer.batch_size=16",
                             "trainer.max_steps=32", "trainer.log_every=1", "trainer.eval_at_end=false"]
    train(PPOTask, tmp_path / "full", base)
    train(PPOTask, tmp_path / "cut", base + ["trainer.stop_at=6"])
    train(PPOTask, tmp_path / "cut", base, resume=True)
    losses = lambda d: [json.loads(line)["loss"] for line in (d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    full, cut = losses(tmp_path / "full"), losses(tmp_path / "cut")
    assert len(cut) == 32
    np.testing.assert_allclose(cut[:16], full[:16], rtol=1e-6)   # steps 7..16 replay iteration 0's stored rollout


def test_ppo_rejects_a_minibatch_that_does_not_split_the_rollout(tmp_path):
    with pytest.raises(ValueError, match="must split into minibatches"):
        train(PPOTask, tmp_path / "bad", CARTPOLE_STATE + ["task.env.num_envs=3", "task.num_steps=10",
                                                           "trainer.batch_size=8", "trainer.max_steps=2"])


def test_evaluation_counts_each_envs_first_episodes():
    cfg = EnvConfig(id="CartPole-v1", pixels=False)
    policy = build_policy(EncoderConfig(kind="flat"), (4,), 2)
    a = run_episodes(cfg, policy, 5, seed=7, device=torch.device("cpu"), greedy=True, max_envs=2)
    b = run_episodes(cfg, policy, 5, seed=7, device=torch.device("cpu"), greedy=True, max_envs=2)
    assert len(a) == 5 and a == b and all(r >= 8 for r in a)


@pytest.mark.slow
def test_rl_pretrain_pipeline_end_to_end(tmp_path):
    out = tmp_path / "pipe"
    vit = [s.replace("task.encoder.model.", "task.vit.") for s in TINY_VIT] + \
        ["task.mae.decoder_embed_dim=16", "task.mae.decoder_depth=1", "task.mae.decoder_num_heads=2"]
    args = ["rl-pretrain", "--out", str(out), "--frames", "96",
            "--mae-set", *vit, "trainer.max_steps=3", "trainer.batch_size=32", "task.probe.epochs=1",
            "--ppo-set", "task.env.num_envs=2", "task.num_steps=16", "trainer.batch_size=8", "trainer.max_steps=16",
            "task.eval_episodes=2"]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list((out / "frames").glob("*.png"))) == 96
    saved = (out / "ppo" / "config.yaml").read_text()
    assert f"init: {out / 'mae'}" in saved and "mode: frozen" in saved
    assert json.loads((out / "ppo" / "results.json").read_text())
    again = run_cli(*args)
    assert again.returncode == 0 and again.stdout.count("complete, skipped") == 2


@pytest.mark.slow
def test_ppo_under_torchrun_two_ranks(tmp_path):
    run = tmp_path / "ddp"
    done = run_cli("train", "ppo", "--run-dir", str(run), "--set", *CARTPOLE_STATE, "task.env.num_envs=2",
                   "task.num_steps=16", "trainer.batch_size=16", "trainer.max_steps=32", "trainer.log_every=4",
                   "task.eval_episodes=2", "trainer.progress=false", torchrun=2)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # 16 steps per iteration (4 minibatches of 8 x 4 epochs): 2 iterations
    assert rows[-1]["env_steps"] == 2 * (2 * 16) * 2
    assert json.loads((run / "results.json").read_text())


def test_evaluating_a_checkpoint_restores_the_task_counters(tmp_path):
    from selfsup.harness import evaluate_checkpoint
    small = CARTPOLE_STATE + ["task.env.num_envs=2", "task.num_steps=16", "trainer.batch_size=8",
                              "trainer.max_steps=16", "task.eval_episodes=2", "trainer.progress=false",
                              "trainer.tensorboard=false"]
    train(PPOTask, tmp_path / "run", small)
    cfg = make_cfg(PPOTask, small)
    results = evaluate_checkpoint(PPOTask(to_object(cfg).task), cfg, tmp_path / "run", tmp_path / "eval",
                                  torch.device("cpu"))
    assert {r.metric for r in results} == {"return_deterministic", "return_stochastic", "return_auc"}
    assert all(r.extra["env_steps"] == 32 for r in results)          # one iteration of 2 envs x 16 steps
