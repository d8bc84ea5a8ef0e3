"""Run a trained stage (GMM, TOM, or another method's, see methods.py) over a pairs list and write its results.

    python test.py --name gmm_traintest_new --stage GMM --checkpoint checkpoints/gmm_train_new/gmm_final.pth
    python test.py --name tom_test_new --stage TOM --checkpoint checkpoints/tom_train_new/tom_final.pth

Results go to the result layout (cp_dataset.ResultLayout), <result_dir>/<checkpoint file name>/<datamode>/:
    GMM: warp-cloth/<pair>.jpg (warped cloth, [-1,1] -> 0..255) and warp-mask/<pair>.jpg (0/255)
    TOM: try-on/<pair>.jpg          (each stage's kinds: its method module's docstring)
where <pair> = cp_dataset.pair_key(person, cloth), e.g. 000001_0_001744_1.jpg, so that a cloth
used with several persons (or a person with several clothes) never overwrites another pair's result.
"""
import argparse
import os.path as osp
import sys
import time

import torch
from tensorboardX import SummaryWriter

import flags
from cp_dataset import CPDataLoader, DataError, ResultLayout
from data_check import check_only, check_or_exit
from methods import STAGES, add_method_arguments, refuse_other_stages_options
from networks import CheckpointError, DamagedCheckpointError, DiskFullError, load_checkpoint, select_device, set_tf32
from runs import command_with, intact_step_checkpoint_beside
from progress import progress
from train import (MODEL_OPTIONS, OPTIONS_FILE, add_model_arguments, add_tf32_argument, describe_options,
                   read_options, to_device)
from visualization import board_add_images


def get_opt(argv=None):
    parser = argparse.ArgumentParser(description='Test a trained stage (CP-VTON: GMM or TOM; VITON; see methods.py).',
                                     formatter_class=flags.RangeHelpFormatter)
    parser.add_argument('--name', default='GMM')
    parser.add_argument('--gpu_ids', type=flags.gpu_ids, default='', help='the device to run on')
    parser.add_argument('-j', '--workers', type=flags.non_negative_int, default=1,
                        help='data loader processes (0: in this process)')
    parser.add_argument('-b', '--batch-size', type=flags.positive_int, default=4, help='pairs per batch')
    parser.add_argument('--dataroot', default='data')
    parser.add_argument('--datamode', default='test')
    parser.add_argument('--stage', default='GMM', choices=tuple(STAGES))
    parser.add_argument('--data_list', default='test_pairs.txt')
    add_model_arguments(parser)
    add_tf32_argument(parser)
    parser.add_argument('--tensorboard_dir', type=str, default='tensorboard', help='save tensorboard infos')
    parser.add_argument('--result_dir', type=str, default='result', help='save result infos')
    parser.add_argument('--checkpoint', type=str, default='', help='model checkpoint for test')
    parser.add_argument('--display_count', type=flags.positive_int, default=1,
                        help='batches between TensorBoard images')
    parser.add_argument('--shuffle', action='store_true', help='shuffle input data')
    parser.add_argument('--check_data', action='store_true',
                        help='only check the dataset against the pairs file, report every problem, and exit')
    add_method_arguments(parser, training=False)
    opt = parser.parse_args(argv)
    flags.check_gpu_ids_present(parser, opt.gpu_ids)
    apply_recorded_options(opt, parser)
    refuse_other_stages_options(parser, opt, training=False)
    return opt


def apply_recorded_options(opt, parser, log=print):
    """Take the model options from the options.json that train.py wrote beside the checkpoint.

    A flag left at its default takes the recorded value (so the model is rebuilt as it was
    trained); a flag set to a value that contradicts the record is an error. Checkpoints of the
    original code have no such file: the flags are used as given.
    """
    path = osp.join(osp.dirname(opt.checkpoint), OPTIONS_FILE) if opt.checkpoint else ''
    recorded = read_options(path) if path else None
    if recorded is None:
        return
    taken, conflicts = [], []
    stage = STAGES.get(recorded.get('stage'), STAGES[opt.stage])   # the stage's own model options too
    for name in MODEL_OPTIONS + stage.model_options:
        if name not in recorded or recorded[name] == getattr(opt, name):
            continue
        if getattr(opt, name) == parser.get_default(name):
            setattr(opt, name, recorded[name])
            taken.append(f'--{name} {recorded[name]}')
        else:
            conflicts.append(f'--{name} {getattr(opt, name)!r} (trained with {recorded[name]!r})')
    if conflicts:
        raise SystemExit(f'{opt.checkpoint} was trained with other model options than the ones given: '
                         f'{", ".join(conflicts)} ({path}). Drop these flags; test.py takes them from that file.')
    if taken:
        log(f'model options from {path}: {" ".join(taken)}')


def result_layout(opt):
    return ResultLayout(opt.result_dir, osp.basename(opt.checkpoint), opt.datamode)


def test(opt):
    device = select_device(opt.gpu_ids)
    set_tf32(opt.tf32)
    stage = STAGES[opt.stage]
    model = stage.build_model(opt)
    load_checkpoint(model, opt.checkpoint, device)
    model.eval()
    spec = stage.test_data or stage.data
    check_or_exit(opt, spec=spec)
    dataset = stage.dataset(opt, spec)
    loader = CPDataLoader(opt, dataset, pin_memory=device.type == 'cuda')
    results = result_layout(opt)
    folder = str(results.folder)
    print(f'testing {opt.stage} {opt.checkpoint} on {len(dataset)} pairs of {opt.data_list} ({device}) -> {folder}; '
          f'{describe_options(opt)}', flush=True)
    board = SummaryWriter(log_dir=osp.join(opt.tensorboard_dir, opt.name))
    batches = progress(loader.data_loader, desc=f'test {opt.stage}', unit='batch', file=sys.stdout)
    with torch.inference_mode():
        for step, batch in enumerate(batches):
            start = time.time()
            inputs = to_device(batch, device)
            out = stage.run(model, inputs)
            stage.save_results(inputs, out, results)
            if (step + 1) % opt.display_count == 0:
                board_add_images(board, 'combine', stage.visuals(inputs, out), step + 1)
                batches.set_postfix_str('step: %8d, time: %.3f' % (step + 1, time.time() - start))
    board.close()
    print(f'wrote {len(dataset)} results to {folder}', flush=True)
    return folder


def main(argv=None):
    opt = get_opt(argv)
    if opt.check_data:
        return check_only(opt, spec=STAGES[opt.stage].test_data or STAGES[opt.stage].data)
    try:
        test(opt)
    except CheckpointError as error:
        alternative = intact_alternative(opt, argv) if isinstance(error, DamagedCheckpointError) else ''
        raise SystemExit(f'error: {error}{alternative}') from None
    except DiskFullError as error:
        raise SystemExit(f'error: {error}. The results written before it are complete (each file is written '
                         f'whole or not at all); free space or pass another --result_dir, then run again.') from None
    except (OSError, DataError) as error:
        raise SystemExit(f'error: {error}') from None
    return 0


def intact_alternative(opt, argv):
    """'; the newest intact step checkpoint there is ...: test it with ...' where the folder of a
    damaged --checkpoint has one, else ''."""
    intact = intact_step_checkpoint_beside(opt.checkpoint) if opt.checkpoint else None
    if not intact:
        return ''
    command = command_with('test.py', list(sys.argv[1:] if argv is None else argv), checkpoint=intact)
    return f'; the newest intact step checkpoint there is {intact}: test it with {command}'


if __name__ == '__main__':
    sys.exit(main())
