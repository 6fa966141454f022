"""The text objectives as rows (issues 14 and 16): BERT's MLM+NSP, ALBERT's MLM+SOP, RoBERTa's MLM, ELECTRA and
data2vec 2.0 on one tokenizer and encoder at equal training time, random weights of the BERT and ELECTRA
architectures and a bag-of-words baseline; pretrained on the standard library's docstrings and on Tiny
Shakespeare, finetuned on SST-2; and the `language` suite."""
from __future__ import annotations

from pathlib import Path

from ..matrix import RANDOM, Budget, Evaluation, Metric, Representation, Suite, Train, checkpoints_along

# Equal training time per objective on this CPU: steps in the ratio of their measured time per step
# (`selfsup bench --suite objectives --size tiny --batch 64 --steps 3 --repeats 6` with OMP_WAIT_POLICY=PASSIVE: the
# `bert --preset tiny` model and batch on the stdlib corpus, interleaved in one process, 2026-11-29: MLM+NSP 1.00,
# MLM+SOP 1.00, MLM 1.02, ELECTRA 1.52, data2vec 1.42). Time rather than counted FLOPs: ELECTRA's step runs a
# generator, samples replacements and scores every position, whose cost on a CPU its FLOP count does not tell
# (0.033 TFLOP/s against MLM's 0.046 in that run).
TEXT_SPEED = {"mlm+nsp": 1.00, "mlm+sop": 1.00, "mlm": 1.02, "electra": 1.52, "data2vec": 1.42}
OBJECTIVES = {"mlm+nsp": ("bert", "BERT MLM+NSP"), "mlm+sop": ("bert-sop", "MLM+SOP (ALBERT)"),
              "mlm": ("bert-mlm", "MLM (RoBERTa)"), "electra": ("electra", "ELECTRA"),
              "data2vec": ("data2vec-text", "data2vec 2.0 (text)")}     # objective -> (row name, label)
SHAKESPEARE = Path("tinyshakespeare") / "input.txt"
SST2 = Path("glue") / "SST-2"
SST2_ALONG = 3          # SST-2 is also finetuned from the stdlib pretrainings at 1/3 and 2/3 of their budget


def equal_time(base_steps: int) -> dict[str, Budget]:
    """Each objective's steps for the training time of ``base_steps`` MLM+NSP steps."""
    return {o: Budget(steps=round(base_steps / speed)) for o, speed in TEXT_SPEED.items()}


def corpora(data: Path | None) -> dict[str, tuple[str, ...]]:
    """Pretraining domain -> its corpus overrides: the embedded stdlib docstrings, and Tiny Shakespeare when
    ../shared/data has it."""
    out = {"stdlib": ()}
    if data is not None and (data / SHAKESPEARE).is_file():
        out["shakespeare"] = ("task.corpus.format=text", f"task.corpus.path={data / SHAKESPEARE}")
    return out


def text_rep(objective: str, budget: Budget, domains: dict[str, tuple[str, ...]], along: int = 0,
             evaluations: int = 0) -> Representation:
    """An objective (random weights with budget RANDOM) pretrained on each corpus; on stdlib evaluated and
    checkpointed ``along`` times (for the columns made along the way) or evaluated ``evaluations`` times."""
    name, label = OBJECTIVES[objective]
    if budget == RANDOM:
        name, label = f"random-{'electra' if objective == 'electra' else 'bert'}", \
            f"random {'ELECTRA' if objective == 'electra' else 'BERT'}"
    pretrain = {}
    for domain, corpus in domains.items():
        extra = ()
        if domain == "stdlib" and budget != RANDOM:
            extra = checkpoints_along(budget, along) if along else \
                (f"trainer.eval_every={budget.steps // evaluations}",) if evaluations else ()
        pretrain[domain] = Train("bert", "tiny", (f"task.objective={objective}",) + corpus + extra, budget)
    return Representation(name, "text", pretrain, label=label, baseline=budget == RANDOM)


def text_rows(data: Path | None, base_steps: int = 1000) -> list[Representation]:
    """Every objective at equal training time (MLM+NSP at the tiny preset's 1,000 steps), checkpointed along the
    stdlib pretraining for the SST-2-against-minutes figure, and random weights of both architectures."""
    domains, budgets = corpora(data), equal_time(base_steps)
    along = SST2_ALONG if sst2(data) else 0
    return [text_rep(o, budgets[o], domains, along) for o in OBJECTIVES] + \
        [text_rep(o, RANDOM, domains) for o in ("mlm+nsp", "electra")]


def bert_decoder(data: Path | None) -> Representation:
    """The MLM+NSP row pretrained on stdlib alone: what captioning and CLIP take as their text tower
    (`{export:bert@stdlib}`), the same run as the `language` suite's."""
    bert = next(r for r in text_rows(data) if r.name == "bert")
    return Representation(bert.name, bert.kind, {"stdlib": bert.pretrain["stdlib"]}, label=bert.label)


def sst2(data: Path | None) -> Path | None:
    return data / SST2 if data is not None and (data / SST2 / "train.tsv").is_file() else None


def text_columns(data: Path | None, domains=("stdlib",)) -> list[Evaluation]:
    """SST-2 finetuning from each corpus's export (with the data), the topic probe (stdlib), MLM accuracy where
    the objective has an MLM head, and training speed."""
    cols = []
    sst = sst2(data)
    names = {"stdlib": "stdlib", "shakespeare": "Shakespeare"}
    for domain in domains:
        suffix = "" if domain == "stdlib" else f"-{domain}"
        if sst:
            cols.append(Evaluation(f"sst2{suffix}", "text", domain, Metric("accuracy", "glue-sst2", "dev"),
                                   Train("glue", "tiny", ("task.name=sst2", f"task.data_dir={sst}",
                                                          "task.init={export}")),
                                   label=f"SST-2 dev, pretrained on {names[domain]}",
                                   along=SST2_ALONG if domain == "stdlib" else 0))
        if domain == "stdlib":
            cols.append(Evaluation("topic", "text", "stdlib",
                                   Metric("linear_probe_top1_mean", "stdlib-corpus-topics", "test"),
                                   label="topic probe", tasks=("bert",)))
        dataset = "stdlib-corpus" if domain == "stdlib" else "text-corpus"
        cols.append(Evaluation(f"mlm{suffix}", "text", domain, Metric("mlm_accuracy", dataset, "valid"),
                               label=f"MLM accuracy ({names[domain]}; ELECTRA: its generator)", tasks=("bert",),
                               where_defined=True))
    cols.append(Evaluation("tok-per-s", "text", "stdlib", Metric("tokens_per_s", log=True), label="train tokens/s",
                           ranked=False, trained_only=True, digits=0, tasks=("bert",)))
    return cols


# The bag-of-words logistic regression every `glue` run scores beside its own model (same train and dev split),
# read from the random BERT's runs: the bar any encoder has to clear.
def bow_row(columns: list[Evaluation]) -> Representation:
    return Representation("bow", "text", label="bag-of-words logistic regression", baseline=True,
                          reads="random-bert", metrics={c.name: Metric("bow_logreg_accuracy", "glue-sst2", "dev")
                                                        for c in columns if c.name.startswith("sst2")})


def language(data: Path | None = Path("../shared/data")) -> Suite:
    """Issues 14 and 16: five objectives at equal training time on the stdlib corpus and Tiny Shakespeare against
    random weights, SST-2 dev accuracy finetuned from each export (`glue --preset tiny`) beside a bag-of-words
    baseline, the topic probe, MLM accuracy where defined, tokens/s; NSP/SOP accuracy against the majority class
    in the folded tables; SST-2 against pretraining minutes from the stdlib checkpoints at 1/3 and 2/3 of each
    budget (2 more exports and finetunings per row and seed). 3 seeds."""
    domains = tuple(corpora(data))
    cols = text_columns(data, domains)
    reps = text_rows(data) + ([bow_row(cols)] if sst2(data) else [])
    steps = ", ".join(f"{OBJECTIVES[o][1]} {b.steps:,}" for o, b in equal_time(1000).items())
    return Suite("language", tuple(reps), tuple(cols), seeds=3,
                 description=f"text objectives at equal training time on this CPU ({steps} steps) on "
                             f"{' and '.join(domains)}, against random weights"
                             + (" and a bag-of-words baseline on SST-2" if sst2(data) else ""))
