#!/usr/bin/python3
"""Times mpi_reshard against a plain scipy reshard and the I/O floor, in one
run on this machine, and prints ratios (docs/performance.md)."""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.environ.get("RESHARD_BIN", os.path.join(ROOT, "build", "bin", "mpi_reshard"))
# Ranks unbound, as the Python wrapper starts them: mpirun would bind each of
# two ranks to one core, and the rank that writes the hot shard could not
# deflate on the other rank's core once that rank is done (docs/operations.md).
MPIRUN = ["mpirun", "--bind-to", "none"]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def timed(cmd):
    """(wall seconds, peak RSS bytes of the process tree's largest process)."""
    t0 = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) * 1024
    return wall, rss


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def npz_bytes(path):
    """Bytes of the shard files alone, not the manifest or _SUCCESS."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs if f.endswith(".npz"))


def identical_trees(a, b):
    names = sorted(n for n in os.listdir(a) if n.endswith(".npz"))
    if names != sorted(n for n in os.listdir(b) if n.endswith(".npz")):
        return False
    return all(open(os.path.join(a, n), "rb").read() == open(os.path.join(b, n), "rb").read() for n in names)


def memory_run(work, limit_mib, nnz):
    """Bounded memory: a matrix whose arrays are >= 8x --memory-limit,
    resharded with that limit on 1 and 2 ranks. Checks every rank's peak RSS
    (getrusage, from the report) against the limit + 10% and the output bytes
    against an unlimited run; exits non-zero if either fails."""
    rows, cols = max(1000, nnz // 5), max(1000, nnz // 20)
    # ~200 source shards, each ~1/24 of the limit on average: row lengths are
    # skewed, and bucketing a shard takes ~4x its arrays.
    old = f"rows:block={-(-rows // 200)}"
    limit = limit_mib << 20
    # A destination shard is assembled in one piece at ~84 bytes per entry:
    # enough shards that each needs about a quarter of the limit.
    new = f"rows:hash=mix,shards={max(64, -(-nnz * 84 * 4 // limit))}"
    src = os.path.join(work, "mem-src", "shard_{i}.npz")
    # A new source each time: the outputs of an earlier run were made from
    # another one, and a job refuses to resume them (the source changed).
    for old_run in ("mem-src", "mem-free", "mem-np1", "mem-np2"):
        shutil.rmtree(os.path.join(work, old_run), ignore_errors=True)
    subprocess.run([sys.executable, "-c",
                    "import sys; sys.path.insert(0, %r); from sparse_reshard.testing import *; "
                    "write_sharded(skewed_matrix(%d, %d, %d, seed=5), Scheme.parse(%r), %r, compressed=False)"
                    % (os.path.join(ROOT, "python"), rows, cols, nnz, old, src)], check=True)
    src_dir = os.path.dirname(src)
    matrix_bytes = du(src_dir)
    print(f"\nbench: memory run, --memory-limit {limit_mib}MiB, matrix arrays {matrix_bytes / (1 << 20):.0f} MiB "
          f"= {matrix_bytes / limit:.1f}x the limit, {old} -> {new}")
    ok = matrix_bytes >= 8 * limit
    if not ok:
        print("bench: FAIL the matrix is not 8x the limit; raise --memory-nnz")
    free = os.path.join(work, "mem-free", "shard_{i}.npz")
    subprocess.run([*MPIRUN, "-np", "2", BIN, "--src", src, "--old-scheme", old, "--dst", free, "--new-scheme", new,
                    "--compress", "none"], check=True, env=ENV, capture_output=True)
    print(f"{'ranks':<7}{'wall s':>8}{'waves':>7}{'spilled MiB':>13}{'peak RSS MiB per rank':>24}{'worst/limit':>13}")
    for ranks in (1, 2):
        dst = os.path.join(work, f"mem-np{ranks}", "shard_{i}.npz")
        report = os.path.join(work, f"mem-np{ranks}.json")
        wall, _ = timed([*MPIRUN, "-np", str(ranks), BIN, "--src", src, "--old-scheme", old, "--dst", dst,
                         "--new-scheme", new, "--compress", "none", "--memory-limit", f"{limit_mib}MiB",
                         "--scratch-dir", work, "--report", report])
        with open(report) as f:
            r = json.load(f)
        peaks = [p["peak_rss_bytes"] for p in r["per_rank"]]
        worst = max(peaks) / limit
        same = identical_trees(os.path.dirname(free), os.path.dirname(dst))
        print(f"{ranks:<7}{wall:>8.2f}{r['exchange_waves']:>7}{r['totals']['bytes_spilled'] / (1 << 20):>13.0f}"
              f"{' '.join(f'{p / (1 << 20):.1f}' for p in peaks):>24}{worst:>12.2f}x"
              f"  output {'identical to' if same else 'DIFFERS from'} the unlimited run")
        if worst > 1.10:
            print(f"bench: FAIL peak RSS {max(peaks)} bytes exceeds the limit + 10%")
            ok = False
        ok = ok and same
    return ok


def h5ad_run(work, rows, cols, old, shape, total_memory):
    """AnnData: one .h5ad of the benchmark's matrix -> row-hash .npz shards
    (read by every rank in parts) and the row-block .npz shards -> one .h5ad,
    each against bench/anndata_reshard.py in the same run. Uncompressed
    throughout (anndata writes without compression by default)."""
    src_npz = os.path.join(work, "src-none", "shard_{i}.npz")
    one = os.path.join(work, "src-h5ad", "whole.h5ad")
    params = os.path.join(work, "src-h5ad", "params.json")
    wanted = {"from": open(os.path.join(work, "src-none", "params.json")).read()}
    if not (os.path.exists(params) and json.load(open(params)) == wanted):
        shutil.rmtree(os.path.dirname(one), ignore_errors=True)
        subprocess.run([sys.executable, os.path.join(HERE, "anndata_reshard.py"), "make", "--src", src_npz,
                        "--dst", one, "--scheme", old, "--shape", shape], check=True)
        with open(params, "w") as f:
            json.dump(wanted, f)
    out = os.path.join(work, "out-h5ad")
    new = "rows:hash=mix,shards=8"
    anndata_script = os.path.join(HERE, "anndata_reshard.py")
    cases = []
    for case, baseline, job in (
            ("one .h5ad -> rows:hash",
             ["split", "--src", one, "--dst", os.path.join(out, "anndata-split", "shard_{i}.npz"), "--scheme", new],
             ("split", one, "single", "shard_{i}.npz", new)),
            (".npz shards -> one .h5ad",
             ["gather", "--src", src_npz, "--dst", os.path.join(out, "anndata-gather", "whole.h5ad"), "--scheme", old],
             ("gather", src_npz, old, "whole.h5ad", "single"))):
        base_s, base_rss = timed([sys.executable, anndata_script, *baseline, "--shape", shape])
        row = {"case": case, "base_s": base_s, "base_rss": base_rss}
        tag, src, src_scheme, dst_name, dst_scheme = job
        for ranks in (1, 2):
            report = os.path.join(out, f"{tag}-np{ranks}.json")
            limit = f"{int(0.8 * total_memory / ranks) >> 20}MiB"
            row[f"np{ranks}_s"], _ = timed(
                [*MPIRUN, "-np", str(ranks), BIN, "--src", src, "--old-scheme", src_scheme, "--dst",
                 os.path.join(out, f"{tag}-np{ranks}", dst_name), "--new-scheme", dst_scheme, "--compress", "none",
                 "--report", report, "--memory-limit", limit])
            row[f"np{ranks}_rss"] = max(p["peak_rss_bytes"] for p in json.load(open(report))["per_rank"])
        cases.append(row)
    print()
    print("AnnData/HDF5, uncompressed: mpi_reshard against bench/anndata_reshard.py (read_h5ad + X[rows] + np.savez;")
    print("load_npz + vstack + write_h5ad), one run")
    print(f"{'case':<26}{'anndata s':>10}{'np1 s':>8}{'np2 s':>8}{'base/np1':>9}{'base/np2':>9}{'RSS anndata':>12}"
          f"{'RSS np1':>9}{'RSS np2/rank':>13}")
    mib = 1 << 20
    for r in cases:
        print(f"{r['case']:<26}{r['base_s']:>10.2f}{r['np1_s']:>8.2f}{r['np2_s']:>8.2f}"
              f"{r['base_s'] / r['np1_s']:>8.1f}x{r['base_s'] / r['np2_s']:>8.1f}x{r['base_rss'] / mib:>9.0f}MiB"
              f"{r['np1_rss'] / mib:>6.0f}MiB{r['np2_rss'] / mib:>10.0f}MiB")
    return cases


def reshard_run(out, tag, src, old, new, ranks, total_memory, options, mpi=()):
    """One timed mpi_reshard job; each rank may use 80% of memory / ranks."""
    dst = os.path.join(out, tag, "shard_{i}.npz")
    report = os.path.join(out, f"{tag}.json")
    limit = f"{int(0.8 * total_memory / ranks) >> 20}MiB"
    wall, _ = timed([*MPIRUN, "-np", str(ranks), *mpi, BIN, "--src", src, "--old-scheme", old, "--dst", dst,
                     "--new-scheme", new, *options, "--report", report, "--memory-limit", limit])
    with open(report) as f:
        r = json.load(f)
    return {"wall": wall, "rss": max(p["peak_rss_bytes"] for p in r["per_rank"]), "report": r}


def exchange_rate(report):
    """Bytes both ranks sent over MPI per second of the slower rank's
    exchange stage, or None when nothing was sent."""
    sent = report["totals"]["bytes_sent"]
    seconds = max(p["seconds"].get("exchange", 0.0) for p in report["per_rank"])
    return {"bytes": sent, "seconds": seconds, "gb_per_s": sent / seconds / 1e9 if sent and seconds else None}


def fmt_rate(rate):
    return "-" if rate["gb_per_s"] is None else f"{rate['gb_per_s']:.2f} ({rate['bytes'] / 1e6:.0f} MB)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2M nonzeros instead of 100M")
    ap.add_argument("--nnz", type=int)
    ap.add_argument("--work", default=os.path.join(ROOT, "bench-data"))
    ap.add_argument("--memory-limit-mib", type=int, help="limit of the memory run (default 128, 64 with --quick)")
    ap.add_argument("--memory-nnz", type=int, help="requested nonzeros of the memory run")
    ap.add_argument("--only-memory", action="store_true", help="just the bounded-memory run")
    ap.add_argument("--only-h5ad", action="store_true", help="just the AnnData/HDF5 cases (and their source)")
    a = ap.parse_args()
    nnz = a.nnz or (2_000_000 if a.quick else 100_000_000)
    rows, cols = max(1000, nnz // 5), max(1000, nnz // 20)
    block_rows = -(-rows // 8)
    shape = f"{rows}x{cols}"
    old = f"rows:block={block_rows}"
    targets = {"rows->cols": f"cols:block={-(-cols // 8)}", "rows->hash": "rows:hash=mix,shards=8"}
    # Generated sources are kept between runs with the same parameters
    # (generating 100M nonzeros takes minutes); everything else is redone.
    os.makedirs(a.work, exist_ok=True)
    for name in os.listdir(a.work):
        if not name.startswith("src-"):
            path = os.path.join(a.work, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    # One job per node here, as on a dedicated cluster node: each rank may use
    # 80% of the memory divided by the ranks (the default is 50%, leaving room
    # for other jobs). The skewed matrix's hot column block is one shard of
    # most of the entries, which needs ~80 bytes per entry on its owner.
    total_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit_mib = a.memory_limit_mib or (64 if a.quick else 128)
    # skewed_matrix keeps ~90% of the requested nonzeros, stored in ~13 bytes
    # each (float64, int32 index, a share of indptr).
    memory_nnz = a.memory_nnz or int(8.3 * (limit_mib << 20) / 13 / 0.9)
    if a.only_memory:
        sys.exit(0 if memory_run(a.work, limit_mib, memory_nnz) else 1)
    print(f"bench: {nnz} nonzeros requested, shape {shape}, source {old} (8 shards), work dir {a.work}")
    results = []
    exchanges = []
    # Compressed sources are written by the default --compress (igzip:1) and,
    # as the earlier figures were, deflate:6; scipy's script and the output
    # size it gives are the baseline of both.
    modes = {True: ["igzip:1", "deflate:6"], False: ["none"]}
    for compressed in ((False,) if a.only_h5ad else (True, False)):
        src = os.path.join(a.work, f"src-{'deflate:6' if compressed else 'none'}", "shard_{i}.npz")
        gen = [sys.executable, os.path.join(ROOT, "scripts", "demo_matrix.py"), "make", "--pattern", src,
               "--scheme", old, "--rows", str(rows), "--cols", str(cols), "--nnz", str(nnz), "--seed", "3"]
        if not compressed:
            gen = [sys.executable, "-c",
                   "import sys; sys.path.insert(0, %r); from sparse_reshard.testing import *; "
                   "write_sharded(skewed_matrix(%d, %d, %d, seed=3), Scheme.parse(%r), %r, compressed=False)"
                   % (os.path.join(ROOT, "python"), rows, cols, nnz, old, src)]
        params = os.path.join(os.path.dirname(src), "params.json")
        wanted = {"nnz": nnz, "rows": rows, "cols": cols, "scheme": old, "seed": 3}
        if not (os.path.exists(params) and json.load(open(params)) == wanted):
            shutil.rmtree(os.path.dirname(src), ignore_errors=True)
            subprocess.run(gen, check=True, capture_output=True)
            with open(params, "w") as f:
                json.dump(wanted, f)
        src_dir = os.path.dirname(src)
        if a.only_h5ad:
            sys.exit(0 if h5ad_run(a.work, rows, cols, old, shape, total_memory) else 1)
        for name, new in targets.items():
            out = os.path.join(a.work, f"out-{'deflate' if compressed else 'none'}-{name.replace('->', '-')}")
            scipy_wall, scipy_rss = timed([sys.executable, os.path.join(HERE, "scipy_reshard.py"), "--src", src,
                                           "--old", old, "--dst", os.path.join(out, "scipy", "shard_{i}.npz"),
                                           "--new", new, "--shape", shape, "--compressed", str(int(compressed))])
            scipy_bytes = npz_bytes(os.path.join(out, "scipy"))
            for mode in modes[compressed]:
                row = {"case": f"{name} {mode}", "scipy_s": scipy_wall, "scipy_rss": scipy_rss,
                       "scipy_bytes": scipy_bytes}
                runs = {}
                for ranks in (1, 2):
                    tag = f"{mode.replace(':', '')}-np{ranks}"
                    runs[ranks] = reshard_run(out, tag, src, old, new, ranks, total_memory, ["--compress", mode])
                    row[f"np{ranks}_s"], row[f"np{ranks}_rss"] = runs[ranks]["wall"], runs[ranks]["rss"]
                np1_dir = os.path.join(out, f"{mode.replace(':', '')}-np1")
                t0 = time.perf_counter()
                subprocess.run(f"cat {src_dir}/* > /dev/null && cp -r {np1_dir} {out}/floor-copy", shell=True,
                               check=True)
                row["floor_s"] = time.perf_counter() - t0
                # mpi_reshard fsyncs every shard before recording it; the same
                # copy made durable is the fair floor for it.
                t0 = time.perf_counter()
                subprocess.run(f"cat {src_dir}/* > /dev/null && cp -r {np1_dir} {out}/floor-copy-synced && sync",
                               shell=True, check=True)
                row["floor_sync_s"] = time.perf_counter() - t0
                shutil.rmtree(f"{out}/floor-copy")
                shutil.rmtree(f"{out}/floor-copy-synced")
                row["bytes_in"], row["bytes_out"] = du(src_dir), npz_bytes(np1_dir)
                # `mpi_reshard plan` as a user runs it before a job (one
                # process, no mpirun), against the 2-rank job it plans
                # (target: under 10% of it), without and with a balanced
                # proposal.
                for key, extra in (("plan_s", []), ("plan_balance_s", ["--balance", "nnz"])):
                    row[key], _ = timed([BIN, "plan", "--src", src, "--old-scheme", old, "--new-scheme", new,
                                         "--compress", mode, *extra])
                results.append(row)
                if not compressed:
                    # The same 2-rank job with MPI over TCP loopback instead of
                    # shared memory (what crosses a real network), and over
                    # shared memory without its single-copy (CMA) path, which
                    # on the test VM is the slower one.
                    tcp = reshard_run(out, "tcp-np2", src, old, new, 2, total_memory,
                                      ["--compress", mode], mpi=["--mca", "btl", "self,tcp"])
                    no_cma = reshard_run(out, "nocma-np2", src, old, new, 2, total_memory, ["--compress", mode],
                                         mpi=["--mca", "btl_vader_single_copy_mechanism", "none"])
                    exchanges.append({"case": row["case"], "sm": exchange_rate(runs[2]["report"]),
                                      "sm_no_cma": exchange_rate(no_cma["report"]), "no_cma_wall_s": no_cma["wall"],
                                      "tcp": exchange_rate(tcp["report"]), "tcp_wall_s": tcp["wall"]})
    print()
    print(f"{'case':<22}{'scipy s':>9}{'np1 s':>8}{'np2 s':>8}{'floor s':>9}{'+sync s':>9}{'scipy/np1':>10}"
          f"{'scipy/np2':>10}{'np2/floor':>10}{'np2/+sync':>10}{'bytes/scipy':>12}{'RSS scipy':>11}{'RSS np1':>9}"
          f"{'RSS np2/rank':>13}")
    for r in results:
        mib = 1 << 20
        print(f"{r['case']:<22}{r['scipy_s']:>9.2f}{r['np1_s']:>8.2f}{r['np2_s']:>8.2f}{r['floor_s']:>9.2f}"
              f"{r['floor_sync_s']:>9.2f}{r['scipy_s'] / r['np1_s']:>9.1f}x{r['scipy_s'] / r['np2_s']:>9.1f}x"
              f"{r['np2_s'] / r['floor_s']:>9.1f}x{r['np2_s'] / r['floor_sync_s']:>9.1f}x"
              f"{r['bytes_out'] / r['scipy_bytes']:>11.3f}x"
              f"{r['scipy_rss'] / mib:>8.0f}MiB{r['np1_rss'] / mib:>6.0f}MiB{r['np2_rss'] / mib:>10.0f}MiB")
    print()
    print("exchange, 2 ranks on one node: bytes sent by both ranks / the slower rank's exchange seconds;")
    print("shared memory with Open MPI's default single copy (CMA), without it, and TCP loopback")
    print(f"{'case':<22}{'shared memory GB/s':>20}{'no CMA GB/s':>20}{'job s':>7}{'TCP loopback GB/s':>20}{'job s':>7}")
    for e in exchanges:
        print(f"{e['case']:<22}{fmt_rate(e['sm']):>20}{fmt_rate(e['sm_no_cma']):>20}{e['no_cma_wall_s']:>7.2f}"
              f"{fmt_rate(e['tcp']):>20}{e['tcp_wall_s']:>7.2f}")
    print()
    print("mpi_reshard plan as one process (reads index arrays only), against the 2-rank job it plans")
    print(f"{'case':<22}{'plan s':>8}{'plan/np2':>10}{'+balance s':>12}{'plan/np2':>10}")
    for r in results:
        print(f"{r['case']:<22}{r['plan_s']:>8.2f}{r['plan_s'] / r['np2_s']:>9.1%}{r['plan_balance_s']:>12.2f}"
              f"{r['plan_balance_s'] / r['np2_s']:>9.1%}")
    h5ad_cases = h5ad_run(a.work, rows, cols, old, shape, total_memory)
    with open(os.path.join(a.work, "results.json"), "w") as f:
        json.dump({"cases": results, "exchange": exchanges, "h5ad": h5ad_cases}, f, indent=1)
    print(f"\nbench: raw figures in {os.path.join(a.work, 'results.json')}")
    # Per-stage CPU cost on one rank at --threads 1 and 2 (target: each stage
    # that has work to split speeds up with a second thread).
    stage_bench = os.path.join(os.path.dirname(BIN), "stage_bench")
    if os.path.exists(stage_bench):
        print()
        subprocess.run([stage_bench, str(min(nnz, 8_000_000))], check=True)
    if not memory_run(a.work, limit_mib, memory_nnz):
        sys.exit(1)


if __name__ == "__main__":
    main()
