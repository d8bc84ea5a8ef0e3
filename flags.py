"""Range-checked argparse types and cross-flag rules, shared by every command line of the project.

Each numeric flag's type carries its range, so a value outside it stops the parser, before any work, with one
line that names the flag, the value and the range:

    train.py: error: argument -b/--batch-size: 0 is out of range: must be an integer >= 1

(instead of a traceback from deep inside torch, or a run that silently does nothing sensible), and
RangeHelpFormatter shows the range after the flag's --help text. Rules that involve several flags are checked
after parsing with parser.error, which gives the same one-line form.
"""
import argparse
import math

import torch

from cp_dataset import NUM_LIP_LABELS
from networks import select_device

MAX_SEED = 2 ** 32 - 1   # np.random.seed's range; torch's (< 2**64) then holds for seed + rank + epoch too


class Checked:
    """An argparse type: ``convert`` the text (a ValueError means it is not of the kind), then require
    ``accepts(value)``; ``description`` ('an integer >= 1') is the range that errors and --help state."""

    def __init__(self, convert, description, accepts=lambda value: True):
        self.convert, self.description, self.accepts = convert, description, accepts

    def __call__(self, text):
        try:
            value = self.convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is invalid: must be {self.description}') from None
        if not self.accepts(value):
            raise argparse.ArgumentTypeError(f'{text} is out of range: must be {self.description}')
        return value


def finite_float(text):
    # float() takes 'nan' and 'inf', which no flag means
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def int_at_least(low):
    return Checked(int, f'an integer >= {low}', lambda value: value >= low)


def int_in(low, high):
    return Checked(int, f'an integer in [{low}, {high}]', lambda value: low <= value <= high)


def float_at_least(low):
    return Checked(finite_float, f'a number >= {low:g}', lambda value: value >= low)


def float_in(low, high):
    return Checked(finite_float, f'a number in [{low:g}, {high:g}]', lambda value: low <= value <= high)


def multiple_of(step):
    return Checked(int, f'a positive multiple of {step}', lambda value: value >= step and value % step == 0)


def comma_separated(item):
    """A tuple of one or more comma-separated values of the Checked type ``item`` (empty items are skipped)."""
    def convert(text):
        values = tuple(item.convert(part) for part in text.split(',') if part.strip())
        if not values:
            raise ValueError(text)
        return values
    return Checked(convert, f'comma-separated values, each {item.description}',
                   lambda values: all(item.accepts(value) for value in values))


def gpu_ids_text(text):
    # The items must be integers, but the text is kept: networks.select_device reads it, options.json records it.
    if text.strip():
        for part in text.split(','):
            int(part)
    return text


positive_float = Checked(finite_float, 'a number > 0', lambda value: value > 0)
positive_int = int_at_least(1)       # batch sizes, step counts, splits, repeats
non_negative_int = int_at_least(0)   # worker processes (0: in this process), step counts that may be 0, radii
seed = int_in(0, MAX_SEED)
image_side = multiple_of(64)         # the GMM's feature extractor and TOM's U-Net halve the image 4 and 6 times
grid_size = int_at_least(2)          # a thin-plate spline needs at least 2 x 2 control points
share = float_in(0, 1)
lip_labels = comma_separated(int_in(0, NUM_LIP_LABELS - 1))
gpu_ids = Checked(gpu_ids_text,
                  "'' (the first GPU if there is one, else the CPU) or comma-separated GPU indices (-1: the CPU)")


def torch_device_of(text):
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(text) from None
    if device.type not in ('cpu', 'cuda'):
        raise ValueError(text)
    return device


torch_device = Checked(torch_device_of, 'cpu or cuda[:N]')


class RangeHelpFormatter(argparse.HelpFormatter):
    """Adds the range of each flag with a Checked type to its help, e.g. 'per process [an integer >= 1]'."""

    def _get_help_string(self, action):
        text = super()._get_help_string(action)
        return f'{text} [{action.type.description}]' if isinstance(action.type, Checked) else text


# --------------------------------------------------------------------------- cross-flag rules

def check_device_present(parser, device):
    """A cuda device that torch does not see is a parser error, not a failure at the first tensor moved."""
    gpus = torch.cuda.device_count()
    if device.type == 'cuda' and (device.index or 0) >= gpus:
        seen = 'no GPU' if gpus == 0 else f'{gpus} GPU(s), cuda:0 to cuda:{gpus - 1}'
        parser.error(f'--device {device}: torch sees {seen} here; use --device cpu')


def check_gpu_ids_present(parser, text):
    """--gpu_ids naming a GPU that torch does not see: networks.select_device's message, as a parser error."""
    try:
        select_device(text)
    except RuntimeError as error:
        parser.error(str(error))


def check_gmm_trainable_size(parser, height, width):
    # At 64x64 the regressor's last convs see 1x1 features, and BatchNorm cannot train on one value per
    # channel: every batch of one (the last batch of an epoch, too) would fail.
    if height == width == 64:
        parser.error('--fine_height 64 --fine_width 64: GMM training needs one side >= 128 (at 64x64 its '
                     'regressor\'s BatchNorm sees 1x1 features and fails on any batch of one)')
