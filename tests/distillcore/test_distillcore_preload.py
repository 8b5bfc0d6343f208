"""``preload_environment``: the settings torch reads when it loads, checked in a fresh interpreter (they
have no effect once torch is imported): large tensors land on transparent huge pages, OpenMP waits
passively, and a value the user set is kept."""
import os
import pathlib
import subprocess
import sys

import pytest

THP_MODE = pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled")

PROBE = """
import os
from distillcore.config_cli import preload_environment
preload_environment()
import torch
big = torch.ones(64 << 18)  # 64 MB, touched
huge_kb = next(int(line.split()[1]) for line in open("/proc/self/smaps_rollup") if line.startswith("AnonHugePages:"))
print(huge_kb, os.environ["OMP_WAIT_POLICY"], os.environ["THP_MEM_ALLOC_ENABLE"])
"""


def probe(**env: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("THP_MEM_ALLOC_ENABLE", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    return int(out[0]), out[1], out[2]


# under [always] the kernel backs any large anonymous mapping with huge pages, THP_MEM_ALLOC_ENABLE=0 included, so
# only [madvise] (huge pages where a process asks, as torch does when the variable is 1) tells the two apart
@pytest.mark.skipif(not THP_MODE.is_file() or "[madvise]" not in THP_MODE.read_text(),
                    reason="transparent huge pages are not in madvise mode on this machine")
def test_large_tensors_get_huge_pages_unless_the_user_said_otherwise():
    huge_kb, wait_policy, thp = probe()
    assert (wait_policy, thp) == ("PASSIVE", "1")
    assert huge_kb >= 32 << 10  # most of the 64 MB tensor on 2 MB pages
    huge_kb, wait_policy, thp = probe(THP_MEM_ALLOC_ENABLE="0", OMP_WAIT_POLICY="ACTIVE")
    assert (wait_policy, thp) == ("ACTIVE", "0")
    assert huge_kb < 32 << 10


def test_the_console_entry_modules_import_no_torch():
    # preload_environment runs first in distill3d / graphdistill main(): it works only while importing the
    # entry modules (and what they import: distillcore.cli, config_cli) leaves torch unloaded
    probe = "import sys, distill3d.cli, graphdistill.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
