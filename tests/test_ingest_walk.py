"""Repository walking: gitignore at every level, default excludes, globs, secrets, links, depth."""

from __future__ import annotations

import os

import pytest

from starcli.ingest import InputError, ingest
from starcli.walk import MAX_DEPTH


def make_tree(root, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def walk(root, **options):
    """(document paths, {skipped path: reason}) for a walk of ``root`` shown as "repo"."""
    cwd = os.getcwd()
    os.chdir(root.parent)
    try:
        result = ingest([root.name], **options)
    finally:
        os.chdir(cwd)
    return [d.path for d in result.documents], {s.path: s.reason for s in result.skipped}


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    return root


def test_nested_gitignore_and_negation(repo):
    make_tree(
        repo,
        {
            ".gitignore": "*.log\nsecret_dir/\n",
            "app.py": "print('hi')\n",
            "debug.log": "log\n",
            "secret_dir/a.txt": "hidden\n",
            "sub/.gitignore": "*.tmp\n!keep.log\n",
            "sub/keep.log": "kept by negation\n",
            "sub/other.log": "ignored by parent\n",
            "sub/x.tmp": "ignored by nested\n",
            "sub/code.py": "x = 1\n",
            "other/x.tmp": "nested rule does not reach here\n",
        },
    )
    docs, skipped = walk(repo)
    assert docs == [
        "repo/.gitignore",
        "repo/app.py",
        "repo/other/x.tmp",
        "repo/sub/.gitignore",
        "repo/sub/code.py",
        "repo/sub/keep.log",
    ]
    assert skipped["repo/debug.log"] == "matched repo/.gitignore (*.log)"
    assert skipped["repo/secret_dir/"] == "matched repo/.gitignore (secret_dir/)"
    assert skipped["repo/sub/x.tmp"] == "matched repo/sub/.gitignore (*.tmp)"
    assert skipped["repo/sub/other.log"].startswith("matched repo/.gitignore")
    assert "repo/secret_dir/a.txt" not in skipped  # an ignored directory is not entered


def test_git_info_exclude_and_enclosing_repository(repo):
    make_tree(
        repo,
        {
            ".git/info/exclude": "local-only.txt\n",
            ".git/HEAD": "ref: refs/heads/main\n",
            ".gitignore": "*.out\n",
            "local-only.txt": "excluded locally\n",
            "src/main.py": "print(1)\n",
            "src/result.out": "ignored by the top .gitignore\n",
            "src/local-only.txt": "excluded too\n",
        },
    )
    docs, skipped = walk(repo)
    assert docs == ["repo/.gitignore", "repo/src/main.py"]
    assert skipped["repo/local-only.txt"] == "matched repo/.git/info/exclude (local-only.txt)"
    assert skipped["repo/.git/"] == "default exclude: version control"
    # Walking a subdirectory still applies the repository's ignore files above it.
    docs, skipped = walk(repo / "src")
    assert docs == ["src/main.py"]
    assert skipped["src/result.out"].endswith("(*.out)")
    assert skipped["src/local-only.txt"].endswith("(local-only.txt)")


def test_named_directory_that_the_repository_ignores_is_walked_with_a_warning(repo):
    make_tree(repo, {".git/HEAD": "x\n", ".gitignore": "generated/\n", "generated/api.py": "y = 2\n"})
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        result = ingest(["generated"])
    finally:
        os.chdir(cwd)
    assert [d.path for d in result.documents] == ["generated/api.py"]
    assert any("walked anyway" in w for w in result.warnings)


def test_no_gitignore_reads_ignored_files(repo):
    make_tree(repo, {".gitignore": "*.log\n", "a.log": "x\n"})
    docs, skipped = walk(repo, use_gitignore=False)
    assert docs == ["repo/.gitignore", "repo/a.log"]
    assert skipped == {}


def test_include_and_exclude_globs(repo):
    make_tree(
        repo,
        {"a.py": "a\n", "b.md": "b\n", "docs/c.md": "c\n", "docs/d.py": "d\n", "tests/t.py": "t\n"},
    )
    docs, skipped = walk(repo, include=["*.py"])
    assert docs == ["repo/a.py", "repo/docs/d.py", "repo/tests/t.py"]
    assert skipped["repo/b.md"] == "not matched by --include"
    docs, skipped = walk(repo, exclude=["docs/", "t.py"])
    assert docs == ["repo/a.py", "repo/b.md"]
    assert skipped["repo/docs/"] == "matched --exclude (docs/)"
    assert skipped["repo/tests/t.py"] == "matched --exclude (t.py)"
    docs, _ = walk(repo, include=["docs/**"], exclude=["*.py"])
    assert docs == ["repo/docs/c.md"]


def test_invalid_glob_is_an_input_error(repo):
    make_tree(repo, {"a.py": "a\n"})
    with pytest.raises(InputError, match="--exclude"):
        walk(repo, exclude=["!"])


def test_default_excludes(repo):
    make_tree(
        repo,
        {
            "main.py": "x\n",
            "node_modules/left-pad/index.js": "module.exports = 1\n",
            ".venv/lib/site.py": "x\n",
            "env2/pyvenv.cfg": "home = /usr\n",
            "env2/lib/a.py": "x\n",
            "build/out.txt": "x\n",
            "dist/pkg.txt": "x\n",
            "target/debug.txt": "x\n",
            "pkg/__pycache__/m.cpython-311.pyc": b"\x00\x01",
            ".pytest_cache/v": "x\n",
            ".mypy_cache/v": "x\n",
            "starcli.egg-info/PKG-INFO": "x\n",
            "package-lock.json": "{}\n",
            "yarn.lock": "x\n",
            "poetry.lock": "x\n",
            "Cargo.lock": "x\n",
            "uv.lock": "x\n",
            "big.txt": "a" * 2000 + "\n",
        },
    )
    docs, skipped = walk(repo, max_file_bytes=1000)
    assert docs == ["repo/main.py"]
    assert skipped["repo/node_modules/"] == "default exclude: dependencies"
    assert skipped["repo/.venv/"] == "default exclude: virtualenv"
    assert skipped["repo/env2/"] == "default exclude: virtualenv"
    for name in ("build", "dist", "target", "starcli.egg-info"):
        assert skipped[f"repo/{name}/"] == "default exclude: build output"
    for name in ("pkg/__pycache__", ".pytest_cache", ".mypy_cache"):
        assert skipped[f"repo/{name}/"] == "default exclude: cache"
    for name in ("package-lock.json", "yarn.lock", "poetry.lock", "Cargo.lock", "uv.lock"):
        assert skipped[f"repo/{name}"] == "default exclude: lock file"
    assert skipped["repo/big.txt"] == "larger than 1000 bytes cap"


def test_secret_files_by_name_are_skipped_even_without_gitignore(repo):
    make_tree(
        repo,
        {
            "app.py": "x = 1\n",
            ".env": "API_KEY=abc\n",
            ".env.production": "API_KEY=abc\n",
            "id_rsa": "not really a key\n",
            "server.pem": "x\n",
            "tls.key": "x\n",
            "credentials.json": "{}\n",
            ".npmrc": "//registry/:_authToken=x\n",
            ".netrc": "machine x login y password z\n",
            ".pgpass": "h:5432:db:u:p\n",
            ".aws/credentials": "[default]\naws_secret_access_key = x\n",
        },
    )
    docs, skipped = walk(repo, use_gitignore=False)
    assert docs == ["repo/app.py"]
    assert skipped["repo/.env"] == "secret: environment file"
    assert skipped["repo/.env.production"] == "secret: environment file"
    assert skipped["repo/id_rsa"] == "secret: private key"
    assert skipped["repo/.aws/credentials"] == "secret: AWS credentials"
    assert all(reason.startswith("secret: ") for reason in skipped.values())
    assert len(skipped) == 10


def test_secret_by_content_is_skipped(repo):
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n" * 3
    make_tree(repo, {"notes.txt": f"my key:\n{key}-----END OPENSSH PRIVATE KEY-----\n", "ok.txt": "ok\n"})
    docs, skipped = walk(repo)
    assert docs == ["repo/ok.txt"]
    assert skipped["repo/notes.txt"] == "secret: Private Key on line 2"


def test_symlinks_are_reported_and_not_followed(repo, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("outside the repository\n")
    make_tree(repo, {"real.txt": "real\n", "dir/inner.txt": "inner\n"})
    (repo / "link.txt").symlink_to(outside)
    (repo / "dirlink").symlink_to(repo / "dir")
    (repo / "up").symlink_to(repo)  # a loop through the parent
    (repo / "a").symlink_to(repo / "b")  # a symlink loop
    (repo / "b").symlink_to(repo / "a")
    (repo / "dangling").symlink_to(repo / "missing")
    docs, skipped = walk(repo)
    assert docs == ["repo/dir/inner.txt", "repo/real.txt"]
    for name in ("link.txt", "dirlink", "up", "a", "b", "dangling"):
        assert skipped[f"repo/{name}"] == "symlink (not followed)"


def test_named_symlink_loop_and_dangling_link_are_input_errors(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    with pytest.raises(InputError, match="symlink loop"):
        ingest([str(tmp_path / "a")])
    with pytest.raises(InputError, match="broken symlink"):
        ingest([str(tmp_path / "dangling")])


def test_deep_tree_stops_at_the_depth_limit(repo):
    deep = repo
    for _ in range(MAX_DEPTH + 20):
        deep = deep / "d"
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("too deep\n")
    (repo / "top.txt").write_text("top\n")
    docs, skipped = walk(repo)
    assert docs == ["repo/top.txt"]
    [(path, reason)] = skipped.items()
    assert path.count("/d") == MAX_DEPTH + 1 and reason.startswith("deeper than")


def test_unreadable_file_is_reported(repo, monkeypatch):
    make_tree(repo, {"ok.txt": "ok\n", "locked.txt": "secret\n"})

    def denied(path, limit, *, walked):
        if path.endswith("locked.txt"):
            raise PermissionError(13, "Permission denied")
        return real_read(path, limit, walked=walked)

    from starcli import ingest as ingest_module

    real_read = ingest_module.read_bytes
    monkeypatch.setattr(ingest_module, "read_bytes", denied)
    docs, skipped = walk(repo)
    assert docs == ["repo/ok.txt"]
    assert skipped["repo/locked.txt"] == "unreadable: Permission denied"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_and_directory_with_real_permissions(repo):
    make_tree(repo, {"ok.txt": "ok\n", "locked.txt": "x\n", "closed/inner.txt": "x\n"})
    os.chmod(repo / "locked.txt", 0)
    os.chmod(repo / "closed", 0)
    try:
        docs, skipped = walk(repo)
    finally:
        os.chmod(repo / "closed", 0o755)
    assert docs == ["repo/ok.txt"]
    assert skipped["repo/locked.txt"] == "unreadable: Permission denied"
    assert skipped["repo/closed/"] == "unreadable: Permission denied"


def test_fifo_in_a_walk_is_skipped_without_blocking(repo):
    make_tree(repo, {"ok.txt": "ok\n"})
    os.mkfifo(repo / "pipe")
    docs, skipped = walk(repo)
    assert docs == ["repo/ok.txt"]
    assert skipped["repo/pipe"] == "not a regular file"


def test_order_is_sorted_and_deterministic(repo):
    names = ["b.txt", "a/z.txt", "a/b/c.txt", "A.txt", "a.txt", "a-b.txt", "c/a.txt"]
    make_tree(repo, {name: f"{name}\n" for name in reversed(names)})
    first, _ = walk(repo)
    assert first == [
        "repo/A.txt",
        "repo/a/b/c.txt",
        "repo/a/z.txt",
        "repo/a-b.txt",
        "repo/a.txt",
        "repo/b.txt",
        "repo/c/a.txt",
    ]
    assert walk(repo)[0] == first


def test_display_paths(repo):
    make_tree(repo, {"sub/x.py": "x\n"})
    assert [d.path for d in ingest([str(repo / "sub") + "/"]).documents] == [f"{repo}/sub/x.py"]
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        assert [d.path for d in ingest(["."]).documents] == ["sub/x.py"]
        assert [d.path for d in ingest(["./sub/x.py"]).documents] == ["./sub/x.py"]
    finally:
        os.chdir(cwd)


def test_directory_with_nothing_left_names_the_skips(repo):
    make_tree(repo, {".gitignore": "*\n", "a.txt": "x\n", "b.txt": "y\n", "c.bin": b"\x00\x01"})
    with pytest.raises(InputError) as info:
        walk(repo)
    message = str(info.value)
    assert "nothing left to read" in message and "4 skipped" in message and "--no-gitignore" in message


def test_empty_directory_is_an_input_error(repo):
    with pytest.raises(InputError, match="empty"):
        walk(repo)
