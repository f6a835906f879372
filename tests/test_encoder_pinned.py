"""The convolutional encoder (models/encoder.py), the RMSNorm it uses and float32-kept buffers: defaults,
what each argument reaches, refusals, and the channels-last activations, pinned."""

import inspect

import pytest
import torch

from diffusers_mdiffae import AutoencoderMDiffAE
from diffusers_mdiffae.models.embeddings import SinusoidalTimeEmbeddingMLP
from diffusers_mdiffae.models.encoder import Encoder
from diffusers_mdiffae.models.norms import ChannelWiseRMSNorm


def tiny_encoder(**kwargs) -> Encoder:
    torch.manual_seed(0)
    return Encoder(**{"model_dim": 8, "depth": 1, "latent_channels": 4, **kwargs})


def test_the_encoders_defaults_are_the_mdiffae_v1_configs():
    config = inspect.signature(AutoencoderMDiffAE.__init__).parameters
    own = {k: p.default for k, p in inspect.signature(Encoder.__init__).parameters.items() if k != "self"}
    renamed = {"depth": "encoder_depth", "bottleneck_norm_affine": "outer_norms"}
    shared = {k: v for k, v in own.items() if renamed.get(k, k) in config}
    assert shared == {k: config[renamed.get(k, k)].default for k in shared}
    # the three the autoencoder does not expose: v1 is a DiCo encoder with both norms, and no posterior
    assert {k: own[k] for k in set(own) - set(shared)} == {
        "block_type": "dico",
        "norm_in": True,
        "bottleneck_norm": True,
        "posterior": False,
    }
    assert (own["depth"], own["depthwise_kernel_size"], own["bottleneck_norm_affine"]) == (4, 7, True)


def test_an_unknown_block_type_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError) as err:
        tiny_encoder(block_type="vit")
    assert str(err.value) == "block_type must be one of ['dico', 'fcdm'], got 'vit'"


def test_kernel_size_and_eps_reach_every_block_and_norm():
    enc = tiny_encoder(depth=2, depthwise_kernel_size=5, norm_eps=1e-3, bottleneck_norm_affine=False)
    for block in enc.blocks:
        depthwise = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
        assert [tuple(m.weight.shape[-2:]) for m in depthwise] == [(5, 5)]
    assert (enc.norm_in.eps, enc.norm_out.eps) == (1e-3, 1e-3)
    assert enc.norm_in.weight is not None  # the input norm is always affine
    assert enc.norm_out.weight is None and enc.norm_out.bias is None


def test_a_non_affine_rms_norm_has_no_weight_or_bias_attributes_set_and_no_state():
    norm = ChannelWiseRMSNorm(4, affine=False)
    assert norm.weight is None and norm.bias is None and dict(norm.state_dict()) == {}
    affine = ChannelWiseRMSNorm(4)
    assert torch.equal(affine.weight, torch.ones(4)) and torch.equal(affine.bias, torch.zeros(4))


def test_the_blocks_see_channels_last_activations():
    enc = tiny_encoder()
    seen = []
    enc.blocks[0].register_forward_pre_hook(
        lambda module, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    enc(torch.zeros(1, 3, 32, 32))
    assert seen == [True]


def test_a_non_recursive_cast_leaves_children_alone_and_keeps_the_frequencies_float32():
    mlp = SinusoidalTimeEmbeddingMLP(4, freq_dim=8)
    mlp._apply(lambda t: t.half(), recurse=False)
    assert mlp.freqs.dtype == torch.float32 and mlp.proj_in.weight.dtype == torch.float32
    mlp._apply(lambda t: t.half())
    assert mlp.freqs.dtype == torch.float32 and mlp.proj_in.weight.dtype == torch.float16


def test_a_wrong_constructor_argument_names_the_class_it_was_given_to():
    with pytest.raises(ValueError) as err:
        AutoencoderMDiffAE(latent_channels="x")
    assert str(err.value) == "AutoencoderMDiffAE argument: latent_channels must be an int, got 'x' (str)"


def test_a_device_move_takes_the_float32_kept_frequencies_along():
    mlp = SinusoidalTimeEmbeddingMLP(4, freq_dim=8).to("meta")  # meta stands in for an accelerator
    assert mlp.freqs.device.type == "meta" and mlp.freqs.dtype == torch.float32
    assert mlp.proj_in.weight.device.type == "meta"


def test_an_encoder_built_with_its_defaults_has_v1s_depth_and_norms():
    enc = Encoder(model_dim=8, latent_channels=4)
    assert len(enc.blocks) == 4
    assert enc.norm_in is not None and enc.norm_out is not None and enc.norm_out.weight is not None


def test_a_half_precision_posterior_encoder_returns_its_mode_in_half_precision():
    from fixtures.models import images, make_tiny

    encoder = make_tiny(family="semdisdiffae").encoder.to(torch.bfloat16)
    with torch.no_grad():
        mean, logsnr = encoder.encode_posterior(images(1, 32, 32).bfloat16())
        z = encoder(images(1, 32, 32).bfloat16())
    assert z.dtype == torch.bfloat16
    assert torch.equal(z, (torch.sigmoid(logsnr.float()).sqrt() * mean.float()).bfloat16())


def test_an_encoder_built_with_no_arguments_is_v1s():
    """Built, not read from the signature: the DiCo encoder of mdiffae_v1, 896 wide, 4 blocks, 64 channels."""
    with torch.device("meta"):  # the full-size model, without allocating it
        enc = Encoder()
    proj = enc.patchify.proj
    assert (proj.in_channels, proj.out_channels, proj.kernel_size, proj.stride) == (3, 896, (16, 16), (16, 16))
    assert enc.patchify.patch_size == 16
    assert len(enc.blocks) == 4 and enc.to_bottleneck.out_channels == 64 and enc.norm_out.weight.shape == (64,)
    assert all(block.mlp.conv_in.out_channels == 4 * 896 for block in enc.blocks)
    assert all(block.conv2.kernel_size == (7, 7) for block in enc.blocks)
    norms = [m for m in enc.modules() if isinstance(m, ChannelWiseRMSNorm)]
    assert len(norms) == 2 + 3 * 4 and {m.eps for m in norms} == {1e-6}
    assert enc.gradient_checkpointing is False and enc.posterior is False


def test_the_encoders_eps_reaches_the_norms_inside_its_blocks():
    enc = tiny_encoder(norm_eps=1e-3)
    assert {m.eps for m in enc.blocks.modules() if isinstance(m, ChannelWiseRMSNorm)} == {1e-3}
