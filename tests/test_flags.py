"""Every flag of every command line is checked before any work: a value outside its range, or flags that
contradict each other, end in one argparse error line (exit status 2, no traceback) that names the flag, the
value and the range; the boundary values are accepted; --help states each range."""
import argparse
import subprocess
import sys

import pytest
import torch

import ablation
import benchmark
import data_check
import evaluate
import flags
import learning_curves
import methods
import prepare_data
import smart_show_test_result
import synthetic_data
import test as test_script
import train
import tryon
from conftest import REPO

PARSERS = {'train.py': train.get_opt, 'test.py': test_script.get_opt, 'evaluate.py': evaluate.parse_args,
           'data_check.py': data_check.parse_args, 'synthetic_data.py': synthetic_data.parse_args,
           'benchmark.py': benchmark.get_args, 'ablation.py': ablation.parse_args,
           'smart_show_test_result.py': smart_show_test_result.get_opt,
           'learning_curves.py': learning_curves.parse_args,
           'prepare_data.py': lambda argv: prepare_data.build_parser().parse_args(argv), 'tryon.py': tryon.get_opt}
# Flags a command needs to parse at all, or to parse the same on any machine.
BASE_ARGV = {'synthetic_data.py': ['--dataroot', 'unused'], 'benchmark.py': ['--device', 'cpu', '-b', '1'],
             'learning_curves.py': ['--run_dir', 'unused'],
             'prepare_data.py': ['--persons', 'p', '--clothes', 'c', '--out', 'o', '--datamode', 'test'],
             'tryon.py': ['--person', 'p', '--pose', 'p', '--parse', 'p', '--cloth', 'c', '--gmm', 'g', '--tom', 't',
                          '--out', 'o']}

AT_LEAST_0, AT_LEAST_1, POSITIVE = 'an integer >= 0', 'an integer >= 1', 'a number > 0'
SIDE, SHARE, SEED = 'a positive multiple of 64', 'a number in [0, 1]', 'an integer in [0, 4294967295]'
GPU_IDS = "'' (the first GPU if there is one, else the CPU) or comma-separated GPU indices (-1: the CPU)"

# command, flag, a value just outside its range, a boundary value inside it (as parsed), the range as stated
TRAIN_AND_TEST = [
    ('--workers', '-1', 0, AT_LEAST_0), ('--batch-size', '0', 1, AT_LEAST_1), ('--fine_width', '0', 64, SIDE),
    ('--fine_height', '250', 64, SIDE), ('--radius', '-1', 0, AT_LEAST_0), ('--grid_size', '1', 2, 'an integer >= 2'),
    ('--display_count', '0', 1, AT_LEAST_1), ('--gpu_ids', '0,x', '-1', GPU_IDS),
]
RANGES = [('train.py', *row) for row in TRAIN_AND_TEST] + [('test.py', *row) for row in TRAIN_AND_TEST] + [
    ('train.py', '--lr', '0', 1e-9, POSITIVE),
    ('train.py', '--lr', 'nan', 1e-9, POSITIVE),
    ('train.py', '--save_count', '0', 1, AT_LEAST_1),
    ('train.py', '--keep_step', '-1', 0, AT_LEAST_0),
    ('train.py', '--decay_step', '-1', 0, AT_LEAST_0),
    ('train.py', '--seed', '-1', 0, SEED),
    ('train.py', '--seed', '4294967296', 4294967295, SEED),
    ('train.py', '--gic_weight', '-0.5', 0.0, 'a number >= 0'),
    ('train.py', '--bn_momentum', '1.5', 0.0, SHARE),
    ('train.py', '--neck_box', '-1', 0, AT_LEAST_0),
    ('test.py', '--neck_box', '-1', 0, AT_LEAST_0),
    *[('train.py', f'--{name}_weight', '-1', 0.0, 'a number >= 0') for name in ('warp', 'l1', 'vgg', 'adv', 'gp')],
    *[('train.py', f'--{name}_weight', '-1', 0.0, 'a number >= 0')
      for name in ('gan', 'parse_l1', 'parse_ce', 'fm', 'perceptual', 'coarse_l1', 'match', 'mask')],
    *[(command, f'--mgvton_{name}', '0', 1, AT_LEAST_1) for command in ('train.py', 'test.py')
      for name in ('ngf', 'blocks')],
    ('evaluate.py', '--mask_threshold', '0', 1, 'an integer in [1, 255]'),
    ('evaluate.py', '--mask_threshold', '256', 255, 'an integer in [1, 255]'),
    ('evaluate.py', '--cloth_labels', '5,20', (0, 19), 'comma-separated values, each an integer in [0, 19]'),
    ('evaluate.py', '--cloth_labels', '-1', (0,), 'comma-separated values, each an integer in [0, 19]'),
    ('evaluate.py', '--is_splits', '0', 1, AT_LEAST_1),
    ('evaluate.py', '--textured_threshold', '-0.001', 0.0, 'a number >= 0'),
    ('evaluate.py', '--occluded_threshold', '1.01', 1.0, SHARE),
    ('evaluate.py', '--occluded_threshold', '-0.01', 0.0, SHARE),
    ('evaluate.py', '--batch_size', '0', 1, AT_LEAST_1),
    ('evaluate.py', '--workers', '-1', 0, AT_LEAST_0),
    ('evaluate.py', '--device', 'tpu', torch.device('cpu'), 'cpu or cuda[:N]'),
    ('data_check.py', '--fine_height', '100', 64, SIDE),
    ('data_check.py', '--fine_width', '-64', 64, SIDE),
    ('synthetic_data.py', '--n_train', '0', 1, AT_LEAST_1),
    ('synthetic_data.py', '--n_test', '1', 2, 'an integer >= 2'),
    ('synthetic_data.py', '--seed', '-1', 0, SEED),
    ('synthetic_data.py', '--textured_share', '1.5', 1.0, SHARE),
    ('synthetic_data.py', '--occluded_share', '-0.1', 0.0, SHARE),
    ('synthetic_data.py', '--workers', '-1', 0, AT_LEAST_0),
    ('benchmark.py', '--batch_size', '0', 1, AT_LEAST_1),
    ('benchmark.py', '--fine_height', '96', 64, SIDE),
    ('benchmark.py', '--fine_width', '32', 64, SIDE),
    ('benchmark.py', '--radius', '-1', 0, AT_LEAST_0),
    ('benchmark.py', '--grid_size', '1', 2, 'an integer >= 2'),
    ('benchmark.py', '--n_train', '0', 1, AT_LEAST_1),
    ('benchmark.py', '--workers', '0,-1', (0,), 'comma-separated values, each an integer >= 0'),
    ('benchmark.py', '--repeats', '0', 1, AT_LEAST_1),
    ('benchmark.py', '--warmup', '-1', 0, AT_LEAST_0),
    ('benchmark.py', '--seed', '-1', 0, SEED),
    ('benchmark.py', '--compare_rounds', '0', 1, AT_LEAST_1),
    ('benchmark.py', '--device', 'mps', torch.device('cpu'), 'cpu or cuda[:N]'),
    ('ablation.py', '--gmm_steps', '0', 1, AT_LEAST_1),
    ('ablation.py', '--tom_steps', '0', 1, AT_LEAST_1),
    ('ablation.py', '--viton_coarse_steps', '0', 1, AT_LEAST_1),
    ('ablation.py', '--viton_refine_steps', '0', 1, AT_LEAST_1),
    ('ablation.py', '--viton_bn_momentum', '-0.1', 0.0, SHARE),
    ('ablation.py', '--wuton_steps', '0', 1, AT_LEAST_1),
    ('ablation.py', '--batch_size', '0', 1, AT_LEAST_1),
    ('ablation.py', '--lr', '-0.0001', 1e-9, POSITIVE),
    ('ablation.py', '--seed', '-1', 0, SEED),
    ('ablation.py', '--noise_seeds', '-1', 0, AT_LEAST_0),
    ('ablation.py', '--n_train', '0', 1, AT_LEAST_1),
    ('ablation.py', '--n_test', '1', 2, 'an integer >= 2'),
    ('ablation.py', '--textured_share', '-0.5', 0.0, SHARE),
    ('ablation.py', '--occluded_share', '2', 1.0, SHARE),
    ('ablation.py', '--hard_pairs', '0', 1, AT_LEAST_1),
    ('ablation.py', '--workers', '-1', 0, AT_LEAST_0),
    ('ablation.py', '--gpu_ids', '1.5', '-1', GPU_IDS),
    ('smart_show_test_result.py', '--worst', '0', 1, AT_LEAST_1),
    ('smart_show_test_result.py', '--textured_threshold', '-1', 0.0, 'a number >= 0'),
    ('smart_show_test_result.py', '--occluded_threshold', '1.5', 1.0, SHARE),
    ('smart_show_test_result.py', '--workers', '-1', 0, AT_LEAST_0),
    ('learning_curves.py', '--every', '0', 1, AT_LEAST_1),
    ('learning_curves.py', '--max_pairs', '0', 1, AT_LEAST_1),
    ('learning_curves.py', '--workers', '-1', 0, AT_LEAST_0),
    ('learning_curves.py', '--batch-size', '0', 1, AT_LEAST_1),
    ('learning_curves.py', '--device', 'tpu', torch.device('cpu'), 'cpu or cuda[:N]'),
    ('prepare_data.py', '--fine_height', '100', 64, SIDE),
    ('prepare_data.py', '--fine_width', '-64', 64, SIDE),
    ('tryon.py', '--gpu_ids', '0,x', '-1', GPU_IDS),
]

# command, argv, what the error says: rules between flags, checked after parsing
CROSS_FLAG_RULES = [
    ('train.py', ['--fine_height', '64', '--fine_width', '64'], 'GMM training needs one side >= 128'),
    ('train.py', ['--stage', 'TOM', '--gic_weight', '40'], '--gic_weight is an option of --stage GMM'),
    ('train.py', ['--tom_mask_input'], '--tom_mask_input is an option of --stage TOM'),
    ('train.py', ['--tom_mask_target', 'person_cloth'], '--tom_mask_target is an option of --stage TOM'),
    ('train.py', ['--vgg_init', 'random', '--vgg_weights', 'vgg.pth'], 'contradicts --vgg_init random'),
    ('train.py', ['--gpu_ids', '99'], '--gpu_ids 99'),
    ('test.py', ['--gpu_ids', '99'], '--gpu_ids 99'),
    ('ablation.py', ['--gpu_ids', '99'], '--gpu_ids 99'),
    ('ablation.py', ['--seed', '4294967295', '--noise_seeds', '1'], 'seeds up to 4294967296, above 4294967295'),
    ('evaluate.py', ['--device', 'cuda:99'], '--device cuda:99: torch sees'),
    ('tryon.py', ['--gpu_ids', '99'], '--gpu_ids 99'),
    ('tryon.py', ['--cloth_mask', 'a.png', 'b.png'], '2 masks for 1 clothes; give one per --cloth'),
    ('benchmark.py', ['--device', 'cuda:99'], '--device cuda:99: torch sees'),
    ('benchmark.py', ['--n_train', '3', '-b', '4'], '--n_train 3 is smaller than --batch_size 4'),
    ('benchmark.py', ['--fine_height', '64', '--fine_width', '64'], 'GMM training needs one side >= 128'),
]


def stage_owning(command, flag):
    """['--stage', S] for a flag of train.py/test.py that only stage S reads (with another stage it is refused),
    and the previous stage's checkpoint that training a later MG-VTON stage needs (any existing file will do)."""
    owners = [stage.name for stage in methods.STAGES.values() if dest(flag) in stage.options]
    if command not in ('train.py', 'test.py') or not owners:
        return []
    needs_previous = command == 'train.py' and 'previous_checkpoint' in methods.STAGES[owners[0]].options
    return ['--stage', owners[0]] + (['--previous_checkpoint', __file__] if needs_previous else [])


def dest(flag):
    return flag.lstrip('-').replace('-', '_')


def parse_error(capsys, command, argv):
    """The stderr of a parse that must fail: exit status 2 and one error line, the usage's last."""
    with pytest.raises(SystemExit) as stop:
        PARSERS[command](BASE_ARGV.get(command, []) + argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert 'Traceback' not in err and err.startswith('usage:')
    error_lines = [line for line in err.splitlines() if ': error: ' in line]
    assert error_lines == [err.splitlines()[-1]], err
    return error_lines[0]


@pytest.mark.parametrize('command, flag, outside, boundary, range_', RANGES,
                         ids=[f'{row[0]} {row[1]} {row[2]}' for row in RANGES])
def test_a_value_outside_the_range_is_one_error_line(capsys, command, flag, outside, boundary, range_):
    line = parse_error(capsys, command, [flag, outside])
    assert 'argument ' in line and flag in line
    assert f'{outside!r} is invalid' in line or f'{outside} is out of range' in line
    assert line.endswith(f'must be {range_}')


@pytest.mark.parametrize('command, flag, outside, boundary, range_', RANGES,
                         ids=[f'{row[0]} {row[1]} {row[3]}' for row in RANGES])
def test_the_boundary_value_is_accepted(command, flag, outside, boundary, range_):
    text = ','.join(map(str, boundary)) if isinstance(boundary, tuple) else str(boundary)
    opt = PARSERS[command](BASE_ARGV.get(command, []) + stage_owning(command, flag) + [flag, text])
    assert getattr(opt, dest(flag)) == boundary


@pytest.mark.parametrize('command, argv, message', CROSS_FLAG_RULES,
                         ids=[' '.join([command, *argv]) for command, argv, _ in CROSS_FLAG_RULES])
def test_contradicting_flags_are_one_error_line(capsys, command, argv, message):
    assert message in parse_error(capsys, command, argv)


def test_the_allowed_neighbours_of_the_cross_flag_rules_parse():
    # 0 + 0 steps is no mistake: the run writes the initial weights (the demo's untrained GMM baseline)
    assert train.get_opt(['--keep_step', '0', '--decay_step', '0']).keep_step == 0
    assert train.get_opt(['--stage', 'TOM', '--fine_height', '64', '--fine_width', '64']).fine_width == 64
    assert train.get_opt(['--fine_height', '64', '--fine_width', '128']).fine_height == 64
    assert train.get_opt(['--stage', 'TOM', '--tom_mask_input', '--tom_mask_target', 'person_cloth']).tom_mask_input
    assert ablation.parse_args(['--seed', '4294967294', '--noise_seeds', '1']).seed == 4294967294
    assert benchmark.get_args(['--device', 'cpu', '--n_train', '4', '-b', '4']).n_train == 4


@pytest.fixture
def parsers_built(monkeypatch):
    """{command: the ArgumentParser its parser function builds}, caught as it parses the command's defaults."""
    built, parse_args = {}, argparse.ArgumentParser.parse_args
    for command, parse in PARSERS.items():
        def recording(parser, args=None, namespace=None, command=command):
            built[command] = parser
            return parse_args(parser, args, namespace)
        monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', recording)
        parse(BASE_ARGV.get(command, []))   # the defaults are in range and pass the cross-flag rules
    return built


def test_every_numeric_flag_has_a_range_and_a_row(parsers_built):
    covered = {(command, flag) for command, flag, *_ in RANGES}
    for command, parser in parsers_built.items():
        for action in parser._actions:
            assert action.type not in (int, float), f'{command} {action.option_strings}: a number without a range'
            if isinstance(action.type, flags.Checked):
                assert any((command, flag) in covered for flag in action.option_strings), \
                    f'{command} {action.option_strings} has no row in RANGES'


def test_help_states_every_range(parsers_built):
    for command, parser in parsers_built.items():
        text = ' '.join(parser.format_help().split())   # unwrapped
        for action in parser._actions:
            if isinstance(action.type, flags.Checked):
                assert f'[{action.type.description}]' in text, f'{command} {action.option_strings}'


@pytest.mark.parametrize('argv, message', [
    (['train.py', '-b', '0'], 'train.py: error: argument -b/--batch-size: 0 is out of range: must be an integer >= 1'),
    (['train.py', '--stage', 'TOM', '--gic_weight', '40'], 'train.py: error: --gic_weight is an option of --stage GMM'),
    (['synthetic_data.py', '--dataroot', 'unused', '--n_test', '1'],
     'synthetic_data.py: error: argument --n_test: 1 is out of range: must be an integer >= 2'),
])
def test_the_command_line_prints_one_error_line(argv, message):
    done = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ''
    assert 'Traceback' not in done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith('usage:') and [line for line in lines if 'error' in line] == [lines[-1]]
    assert lines[-1].startswith(message)
