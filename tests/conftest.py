"""Shared test fixtures: where ../shared lies, and small options objects."""
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'
REFERENCE = SHARED / 'reference'
VITON_SAMPLES = SHARED / 'viton_samples'
# Outputs of the original CP-VTON networks, in the repository (a copy of reference/parity_compact).
COMPACT_PARITY = REPO / 'tests' / 'fixtures' / 'parity'

sys.path.insert(0, str(REPO))


def require(path):
    """Skip the test, with the reason, when a file from ../shared is absent (a user's fresh clone)."""
    if not path.exists():
        pytest.skip(f'{path} is absent: the reference material in ../shared is only in the project\'s CI')
    return path


def make_opt(**overrides):
    """The options CPDataset, CPDataLoader and GMM read, at the original defaults."""
    opt = dict(dataroot='data', datamode='train', stage='GMM', data_list='train_pairs.txt', fine_height=256,
               fine_width=192, radius=5, grid_size=5, batch_size=4, workers=0, shuffle=False)
    opt.update(overrides)
    return types.SimpleNamespace(**opt)


@pytest.fixture(autouse=True)
def _two_threads():
    # The reference outputs were computed with 2 threads; CI has 2 cores.
    torch.set_num_threads(2)


@pytest.fixture(autouse=True, scope='module')
def _remove_module_folders_that_passed(request, tmp_path_factory):
    """Module-scoped folders (tmp_path_factory.mktemp) outlive their tests until the session ends; with
    checkpoints in them the suite would hold gigabytes at once. Remove a module's folders when its tests
    have passed, keep them for a look when one failed."""
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    failures_before = request.session.testsfailed
    yield
    if request.session.testsfailed == failures_before:
        for folder in set(base.iterdir()) - before:
            shutil.rmtree(folder, ignore_errors=True)
