"""CP-VTON networks: the Geometric Matching Module (GMM) and the Try-On Module (TOM).

State-dict keys, shapes and dtypes are those of the original CP-VTON code, so its
``gmm_final.pth`` / ``tom_final.pth`` load unchanged with ``strict=True``.

Conventions at the module boundaries (B = batch, H = fine_height, W = fine_width):
    GMM(agnostic [B,22,H,W] in [-1,1], cloth [B,3,H,W] in [-1,1])
        -> grid [B,H,W,2] in about [-1,1] (x, y for grid_sample), theta [B,2*grid_size**2] in [-1,1]
    TOM = UnetGenerator(25, 4, 6): input [B,25,H,W] = agnostic + warped cloth (CP-VTON+'s option:
        [B,26,H,W], + warped mask) -> raw output [B,4,H,W]; see `tom_tryon` for the rendered
        person, mask and try-on.
    grid_interval_consistency(grid [B,H,W,2]) -> scalar, CP-VTON+'s grid regulariser.
"""
import errno
import hashlib
import io
import os
import os.path as osp
import pickle
import shutil
import zipfile
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn import init
from torch.func import functional_call

VGG19_WEIGHTS_FILE = 'vgg19-dcbb9e9d.pth'  # torchvision's VGG19_Weights.IMAGENET1K_V1


# --------------------------------------------------------------------------- devices

def select_device(gpu_ids=''):
    """The device named by the original ``--gpu_ids`` flag.

    '' (default): the first GPU when one is available, else the CPU. '0' (or another
    index; the first of a comma-separated list): that GPU, an error without one.
    '-1': the CPU.
    """
    gpu_ids = str(gpu_ids).strip()
    if gpu_ids == '':
        return torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')
    first = gpu_ids.split(',')[0].strip()
    if int(first) < 0:
        return torch.device('cpu')
    if not torch.cuda.is_available():
        raise RuntimeError(f'--gpu_ids {gpu_ids} asks for a GPU, but torch sees none '
                           f'(torch {torch.__version__}, CUDA build: {torch.version.cuda}). '
                           f'Use --gpu_ids -1 to run on the CPU.')
    if int(first) >= torch.cuda.device_count():
        raise RuntimeError(f'--gpu_ids {gpu_ids}: GPU {first} does not exist; '
                           f'this machine has {torch.cuda.device_count()} GPU(s).')
    return torch.device(f'cuda:{first}')


def set_tf32(enabled):
    """TF32 convolutions and matrix products on Ampere and later GPUs: faster, with about 1e-3 relative
    error. Off unless asked for (--tf32): torch itself allows TF32 convolutions by default, which would
    make a 'float32' GPU run something else."""
    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled


# --------------------------------------------------------------------------- init

def weights_init_normal(m):
    """The original 'normal' initialisation: N(0, 0.02) for conv/linear, N(1, 0.02) for BN."""
    classname = m.__class__.__name__
    if classname.find('Conv') != -1 or classname.find('Linear') != -1:
        init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find('BatchNorm2d') != -1:
        init.normal_(m.weight.data, 1.0, 0.02)
        init.constant_(m.bias.data, 0.0)


# --------------------------------------------------------------------------- GMM parts

class FeatureExtraction(nn.Module):
    """Conv(4x4, stride 2) -> ReLU -> norm, n_layers+1 times, then two 3x3 convs at 512
    channels (the last without norm). Downsamples by 2**(n_layers+1)."""

    def __init__(self, input_nc, ngf=64, n_layers=3, norm_layer=nn.BatchNorm2d):
        super().__init__()
        model = [nn.Conv2d(input_nc, ngf, kernel_size=4, stride=2, padding=1), nn.ReLU(True), norm_layer(ngf)]
        for i in range(n_layers):
            in_ngf = min(2 ** i * ngf, 512)
            out_ngf = 2 ** (i + 1) * ngf if 2 ** i * ngf < 512 else 512
            model += [nn.Conv2d(in_ngf, out_ngf, kernel_size=4, stride=2, padding=1), nn.ReLU(True),
                      norm_layer(out_ngf)]
        model += [nn.Conv2d(512, 512, kernel_size=3, stride=1, padding=1), nn.ReLU(True), norm_layer(512)]
        model += [nn.Conv2d(512, 512, kernel_size=3, stride=1, padding=1), nn.ReLU(True)]
        self.model = nn.Sequential(*model)
        self.model.apply(weights_init_normal)

    def forward(self, x):
        return self.model(x)


class FeatureL2Norm(nn.Module):
    """Divide each feature vector (over channels) by its L2 norm (+1e-6 inside the root)."""

    def forward(self, feature):
        epsilon = 1e-6
        norm = torch.pow(torch.sum(torch.pow(feature, 2), 1) + epsilon, 0.5).unsqueeze(1).expand_as(feature)
        return torch.div(feature, norm)


class FeatureCorrelation(nn.Module):
    """[B,C,h,w] x [B,C,h,w] -> [B,h*w,h,w]; channel index = xA*h + yA (feature A transposed)."""

    def forward(self, feature_A, feature_B):
        b, c, h, w = feature_A.size()
        feature_A = feature_A.transpose(2, 3).contiguous().view(b, c, h * w)
        feature_B = feature_B.view(b, c, h * w).transpose(1, 2)
        feature_mul = torch.bmm(feature_B, feature_A)
        return feature_mul.view(b, h, w, h * w).transpose(2, 3).transpose(1, 2)


class FeatureRegression(nn.Module):
    """Correlation [B,input_nc,h,w] -> theta [B,output_dim] in [-1,1].

    ``feature_size`` is the (height, width) after the two stride-2 convs: (4, 3) at
    256x192, which gives the original Linear(768, 50).
    """

    def __init__(self, input_nc=512, output_dim=6, feature_size=(4, 3)):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(input_nc, 512, kernel_size=4, stride=2, padding=1), nn.BatchNorm2d(512), nn.ReLU(inplace=True),
            nn.Conv2d(512, 256, kernel_size=4, stride=2, padding=1), nn.BatchNorm2d(256), nn.ReLU(inplace=True),
            nn.Conv2d(256, 128, kernel_size=3, padding=1), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 64, kernel_size=3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        )
        self.linear = nn.Linear(64 * feature_size[0] * feature_size[1], output_dim)
        self.tanh = nn.Tanh()

    def forward(self, x):
        x = self.conv(x)
        # reshape, not view: the correlation tensor keeps channels-last strides through the
        # convs on current torch. The flatten order is still (C, H, W), as in the original.
        x = x.reshape(x.size(0), -1)
        return self.tanh(self.linear(x))


def tps_control_points(grid_size):
    """Regular grid_size x grid_size control points in [-1,1], x varying slowest: [N] and [N]."""
    axis_coords = np.linspace(-1, 1, grid_size)
    p_y, p_x = np.meshgrid(axis_coords, axis_coords)
    return (torch.tensor(p_x.reshape(-1), dtype=torch.float32),
            torch.tensor(p_y.reshape(-1), dtype=torch.float32))


def tps_radial_kernel(dist_squared):
    """U(r) = r^2 log r^2, with r^2 = 1 where it is 0 (so U = 0 there), as the original."""
    dist_squared = torch.where(dist_squared == 0, torch.ones_like(dist_squared), dist_squared)
    return dist_squared * torch.log(dist_squared)


def tps_inverse_system(p_x, p_y):
    """Inverse of the (N+3)x(N+3) TPS system matrix L = [[K, P], [P^T, 0]], in float32 as the original."""
    n = p_x.numel()
    K = tps_radial_kernel((p_x[:, None] - p_x[None, :]) ** 2 + (p_y[:, None] - p_y[None, :]) ** 2)
    P = torch.stack([torch.ones(n), p_x, p_y], dim=1)
    L = torch.cat([torch.cat([K, P], 1), torch.cat([P.t(), torch.zeros(3, 3)], 1)], 0)
    return torch.inverse(L)


class TpsGridGen(nn.Module):
    """Thin-plate-spline sampling grid from control-point offsets.

    theta [B, 2N] (N = grid_size**2; N x-offsets then N y-offsets, added to the regular
    control points) -> grid [B, out_h, out_w, 2] for grid_sample(align_corners=True).

    The TPS is linear in the displaced control points Q, so for the fixed output grid
    it is precomputed as one basis [H*W, N] = [U(p - P_k), 1, x, y] @ Li[:, :N] and
    applied as one matrix product. This gives the original's per-pixel [B,H,W,1,N]
    formulation to ~1e-6 at a fraction of its time and memory. The constants are
    non-persistent buffers: they follow .to(device) but are not in the state dict,
    exactly like the original's plain attributes.
    """

    def __init__(self, out_h=256, out_w=192, grid_size=3):
        super().__init__()
        self.out_h, self.out_w = out_h, out_w
        self.N = grid_size * grid_size
        p_x, p_y = tps_control_points(grid_size)
        li = tps_inverse_system(p_x, p_y)
        grid_x, grid_y = np.meshgrid(np.linspace(-1, 1, out_w), np.linspace(-1, 1, out_h))
        points_x = torch.tensor(grid_x, dtype=torch.float32).reshape(-1, 1)
        points_y = torch.tensor(grid_y, dtype=torch.float32).reshape(-1, 1)
        U = tps_radial_kernel((points_x - p_x[None, :]) ** 2 + (points_y - p_y[None, :]) ** 2)
        features = torch.cat([U, torch.ones_like(points_x), points_x, points_y], 1)   # [H*W, N+3]
        # float64 product, float32 result: the rounding of the sum no longer depends on H*W*N terms.
        basis = (features.double() @ li[:, :self.N].double()).float()                   # [H*W, N]
        self.register_buffer('basis', basis, persistent=False)
        self.register_buffer('control_points', torch.stack([p_x, p_y]), persistent=False)  # [2, N]

    def forward(self, theta):
        # Always float32, also under --amp: in bf16 the grid would move by up to ~1 pixel.
        with torch.autocast(device_type=theta.device.type, enabled=False):
            q = theta.float().reshape(theta.size(0), 2, self.N) + self.control_points   # [B, 2, N]
            grid = torch.matmul(self.basis, q.transpose(1, 2))                          # [B, H*W, 2]
        return grid.reshape(theta.size(0), self.out_h, self.out_w, 2)


class GMM(nn.Module):
    """Geometric Matching Module. ``opt`` needs fine_height, fine_width (multiples of 64) and grid_size;
    ``agnostic_nc``: the person representation's channels (CP-VTON's 22; WUTON's masked photo 3); ``cloth_nc``:
    the second input's (CP-VTON's cloth photo 3; MG-VTON matches masks and parses with it)."""

    def __init__(self, opt, agnostic_nc=22, cloth_nc=3):
        super().__init__()
        if opt.fine_height % 64 or opt.fine_width % 64:
            raise ValueError(f'GMM needs an image size that is a multiple of 64, got '
                             f'{opt.fine_height}x{opt.fine_width} (height x width)')
        feature_h, feature_w = opt.fine_height // 16, opt.fine_width // 16
        self.extractionA = FeatureExtraction(agnostic_nc, ngf=64, n_layers=3, norm_layer=nn.BatchNorm2d)
        self.extractionB = FeatureExtraction(cloth_nc, ngf=64, n_layers=3, norm_layer=nn.BatchNorm2d)
        self.l2norm = FeatureL2Norm()
        self.correlation = FeatureCorrelation()
        self.regression = FeatureRegression(input_nc=feature_h * feature_w, output_dim=2 * opt.grid_size ** 2,
                                            feature_size=(feature_h // 4, feature_w // 4))
        self.gridGen = TpsGridGen(opt.fine_height, opt.fine_width, grid_size=opt.grid_size)

    def forward(self, inputA, inputB):
        featureA = self.l2norm(self.extractionA(inputA))
        featureB = self.l2norm(self.extractionB(inputB))
        correlation = self.correlation(featureA, featureB)
        theta = self.regression(correlation)
        grid = self.gridGen(theta)
        return grid, theta


def grid_interval_consistency(grid):
    """CP-VTON+'s grid-interval-consistency (GIC) loss of a sampling grid [B,H,W,2] (x, y).

    At every interior point, |(|Gx(left) - Gx| - |Gx(right) - Gx|)| along each row for the x
    coordinate, plus the same along each column for y; summed and divided by B*H*W as in
    CP-VTON+, which weights it 40. Zero for any affine grid: it penalises uneven spacing of
    neighbouring grid points, the folds and local stretches that distort printed clothes.
    """
    batch, height, width, _ = grid.shape
    grid_x, grid_y = grid[..., 0], grid[..., 1]
    center_x, center_y = grid_x[:, 1:-1, 1:-1], grid_y[:, 1:-1, 1:-1]
    left, right = (grid_x[:, 1:-1, :-2] - center_x).abs(), (grid_x[:, 1:-1, 2:] - center_x).abs()
    up, down = (grid_y[:, :-2, 1:-1] - center_y).abs(), (grid_y[:, 2:, 1:-1] - center_y).abs()
    return ((left - right).abs() + (up - down).abs()).sum() / (batch * height * width)


def warp(image, grid, padding_mode):
    """Sample ``image`` [B,C,H,W] at ``grid`` [B,H,W,2] with align_corners=True, the behaviour of
    torch <= 1.2 that the original was trained with (its checkpoints depend on it)."""
    return F.grid_sample(image, grid, mode='bilinear', padding_mode=padding_mode, align_corners=True)


def warp_cloth(cloth, cloth_mask, grid):
    """The one warp used by training, testing and visualisation.

    cloth [B,3,H,W] in [-1,1] is sampled with border padding, cloth_mask [B,1,H,W] in
    {0,1} with zero padding, as in the original. Returns (warped_cloth, warped_mask).
    """
    return warp(cloth, grid, 'border'), warp(cloth_mask, grid, 'zeros')


# --------------------------------------------------------------------------- TOM (U-Net)

class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down (LeakyReLU, 4x4 stride-2 conv, norm), the inner block, then up
    (ReLU, bilinear x2 upsample, 3x3 conv, norm), concatenated with the input except at
    the outermost level. Layer order fixes the state-dict indices of the original."""

    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False,
                 norm_layer=nn.BatchNorm2d, use_dropout=False):
        super().__init__()
        self.outermost = outermost
        use_bias = norm_layer == nn.InstanceNorm2d
        if input_nc is None:
            input_nc = outer_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2, True)
        downnorm = norm_layer(inner_nc)
        uprelu = nn.ReLU(True)
        upnorm = norm_layer(outer_nc)
        upsample = nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False)
        upconv = nn.Conv2d(inner_nc if innermost else inner_nc * 2, outer_nc, kernel_size=3, stride=1, padding=1,
                           bias=use_bias)
        up = [uprelu, upsample, upconv, upnorm]
        if outermost:
            model = [downconv, submodule] + up
        elif innermost:
            model = [downrelu, downconv] + up
        else:
            model = [downrelu, downconv, downnorm, submodule] + up + ([nn.Dropout(0.5)] if use_dropout else [])
        self.model = nn.Sequential(*model)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net with ``num_downs`` downsamplings; TOM is UnetGenerator(25, 4, 6, ngf=64, norm_layer=nn.InstanceNorm2d)."""

    def __init__(self, input_nc, output_nc, num_downs, ngf=64, norm_layer=nn.BatchNorm2d, use_dropout=False):
        super().__init__()
        self.input_nc = input_nc
        unet_block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=None, norm_layer=norm_layer, innermost=True)
        for _ in range(num_downs - 5):
            unet_block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=unet_block, norm_layer=norm_layer,
                                                 use_dropout=use_dropout)
        unet_block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=unet_block, norm_layer=norm_layer)
        unet_block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=unet_block, norm_layer=norm_layer)
        unet_block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=unet_block, norm_layer=norm_layer)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=unet_block, outermost=True,
                                             norm_layer=norm_layer)

    def forward(self, input):
        return self.model(input)


TOM_INPUT_CHANNELS = 25   # agnostic (22) + warped cloth (3); CP-VTON+ adds the warped mask (26)


def build_tom(input_nc=TOM_INPUT_CHANNELS):
    """The Try-On Module as the original builds it (CP-VTON+: input_nc=26)."""
    return UnetGenerator(input_nc, 4, 6, ngf=64, norm_layer=nn.InstanceNorm2d)


def tom_tryon(outputs, warped_cloth):
    """The one try-on composition used by training, testing and visualisation.

    outputs [B,4,H,W] (raw TOM output), warped_cloth [B,3,H,W] in [-1,1] ->
    (p_rendered [B,3,H,W] in [-1,1], m_composite [B,1,H,W] in [0,1], p_tryon [B,3,H,W] in [-1,1])
    with p_tryon = cloth * m + rendered * (1 - m).
    """
    p_rendered, m_composite = torch.split(outputs, 3, 1)
    p_rendered = torch.tanh(p_rendered)
    m_composite = torch.sigmoid(m_composite)
    p_tryon = warped_cloth * m_composite + p_rendered * (1 - m_composite)
    return p_rendered, m_composite, p_tryon


# --------------------------------------------------------------------------- VGG perceptual loss

def find_vgg19_weights(vgg_weights=''):
    """Path of torchvision's ImageNet VGG19 weights: ``vgg_weights`` if given, else torch's hub cache.

    Raises FileNotFoundError saying where to put the file: these machines cannot download it.
    """
    if vgg_weights:
        if not osp.isfile(vgg_weights):
            raise FileNotFoundError(f'--vgg_weights {vgg_weights}: no such file')
        return vgg_weights
    cached = osp.join(torch.hub.get_dir(), 'checkpoints', VGG19_WEIGHTS_FILE)
    if osp.isfile(cached):
        return cached
    import torchvision   # for the weights' address (see torchvision_vgg19 for why it is imported here)
    raise FileNotFoundError(
        f'The VGG19 perceptual loss needs torchvision\'s ImageNet weights {VGG19_WEIGHTS_FILE}, '
        f'which are not in torch\'s cache ({cached}). Download '
        f'{torchvision.models.VGG19_Weights.IMAGENET1K_V1.url} on a machine with internet and put it '
        f'there, or pass --vgg_weights PATH. For a demo or test only, --vgg_init random uses an untrained '
        f'VGG19 (the perceptual loss is then not the paper\'s).')


def torchvision_vgg19(weights_path=None):
    """torchvision's VGG19 with the ImageNet state dict at ``weights_path``, or randomly initialised (None).

    torchvision is imported here, not with this module: its import takes about 2 s (it loads torch._dynamo) in
    every process, and only the perceptual losses need it."""
    import torchvision
    vgg = torchvision.models.vgg19(weights=None)
    if weights_path is not None:
        vgg.load_state_dict(torch.load(weights_path, map_location='cpu', weights_only=True))
    return vgg


class Vgg19(nn.Module):
    """VGG19 feature slices ending at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.

    ``weights_path``: a torchvision VGG19 state dict (ImageNet); None builds a randomly
    initialised network, which callers must ask for explicitly (see ``build_vgg_loss``).
    Input [B,3,H,W] in [-1,1] (no ImageNet normalisation, as the original).
    """

    SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))

    def __init__(self, weights_path=None, requires_grad=False):
        super().__init__()
        features = torchvision_vgg19(weights_path).features
        for n, (start, end) in enumerate(self.SLICES, 1):
            block = nn.Sequential()
            for x in range(start, end):
                block.add_module(str(x), features[x])
            setattr(self, f'slice{n}', block)
        if not requires_grad:
            for param in self.parameters():
                param.requires_grad = False

    def forward(self, X):
        h = X
        outputs = []
        for n in range(1, len(self.SLICES) + 1):
            h = getattr(self, f'slice{n}')(h)
            outputs.append(h)
        return outputs


class VGGLoss(nn.Module):
    """Perceptual L1 over five VGG19 layers with weights 1/32, 1/16, 1/8, 1/4, 1; target detached."""

    def __init__(self, vgg, layids=None):
        super().__init__()
        self.vgg = vgg
        self.criterion = nn.L1Loss()
        self.weights = [1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0]
        self.layids = layids

    def forward(self, x, y):
        x_vgg, y_vgg = self.vgg(x), self.vgg(y)
        layids = self.layids if self.layids is not None else range(len(x_vgg))
        loss = 0
        for i in layids:
            loss = loss + self.weights[i] * self.criterion(x_vgg[i], y_vgg[i].detach())
        return loss


def vgg19_weights_path(vgg_init='imagenet', vgg_weights='', log=print):
    """The ImageNet VGG19 weights file of a perceptual loss (from --vgg_weights or torch's cache), or None for the
    random VGG19 asked for with vgg_init='random'. Says in the log which one is in use."""
    if vgg_init == 'random':
        log('VGG19 perceptual loss: RANDOM initialisation (--vgg_init random). Fine for demos and tests; '
            'results are not comparable with the paper.')
        return None
    if vgg_init != 'imagenet':
        raise ValueError(f'--vgg_init must be imagenet or random, got {vgg_init!r}')
    path = find_vgg19_weights(vgg_weights)
    log(f'VGG19 perceptual loss: ImageNet weights from {path}')
    return path


def build_vgg_loss(vgg_init='imagenet', vgg_weights='', log=print):
    """CP-VTON's VGGLoss on the VGG19 of vgg19_weights_path."""
    return VGGLoss(Vgg19(vgg19_weights_path(vgg_init, vgg_weights, log)))


# --------------------------------------------------------------------------- checkpoints

def frozen_call(module, *inputs):
    """``module(*inputs)`` with its parameters detached: gradients reach the inputs only (a generator's loss
    through its discriminator, without touching the discriminator's, in one backward with its own loss)."""
    return functional_call(module, {name: p.detach() for name, p in module.named_parameters()}, inputs)


def unwrap_model(model):
    """The plain module inside DistributedDataParallel and/or torch.compile wrappers."""
    while True:
        if hasattr(model, 'module'):
            model = model.module
        elif hasattr(model, '_orig_mod'):
            model = model._orig_mod
        else:
            return model


def cpu_state_dict(model):
    """The model's state dict on the CPU, keeping the version metadata BatchNorm uses on load."""
    state_dict = unwrap_model(model).state_dict()
    cpu = OrderedDict((k, v.detach().cpu()) for k, v in state_dict.items())
    cpu._metadata = getattr(state_dict, '_metadata', None)
    return cpu


NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def format_bytes(n):
    """'76.3 MB' (decimal units, as df -H and file managers show them)."""
    for unit in ('bytes', 'kB', 'MB', 'GB', 'TB'):
        if abs(n) < 1000 or unit == 'TB':
            return f'{n:.0f} {unit}' if unit == 'bytes' else f'{n:.1f} {unit}'
        n /= 1000


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def free_bytes(folder):
    return shutil.disk_usage(folder).free


class DiskFullError(OSError):
    """A write that failed for lack of space: ``path``, the bytes it ``needed`` (None: unknown) and
    the bytes ``free`` in its folder after the failed attempt was cleaned up."""

    def __init__(self, path, needed, free):
        self.path, self.needed, self.free = path, needed, free
        need = f'it needs {format_bytes(needed)}, ' if needed is not None else ''
        super().__init__(errno.ENOSPC, f'no space left on the device: {need}{format_bytes(free)} free', path)

    def __str__(self):
        return f'{self.filename}: {self.strerror}'


def atomic_write(path, write, size=None, keep_previous=None):
    """``write(tmp_path)`` to a temporary file in ``path``'s folder, then rename it to ``path``: a crash
    or a full disk never leaves a truncated file where a good one was, nor the temporary file. A write
    that fails for lack of space raises DiskFullError (``size``: the bytes it needed, where known).
    With ``keep_previous``, the file it replaces is first renamed to that path."""
    folder = osp.dirname(path) or '.'
    os.makedirs(folder, exist_ok=True)
    tmp_path = osp.join(folder, f'.{osp.basename(path)}.tmp{os.getpid()}')
    try:
        try:
            write(tmp_path)
            if keep_previous and osp.exists(path):
                os.replace(path, keep_previous)
            os.replace(tmp_path, path)
        finally:
            if osp.exists(tmp_path):
                os.remove(tmp_path)
    except OSError as error:
        if error.errno in NO_SPACE_ERRNOS:
            raise DiskFullError(path, size, free_bytes(folder)) from None
        raise


def durable_writer(data):
    """A ``write`` for atomic_write that writes ``data`` and syncs it to the disk before the rename,
    so a power cut cannot leave a renamed but empty file."""
    def write(tmp_path):
        with open(tmp_path, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return write


def serialized(obj):
    """torch.save's bytes of ``obj``, in memory: the exact size is known before the disk is touched, and
    a full disk surfaces as an OSError from our write rather than torch's 'unexpected pos' RuntimeError."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer()


def atomic_torch_save(obj, path):
    data = serialized(obj)
    atomic_write(path, durable_writer(data), size=len(data))


def save_checkpoint(model, save_path):
    """Save the model's plain state dict (the original layout) atomically. The model stays on its device."""
    atomic_torch_save(cpu_state_dict(model), save_path)


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used for this model, with a message naming the file."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint file that is truncated or corrupt (a bad copy, a failing disk)."""


def damaged_member(checkpoint_path):
    """The first entry of a torch zip checkpoint whose CRC-32 does not match (None: all match). torch.load
    itself does not check them, so a flipped bit from a bad copy would load silently. Legacy (torch < 1.6,
    e.g. the original code's) files are not zip archives and have no checksums to check."""
    if not zipfile.is_zipfile(checkpoint_path):
        return None
    with zipfile.ZipFile(checkpoint_path) as archive:
        return archive.testzip()


def unpickler_reason(error):
    """What a weights_only UnpicklingError says was wrong, e.g. 'Unsupported global: GLOBAL builtins.open ...'
    (code the file would run) or 'Unsupported operand 103' (bytes that are no pickle)."""
    text = str(error)
    marker = 'WeightsUnpickler error:'
    after = text.split(marker, 1)[1] if marker in text else text
    lines = [line.strip() for line in after.splitlines() if line.strip()]
    return lines[0].split('. ')[0] if lines else type(error).__name__


def read_checkpoint(checkpoint_path, device='cpu'):
    """Load a checkpoint file safely (weights_only=True: a pickle that would run code is refused) after
    checking its checksums; a truncated or damaged file is a CheckpointError naming what is wrong."""
    if not checkpoint_path or not osp.isfile(checkpoint_path):
        raise CheckpointError(f'checkpoint not found: {checkpoint_path!r}. Pass --checkpoint with the path of a '
                              f'.pth file written by train.py (e.g. checkpoints/<name>/gmm_final.pth).')
    try:
        damaged = damaged_member(checkpoint_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DamagedCheckpointError(f'{checkpoint_path} is damaged: {error}') from None
    if damaged:
        raise DamagedCheckpointError(f'{checkpoint_path} is damaged: its part {damaged!r} fails its checksum '
                              f'(a bad copy or a failing disk)')
    try:
        return torch.load(checkpoint_path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        reason = unpickler_reason(error)
        if 'GLOBAL' not in reason:   # not an object weights_only refused, but bytes that are no pickle at all
            raise DamagedCheckpointError(f'{checkpoint_path} is not a torch checkpoint, or it is corrupt '
                                         f'({format_bytes(osp.getsize(checkpoint_path))}; {reason})') from None
        raise CheckpointError(
            f'{checkpoint_path} was refused: it is not a plain tensor checkpoint (it contains Python objects '
            f'that would run code when loaded; nothing in it was executed). Only load checkpoints you trust '
            f'and that hold state dicts. Details: {reason}') from None
    except (RuntimeError, EOFError, OSError) as error:
        size = osp.getsize(checkpoint_path)
        detail = str(error).split('. ')[0] if str(error) else type(error).__name__
        raise DamagedCheckpointError(f'{checkpoint_path} is truncated or corrupt ({format_bytes(size)}; torch.load: '
                              f'{detail})') from None


def describe_mismatch(model, state_dict):
    """Human-readable difference between a model's state dict and a loaded one ('' when they fit)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [f'{k}: file {tuple(state_dict[k].shape)}, model {tuple(own[k].shape)}'
                   for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    parts = []
    for title, items in (('missing keys', missing), ('unexpected keys', unexpected), ('shape mismatches', wrong_shape)):
        if items:
            parts.append(f'{len(items)} {title} (e.g. {"; ".join(items[:3])})')
    return ', '.join(parts)


def load_checkpoint(model, checkpoint_path, device=None):
    """Load a state dict (original CP-VTON layout) into ``model`` strictly, on ``device``.

    A missing file is an error (the original silently kept random weights). Files with a
    DistributedDataParallel 'module.' prefix are accepted.
    """
    device = device if device is not None else next(unwrap_model(model).parameters()).device
    state_dict = read_checkpoint(checkpoint_path, device)
    if isinstance(state_dict, dict) and 'model' in state_dict and isinstance(state_dict['model'], dict):
        state_dict = state_dict['model']  # a resumable training checkpoint
    if not isinstance(state_dict, dict):
        raise CheckpointError(f'{checkpoint_path} holds a {type(state_dict).__name__}, not a state dict')
    if all(k.startswith('module.') for k in state_dict):
        state_dict = OrderedDict((k[len('module.'):], v) for k, v in state_dict.items())
    target = unwrap_model(model)
    mismatch = describe_mismatch(target, state_dict)
    if mismatch:
        raise CheckpointError(f'{checkpoint_path} does not fit {describe_model(target)}: {mismatch}. '
                              f'{mismatch_hint(target, state_dict)}')
    target.load_state_dict(state_dict, strict=True)
    return model.to(device)


def mismatch_hint(model, state_dict):
    """The likely cause of a mismatch, read from the shapes in the file."""
    first_conv = state_dict.get('model.model.0.weight')
    if isinstance(model, UnetGenerator) and first_conv is not None and first_conv.dim() == 4:
        file_nc = first_conv.shape[1]
        if file_nc != model.input_nc and {file_nc, model.input_nc} == {TOM_INPUT_CHANNELS, TOM_INPUT_CHANNELS + 1}:
            flag = 'with' if file_nc > model.input_nc else 'without'
            return (f'It is a TOM with {file_nc} input channels: test it {flag} --tom_mask_input '
                    f'(test.py takes this from the options.json that train.py writes beside its checkpoints).')
    return ('Is it a checkpoint of the other stage, or of another image size (--fine_height/--fine_width)? '
            'test.py takes these from the options.json that train.py writes beside its checkpoints.')


def describe_model(model):
    """'GMM (256x192, grid 5)' or 'TOM (25 input channels)', for error messages."""
    if isinstance(model, GMM):
        grid = model.gridGen
        return f'GMM ({grid.out_h}x{grid.out_w}, grid {int(round(grid.N ** 0.5))})'
    if isinstance(model, UnetGenerator):
        return f'TOM ({model.input_nc} input channels)'
    return type(model).__name__

