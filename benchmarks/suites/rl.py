"""PPO on MiniGrid from pixels: the policy columns, each vision method's in-domain pretraining on env frames, and
the `rl` suite (the RL evidence: five seeds on one in-domain pretraining per method)."""
from __future__ import annotations

from rl.pipeline import in_domain_mae, in_domain_vit

from ..matrix import RANDOM, Budget, Evaluation, Evidence, Metric, Representation, Suite, Train

ENV = "MiniGrid-Empty-5x5-v0"
FRAMES = f"{{frames:{ENV}}}"
# per vision task: its overrides for pretraining on MiniGrid frames (56 px, one patch per tile); a task without
# an entry has no PPO cells
MINIGRID = {"mae": in_domain_mae(FRAMES), "simmim": in_domain_vit(FRAMES), "data2vec": in_domain_vit(FRAMES)}
PPO = ("task.eval_episodes=32", f"task.env.id={ENV}", "task.encoder.init={run}")
RL_BUDGET = "pretraining 1,500 steps, ppo 320 steps (20,480 env steps)"

SCRATCH_CNN = Representation("scratch-cnn", "image", label="NatureCNN from scratch", baseline=True,
                             only=("ppo",), extra={"ppo": ("task.encoder.kind=cnn",)})


def ppo_column(steps: int, seeds: int = 0, evidence: Evidence | None = None, finetune: bool = False) -> Evaluation:
    """PPO's mean training return (learning speed) with the representation's MiniGrid encoder, frozen or finetuned."""
    mode = ("task.encoder.mode=finetune",) if finetune else ()
    return Evaluation("ppo-finetune" if finetune else "ppo", "image", "minigrid", Metric("return_auc", ENV, "train"),
                      Train("ppo", "minigrid", PPO + mode, Budget(steps=steps)),
                      label=f"PPO return ({'finetuned' if finetune else 'frozen'})", aggregate="iqm", seeds=seeds,
                      evidence=evidence)


# the RL evidence in RESULTS.md (its arms as columns, rows dataset/metric)
RL_EVIDENCE = Evidence("leaderboard-rl", RL_BUDGET, {"mae": "mae-frozen", "random-vit": "random-vit-frozen",
                                                     "scratch-cnn": "scratch-cnn"}, ENV, "return_auc", "train")


def rl(data=None) -> Suite:
    """The RL evidence: 20,480 env steps per policy run, five seeds on one in-domain MAE."""
    return Suite("rl", (
        Representation("mae", "image", {"minigrid": Train("mae", "tiny", MINIGRID["mae"], Budget(steps=1500))},
                       label="MAE (in-domain)"),
        Representation("random-vit", "image", {"minigrid": Train("mae", "tiny", MINIGRID["mae"], RANDOM)},
                       label="random ViT", baseline=True, only=("ppo",)),
        SCRATCH_CNN,
    ), (ppo_column(320), ppo_column(320, finetune=True)),
        seeds=5, shared=("minigrid",), description="PPO on MiniGrid from 56x56 RGB views, 20,480 env steps per run")
