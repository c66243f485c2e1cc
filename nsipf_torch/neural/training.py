"""Training the neural interpolator's CNN (docs/MODEL.md §3): the library behind train.py and ``nsipf_torch.train``.

    import nsipf_torch as nt
    model, table = nt.train(dim=2, epochs=3, n_traj=4, out="my_cnn.pt")    # writes only my_cnn.pt (+ the data cache)
    model, meta = nt.load_model("my_cnn.pt")
    nt.evaluate(model, inp, tgt)             # value and gradient errors of the CNN, linear and spline upsampling

Input and target (``roughness``, default ``keep``): the CNN sees the rough SIPF field of persistent
particles and is trained to add the residual of the smooth field while passing the particles' holes
through as linear upsampling does (see train.py's docstring and docs/VALIDATION.md). The training data
(:mod:`nsipf_torch.neural.data`) is generated once, seeded, and cached in the user cache folder.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from nsipf_torch.config import check_output_dir, check_output_file, option
from nsipf_torch.neural.data import DataConfig, cache_folder, make_dataset
from nsipf_torch.neural.model import UpsampleCNN, read_checkpoint, save_checkpoint, upsample_linear
from nsipf_torch.neural.validity import training_domain
from nsipf_torch.particles.interp import SplineInterp
from nsipf_torch.problems.grid import Grid
from nsipf_torch.solvers.radial import RadialGrid

ROUGHNESS = ("off", "on", "mix", "keep")


# The roughness range the training covers is P / N^d for P in [10^4, P_max] and N in 32-128 (validity.py):
# both reach P = 10^6 on a 64^d grid (3.8 per cell in 3D, 244 in 2D).
DEFAULT_P_MAX = {2: 262_144, 3: 131_072}


@dataclass
class TrainConfig:
    dim: int = option(3, "space dimension of the model", choices=(2, 3))
    epochs: int = option(15, "passes over the training patches")
    batch_size: int = option(4, "patches per optimiser step and process (the paper's 4)")
    lr: float = option(1e-3, "Adam learning rate")
    width: int = option(8, "CNN channels per hidden layer")
    depth: int = option(3, "3^d convolutions in the residual branch (also the receptive radius in coarse cells)")
    scale: int = option(2, "upsampling factor s: the CNN maps N^d cells to (sN)^d")
    roughness: str = option("keep", "input/target of the training patches: keep = the SIPF field of persistent "
                            "particles, target the exact field plus the linear upsampling of its roughness (the CNN "
                            "neither fills nor amplifies the holes); off = blurred and downsampled input (the "
                            "paper's); on = SIPF input, exact target; mix = half on, half off (on/mix lose end to "
                            "end: docs/VALIDATION.md)", choices=ROUGHNESS)
    n_traj: int = option(64, "radial training trajectories (seeded problems solved by the radial FD solver)")
    n_val_traj: int = option(8, "held-out radial trajectories for validation (whole trajectories, never snapshots)")
    snapshots: int = option(6, "times per trajectory at which patches are cut")
    grids_per_traj: int = option(3, "random SIPF grids (N in 32-128, sub-cell shift) per trajectory")
    patches_per_grid: int = option(3, "patches cut per grid and snapshot")
    P_max: int = option(0, "most particles per problem for the roughness of the SIPF field (0: the dimension's "
                        "default, 131072 in 3D = 4 particles per cell at N = 32, so that P = 10^6 at 64^3 (3.8) "
                        "is inside the validity domain; 262144 in 2D = 256 per cell at N = 32, so that 10^6 at "
                        "64^2 (244) is)")
    data_seed: int = option(0, "seed of the training-data generator")
    data_T: float = option(0.2, "final time of the radial trajectories (the canonical T)")
    data_Nr: int = option(256, "radial cells of the radial solver on [0, 1.5]")
    seed: int = option(0, "seed of the weights and of the batch order")
    out: str = option("", "checkpoint path (default: checkpoints/nsipf_{dim}d.pt)")
    resume: bool = option(False, "continue the run saved in --out for more --epochs")
    logdir: str = option("runs/train", "TensorBoard directory (losses, validation errors and image slices)")
    cache_dir: str = option("", "where the generated training data is cached (default: $NSIPF_CACHE, else "
                            "$XDG_CACHE_HOME/nsipf_torch, else ~/.cache/nsipf_torch)")
    # One thread by default: on a shared CPU OpenMP threads spin-wait, and 2 threads ran far slower.
    threads: int = option(1, "torch threads per process (0: torch's default; 1 avoids OpenMP spin-waits on a "
                          "shared CPU)")
    device: str = option("cpu", "cpu, cuda or cuda:K")
    evaluate: str = option("", "a checkpoint: print its validation table on this config's data, train nothing")

    def validate(self):
        if self.dim not in (2, 3):
            raise ValueError(f"--dim must be 2 or 3, got {self.dim}")
        if self.P_max == 0:
            self.P_max = DEFAULT_P_MAX[self.dim]
        for name in ("epochs", "batch_size", "width", "depth", "scale", "n_traj", "n_val_traj", "snapshots",
                     "grids_per_traj", "patches_per_grid", "P_max", "data_Nr"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        try:
            RadialGrid(self.data_Nr, dim=self.dim)  # the radial solver's own check of its grid
        except ValueError as err:
            raise ValueError(f"--data-Nr: {err}") from None
        if not (math.isfinite(self.data_T) and self.data_T > 0):
            raise ValueError(f"--data-T must be a positive number, got {self.data_T}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if self.roughness not in ROUGHNESS:
            raise ValueError(f"--roughness must be one of {', '.join(ROUGHNESS)}, got {self.roughness!r}")
        if self.threads < 0:
            raise ValueError(f"--threads must be >= 0, got {self.threads}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"--device must be cpu or cuda, got {self.device!r}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device} requested but CUDA is not available")
        if not self.out:
            self.out = str(Path("checkpoints") / f"nsipf_{self.dim}d.pt")

    def data_config(self) -> DataConfig:
        return DataConfig(dim=self.dim, n_traj=self.n_traj, n_val_traj=self.n_val_traj, snapshots=self.snapshots,
                          grids_per_traj=self.grids_per_traj, patches_per_grid=self.patches_per_grid,
                          P_max=self.P_max, P_min=min(10_000, self.P_max), halo=self.depth, scale=self.scale,
                          T=self.data_T, Nr=self.data_Nr, seed=self.data_seed)


# --- data --------------------------------------------------------------------------------------------------
def normalised(split: dict, roughness: str, dim: int, halo: int | None = None,
               scale_factor: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) divided by each input's maximum (all samples weigh the same; c >= 0).

    ``keep``: rough inputs, and the target is the exact fine field plus the linear upsampling of the
    roughness (rough - smooth) over the output region: the CNN must add the residual of the *smooth* field
    and pass the holes the particles dig through as linear upsampling would, neither filling them (what
    ``on`` learns) nor amplifying them. It needs the model's ``halo`` and ``scale_factor`` (the crop of the
    upsampled roughness).
    """
    rough, smooth = split["rough"].to(torch.float32), split["smooth"].to(torch.float32)
    tgt = split["target"].to(torch.float32)
    if roughness == "mix":  # half the patches rough, half smooth (a fixed, seeded choice per patch)
        pick = torch.rand(rough.shape[0], generator=torch.Generator().manual_seed(0)) < 0.5
        inp = torch.where(pick.reshape(-1, *([1] * dim)), rough, smooth)
    elif roughness == "keep":
        if halo is None or scale_factor is None:
            raise ValueError(f"roughness {roughness!r} needs the model's halo and scale")
        s, k = scale_factor, halo
        crop = (slice(None),) + (slice(s * k, -s * k if k else None),) * dim
        inp, tgt = rough, tgt + upsample_linear(rough - smooth, s, dim)[crop]
    else:
        inp = rough if roughness == "on" else smooth
    scale = inp.flatten(1).amax(dim=1).clamp(min=1e-12).reshape(-1, *([1] * dim))
    return inp / scale, tgt / scale


# --- metrics -----------------------------------------------------------------------------------------------
def _grad_fine(f: torch.Tensor, dim: int) -> torch.Tensor:
    """Central differences of fine fields (n, m, ..., m) in the interior, stacked over axes (unit spacing)."""
    inner = (slice(None),) + (slice(1, -1),) * dim
    out = []
    for a in range(dim):
        g = (f.roll(-1, 1 + a) - f.roll(1, 1 + a)) / 2
        out.append(g[inner])
    return torch.stack(out)


def _rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Relative L2 distance as a 0-d float64 tensor (a device tensor: read it on the host, outside loops)."""
    return torch.linalg.vector_norm((a - b).double()) / torch.linalg.vector_norm(b.double())


def spline_upsample(inp: torch.Tensor, scale: int, halo: int, dim: int) -> torch.Tensor:
    """Cubic-spline upsampling of padded patches (n, m, ..., m) to their central region, (n, s(m - 2k), ...):
    the interpolating cubic B-spline with reflecting walls of SIPF's ``spline`` interpolator
    (:class:`~nsipf_torch.particles.interp.SplineInterp`, equal to scipy's ``map_coordinates(order=3,
    mode="reflect")`` to 1e-10), on the patch as a grid of unit cells, in float64."""
    m = inp.shape[-1]
    n = m - 2 * halo
    grid = Grid(m, dim, m / 2, inp.device, torch.float64)
    # the fine cells' centres in the central region; coarse cells of unit width, the patch centred at 0
    x1 = halo + (torch.arange(scale * n, dtype=torch.float64, device=inp.device) + 0.5) / scale - m / 2
    X = torch.stack(torch.meshgrid(*([x1] * dim), indexing="ij"), dim=-1).reshape(-1, dim)
    values = SplineInterp(grid).value(inp.double(), X.expand(inp.shape[0], -1, -1))
    return values.reshape(inp.shape[0], *(scale * n,) * dim).to(inp.dtype)


@torch.no_grad()
def error_tensors(model: UpsampleCNN, inp: torch.Tensor, tgt: torch.Tensor) -> dict[str, torch.Tensor]:
    """0-d tensors on the model's device: the loss and the relative L2 errors of values and gradients of
    the CNN and of linear upsampling over a split (``inp``, ``tgt`` on that device). No host sync."""
    model.eval()
    d, s, k = model.dim, model.scale, model.halo
    preds = torch.cat([model.forward_valid(inp[i:i + 64]) for i in range(0, inp.shape[0], 64)])
    crop = (slice(None),) + (slice(s * k, -s * k),) * d
    out = {"loss": F.mse_loss(preds, tgt)}
    out.update(_errors({"cnn": preds, "linear": upsample_linear(inp, s, d)[crop]}, tgt, d))
    return out


def _errors(candidates: dict, tgt: torch.Tensor, dim: int) -> dict[str, torch.Tensor]:
    g_t = _grad_fine(tgt, dim)
    out = {}
    for name, p in candidates.items():
        out[f"value_{name}"] = _rel(p, tgt)
        out[f"grad_{name}"] = _rel(_grad_fine(p, dim), g_t)
    return out


def evaluate(model: UpsampleCNN, inp: torch.Tensor, tgt: torch.Tensor, with_spline: bool = True) -> dict:
    """Relative L2 errors (floats) of values and gradients over a split, for the CNN, linear and (with
    ``with_spline``) cubic-spline upsampling. ``inp``, ``tgt`` live on the model's device."""
    metrics = error_tensors(model, inp, tgt)
    if with_spline:
        spline = spline_upsample(inp, model.scale, model.halo, model.dim)
        metrics.update(_errors({"spline": spline}, tgt, model.dim))
    return {key: float(value) for key, value in metrics.items()}


def table(m: dict) -> str:
    rows = ["| relative L2 error (held-out trajectories) | CNN | linear | cubic spline |", "|---|---|---|---|"]
    for q in ("value", "grad"):
        rows.append(f"| {q}s | {m[f'{q}_cnn']:.4f} | {m[f'{q}_linear']:.4f} | {m.get(f'{q}_spline', float('nan')):.4f} |")
    return "\n".join(rows)


@torch.no_grad()
def image_slices(model: UpsampleCNN, inp: torch.Tensor, tgt: torch.Tensor) -> dict[str, torch.Tensor]:
    """(1, H, W) images of the first validation patch (input, target, prediction), scaled by the target's
    maximum, on the model's device (mid-plane in 3D)."""
    d, s, k = model.dim, model.scale, model.halo
    pred = model.forward_valid(inp[:1])[0]
    x = inp[0][(slice(k, -k),) * d]
    for axis in range(d):
        x = x.repeat_interleave(s, axis)
    mid = (lambda f: f[f.shape[0] // 2]) if d == 3 else (lambda f: f)
    top = tgt[0].amax().clamp(min=1e-30)
    return {name: (mid(f) / top).clamp(0, 1).unsqueeze(0) for name, f in
            (("input", x), ("target", tgt[0]), ("prediction", pred))}


# --- training ----------------------------------------------------------------------------------------------
@dataclass
class Run:
    """What one training process holds: its place in the world, the data on its device, the model."""

    cfg: TrainConfig
    device: torch.device
    world: int
    rank: int
    x_tr: torch.Tensor
    y_tr: torch.Tensor
    x_va: torch.Tensor
    y_va: torch.Tensor
    model: UpsampleCNN
    net: torch.nn.Module
    opt: torch.optim.Optimizer
    start: int = 0

    @property
    def master(self) -> bool:
        return self.rank == 0


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """Cosine decay to 10% over the run, a function of the epoch only (so --resume continues it)."""
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs)))


def batch_loss(net: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    """Mean-squared error of the CNN on padded patches ``xb`` against fine targets ``yb`` (same device)."""
    return F.mse_loss(net(xb, valid=True), yb)


def train_epoch(run: Run, epoch: int, progress: bool = True) -> torch.Tensor:
    """One pass over this rank's share of the patches; the summed loss stays a device tensor (no sync)."""
    cfg = run.cfg
    run.model.train()
    for group in run.opt.param_groups:
        group["lr"] = learning_rate(cfg, epoch)
    n = run.x_tr.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
    mine = perm[run.rank::run.world].to(run.device)
    total = torch.zeros((), device=run.device)
    steps = math.ceil(n / (cfg.batch_size * run.world))
    bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (run.master and progress), leave=False)
    for step in bar:
        idx = mine[step * cfg.batch_size:(step + 1) * cfg.batch_size]
        if idx.numel() == 0:  # ranks with fewer samples still take part in every all-reduce
            idx = mine[:cfg.batch_size]
        loss = batch_loss(run.net, run.x_tr[idx], run.y_tr[idx])
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        total = total + loss.detach()
    return total / steps


def _cpu(obj):
    """A copy of nested dicts/lists of tensors with every tensor on the CPU (checkpoints load anywhere)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)  # a copy also on the CPU: the live weights keep training
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def end_of_epoch(run: Run, epoch: int, train_loss: torch.Tensor, best, writer, t0: float, log=print):
    """Validation, TensorBoard, model selection and the checkpoint (rank 0); returns the new ``best``."""
    metrics = evaluate(run.model, run.x_va, run.y_va, with_spline=False)
    metrics["train_loss"] = float(train_loss)
    if writer is not None:
        writer.add_scalar("train/loss", metrics["train_loss"], epoch + 1)
        writer.add_scalar("val/loss", metrics["loss"], epoch + 1)
        for key in ("value_cnn", "grad_cnn", "value_linear", "grad_linear"):
            writer.add_scalar(f"val/{key}", metrics[key], epoch + 1)
        for name, image in image_slices(run.model, run.x_va, run.y_va).items():
            writer.add_image(f"val/{name}", image.cpu(), epoch + 1)
    metrics["train_seconds"] = time.perf_counter() - t0
    # Model selection on the validation loss: "model" holds the best epoch's weights (what load_model
    # returns); "last_model" + "optimizer" the latest state, which --resume continues.
    if best is None or metrics["loss"] <= best[1]["loss"]:
        best = (_cpu(run.model.state_dict()), dict(metrics, epoch=epoch + 1))
    save_checkpoint(run.cfg.out, run.model, config=dataclasses.asdict(run.cfg),
                    optimizer_state=_cpu(run.opt.state_dict()), epoch=epoch + 1, metrics=best[1],
                    weights=best[0], extra={"last_model": _cpu(run.model.state_dict()), "last_metrics": metrics,
                                            "domain": training_domain(run.cfg.dim, run.cfg.P_max)})
    log(f"epoch {epoch + 1}: train {metrics['train_loss']:.3e}  val {metrics['loss']:.3e}  "
          f"value cnn/linear {metrics['value_cnn']:.4f}/{metrics['value_linear']:.4f}  "
          f"grad cnn/linear {metrics['grad_cnn']:.4f}/{metrics['grad_linear']:.4f}")
    return best


def fit(run: Run, blob: dict | None, writer, t0: float, log=print, progress: bool = True) -> dict | None:
    """The training loop from ``run.start`` to ``cfg.epochs``; rank 0 ends with the best epoch's weights in
    ``run.model`` and returns their validation table (other ranks: None). ``progress``: a bar per epoch."""
    best = (blob["model"], blob["metrics"]) if blob else None
    for epoch in range(run.start, run.cfg.epochs):
        train_loss = train_epoch(run, epoch, progress)
        if run.master:
            best = end_of_epoch(run, epoch, train_loss, best, writer, t0, log)
    if not run.master:
        return None
    run.model.load_state_dict(best[0])
    final = evaluate(run.model, run.x_va, run.y_va)
    log(f"best epoch {best[1]['epoch']} (validation loss {best[1]['loss']:.3e})")
    log(table(final))
    log(f"total {time.perf_counter() - t0:.1f} s -> {run.cfg.out}")
    return final


# --- set-up ------------------------------------------------------------------------------------------------
def load_split_tensors(cfg: TrainConfig, master: bool, world: int, device: torch.device,
                       progress: bool = True) -> tuple[torch.Tensor, ...]:
    """(x_tr, y_tr, x_va, y_va) normalised, on the CPU; rank 0 generates (on ``device``) or loads the
    cache first."""
    dcfg, cache = cfg.data_config(), cache_folder(cfg.cache_dir)
    data = make_dataset(dcfg, cache, progress=progress, device=device) if master else None
    if world > 1:
        torch.distributed.barrier()
    if not master:
        data = make_dataset(dcfg, cache)
    return (*normalised(data["train"], cfg.roughness, cfg.dim, cfg.depth, cfg.scale),
            *normalised(data["val"], cfg.roughness, cfg.dim, cfg.depth, cfg.scale))


def build_run(cfg: TrainConfig, blob: dict | None, device: torch.device, world: int, rank: int,
              tensors: tuple[torch.Tensor, ...]) -> Run:
    """Model, optimiser (restored from ``blob`` on --resume) and the data moved to ``device`` once."""
    torch.manual_seed(cfg.seed)
    model = UpsampleCNN(cfg.dim, cfg.scale, cfg.width, cfg.depth).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start = 0
    if blob is not None:
        model.load_state_dict(blob["last_model"])
        opt.load_state_dict(blob["optimizer"])
        start = int(blob["epoch"])
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    x_tr, y_tr, x_va, y_va = (t.to(device) for t in tensors)
    return Run(cfg, device, world, rank, x_tr, y_tr, x_va, y_va, model, net, opt, start)


def check_request(cfg: TrainConfig, tensorboard: bool = True) -> dict | None:
    """Everything that can fail fast, before data generation: output paths, the --resume checkpoint."""
    check_output_file(cfg.out, "--out")
    if tensorboard:
        check_output_dir(cfg.logdir, "--logdir")
    check_output_dir(cache_folder(cfg.cache_dir), "--cache-dir")
    if not cfg.resume:
        return None
    blob = read_checkpoint(cfg.out)  # ValueError when missing or corrupt
    if not blob["model_args"].get("affine_exact", False):  # its kernels would change meaning mid-run
        raise ValueError(f"--resume: checkpoint {cfg.out} predates the affine-exact CNN; train it afresh")
    old = blob["config"]
    for key in ("dim", "width", "depth", "scale"):
        if old.get(key) != getattr(cfg, key):
            raise ValueError(f"--resume: checkpoint {cfg.out} has {key}={old.get(key)}, the run asks {getattr(cfg, key)}")
    return blob


def train(config: TrainConfig | None = None, *, progress: bool = False, log=None, **options) -> tuple[UpsampleCNN, dict]:
    """Train one CNN in this process and write its checkpoint to ``out``; returns (the best epoch's model,
    its validation table). ``options`` are :class:`TrainConfig` fields (``out`` is required here);
    prints nothing unless ``log`` (e.g. ``print``) or ``progress`` is given. Bad values are ``ValueError``s
    raised before any data is generated."""
    cfg = config if config is not None else TrainConfig(**options)
    if not cfg.out:
        raise ValueError("train(...) needs out=PATH for the checkpoint")
    cfg.validate()
    blob = check_request(cfg, tensorboard=False)
    device = torch.device(cfg.device)
    t0 = time.perf_counter()
    run = build_run(cfg, blob, device, 1, 0, load_split_tensors(cfg, True, 1, device, progress=progress))
    final = fit(run, blob, None, t0, log or (lambda *a, **k: None), progress=progress)
    return run.model, final
