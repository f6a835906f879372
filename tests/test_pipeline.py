"""A real diffusers pipeline holding AutoencoderMDiffAE runs, saves and reloads."""

import json

import pytest
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, DiTPipeline, DiTTransformer2DModel
from fixtures.models import make_tiny

import diffusers_mdiffae  # noqa: F401  (diffusers resolves the saved class name from sys.modules)
from diffusers_mdiffae import AutoencoderMDiffAE, VPDDIMScheduler


def tiny_dit(latent_channels=64):
    torch.manual_seed(0)
    return DiTTransformer2DModel(
        sample_size=4,
        patch_size=2,
        in_channels=latent_channels,
        out_channels=2 * latent_channels,
        num_layers=1,
        num_attention_heads=2,
        attention_head_dim=8,
        num_embeds_ada_norm=10,
        norm_num_groups=32,
    ).eval()  # training mode would randomly drop class labels


@pytest.fixture
def pipe():
    scheduler = DDIMScheduler(timestep_spacing="trailing")
    return DiTPipeline(transformer=tiny_dit(), vae=make_tiny(), scheduler=scheduler, id2label={0: "zero", 1: "one"})


def run(pipe):
    return pipe(
        class_labels=[0, 1],
        num_inference_steps=2,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images


def test_dit_pipeline_generates_images_at_sixteen_times_the_latent_size(pipe):
    out = run(pipe)
    assert out.shape == (2, 64, 64, 3)
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_dit_pipeline_saves_and_reloads_with_our_autoencoder(tmp_path, pipe):
    ref = run(pipe)
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["vae"] == ["diffusers_mdiffae.models.autoencoders.autoencoder_mdiffae", "AutoencoderMDiffAE"]
    reloaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert isinstance(reloaded, DiTPipeline) and isinstance(reloaded.vae, AutoencoderMDiffAE)
    assert torch.equal(
        torch.cat([p.flatten() for p in reloaded.vae.parameters()]),
        torch.cat([p.flatten() for p in pipe.vae.parameters()]),
    )
    assert (run(reloaded) == ref).all()


def test_pipeline_holding_our_scheduler_saves_and_reloads(tmp_path):
    # A user pipeline that keeps the decoder's scheduler as a component of its own.
    class ReconstructPipeline(DiffusionPipeline):
        def __init__(self, vae, scheduler):
            super().__init__()
            self.register_modules(vae=vae, scheduler=scheduler)

    pipe = ReconstructPipeline(vae=make_tiny(), scheduler=VPDDIMScheduler(pdg_strength=1.3))
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers_mdiffae.schedulers.scheduling_vp_ddim", "VPDDIMScheduler"]
    assert (tmp_path / "scheduler" / "scheduler_config.json").is_file()
    vae = AutoencoderMDiffAE.from_pretrained(tmp_path, subfolder="vae")
    sched = VPDDIMScheduler.from_pretrained(tmp_path, subfolder="scheduler")
    assert sched.config.pdg_strength == 1.3
    assert torch.equal(
        torch.cat([p.flatten() for p in vae.parameters()]), torch.cat([p.flatten() for p in pipe.vae.parameters()])
    )


def test_img2img_style_latent_retrieval_works():
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents

    vae = make_tiny()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        z = retrieve_latents(vae.encode(x), generator=torch.Generator().manual_seed(0))
        z_argmax = retrieve_latents(vae.encode(x), sample_mode="argmax")
    assert z.shape == (1, 64, 2, 2) and torch.equal(z, z_argmax)


@pytest.mark.parametrize("kind", ["maetok", "softvq"])
def test_a_pipeline_with_a_1d_token_tokenizer_refuses_with_a_sentence(kind):
    """A spatial pipeline's latents reach a 1-D tokenizer's decode: a sentence, not a garbage image."""
    from fixtures.models import make_tiny_tokenizer

    vae = make_tiny_tokenizer(kind)
    pipe = DiTPipeline(
        transformer=tiny_dit(latent_channels=vae.config.codebook_embed_dim),
        vae=vae,
        scheduler=DDIMScheduler(timestep_spacing="trailing"),
        id2label={0: "zero", 1: "one"},
    )
    with pytest.raises(ValueError, match=r"rank 3 .*1-D tokens"):
        run(pipe)
