"""Shared fixtures for the interop lane: the bissl binary under test and a scratch folder."""
import os
import subprocess

import pytest


@pytest.fixture(scope="session")
def bissl():
    """Runs the bissl binary; returns CompletedProcess (text mode)."""
    path = os.environ["BISSL"]

    def run(*args, check=True):
        proc = subprocess.run([path, *map(str, args)], capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"bissl {' '.join(map(str, args))} failed: {proc.stderr.strip()}")
        return proc

    return run
