import os

import pytest

from harness import fingerprint as fp


@pytest.fixture
def package(tmp_path, monkeypatch):
    """An importable package ``fakepkg`` with a module, a subpackage and a non-Python file."""
    root = tmp_path / "fakepkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "a.py").write_text("A = 1\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "b.py").write_text("B = 2\n")
    (root / "notes.txt").write_text("not code\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return root


def test_source_files_are_the_python_files_sorted_by_package_path(package):
    files = fp.source_files("fakepkg")
    assert list(files) == [
        "fakepkg/__init__.py",
        "fakepkg/a.py",
        "fakepkg/sub/__init__.py",
        "fakepkg/sub/b.py",
    ]
    assert list(fp.source_files("fakepkg/sub", "fakepkg/a.py")) == [
        "fakepkg/a.py",
        "fakepkg/sub/__init__.py",
        "fakepkg/sub/b.py",
    ]


def test_fingerprint_follows_contents_not_times(package):
    before = fp.fingerprint("fakepkg")
    assert len(before) == fp.DIGEST_CHARS
    assert set(before) <= set("0123456789abcdef")
    os.utime(package / "a.py", (1, 1))  # an old modification time, same content
    (package / "notes.txt").write_text("changed, but not code\n")
    assert fp.fingerprint("fakepkg") == before
    (package / "sub" / "b.py").write_text("B = 3\n")
    assert fp.fingerprint("fakepkg") != before
    assert fp.fingerprint("fakepkg/a.py") == fp.fingerprint("fakepkg/a.py")  # only a.py: unchanged
    (package / "sub" / "b.py").write_text("B = 2\n")
    assert fp.fingerprint("fakepkg") == before
    (package / "sub" / "c.py").write_text("")  # a new, empty file changes it too
    assert fp.fingerprint("fakepkg") != before


def test_fingerprint_is_the_documented_hash(package):
    import hashlib

    files = fp.source_files("fakepkg")
    digest = hashlib.sha256()
    for name, path in files.items():  # an independent statement of the documented rule
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    assert fp.fingerprint("fakepkg") == digest.hexdigest()[: fp.DIGEST_CHARS]


def test_every_listed_source_exists():
    for kind, sources in fp.SOURCES.items():
        assert fp.source_files(*sources), kind
    assert "amp/trainer.py" in fp.source_files(*fp.SOURCES["mp"])
    assert not any(name.startswith("amp/trainer") for name in fp.source_files(*fp.SOURCES["ivon"]))


def test_unknown_sources_are_named():
    with pytest.raises(ValueError, match="no importable package"):
        fp.fingerprint("no_such_package_here")
    with pytest.raises(ValueError, match="harness/nothing.py does not exist"):
        fp.fingerprint("harness/nothing.py")
