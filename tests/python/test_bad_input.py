"""Each bad input gets one clear line naming the file and the problem, exit
code 2, and nothing written to the destination."""
import io
import os
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

from sparse_reshard.testing import Scheme, skewed_matrix, write_sharded

OLD = "rows:block=20"
NEW = "cols:block=10"


@pytest.fixture
def dataset(tmp_path):
    m = skewed_matrix(80, 30, 400, seed=9)
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(m, Scheme.parse(OLD), src)
    return tmp_path, src


def members(path):
    with zipfile.ZipFile(path) as z:
        return {info.filename: z.read(info.filename) for info in z.infolist()}


def rewrite(path, arrays=None, raw=None, drop=()):
    """Rewrites a shard with some arrays replaced (numpy-encoded) or some raw
    .npy members replaced, as np.savez would lay it out."""
    content = members(path)
    for name in drop:
        del content[name + ".npy"]
    for name, array in (arrays or {}).items():
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.asarray(array), allow_pickle=True)
        content[name + ".npy"] = buf.getvalue()
    for name, data in (raw or {}).items():
        content[name + ".npy"] = data
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in content.items():
            z.writestr(name, data)


def load_arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def expect_refusal(tmp_path, reshard, src, *fragments, old=OLD, new=NEW, dst=None, ranks=2, extra=()):
    dst = dst or str(tmp_path / "dst" / "shard_{i}.npz")
    dst_dir = os.path.dirname(dst)
    before = sorted(os.listdir(dst_dir)) if os.path.isdir(dst_dir) else None
    manifest = os.path.join(dst_dir, "_reshard", "manifest.json")
    manifest_before = open(manifest, "rb").read() if os.path.exists(manifest) else None
    run = reshard(src, old, dst, new, ranks=ranks, extra=list(extra))
    assert run.returncode == 2, run.stderr
    assert len(run.error_lines) == 1, run.stderr
    line = run.error_lines[0]
    for fragment in fragments:
        assert fragment in line, line
    after = sorted(os.listdir(dst_dir)) if os.path.isdir(dst_dir) else None
    assert after == before, "the destination changed"
    assert (open(manifest, "rb").read() if os.path.exists(manifest) else None) == manifest_before
    return line


def test_missing_source_shard(dataset, reshard):
    tmp, src = dataset
    os.remove(src.format(i=2))
    expect_refusal(tmp, reshard, src, "missing source shard", "shard_2.npz")


@pytest.mark.parametrize("kind,fragment", [("directory", "is a directory, not a file"),
                                           ("fifo", "is a FIFO, not a file"),
                                           ("link-loop", "is a symbolic link loop, not a file")])
def test_a_source_shard_that_is_not_a_file_is_named_for_what_it_is(dataset, reshard, kind, fragment):
    # Each used to be reported as a "missing source shard".
    tmp, src = dataset
    path = src.format(i=1)
    os.remove(path)
    if kind == "directory":
        os.mkdir(path)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink(path, path)
    line = expect_refusal(tmp, reshard, src, path, fragment)
    assert "missing" not in line


def test_no_source_shards(tmp_path, reshard):
    expect_refusal(tmp_path, reshard, str(tmp_path / "nothing" / "s_{i}.npz"), "no source shards match")


def test_not_a_zip(dataset, reshard):
    tmp, src = dataset
    with open(src.format(i=1), "wb") as f:
        f.write(b"this is not a zip file at all" * 10)
    expect_refusal(tmp, reshard, src, "shard_1.npz", "not a valid zip archive")


@pytest.mark.parametrize("make", ["garbage", "shard-then-junk"])
def test_a_large_file_that_is_not_a_whole_zip_is_named_as_such(dataset, reshard, make):
    # Over 64 KiB the directory is looked for in a tail read: this used to
    # end in "need more bytes" instead of saying what is wrong with the file.
    tmp, src = dataset
    path = src.format(i=2)
    junk = bytes(range(256)) * 300
    content = junk if make == "garbage" else open(path, "rb").read() + junk
    assert len(content) > 70_000
    with open(path, "wb") as f:
        f.write(content)
    line = expect_refusal(tmp, reshard, src, "shard_2.npz", "truncated or not a zip file")
    assert "need more bytes" not in line


@pytest.mark.parametrize("offset", [0xFFFFFFF0, 7])
def test_a_bad_member_offset_is_bad_input_naming_the_shard(dataset, reshard, offset):
    # The central directory's local-header offset of the first member, far
    # past the end of the file or pointing into the first local header.
    tmp, src = dataset
    path = src.format(i=1)
    data = bytearray(open(path, "rb").read())
    central = data.find(b"PK\x01\x02")
    assert central > 0
    data[central + 42:central + 46] = offset.to_bytes(4, "little")
    with open(path, "wb") as f:
        f.write(bytes(data))
    line = expect_refusal(tmp, reshard, src, "shard_1.npz")
    assert "Invalid argument" not in line, line


def test_truncated_file(dataset, reshard):
    tmp, src = dataset
    path = src.format(i=3)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    expect_refusal(tmp, reshard, src, "shard_3.npz", "zip")


@pytest.mark.parametrize("name", ["indptr", "indices", "data", "shape", "format"])
def test_missing_member(dataset, reshard, name):
    tmp, src = dataset
    rewrite(src.format(i=1), drop=[name])
    expect_refusal(tmp, reshard, src, "shard_1.npz", f"missing array '{name}'")


def test_object_dtype(dataset, reshard):
    tmp, src = dataset
    path = src.format(i=1)
    data = load_arrays(path)["data"]
    rewrite(path, arrays={"data": np.array(list(data), dtype=object)})
    expect_refusal(tmp, reshard, src, "shard_1.npz", "object (pickled)")


def test_big_endian(dataset, reshard):
    tmp, src = dataset
    path = src.format(i=1)
    rewrite(path, arrays={"data": load_arrays(path)["data"].astype(">f8")})
    expect_refusal(tmp, reshard, src, "shard_1.npz", "big-endian")


def test_fortran_order(dataset, reshard):
    tmp, src = dataset
    path = src.format(i=1)
    data = load_arrays(path)["data"]
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": True, "shape": data.shape})
    rewrite(path, raw={"data": buf.getvalue() + data.astype("<f8").tobytes()})
    expect_refusal(tmp, reshard, src, "shard_1.npz", "Fortran-order")


@pytest.mark.parametrize("mutate,message", [
    (lambda a: {"indptr": np.append(a["indptr"], a["indptr"][-1])}, "indptr length 22 does not match 20 rows"),
    (lambda a: {"indptr": a["indptr"] + 1}, "indptr starts at 1, not 0"),
    (lambda a: {"indptr": np.concatenate([a["indptr"][:5], [a["indptr"][5] + 10**6], a["indptr"][6:]])},
     "indptr decreases at position 6"),
    (lambda a: {"indptr": np.concatenate([a["indptr"][:-1], [a["indptr"][-1] - 1]])}, "indptr ends at"),
    (lambda a: {"indices": np.where(np.arange(len(a["indices"])) == 3, 30, a["indices"])},
     "indices[3] = 30 is out of range [0, 30)"),
    (lambda a: {"indices": np.where(np.arange(len(a["indices"])) == 0, -2, a["indices"])},
     "indices[0] = -2 is out of range"),
])
def test_structural_errors(dataset, reshard, mutate, message):
    tmp, src = dataset
    path = src.format(i=0)
    arrays = load_arrays(path)
    assert arrays["indptr"][5] <= arrays["indptr"][6]
    rewrite(path, arrays={k: v.astype(arrays[k].dtype) for k, v in mutate(arrays).items()})
    expect_refusal(tmp, reshard, src, "shard_0.npz", message)


def test_dtype_disagreement(dataset, reshard):
    tmp, src = dataset
    path = src.format(i=2)
    rewrite(path, arrays={"data": load_arrays(path)["data"].astype(np.float32)})
    expect_refusal(tmp, reshard, src, "shard_2.npz", "data dtype float32", "float64")


def test_index_width_disagreement(dataset, reshard):
    tmp, src = dataset
    path = src.format(i=3)
    arrays = load_arrays(path)
    rewrite(path, arrays={"indices": arrays["indices"].astype(np.int64), "indptr": arrays["indptr"].astype(np.int64)})
    expect_refusal(tmp, reshard, src, "shard_3.npz", "index dtype int64")


@pytest.mark.parametrize("odd", [0, 1, 3])
def test_width_disagreement_blames_the_shard_that_differs(dataset, reshard, odd):
    # The first shard's width used to be taken as the matrix's, so an odd
    # shard_0 had shard_1 blamed.
    tmp, src = dataset
    rewrite(src.format(i=odd), arrays={"shape": np.array([20, 31])})
    line = expect_refusal(tmp, reshard, src, f"shard_{odd}.npz", "20x31")
    for other in {0, 1, 2, 3} - {odd}:
        assert f"shard_{other}.npz" not in line, line


def test_width_disagreement_in_a_hashed_source_blames_the_shard_that_differs(tmp_path, reshard):
    src = str(tmp_path / "src" / "shard_{i}.npz")
    write_sharded(skewed_matrix(80, 30, 400, seed=9), Scheme.parse("rows:hash=mix,shards=3"), src)
    path = src.format(i=0)
    arrays = load_arrays(path)
    rewrite(path, arrays={"shape": np.array([arrays["shape"][0], 29])})
    line = expect_refusal(tmp_path, reshard, src, "shard_0.npz", "has 29 columns but the matrix has 30",
                          old="rows:hash=mix,shards=3")
    assert "shard_1.npz" not in line and "shard_2.npz" not in line


def test_wrong_block_height(dataset, reshard):
    tmp, src = dataset
    path = src.format(i=1)
    arrays = load_arrays(path)
    rewrite(path, arrays={"shape": np.array([19, 30]), "indptr": arrays["indptr"][:20]}, )
    line = expect_refusal(tmp, reshard, src, "shard_1.npz", "does not match")
    assert "rows:block=20" in line


@pytest.mark.parametrize("wrong,implied,where", [
    ("rows:block=25", "rows:block=20", "20 rows each"),
    ("rows:block=16", "rows:block=20", "20 rows each"),
])
def test_a_wrong_block_size_names_the_one_the_data_implies(dataset, reshard, wrong, implied, where):
    tmp, src = dataset
    line = expect_refusal(tmp, reshard, src, "does not match", f"the shards hold {where}, as with --old-scheme {implied}",
                          old=wrong)
    assert line.count("as with") == 1


def test_a_wrong_grid_block_names_both_sizes_the_data_implies(tmp_path, reshard):
    src = str(tmp_path / "src" / "b_{row}_{col}.npz")
    write_sharded(skewed_matrix(80, 30, 400, seed=9), Scheme.parse("grid:block=20x10"), src)
    expect_refusal(tmp_path, reshard, src, "the shards hold 20 rows and 10 columns each, as with --old-scheme grid:block=20x10",
                   old="grid:block=16x12")
    expect_refusal(tmp_path, reshard, src, "the shards hold 10 columns each, as with --old-scheme grid:block=20x10",
                   old="grid:block=20x12")


def test_destination_is_source(dataset, reshard):
    tmp, src = dataset
    expect_refusal(tmp, reshard, src, "refusing to overwrite the source", dst=src)
    expect_refusal(tmp, reshard, src, "inside the source directory", dst=str(tmp / "src" / "other_{i}.npz"))
    expect_refusal(tmp, reshard, src, "inside the source directory", dst=str(tmp / "src" / "sub" / "x_{i}.npz"))
    assert sorted(os.listdir(tmp / "src")) == [f"shard_{i}.npz" for i in range(4)]


def test_existing_destination_needs_overwrite(dataset, reshard):
    tmp, src = dataset
    dst = str(tmp / "dst" / "shard_{i}.npz")
    os.makedirs(tmp / "dst")
    sp.save_npz(dst.format(i=0), sp.csr_matrix((1, 1)))
    before = open(dst.format(i=0), "rb").read()
    expect_refusal(tmp, reshard, src, "--overwrite", dst=dst)
    assert open(dst.format(i=0), "rb").read() == before
    run = reshard(src, OLD, dst, NEW, extra=["--overwrite"])
    assert run.returncode == 0, run.stderr
    assert sp.load_npz(dst.format(i=0)).shape == (80, 10)


@pytest.mark.parametrize("old,fragment", [("rows:block=0", "block must be > 0"),
                                          ("rows:hash=sha,shards=2", "unknown hash 'sha'"),
                                          ("rows:hash=mix,shards=0", "shards must be > 0"),
                                          ("spiral:block=3", "unknown scheme kind 'spiral'"),
                                          ("rows:block=20,block=40", "'block' is given more than once"),
                                          ("rows:hash=mix,shards=2,shards=3", "'shards' is given more than once"),
                                          ("rows:block=20,workers=0", "workers must be > 0")])
def test_bad_scheme(dataset, reshard, old, fragment):
    tmp, src = dataset
    expect_refusal(tmp, reshard, src, "--old-scheme", fragment, old=old)


@pytest.mark.parametrize("flag,value,fragment", [
    ("--max-message-bytes", "-1", "expected a whole number of at least 32"),
    ("--max-message-bytes", "16", "--max-message-bytes must be at least 32"),
    ("--manifest-batch", "0", "--manifest-batch must be at least 1"),
    ("--manifest-batch", "1.5", "expected a whole number"),
    ("--max-concurrency", "0", "--max-concurrency must be at least 1"),
    ("--max-concurrency", "99999999999", "--max-concurrency must be at most 65536"),
    ("--threads", "-2", "expected a whole number of at least 0"),
    ("--ownership-epsilon", "nan", "expected a finite number >= 0"),
    ("--ownership-epsilon", "inf", "expected a finite number >= 0"),
    ("--ownership-epsilon", "-0.5", "expected a finite number >= 0"),
    ("--ownership-epsilon", "1e999", "expected a finite number >= 0"),
])
def test_nonsense_numeric_options_are_refused(dataset, reshard, flag, value, fragment):
    # Each of these used to be accepted: Boost read -1 as 2^64-1 and nan as a
    # number, and 0 batches or 0 requests in flight could never finish.
    tmp, src = dataset
    line = expect_refusal(tmp, reshard, src, fragment, extra=[f"{flag}={value}"])
    assert flag in line, line


@pytest.mark.parametrize("where,fragment", [("a-directory", "is a directory"),
                                            ("no-such-folder/report.json", "does not exist")])
def test_an_unwritable_report_path_is_refused_before_any_work(dataset, reshard, where, fragment):
    # It used to be found after _SUCCESS was published, and the job exited 1.
    tmp, src = dataset
    (tmp / "a-directory").mkdir()
    report = tmp / where
    line = expect_refusal(tmp, reshard, src, "--report", str(report), fragment, extra=["--report", str(report)])
    assert line.count("\n") == 0
    assert not (tmp / "dst").exists()


def test_pattern_without_placeholder(dataset, reshard):
    """A pattern without {i} names one file: only for one-shard schemes."""
    tmp, src = dataset
    expect_refusal(tmp, reshard, src, "names one file, but", dst=str(tmp / "dst" / "out.npz"))


def test_fingerprint_mismatch_exits_3_and_leaves_nothing(dataset, reshard):
    tmp, src = dataset
    run = reshard(src, OLD, str(tmp / "dst" / "shard_{i}.npz"), NEW, env={"RESHARD_FAULT": "drop-entry"})
    assert run.returncode == 3, run.stderr
    assert "fingerprint mismatch" in run.error_lines[0]
    left = os.listdir(tmp / "dst") if os.path.isdir(tmp / "dst") else []
    assert [name for name in left if name.startswith("shard_")] == [], "written shards must be removed"
    assert "_SUCCESS" not in left


@pytest.mark.parametrize("flags", [[], ["--restart"], ["--overwrite"]])
def test_success_marker_that_is_a_directory_says_what_to_remove(dataset, reshard, flags):
    # It used to advise --restart, which rewrote everything and failed again.
    tmp, src = dataset
    (tmp / "dst" / "_SUCCESS").mkdir(parents=True)
    line = expect_refusal(tmp, reshard, src, "_SUCCESS is a directory", "remove it", extra=flags)
    assert "--restart" not in line, line


def test_unusable_scratch_dir_is_refused_before_any_work(dataset, reshard):
    # It used to be found only when spilling started, after the reading.
    tmp, src = dataset
    expect_refusal(tmp, reshard, src, "--scratch-dir", str(tmp / "no" / "such"), "cannot hold spilled entries",
                   extra=["--scratch-dir", str(tmp / "no" / "such")])
    assert not (tmp / "dst").exists()


def test_destination_shard_name_taken_by_a_directory_is_refused_up_front(dataset, reshard):
    # It used to write shard 0 and the manifest, then fail with exit 2.
    tmp, src = dataset
    (tmp / "dst" / "shard_1.npz").mkdir(parents=True)
    expect_refusal(tmp, reshard, src, "destination shard", "shard_1.npz", "is a directory")
