"""What a training stage is, for train.py and test.py: the one description every method's stages give.

A method (cpvton.py, viton.py) is one module holding its networks' use, losses, visuals and result writing;
each of its stages is one Stage, registered in methods.py. train.py and test.py look the stage of --stage up
there and call what it names, so adding a method never means an ``if`` in them.

Conventions at this boundary (B = batch, H x W = the model size):
    inputs: a CPDataset batch (see cp_dataset), on the model's device;
    out = run(model, inputs): a dict of tensors, images [B,C,H,W] in [-1,1], masks in [0,1];
    build_loss(opt, log)(inputs, out) -> (loss, {'metric': loss, <TensorBoard tag>: term, ...});
    visuals(inputs, out): rows of [B,C,H,W] images in [-1,1] (visualization.board_add_images' 'combine' grid);
    save_results(inputs, out, results): writes the stage's result kinds into a cp_dataset.ResultLayout.
"""
from dataclasses import dataclass
from typing import Callable

from cp_dataset import CPDataset, DataSpec


def all_parameters(model):
    return model.parameters()


def no_option_check(parser, opt, training):
    """Stages without rules of their own between flags."""


@dataclass(frozen=True)
class Stage:
    name: str                    # its --stage
    method: str                  # 'CP-VTON', 'VITON', ...
    data: DataSpec               # what its items hold (cp_dataset.CPDataset)
    final_checkpoint: str        # the file train.py writes at the end, e.g. gmm_final.pth
    build_model: Callable        # (opt) -> nn.Module
    build_loss: Callable         # (opt, log) -> nn.Module
    run: Callable                # (model, inputs) -> out
    visuals: Callable            # (inputs, out) -> rows of images
    save_results: Callable       # (inputs, out, ResultLayout) -> None
    log_terms: Callable          # ({tag: float}) -> the loss part of a training log line
    options: tuple = ()          # train.py/test.py flags that only this stage reads (others refuse them)
    model_options: tuple = ()    # of those, the ones test.py takes from the run's options.json (as MODEL_OPTIONS)
    batch_statistics: bool = True   # anything over each process's batch (BatchNorm, batch means): see runs.py
    test_data: DataSpec = None   # what test.py's items hold, where less than ``data`` (None: ``data``)
    trainable: Callable = all_parameters    # (model) -> the parameters the optimizer updates
    check_options: Callable = no_option_check   # (parser, opt, training): parser.error on contradicting flags
    dataset: Callable = CPDataset   # (opt, DataSpec) -> the items of ``data`` (mpv_dataset.MPVDataset: MPV's layout)
