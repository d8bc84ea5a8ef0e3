"""VITON (Han et al., CVPR 2018), faithful to its official code (xthan/VITON, TensorFlow + MATLAB):

    stage 1 (--stage VITON_COARSE): an encoder-decoder from the in-shop cloth and VITON's person representation
        to the clothing mask and a coarse person;
    shape-context matching (shape_context.py): a TPS warp of the cloth mask onto the clothing mask, not learned;
    stage 2 (--stage VITON_REFINE): a refinement network that composes the warped cloth over the coarse person
        through a learned mask alpha; stage 1 is frozen and run inside it.

Inputs (cp_dataset.CPDataset with a 'viton' DataSpec; B = batch, H x W = the model size):
    cloth [B,3,H,W] in [-1,1]; agnostic [B,22,H,W] = body shape (1, [0,1]) + head RGB (3, [-1,1], 0 outside) +
    pose boxes (18, {0,1}); viton_cloth_mask [B,1,H,W] in {0,1} (LIP label 5); image [B,3,H,W] in [-1,1];
    stage 2 also warped_cloth [B,3,H,W] in [-1,1] (the shape-context warp, from --warp_dir).
Outputs: coarse_mask [B,1,H,W] (tanh, trained towards {0,1}), coarse_person [B,3,H,W] in [-1,1];
    stage 2: alpha [B,1,H,W] in [0,1] (already multiplied by the clothing mask), p_tryon [B,3,H,W] in [-1,1].
Results (test.py) in the result layout: VITON_COARSE writes coarse-person/ and coarse-mask/ (clamped to [0,1]:
    what the official test wrote), VITON_REFINE try-on/.

Where this differs from the official code (see README "Methods"): torchvision's VGG19 instead of MatConvNet's
(see ViTONVgg19); PyTorch's BatchNorm keeps an unbiased running variance; the refinement runs at the model size
(the official resized its input to 256x192 by area first, a no-op at that size).
"""
import os.path as osp

import torch
import torch.nn as nn

import flags
from cp_dataset import DataSpec
from cpvton import pair_keys
from networks import load_checkpoint, torchvision_vgg19, unwrap_model, vgg19_weights_path
from stages import Stage
from visualization import save_images

COARSE_OUTPUT_CHANNELS = 4        # clothing mask (1) + coarse person (3)
COARSE_INPUT_CHANNELS = 25        # in-shop cloth (3) + person representation (22)
BATCHNORM_MOMENTUM = 0.001        # the official moving averages decay by 0.999 a step
COARSE_MODES = ('train', 'eval')


def init_viton_weights(module):
    """The official initialisation: convolutions N(0, 0.02) without bias, batch norm scale 1 and offset 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def down(in_channels, out_channels, bn_momentum):
    """LReLU(0.2) -> 4x4 stride-2 conv -> batch norm (the official encoder_2..6)."""
    return nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=False),
                         nn.BatchNorm2d(out_channels, momentum=bn_momentum))


def up(in_channels, out_channels, dropout, bn_momentum):
    """ReLU -> 4x4 stride-2 transposed conv -> batch norm (-> dropout) (the official decoder_6..2)."""
    layers = [nn.ReLU(), nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False),
              nn.BatchNorm2d(out_channels, momentum=bn_momentum)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class CoarseGenerator(nn.Module):
    """VITON's stage 1: [B,25,H,W] -> [B,4,H,W] in [-1,1] (tanh); H and W multiples of 64.

    Encoder 64-128-256-512-512-512 (the first a bare conv), decoder 512 (dropout 0.5) -512-256-128-64 with U-Net
    skips (none into the first decoder layer), then ReLU -> transposed conv -> tanh. ``bn_momentum``: how fast
    the batch norms' running statistics (used in eval mode) follow the batches; the official 0.001 needs thousands
    of steps to settle (--bn_momentum)."""

    def __init__(self, input_nc=COARSE_INPUT_CHANNELS, output_nc=COARSE_OUTPUT_CHANNELS, ngf=64,
                 bn_momentum=BATCHNORM_MOMENTUM):
        super().__init__()
        widths = [ngf, ngf * 2, ngf * 4, ngf * 8, ngf * 8, ngf * 8]
        self.encoders = nn.ModuleList([nn.Conv2d(input_nc, ngf, 4, 2, 1, bias=False)] +
                                      [down(a, b, bn_momentum) for a, b in zip(widths, widths[1:])])
        decoder_widths = [(ngf * 8, 0.5), (ngf * 8, 0.0), (ngf * 4, 0.0), (ngf * 2, 0.0), (ngf, 0.0)]
        decoders, in_channels = [], widths[-1]
        for level, (out_channels, dropout) in enumerate(decoder_widths):
            decoders.append(up(in_channels, out_channels, dropout, bn_momentum))
            in_channels = out_channels + widths[-2 - level]   # concatenated with the encoder's skip
        self.decoders = nn.ModuleList(decoders)
        self.output = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(in_channels, output_nc, 4, 2, 1, bias=False),
                                    nn.Tanh())
        self.apply(init_viton_weights)

    def forward(self, x):
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        x = skips.pop()
        for decoder in self.decoders:
            x = torch.cat([decoder(x), skips.pop()], 1)
        return self.output(x)


def coarse_input(inputs):
    """Stage 1's input [B,25,H,W]: the in-shop cloth, then the person representation, as the official order."""
    return torch.cat([inputs['cloth'], inputs['agnostic']], 1)


def split_coarse(outputs):
    return {'coarse_mask': outputs[:, :1], 'coarse_person': outputs[:, 1:]}


def predicted_mask(coarse_mask):
    """Stage 1's clothing mask in [0,1]: its tanh output saturated at 0, as the official test wrote it to PNG."""
    return coarse_mask.clamp(0, 1)


class RefinementNetwork(nn.Module):
    """VITON's stage 2: warped cloth (3) + coarse person (3) -> alpha [B,1,H,W] in [0,1].

    3 x [3x3 conv (no bias) -> layer norm -> LReLU(0.2)] with 64 channels, then a 1x1 conv -> sigmoid. slim's
    layer_norm normalises each sample over all of C, H, W with a scale and offset per channel: GroupNorm with one
    group, at TensorFlow's epsilon 1e-12. Initialised as slim's defaults (Xavier uniform, zero bias)."""

    def __init__(self, input_nc=6, width=64):
        super().__init__()
        layers = []
        for in_channels in (input_nc, width, width):
            layers += [nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.GroupNorm(1, width, eps=1e-12),
                       nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.alpha = nn.Conv2d(width, 1, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, warped_cloth, coarse_person):
        return torch.sigmoid(self.alpha(self.body(torch.cat([warped_cloth, coarse_person], 1))))


class VitonTryOn(nn.Module):
    """Stage 2's model: the frozen stage 1 (``coarse``) and the refinement (``refine``), one state dict.

    ``coarse_mode`` 'train' keeps stage 1 in training mode whenever this model trains (dropout on, batch
    statistics), as the official code ran it; 'eval' runs it in eval mode. In eval mode both are in eval mode.
    Frozen means its weights: in training mode its BatchNorm running statistics still move, as the official code's
    did (its batch norm updated them whenever it ran in training mode, and stage 2's checkpoint saved them), so the
    stage 1 inside viton_refine_final.pth is not exactly viton_coarse_final.pth, whose masks the test warps were
    matched to; --coarse_mode eval keeps it exactly."""

    def __init__(self, coarse_mode='train', bn_momentum=BATCHNORM_MOMENTUM):
        super().__init__()
        if coarse_mode not in COARSE_MODES:
            raise ValueError(f'coarse_mode must be one of {COARSE_MODES}, got {coarse_mode!r}')
        self.coarse_mode = coarse_mode
        self.coarse = CoarseGenerator(bn_momentum=bn_momentum)
        self.refine = RefinementNetwork()
        self.coarse.requires_grad_(False)

    def train(self, mode=True):
        super().train(mode)
        if self.coarse_mode == 'eval':
            self.coarse.eval()
        return self

    def forward(self, coarse_in, warped_cloth, cloth_mask=None):
        """``cloth_mask`` [B,1,H,W]: where alpha may be non-zero (the ground truth in training); None: stage 1's
        predicted mask (test time). Returns the outputs of the module docstring."""
        with torch.no_grad():   # frozen: only the refinement learns
            out = split_coarse(self.coarse(coarse_in))
        mask = predicted_mask(out['coarse_mask']) if cloth_mask is None else cloth_mask
        alpha = self.refine(warped_cloth, out['coarse_person']) * mask
        out.update(alpha=alpha, p_tryon=alpha * warped_cloth + (1 - alpha) * out['coarse_person'])
        return out


# --------------------------------------------------------------------------- perceptual loss

# The official layers and per-layer factors (it divides each layer's mean L1 by these), after ReLU.
VGG_LAYER_ENDS = {'conv1_2': 4, 'conv2_2': 9, 'conv3_2': 14, 'conv4_2': 23, 'conv5_2': 32}   # torchvision indices
VGG_LAYER_FACTORS = {'conv1_2': 2.5 / 5.3, 'conv2_2': 1 / 2.7 / 1.2, 'conv3_2': 1 / 1.35 / 2.3,
                     'conv4_2': 1 / 0.67 / 8.2, 'conv5_2': 1 / 0.16}
PERCEPTUAL_NORMALISER = 128.0     # "for normalize to [0,1]"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VitonVgg19(nn.Module):
    """VGG19 features after ReLU at the official layers, on input [B,3,H,W] in [-1,1].

    The official used MatConvNet's VGG19 with average pooling on 0..255 input minus the ImageNet mean. Here:
    torchvision's VGG19 (the project's weights handling, networks.vgg19_weights_path), its max pooling replaced by
    average pooling as the official, and its own input normalisation ((x + 1) / 2 - mean) / std, which its weights
    were trained with. The feature scales therefore differ from MatConvNet's; the per-layer factors are kept."""

    def __init__(self, weights_path=None, layers=tuple(VGG_LAYER_ENDS)):
        super().__init__()
        features = [nn.AvgPool2d(2, 2) if isinstance(m, nn.MaxPool2d) else m
                    for m in torchvision_vgg19(weights_path).features]
        self.layers = tuple(layers)
        self.features = nn.Sequential(*features[:max(VGG_LAYER_ENDS[name] for name in self.layers)])
        self.features.requires_grad_(False)
        self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        h = ((x + 1) / 2 - self.mean) / self.std
        ends = {VGG_LAYER_ENDS[name]: name for name in self.layers}
        outputs = {}
        for index, module in enumerate(self.features, 1):
            h = module(h)
            if index in ends:
                outputs[ends[index]] = h
        return outputs


class PerceptualLoss(nn.Module):
    """The official perceptual loss: the mean over ``layers`` of factor * mean |VGG(x) - VGG(y)|, / 128."""

    def __init__(self, vgg):
        super().__init__()
        self.vgg = vgg

    def forward(self, x, y):
        x_features, y_features = self.vgg(x), self.vgg(y)
        terms = [VGG_LAYER_FACTORS[name] * (x_features[name] - y_features[name].detach()).abs().mean()
                 for name in self.vgg.layers]
        return sum(terms) / len(terms) / PERCEPTUAL_NORMALISER


def build_perceptual_loss(opt, layers, log):
    return PerceptualLoss(VitonVgg19(vgg19_weights_path(opt.vgg_init, opt.vgg_weights, log), layers))


# --------------------------------------------------------------------------- stage 1

class CoarseLoss(nn.Module):
    """1 * L1(mask, label-5 mask) + 1 * L1(coarse person, person) + 3 * perceptual (five layers). The tags are
    the official summaries'."""
    MASK_WEIGHT, CONTENT_WEIGHT, PERCEPTUAL_WEIGHT = 1.0, 1.0, 3.0

    def __init__(self, perceptual):
        super().__init__()
        self.perceptual = perceptual

    def forward(self, inputs, out):
        mask_l1 = nn.functional.l1_loss(out['coarse_mask'], inputs['viton_cloth_mask'])
        content_l1 = nn.functional.l1_loss(out['coarse_person'], inputs['image'])
        perceptual = self.perceptual(out['coarse_person'], inputs['image'])
        loss = self.MASK_WEIGHT * mask_l1 + self.CONTENT_WEIGHT * content_l1 + self.PERCEPTUAL_WEIGHT * perceptual
        return loss, {'metric': loss, 'generator_loss_GAN': loss, 'generator_loss_mask_L1': mask_l1,
                      'generator_loss_content_L1': content_l1, 'perceptual_loss': perceptual}


def run_coarse(model, inputs):
    return split_coarse(model(coarse_input(inputs)))


def as_image(mask):
    """A [0,1] map as an image in [-1,1], for the grids."""
    return mask * 2 - 1


def coarse_visuals(inputs, out):
    """Rows: body shape/head/pose . cloth/label-5 mask/predicted mask . coarse person/person/cloth region."""
    return [[as_image(inputs['shape']), inputs['head'], inputs['pose_image']],
            [inputs['cloth'], as_image(inputs['viton_cloth_mask']), as_image(predicted_mask(out['coarse_mask']))],
            [out['coarse_person'], inputs['image'], inputs['parse_cloth']]]


def save_coarse_results(inputs, out, results):
    names = pair_keys(inputs)
    save_images(out['coarse_person'], names, results.kind_dir('coarse-person'))
    save_images(as_image(predicted_mask(out['coarse_mask'])), names, results.kind_dir('coarse-mask'))


def coarse_log_terms(values):
    return 'loss: %.4f, mask: %.4f, l1: %.4f, vgg: %.4f' % (
        values['metric'], values['generator_loss_mask_L1'], values['generator_loss_content_L1'],
        values['perceptual_loss'])


# --------------------------------------------------------------------------- stage 2

def total_variation(images):
    """tf.image.total_variation averaged over the batch: per image, the sum of |differences| of neighbours."""
    return ((images[:, :, 1:, :] - images[:, :, :-1, :]).abs().sum(dim=(1, 2, 3)) +
            (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().sum(dim=(1, 2, 3))).mean()


class RefineLoss(nn.Module):
    """0.2 * L1 + 0.8 * perceptual (conv3_2, conv4_2, conv5_2) - 0.1 * mean(alpha) + 5e-6 * TV(alpha)."""
    CONTENT_WEIGHT, PERCEPTUAL_WEIGHT, MASK_WEIGHT, TV_WEIGHT = 0.2, 0.8, 0.1, 5e-6

    def __init__(self, perceptual):
        super().__init__()
        self.perceptual = perceptual

    def forward(self, inputs, out):
        content_l1 = nn.functional.l1_loss(out['p_tryon'], inputs['image'])
        perceptual = self.perceptual(out['p_tryon'], inputs['image'])
        mask_loss = out['alpha'].mean()
        tv_loss = total_variation(out['alpha'])
        loss = (self.CONTENT_WEIGHT * content_l1 + self.PERCEPTUAL_WEIGHT * perceptual - self.MASK_WEIGHT * mask_loss
                + self.TV_WEIGHT * tv_loss)
        return loss, {'metric': loss, 'generator_loss_GAN': loss, 'generator_loss_content_L1': content_l1,
                      'perceptual_loss': perceptual, 'mask_loss': mask_loss, 'tv_loss': tv_loss}


def run_refine(model, inputs):
    """Training: alpha inside the ground-truth clothing mask; testing: inside stage 1's predicted mask."""
    mask = inputs['viton_cloth_mask'] if unwrap_model(model).training else None
    return model(coarse_input(inputs), inputs['warped_cloth'], mask)


def refine_visuals(inputs, out):
    """Rows: cloth/warped cloth/warped mask . coarse person/alpha/try-on . person/predicted mask/head."""
    return [[inputs['cloth'], inputs['warped_cloth'], as_image(inputs['warped_mask'])],
            [out['coarse_person'], as_image(out['alpha']), out['p_tryon']],
            [inputs['image'], as_image(predicted_mask(out['coarse_mask'])), inputs['head']]]


def save_refine_results(inputs, out, results):
    save_images(out['p_tryon'], pair_keys(inputs), results.kind_dir('try-on'))


def refine_log_terms(values):
    return 'loss: %.4f, l1: %.4f, vgg: %.4f, alpha: %.4f, tv: %.2f' % (
        values['metric'], values['generator_loss_content_L1'], values['perceptual_loss'], values['mask_loss'],
        values['tv_loss'])


def build_refine_model(opt):
    """VitonTryOn, its stage 1 from --coarse_checkpoint when training starts from one (not on --resume: the resume
    state holds it)."""
    model = VitonTryOn(getattr(opt, 'coarse_mode', 'train'), getattr(opt, 'bn_momentum', BATCHNORM_MOMENTUM))
    if getattr(opt, 'coarse_checkpoint', '') and getattr(opt, 'resume', None) is None:
        load_checkpoint(model.coarse, opt.coarse_checkpoint, torch.device('cpu'))
    return model


def refinement_parameters(model):
    return model.refine.parameters()


def default_warp_dir(opt):
    """The shape-context warps of the split: <result_dir>/shape_context/<datamode> (result/ for train.py)."""
    return osp.join(getattr(opt, 'result_dir', 'result'), 'shape_context', opt.datamode)


def refuse_cpvton_representation_options(parser, opt, training):
    """VITON has its own person representation: CP-VTON+'s options for CP-VTON's would do nothing."""
    for name, original in (('reserved_regions', 'original'), ('body_shape', 'parse')):
        if getattr(opt, name) != original:
            parser.error(f'--{name} {getattr(opt, name)} shapes CP-VTON\'s person representation; --stage '
                         f'{opt.stage} uses VITON\'s')


def check_refine_options(parser, opt, training):
    refuse_cpvton_representation_options(parser, opt, training)
    opt.warp_dir = opt.warp_dir or default_warp_dir(opt)
    if not training:   # test.py: the checkpoint holds both stages
        return
    if not (opt.coarse_checkpoint or opt.checkpoint or opt.resume is not None):
        parser.error('--stage VITON_REFINE trains on a frozen stage 1: pass --coarse_checkpoint '
                     'checkpoints/<its run>/viton_coarse_final.pth (or --checkpoint / --resume of a refinement run)')
    if opt.coarse_checkpoint and opt.resume is None and not osp.isfile(opt.coarse_checkpoint):
        parser.error(f'--coarse_checkpoint {opt.coarse_checkpoint}: no such file; train stage 1 first '
                     f'(scripts/viton/step1-train-coarse.sh)')


def add_arguments(parser, training):
    group = parser.add_argument_group('VITON options (--stage VITON_COARSE, VITON_REFINE)')
    group.add_argument('--warp_dir', default='',
                       help='VITON_REFINE: the folder of the shape-context warps (warp-cloth/, warp-mask/ named by '
                            'the pair); default <result_dir>/shape_context/<datamode> (result/ for train.py)')
    if training:
        group.add_argument('--coarse_checkpoint', default='',
                           help='VITON_REFINE: the trained stage 1 (viton_coarse_final.pth), frozen in training')
        group.add_argument('--bn_momentum', type=flags.float_in(0, 1), default=BATCHNORM_MOMENTUM,
                           help="VITON_COARSE, VITON_REFINE: the batch norms' running-statistics momentum (the "
                                "official 0.001, a decay of 0.999, settles after thousands of steps; 0.1, PyTorch's "
                                "default, for short runs: ours)")
        group.add_argument('--coarse_mode', default='train', choices=COARSE_MODES,
                           help="VITON_REFINE: the frozen stage 1 in training mode (dropout, batch statistics: the "
                                "official code's behaviour) or in eval mode")


COARSE_DATA = DataSpec(cloth='in-shop', representation='viton')
REFINE_DATA = DataSpec(cloth='in-shop', representation='viton', warps_from='warp_dir')

STAGES = (
    Stage('VITON_COARSE', 'VITON', COARSE_DATA, 'viton_coarse_final.pth',
          build_model=lambda opt: CoarseGenerator(bn_momentum=getattr(opt, 'bn_momentum', BATCHNORM_MOMENTUM)),
          build_loss=lambda opt, log: CoarseLoss(build_perceptual_loss(opt, tuple(VGG_LAYER_ENDS), log)),
          run=run_coarse, visuals=coarse_visuals, save_results=save_coarse_results, log_terms=coarse_log_terms,
          options=('bn_momentum',), check_options=refuse_cpvton_representation_options),
    Stage('VITON_REFINE', 'VITON', REFINE_DATA, 'viton_refine_final.pth', build_model=build_refine_model,
          build_loss=lambda opt, log: RefineLoss(build_perceptual_loss(opt, ('conv3_2', 'conv4_2', 'conv5_2'), log)),
          run=run_refine, visuals=refine_visuals, save_results=save_refine_results, log_terms=refine_log_terms,
          options=('coarse_checkpoint', 'coarse_mode', 'warp_dir', 'bn_momentum'), trainable=refinement_parameters,
          check_options=check_refine_options),
)
