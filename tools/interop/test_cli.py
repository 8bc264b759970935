"""The CLI's basic contract: version, and one `error:` line with non-zero exit on bad usage."""


def test_version(bissl):
    assert bissl("--version").stdout.strip() == "0.1.0"


def test_bad_usage_is_one_error_line(bissl):
    proc = bissl("--no-such-flag", check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
