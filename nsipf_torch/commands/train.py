"""Train the neural interpolator's CNN on radial solutions (docs/MODEL.md §3). nanoGPT-style: flat.

Commands (outputs go to the current directory; the data cache to the user cache folder):

    python train.py                                    # 3D -> checkpoints/nsipf_3d.pt (the shipped model)
    python train.py --dim 2                            # 2D -> checkpoints/nsipf_2d.pt
    python train.py --roughness on --out checkpoints/ablation_rough_3d.pt     # the roughness ablation
    python train.py --roughness off --out checkpoints/ablation_off_3d.pt   # the paper's input (the first model)
    python train.py --resume                           # continue the run in --out for more --epochs
    python train.py --device cuda                      # on a GPU: data generation and training
    python train.py --evaluate checkpoints/nsipf_3d.pt --roughness on    # a model's table on rough inputs
    OMP_NUM_THREADS=1 torchrun --nproc_per_node=2 train.py --threads 1   # DistributedDataParallel (gloo on
                                                       # the CPU, nccl on CUDA), same result layout

Paper defaults (docs/MODEL.md §3): Adam, batch size 4 (per process), mean-squared-error loss, epochs as a flag.

Input and target (``--roughness``, default ``keep``): the CNN sees the rough SIPF field of persistent
particles (what a simulation gives it) and is trained to add the residual of the *smooth* field while
passing the particles' holes through as linear upsampling does: target = exact fine field + linear
upsampling of (rough - smooth). Trained on the smooth input alone (``off``, the paper's), the CNN amplifies
the grid-scale holes and loses end to end; trained to remove the holes (``on``), it over-smooths and fails
(docs/MODEL.md §6; the measured errors of every variant are in docs/VALIDATION.md).
Each sample is normalised by its input's maximum (the CNN is exactly scale-equivariant, so this only weighs
samples equally). The data (``nsipf_torch.neural.data``) is generated once, seeded, on --device, and cached under
--cache-dir. Every output path is checked before the data are generated.

Outputs
- ``--out``: checkpoint after every epoch, written atomically (temporary file, then rename). It holds the
  model weights of the epoch with the lowest validation loss ("model", with its "metrics"), the latest
  weights ("last_model") and optimizer state that --resume continues, the model arguments, the full config
  and the epoch: only tensors and plain Python values (``torch.load(..., weights_only=True)``). Load it with
  ``nsipf_torch.neural.model.load_model(path, dim)``.
- ``--logdir``: TensorBoard scalars (train and validation loss; validation errors of the CNN, linear and
  cubic-spline upsampling for values and gradients) and validation images (slices of input, target,
  prediction).
- stdout: the final validation table.

Bad input (an unknown flag, a value out of range, --resume without a checkpoint): a message on stderr,
exit status 2, no traceback, nothing written.
"""
from __future__ import annotations

import os
import sys
import time

import torch

from nsipf_torch.commands.cli import check_output_dir, parse_config, prog_name, usage_error
from nsipf_torch.neural.data import cache_folder, make_dataset
from nsipf_torch.neural.model import load_model
from nsipf_torch.neural.training import (TrainConfig, build_run, check_request, evaluate, fit, load_split_tensors,
                                  normalised, table)

PROG = prog_name("train.py")  # nsipf-train when started as the console script


def parse_args(argv) -> TrainConfig:
    return parse_config(TrainConfig, argv, prog=PROG, description=__doc__.split("\n")[0])


def evaluate_checkpoint(cfg: TrainConfig) -> int:
    """--evaluate: the validation table of a checkpoint on this config's data (its halo and scale)."""
    try:
        model, _ = load_model(cfg.evaluate, dim=cfg.dim)
        check_output_dir(cache_folder(cfg.cache_dir), "--cache-dir")
    except ValueError as err:
        return usage_error(PROG, err)
    cfg.depth, cfg.scale, cfg.width = model.depth, model.scale, model.width  # the data's halo = the model's
    device = torch.device(cfg.device)
    data = make_dataset(cfg.data_config(), cache_folder(cfg.cache_dir), device=device)
    inp, tgt = normalised(data["val"], cfg.roughness, cfg.dim, cfg.depth, cfg.scale)
    print(table(evaluate(model.to(device), inp.to(device), tgt.to(device))))
    return 0


def main(argv=None) -> int:
    try:
        cfg = parse_args(argv)
        blob = None if cfg.evaluate else check_request(cfg)
    except ValueError as err:
        return usage_error(PROG, err)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.evaluate:
        return evaluate_checkpoint(cfg)

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    device = torch.device(cfg.device if not cfg.device.startswith("cuda") or world == 1
                          else f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    if world > 1:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    t0 = time.perf_counter()
    tensors = load_split_tensors(cfg, rank == 0, world, device)
    t_data = time.perf_counter() - t0
    run = build_run(cfg, blob, device, world, rank, tensors)
    writer = None
    if run.master:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(cfg.logdir)
        print(f"data: {run.x_tr.shape[0]} train / {run.x_va.shape[0]} val patches ({t_data:.1f} s); "
              f"model {sum(p.numel() for p in run.model.parameters())} parameters; world {world}")
    fit(run, blob, writer, t0, log=lambda *a: print(*a, flush=True))
    if writer is not None:
        writer.close()
    if world > 1:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
