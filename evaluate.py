"""Score a finished CP-VTON run with the protocol of CP-VTON+ (Minar et al., CVPRW 2020), Table 1.

    python evaluate.py                            # result/{gmm,tom}_final.pth/test and data/, all metrics
    python evaluate.py --metrics ssim,iou         # the metrics that need no pretrained weights
    python evaluate.py --tryon_dir DIR --warp_mask_dir DIR --out scores.json --allow_missing

Pairs and metrics
-----------------
Same-cloth pairs (``--paired_list``, default test_pairs_paired.txt; the person photo is the ground truth):
    IoU     GMM's warped mask (binarised >= --mask_threshold) against the person's cloth region in the
            parse map (LIP labels 5, 6, 7); the mean of the per-pair IoU.
    SSIM    skimage.metrics.structural_similarity on the RGB uint8 images, channel_axis=-1,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255; mean over pairs.
    SSIM-M  SSIM as MATLAB's ``ssim(A, ref)`` computes it on the same RGB arrays; mean over pairs.
            CP-VTON+ computed its SSIM this way (see ``metrics.matlab_ssim_map``), so the paper's SSIM values are
            shown in this column.
    LPIPS   lpips 0.1.4, AlexNet trunk, linear layers v0.1, inputs in [-1,1]; mean over pairs.
Unpaired pairs (``--unpaired_list``, default test_pairs.txt):
    IS      torchvision Inception-v3 (ImageNet), 299x299 bilinear, softmax over 1000 classes, 10 splits,
            mean and standard deviation over the splits.
    FID     pytorch-fid's Inception (pool3, 2048 features) of the try-on images against every person photo
            in <dataroot>/<datamode>/image/.

Difficulty subsets: every metric is also reported on two subsets of the pairs, each with its size:
    textured  pairs whose in-shop cloth's texture energy (``subsets.cloth_texture_energy``: the mean colour gradient
              magnitude inside the cloth mask eroded by 3 pixels) is above --textured_threshold (0.015);
    occluded  pairs whose person's arms (LIP labels 14, 15) cover more than --occluded_threshold (0.06) of the
              torso (``subsets.torso_occlusion``: the quadrilateral of the OpenPose shoulders and hips).
    A subset's IoU, SSIM, SSIM-M and LPIPS are the means over its same-cloth pairs; its IS and FID use its unpaired
    try-ons, IS in as many splits as keep the whole run's images per split (n/a below one split), FID against
    every person photo. ``subsets.difficulty_subsets`` gives the subsets of any pair list.

Results of another size (test.py at 512x384 on 256x192 data) are scored against the ground truth resized to their
size as cp_dataset resizes it (photos LANCZOS, parse maps NEAREST), with a note in the report; a result of another
aspect ratio is an error.

Why RGB for SSIM: CP-VTON+'s authors used MATLAB's ``ssim`` (minar09/cp-vton-plus issues #28, #72), and
their group's evaluation script (Heejune Ahn, GitHub thaithanhtuan/FashionProject,
LA-VITON/result/Utility/calculate_ssim.m, run on CP-VTON and CP-VTON+ result folders) passes ``imread``
output, H x W x 3 uint8 arrays, straight to ``ssim(ton_out_img, ton_gt_img)``. Grayscale would also
discard exactly the colour errors a try-on makes. MATLAB treats an H x W x 3 array as a volume, though
(an 11x11x11 Gaussian that also mixes neighbouring channels, replicate padding, no border cropped), which
no skimage setting reproduces: on the 40 VITON sample photos, blurred, noisy or JPEG-damaged, skimage's
RGB SSIM differs from MATLAB's by 0.01 to 0.06, mostly lower. Hence the second column, SSIM-M.

Files read (pair = ``cp_dataset.pair_key(person, cloth)``, as test.py names its outputs)::

    <dataroot>/<datamode>/image/<person>.jpg         ground truth, and the real images of FID
    <dataroot>/<datamode>/image-parse/<person>.png   LIP label map (P or L mode)
    <dataroot>/<datamode>/pose/<person>_keypoints.json, cloth/<cloth>.jpg, cloth-mask/<cloth>.jpg   the subsets
    <warp_mask_dir>/<pair>   default <result_dir>/<gmm_checkpoint_name>/<datamode>/warp-mask
    <tryon_dir>/<pair>       default <result_dir>/<tom_checkpoint_name>/<datamode>/try-on

Pretrained weights are never downloaded and never replaced by random ones. Each is read from the flag's
path, else from torch hub's cache ``<torch.hub.get_dir()>/checkpoints/`` (``$TORCH_HOME/hub/checkpoints``,
by default ~/.cache/torch/hub/checkpoints); a metric whose file is in neither place is reported as
unavailable, with the file name and where to put it. IoU, SSIM and SSIM-M need no weights.

Output: a table on stdout (this run and its subsets beside the two rows of CP-VTON+ Table 1) and a JSON file, by default
``metrics.json`` beside the try-on folder (``result/tom_final.pth/test/metrics.json``; beside the
warp-mask folder when only IoU is asked for), holding every metric with its number of images,
implementation and weights file (path and sha256), and the per-pair scores; "subsets" holds, per subset, its
definition, size and pair keys per pair list and its metrics (as "metrics"), and "per_pair_difficulty" each pair's
texture_energy, torso_occlusion and torso_region.
"""
import argparse
import importlib.util
import json
import os
import pickle
import re
import sys
import warnings
from dataclasses import dataclass
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import flags
from cp_dataset import (CLOTH_LABELS, MASK_THRESHOLD, NUM_LIP_LABELS, DataError, DataLayout, ResultLayout,
                        existing_file, file_in, load_parse_labels, load_photo, open_image, pair_key, parallel_map,
                        read_pairs, shown)
from mgvton import FINAL_CHECKPOINTS as MGVTON_FINAL_CHECKPOINTS
from mpv_dataset import MPVLayout, parse_result_name, read_triplets, triplet_key
from metrics import (MATLAB_SSIM_C1, MATLAB_SSIM_C2, MATLAB_SSIM_RADIUS, MATLAB_SSIM_SIGMA, SKIMAGE_SSIM_SETTINGS,
                     fid_from_features, inception_score_from_probs, mask_iou, matlab_ssim_score, ssim_score)
from networks import sha256_of
from progress import progress
from subsets import OCCLUDED_THRESHOLD, SUBSET_DEFINITIONS, TEXTURED_THRESHOLD, difficulty_measures, subset_members

PAIRED_METRICS = ('iou', 'ssim', 'ssim_matlab', 'lpips')   # need the same-cloth pairs
TRYON_PAIR_METRICS = ('ssim', 'ssim_matlab', 'lpips')      # ... and their try-on results
UNPAIRED_METRICS = ('is', 'fid')
ALL_METRICS = PAIRED_METRICS + UNPAIRED_METRICS
PARSE_METRICS = ('parse_accuracy', 'parse_miou')           # MG-VTON's synthesised parse (--triplets)
MULTI_POSE_METRICS = ALL_METRICS + PARSE_METRICS
INCEPTION_SIZE = 299     # Inception-v3's input side

# CP-VTON+ (CVPRW 2020) Table 1, VITON test set at 256x192. Its SSIM was MATLAB's, so it is listed as
# ssim_matlab. FID is not reported there.
PUBLISHED = {
    'CP-VTON (paper)': {'iou': 0.7898, 'ssim_matlab': 0.7798, 'lpips': 0.1397, 'is': (2.7809, 0.0594)},
    'CP-VTON+ (paper)': {'iou': 0.8425, 'ssim_matlab': 0.8163, 'lpips': 0.1144, 'is': (3.1048, 0.1068)},
}
TABLE_COLUMNS = (('iou', 'IoU'), ('ssim', 'SSIM'), ('ssim_matlab', 'SSIM-M'), ('lpips', 'LPIPS'),
                 ('is', 'IS'), ('fid', 'FID'))
MULTI_POSE_COLUMNS = TABLE_COLUMNS + (('parse_accuracy', 'parse acc'), ('parse_miou', 'parse mIoU'))


class MetricUnavailable(Exception):
    """A metric cannot be computed here (weights file or package missing); the message says how to fix it."""


class MissingResults(DataError):
    """Result images of listed pairs are absent; the message names the command that makes them."""


# ----------------------------------------------------------------------------------------------------
# Reading the run's files
# ----------------------------------------------------------------------------------------------------

def read_rgb(path):
    """An image file as uint8 RGB [H,W,3] (0..255), writable (torch.from_numpy wants that)."""
    return np.array(open_image(path).convert('RGB'))


def check_same_aspect_ratio(result_path, result_size, truth_path, truth_size):
    """DataError unless a result of result_size (W, H) and its ground truth of truth_size have one aspect ratio
    (within cp_dataset's 1%): a result of another size is then test.py run at another resolution, and the
    ground truth can be resized to it; another shape is another crop, which no resizing makes comparable."""
    (width, height), (truth_width, truth_height) = result_size, truth_size
    if abs(width * truth_height - height * truth_width) > 0.01 * height * truth_width:
        raise DataError(f'{shown(str(result_path))}: size {width}x{height}, but its ground truth '
                        f'{shown(str(truth_path))} is {truth_width}x{truth_height}, another aspect ratio; score '
                        f'results made from these '
                        f'images (test.py --fine_width/--fine_height of the same proportions)')


def read_rgb_like(path, result_path, result_size):
    """The ground-truth photo at `path` as uint8 RGB [H,W,3] of its result's size (W, H): resized as
    cp_dataset.load_photo resizes photos (LANCZOS) when test.py ran at another size of the same aspect ratio."""
    truth_size = open_image(path).size
    if truth_size == tuple(result_size):
        return read_rgb(path)
    check_same_aspect_ratio(result_path, result_size, path, truth_size)
    return np.array(load_photo(str(path), tuple(result_size))[0])


def read_binary_mask(path, threshold=MASK_THRESHOLD):
    """A mask image (L or RGB JPEG, 0..255) as bool [H,W]: pixel >= threshold."""
    return np.asarray(open_image(path).convert('L')) >= threshold


def read_cloth_region(parse_path, labels=CLOTH_LABELS, size=None):
    """The cloth region of a LIP label map as bool [H,W] of `size` (W, H; default: the map's own), read by the
    dataset's own parse loader: a colour rendering in the LIP palette is mapped back to labels, and another size
    is reached with NEAREST, as in training."""
    parse_path = existing_file(parse_path)
    return np.isin(load_parse_labels(parse_path, size or Image.open(parse_path).size), labels)


@dataclass(frozen=True)
class RunLayout(DataLayout):
    """Where a run's inputs and results lie (see the module docstring)."""
    tryon_dir: Path
    warp_mask_dir: Path

    def tryon(self, im_name, c_name):
        return Path(file_in(self.tryon_dir, pair_key(im_name, c_name)))

    def warp_mask(self, im_name, c_name):
        return Path(file_in(self.warp_mask_dir, pair_key(im_name, c_name)))


class ImageFiles(Dataset):
    """Items are tuples of image paths; an item is the tuple of those images as uint8 RGB tensors [3,H,W], each
    image after the first brought to the first one's size (``read_rgb_like``: a result and its ground truth)."""

    def __init__(self, path_tuples):
        self.path_tuples = list(path_tuples)

    def __len__(self):
        return len(self.path_tuples)

    def __getitem__(self, index):
        first_path, *other_paths = self.path_tuples[index]
        first = read_rgb(first_path)
        size = (first.shape[1], first.shape[0])
        images = [first] + [read_rgb_like(path, first_path, size) for path in other_paths]
        return tuple(torch.from_numpy(image).permute(2, 0, 1) for image in images)


def image_batches(path_tuples, batch_size, workers, description):
    """Batches of ImageFiles items: lists of uint8 tensors [B,3,H,W], one per path of the tuples."""
    loader = DataLoader(ImageFiles(path_tuples), batch_size=batch_size, num_workers=workers)
    return progress(loader, desc=description, unit='batch')


def to_unit_range(batch, device):
    """uint8 [B,3,H,W] -> float [B,3,H,W] in [0,1] on `device` (converted there: 4x less to transfer)."""
    return batch.to(device).float().div_(255)


# ----------------------------------------------------------------------------------------------------
# Networks. Each is built from a state dict that the caller loaded; nothing here downloads anything.
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WeightsSpec:
    file_name: str     # the name torch hub's cache uses; its '-<hex>' part is the start of the file's sha256
    flag: str
    description: str
    url: str           # where to fetch it on a machine with internet access


WEIGHTS = {
    'lpips': WeightsSpec('alexnet-owt-7be5be79.pth', '--lpips_weights',
                         "torchvision's AlexNet ImageNet weights, LPIPS's trunk",
                         'https://download.pytorch.org/models/alexnet-owt-7be5be79.pth'),
    'is': WeightsSpec('inception_v3_google-0cc3c7bd.pth', '--inception_weights',
                      "torchvision's Inception-v3 ImageNet weights",
                      'https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth'),
    'fid': WeightsSpec('pt_inception-2015-12-05-6726825d.pth', '--fid_weights',
                       "pytorch-fid's FID Inception weights",
                       'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
                       'pt_inception-2015-12-05-6726825d.pth'),
}


def hub_checkpoint_dir():
    """torch hub's weight cache, where torchvision and pytorch-fid keep downloaded weights."""
    return Path(torch.hub.get_dir()) / 'checkpoints'


def locate_weights(spec, explicit_path=None):
    """The weights file: `explicit_path` if given, else torch hub's cached copy. MetricUnavailable if absent."""
    if explicit_path:
        path = Path(explicit_path)
        if not path.is_file():
            raise MetricUnavailable(f'{spec.flag} {path}: no such file (expected {spec.description}, '
                                    f'{spec.file_name})')
        return path
    path = hub_checkpoint_dir() / spec.file_name
    if not path.is_file():
        raise MetricUnavailable(f'{spec.file_name} ({spec.description}) not found: put it in '
                                f'{hub_checkpoint_dir()}/ or pass {spec.flag} PATH (download: {spec.url})')
    return path


def describe_weights(path, expected_file_name=None):
    """Path and sha256 of a weights file for the JSON; with `expected_file_name`, whether the sha256 starts
    with the hash that torch hub's naming puts in that name (False: a different file than the standard one)."""
    sha256 = sha256_of(path)
    description = {'path': str(Path(path).resolve()), 'sha256_prefix': sha256[:16]}
    name_hash = re.search(r'-([0-9a-f]{8,})\.pth$', expected_file_name or '')
    if name_hash:
        description['sha256_matches_standard_file'] = sha256.startswith(name_hash.group(1))
    return description


def load_state_dict_file(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def lpips_linear_weights_path():
    """The v0.1 AlexNet linear-layer weights that ship inside the lpips package (found without importing it:
    lpips and torchvision are imported only where a metric needs them, see networks.torchvision_vgg19)."""
    return Path(importlib.util.find_spec('lpips').origin).parent / 'weights' / 'v0.1' / 'alex.pth'


def build_lpips_model(alexnet_state_dict):
    """LPIPS v0.1 with an AlexNet trunk, from torchvision AlexNet weights (a state dict) and lpips's own
    linear layers.

    lpips would fetch the trunk from the internet; instead it is built empty (pnet_rand=True) and filled from
    the state dict. lpips keeps torchvision's layer indices inside its slices, so 'features.3.weight' is
    'slice2.3.weight'.
    """
    import lpips
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)   # lpips passes torchvision's deprecated `pretrained=`
        model = lpips.LPIPS(pretrained=True, net='alex', version='0.1', pnet_rand=True, verbose=False)
    sources = {key: 'features.' + key.split('.', 1)[1] for key in model.net.state_dict()}
    absent = [source for source in sources.values() if source not in alexnet_state_dict]
    if absent:
        raise ValueError(f'not torchvision AlexNet weights: no {", ".join(absent)}')
    model.net.load_state_dict({key: alexnet_state_dict[source] for key, source in sources.items()})
    return model.eval()


class LpipsScorer:
    """LPIPS distances of image pairs, batched on `device`.

    model: module called as model(a, b) with a, b float [N,3,H,W] in [-1,1], returning distances [N,1,1,1]:
    ``build_lpips_model(...)`` for the real metric; tests pass one with a random trunk.
    """

    def __init__(self, model, device='cpu', batch_size=32, workers=0):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self.workers = workers

    @torch.inference_mode()
    def distances(self, images, references):
        """images, references: float [N,3,H,W] in [0,1]. Returns the LPIPS distance of each pair, float [N] (CPU)."""
        images = images.to(self.device) * 2 - 1
        references = references.to(self.device) * 2 - 1
        return self.model(images, references).reshape(-1).float().cpu()

    def score_files(self, image_paths, reference_paths):
        """LPIPS of each (image file, reference file) pair, as a list of floats in the given order."""
        scores = []
        for images, references in image_batches(zip(image_paths, reference_paths), self.batch_size,
                                                self.workers, 'LPIPS'):
            scores += self.distances(to_unit_range(images, self.device),
                                     to_unit_range(references, self.device)).tolist()
        return scores


def resize_to_inception(images):
    """float [B,3,H,W] in [0,1] -> [B,3,299,299] in [-1,1], the range both Inception weight sets expect."""
    resized = F.interpolate(images, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode='bilinear', align_corners=False)
    return resized * 2 - 1


class InceptionClassifier(nn.Module):
    """torchvision's Inception-v3 ImageNet classifier: images [B,3,H,W] in [0,1] -> class probabilities [B,1000].

    The weights take inputs in [-1,1] (the Google release); torchvision's transform_input would instead expect
    ImageNet-normalised input and convert it, so it is off and the input is scaled directly.
    """

    def __init__(self, state_dict):
        super().__init__()
        from torchvision.models import inception_v3
        # aux_logits=True: the released file holds the auxiliary head, and strict loading checks every key.
        self.net = inception_v3(weights=None, aux_logits=True, transform_input=False, init_weights=False)
        self.net.load_state_dict(state_dict)
        self.eval()

    def forward(self, images):
        return F.softmax(self.net(resize_to_inception(images)), dim=1)


def fid_inception_network():
    """pytorch-fid's Inception (TensorFlow's FID graph of 2015-12-05) without weights, built as pytorch-fid's
    fid_inception_v3() builds it: torchvision's network with TF's variants of some blocks."""
    try:
        from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2
    except ImportError:
        raise MetricUnavailable('FID needs the pytorch-fid package: pip install pytorch-fid') from None
    from torchvision.models import inception_v3
    net = inception_v3(weights=None, aux_logits=False, num_classes=1008, transform_input=False, init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE_1(1280)
    net.Mixed_7c = FIDInceptionE_2(2048)
    return net


class FidInception(nn.Module):
    """pytorch-fid's FID network: images [B,3,H,W] in [0,1] -> the 2048 pool3 features [B,2048], with
    pytorch-fid's preprocessing (bilinear resize to 299x299, scale to [-1,1]). Built from a state dict that
    the caller loaded, since pytorch-fid itself only loads its weights from a URL."""

    def __init__(self, state_dict):
        super().__init__()
        self.net = fid_inception_network()
        self.net.load_state_dict(state_dict)
        self.net.fc = nn.Identity()   # the output is then the average-pooled 2048 features (pool3)
        self.eval()

    def forward(self, images):
        return self.net(resize_to_inception(images))


@torch.inference_mode()
def network_outputs(network, paths, device, batch_size, workers, description):
    """Run `network` (images [B,3,H,W] in [0,1] -> [B,D]) over image files. Returns float64 [N,D]."""
    network = network.to(device).eval()
    outputs = [network(to_unit_range(images, device)).double().cpu()
               for (images,) in image_batches([(path,) for path in paths], batch_size, workers, description)]
    return torch.cat(outputs).numpy()


# ----------------------------------------------------------------------------------------------------
# Per-pair scores and their aggregation
# ----------------------------------------------------------------------------------------------------

def score_pair(layout, im_name, c_name, metrics, mask_threshold=MASK_THRESHOLD, cloth_labels=CLOTH_LABELS):
    """{metric: score} of one same-cloth pair for `metrics` among 'iou', 'ssim', 'ssim_matlab'.

    Results of another size than the data (test.py run at 512x384 on 256x192 files) are scored against the
    ground truth resized to the result's size: the photo as cp_dataset.load_photo resizes it (LANCZOS), the
    parse map as cp_dataset.load_parse_labels does (NEAREST). Another aspect ratio is a DataError."""
    row = {}
    if 'ssim' in metrics or 'ssim_matlab' in metrics:
        tryon_path = layout.tryon(im_name, c_name)
        tryon = read_rgb(tryon_path)
        truth = read_rgb_like(layout.person_image(im_name), tryon_path, (tryon.shape[1], tryon.shape[0]))
        if 'ssim' in metrics:
            row['ssim'] = ssim_score(tryon, truth)
        if 'ssim_matlab' in metrics:
            row['ssim_matlab'] = matlab_ssim_score(tryon, truth)
    if 'iou' in metrics:
        mask_path, parse_path = layout.warp_mask(im_name, c_name), layout.parse_map(im_name)
        warp_mask = read_binary_mask(mask_path, mask_threshold)
        mask_size = (warp_mask.shape[1], warp_mask.shape[0])
        check_same_aspect_ratio(mask_path, mask_size, parse_path, open_image(parse_path).size)
        row['iou'] = mask_iou(warp_mask, read_cloth_region(parse_path, cloth_labels, mask_size))
    return row


def score_pair_keyed(pair, layout, metrics, mask_threshold, cloth_labels):
    """(pair key, score_pair(...)) of one (im_name, c_name) pair: a parallel_map function."""
    return pair_key(*pair), score_pair(layout, *pair, metrics, mask_threshold, cloth_labels)


def per_pair_scores(layout, pairs, metrics=('iou', 'ssim', 'ssim_matlab'), mask_threshold=MASK_THRESHOLD,
                    cloth_labels=CLOTH_LABELS, lpips_scorer=None, workers=0):
    """Scores of each same-cloth pair: {pair_key: {metric: value}} for `metrics` (of PAIRED_METRICS).

    'iou' reads the pair's warp mask, the others its try-on and the person photo; every file must exist.
    'lpips' needs an LpipsScorer; the other metrics are computed on the CPU by `workers` processes.
    For a strip renderer that labels pairs, or a worst-cases analysis; ``aggregate`` averages over any
    subset of the keys.
    """
    unknown = set(metrics) - set(PAIRED_METRICS)
    if unknown:
        raise ValueError(f'not per-pair metrics: {sorted(unknown)}')
    if 'lpips' in metrics and lpips_scorer is None:
        raise ValueError("'lpips' needs an lpips_scorer")
    scores = {pair_key(im_name, c_name): {} for im_name, c_name in pairs}
    cpu_metrics = tuple(metric for metric in metrics if metric != 'lpips')
    if cpu_metrics:
        score = partial(score_pair_keyed, layout=layout, metrics=cpu_metrics, mask_threshold=mask_threshold,
                        cloth_labels=cloth_labels)
        for key, row in parallel_map(score, pairs, workers, '/'.join(cpu_metrics)):
            scores[key].update(row)
    if 'lpips' in metrics:
        distances = lpips_scorer.score_files([layout.tryon(*pair) for pair in pairs],
                                             [layout.person_image(im_name) for im_name, _ in pairs])
        for pair, distance in zip(pairs, distances):
            scores[pair_key(*pair)]['lpips'] = distance
    return scores


def merge_pair_scores(into, scores):
    """Add the metrics of `scores` ({pair_key: {metric: value}}) to `into`, pair by pair."""
    for key, row in scores.items():
        into.setdefault(key, {}).update(row)
    return into


def aggregate(pair_scores, metric, keys=None):
    """Mean of `metric` over the pairs `keys` (default: all) that have it: {'value': mean, 'num_images': n}.

    A named subset of pairs (e.g. a difficulty class) is scored by passing its pair keys."""
    keys = pair_scores.keys() if keys is None else keys
    values = [pair_scores[key][metric] for key in keys if metric in pair_scores.get(key, {})]
    return {'value': float(np.mean(values)) if values else None, 'num_images': len(values)}


# ----------------------------------------------------------------------------------------------------
# The run: pair lists, missing results, metrics, report
# ----------------------------------------------------------------------------------------------------

def derive_paired_pairs(pairs, cloth_dir):
    """Same-cloth pairs by VITON's naming: person NNNNNN_0.jpg wears cloth NNNNNN_1.jpg. One per person of
    `pairs`, in their order, kept only where that cloth exists in `cloth_dir`."""
    derived, seen = [], set()
    for im_name, _ in pairs:
        if im_name in seen or not im_name.endswith('_0.jpg'):
            continue
        seen.add(im_name)
        own_cloth = im_name[:-len('_0.jpg')] + '_1.jpg'
        if Path(file_in(cloth_dir, own_cloth)).is_file():
            derived.append((im_name, own_cloth))
    return derived


def read_list(dataroot, list_name, flag):
    path = Path(dataroot) / list_name
    if not path.is_file():
        raise DataError(f'pairs file not found: {path} (set {flag}, or choose other metrics with --metrics)')
    return read_pairs(str(path))


def paired_list(args, layout, notes):
    """The same-cloth pairs and a description for the JSON; derived from the unpaired list if its file is absent."""
    path = Path(args.dataroot) / args.paired_list
    if path.is_file():
        pairs = read_pairs(str(path))
        return pairs, {'path': str(path), 'derived': False, 'pairs': len(pairs)}
    pairs, how = derived_paired_list(args, layout)
    notes.append(f'{path} not found: {how}')
    return pairs, {'path': str(path), 'derived': True, 'derived_from': args.unpaired_list, 'pairs': len(pairs)}


def derived_paired_list(args, layout):
    """The same-cloth pairs derived from --unpaired_list's persons, and how they were derived (a sentence)."""
    source = read_list(args.dataroot, args.unpaired_list, '--paired_list or --unpaired_list')
    pairs = derive_paired_pairs(source, layout.data_dir / 'cloth')
    if not pairs:
        raise DataError(f'{Path(args.dataroot) / args.paired_list} not found, and no same-cloth pair could be '
                        f'derived from {args.unpaired_list} (person NNNNNN_0.jpg wears cloth NNNNNN_1.jpg)')
    persons = len({im_name for im_name, _ in source})
    return pairs, (f'derived {len(pairs)} same-cloth pairs from the persons of {args.unpaired_list} (person '
                   f'NNNNNN_0.jpg wears cloth NNNNNN_1.jpg); {persons - len(pairs)} of {persons} persons skipped '
                   f'(no such cloth in {layout.data_dir / "cloth"})')


def write_paired_list(args):
    """--write_paired_list: writes --paired_list, derived as paired_list() derives it, where the data has none
    (VITON ships no same-cloth test list). An existing file is never touched. Returns the exit status."""
    path = Path(args.dataroot) / args.paired_list
    if path.exists():
        print(f'{path} exists: kept as it is')
        return 0
    pairs, how = derived_paired_list(args, DataLayout(Path(args.dataroot), args.datamode))
    with open(path, 'x', encoding='utf-8') as file:   # 'x': a list made meanwhile is not overwritten
        file.writelines(f'{im_name} {c_name}\n' for im_name, c_name in pairs)
    print(f'wrote {path}: {how}')
    return 0


def producing_command(args, stage, list_name):
    """The test.py command line that writes `stage`'s results for the pairs of `list_name`."""
    checkpoint = args.gmm_checkpoint_name if stage == 'GMM' else args.tom_checkpoint_name
    step_script = 'step2-test-gmm.sh' if stage == 'GMM' else 'step5-test-tom.sh'
    command = (f'python test.py --stage {stage} --dataroot {args.dataroot} --datamode {args.datamode} '
               f'--data_list {list_name} --result_dir {args.result_dir} --checkpoint checkpoints/<name>/{checkpoint} '
               f'(scripts/{step_script} runs it for each test list)')
    list_path = Path(args.dataroot) / list_name
    if not list_path.is_file():
        command += f"; first write {list_path}, one 'NNNNNN_0.jpg NNNNNN_1.jpg' line per person"
    return command


def present_pairs(pairs, path_of, what, command, allow_missing, notes, key_of=pair_key):
    """The pairs (tuples of path_of's arguments) whose result file exists. Missing ones fail the run unless
    `allow_missing` (then: a note)."""
    missing = [pair for pair in pairs if not path_of(*pair).is_file()]
    if not missing:
        return list(pairs)
    folder = path_of(*missing[0]).parent
    examples = ', '.join(shown(key_of(*pair)) for pair in missing[:3])
    message = (f'{len(missing)} of {len(pairs)} {what} are missing from {folder} (e.g. {examples}); '
               f'make them with: {command}')
    if not allow_missing:
        raise MissingResults(f'{message}. Or pass --allow_missing to score the {len(pairs) - len(missing)} '
                             f'that exist.')
    notes.append(f'--allow_missing: {message}')
    missing = set(missing)
    return [pair for pair in pairs if pair not in missing]


def note_resized_ground_truth(result_paths, truth_paths, what, how, notes):
    """Note (in `notes`) how many results differ in size from their ground truth, which ``score_pair`` then
    resizes (`how` says with which filter). Raises DataError, before any scoring, for another aspect ratio."""
    differing = []
    for result_path, truth_path in zip(result_paths, truth_paths):
        result_size, truth_size = open_image(result_path).size, open_image(truth_path).size
        if result_size != truth_size:
            check_same_aspect_ratio(result_path, result_size, truth_path, truth_size)
            differing.append((result_size, truth_size))
    if differing:
        (width, height), (truth_width, truth_height) = differing[0]
        notes.append(f'{len(differing)} of {len(result_paths)} {what} are of another size than their ground truth '
                     f'(e.g. {width}x{height} against {truth_width}x{truth_height}): they are scored against the '
                     f'{how}')


def package_version(distribution):
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def implementation(package, **settings):
    return {'package': package, 'version': package_version(package), 'settings': settings}


def ssim_implementation():
    return {**implementation('scikit-image', channel_axis=-1, input='uint8 RGB', aggregate='mean over pairs',
                             **SKIMAGE_SSIM_SETTINGS),
            'function': 'skimage.metrics.structural_similarity'}


def matlab_ssim_implementation():
    return {**implementation('scipy', sigma=MATLAB_SSIM_SIGMA, radius=MATLAB_SSIM_RADIUS, padding='replicate',
                             window='3-D over H x W x RGB', border='kept', C1=MATLAB_SSIM_C1, C2=MATLAB_SSIM_C2,
                             aggregate='mean over pairs'),
            'function': 'metrics.matlab_ssim_score (MATLAB ssim(A, ref) on uint8 RGB arrays)'}


SSIM_IMPLEMENTATIONS = {'ssim': ssim_implementation, 'ssim_matlab': matlab_ssim_implementation}


def lpips_implementation():
    return implementation('lpips', net='alex', version='0.1', input_range=[-1, 1], aggregate='mean over pairs')


def is_implementation():
    return implementation('torchvision', model='inception_v3', resize='bilinear 299x299', input_range=[-1, 1],
                          output='softmax over 1000 classes')


def fid_implementation():
    return implementation('pytorch-fid', features='pool3 (2048)', resize='bilinear 299x299', input_range=[-1, 1],
                          frechet_distance='metrics.frechet_distance (eigenvalues)')


def load_network(build, path, spec):
    """build(state dict of the file at `path`); a file that is not the expected weights makes MetricUnavailable."""
    try:
        return build(load_state_dict_file(path))
    except (OSError, EOFError, pickle.UnpicklingError, RuntimeError, KeyError, ValueError) as error:
        raise MetricUnavailable(f'{path} could not be loaded as {spec.description} '
                                f'({type(error).__name__}: {error})') from None


def with_weights(metric, explicit_path, build, compute, notes):
    """A metric that needs pretrained weights: compute(build(state dict of its weights file)) -> result dict,
    with the weights described in it. Missing or unusable weights give {'unavailable': reason}."""
    spec = WEIGHTS[metric]
    try:
        path = locate_weights(spec, explicit_path)
        result = compute(load_network(build, path, spec))
    except MetricUnavailable as reason:
        return {'unavailable': str(reason)}
    result.setdefault('weights', []).insert(0, describe_weights(path, spec.file_name))
    if result['weights'][0].get('sha256_matches_standard_file') is False:
        notes.append(f'{metric}: {path} is not the standard {spec.file_name} (its sha256 differs); '
                     f'scores are not comparable with published ones')
    return result


def paired_metric_results(args, layout, pairs, metrics, notes, device):
    """{metric: result} and the per-pair scores for the requested same-cloth metrics."""
    results, scores = {}, {}
    tryon_metrics = [metric for metric in TRYON_PAIR_METRICS if metric in metrics]
    if 'iou' in metrics:
        mask_pairs = present_pairs(pairs, layout.warp_mask, f'GMM warp masks of {args.paired_list}',
                                   producing_command(args, 'GMM', args.paired_list), args.allow_missing, notes)
        note_resized_ground_truth([layout.warp_mask(*pair) for pair in mask_pairs],
                                  [layout.parse_map(im_name) for im_name, _ in mask_pairs], 'warp masks',
                                  'parse maps resized to their size with NEAREST, as cp_dataset.load_parse_labels '
                                  'resizes them', notes)
        merge_pair_scores(scores, per_pair_scores(layout, mask_pairs, ['iou'], args.mask_threshold,
                                                  args.cloth_labels, workers=args.workers))
        results['iou'] = {**aggregate(scores, 'iou'), 'implementation': implementation(
            'numpy', mask_threshold=args.mask_threshold, cloth_labels=list(args.cloth_labels),
            aggregate='mean of per-pair IoU', both_masks_empty=1.0)}
    if not tryon_metrics:
        return results, scores
    tryon_pairs = present_pairs(pairs, layout.tryon, f'TOM try-on results of {args.paired_list}',
                                producing_command(args, 'TOM', args.paired_list), args.allow_missing, notes)
    note_resized_ground_truth([layout.tryon(*pair) for pair in tryon_pairs],
                              [layout.person_image(im_name) for im_name, _ in tryon_pairs], 'try-on results',
                              'person photos resized to their size with LANCZOS, as cp_dataset.load_photo resizes '
                              'photos', notes)
    ssim_metrics = [metric for metric in tryon_metrics if metric != 'lpips']
    merge_pair_scores(scores, per_pair_scores(layout, tryon_pairs, ssim_metrics, workers=args.workers))
    for metric in ssim_metrics:
        results[metric] = {**aggregate(scores, metric), 'implementation': SSIM_IMPLEMENTATIONS[metric]()}
    if 'lpips' in metrics:
        def build_scorer(alexnet_state_dict):
            return LpipsScorer(build_lpips_model(alexnet_state_dict), device, args.batch_size, args.workers)

        def compute_lpips(scorer):
            merge_pair_scores(scores, per_pair_scores(layout, tryon_pairs, ['lpips'], lpips_scorer=scorer))
            return {**aggregate(scores, 'lpips'),
                    'implementation': lpips_implementation(),
                    'weights': [describe_weights(lpips_linear_weights_path())]}
        results['lpips'] = with_weights('lpips', args.lpips_weights, build_scorer, compute_lpips, notes)
    return results, scores


def run_layout_and_device(args):
    """The RunLayout of the results to score (--tryon_dir and --warp_mask_dir, else test.py's folders under
    --result_dir) and the torch device to score on (--device, else the first GPU if there is one)."""
    layout = RunLayout(Path(args.dataroot), args.datamode,
                       Path(args.tryon_dir) if args.tryon_dir else default_tryon_dir(args),
                       Path(args.warp_mask_dir) if args.warp_mask_dir else default_warp_mask_dir(args))
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    return layout, device


def inception_score_result(probs, splits):
    """The IS result of class probabilities [N,1000] (N >= splits) in `splits` splits."""
    mean, std = inception_score_from_probs(probs, splits)
    return {'value': mean, 'std': std, 'splits': splits, 'num_images': len(probs)}


def subset_inception_score(probs, run_images, run_splits):
    """The IS result of a subset's class probabilities [n,1000], in as many splits as leave each at least as many
    images as a split of the whole run's IS (`run_images` in `run_splits`): IS grows with the images per split,
    so only splits of that size are comparable with the run's. MetricUnavailable where n is less than one split."""
    per_split = max(1, run_images // run_splits)
    if len(probs) < per_split:
        raise MetricUnavailable(f'{len(probs)} try-on images, fewer than the {per_split} of one split of the whole '
                                f"run's IS")
    return inception_score_result(probs, len(probs) // per_split)


def fid_result(fake, real):
    """The FID result of try-on features [N,D] against person-photo features [M,D]; MetricUnavailable for N or M < 2."""
    if min(len(fake), len(real)) < 2:
        raise MetricUnavailable('FID needs at least 2 try-on and 2 person images')
    return {'value': fid_from_features(fake, real), 'num_images': len(fake), 'num_real_images': len(real)}


def unavailable_if_raised(compute):
    """compute(), or {'unavailable': reason} where it raises MetricUnavailable (a subset too small)."""
    try:
        return compute()
    except MetricUnavailable as reason:
        return {'unavailable': str(reason)}


def unpaired_metric_results(args, layout, pairs, metrics, notes, device, subsets):
    """({metric: result}, {subset: {metric: result}}, list description) for the requested unpaired metrics (IS,
    FID): on the try-on results of the unpaired list `pairs`, and on those of each subset's pairs (`subsets`:
    {subset: [pair keys]}). A subset's FID compares its try-ons with every person photo, as the run's does."""
    pairs = present_pairs(pairs, layout.tryon, f'TOM try-on results of {args.unpaired_list}',
                          producing_command(args, 'TOM', args.unpaired_list), args.allow_missing, notes)
    tryon_paths = [layout.tryon(*pair) for pair in pairs]
    row_of = {pair_key(*pair): row for row, pair in enumerate(pairs)}
    subset_rows = {subset: [row_of[key] for key in keys if key in row_of] for subset, keys in subsets.items()}
    results, subset_results = {}, {subset: {} for subset in subsets}
    if 'is' in metrics:
        def compute_is(network):
            if len(tryon_paths) < args.is_splits:
                raise MetricUnavailable(f'{len(tryon_paths)} try-on images, fewer than --is_splits {args.is_splits}')
            probs = network_outputs(network, tryon_paths, device, args.batch_size, args.workers, 'IS')
            for subset, rows in subset_rows.items():
                subset_results[subset]['is'] = unavailable_if_raised(
                    partial(subset_inception_score, probs[rows], len(probs), args.is_splits))
            return {**inception_score_result(probs, args.is_splits),
                    'implementation': is_implementation()}
        results['is'] = with_weights('is', args.inception_weights, InceptionClassifier, compute_is, notes)
    if 'fid' in metrics:
        def compute_fid(network):
            real_paths = layout.real_images()
            if min(len(tryon_paths), len(real_paths)) < 2:
                raise MetricUnavailable('FID needs at least 2 try-on and 2 person images')
            fake = network_outputs(network, tryon_paths, device, args.batch_size, args.workers, 'FID try-on')
            real = network_outputs(network, real_paths, device, args.batch_size, args.workers, 'FID persons')
            if min(len(fake), len(real)) < fake.shape[1]:
                notes.append(f'FID from {len(fake)} and {len(real)} images, fewer than its {fake.shape[1]} '
                             f'features: the covariances are singular and FID reads high; compare only '
                             f'FIDs of equally many images')
            for subset, rows in subset_rows.items():
                subset_results[subset]['fid'] = unavailable_if_raised(partial(fid_result, fake[rows], real))
            return {**fid_result(fake, real), 'real_images': str(layout.data_dir / 'image'),
                    'implementation': fid_implementation()}
        results['fid'] = with_weights('fid', args.fid_weights, FidInception, compute_fid, notes)
    return results, subset_results, {'path': str(Path(args.dataroot) / args.unpaired_list), 'pairs': len(pairs)}


def default_tryon_dir(args):
    return ResultLayout(args.result_dir, args.tom_checkpoint_name, args.datamode).kind_dir('try-on')


def default_warp_mask_dir(args):
    return ResultLayout(args.result_dir, args.gmm_checkpoint_name, args.datamode).kind_dir('warp-mask')


def output_path(args, layout, metrics):
    """--out, else metrics.json beside the try-on folder (beside the warp-mask folder for IoU alone)."""
    if args.out:
        return Path(args.out)
    results_folder = layout.warp_mask_dir if set(metrics) == {'iou'} else layout.tryon_dir
    return results_folder.parent / 'metrics.json'


def missing_difficulty_files(layout, pairs):
    """Why ``difficulty_measures`` cannot measure `pairs` (data files it reads are missing), or None."""
    needed = dict.fromkeys(path for im_name, c_name in pairs
                           for path in (layout.cloth(c_name), layout.cloth_mask(c_name), layout.person_image(im_name),
                                        layout.parse_map(im_name), layout.pose(im_name)))
    missing = [path for path in needed if not path.is_file()]
    if missing:
        return (f'{len(missing)} of the {len(needed)} data files they read (cloth/, cloth-mask/, image/, '
                f'image-parse/, pose/) are missing, e.g. {missing[0]}')
    return None


def difficulty_report(args, layout, list_pairs, notes):
    """(per-pair measures, the report's 'subsets' without their metrics) of the pairs of every list in `list_pairs`
    ({'paired' or 'unpaired': [(im_name, c_name)]}): per subset its definition, and its size and pair keys in each
    list; {} and the reason, per subset and in a note, where data files are missing."""
    thresholds = {'textured': args.textured_threshold, 'occluded': args.occluded_threshold}
    subsets = {subset: {'definition': {**definition, 'threshold': thresholds[subset],
                                       'rule': f'{definition["measure"]} > {thresholds[subset]}'}}
               for subset, definition in SUBSET_DEFINITIONS.items()}
    pairs = list(dict.fromkeys(pair for listed in list_pairs.values() for pair in listed))
    reason = missing_difficulty_files(layout, pairs)
    if reason:
        notes.append(f'difficulty subsets not computed: {reason}')
        for entry in subsets.values():
            entry['unavailable'] = reason
        return {}, subsets
    measures = difficulty_measures(layout.dataroot, layout.datamode, pairs, args.workers)
    members = {name: subset_members(measures, args.textured_threshold, args.occluded_threshold,
                                    [pair_key(*pair) for pair in listed]) for name, listed in list_pairs.items()}
    for subset, entry in subsets.items():
        entry['size'] = {name: len(members[name][subset]) for name in list_pairs}
        entry['pairs'] = {name: members[name][subset] for name in list_pairs}
        entry['metrics'] = {}
    return measures, subsets


def subset_metric_results(run_results, subset_result):
    """{metric: result} of a subset: subset_result(metric), or the whole run's reason where a metric is unavailable."""
    return {metric: {'unavailable': result['unavailable']} if 'unavailable' in result else subset_result(metric)
            for metric, result in run_results.items()}


def evaluate(args):
    """Compute the requested metrics. Returns the report (JSON-ready): settings, metrics, notes, per-pair scores,
    and the difficulty subsets with their metrics and the per-pair measures."""
    metrics = args.metrics
    layout, device = run_layout_and_device(args)
    notes, results, lists, scores, list_pairs = [], {}, {}, {}, {}
    if any(metric in metrics for metric in PAIRED_METRICS):
        list_pairs['paired'], lists['paired'] = paired_list(args, layout, notes)
    if any(metric in metrics for metric in UNPAIRED_METRICS):
        list_pairs['unpaired'] = read_list(args.dataroot, args.unpaired_list, '--unpaired_list')
    measures, subsets = difficulty_report(args, layout, list_pairs, notes)
    available = {subset: entry for subset, entry in subsets.items() if 'unavailable' not in entry}
    if 'paired' in list_pairs:
        paired_results, scores = paired_metric_results(args, layout, list_pairs['paired'], metrics, notes, device)
        results.update(paired_results)
        for entry in available.values():
            entry['metrics'].update(subset_metric_results(
                paired_results, partial(aggregate, scores, keys=entry['pairs']['paired'])))
    if 'unpaired' in list_pairs:
        unpaired_results, unpaired_subset_results, lists['unpaired'] = unpaired_metric_results(
            args, layout, list_pairs['unpaired'], metrics, notes, device,
            {subset: entry['pairs']['unpaired'] for subset, entry in available.items()})
        results.update(unpaired_results)
        for subset, entry in available.items():
            entry['metrics'].update(subset_metric_results(unpaired_results, unpaired_subset_results[subset].get))
        if 'value' in results.get('fid', {}) and available:
            notes.append("a subset's FID compares its try-ons with every person photo; FID reads higher for fewer "
                         "images, so compare it only with FIDs of equally many")
    return {
        'protocol': 'CP-VTON+ (CVPRW 2020) Table 1',
        'settings': {'dataroot': str(layout.dataroot), 'datamode': layout.datamode,
                     'tryon_dir': str(layout.tryon_dir), 'warp_mask_dir': str(layout.warp_mask_dir),
                     'metrics': list(metrics), 'device': str(device)},
        'pair_lists': lists,
        'metrics': {metric: results[metric] for metric in ALL_METRICS if metric in results},
        'notes': notes,
        'published': {name: {metric: list(value) if isinstance(value, tuple) else value
                             for metric, value in row.items()} for name, row in PUBLISHED.items()},
        'per_pair': scores,
        'subsets': subsets,
        'per_pair_difficulty': measures,
        'output': str(output_path(args, layout, metrics)),
    }


# ----------------------------------------------------------------------------------------------------
# Multi-pose results (MG-VTON, the MPV layout: --triplets)
# ----------------------------------------------------------------------------------------------------

MULTI_POSE_PROTOCOL = "multi-pose try-on (MG-VTON): each result against person B's photo"


def parse_confusion(predicted, truth, classes=NUM_LIP_LABELS):
    """Counts [classes, classes] of (truth label, predicted label) over the pixels of two label maps [H,W]."""
    codes = truth.astype(np.int64).ravel() * classes + predicted.astype(np.int64).ravel()
    return np.bincount(codes, minlength=classes * classes).reshape(classes, classes)


def parse_scores(confusion):
    """(pixel accuracy, mean IoU) of a confusion matrix summed over a test set: the share of pixels whose label
    is right, and the IoU of each class (its pixels in both / in either, over all images) averaged over the
    classes that occur in the truth or the prediction."""
    intersection = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    present = union > 0
    return float(intersection.sum() / confusion.sum()), float((intersection[present] / union[present]).mean())


@dataclass(frozen=True)
class MultiPoseLayout:
    """Where a multi-pose run's data (mpv_dataset.MPVLayout) and results (a cp_dataset.ResultLayout, the try-on
    folder possibly elsewhere: --tryon_dir) lie; results are named by mpv_dataset.triplet_key."""
    data: MPVLayout
    results: ResultLayout
    tryon_dir: Path

    def tryon(self, triplet):
        return Path(file_in(self.tryon_dir, triplet_key(triplet)))

    def warp_mask(self, triplet):
        return Path(file_in(self.results.kind_dir('warp-mask'), triplet_key(triplet)))

    def parse(self, triplet):
        return Path(file_in(self.results.kind_dir('parse'), parse_result_name(triplet_key(triplet))))


def score_triplet(triplet, layout, metrics, mask_threshold, cloth_labels):
    """(triplet key, {metric: score}, parse confusion or None) of one triplet: SSIM of the try-on against person
    B's photo, IoU of the warped mask against person B's cloth region, pixel accuracy of the parse (the
    confusion is summed over the run for mean IoU). A parallel_map function."""
    row, confusion = {}, None
    target_photo, target_parse = layout.data.photo(triplet.target), layout.data.parse_map(triplet.target)
    if 'ssim' in metrics or 'ssim_matlab' in metrics:
        tryon_path = layout.tryon(triplet)
        tryon = read_rgb(tryon_path)
        truth = read_rgb_like(target_photo, tryon_path, (tryon.shape[1], tryon.shape[0]))
        for metric in ('ssim', 'ssim_matlab'):
            if metric in metrics:
                row[metric] = (ssim_score if metric == 'ssim' else matlab_ssim_score)(tryon, truth)
    if 'iou' in metrics:
        warp_mask = read_binary_mask(layout.warp_mask(triplet), mask_threshold)
        row['iou'] = mask_iou(warp_mask, read_cloth_region(target_parse, cloth_labels,
                                                           (warp_mask.shape[1], warp_mask.shape[0])))
    if any(metric in metrics for metric in PARSE_METRICS):
        with open_image(layout.parse(triplet)) as image:
            size = image.size
        predicted = load_parse_labels(str(layout.parse(triplet)), size)
        truth = load_parse_labels(existing_file(target_parse), size)
        confusion = parse_confusion(predicted, truth)
        row['parse_accuracy'] = float((predicted == truth).mean())
    return triplet_key(triplet), row, confusion


def multi_pose_command(args):
    """The test.py command line that writes the results of --mgvton_checkpoint_name for --triplets."""
    stage = {name: stage for stage, name in MGVTON_FINAL_CHECKPOINTS.items()}.get(args.mgvton_checkpoint_name,
                                                                                 'MGVTON_REFINE')
    return (f'python test.py --stage {stage} --dataroot {args.dataroot} --datamode {args.datamode} --data_list '
            f'{args.triplets} --result_dir {args.result_dir} --checkpoint checkpoints/<name>/'
            f'{args.mgvton_checkpoint_name} (scripts/mgvton/step5-test.sh)')


MULTI_POSE_FOLDERS = {'ssim': 'try-on', 'ssim_matlab': 'try-on', 'lpips': 'try-on', 'is': 'try-on', 'fid': 'try-on',
                      'iou': 'warp-mask', 'parse_accuracy': 'parse', 'parse_miou': 'parse'}
FIRST_STAGE_WRITING = {'parse': 'MGVTON_PARSE', 'warp-mask': 'MGVTON_GMM', 'try-on': 'MGVTON_WARP'}


def folder_of(layout, kind):
    return layout.tryon_dir if kind == 'try-on' else layout.results.kind_dir(kind)


def multi_pose_metric_results(args, layout, triplets, metrics, notes, device):
    """({metric: result}, per-triplet scores) of the multi-pose metrics; a metric whose result folder is absent
    (MGVTON_PARSE writes parse/ only, MGVTON_GMM no try-on/) is unavailable, saying which stage writes it."""
    results, scores = {}, {triplet_key(t): {} for t in triplets}
    present = {}
    for metric in metrics:
        kind = MULTI_POSE_FOLDERS[metric]
        folder = folder_of(layout, kind)
        if not folder.is_dir():
            results[metric] = {'unavailable': f'no {folder}: test.py of --stage {FIRST_STAGE_WRITING[kind]} or a later '
                                              f'MG-VTON stage writes {kind}/ (pass its checkpoint\'s file name as '
                                              f'--mgvton_checkpoint_name)'}
            continue
        if kind not in present:
            path_of = {'try-on': layout.tryon, 'warp-mask': layout.warp_mask, 'parse': layout.parse}[kind]
            present[kind] = [t for (t,) in present_pairs([(t,) for t in triplets], path_of, f'{kind} results of '
                             f'{args.triplets}', multi_pose_command(args), args.allow_missing, notes, triplet_key)]
    cpu_metrics = [m for m in metrics if m not in ('lpips', 'is', 'fid') and m not in results]
    for kind in dict.fromkeys(MULTI_POSE_FOLDERS[m] for m in cpu_metrics):
        kind_metrics = [m for m in cpu_metrics if MULTI_POSE_FOLDERS[m] == kind]
        score = partial(score_triplet, layout=layout, metrics=kind_metrics, mask_threshold=args.mask_threshold,
                        cloth_labels=args.cloth_labels)
        confusion = np.zeros((NUM_LIP_LABELS, NUM_LIP_LABELS), np.int64)
        for key, row, triplet_confusion in parallel_map(score, present[kind], args.workers, '/'.join(kind_metrics)):
            scores[key].update(row)
            if triplet_confusion is not None:
                confusion += np.asarray(triplet_confusion)   # parallel_map hands arrays back as tensors
        for metric in kind_metrics:
            if metric in SSIM_IMPLEMENTATIONS:
                results[metric] = {**aggregate(scores, metric), 'implementation': SSIM_IMPLEMENTATIONS[metric]()}
            elif metric == 'iou':
                results[metric] = {**aggregate(scores, metric), 'implementation': implementation(
                    'numpy', mask_threshold=args.mask_threshold, cloth_labels=list(args.cloth_labels),
                    target="person B's cloth region", aggregate='mean of per-triplet IoU', both_masks_empty=1.0)}
        if kind == 'parse' and not present[kind]:   # --allow_missing, and none there
            for metric in kind_metrics:
                results[metric] = {'unavailable': f'no parse results of {args.triplets} to score'}
        elif kind == 'parse':
            accuracy, miou = parse_scores(confusion)
            counted = {'num_images': len(present[kind]), 'implementation': implementation(
                'numpy', labels=f'LIP 0-{NUM_LIP_LABELS - 1}', truth="person B's parse",
                aggregate='over all pixels of the run (mean IoU: of the classes in truth or prediction)')}
            for metric, value in (('parse_accuracy', accuracy), ('parse_miou', miou)):
                if metric in kind_metrics:
                    results[metric] = {'value': value, **counted}
    tryons = present.get('try-on', [])
    tryon_paths = [layout.tryon(t) for t in tryons]
    if 'lpips' in metrics and 'lpips' not in results:
        def build_scorer(alexnet_state_dict):
            return LpipsScorer(build_lpips_model(alexnet_state_dict), device, args.batch_size, args.workers)

        def compute_lpips(scorer):
            distances = scorer.score_files(tryon_paths, [layout.data.photo(t.target) for t in tryons])
            for triplet, distance in zip(tryons, distances):
                scores[triplet_key(triplet)]['lpips'] = distance
            return {**aggregate(scores, 'lpips'), 'implementation': lpips_implementation(),
                    'weights': [describe_weights(lpips_linear_weights_path())]}
        results['lpips'] = with_weights('lpips', args.lpips_weights, build_scorer, compute_lpips, notes)
    if 'is' in metrics and 'is' not in results:
        def compute_is(network):
            if len(tryon_paths) < args.is_splits:
                raise MetricUnavailable(f'{len(tryon_paths)} try-on images, fewer than --is_splits {args.is_splits}')
            probs = network_outputs(network, tryon_paths, device, args.batch_size, args.workers, 'IS')
            return {**inception_score_result(probs, args.is_splits), 'implementation': is_implementation()}
        results['is'] = with_weights('is', args.inception_weights, InceptionClassifier, compute_is, notes)
    if 'fid' in metrics and 'fid' not in results:
        def compute_fid(network):
            real_paths = layout.data.real_images(triplets)
            fake = network_outputs(network, tryon_paths, device, args.batch_size, args.workers, 'FID try-on')
            real = network_outputs(network, real_paths, device, args.batch_size, args.workers, 'FID persons')
            return {**fid_result(fake, real), 'real_images': "the listed triplets' person B photos",
                    'implementation': fid_implementation()}
        results['fid'] = with_weights('fid', args.fid_weights, FidInception, compute_fid, notes)
    return results, scores


def evaluate_multi_pose(args):
    """The report of a multi-pose run (--triplets): the metrics of --metrics on the --datamode triplets of the
    list, each try-on against person B's photo (see multi_pose_metric_results)."""
    triplets = read_triplets(Path(args.dataroot) / args.triplets, args.datamode)
    results_layout = ResultLayout(args.result_dir, args.mgvton_checkpoint_name, args.datamode)
    if not results_layout.folder.is_dir() and not args.tryon_dir:
        raise DataError(f'no results in {results_layout.folder}: make them with {multi_pose_command(args)}, or pass '
                        f'the --result_dir and --mgvton_checkpoint_name of test.py\'s run')
    layout = MultiPoseLayout(MPVLayout(Path(args.dataroot)), results_layout,
                             Path(args.tryon_dir) if args.tryon_dir else results_layout.kind_dir('try-on'))
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    notes = []
    results, scores = multi_pose_metric_results(args, layout, triplets, args.metrics, notes, device)
    return {
        'protocol': MULTI_POSE_PROTOCOL,
        'settings': {'dataroot': args.dataroot, 'datamode': args.datamode, 'triplets': args.triplets,
                     'results': str(results_layout.folder), 'tryon_dir': str(layout.tryon_dir),
                     'metrics': list(args.metrics), 'device': str(device)},
        'metrics': {metric: results[metric] for metric in MULTI_POSE_METRICS if metric in results},
        'notes': notes,
        'per_triplet': scores,
        'subsets': {},
        'output': args.out or str(layout.tryon_dir.parent / 'metrics.json'),
    }


# ----------------------------------------------------------------------------------------------------
# Table
# ----------------------------------------------------------------------------------------------------

def format_cell(metric, value):
    """A table cell: IS as 'mean ± std', FID with 2 decimals, the others with 4."""
    if isinstance(value, (tuple, list)):
        return f'{value[0]:.4f} ± {value[1]:.4f}'
    return f'{value:.2f}' if metric == 'fid' else f'{value:.4f}'


def result_cells(results, columns=TABLE_COLUMNS):
    """Table cells of {metric: result}: a value, 'n/a' (asked for but unavailable) or '-' (not asked for)."""
    cells = {}
    for metric, _ in columns:
        result = results.get(metric)
        if result is None:
            cells[metric] = '-'
        elif 'unavailable' in result or result['value'] is None:
            cells[metric] = 'n/a'
        else:
            value = (result['value'], result['std']) if metric == 'is' else result['value']
            cells[metric] = format_cell(metric, value)
    return cells


def subset_rows(report):
    """(name, cells) of each difficulty subset that was computed, named with its size in each pair list."""
    rows = []
    for subset, entry in report['subsets'].items():
        if 'unavailable' not in entry:
            size = ', '.join(f'{count} {name}' for name, count in entry['size'].items())
            rows.append((f'  {subset} ({size})', result_cells(entry['metrics'])))
    return rows


def published_rows(published=PUBLISHED):
    """(name, cells) of CP-VTON+ Table 1's rows; '-' where the paper has no value."""
    return [(name, {metric: format_cell(metric, row[metric]) if metric in row else '-'
                    for metric, _ in TABLE_COLUMNS}) for name, row in published.items()]


def format_table(report):
    """The table printed to the terminal: this run and its difficulty subsets beside CP-VTON+ Table 1 (a
    multi-pose run: alone, with the parse columns), then counts and notes."""
    multi_pose = report['protocol'] == MULTI_POSE_PROTOCOL
    columns = MULTI_POSE_COLUMNS if multi_pose else TABLE_COLUMNS
    rows = [] if multi_pose else published_rows()
    rows.append(('this run', result_cells(report['metrics'], columns)))
    rows += subset_rows(report)
    header = ['method'] + [title for _, title in columns]
    lines = [header] + [[name] + [cells[metric] for metric, _ in columns] for name, cells in rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ['  '.join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, '  '.join('-' * width for width in widths))
    text.append('higher is better: IoU, SSIM, SSIM-M, IS; lower: LPIPS, FID. SSIM: skimage, per channel; '
                'SSIM-M: MATLAB ssim on the RGB arrays,')
    text.append('as CP-VTON+ computed the paper values (see evaluate.py). n/a: asked for but unavailable; '
                '-: not computed.')
    if multi_pose:
        text.append("multi-pose: each try-on against person B's photo (the target pose); IoU: the warped mask against "
                    "person B's cloth region; parse acc, mIoU (higher is better): stage I's parse against person B's.")
    if subset_rows(report):
        definitions = [f'{subset}: {entry["definition"]["rule"]} ({entry["definition"]["of"]})'
                       for subset, entry in report['subsets'].items()]
        text.append(f'subsets of this run\'s pairs (paired: IoU, SSIM, LPIPS; unpaired: IS, FID): '
                    f'{"; ".join(definitions)}')
    counts = []
    for metric, title in columns:
        result = report['metrics'].get(metric)
        if result is None:
            continue
        if 'unavailable' in result:
            text.append(f'{title} n/a: {result["unavailable"]}')
        else:
            real = f' (vs {result["num_real_images"]} person photos)' if 'num_real_images' in result else ''
            counts.append(f'{title} {result["num_images"]}{real}')
    if counts:
        text.append('images scored: ' + ', '.join(counts))
    text += [f'note: {note}' for note in report['notes']]
    return '\n'.join(text)


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------

def metric_list(text):
    metrics = [name.strip().lower() for name in text.split(',') if name.strip()]
    unknown = [name for name in metrics if name not in MULTI_POSE_METRICS]
    if unknown or not metrics:
        raise argparse.ArgumentTypeError(f'unknown metric(s) {unknown}; choose from {",".join(ALL_METRICS)} '
                                         f'(with --triplets also {",".join(PARSE_METRICS)})')
    return tuple(dict.fromkeys(metrics))


def add_threshold_arguments(parser):
    """The difficulty subsets' thresholds (shared with smart_show_test_result.py's worst cases)."""
    parser.add_argument('--textured_threshold', type=flags.float_at_least(0), default=TEXTURED_THRESHOLD,
                        help="subset 'textured': in-shop cloths whose texture energy is above this "
                             "(default: %(default)s; see subsets.cloth_texture_energy)")
    parser.add_argument('--occluded_threshold', type=flags.share, default=OCCLUDED_THRESHOLD,
                        help="subset 'occluded': persons whose arms cover more than this fraction of the torso "
                             "(default: %(default)s; see subsets.torso_occlusion)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Score a CP-VTON run with the protocol of CP-VTON+ Table 1 '
                                                 '(see the docstring of evaluate.py).',
                                     formatter_class=flags.RangeHelpFormatter)
    parser.add_argument('--metrics', type=metric_list,
                        help=f'comma-separated subset of {",".join(ALL_METRICS)}, with --triplets also '
                             f'{",".join(PARSE_METRICS)} (default: all)')
    parser.add_argument('--dataroot', default='data', help='(default: %(default)s)')
    parser.add_argument('--datamode', default='test', help='(default: %(default)s)')
    parser.add_argument('--paired_list', default='test_pairs_paired.txt',
                        help='same-cloth pairs under --dataroot, for IoU, SSIM and LPIPS; derived from '
                             '--unpaired_list by VITON naming if absent (default: %(default)s)')
    parser.add_argument('--unpaired_list', default='test_pairs.txt',
                        help='pairs under --dataroot for IS and FID (default: %(default)s)')
    parser.add_argument('--result_dir', default='result', help="test.py's --result_dir (default: %(default)s)")
    parser.add_argument('--gmm_checkpoint_name', default='gmm_final.pth',
                        help="file name of GMM's checkpoint, which names test.py's result folder "
                             "(default: %(default)s)")
    parser.add_argument('--tom_checkpoint_name', default='tom_final.pth',
                        help="file name of TOM's checkpoint, which names test.py's result folder "
                             "(default: %(default)s)")
    parser.add_argument('--tryon_dir', help='try-on folder (default: <result_dir>/<tom_checkpoint_name>/'
                                            '<datamode>/try-on)')
    parser.add_argument('--warp_mask_dir', help='warp-mask folder (default: <result_dir>/<gmm_checkpoint_name>/'
                                                '<datamode>/warp-mask)')
    parser.add_argument('--allow_missing', action='store_true',
                        help='score the listed pairs whose results exist instead of failing on missing ones')
    parser.add_argument('--mask_threshold', type=flags.int_in(1, 255), default=MASK_THRESHOLD,
                        help='IoU: warp-mask pixels >= this are mask (default: %(default)s)')
    parser.add_argument('--cloth_labels', type=flags.lip_labels, default=CLOTH_LABELS,
                        help='IoU: comma-separated LIP labels of the cloth region (default: 5,6,7)')
    parser.add_argument('--is_splits', type=flags.positive_int, default=10,
                        help='Inception Score splits (default: %(default)s)')
    add_threshold_arguments(parser)
    for spec in WEIGHTS.values():
        parser.add_argument(spec.flag, help=f'{spec.description} (default: <torch hub dir>/checkpoints/'
                                            f'{spec.file_name})')
    parser.add_argument('--device', type=flags.torch_device, help='torch device (default: cuda if available, else cpu)')
    parser.add_argument('--batch_size', type=flags.positive_int, default=32,
                        help='images per network batch (default: %(default)s)')
    # More workers than cores only slows down (and makes torch warn).
    parser.add_argument('--workers', type=flags.non_negative_int, default=min(4, os.cpu_count() or 1),
                        help='processes that load images and score pairs, 0: this one (default: %(default)s, at '
                             'most the cores)')
    parser.add_argument('--out', help='JSON file (default: metrics.json beside the try-on folder)')
    parser.add_argument('--write_paired_list', action='store_true',
                        help='only write --paired_list, derived from --unpaired_list, where it is absent, and '
                             'exit (what the step scripts do before testing)')
    parser.add_argument('--triplets',
                        help='score MG-VTON results (MPV layout, --dataroot the MPV folder, --datamode its split): '
                             'the triplet list under --dataroot, e.g. all_poseA_poseB_clothes_0607.txt')
    parser.add_argument('--mgvton_checkpoint_name', default='mgvton_refine_final.pth',
                        help="with --triplets: file name of the checkpoint test.py ran, which names its result "
                             "folder (parse/, warp-mask/, try-on/) (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.device is not None:
        flags.check_device_present(parser, args.device)
    if args.metrics is None:
        args.metrics = MULTI_POSE_METRICS if args.triplets else ALL_METRICS
    parse_metrics = [metric for metric in args.metrics if metric in PARSE_METRICS]
    viton_only = [f'--{name}' for name in ('paired_list', 'unpaired_list', 'gmm_checkpoint_name', 'tom_checkpoint_name',
                                           'warp_mask_dir') if getattr(args, name) != parser.get_default(name)]
    if args.triplets and viton_only:
        parser.error(f'{", ".join(viton_only)}: the VITON layout\'s; with --triplets the results are those of '
                     f'--mgvton_checkpoint_name (--tryon_dir for another try-on folder)')
    if parse_metrics and not args.triplets:
        parser.error(f'--metrics {",".join(parse_metrics)} score MG-VTON\'s synthesised parses: pass --triplets')
    return args


def write_json(report, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + '\n')


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.write_paired_list:
            return write_paired_list(args)
        report = evaluate_multi_pose(args) if args.triplets else evaluate(args)
    except DataError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    print(format_table(report))
    write_json(report, report['output'])
    print(f'wrote {report["output"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
