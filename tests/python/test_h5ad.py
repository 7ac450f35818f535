"""HDF5 shards (.h5ad, .h5) against the real clients: sources written by
anndata (Debian's python3-anndata 0.8) and h5py, outputs opened with
anndata.read_h5ad (also backed) and h5py, compared with scipy entry for entry."""
import os
import subprocess
import uuid
import warnings

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from conftest import MPI_ENV, binary, run_reshard

anndata = pytest.importorskip("anndata")
warnings.simplefilter("ignore", category=FutureWarning)

ROWS, COLS, BLOCK = 600, 240, 200


@pytest.fixture(scope="module")
def matrix():
    from sparse_reshard.testing import skewed_matrix
    return skewed_matrix(ROWS, COLS, 30000, seed=12, dtype=np.float32)


@pytest.fixture(scope="module")
def anndata_source(tmp_path_factory, matrix):
    """Three row blocks written by anndata, the middle one gzip-compressed."""
    root = tmp_path_factory.mktemp("h5src")
    for i in range(ROWS // BLOCK):
        block = matrix[i * BLOCK:(i + 1) * BLOCK]
        anndata.AnnData(X=block, dtype=block.dtype).write_h5ad(
            root / f"shard_{i}.h5ad", compression="gzip" if i == 1 else None)
    return str(root / "shard_{i}.h5ad")


def dense_from_npz(pattern, scheme_text, shape):
    from sparse_reshard.testing import Scheme, read_sharded
    rows, cols, data = read_sharded(pattern, Scheme.parse(scheme_text), shape)
    out = np.zeros(shape, dtype=data.dtype)
    np.add.at(out, (rows, cols), data)
    return out


def read_group(path, group="X"):
    """A sparse group read with h5py alone, as scipy would build it."""
    with h5py.File(path, "r") as f:
        g = f[group]
        cls = sp.csr_matrix if g.attrs["encoding-type"] == "csr_matrix" else sp.csc_matrix
        return cls((g["data"][:], g["indices"][:], g["indptr"][:]), shape=tuple(g.attrs["shape"]))


def test_anndata_shards_to_npz_and_back_to_h5ad_on_several_rank_counts(anndata_source, matrix, tmp_path):
    expected = matrix.toarray()
    cols_pattern = str(tmp_path / "cols" / "shard_{i}.npz")
    run = run_reshard(anndata_source, f"rows:block={BLOCK}", cols_pattern, "cols:block=64", ranks=3)
    assert run.returncode == 0, run.stderr
    assert np.array_equal(dense_from_npz(cols_pattern, "cols:block=64", (ROWS, COLS)), expected)

    outputs = {}
    for ranks in (1, 2, 3, 4):
        dst = tmp_path / f"h5_{ranks}"
        run = run_reshard(cols_pattern, "cols:block=64", str(dst / "shard_{i}.h5ad"), "rows:hash=jump,shards=5",
                          ranks=ranks, extra=["--threads", str(1 + ranks % 2)])
        assert run.returncode == 0, run.stderr
        outputs[ranks] = [(dst / f"shard_{i}.h5ad").read_bytes() for i in range(5)]
    assert all(outputs[r] == outputs[1] for r in (2, 3, 4)), "h5ad bytes must not depend on ranks or threads"

    # anndata opens every shard, in memory and backed, and together they are
    # the source: obs names are the global row numbers.
    got = np.zeros_like(expected)
    for i in range(5):
        path = tmp_path / "h5_3" / f"shard_{i}.h5ad"
        adata = anndata.read_h5ad(path)
        backed = anndata.read_h5ad(path, backed="r")
        assert adata.shape == backed.shape and adata.n_vars == COLS
        backed_x = backed.X[:]
        assert np.array_equal(backed_x.toarray(), adata.X.toarray())
        rows = adata.obs_names.astype(int)
        assert list(adata.var_names) == [str(c) for c in range(COLS)]
        got[rows] = adata.X.toarray()
    assert np.array_equal(got, expected)

    verify = subprocess.run([binary(), "verify", "--dst", str(tmp_path / "h5_3" / "shard_{i}.h5ad"),
                             "--against-src"], capture_output=True, text=True, env=dict(os.environ, **MPI_ENV))
    assert verify.returncode == 0, verify.stderr


def test_h5ad_to_h5ad_in_a_layer_and_csc_with_wide_indices(anndata_source, matrix, tmp_path):
    dst = tmp_path / "layer" / "shard_{i}.h5ad"
    run = run_reshard(anndata_source, f"rows:block={BLOCK}", str(dst), "cols:block=100,layout=csc", ranks=2,
                      extra=["--dst-group", "/layers/counts", "--compress", "deflate:6"])
    assert run.returncode == 0, run.stderr
    parts = []
    for i in range(3):
        path = str(dst).format(i=i)
        with warnings.catch_warnings():
            # /layers carries anndata's dict encoding: no OldFormatWarning.
            warnings.simplefilter("error")
            adata = anndata.read_h5ad(path)
        assert adata.X is None and "counts" in adata.layers
        layer = read_group(path, "layers/counts")
        assert layer.format == "csc"
        with h5py.File(path, "r") as f:
            assert f["layers/counts/data"].compression == "gzip"
        parts.append(layer.toarray())
    assert np.array_equal(np.hstack(parts), matrix.toarray())
    # The manifest remembers the group: verify needs no option.
    verify = subprocess.run([binary(), "verify", "--dst", str(dst), "--against-src"], capture_output=True, text=True,
                            env=dict(os.environ, **MPI_ENV))
    assert verify.returncode == 0, verify.stderr

    # A CSC source with int64 indices, read from a named group.
    wide = matrix.tocsc()
    wide.indices, wide.indptr = wide.indices.astype(np.int64), wide.indptr.astype(np.int64)
    src = tmp_path / "csc"
    src.mkdir()
    for i in range(2):
        part = wide[:, i * 120:(i + 1) * 120]
        part.indices, part.indptr = part.indices.astype(np.int64), part.indptr.astype(np.int64)
        anndata.AnnData(X=np.zeros(part.shape, dtype=np.float32), layers={"raw": part}).write_h5ad(
            src / f"part_{i}.h5ad")
    with h5py.File(src / "part_0.h5ad", "r") as f:
        assert f["layers/raw/indices"].dtype == np.int64
    out = str(tmp_path / "rows" / "shard_{i}.npz")
    run = run_reshard(str(src / "part_{i}.h5ad"), "cols:block=120", out, "rows:block=150", ranks=3,
                      extra=["--src-group", "/layers/raw"])
    assert run.returncode == 0, run.stderr
    assert np.array_equal(dense_from_npz(out, "rows:block=150", (ROWS, COLS)), matrix.toarray())


def test_tenx_matrices_are_read_from_their_matrix_group(matrix, tmp_path):
    """10x Genomics' layout: /matrix with data, indices, indptr and a shape
    dataset, CSC of features x barcodes, no attributes; one file per sample."""
    features = matrix.T.tocsc()  # COLS features x ROWS barcodes
    src = tmp_path / "tenx"
    src.mkdir()
    for i in range(3):
        sample = features[:, i * BLOCK:(i + 1) * BLOCK].astype(np.int32)
        sample.data = np.arange(1, sample.nnz + 1, dtype=np.int32)
        with h5py.File(src / f"sample_{i}.h5", "w") as f:
            g = f.create_group("matrix")
            g["data"], g["indices"], g["indptr"] = sample.data, sample.indices, sample.indptr
            g["shape"] = np.array(sample.shape, dtype=np.int32)
            g["barcodes"] = np.array([f"B{i}-{k}".encode() for k in range(BLOCK)])
    out = str(tmp_path / "genes" / "shard_{i}.npz")
    run = run_reshard(str(src / "sample_{i}.h5"), f"cols:block={BLOCK}", out, "rows:block=60", ranks=2)
    assert run.returncode == 0, run.stderr
    expected = np.hstack([read_group_tenx(src / f"sample_{i}.h5") for i in range(3)])
    assert np.array_equal(dense_from_npz(out, "rows:block=60", (COLS, ROWS)), expected)


def read_group_tenx(path):
    with h5py.File(path, "r") as f:
        g = f["matrix"]
        return sp.csc_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=tuple(g["shape"][:])).toarray()


@pytest.mark.parametrize("damage, message", [
    ("no-encoding", "/X: no 'encoding-type' attribute (not an AnnData sparse matrix)"),
    ("long-indptr", "/X: indptr length 202 does not match 200 rows"),
    ("rank-2", "dataset '/X/indices' has rank 2, not 1"),
    ("not-hdf5", "not an HDF5 file (no HDF5 signature)"),
    ("truncated", "not a readable HDF5 file: truncated file: "),
])
def test_bad_hdf5_sources_are_one_line_exit_2_and_nothing_is_written(anndata_source, matrix, tmp_path, damage,
                                                                     message):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"shard_{i}.h5ad").write_bytes(open(anndata_source.format(i=i), "rb").read())
    bad = src / "shard_2.h5ad"
    if damage == "no-encoding":
        with h5py.File(bad, "a") as f:
            del f["X"].attrs["encoding-type"]
    elif damage == "long-indptr":
        with h5py.File(bad, "a") as f:
            indptr = f["X/indptr"][:]
            del f["X/indptr"]
            f["X/indptr"] = np.concatenate([indptr, indptr[-1:]])
    elif damage == "rank-2":
        with h5py.File(bad, "a") as f:
            indices = f["X/indices"][:]
            del f["X/indices"]
            f["X/indices"] = indices.reshape(1, -1)
    elif damage == "not-hdf5":
        bad.write_text("cell,gene,count\n")
    else:
        bad.write_bytes(bad.read_bytes()[:4000])
    dst = tmp_path / "dst"
    run = run_reshard(str(src / "shard_{i}.h5ad"), f"rows:block={BLOCK}", str(dst / "shard_{i}.npz"),
                      "cols:block=64", ranks=2)
    assert run.returncode == 2, run.stderr
    assert len(run.error_lines) == 1, run.stderr
    assert run.error_lines[0].startswith(f"mpi_reshard: reading {bad}: {message}"), run.error_lines[0]
    assert "HDF5-DIAG" not in run.stderr, "HDF5's own error stack was printed"
    assert not (dst / "_SUCCESS").exists()
    assert not list(dst.glob("shard_*")) if dst.exists() else True


def test_plan_refuses_hdf5_sources_with_a_clear_message(anndata_source):
    out = subprocess.run([binary(), "plan", "--src", anndata_source, "--old-scheme", f"rows:block={BLOCK}",
                          "--new-scheme", "cols:block=64"], capture_output=True, text=True, env=dict(os.environ, **MPI_ENV))
    assert out.returncode == 2
    assert "plan reads .npz sources only; run the job on HDF5 sources directly" in out.stderr


def test_h5ad_shards_on_s3(s3, anndata_source, matrix, tmp_path):
    """HDF5 works on object stores too: shards are whole-object reads and
    single PUTs of file images, so HDF5 itself never touches the network."""
    prefix = uuid.uuid4().hex
    dst = f"s3://dst/{prefix}/shard_{{i}}.h5ad"
    run = run_reshard(anndata_source, f"rows:block={BLOCK}", dst, "cols:block=120", ranks=2, env=s3.env())
    assert run.returncode == 0, run.stderr
    back = str(tmp_path / "back" / "shard_{i}.npz")
    run = run_reshard(dst, "cols:block=120", back, f"rows:block={BLOCK}", ranks=3, env=s3.env())
    assert run.returncode == 0, run.stderr
    assert np.array_equal(dense_from_npz(back, f"rows:block={BLOCK}", (ROWS, COLS)), matrix.toarray())
    local = tmp_path / "one.h5ad"
    local.write_bytes(s3.object_bytes("dst", f"{prefix}/shard_0.h5ad"))
    assert np.array_equal(anndata.read_h5ad(local).X.toarray(), matrix.toarray()[:, :120])


# ---- One file for the whole matrix: the `single` scheme

@pytest.fixture(scope="module")
def one_file(tmp_path_factory):
    """One .h5ad holding a whole matrix (gzip, as anndata writes it), and
    the same matrix as CSC."""
    from sparse_reshard.testing import skewed_matrix
    root = tmp_path_factory.mktemp("one")
    m = skewed_matrix(40000, 1500, 1500000, seed=21, dtype=np.float32)
    anndata.AnnData(X=m, dtype=m.dtype).write_h5ad(root / "whole.h5ad", compression="gzip")
    anndata.AnnData(X=m.tocsc(), dtype=m.dtype).write_h5ad(root / "whole_csc.h5ad")
    return root, m


def test_one_h5ad_file_is_read_in_parts_by_every_rank(one_file, tmp_path):
    root, m = one_file
    outputs = {}
    for ranks in (1, 2, 3, 4):
        dst = tmp_path / f"o{ranks}"
        report = tmp_path / f"r{ranks}.json"
        run = run_reshard(str(root / "whole.h5ad"), "single", str(dst / "shard_{i}.npz"), "rows:hash=jump,shards=6",
                          ranks=ranks, extra=["--report", str(report)])
        assert run.returncode == 0, run.stderr
        outputs[ranks] = [(dst / f"shard_{i}.npz").read_bytes() for i in range(6)]
        per_rank = read_report_json(report)["per_rank"]
        # 64 parts, round-robin: every rank reads some, none reads the file.
        assert sum(r["source_shards_read"] for r in per_rank) == 64
        assert all(r["source_shards_read"] >= 64 // ranks for r in per_rank)
        assert all(r["bytes_read"] < (root / "whole.h5ad").stat().st_size * 2 // ranks + (1 << 20)
                   for r in per_rank)
    assert all(outputs[r] == outputs[1] for r in (2, 3, 4)), "output bytes must not depend on the rank count"
    from sparse_reshard.testing import Scheme, canonical_multiset, read_sharded
    got = read_sharded(str(tmp_path / "o3" / "shard_{i}.npz"), Scheme.parse("rows:hash=jump,shards=6"), m.shape)
    coo = m.tocoo()
    assert np.array_equal(canonical_multiset(*got), canonical_multiset(coo.row, coo.col, coo.data))

    # CSC files are split by columns.
    dst = tmp_path / "from_csc" / "shard_{i}.npz"
    run = run_reshard(str(root / "whole_csc.h5ad"), "single,layout=csc", str(dst), "cols:block=400", ranks=3)
    assert run.returncode == 0, run.stderr
    assert np.array_equal(dense_from_npz(str(dst), "cols:block=400", m.shape), m.toarray())


def read_report_json(path):
    import json
    with open(path) as f:
        return json.load(f)


def test_one_file_destinations_and_what_single_refuses(one_file, tmp_path):
    root, m = one_file
    shards = tmp_path / "rows" / "shard_{i}.npz"
    run = run_reshard(str(root / "whole.h5ad"), "single", str(shards), "rows:block=7000", ranks=2)
    assert run.returncode == 0, run.stderr
    for name, check in (("whole.h5ad", "anndata"), ("whole.npz", "scipy")):
        dst = tmp_path / "gathered" / name.split(".")[1] / name
        run = run_reshard(str(shards), "rows:block=7000", str(dst), "single", ranks=3)
        assert run.returncode == 0, run.stderr
        if check == "anndata":
            back = anndata.read_h5ad(dst, backed="r").X[:]
        else:
            back = sp.load_npz(dst)
        assert back.shape == m.shape and (back != m).nnz == 0
        verify = subprocess.run([binary(), "verify", "--dst", str(dst), "--against-src"], capture_output=True,
                                text=True, env=dict(os.environ, **MPI_ENV))
        assert verify.returncode == 0, verify.stderr
    # A pattern without {i} under a scheme of several shards, either side.
    run = run_reshard(str(shards), "rows:block=7000", str(tmp_path / "bad" / "one.npz"), "cols:block=500", ranks=1)
    assert run.returncode == 2
    assert "destination pattern " + str(tmp_path / "bad" / "one.npz") + " names one file, but cols:block=500 has 3 " \
        "shards; use {i} in the pattern, or the scheme 'single'" in run.error_lines[0]
    run = run_reshard(str(root / "whole.h5ad"), "rows:block=7000", str(tmp_path / "bad2" / "s_{i}.npz"), "single",
                      ranks=1)
    assert run.returncode == 2 and "names one file, but rows:block=7000 has 6 shards" in run.error_lines[0]
    # Beside the source file: refused, nothing written.
    run = run_reshard(str(root / "whole.h5ad"), "single", str(root / "beside_{i}.npz"), "rows:block=7000", ranks=1)
    assert run.returncode == 2 and "is in the folder of the source file" in run.error_lines[0]
    assert not list(root.glob("beside_*")) and not (root / "_SUCCESS").exists()


def test_one_file_read_stays_within_the_memory_limit(tmp_path):
    """A file whose arrays are larger than the limit: each rank reads its
    parts by hyperslab and spills, within the limit + 10%, with the same
    output as an unlimited run."""
    from sparse_reshard.testing import skewed_matrix
    m = skewed_matrix(200000, 4000, 20000000, seed=5, dtype=np.float32)
    src = tmp_path / "big.h5ad"
    anndata.AnnData(X=m, dtype=m.dtype).write_h5ad(src)
    arrays = m.data.nbytes + m.indices.nbytes + m.indptr.nbytes
    limit = 64 << 20
    assert arrays > limit
    outputs = {}
    for name, extra in (("free", []), ("limited", ["--memory-limit", "64MiB", "--scratch-dir", str(tmp_path)])):
        report = tmp_path / f"{name}.json"
        run = run_reshard(str(src), "single", str(tmp_path / name / "shard_{i}.npz"), "rows:hash=jump,shards=64",
                          ranks=2, extra=["--report", str(report), "--compress", "none", *extra])
        assert run.returncode == 0, run.stderr
        outputs[name] = [(tmp_path / name / f"shard_{i}.npz").read_bytes() for i in range(64)]
        peaks = [r["peak_rss_bytes"] for r in read_report_json(report)["per_rank"]]
        if name == "limited":
            print(f"one-file read of {arrays / 2**20:.0f} MiB of arrays under a 64 MiB limit: peak RSS per rank "
                  f"{[round(p / 2**20, 1) for p in peaks]} MiB")
            assert max(peaks) <= limit * 1.1
            assert read_report_json(report)["totals"]["bytes_spilled"] > 0
    assert outputs["limited"] == outputs["free"]


def test_python_reshuffle_from_one_h5ad_with_the_single_spec(one_file, tmp_path):
    from sparse_reshard import ShardingSpec, reshuffle
    root, m = one_file
    single = ShardingSpec.single()
    assert single.to_cli() == "single" and ShardingSpec.from_cli("single,layout=csc") == ShardingSpec.single(
        layout="csc")
    fractions = []
    report = reshuffle(str(root / "whole.h5ad"), str(tmp_path / "p" / "part_{i}.h5ad"), single,
                       ShardingSpec.row_blocks(10000), max_concurrency=4, progress_cb=fractions.append)
    assert fractions and fractions[-1] == 1.0
    assert report.raw["totals"]["source_shards_read"] == 64
    parts = [anndata.read_h5ad(tmp_path / "p" / f"part_{i}.h5ad").X for i in range(4)]
    assert (sp.vstack(parts) != m).nnz == 0


# ---- One file written by every rank at once (parallel HDF5 over MPI-IO)

@pytest.fixture(scope="module")
def row_shards(tmp_path_factory):
    """Five row blocks, alternately compressed, of a skewed matrix."""
    from sparse_reshard.testing import skewed_matrix
    root = tmp_path_factory.mktemp("rows")
    m = skewed_matrix(30000, 2000, 900000, seed=3, dtype=np.float32)
    for i in range(5):
        sp.save_npz(root / f"shard_{i}.npz", m[i * 6000:(i + 1) * 6000].tocsr(), compressed=i % 2 == 0)
    return str(root / "shard_{i}.npz"), m


@pytest.mark.parametrize("compress", ["none", "igzip:1"])
def test_one_h5ad_written_collectively_is_the_same_for_any_rank_count(row_shards, tmp_path, compress):
    src, m = row_shards
    for layout in ("csr", "csc"):
        scheme = "single" if layout == "csr" else "single,layout=csc"
        arrays = {}
        for ranks in (1, 2, 3, 4):
            dst = tmp_path / layout / str(ranks) / "m.h5ad"
            report = tmp_path / f"{layout}{ranks}.json"
            run = run_reshard(src, "rows:block=6000", str(dst), scheme, ranks=ranks,
                              extra=["--compress", compress, "--report", str(report)])
            assert run.returncode == 0, run.stderr
            with h5py.File(dst, "r") as f:
                g = f["X"]
                arrays[ranks] = [g[k][:] for k in ("data", "indices", "indptr")]
                assert g["data"].compression == (None if compress == "none" else "gzip")
            back = anndata.read_h5ad(dst, backed="r").X[:]
            assert back.format == layout and (back != m).nnz == 0
            per_rank = read_report_json(report)["per_rank"]
            written = [r["entries_written"] for r in per_rank]
            assert sum(written) == m.nnz
            if ranks > 1:
                # Written by the ranks together, not gathered on one.
                assert sum(1 for n in written if n > 0) >= 2, written
            # The control files carry the file's name; no temp file is left.
            assert (dst.parent / "m.h5ad._SUCCESS").is_file()
            assert (dst.parent / "m.h5ad._reshard" / "manifest.json").is_file()
            assert sorted(p.name for p in dst.parent.iterdir()) == ["m.h5ad", "m.h5ad._SUCCESS", "m.h5ad._reshard"]
        for ranks in (2, 3, 4):
            for got, want in zip(arrays[ranks], arrays[1]):
                assert got.dtype == want.dtype and np.array_equal(got, want), (layout, ranks)


def test_one_file_outputs_share_a_folder_and_a_crash_rewrites_the_file(row_shards, tmp_path):
    src, m = row_shards
    folder = tmp_path / "out"
    for name in ("a.h5ad", "b.h5ad"):
        run = run_reshard(src, "rows:block=6000", str(folder / name), "single", ranks=3)
        assert run.returncode == 0, run.stderr
    for name in ("a.h5ad", "b.h5ad"):
        verify = subprocess.run([binary(), "verify", "--dst", str(folder / name), "--against-src"],
                                capture_output=True, text=True, env=dict(os.environ, **MPI_ENV))
        assert verify.returncode == 0, verify.stderr
    assert not (folder / "_SUCCESS").exists()
    # Killed after the file is written but before it is published: the
    # final name does not exist yet, and a rerun rewrites it from the start.
    dst = tmp_path / "crash" / "c.h5ad"
    crashed = run_reshard(src, "rows:block=6000", str(dst), "single", ranks=2,
                          env={"RESHARD_FAULT": "after-shard-write"})
    assert crashed.returncode != 0
    assert not dst.exists() and not (dst.parent / "c.h5ad._SUCCESS").exists()
    assert any(".c.h5ad.tmp." in p.name for p in dst.parent.iterdir())
    rerun = run_reshard(src, "rows:block=6000", str(dst), "single", ranks=3)
    assert rerun.returncode == 0, rerun.stderr
    assert (anndata.read_h5ad(dst).X != m).nnz == 0
    assert sorted(p.name for p in dst.parent.iterdir()) == ["c.h5ad", "c.h5ad._SUCCESS", "c.h5ad._reshard"]
    # A part that loses an entry in the exchange: exit 3, nothing published.
    dst = tmp_path / "dropped" / "d.h5ad"
    run = run_reshard(src, "rows:block=6000", str(dst), "single", ranks=2, env={"RESHARD_FAULT": "drop-entry"})
    assert run.returncode == 3, run.stderr
    assert not dst.exists() and not (dst.parent / "d.h5ad._SUCCESS").exists()
    assert not any(".tmp." in p.name for p in dst.parent.iterdir())


def test_python_reshuffle_into_one_h5ad_and_its_control_files(row_shards, tmp_path):
    from sparse_reshard import ShardingSpec, is_published, read_report, reshuffle
    src, m = row_shards
    dst = str(tmp_path / "g" / "gathered.h5ad")
    assert not is_published(dst)
    report = reshuffle(src, dst, ShardingSpec.row_blocks(6000), ShardingSpec.single(layout="csc"), max_concurrency=4)
    assert report.raw["destination_shards"] == 1
    assert is_published(dst) and read_report(dst)["job_id"] == report.raw["job_id"]
    assert os.path.isfile(dst + "._reshard/report.json")
    back = anndata.read_h5ad(dst).X
    assert back.format == "csc" and (back != m).nnz == 0
