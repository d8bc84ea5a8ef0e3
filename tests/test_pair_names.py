"""Pairs files as editors write them, names that are paths refused by every command that reads a pairs file
(naming the line, without a traceback, reading and writing nothing outside its folders), and the TOM stage's
one rule per warp folder: pair-keyed names, or cloth names in a folder of the original code only."""
import os
import os.path as osp
import shutil
import subprocess
import sys
from contextlib import contextmanager

import pytest
import torch
from PIL import Image

import data_check
import evaluate
import smart_show_test_result
import subsets
import test as test_script
import cpvton
import train
from conftest import REPO, make_opt
from cp_dataset import (PAIRS_NAME_FIX, CPDataset, DataError, file_in, load_photo, normalized, pair_key, read_pairs,
                        scan_pairs)
from data_check import validate_dataset
from synthetic_data import generate_dataset
from visualization import save_images

GOOD_LINE = '000002_0.jpg 000003_1.jpg'           # a pair of the synthetic test split, line 1
BAD_NAMES = ['../esc/x_0.jpg', '/etc/x.jpg', 'a\\b.jpg', 'C:x.jpg', '..', 'a\x00.jpg', 'sub/x.jpg']
# Line 2 of the bad pairs file: the bad name as the person's, or as the cloth's.
BAD_LINES = {'person': lambda name: f'{name} 000002_1.jpg', 'cloth': lambda name: f'000003_0.jpg {name}'}
SPLIT_FOLDERS = ('image', 'image-parse', 'image-mask', 'pose', 'cloth', 'cloth-mask', 'warp-cloth', 'warp-mask')


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """A synthetic dataset (test split: persons 000002_0, 000003_0 and clothes 000002_1, 000003_1) and a GMM
    checkpoint of the default options."""
    root = tmp_path_factory.mktemp('names')
    generate_dataset(str(root / 'data'), n_train=1, n_test=2, seed=0)
    checkpoint = root / 'checkpoints' / 'gmm.pth'
    checkpoint.parent.mkdir()
    torch.save(cpvton.GMM(test_script.get_opt([])).state_dict(), checkpoint)
    return root


@pytest.fixture
def root(dataset, tmp_path):
    """A fresh copy of the dataset, with the files a name that leaves its folder would reach."""
    copy = tmp_path / 'run'
    shutil.copytree(dataset, copy, ignore=shutil.ignore_patterns('*.pth'))
    (copy / 'checkpoints' / 'gmm.pth').symlink_to(dataset / 'checkpoints' / 'gmm.pth')   # 76 MB: linked, not copied
    test = copy / 'data' / 'test'
    for tempting in (test / 'esc' / 'x_0.jpg', test / 'image' / 'sub' / 'x.jpg', test / 'cloth' / 'sub' / 'x.jpg'):
        tempting.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(test / 'image' / '000002_0.jpg', tempting)   # a readable photo: only the name check stops it
    return copy


def write_bad_pairs(root, role, name):
    (root / 'data' / 'bad_pairs.txt').write_text(f'{GOOD_LINE}\n{BAD_LINES[role](name)}\n')
    return f'{root / "data" / "bad_pairs.txt"}, line 2'


# --- what each command is allowed to touch -----------------------------------------------------------

TOUCHED = []      # paths opened, listed, created or renamed while `recording` is on
RECORDING = [False]
PATH_EVENTS = {'open', 'os.listdir', 'os.scandir', 'os.mkdir', 'os.rename', 'os.replace', 'os.remove'}


def record_paths(event, args):
    if RECORDING[0] and event in PATH_EVENTS and args and isinstance(args[0], (str, bytes, os.PathLike)):
        TOUCHED.append(os.fsdecode(args[0]))


sys.addaudithook(record_paths)   # audit hooks cannot be removed; it records only inside `recording`


@contextmanager
def recording():
    TOUCHED.clear()
    RECORDING[0] = True
    try:
        yield TOUCHED
    finally:
        RECORDING[0] = False


def outside_allowed(path, root):
    """True if `path` (touched by a command run on `root`) is neither the pairs file, nor the checkpoint folder,
    nor a file directly in one of the split's folders, nor a place outside `root` other than /etc/x.jpg."""
    path = osp.realpath(path)
    base = osp.realpath(root)
    if not path.startswith(base + os.sep):
        return path == '/etc/x.jpg'
    relative = osp.relpath(path, base).split(os.sep)
    in_split_folder = relative[:2] == ['data', 'test'] and len(relative) in (3, 4) and relative[2] in SPLIT_FOLDERS
    return not (relative == ['data', 'bad_pairs.txt'] or relative[0] == 'checkpoints' or in_split_folder)


def file_states(root):
    return {path: (path.stat().st_size, path.stat().st_mtime_ns) for path in sorted(root.rglob('*'))}


# --- the commands: each run on the bad pairs file, returning (exit status, what it printed) ----------

def run_dataset(root, capsys):
    for stage in ('GMM', 'TOM'):
        with pytest.raises(DataError) as refusal:
            CPDataset(make_opt(dataroot=str(root / 'data'), datamode='test', data_list='bad_pairs.txt', stage=stage))
    return 1, str(refusal.value)


def run_data_check(root, capsys):
    status = data_check.main(['--dataroot', str(root / 'data'), '--datamode', 'test', '--data_list', 'bad_pairs.txt'])
    return status, capsys.readouterr().out


def run_test(root, capsys):
    with pytest.raises(SystemExit) as stop:
        test_script.main(['--stage', 'GMM', '--dataroot', str(root / 'data'), '--data_list', 'bad_pairs.txt',
                          '--checkpoint', str(root / 'checkpoints' / 'gmm.pth'), '--result_dir', str(root / 'result'),
                          '--tensorboard_dir', str(root / 'tensorboard'), '--gpu_ids', '-1', '--workers', '0'])
    return 1, str(stop.value.code)   # a SystemExit with a message exits with status 1


def run_train(root, capsys):
    with pytest.raises(SystemExit) as stop:
        train.main(['--name', 'run', '--dataroot', str(root / 'data'), '--datamode', 'test',
                    '--data_list', 'bad_pairs.txt', '--checkpoint_dir', str(root / 'checkpoints'),
                    '--tensorboard_dir', str(root / 'checkpoints' / 'tensorboard'), '--gpu_ids', '-1',
                    '--workers', '0', '--keep_step', '1', '--decay_step', '0'])   # should it not refuse: one step
    return 1, str(stop.value.code)


def run_evaluate(root, capsys):
    status = evaluate.main(['--dataroot', str(root / 'data'), '--result_dir', str(root / 'result'),
                            '--paired_list', 'bad_pairs.txt', '--metrics', 'ssim,iou', '--workers', '0'])
    return status, capsys.readouterr().err


def run_strips(root, capsys):
    status = smart_show_test_result.main(['--dataroot', str(root / 'data'), '--data_list', 'bad_pairs.txt',
                                          '--result_dir', str(root / 'result'), '--out_simple', str(root / 'simple'),
                                          '--out_verbose', str(root / 'verbose')])
    return status, capsys.readouterr().err


def run_worst_cases(root, capsys):
    status = smart_show_test_result.main(['--dataroot', str(root / 'data'), '--paired_list', 'bad_pairs.txt',
                                          '--result_dir', str(root / 'result'), '--worst', '1',
                                          '--out_worst', str(root / 'worst'), '--workers', '0'])
    return status, capsys.readouterr().err


COMMANDS = {'CPDataset': run_dataset, 'data_check.py': run_data_check, 'test.py': run_test, 'train.py': run_train,
            'evaluate.py': run_evaluate, 'smart_show strips': run_strips, 'smart_show --worst': run_worst_cases}
ONE_LINE_MESSAGES = ('CPDataset', 'evaluate.py', 'smart_show strips', 'smart_show --worst')   # the others: reports


@pytest.mark.parametrize('role', BAD_LINES)
@pytest.mark.parametrize('name', BAD_NAMES, ids=ascii)
@pytest.mark.parametrize('command', COMMANDS)
def test_every_command_refuses_a_name_that_is_not_a_file_name(root, command, name, role, capsys):
    where = write_bad_pairs(root, role, name)
    before = file_states(root)
    with recording() as touched:
        status, message = COMMANDS[command](root, capsys)
    assert status != 0
    named = [line for line in message.splitlines() if where in line]
    assert len(named) == 1 and f'the {role} name {name!r}' in named[0], message
    if command in ONE_LINE_MESSAGES:
        assert message.strip().splitlines() == named, message
    assert 'Traceback' not in message
    assert [path for path in touched if outside_allowed(path, root)] == []
    written = [path for path, state in file_states(root).items() if before.get(path) != state]
    assert all(path.is_relative_to(root / 'checkpoints') for path in written), written   # train.py's run folder


SCRIPTS = {'data_check.py': ['--datamode', 'test', '--data_list', 'bad_pairs.txt'],
           'test.py': ['--data_list', 'bad_pairs.txt', '--checkpoint', 'CHECKPOINT', '--gpu_ids', '-1',
                       '--workers', '0', '--result_dir', 'RESULT', '--tensorboard_dir', 'RESULT'],
           'evaluate.py': ['--paired_list', 'bad_pairs.txt', '--metrics', 'ssim', '--workers', '0',
                           '--result_dir', 'RESULT'],
           'smart_show_test_result.py': ['--data_list', 'bad_pairs.txt', '--result_dir', 'RESULT',
                                         '--out_simple', 'RESULT', '--out_verbose', '']}


@pytest.mark.parametrize('script', SCRIPTS)
def test_the_scripts_exit_with_the_message_and_no_traceback(root, script):
    where = write_bad_pairs(root, 'person', '../esc/x_0.jpg')
    places = {'CHECKPOINT': str(root / 'checkpoints' / 'gmm.pth'), 'RESULT': str(root / 'result')}
    args = [places.get(arg, arg) for arg in SCRIPTS[script]]
    completed = subprocess.run([sys.executable, script, '--dataroot', str(root / 'data')] + args, cwd=REPO,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode != 0
    assert 'Traceback' not in completed.stderr
    assert f"{where}: the person name '../esc/x_0.jpg' is a path" in completed.stdout + completed.stderr
    assert not (root / 'result').exists()


# --- below the pairs file: the one place paths are built from names ----------------------------------

@pytest.mark.parametrize('name', BAD_NAMES, ids=ascii)
def test_paths_are_only_built_from_file_names(tmp_path, name):
    with pytest.raises(DataError) as refusal:
        file_in(str(tmp_path / 'image'), name)
    assert str(refusal.value).startswith(f'{name!r} ') and '\n' not in str(refusal.value)
    target = tmp_path / 'result' / 'try-on'
    with pytest.raises(DataError):   # test.py's writer
        save_images(torch.zeros(1, 3, 4, 4), [name], str(target))
    assert [path for path in tmp_path.rglob('*') if path.is_file()] == []
    with pytest.raises(DataError):   # evaluate's and smart_show's measures, given pairs by a caller
        subsets.difficulty_subsets(str(tmp_path), 'test', [(name, 'c.jpg')])


def test_file_names_are_joined_to_their_folder():
    assert file_in('data/test/image', '000001_0.jpg') == osp.join('data/test/image', '000001_0.jpg')
    assert file_in('data/test/image', 'café...jpg') == osp.join('data/test/image', 'café...jpg')


# --- pairs files as editors write them -----------------------------------------------------------------

def test_bom_crlf_tabs_trailing_spaces_and_blank_lines_are_read(tmp_path):
    path = tmp_path / 'pairs.txt'
    path.write_bytes(b'\xef\xbb\xbf000001_0.jpg\t000001_1.jpg  \r\n\r\n   \r\n000002_0.jpg \t 000002_1.jpg\t\r\n'
                     b'\t\n000003_0.jpg    000003_1.jpg')
    assert scan_pairs(str(path)) == ([('000001_0.jpg', '000001_1.jpg'), ('000002_0.jpg', '000002_1.jpg'),
                                      ('000003_0.jpg', '000003_1.jpg')], [])


def test_an_invisible_character_is_named_with_its_line_and_shown(tmp_path):
    path = tmp_path / 'pairs.txt'   # a second file appended, with its byte-order mark, and a name that isn't UTF-8
    path.write_bytes(b'000001_0.jpg 000001_1.jpg\n\xef\xbb\xbf000002_0.jpg 000002_1.jpg\n000003_0.jpg caf\xe9.jpg\n')
    with pytest.raises(DataError) as refusal:
        read_pairs(str(path))
    assert str(refusal.value).splitlines() == [
        f"{path}, line 2: the person name '\\ufeff000002_0.jpg' holds the invisible character U+FEFF. "
        f"Fix: {PAIRS_NAME_FIX}",
        f"{path}, line 3: the cloth name 'caf\\udce9.jpg' holds a byte that is not UTF-8: 0xE9. Fix: {PAIRS_NAME_FIX}"]


def test_a_non_ascii_name_is_shown_with_repr(root):
    (root / 'data' / 'bad_pairs.txt').write_text(f'{GOOD_LINE}\ncafé_0.jpg 000002_1.jpg\n')
    opt = make_opt(dataroot=str(root / 'data'), datamode='test', data_list='bad_pairs.txt')
    report = validate_dataset(opt, log=lambda line: None)
    missing = str(root / 'data' / 'test' / 'image' / 'café_0.jpg')
    assert [(problem.kind, problem.path) for problem in report.errors][0] == ('missing image file', missing)
    assert f'    {missing!r}: file not found' in report.format().splitlines()


# --- TOM: one naming rule per warp folder --------------------------------------------------------------

PAIRS = [('000002_0.jpg', '000003_1.jpg'), ('000003_0.jpg', '000002_1.jpg')]


def write_warp(root, name, colour):
    """A warp and its mask named `name`, in a colour that tells which file the loader read."""
    test = root / 'data' / 'test'
    for folder in ('warp-cloth', 'warp-mask'):
        (test / folder).mkdir(exist_ok=True)
    Image.new('RGB', (192, 256), colour).save(test / 'warp-cloth' / name)
    Image.new('L', (192, 256), 255).save(test / 'warp-mask' / name)


def tom_opt(root):
    (root / 'data' / 'tom_pairs.txt').write_text(''.join(f'{person} {cloth}\n' for person, cloth in PAIRS))
    return make_opt(dataroot=str(root / 'data'), datamode='test', data_list='tom_pairs.txt', stage='TOM')


def read_cloth(root, name):
    return normalized(load_photo(str(root / 'data' / 'test' / 'warp-cloth' / name), (192, 256))[0])


def test_a_pair_keyed_folder_never_falls_back_to_the_cloth_name(root, capsys):
    write_warp(root, pair_key(*PAIRS[0]), (200, 0, 0))
    write_warp(root, PAIRS[1][1], (0, 0, 200))       # another person's warp of this cloth, by the original's name
    report = validate_dataset(tom_opt(root), log=print)
    assert [(problem.kind, problem.path) for problem in report.errors] == [
        ('missing warp-cloth file', str(root / 'data/test/warp-cloth' / pair_key(*PAIRS[1]))),
        ('missing warp-mask file', str(root / 'data/test/warp-mask' / pair_key(*PAIRS[1])))]
    dataset = CPDataset(tom_opt(root))
    assert torch.equal(dataset[0]['cloth'], read_cloth(root, pair_key(*PAIRS[0])))
    with pytest.raises(FileNotFoundError, match=pair_key(*PAIRS[1])):
        dataset[1]
    assert 'named by the cloth' not in capsys.readouterr().out


def test_a_folder_of_the_original_code_is_read_by_cloth_names_announced_once(root, capsys):
    for (_, c_name), colour in zip(PAIRS, ((200, 0, 0), (0, 0, 200))):
        write_warp(root, c_name, colour)
    report = validate_dataset(tom_opt(root), log=print)
    assert report.ok, report.format()
    dataset = CPDataset(tom_opt(root))
    for index, (_, c_name) in enumerate(PAIRS):
        assert torch.equal(dataset[index]['cloth'], read_cloth(root, c_name))
    notes = [line for line in capsys.readouterr().out.splitlines() if 'named by the cloth' in line]
    assert notes == [f'note: {root / "data/test/warp-cloth"} holds warps named by the cloth only, as the original '
                     f'code wrote them: the TOM stage reads warp-cloth/ and warp-mask/ by the cloth name for every '
                     f'pair (test.py names them by the pair, <person stem>_<cloth name>)']


def test_a_mixed_folder_is_read_by_pair_keys_only(root, capsys):
    write_warp(root, pair_key(*PAIRS[0]), (200, 0, 0))
    write_warp(root, PAIRS[0][1], (0, 200, 0))       # the same pair's cloth-named warp: never read
    write_warp(root, PAIRS[1][1], (0, 0, 200))
    report = validate_dataset(tom_opt(root), log=print)
    assert {problem.path for problem in report.errors} == {
        str(root / 'data/test' / folder / pair_key(*PAIRS[1])) for folder in ('warp-cloth', 'warp-mask')}
    dataset = CPDataset(tom_opt(root))
    assert torch.equal(dataset[0]['cloth'], read_cloth(root, pair_key(*PAIRS[0])))
    assert not torch.equal(dataset[0]['cloth'], read_cloth(root, PAIRS[0][1]))
    assert 'named by the cloth' not in capsys.readouterr().out
