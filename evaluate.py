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
            CP-VTON+ computed its SSIM this way (see ``matlab_ssim_map``), so the paper's SSIM values are
            shown in this column.
    LPIPS   lpips 0.1.4, AlexNet trunk, linear layers v0.1, inputs in [-1,1]; mean over pairs.
Unpaired pairs (``--unpaired_list``, default test_pairs.txt):
    IS      torchvision Inception-v3 (ImageNet), 299x299 bilinear, softmax over 1000 classes, 10 splits,
            mean and standard deviation over the splits.
    FID     pytorch-fid's Inception (pool3, 2048 features) of the try-on images against every person photo
            in <dataroot>/<datamode>/image/.

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
    <warp_mask_dir>/<pair>   default <result_dir>/<gmm_checkpoint_name>/<datamode>/warp-mask
    <tryon_dir>/<pair>       default <result_dir>/<tom_checkpoint_name>/<datamode>/try-on

Pretrained weights are never downloaded and never replaced by random ones. Each is read from the flag's
path, else from torch hub's cache ``<torch.hub.get_dir()>/checkpoints/`` (``$TORCH_HOME/hub/checkpoints``,
by default ~/.cache/torch/hub/checkpoints); a metric whose file is in neither place is reported as
unavailable, with the file name and where to put it. IoU, SSIM and SSIM-M need no weights.

Output: a table on stdout (this run beside the two rows of CP-VTON+ Table 1) and a JSON file, by default
``metrics.json`` beside the try-on folder (``result/tom_final.pth/test/metrics.json``; beside the
warp-mask folder when only IoU is asked for), holding every metric with its number of images,
implementation and weights file (path and sha256), and the per-pair scores.
"""
import argparse
import hashlib
import json
import os
import pickle
import re
import sys
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import lpips
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image
from scipy import ndimage
from scipy.special import rel_entr
from skimage.metrics import structural_similarity
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from cp_dataset import CLOTH_LABELS, DataError, load_parse_labels, pair_key, parse_file_name, read_pairs

PAIRED_METRICS = ('iou', 'ssim', 'ssim_matlab', 'lpips')   # need the same-cloth pairs
TRYON_PAIR_METRICS = ('ssim', 'ssim_matlab', 'lpips')      # ... and their try-on results
UNPAIRED_METRICS = ('is', 'fid')
ALL_METRICS = PAIRED_METRICS + UNPAIRED_METRICS
MASK_THRESHOLD = 128     # CP-VTON binarises its JPEG masks with >= 128
INCEPTION_SIZE = 299     # Inception-v3's input side
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')

# The settings under which skimage's SSIM follows Wang et al. 2004 (and MATLAB, for one 2-D channel).
SKIMAGE_SSIM_SETTINGS = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
MATLAB_SSIM_SIGMA = 1.5
MATLAB_SSIM_RADIUS = 5   # MATLAB: ceil(3 * sigma)
MATLAB_SSIM_C1 = (0.01 * 255) ** 2   # MATLAB's defaults for uint8 input (DynamicRange 255)
MATLAB_SSIM_C2 = (0.03 * 255) ** 2

# CP-VTON+ (CVPRW 2020) Table 1, VITON test set at 256x192. Its SSIM was MATLAB's, so it is listed as
# ssim_matlab. FID is not reported there.
PUBLISHED = {
    'CP-VTON (paper)': {'iou': 0.7898, 'ssim_matlab': 0.7798, 'lpips': 0.1397, 'is': (2.7809, 0.0594)},
    'CP-VTON+ (paper)': {'iou': 0.8425, 'ssim_matlab': 0.8163, 'lpips': 0.1144, 'is': (3.1048, 0.1068)},
}
TABLE_COLUMNS = (('iou', 'IoU'), ('ssim', 'SSIM'), ('ssim_matlab', 'SSIM-M'), ('lpips', 'LPIPS'),
                 ('is', 'IS'), ('fid', 'FID'))


class MetricUnavailable(Exception):
    """A metric cannot be computed here (weights file or package missing); the message says how to fix it."""


class MissingResults(DataError):
    """Result images of listed pairs are absent; the message names the command that makes them."""


# ----------------------------------------------------------------------------------------------------
# Metric math: small functions on numpy arrays
# ----------------------------------------------------------------------------------------------------

def ssim_score(image, reference):
    """SSIM of two uint8 RGB images [H,W,3] (0..255): skimage's per-channel SSIM, averaged over channels.

    Each channel's SSIM map excludes a 5-pixel border (skimage crops the filter radius)."""
    return float(structural_similarity(image, reference, channel_axis=-1, **SKIMAGE_SSIM_SETTINGS))


def matlab_ssim_map(image, reference):
    """Local SSIM at every element, as MATLAB's ``[~, map] = ssim(A, ref)`` computes it for uint8 input.

    MATLAB filters with a Gaussian of sigma 1.5 and radius ceil(3 * sigma) over *all* axes of the array,
    with replicate padding, and keeps the border. So an H x W x 3 RGB array is a 3-D volume whose
    11x11x11 window also mixes neighbouring channels, and a 2-D array is an ordinary grayscale image.
    MATLAB's normalised 3-D kernel is the product of normalised 1-D ones (none of its weights is small
    enough for MATLAB to zero), so a separable filter gives the same numbers.

    image, reference: uint8 arrays of one shape, [H,W] or [H,W,3]. Returns float64 of that shape.
    """
    x = np.asarray(image, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)

    def weighted_mean(values):
        return ndimage.gaussian_filter(values, sigma=MATLAB_SSIM_SIGMA, mode='nearest',
                                       truncate=MATLAB_SSIM_RADIUS / MATLAB_SSIM_SIGMA)

    mu_x, mu_y = weighted_mean(x), weighted_mean(y)
    var_x = weighted_mean(x * x) - mu_x ** 2
    var_y = weighted_mean(y * y) - mu_y ** 2
    cov_xy = weighted_mean(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + MATLAB_SSIM_C1) * (2 * cov_xy + MATLAB_SSIM_C2)
    denominator = (mu_x ** 2 + mu_y ** 2 + MATLAB_SSIM_C1) * (var_x + var_y + MATLAB_SSIM_C2)
    return numerator / denominator


def matlab_ssim_score(image, reference):
    """MATLAB's ``ssim(A, ref)`` for uint8 arrays [H,W] or [H,W,3]: the mean of ``matlab_ssim_map``."""
    return float(matlab_ssim_map(image, reference).mean())


def mask_iou(pred, target):
    """Intersection over union of two boolean masks of one shape. Both empty counts as full agreement (1.0)."""
    pred, target = np.asarray(pred, dtype=bool), np.asarray(target, dtype=bool)
    union = np.logical_or(pred, target).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, target).sum() / union)


def inception_score_from_probs(probs, splits=10):
    """Inception Score of class probabilities [N,K] (rows sum to 1): (mean, std) of exp(E_x KL(p(y|x) || p(y)))
    over `splits` consecutive parts, split as the original implementation (Salimans et al.) does."""
    probs = np.asarray(probs, dtype=np.float64)
    count = len(probs)
    if count < splits:
        raise ValueError(f'the Inception Score needs at least {splits} images (one per split), got {count}')
    scores = []
    for split in range(splits):
        part = probs[split * count // splits:(split + 1) * count // splits]
        marginal = part.mean(axis=0, keepdims=True)
        kl_divergences = rel_entr(part, marginal).sum(axis=1)   # rel_entr: 0 where p(y|x) = 0
        scores.append(np.exp(kl_divergences.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def symmetric_sqrt(matrix):
    """Square root of a symmetric positive semi-definite matrix; round-off negative eigenvalues count as 0."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Fréchet distance of N(mu1, sigma1) and N(mu2, sigma2):
    |mu1 - mu2|^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^(1/2)).

    sigma1 sigma2 has the eigenvalues of the symmetric PSD matrix S = sigma1^(1/2) sigma2 sigma1^(1/2), so the
    trace of its square root is the sum of the square roots of S's eigenvalues: real by construction, with
    no complex sqrtm and no epsilon added to singular covariances (as they are with fewer images than
    features)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    sqrt_sigma1 = symmetric_sqrt(sigma1)
    product = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)   # symmetrise away round-off
    trace_sqrt_product = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    difference = mu1 - mu2
    return float(difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product)


def fid_from_features(features1, features2):
    """FID of two feature sets [N1,D] and [N2,D]: Fréchet distance of their means and (unbiased) covariances,
    as pytorch-fid computes them."""
    features1, features2 = np.asarray(features1, dtype=np.float64), np.asarray(features2, dtype=np.float64)
    if min(len(features1), len(features2)) < 2:
        raise ValueError('FID needs at least 2 images in each set')
    return frechet_distance(features1.mean(axis=0), np.cov(features1, rowvar=False),
                            features2.mean(axis=0), np.cov(features2, rowvar=False))


# ----------------------------------------------------------------------------------------------------
# Reading the run's files
# ----------------------------------------------------------------------------------------------------

def open_image(path):
    if not Path(path).is_file():
        raise DataError(f'image not found: {path}')
    return Image.open(path)


def read_rgb(path):
    """An image file as uint8 RGB [H,W,3] (0..255), writable (torch.from_numpy wants that)."""
    return np.array(open_image(path).convert('RGB'))


def read_binary_mask(path, threshold=MASK_THRESHOLD):
    """A mask image (L or RGB JPEG, 0..255) as bool [H,W]: pixel >= threshold."""
    return np.asarray(open_image(path).convert('L')) >= threshold


def read_cloth_region(parse_path, labels=CLOTH_LABELS):
    """The cloth region of a LIP label map as bool [H,W], read by the dataset's own parse loader
    (so a colour rendering in the LIP palette is mapped back to labels, as in training)."""
    if not Path(parse_path).is_file():
        raise DataError(f'image not found: {parse_path}')
    return np.isin(load_parse_labels(str(parse_path), Image.open(parse_path).size), labels)


@dataclass(frozen=True)
class RunLayout:
    """Where a run's inputs and results lie (see the module docstring)."""
    dataroot: Path
    datamode: str
    tryon_dir: Path
    warp_mask_dir: Path

    @property
    def data_dir(self):
        return self.dataroot / self.datamode

    def person_image(self, im_name):
        return self.data_dir / 'image' / im_name

    def parse_map(self, im_name):
        return self.data_dir / 'image-parse' / parse_file_name(im_name)

    def tryon(self, im_name, c_name):
        return self.tryon_dir / pair_key(im_name, c_name)

    def warp_mask(self, im_name, c_name):
        return self.warp_mask_dir / pair_key(im_name, c_name)

    def real_images(self):
        """Every person photo of the split (FID's real set), sorted by name."""
        folder = self.data_dir / 'image'
        if not folder.is_dir():
            raise DataError(f'person image folder not found: {folder}')
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class ImageFiles(Dataset):
    """Items are tuples of image paths; an item is the tuple of those images as uint8 RGB tensors [3,H,W]."""

    def __init__(self, path_tuples):
        self.path_tuples = list(path_tuples)

    def __len__(self):
        return len(self.path_tuples)

    def __getitem__(self, index):
        return tuple(torch.from_numpy(read_rgb(path)).permute(2, 0, 1) for path in self.path_tuples[index])


def image_batches(path_tuples, batch_size, workers, description):
    """Batches of ImageFiles items: lists of uint8 tensors [B,3,H,W], one per path of the tuples."""
    loader = DataLoader(ImageFiles(path_tuples), batch_size=batch_size, num_workers=workers)
    return tqdm(loader, desc=description, unit='batch')


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


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


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
    """The v0.1 AlexNet linear-layer weights that ship inside the lpips package."""
    return Path(lpips.__file__).parent / 'weights' / 'v0.1' / 'alex.pth'


def build_lpips_model(alexnet_state_dict):
    """LPIPS v0.1 with an AlexNet trunk, from torchvision AlexNet weights (a state dict) and lpips's own
    linear layers.

    lpips would fetch the trunk from the internet; instead it is built empty (pnet_rand=True) and filled from
    the state dict. lpips keeps torchvision's layer indices inside its slices, so 'features.3.weight' is
    'slice2.3.weight'.
    """
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
        # aux_logits=True: the released file holds the auxiliary head, and strict loading checks every key.
        self.net = torchvision.models.inception_v3(weights=None, aux_logits=True, transform_input=False,
                                                   init_weights=False)
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
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, transform_input=False,
                                          init_weights=False)
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
    """{metric: score} of one same-cloth pair for `metrics` among 'iou', 'ssim', 'ssim_matlab'."""
    row = {}
    if 'ssim' in metrics or 'ssim_matlab' in metrics:
        tryon, truth = read_rgb(layout.tryon(im_name, c_name)), read_rgb(layout.person_image(im_name))
        if tryon.shape != truth.shape:
            raise DataError(f'{layout.tryon(im_name, c_name)}: size {tryon.shape[1]}x{tryon.shape[0]}, but its '
                            f'ground truth {layout.person_image(im_name)} is {truth.shape[1]}x{truth.shape[0]}')
        if 'ssim' in metrics:
            row['ssim'] = ssim_score(tryon, truth)
        if 'ssim_matlab' in metrics:
            row['ssim_matlab'] = matlab_ssim_score(tryon, truth)
    if 'iou' in metrics:
        warp_mask = read_binary_mask(layout.warp_mask(im_name, c_name), mask_threshold)
        cloth_region = read_cloth_region(layout.parse_map(im_name), cloth_labels)
        if warp_mask.shape != cloth_region.shape:
            raise DataError(f'{layout.warp_mask(im_name, c_name)}: size {warp_mask.shape[1]}x{warp_mask.shape[0]}, '
                            f'but the parse map {layout.parse_map(im_name)} is '
                            f'{cloth_region.shape[1]}x{cloth_region.shape[0]}')
        row['iou'] = mask_iou(warp_mask, cloth_region)
    return row


class PairScoreJobs(Dataset):
    """Item i is (pair key, score_pair(...)) of pair i, so that a DataLoader's workers score pairs in parallel."""

    def __init__(self, layout, pairs, metrics, mask_threshold, cloth_labels):
        self.layout, self.pairs, self.metrics = layout, list(pairs), tuple(metrics)
        self.mask_threshold, self.cloth_labels = mask_threshold, cloth_labels

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, index):
        im_name, c_name = self.pairs[index]
        return pair_key(im_name, c_name), score_pair(self.layout, im_name, c_name, self.metrics,
                                                     self.mask_threshold, self.cloth_labels)


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
    cpu_metrics = [metric for metric in metrics if metric != 'lpips']
    if cpu_metrics:
        jobs = PairScoreJobs(layout, pairs, cpu_metrics, mask_threshold, cloth_labels)
        # batch_size=None: items come back one by one, uncollated, in order
        for key, row in tqdm(DataLoader(jobs, batch_size=None, num_workers=workers), total=len(jobs),
                             desc='/'.join(cpu_metrics), unit='pair'):
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
        if (Path(cloth_dir) / own_cloth).is_file():
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
    source = read_list(args.dataroot, args.unpaired_list, '--paired_list or --unpaired_list')
    pairs = derive_paired_pairs(source, layout.data_dir / 'cloth')
    persons = len({im_name for im_name, _ in source})
    notes.append(f'{path} not found: derived {len(pairs)} same-cloth pairs from the persons of '
                 f'{args.unpaired_list} (person NNNNNN_0.jpg wears cloth NNNNNN_1.jpg); '
                 f'{persons - len(pairs)} of {persons} persons skipped (no such cloth in {layout.data_dir / "cloth"})')
    if not pairs:
        raise DataError(f'{path} not found, and no same-cloth pair could be derived from {args.unpaired_list}')
    return pairs, {'path': str(path), 'derived': True, 'derived_from': args.unpaired_list, 'pairs': len(pairs)}


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


def present_pairs(pairs, path_of, what, command, allow_missing, notes):
    """The pairs whose result file exists. Missing ones fail the run unless `allow_missing` (then: a note)."""
    missing = [pair for pair in pairs if not path_of(*pair).is_file()]
    if not missing:
        return list(pairs)
    folder = path_of(*missing[0]).parent
    examples = ', '.join(pair_key(*pair) for pair in missing[:3])
    message = (f'{len(missing)} of {len(pairs)} {what} are missing from {folder} (e.g. {examples}); '
               f'make them with: {command}')
    if not allow_missing:
        raise MissingResults(f'{message}. Or pass --allow_missing to score the {len(pairs) - len(missing)} '
                             f'that exist.')
    notes.append(f'--allow_missing: {message}')
    missing = set(missing)
    return [pair for pair in pairs if pair not in missing]


def package_version(distribution):
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def implementation(package, **settings):
    return {'package': package, 'version': package_version(package), 'settings': settings}


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
        merge_pair_scores(scores, per_pair_scores(layout, mask_pairs, ['iou'], args.mask_threshold,
                                                  args.cloth_labels, workers=args.workers))
        results['iou'] = {**aggregate(scores, 'iou'), 'implementation': implementation(
            'numpy', mask_threshold=args.mask_threshold, cloth_labels=list(args.cloth_labels),
            aggregate='mean of per-pair IoU', both_masks_empty=1.0)}
    if not tryon_metrics:
        return results, scores
    tryon_pairs = present_pairs(pairs, layout.tryon, f'TOM try-on results of {args.paired_list}',
                                producing_command(args, 'TOM', args.paired_list), args.allow_missing, notes)
    ssim_metrics = [metric for metric in tryon_metrics if metric != 'lpips']
    merge_pair_scores(scores, per_pair_scores(layout, tryon_pairs, ssim_metrics, workers=args.workers))
    if 'ssim' in metrics:
        results['ssim'] = {**aggregate(scores, 'ssim'), 'implementation': {
            **implementation('scikit-image', channel_axis=-1, input='uint8 RGB', aggregate='mean over pairs',
                             **SKIMAGE_SSIM_SETTINGS),
            'function': 'skimage.metrics.structural_similarity'}}
    if 'ssim_matlab' in metrics:
        results['ssim_matlab'] = {**aggregate(scores, 'ssim_matlab'), 'implementation': {
            **implementation('scipy', sigma=MATLAB_SSIM_SIGMA, radius=MATLAB_SSIM_RADIUS, padding='replicate',
                             window='3-D over H x W x RGB', border='kept', C1=MATLAB_SSIM_C1, C2=MATLAB_SSIM_C2,
                             aggregate='mean over pairs'),
            'function': 'evaluate.matlab_ssim_score (MATLAB ssim(A, ref) on uint8 RGB arrays)'}}
    if 'lpips' in metrics:
        def build_scorer(alexnet_state_dict):
            return LpipsScorer(build_lpips_model(alexnet_state_dict), device, args.batch_size, args.workers)

        def compute_lpips(scorer):
            merge_pair_scores(scores, per_pair_scores(layout, tryon_pairs, ['lpips'], lpips_scorer=scorer))
            return {**aggregate(scores, 'lpips'),
                    'implementation': implementation('lpips', net='alex', version='0.1', input_range=[-1, 1],
                                                     aggregate='mean over pairs'),
                    'weights': [describe_weights(lpips_linear_weights_path())]}
        results['lpips'] = with_weights('lpips', args.lpips_weights, build_scorer, compute_lpips, notes)
    return results, scores


def unpaired_metric_results(args, layout, metrics, notes, device):
    """{metric: result} for the requested unpaired metrics (IS, FID) on the unpaired list's try-on results."""
    pairs = read_list(args.dataroot, args.unpaired_list, '--unpaired_list')
    pairs = present_pairs(pairs, layout.tryon, f'TOM try-on results of {args.unpaired_list}',
                          producing_command(args, 'TOM', args.unpaired_list), args.allow_missing, notes)
    tryon_paths = [layout.tryon(*pair) for pair in pairs]
    results = {}
    if 'is' in metrics:
        def compute_is(network):
            if len(tryon_paths) < args.is_splits:
                raise MetricUnavailable(f'{len(tryon_paths)} try-on images, fewer than --is_splits {args.is_splits}')
            probs = network_outputs(network, tryon_paths, device, args.batch_size, args.workers, 'IS')
            mean, std = inception_score_from_probs(probs, args.is_splits)
            return {'value': mean, 'std': std, 'splits': args.is_splits, 'num_images': len(tryon_paths),
                    'implementation': implementation('torchvision', model='inception_v3', resize='bilinear 299x299',
                                                     input_range=[-1, 1], output='softmax over 1000 classes')}
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
            return {'value': fid_from_features(fake, real), 'num_images': len(fake), 'num_real_images': len(real),
                    'real_images': str(layout.data_dir / 'image'),
                    'implementation': implementation('pytorch-fid', features='pool3 (2048)',
                                                     resize='bilinear 299x299', input_range=[-1, 1],
                                                     frechet_distance='evaluate.frechet_distance (eigenvalues)')}
        results['fid'] = with_weights('fid', args.fid_weights, FidInception, compute_fid, notes)
    return results, {'path': str(Path(args.dataroot) / args.unpaired_list), 'pairs': len(pairs)}


def default_tryon_dir(args):
    return Path(args.result_dir) / args.tom_checkpoint_name / args.datamode / 'try-on'


def default_warp_mask_dir(args):
    return Path(args.result_dir) / args.gmm_checkpoint_name / args.datamode / 'warp-mask'


def output_path(args, layout, metrics):
    """--out, else metrics.json beside the try-on folder (beside the warp-mask folder for IoU alone)."""
    if args.out:
        return Path(args.out)
    results_folder = layout.warp_mask_dir if set(metrics) == {'iou'} else layout.tryon_dir
    return results_folder.parent / 'metrics.json'


def evaluate(args):
    """Compute the requested metrics. Returns the report (JSON-ready): settings, metrics, notes, per-pair scores."""
    metrics = args.metrics
    layout = RunLayout(Path(args.dataroot), args.datamode,
                       Path(args.tryon_dir) if args.tryon_dir else default_tryon_dir(args),
                       Path(args.warp_mask_dir) if args.warp_mask_dir else default_warp_mask_dir(args))
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    notes, results, lists, scores = [], {}, {}, {}
    if any(metric in metrics for metric in PAIRED_METRICS):
        pairs, lists['paired'] = paired_list(args, layout, notes)
        paired_results, scores = paired_metric_results(args, layout, pairs, metrics, notes, device)
        results.update(paired_results)
    if any(metric in metrics for metric in UNPAIRED_METRICS):
        unpaired_results, lists['unpaired'] = unpaired_metric_results(args, layout, metrics, notes, device)
        results.update(unpaired_results)
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
        'output': str(output_path(args, layout, metrics)),
    }


# ----------------------------------------------------------------------------------------------------
# Table
# ----------------------------------------------------------------------------------------------------

def format_cell(metric, value):
    """A table cell: IS as 'mean ± std', FID with 2 decimals, the others with 4."""
    if isinstance(value, (tuple, list)):
        return f'{value[0]:.4f} ± {value[1]:.4f}'
    return f'{value:.2f}' if metric == 'fid' else f'{value:.4f}'


def run_row(report):
    """This run's cells: a value, 'n/a' (asked for but unavailable) or '-' (not asked for)."""
    cells = {}
    for metric, _ in TABLE_COLUMNS:
        result = report['metrics'].get(metric)
        if result is None:
            cells[metric] = '-'
        elif 'unavailable' in result or result['value'] is None:
            cells[metric] = 'n/a'
        else:
            value = (result['value'], result['std']) if metric == 'is' else result['value']
            cells[metric] = format_cell(metric, value)
    return cells


def format_table(report):
    """The table printed to the terminal: this run beside CP-VTON+ Table 1, then counts and notes."""
    rows = [(name, {metric: format_cell(metric, row[metric]) if metric in row else '-'
                    for metric, _ in TABLE_COLUMNS}) for name, row in PUBLISHED.items()]
    rows.append(('this run', run_row(report)))
    header = ['method'] + [title for _, title in TABLE_COLUMNS]
    lines = [header] + [[name] + [cells[metric] for metric, _ in TABLE_COLUMNS] for name, cells in rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ['  '.join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, '  '.join('-' * width for width in widths))
    text.append('higher is better: IoU, SSIM, SSIM-M, IS; lower: LPIPS, FID. SSIM: skimage, per channel; '
                'SSIM-M: MATLAB ssim on the RGB arrays,')
    text.append('as CP-VTON+ computed the paper values (see evaluate.py). n/a: asked for but unavailable; '
                '-: not computed.')
    counts = []
    for metric, title in TABLE_COLUMNS:
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
    unknown = [name for name in metrics if name not in ALL_METRICS]
    if unknown or not metrics:
        raise argparse.ArgumentTypeError(f'unknown metric(s) {unknown}; choose from {",".join(ALL_METRICS)}')
    return tuple(dict.fromkeys(metrics))


def label_list(text):
    return tuple(int(label) for label in text.split(','))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Score a CP-VTON run with the protocol of CP-VTON+ Table 1 '
                                                 '(see the docstring of evaluate.py).')
    parser.add_argument('--metrics', type=metric_list, default=ALL_METRICS,
                        help=f'comma-separated subset of {",".join(ALL_METRICS)} (default: all)')
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
    parser.add_argument('--mask_threshold', type=int, default=MASK_THRESHOLD,
                        help='IoU: warp-mask pixels >= this are mask (default: %(default)s)')
    parser.add_argument('--cloth_labels', type=label_list, default=CLOTH_LABELS,
                        help='IoU: comma-separated LIP labels of the cloth region (default: 5,6,7)')
    parser.add_argument('--is_splits', type=int, default=10, help='Inception Score splits (default: %(default)s)')
    for spec in WEIGHTS.values():
        parser.add_argument(spec.flag, help=f'{spec.description} (default: <torch hub dir>/checkpoints/'
                                            f'{spec.file_name})')
    parser.add_argument('--device', help='torch device (default: cuda if available, else cpu)')
    parser.add_argument('--batch_size', type=int, default=32, help='(default: %(default)s)')
    # More workers than cores only slows down (and makes torch warn).
    parser.add_argument('--workers', type=int, default=min(4, os.cpu_count() or 1),
                        help='processes that load images and score pairs (default: %(default)s, at most the cores)')
    parser.add_argument('--out', help='JSON file (default: metrics.json beside the try-on folder)')
    return parser.parse_args(argv)


def write_json(report, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + '\n')


def main(argv=None):
    args = parse_args(argv)
    try:
        report = evaluate(args)
    except DataError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    print(format_table(report))
    write_json(report, report['output'])
    print(f'wrote {report["output"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
