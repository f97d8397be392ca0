"""twistd's entry point: a start-up problem is one line on stderr and exit status 1."""

import pytest

from fedxmpp import tap


@pytest.mark.parametrize("text, key", [
    ("[server]\ndomains = 5\n", "server.domains"),
    ('[server]\ndata_dir = "/proc/no-such-dir/fedxmpp"\n', "server.data_dir"),
])
def test_start_up_problem_is_one_line_and_exit_1(tmp_path, capsys, text, key):
    """makeService turns a config or data directory problem into one stderr line
    naming the file and key, and SystemExit(1) — no traceback."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    options = tap.Options()
    options.parseOptions(["--config", str(path)])
    with pytest.raises(SystemExit) as info:
        tap.makeService(options)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"fedxmpp: {path}: {key}:")


def test_data_dir_is_private(tmp_path):
    """The data directory, which holds keys and the database, is created mode 0700."""
    path = tmp_path / "ok.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n[c2s]\nlisten = []\ndirect_tls = []\n')
    options = tap.Options()
    options.parseOptions(["--config", str(path)])
    tap.makeService(options)
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
