"""Configs of runs saved before the ViT / method split, read in the current layout (``migrate_config`` of the tasks,
applied by ``selfsup.config.load_saved``): nothing saved is lost when a layout changes.

Before it, one flat ``MAEConfig`` described the encoder and MAE's decoder at once, under ``task.model`` (mae,
vit-finetune), ``task.vision_model`` (caption) and ``task.encoder.model`` (ppo). Now a ``ViTConfig`` holds the
encoder (``task.vit``, ``vision_model``, ``encoder.model``) and MAE's own settings live in ``task.mae``.
"""
from __future__ import annotations

FLAT_MAE = {"decoder_embed_dim", "decoder_depth", "decoder_num_heads", "mask_ratio", "norm_pix_loss"}


def is_flat_mae(section) -> bool:
    """A dict holding the old flat MAEConfig (the encoder's fields beside MAE's decoder fields)."""
    return isinstance(section, dict) and bool(FLAT_MAE & set(section)) and "embed_dim" in section


def split_flat_mae(section: dict) -> tuple[dict, dict]:
    """(the ViTConfig fields, the MAE fields) of an old flat MAEConfig; anything else is left to the schema check."""
    vit = {k: v for k, v in section.items() if k not in FLAT_MAE}
    return vit, {k: v for k, v in section.items() if k in FLAT_MAE}


def migrate_vit_section(data: dict, *path: str, mae_to: str | None = None) -> dict:
    """The flat MAEConfig at ``data[path...]`` becomes a ViTConfig there; its MAE fields move to ``task.<mae_to>``
    (MAE's own runs) or are dropped (where only the encoder was ever used)."""
    parent = data
    for key in path[:-1]:
        parent = parent.get(key) if isinstance(parent, dict) else None
    if not isinstance(parent, dict) or not is_flat_mae(parent.get(path[-1])):
        return data
    vit, mae = split_flat_mae(parent[path[-1]])
    parent[path[-1]] = vit
    if mae_to is not None:
        data["task"].setdefault(mae_to, {}).update(mae)
    return data


def migrate_model_to_vit(data: dict, mae_to: str | None = None) -> dict:
    """mae / vit-finetune: ``task.model`` (flat MAEConfig) -> ``task.vit`` (+ ``task.mae``)."""
    task = data.get("task")
    if isinstance(task, dict) and is_flat_mae(task.get("model")) and "vit" not in task:
        task["vit"] = task.pop("model")
        migrate_vit_section(data, "task", "vit", mae_to=mae_to)
    return data
