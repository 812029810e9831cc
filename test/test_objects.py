"""The object table: mesh paths relative to the table, and environment variables relative to the cwd."""

from pathlib import Path

import pytest

from attn6d_ros.objects import read_object_table


def _table(directory: Path, mesh: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    table = directory / "objects.yaml"
    table.write_text(f'thing: {{mesh: "{mesh}", units: m, symmetric: false}}\n')
    return table


def test_plain_relative_mesh_paths_are_relative_to_the_table(tmp_path: Path) -> None:
    (tmp_path / "meshes").mkdir()
    (tmp_path / "meshes" / "a.ply").write_text("")
    table = _table(tmp_path / "config", "../meshes/a.ply")
    assert read_object_table(table)["thing"].mesh == (tmp_path / "meshes" / "a.ply").resolve()


@pytest.mark.parametrize("written", ["${MESHES}/a.ply", "$MESHES/a.ply"])
def test_a_relative_variable_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: str
) -> None:
    # As the README's `export ATTN6D_LINEMOD_DIR=../shared/...` from the checkout: the value is relative to
    # where it was set, not to the table's folder (which would point somewhere else).
    work = tmp_path / "work"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.ply").write_text("")
    work.mkdir()
    table = _table(tmp_path / "work" / "config", written)
    monkeypatch.chdir(work)
    monkeypatch.setenv("MESHES", "../data")
    assert read_object_table(table)["thing"].mesh == (tmp_path / "data" / "a.ply").resolve()


def test_an_unset_variable_stays_in_the_error_message_which_says_it_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATTN6D_NOT_SET", raising=False)
    table = _table(tmp_path, "${ATTN6D_NOT_SET}/a.ply")
    with pytest.raises(
        FileNotFoundError,
        match=r"objects.thing.mesh: file not found: .*ATTN6D_NOT_SET.*"
        r"\(environment variable ATTN6D_NOT_SET is not set\)",
    ):
        read_object_table(table)
    monkeypatch.setenv("ATTN6D_NOT_SET", str(tmp_path))  # set, but the file is missing: no hint
    with pytest.raises(FileNotFoundError, match=r"a\.ply$"):
        read_object_table(table)
