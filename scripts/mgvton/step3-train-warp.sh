#!/usr/bin/env bash
# MG-VTON step 3: stage II, the Warp-GAN (parse matcher, generator, discriminator; the earlier stages frozen).
# Needs the ImageNet VGG19 weights (--vgg_weights, or torch's cache) for its perceptual loss.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
train_mgvton_stage warp "$MGVTON_WARP_STEPS" gmm "$@"
