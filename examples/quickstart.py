"""Quickstart: simulate two_blobs with NSIPF, compare it with the finite-volume reference, plot both.

    python examples/quickstart.py            # 3D, N = 32, P = 20,000, T = 0.2: about half a minute on a laptop CPU
    python examples/quickstart.py --small    # a few seconds (what the test suite runs)

Writes quickstart.png (rho along the x axis through the centre) into --out (default: the current directory).
"""
import argparse
import sys
from pathlib import Path

import nsipf_torch as nt
from nsipf_torch.io.plotting import centre_line, plot_line_profiles


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", action="store_true", help="a short run (N = 32, P = 10,000, T = 0.02)")
    p.add_argument("--out", default=".", help="where quickstart.png goes")
    args = p.parse_args(argv)
    size = dict(N=32, P=10_000, T=0.02) if args.small else dict(N=32, P=20_000, T=0.2)

    nsipf = nt.simulate("two_blobs", method="nsipf", device="cpu", **size)   # returns a Result, writes nothing
    fd = nt.simulate("two_blobs", method="fdm", device="cpu", dtype="float64",
                     **{k: v for k, v in size.items() if k != "P"})

    rho_nsipf, rho_fd = nsipf.rho[:, -1].double(), fd.rho[:, -1]      # (members, N, N, N) at t = T
    error = nt.rel_l2(rho_nsipf, rho_fd, coarse=size["N"] // 2, dim=3)
    print(f"NSIPF: {nsipf.n_steps} steps in {nsipf.wall_time:.1f} s; FD: {fd.substeps} sub-steps in {fd.wall_time:.1f} s")
    print(f"rho relative L2 error of NSIPF against FD at t = {size['T']}: {float(error[0]):.3f}")
    print(f"mass: NSIPF {float(nsipf.series('mass')[1][-1, 0]):.6f} (float32), FD {float(fd.series('mass')[1][-1, 0]):.12f}")

    x = nsipf.grid.centres().numpy()
    path = Path(args.out) / "quickstart.png"
    plot_line_profiles(path, x, {"FD reference": centre_line(rho_fd[0].numpy(), 3),
                                 f"NSIPF (P = {size['P']:,})": centre_line(rho_nsipf[0].numpy(), 3)},
                       "rho", f"two_blobs, N = {size['N']}, t = {size['T']}")
    print(f"figure: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
