"""CLIP under DDP on 2 gloo ranks equals one process on the global batch: the loss and its gradients (open_clip's
ClipLoss with gathered-with-gradient features, global or local loss, and SigLIP's ring of ranks), and the trained
weights of `selfsup train clip`."""
import json
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from multimodal.clip import CLIP, build_loss
from selfsup.checkpoint import latest_checkpoint, load_weights

from conftest import run_cli

pytestmark = pytest.mark.slow
GLOBAL_BATCH, WORLD = 8, 2


class ImageTower(nn.Module):
    embed_dim = 6

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 6)

    def forward(self, x):
        return {"cls": self.fc(x)}


class TextTower(nn.Module):
    embed_dim = 6

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 6)

    def forward(self, input_ids, attention_mask):
        m = attention_mask.unsqueeze(-1).float()
        return {"cls": (self.emb(input_ids) * m).sum(1) / m.sum(1)}


def model_and_batch(loss: str):
    torch.manual_seed(0)
    model = CLIP(ImageTower(), TextTower(), embed_dim=4, loss=loss)
    g = torch.Generator().manual_seed(1)
    images = torch.randn(GLOBAL_BATCH, 10, generator=g)
    ids = torch.randint(20, (GLOBAL_BATCH, 5), generator=g)
    mask = (torch.arange(5) < torch.randint(1, 6, (GLOBAL_BATCH, 1), generator=g)).long()
    return model, (images, ids, mask)


CASES = {"clip": ("clip", False), "clip-local-loss": ("clip", True), "siglip": ("siglip", False)}


def rank_worker(rank: int, init_file: str, out_dir: str):
    """Every case on this rank's half of the global batch; rank 0 saves the mean loss and the averaged gradients."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        for case, (loss, local) in CASES.items():
            model, batch = model_and_batch(loss)
            ddp = nn.parallel.DistributedDataParallel(model)
            n = GLOBAL_BATCH // WORLD
            value = build_loss(loss, local)(**ddp(*(b[rank * n:(rank + 1) * n] for b in batch)))
            value.backward()                       # DDP averages the gradients over ranks
            mean = value.detach().clone()
            dist.all_reduce(mean)                  # the trainer logs the count-weighted mean over ranks
            if rank == 0:
                torch.save({"loss": mean / WORLD, "grads": {k: p.grad for k, p in model.named_parameters()}},
                           f"{out_dir}/{case}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(rank_worker, args=(tempfile.mktemp(dir=out), str(out)), nprocs=WORLD, join=True)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_two_gloo_ranks_equal_one_process_loss_and_gradients(two_ranks, case):
    loss, local = CASES[case]
    model, batch = model_and_batch(loss)
    single = build_loss(loss, local)(**model(*batch))
    single.backward()
    ranks = torch.load(two_ranks / f"{case}.pt", weights_only=True)
    torch.testing.assert_close(ranks["loss"], single.detach(), rtol=1e-5, atol=1e-6)
    for k, p in model.named_parameters():
        torch.testing.assert_close(ranks["grads"][k], p.grad, rtol=1e-5, atol=1e-6, msg=lambda m: f"{k}: {m}")


COMMON = ["trainer.eps=0.001", "trainer.grad_clip=0",
          "task.vision_model.img_size=16", "task.vision_model.embed_dim=32", "task.vision_model.depth=2",
          "task.vision_model.num_heads=2", "task.text_model.hidden_size=32", "task.text_model.num_layers=1",
          "task.text_model.num_heads=2", "task.text_model.intermediate_size=64", "task.text_model.dropout=0",
          "task.vocab_size=200", "task.embed_dim=16", "task.data.num_train=64", "task.data.num_eval=8",
          "trainer.max_steps=3", "trainer.batch_size=16", "trainer.lr=0.002", "trainer.log_every=1",
          "trainer.eval_at_end=false", "trainer.count_flops=false", "trainer.progress=false",
          "trainer.tensorboard=false"]


def test_clip_task_on_two_ranks_trains_like_one_process(tmp_path):
    env = {"SELFSUP_CACHE": str(tmp_path / "cache")}
    runs = {}
    for ranks in (0, 2):
        runs[ranks] = tmp_path / f"ranks{ranks}"
        out = run_cli("train", "clip", "--run-dir", str(runs[ranks]), "--set", *COMMON, env=env, torchrun=ranks)
        assert out.returncode == 0, out.stderr[-3000:]
    a, b = (load_weights(latest_checkpoint(runs[r] / "checkpoints") / "model.safetensors") for r in (0, 2))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=lambda m: f"{k}: {m}")
    losses = [[json.loads(x)["loss"] for x in (runs[r] / "metrics.jsonl").read_text().splitlines()] for r in (0, 2)]
    assert len(losses[0]) == 3
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=1e-5, atol=1e-6)
