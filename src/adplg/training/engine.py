"""The synchronous two-branch training loop (METHOD.md sections 1.2 and 3) and its run directory.

One step: branch 1 forward on 32 normal + 32 abnormal pooled crops -> pseudo-labels from its self attention ->
branch 1 Adam step; after ``warm_up`` steps branch 2 learns from those labels on the same batch (Adam + StepLR).
Every ``eval_every`` steps past warm-up the snippet branch is evaluated on the test set and checkpointed; between
evaluations the full ``last`` checkpoint is written every ``save_every`` steps, so an interrupted run can resume.
With ``train.tensorboard`` the logged losses and the evaluations also go to ``<run_dir>/tensorboard``.
"""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
import yaml
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn
from torch.nn import functional as F

from adplg.checkpoints.format import (
    LAST,
    RUN_CONFIG,
    Checkpoint,
    remove_orphan_temporaries,
    restart_command,
    save_checkpoint,
    verified_checkpoints,
)
from adplg.checkpoints.load import load_weights
from adplg.checkpoints.resume import newest_resumable
from adplg.config import Config
from adplg.data.datasets import TestSet, TrainSet
from adplg.errors import AdplgError
from adplg.evaluation.evaluate import evaluate, write_results
from adplg.io import atomic_write_text, check_output_dir
from adplg.losses import snippet_loss, topk_mil_loss, video_branch_losses
from adplg.models.build import build_snippet_branch, build_video_branch
from adplg.models.ensemble import SnippetEnsemble
from adplg.precision import autocast
from adplg.runtime import resolve_device, seed_everything, versions
from adplg.training import augment
from adplg.training.pseudo_labels import PseudoLabelGenerator, minmax
from adplg.training.sampler import EpochSampler
from adplg.training.teacher import teacher_scores
from adplg.training.tensorboard import TensorBoardLog

log = logging.getLogger("adplg")


def split_validation(train: TrainSet, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Hold out ``fraction`` of the training *videos* of each class (all their crops); returns (train, val) indices."""
    if fraction <= 0:
        return torch.arange(len(train.items)), torch.zeros(0, dtype=torch.long)
    rng = np.random.default_rng(seed)
    videos = sorted({(item.label, item.video) for item in train.items})
    held: set[str] = set()
    for label in (0, 1):
        names = [v for lab, v in videos if lab == label]
        held.update(rng.choice(names, size=max(1, round(fraction * len(names))), replace=False).tolist())
    is_val = torch.tensor([item.video in held for item in train.items])
    return torch.nonzero(~is_val).flatten(), torch.nonzero(is_val).flatten()


class Trainer:
    """Owns both branches, their optimizers, the pseudo-label state, the samplers and the run directory."""

    def __init__(self, cfg: Config, train: TrainSet, test: TestSet | None, run_dir: Path,
                 device: torch.device | None = None, manifest: dict | None = None):
        self.cfg = cfg
        self.device = device or resolve_device(cfg.train.device)
        self.run_dir = Path(run_dir)
        self.train_set = train
        self.test = test
        self.manifest = manifest or {}
        if manifest:
            atomic_write_text(self.run_dir / "data_manifest.json", json.dumps(manifest, indent=2))
        t = cfg.train
        seed_everything(t.seed)
        self.net_v = build_video_branch(cfg).to(self.device)
        self.net_s = build_snippet_branch(cfg).to(self.device)
        self.features = train.features.to(self.device)  # [N, T, D], resident for the whole run
        if cfg.model.input_standardize:
            for net in (self.net_v, *getattr(self.net_s, "members", [self.net_s])):
                net.input_adapter.set_statistics(self.features)
        optim = torch.optim.Adam if t.optimizer == "adam" else torch.optim.AdamW
        self.opt_v = optim(self.net_v.parameters(), lr=t.lr_v, betas=(0.9, 0.999), weight_decay=t.weight_decay)
        self.opt_s = optim(self.net_s.parameters(), lr=t.lr_s, betas=(0.9, 0.999), weight_decay=t.weight_decay)
        self.sched_s = torch.optim.lr_scheduler.StepLR(self.opt_s, step_size=t.sch_step, gamma=t.sch_gamma)
        # the weights that score: net_s itself, or an average of it over the steps: exponential (train.ema_decay)
        # or uniform over the steps after train.average_from (stochastic weight averaging)
        self.average_s = None
        if t.ema_decay:
            self.average_s = torch.optim.swa_utils.AveragedModel(
                self.net_s, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(t.ema_decay))
        elif t.average_from:
            self.average_s = torch.optim.swa_utils.AveragedModel(self.net_s)
        self.forward_v = torch.compile(self.net_v) if t.compile else self.net_v
        self.forward_s = torch.compile(self.net_s) if t.compile else self.net_s
        train_idx, self.val_idx = split_validation(train, t.val_fraction, t.seed)
        labels = train.labels[train_idx]
        self.sampler_n = EpochSampler(train_idx[labels == 0], t.batch_size, torch.Generator().manual_seed(t.seed))
        self.sampler_a = EpochSampler(train_idx[labels == 1], t.batch_size, torch.Generator().manual_seed(t.seed + 1))
        self.plg = PseudoLabelGenerator(len(train.keys), cfg.data.num_segments, cfg.plg.history,
                                        cfg.plg.mean_threshold, cfg.plg.var_threshold, device=self.device,
                                        label_smoothing=cfg.plg.label_smoothing)
        self.feature_std: Tensor | None = None  # [D], for train.feature_noise
        # [N, T]: train.teacher's scores of every training crop, the soft targets of loss.distill
        self.teacher_targets = teacher_scores(t.teacher, self.features) if t.teacher else None
        self.step = 0
        self.history: list[dict] = []  # every evaluation: step, test metrics, val score
        # each logged loss's per-step values since the last log line (0-d tensors on the device); saved in full
        # checkpoints so that the first log line after a resume averages the same steps as an uninterrupted run
        self.running_losses: dict[str, list[Tensor]] = {}
        self.tensorboard = TensorBoardLog(self.run_dir) if t.tensorboard else None  # before any compute

    # ------------------------------------------------------------------ one step
    def next_batch(self) -> tuple[Tensor, Tensor]:
        """``x [2B, T, D]`` (normal half, then abnormal half) gathered on the device, and the crops' indices
        ``[2B]`` into the training set (on the CPU)."""
        idx = torch.cat([self.sampler_n.next(), self.sampler_a.next()])
        return self.features[idx.to(self.device)], idx

    def train_step(self, step: int) -> dict[str, Tensor]:
        """One synchronous step; returns detached loss tensors (read on the host only when logged)."""
        cfg = self.cfg
        x, idx = self.next_batch()
        b = x.shape[0] // 2
        abnormal_keys = self.train_set.key_ids[idx[b:]]
        video_labels = torch.cat([torch.zeros(b), torch.ones(b)]).to(self.device)
        w = cfg.loss

        self.net_v.train()
        with autocast(self.device, cfg.train.precision):
            out = self.forward_v(x)
        labels = self.plg.update(abnormal_keys, self.pseudo_label_source(out.a_att_norm.detach().float(), x[b:], step))
        terms = video_branch_losses(out, video_labels, weights={"video": w.video, "triplet": w.triplet, "cos": w.cos,
                                                                 "smooth": w.smooth, "sparsity": w.sparsity},
                                    smooth_axis=w.smooth_axis, sparsity_axis=w.sparsity_axis)
        self.opt_v.zero_grad(set_to_none=True)
        terms.total.backward()
        self.opt_v.step()
        logs = {"loss_v": terms.total, "video_bce": terms.video_bce, "triplet": terms.triplet, "cos": terms.cos,
                "hard_frac": labels.hard.float().mean()}

        if step > cfg.train.warm_up:
            self.net_s.train()
            targets = torch.cat([torch.zeros_like(labels.targets), labels.targets])
            keep = torch.cat([torch.ones_like(labels.keep), labels.keep])
            soft = None if self.teacher_targets is None else self.teacher_targets[idx.to(self.device)]
            x, targets, keep, soft = self.augment_snippet_batch(x, targets, keep, soft)
            with autocast(self.device, cfg.train.precision):
                # [K, 2B, T]: each member of a model.snippet_members ensemble learns from its own loss
                scores = (self.net_s.member_scores(x) if isinstance(self.net_s, SnippetEnsemble)
                          else self.forward_s(x)[None]).float()
            member_losses = torch.stack(
                [snippet_loss(s, targets, keep, faithful_nan_trick=w.snippet_nan_trick) for s in scores])
            if soft is not None:  # loss.distill: the teacher's scores of every snippet, normal videos' too
                member_losses = (1 - w.distill) * member_losses + w.distill * torch.stack(
                    [F.binary_cross_entropy(s, soft) for s in scores])
            member_losses = w.snippet * member_losses
            if w.snippet_topk_mil:
                member_losses = member_losses + w.snippet_topk_mil * torch.stack(
                    [topk_mil_loss(s, video_labels) for s in scores])
            self.opt_s.zero_grad(set_to_none=True)
            # summed, so each member's gradient (and its weight decay) is that of a model trained alone
            member_losses.sum().backward()
            loss_s = member_losses.mean()
            self.opt_s.step()
            self.sched_s.step()
            if self.average_s is not None and step > cfg.train.average_from:
                self.average_s.update_parameters(self.net_s)
            logs["loss_s"] = loss_s
        return {k: v.detach() for k, v in logs.items()}

    @torch.no_grad()
    def augment_snippet_batch(self, x: Tensor, targets: Tensor, keep: Tensor, soft: Tensor | None = None
                              ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Branch 2's view of the batch (``x [2B, T, D]``, ``targets`` / ``keep`` / the teacher's ``soft`` targets
        ``[2B, T]``) under the options ``train.flip_prob``, ``train.crop_scale`` and ``train.feature_noise``
        (adplg.training.augment); the inputs themselves when all are off."""
        t = self.cfg.train
        if soft is not None and (t.flip_prob or t.crop_scale < 1):
            x = torch.cat([x, soft[..., None].to(x.dtype)], dim=-1)  # one more feature: moves with its snippet
        if t.flip_prob:
            x, targets, keep = augment.random_time_flip(x, targets, keep, t.flip_prob)
        if t.crop_scale < 1:
            x, targets, keep = augment.random_temporal_crop(x, targets, keep, t.crop_scale)
        if soft is not None and (t.flip_prob or t.crop_scale < 1):
            x, soft = x[..., :-1], x[..., -1]
        if t.feature_noise:
            if self.feature_std is None:
                self.feature_std = self.features.float().std(dim=(0, 1))  # [D]
            x = augment.feature_noise(x, t.feature_noise, self.feature_std)
        return x, targets, keep, soft

    @torch.no_grad()
    def pseudo_label_source(self, attention_norm: Tensor, abnormal: Tensor, step: int) -> Tensor:
        """``[b, T]``: branch 1's normalised attention, mixed after the warm-up with branch 2's min-max normalised
        scores of the same abnormal samples ``abnormal [b, T, D]`` when ``plg.score_mix`` > 0."""
        mix = self.cfg.plg.score_mix
        if not mix or step <= self.cfg.train.warm_up:
            return attention_norm
        self.net_s.eval()  # no dropout: no random numbers drawn, and the cleaner scores
        scores = minmax(self.net_s(abnormal).float())
        return (1 - mix) * attention_norm + mix * scores

    @property
    def scoring_net(self) -> nn.Module:
        """The snippet branch that is evaluated and saved as ``net_s``: the average when one is enabled and has begun
        (train.ema_decay, train.average_from), else ``net_s``."""
        return self.net_s if self.average_s is None or not self.average_s.n_averaged else self.average_s.module

    # ------------------------------------------------------------------ selection without the test set
    @torch.no_grad()
    def validation_score(self) -> float | None:
        """Video AUC of the mean top-k snippet score on held-out training crops (video labels only)."""
        if len(self.val_idx) == 0:
            return None
        net = self.scoring_net.eval()
        scores = []
        for chunk in self.val_idx.split(256):
            s = net(self.features[chunk.to(self.device)])  # [n, T]
            k = min(self.cfg.train.val_top_k, s.shape[1])
            scores.append(s.topk(k, dim=1).values.mean(dim=1).cpu())
        labels = self.train_set.labels[self.val_idx].numpy()
        return float(roc_auc_score(labels, torch.cat(scores).numpy()))

    # ------------------------------------------------------------------ checkpoint state
    def _state_tensors(self) -> dict[str, Tensor]:
        tensors = {f"plg.{k}": v for k, v in self.plg.state_dict().items()}
        tensors.update({f"sampler_n.{k}": v for k, v in self.sampler_n.state_dict().items()})
        tensors.update({f"sampler_a.{k}": v for k, v in self.sampler_a.state_dict().items()})
        if self.average_s is not None:  # net_s holds the average; the trained weights and its count for --resume
            tensors.update({f"net_s_train.{k}": v.clone() for k, v in self.net_s.state_dict().items()})
            tensors["ema_steps"] = self.average_s.n_averaged
        tensors.update({f"running.{k}": torch.stack(v) for k, v in self.running_losses.items() if v})
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        return tensors

    def save(self, name: str, metrics: dict | None = None, full: bool = True) -> Path:
        """Write ``checkpoints/<name>.safetensors`` + ``.json`` (one verifiable pair, see adplg.checkpoints.format),
        after removing the temporary files an earlier killed write left there. ``last`` keeps its previous pair until
        the new one verifies, so a kill during the save costs at most the steps since that one."""
        path = self.run_dir / "checkpoints" / name
        remove_orphan_temporaries(path.parent)
        return save_checkpoint(
            path, net_v=self.net_v, net_s=self.scoring_net, step=self.step, config=self.cfg.to_dict(), metrics=metrics,
            optimizers={"v": self.opt_v, "s": self.opt_s} if full else None,
            scheduler=self.sched_s if full else None, extra_tensors=self._state_tensors() if full else None,
            extra_meta={"data_manifest": self.manifest, "history_keys": self.train_set.keys if full else None,
                        "evaluations": self.history, "seed": self.cfg.train.seed},
            keep_previous=name == LAST)

    def resume(self, ckpt: Checkpoint) -> None:
        """Continue from a full checkpoint (``adplg.checkpoints.resume.checkpoint_to_resume`` picks it; ``Checkpoint``
        already refused a pair that does not verify). Every weight must fit the model built from the checkpoint's
        config (one clear error otherwise); the temporary files a killed write left in this run's ``checkpoints/``
        are removed, and ``metrics.jsonl`` records past the checkpoint's step (written before the run stopped, and
        written again now) are moved aside (:meth:`roll_back_metrics`)."""
        remove_orphan_temporaries(self.run_dir / "checkpoints")
        if "optim_v" not in ckpt.meta:
            full = next((c for c in verified_checkpoints(ckpt.path.parent) if c.full), None)
            hint = f"the newest one that verifies here is {full.path} (step {full.step})" if full else "none here"
            raise AdplgError(f"{ckpt.path} holds weights only; resume needs a full checkpoint (checkpoints/last; "
                             f"{hint})")
        load_weights(self.net_v, ckpt.part("net_v"), ckpt.path, "video branch")
        extra = ckpt.part("extra")
        if self.average_s is not None:
            if "ema_steps" not in extra:
                raise AdplgError(f"{ckpt.path} was trained without train.ema_decay / train.average_from; resume it "
                                 f"without that option")
            load_weights(self.average_s.module, ckpt.part("net_s"), ckpt.path)
            self.average_s.n_averaged.copy_(extra["ema_steps"])
            load_weights(self.net_s, {k[12:]: v for k, v in extra.items() if k.startswith("net_s_train.")}, ckpt.path)
        elif "ema_steps" in extra:
            raise AdplgError(f"{ckpt.path} holds a moving average (train.ema_decay / train.average_from > 0); resume "
                             f"it with that option")
        else:
            load_weights(self.net_s, ckpt.part("net_s"), ckpt.path)
        if ckpt.meta.get("history_keys") != self.train_set.keys:
            raise AdplgError(f"{ckpt.path}: the training data differs from the checkpoint's (pseudo-label keys differ)")
        self.opt_v.load_state_dict(ckpt.optimizer_state("v"))
        self.opt_s.load_state_dict(ckpt.optimizer_state("s"))
        self.sched_s.load_state_dict(ckpt.meta["scheduler"])
        self.plg.load_state_dict({k[4:]: v.to(self.device) for k, v in extra.items() if k.startswith("plg.")})
        self.sampler_n.load_state_dict({k[10:]: v for k, v in extra.items() if k.startswith("sampler_n.")})
        self.sampler_a.load_state_dict({k[10:]: v for k, v in extra.items() if k.startswith("sampler_a.")})
        torch.set_rng_state(extra["rng.torch"])
        if "rng.cuda" in extra and torch.cuda.is_available():
            torch.cuda.set_rng_state(extra["rng.cuda"])
        self.running_losses = {k[8:]: list(v.to(self.device).unbind(0)) for k, v in extra.items()
                               if k.startswith("running.")}
        self.step = int(ckpt.meta["step"])
        self.history = list(ckpt.meta.get("evaluations") or [])
        self.roll_back_metrics(self.step)

    def roll_back_metrics(self, step: int) -> None:
        """Keep the records of ``metrics.jsonl`` up to ``step`` (the resumed checkpoint's); move the later ones (and
        a line cut short by a kill) to ``metrics.rolled-back-<time>.jsonl``, so the file reads as one uninterrupted
        run once the resumed steps log again."""
        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            return
        kept: list[str] = []
        later: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                record = json.loads(line) if line.endswith("\n") else None
                (kept if isinstance(record, dict) and int(record.get("step", 0)) <= step else later).append(line)
            except (ValueError, TypeError):
                later.append(line)
        if later:
            aside = self.run_dir / f"metrics.rolled-back-{datetime.now().strftime('%Y%m%d-%H%M%S')}.jsonl"
            atomic_write_text(aside, "".join(later))
            atomic_write_text(path, "".join(kept))
            log.info("%s: moved %d record(s) after step %d (written before the run stopped; the resumed steps log "
                     "them again) to %s", path, len(later), step, aside.name)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict:
        """Train from ``self.step`` to ``train.num_iters``: evaluate and checkpoint every ``eval_every`` steps past
        warm-up, write ``checkpoints/last`` every ``save_every`` steps in between and at the end; returns the
        summary."""
        from tqdm import tqdm

        t = self.cfg.train
        bar = tqdm(total=t.num_iters, initial=self.step, desc="train", disable=not t.progress, dynamic_ncols=True)
        try:
            with logs_above_the_bar(t.progress):
                self._train_steps(bar)
        finally:
            bar.close()
            if self.tensorboard is not None:
                self.tensorboard.close()
        self.save("last")
        return self.summary()

    def _train_steps(self, bar) -> None:
        t = self.cfg.train
        metrics_file = self.run_dir / "metrics.jsonl"
        running = self.running_losses
        while self.step < t.num_iters:
            self.step += 1
            logs = self.train_step(self.step)
            for k, v in logs.items():
                running.setdefault(k, []).append(v)
            bar.update(1)
            if self.step % t.log_every == 0:
                mean = {k: torch.stack(v).float().mean().item() for k, v in running.items()}
                running.clear()
                bar.set_postfix({k: f"{v:.3f}" for k, v in mean.items() if k in ("loss_v", "loss_s")})
                self._append(metrics_file, {"step": self.step, "kind": "train", **mean})
                if self.tensorboard is not None:
                    self.tensorboard.scalars("train", mean, self.step)
            last = self.step == t.num_iters
            if self.step > t.warm_up and (self.step % t.eval_every == 0 or last):
                self._evaluate_and_save(metrics_file)
            elif self.step % t.save_every == 0 and not last:
                self.save("last")  # the full state, so an interrupted run resumes from here (train --resume)

    def _evaluate_and_save(self, metrics_file: Path) -> None:
        record: dict = {"step": self.step}
        val = self.validation_score()
        if val is not None:
            record["val_video_auc"] = val
        if self.test is not None:
            e = self.cfg.eval
            metrics, scores = evaluate(self.scoring_net, self.test, self.device, e.far_threshold, precision=e.precision,
                                       batch_snippets=e.batch_snippets, smooth_window=e.smooth_window,
                                       smooth_mode=e.smooth_mode)
            record["test"] = metrics
            write_results(self.run_dir / "evals" / f"step_{self.step}", self.test, metrics, scores,
                          extra={"step": self.step, "val_video_auc": val})
        self.history.append(record)
        self._append(metrics_file, {"kind": "eval", **record})
        shown = {self.cfg.eval.primary: record.get("test", {}).get(self.cfg.eval.primary), "val_video_auc": val}
        log.info("step %d: %s", self.step,
                 " ".join(f"{k}={v:.4f}" for k, v in shown.items() if v is not None) or "checkpoint saved")
        if self.tensorboard is not None:
            test = {k: v for k, v in record.get("test", {}).items() if k != "num_frames"}
            self.tensorboard.scalars("eval", {**test, "val_video_auc": val}, self.step)
            self.tensorboard.flush()
        self.save(f"step_{self.step}", metrics=record, full=False)
        self.save("last", metrics=record)
        atomic_write_text(self.run_dir / "summary.json", json.dumps(self.summary(), indent=2))

    def summary(self) -> dict:
        """Model selection: the last evaluation, the validation-selected one (no test labels), and best-on-test
        (labelled as such)."""
        primary = self.cfg.eval.primary
        out: dict = {"primary_metric": primary, "evaluations": len(self.history)}
        if not self.history:
            return out
        out["last"] = self.history[-1]
        with_val = [h for h in self.history if "val_video_auc" in h]
        if with_val:
            out["val_selected"] = max(with_val, key=lambda h: h["val_video_auc"])
        with_test = [h for h in self.history if "test" in h]
        if with_test:
            best = max(with_test, key=lambda h: h["test"][primary])
            out["best_on_test"] = {**best, "note": "selected on the test set: for comparison only, not a result"}
        return out

    @staticmethod
    def _append(path: Path, record: dict) -> None:
        with open(path, "a") as handle:
            handle.write(json.dumps(record, default=float) + "\n")


def logs_above_the_bar(progress: bool):
    """A context in which console log records are written above the progress bar (``tqdm.write``) instead of onto
    its line; a no-op without a bar (or with a tqdm older than its ``contrib.logging``)."""
    if progress:
        try:
            from tqdm.contrib.logging import logging_redirect_tqdm
        except ImportError:
            return nullcontext()
        return logging_redirect_tqdm()
    return nullcontext()


def holds_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir/checkpoints`` holds any checkpoint file (complete or not; temporary files do not count)."""
    folder = Path(run_dir) / "checkpoints"
    return folder.is_dir() and any(not f.name.startswith(".") and f.suffix in (".safetensors", ".json")
                                   for f in folder.iterdir())


def already_a_run(run_dir: Path) -> str:
    """Why a new run cannot start in ``run_dir`` (it holds a checkpoint) and the command that works instead: a resume
    when a full checkpoint there verifies, else a start from step 0 in a new run directory (never a resume that
    refuses, sending the user back here)."""
    folder = run_dir / "checkpoints"
    full = newest_resumable(folder)
    if full is not None:
        return (f"run directory {run_dir} already holds a run (its newest full checkpoint that verifies is "
                f"{full.path}, step {full.meta['step']}); continue it with `adplg train --resume {run_dir}`, or start "
                f"a new run in another run directory")
    restart = restart_command(run_dir)
    return (f"run directory {run_dir} already holds a run, but no full checkpoint in {folder} verifies (a save was "
            f"interrupted between its two files, or they were damaged), so it cannot be resumed; its files are left as "
            f"they are. Start it over from step 0 in a new run directory"
            + (f" with its saved config: `{restart}`" if restart else ""))


def create_run_dir(cfg: Config, run_dir: str | Path | None = None) -> Path:
    """A new run directory with the resolved config and the versions; never overwrites a run that has a
    checkpoint. A run directory that holds none (the run stopped before its first checkpoint) is reused from step 0:
    its config and versions are rewritten and its old ``metrics.jsonl`` is kept as ``metrics.before-<time>.jsonl``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    if run_dir is None:
        run_dir = Path(cfg.output_dir) / f"{cfg.name}-seed{cfg.train.seed}-{stamp}"
    run_dir = check_output_dir(run_dir, "run directory")
    if (run_dir / RUN_CONFIG).exists():
        if holds_checkpoint(run_dir):
            raise AdplgError(already_a_run(run_dir))
        log.warning("run directory %s holds a run that stopped before its first checkpoint: reusing it from step 0",
                    run_dir)
        remove_orphan_temporaries(run_dir / "checkpoints")
        if (run_dir / "metrics.jsonl").exists():
            (run_dir / "metrics.jsonl").replace(run_dir / f"metrics.before-{stamp}.jsonl")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / RUN_CONFIG, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    atomic_write_text(run_dir / "versions.json", json.dumps(versions(), indent=2))
    return run_dir
