"""Shared test fixtures: where ../shared lies, small options objects, temporary-folder clean-up and a real browser."""
import os
import shutil
import subprocess
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
# Debian's headless browser and its driver, for the gallery page's tests (apt-get install chromium chromium-driver).
CHROMIUM, CHROMEDRIVER = Path('/usr/bin/chromium'), Path('/usr/bin/chromedriver')

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


def pair_keyed_warps_from_clothes(root, split_lists):
    """Stand-ins for GMM's warps, so TOM trains and tests without a GMM pass: each pair's in-shop cloth and mask
    copied to <split>/warp-cloth and warp-mask under its pair key (test.py's naming). ``split_lists``: pairs of
    (split, pairs file under ``root``)."""
    from cp_dataset import pair_key, read_pairs
    root = Path(root)
    for split, pairs_file in split_lists:
        for im_name, c_name in read_pairs(str(root / pairs_file)):
            for source, target in (('cloth', 'warp-cloth'), ('cloth-mask', 'warp-mask')):
                (root / split / target).mkdir(exist_ok=True)
                shutil.copy(root / split / source / c_name, root / split / target / pair_key(im_name, c_name))


def cloth_named_warps(dataroot, split='train'):
    """Stand-ins for GMM's warps named by the cloth, as the original code named them: <split>/warp-cloth and
    warp-mask linked to the in-shop cloth and cloth-mask folders."""
    for source, target in (('cloth', 'warp-cloth'), ('cloth-mask', 'warp-mask')):
        link = os.path.join(dataroot, split, target)
        if not os.path.exists(link):
            os.symlink(os.path.join(dataroot, split, source), link)


def step_script_env(root, dataroot, **settings):
    """The environment of a method's step scripts for a test: its folders under ``root``, no loader workers, and
    the method's ``settings`` (batch, steps, ...)."""
    return dict(os.environ, PYTHON=sys.executable, DATAROOT=str(dataroot), CHECKPOINT_DIR=str(root / 'checkpoints'),
                TENSORBOARD_DIR=str(root / 'tensorboard'), RESULT_DIR=str(root / 'result'), LOG_DIR=str(root / 'logs'),
                WORKERS='0', **settings)


def run_step_scripts(method, steps, env):
    """scripts/<method>/<script> for each (script, arguments) of ``steps``, in order; each must succeed."""
    for script, args in steps:
        completed = subprocess.run(['bash', str(REPO / 'scripts' / method / script), *args], env=env, cwd=REPO,
                                   capture_output=True, text=True, timeout=600)
        assert completed.returncode == 0, script + completed.stdout[-3000:] + completed.stderr[-3000:]
        yield completed


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


# ----------------------------------------------------------------------------------------------------
# A real browser (headless Chromium driven by selenium) for the gallery pages
# ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def browser():
    webdriver = pytest.importorskip('selenium.webdriver', reason='selenium is not installed (pip install selenium)')
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            pytest.skip(f'{path} is absent (apt-get install chromium chromium-driver)')
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ('--headless=new', '--no-sandbox', '--disable-gpu', '--allow-file-access-from-files',
                     '--window-size=1400,1000'):
        options.add_argument(argument)
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    # the system chromedriver: selenium-manager would try to download one
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def open_page(driver, page):
    driver.get_log('browser')   # drop what earlier pages logged
    driver.get(page.resolve().as_uri())
    driver.execute_script('return document.readyState')


def assert_no_console_errors(driver):
    severe = [entry for entry in driver.get_log('browser') if entry['level'] == 'SEVERE']
    assert not severe, severe


def save_screenshot(driver, tmp_path, name, suffix=''):
    """To the test's folder, and to $GALLERY_SCREENSHOT (with ``suffix`` before its extension) where it is set."""
    driver.save_screenshot(str(tmp_path / name))
    if os.environ.get('GALLERY_SCREENSHOT'):
        path = Path(os.environ['GALLERY_SCREENSHOT'])
        driver.save_screenshot(str(path.with_name(path.stem + suffix + path.suffix)))


def choose(driver, control, value):
    """Set a <select> and fire its change event, as a user's choice does."""
    driver.execute_script("const c = document.getElementById(arguments[0]); c.value = arguments[1];"
                          "c.dispatchEvent(new Event('change'));", control, value)


def search(driver, text):
    driver.execute_script("const c = document.getElementById('search'); c.value = arguments[0];"
                          "c.dispatchEvent(new Event('input'));", text)


def shown_keys(driver, container):
    return driver.execute_script("return [...document.getElementById(arguments[0]).children]"
                                 ".filter(node => !node.hidden).map(node => node.dataset.key);", container)


def count_text(driver):
    return driver.find_element('id', 'count').text
