"""The train state: where a run is (step, counters, training time) and every RNG and task state it needs to
continue exactly, saved into and restored from a checkpoint's state.pt."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import distributed as D
from .rng import rng_state, set_rng_state


@dataclass
class TrainState:
    step: int = 0                 # optimizer steps done; also the data position (the BatchPlan starts here)
    skipped_steps: int = 0        # steps skipped for a non-finite loss or gradient, over the whole run
    train_seconds: float = 0.0    # wall time spent training, resumes included, evaluation excluded
    _clock: float | None = field(default=None, repr=False)
    now = staticmethod(time.perf_counter)    # the clock (a test may replace it)

    # ---------------------------------------------------------------- training time

    def start_clock(self) -> None:
        self._clock = self.now()

    def read_clock(self) -> float:
        """Training seconds so far (the running interval included)."""
        if self._clock is not None:
            now = self.now()
            self.train_seconds += now - self._clock
            self._clock = now
        return self.train_seconds

    def stop_clock(self) -> float:
        self.read_clock()
        self._clock = None
        return self.train_seconds

    @contextmanager
    def clock_paused(self):
        """Time spent inside (evaluation) is not training time."""
        running = self._clock is not None
        self.stop_clock()
        try:
            yield
        finally:
            if running:
                self.start_clock()

    # ---------------------------------------------------------------- save and load

    def state_dict(self, env: D.Env, task) -> dict:
        """What state.pt holds besides the optimizer: a collective (every rank's RNG and task state)."""
        rng = D.gather_objects(rng_state(), env)
        task_states = D.gather_objects(task.state_dict(), env) if hasattr(task, "state_dict") else None
        state = {"step": self.step, "skipped_steps": self.skipped_steps, "train_seconds": self.read_clock(),
                 "rng": rng, "world_size": env.world_size}
        if task_states is not None:
            state["task"] = task_states           # one entry per rank
        return state

    @classmethod
    def from_saved(cls, saved: dict | None) -> "TrainState":
        if saved is None:
            return cls()
        return cls(step=int(saved["step"]), skipped_steps=int(saved.get("skipped_steps", 0)),
                   train_seconds=float(saved.get("train_seconds", 0.0)))

    @staticmethod
    def restore_task(saved: dict | None, env: D.Env, task) -> None:
        """Before ``train_batches``: the task's first batch may depend on it (RL's stored rollout)."""
        states = (saved or {}).get("task")
        if states is None or not hasattr(task, "load_state_dict"):
            return
        if len(states) != env.world_size and any(states):
            print(f"[selfsup] resuming {len(states)}-rank task state on {env.world_size} ranks: "
                  "each rank takes rank (r mod saved ranks)'s state", flush=True)
        task.load_state_dict(states[env.rank % len(states)])

    @staticmethod
    def restore_rng(saved: dict | None, env: D.Env) -> None:
        """Last, just before the first step: this rank's RNG continues where the checkpoint left it."""
        if saved is None:
            return
        rngs = saved["rng"]
        if len(rngs) != env.world_size:
            print(f"[selfsup] resuming {len(rngs)}-rank checkpoint on {env.world_size} ranks: "
                  "the data order is kept, per-rank random streams are reseeded", flush=True)
        else:
            set_rng_state(rngs[env.rank])
